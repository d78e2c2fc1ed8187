"""Matching rules, pure: no nameko, no pymongo, no clock read here.

- A volunteer is a candidate for a referral only if every hard rule passes:
  eligible (training says so, the profile is filled in, not left), same
  site, capacity left, and, when the parent needs their language without an
  interpreter, a volunteer who speaks it.
- Candidates are ranked by a weighted score of five components, each 0..1:
  area, language, shared (lived) experience, support modes and current load.
  The weights are a site setting; the score is their weighted mean, 0..1.
- A match plan assigns the whole waiting list at once, optimally: every
  volunteer becomes one column per place left, the k-th carrying the load
  score the volunteer would have after k more parents, and
  ``scipy.optimize.linear_sum_assignment`` maximises the total score over
  the pairs that pass the hard rules (a parent may stay unassigned).
"""
import re

import numpy as np
from scipy.optimize import linear_sum_assignment

from shared.errors import Conflict
from shared.events import new_event
from shared.events.types.matching import MATCH_REMATCH_REASONS
from shared.events.types.referrals import NEEDS, SUPPORT_MODES

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
COMPONENTS = ("area", "language", "shared_experience", "modes", "load")
DEFAULT_WEIGHTS = {"area": 3.0, "language": 2.0, "shared_experience": 2.0,
                   "modes": 1.0, "load": 1.0}
HARD_RULES = ("eligible", "same_site", "capacity_left", "language")
PASSED, FAILED, NOT_APPLICABLE = "passed", "failed", "not_applicable"

# A match: open, then declined (by the volunteer) or ended (with a reason).
OPEN, DECLINED, ENDED = "open", "declined", "ended"
# A referral waiting for a volunteer (demand): waiting -> matched -> closed,
# back to waiting when its match is declined or ends with a rematch reason.
WAITING, MATCHED, CLOSED = "waiting", "matched", "closed"

REMATCH_NOT_ELIGIBLE = "volunteer_not_eligible"
REMATCH_LEFT = "volunteer_left"

_AREA = re.compile(r"^[A-Z]+")


# -- score components, each 0..1 ---------------------------------------------

def postcode_area(district):
    """'CM1' -> 'CM', 'SW1A' -> 'SW': the letters of a postcode district."""
    match = _AREA.match(district or "")
    return match.group(0) if match else ""


def primary_language(tag):
    """'pa-IN' -> 'pa': Punjabi is Punjabi, whatever the region tag says."""
    return (tag or "").split("-")[0].lower()


def speaks(languages, language):
    wanted = primary_language(language)
    return any(primary_language(spoken) == wanted for spoken in languages)


def area_score(area, districts):
    """1 in a district the volunteer covers, 0.5 in the same postcode area
    (CM1 for a volunteer covering CM2), else 0."""
    if area in districts:
        return 1.0
    wanted = postcode_area(area)
    if any(postcode_area(district) == wanted for district in districts):
        return 0.5
    return 0.0


def language_score(language, languages):
    return 1.0 if speaks(languages, language) else 0.0


def shared_experience_score(needs, lived_experience):
    """The share of the parent's needs the volunteer has lived through
    (0 when the parent named none: it then ranks nobody above anybody)."""
    needs = set(needs)
    if not needs:
        return 0.0
    return len(needs & set(lived_experience)) / len(needs)


def modes_score(preferred, offered):
    """The share of the parent's preferred kinds of support the volunteer
    offers (1 when the parent has no preference)."""
    preferred = set(preferred)
    if not preferred:
        return 1.0
    return len(preferred & set(offered)) / len(preferred)


def load_score(active, capacity):
    """1 for a volunteer with nobody yet, falling to 0 at capacity."""
    if capacity <= 0:
        return 0.0
    return max(0.0, 1.0 - active / capacity)


def components(referral, volunteer, extra=0):
    """The five component values; ``extra``: parents the volunteer would
    already have gained (a plan's later places)."""
    return _components(_prepare(referral), volunteer, extra)


def _prepare(referral):
    """What every pair with this referral needs, computed once."""
    return (referral["area"], postcode_area(referral["area"]),
            primary_language(referral["preferred_language"]),
            frozenset(referral["needs"]), frozenset(referral["preferred_support"]))


def _components(prepared, volunteer, extra=0):
    # The same rules as the *_score functions above, without their set-up
    # per pair: a suggestion weighs every volunteer of a site.
    area, area_letters, language, needs, preferred = prepared
    districts = volunteer["districts"]
    if area in districts:
        area_value = 1.0
    elif any(postcode_area(district) == area_letters for district in districts):
        area_value = 0.5
    else:
        area_value = 0.0
    speaks_it = any(primary_language(tag) == language for tag in volunteer["languages"])
    shared = (len(needs.intersection(volunteer["lived_experience"])) / len(needs)
              if needs else 0.0)
    modes = (len(preferred.intersection(volunteer["support_modes"])) / len(preferred)
             if preferred else 1.0)
    return {"area": area_value, "language": 1.0 if speaks_it else 0.0,
            "shared_experience": shared, "modes": modes,
            "load": load_score(volunteer["active"] + extra, volunteer["capacity"])}


def weighted_score(values, weights):
    total_weight = sum(weights[name] for name in COMPONENTS)
    return sum(weights[name] * values[name] for name in COMPONENTS) / total_weight


def breakdown(values, weights):
    return {name: {"value": round(values[name], 4), "weight": weights[name],
                   "points": round(weights[name] * values[name], 4)}
            for name in COMPONENTS}


# -- hard rules ----------------------------------------------------------------

def is_matchable(volunteer):
    return bool(volunteer.get("eligible") and volunteer.get("has_profile")
                and not volunteer.get("left"))


def hard_rules(referral, volunteer):
    """Each hard rule: passed, failed, or not applicable (language, when an
    interpreter is arranged)."""
    def rule(ok):
        return PASSED if ok else FAILED
    if referral["interpreter_needed"]:
        language = NOT_APPLICABLE
    else:
        language = rule(speaks(volunteer["languages"], referral["preferred_language"]))
    return {
        "eligible": rule(is_matchable(volunteer)),
        "same_site": rule(volunteer["site_id"] == referral["site_id"]),
        "capacity_left": rule(volunteer["active"] < volunteer["capacity"]),
        "language": language,
    }


def failed_rules(rules):
    return [name for name in HARD_RULES if rules[name] == FAILED]


# -- suggestions ---------------------------------------------------------------

def suggest(referral, volunteers, weights, limit):
    """(how many volunteers pass every hard rule, the best ``limit`` of them
    ranked with their scores broken down and their hard rules)."""
    ranked = []
    prepared = _prepare(referral)
    for volunteer in volunteers:
        rules = hard_rules(referral, volunteer)
        if failed_rules(rules):
            continue
        values = _components(prepared, volunteer)
        ranked.append((-weighted_score(values, weights), volunteer["_id"],
                       volunteer, values, rules))
    ranked.sort(key=lambda row: (row[0], row[1]))
    return len(ranked), [{
        "volunteer_id": volunteer["_id"],
        "score": round(-negative, 4),
        "breakdown": breakdown(values, weights),
        "hard_rules": rules,
        "active": volunteer["active"],
        "capacity": volunteer["capacity"],
        "birth_buddy": volunteer.get("birth_buddy", False),
    } for negative, _, volunteer, values, rules in ranked[:limit]]


# -- the match plan ------------------------------------------------------------

_NEED_BIT = {need: 1 << i for i, need in enumerate(NEEDS)}
_MODE_BIT = {mode: 1 << i for i, mode in enumerate(SUPPORT_MODES)}
_POPCOUNT = np.array([bin(i).count("1") for i in range(1 << max(len(NEEDS),
                                                             len(SUPPORT_MODES)))])


def _bits(values, bit_of):
    mask = 0
    for value in values:
        mask |= bit_of.get(value, 0)
    return mask


def _share(parent_masks, volunteer_masks, empty_value):
    """|parent & volunteer| / |parent| for every pair (empty_value when the
    parent's set is empty)."""
    common = _POPCOUNT[parent_masks[:, None] & volunteer_masks[None, :]]
    size = _POPCOUNT[parent_masks][:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(size > 0, common / np.maximum(size, 1), empty_value)
    return share.astype(float)


def _incidence(volunteers, keys_of):
    """{key: bool vector over volunteers}, for the keys the volunteers have."""
    columns = {}
    for index, volunteer in enumerate(volunteers):
        for key in keys_of(volunteer):
            if key not in columns:
                columns[key] = np.zeros(len(volunteers), dtype=bool)
            columns[key][index] = True
    return columns


def pair_matrices(referrals, volunteers, weights):
    """(score without load, feasible) for every referral x volunteer pair,
    the same arithmetic as :func:`components` and :func:`hard_rules`, whole
    arrays at a time. The score is already divided by the total weight."""
    n_volunteers = len(volunteers)
    none = np.zeros(n_volunteers, dtype=bool)
    districts = _incidence(volunteers, lambda v: set(v["districts"]))
    areas = _incidence(volunteers, lambda v: {postcode_area(d) for d in v["districts"]})
    languages = _incidence(volunteers, lambda v: {primary_language(t) for t in v["languages"]})
    area = np.array([np.where(districts.get(r["area"], none), 1.0,
                              np.where(areas.get(postcode_area(r["area"]), none), 0.5, 0.0))
                     for r in referrals]).reshape(len(referrals), n_volunteers)
    speaks_matrix = np.array([languages.get(primary_language(r["preferred_language"]), none)
                              for r in referrals]).reshape(len(referrals), n_volunteers)
    shared = _share(np.array([_bits(r["needs"], _NEED_BIT) for r in referrals], dtype=int),
                    np.array([_bits(v["lived_experience"], _NEED_BIT) for v in volunteers],
                             dtype=int), 0.0)
    modes = _share(np.array([_bits(r["preferred_support"], _MODE_BIT) for r in referrals],
                            dtype=int),
                   np.array([_bits(v["support_modes"], _MODE_BIT) for v in volunteers],
                            dtype=int), 1.0)
    total_weight = sum(weights[name] for name in COMPONENTS)
    base = (weights["area"] * area + weights["language"] * speaks_matrix
            + weights["shared_experience"] * shared + weights["modes"] * modes) / total_weight
    volunteer_ok = np.array([is_matchable(v) and v["active"] < v["capacity"]
                             for v in volunteers], dtype=bool)
    sites = np.array([v["site_id"] for v in volunteers], dtype=object)
    feasible = np.empty((len(referrals), n_volunteers), dtype=bool)
    for row, referral in enumerate(referrals):
        ok = volunteer_ok & (sites == referral["site_id"])
        if not referral["interpreter_needed"]:
            ok = ok & speaks_matrix[row]
        feasible[row] = ok
    return base, feasible


def plan(referrals, volunteers, weights):
    """The assignment of referrals to volunteers' places left that maximises
    the total score over pairs passing every hard rule, no volunteer over
    capacity. Returns (pairs, unmatched referral ids); each pair is
    (referral, volunteer, extra, values, score), ``extra`` the number of
    parents the plan gives that volunteer before this one."""
    if not referrals:
        return [], []
    slot_volunteer, slot_extra = [], []
    for index, volunteer in enumerate(volunteers):
        for extra in range(max(0, volunteer["capacity"] - volunteer["active"])):
            slot_volunteer.append(index)
            slot_extra.append(extra)
    if not slot_volunteer:
        return [], [r["_id"] for r in referrals]
    slot_volunteer = np.array(slot_volunteer)
    slot_load = np.array([load_score(volunteers[v]["active"] + extra, volunteers[v]["capacity"])
                          for v, extra in zip(slot_volunteer, slot_extra)])
    base, feasible = pair_matrices(referrals, volunteers, weights)
    total_weight = sum(weights[name] for name in COMPONENTS)
    scores = base[:, slot_volunteer] + weights["load"] * slot_load[None, :] / total_weight
    scores[~feasible[:, slot_volunteer]] = -np.inf
    n_rows, n_slots = scores.shape
    # Each row needs only its n_rows best places: whatever optimum uses a
    # worse one, one of those n_rows is free (the other rows take at most
    # n_rows - 1), scores at least as much, and can take its place.
    if n_slots > n_rows:
        best = np.argpartition(-scores, n_rows - 1, axis=1)[:, :n_rows]
        columns = np.unique(best)
    else:
        columns = np.arange(n_slots)
    kept = scores[:, columns]
    # One "unassigned" column per row, worth 0; infeasible pairs are never worth it.
    matrix = np.zeros((n_rows, len(columns) + n_rows))
    matrix[:, :len(columns)] = np.where(np.isfinite(kept), kept, -1e9)
    rows, chosen = linear_sum_assignment(matrix, maximize=True)
    pairs, matched = [], set()
    taken = {}
    for row, column in sorted(zip(rows, chosen), key=lambda rc: -matrix[rc[0], rc[1]]):
        if column >= len(columns) or not np.isfinite(kept[row, column]):
            continue
        volunteer = volunteers[slot_volunteer[columns[column]]]
        # Places of one volunteer fill in order: the best pair takes the first.
        extra = taken.get(volunteer["_id"], 0)
        taken[volunteer["_id"]] = extra + 1
        values = components(referrals[row], volunteer, extra)
        pairs.append((referrals[row], volunteer, extra, values))
        matched.add(row)
    unmatched = [r["_id"] for i, r in enumerate(referrals) if i not in matched]
    return pairs, unmatched


def plan_answer(site_id, pairs, unmatched, weights, counts):
    rows = [{"referral_id": referral["_id"], "volunteer_id": volunteer["_id"],
             "score": round(weighted_score(values, weights), 4),
             "breakdown": breakdown(values, weights), "place": extra + 1}
            for referral, volunteer, extra, values in pairs]
    return dict(counts, site_id=site_id, pairs=rows, unmatched=unmatched,
                total_score=round(sum(weighted_score(v, weights)
                                      for _, _, _, v in pairs), 4))


# -- profiles, demand and the life of a match ----------------------------------

def profile_fields(form, now):
    """What a coordinator's profile sets (eligibility and load are not theirs)."""
    return dict(form, has_profile=True, updated_at=now,
                language_keys=sorted({primary_language(t) for t in form["languages"]}))


EMPTY_PROFILE = {"has_profile": False, "languages": [], "language_keys": [],
                 "districts": [], "lived_experience": [], "support_modes": [],
                 "capacity": 0, "birth_buddy": False, "available_days": [],
                 "user_id": None, "updated_at": None}
NEW_VOLUNTEER = dict(EMPTY_PROFILE, active=0, left=False, left_at=None,
                     eligible=False, eligibility_reasons=[], eligibility_as_of=None)


def insert_defaults(volunteer_id, setting):
    """The fields a first write leaves unset, whichever comes first: the
    coordinator's profile, training's eligibility, or the volunteer leaving."""
    defaults = dict(NEW_VOLUNTEER, volunteer_id=volunteer_id)
    return {name: value for name, value in defaults.items() if name not in setting}


def eligibility_is_newer(profile, as_of):
    """Events may arrive out of order: only a newer verdict changes it."""
    known = (profile or {}).get("eligibility_as_of")
    return known is None or known <= as_of


def demand_from_accepted(data, now):
    """What matching keeps of an accepted referral: the facts it scores."""
    return {"preferred_language": data["preferred_language"],
            "interpreter_needed": data["interpreter_needed"],
            "area": data["area"], "needs": sorted(set(data["needs"])),
            "preferred_support": sorted(set(data["preferred_support"])),
            "due_month": data.get("due_month"), "accepted_at": data["accepted_at"],
            "updated_at": now}


def confirm_match(demand, volunteer, weights, match_id, confirmed_by, now):
    """A new open match and its ``match.confirmed``; Conflict if the referral
    is not waiting or the volunteer fails a hard rule."""
    if demand["status"] != WAITING:
        raise Conflict(f"Referral {demand['_id']} is {demand['status']}, not waiting.",
                       {"referral_id": [f"status is {demand['status']}"]})
    failed = failed_rules(hard_rules(demand, volunteer))
    if failed:
        raise Conflict("The volunteer does not pass every hard rule.",
                       {"hard_rules": failed})
    values = components(demand, volunteer)
    score = weighted_score(values, weights)
    match = {"_id": match_id, "site_id": demand["site_id"],
             "referral_id": demand["_id"], "volunteer_id": volunteer["_id"],
             "status": OPEN, "score": round(score, 4),
             "breakdown": breakdown(values, weights), "needs_rematch": False,
             "rematch_reason": None, "confirmed_by": confirmed_by,
             "confirmed_at": now, "closed_at": None, "close_reason": None}
    event = new_event("match.confirmed", {
        "match_id": match_id, "referral_id": demand["_id"],
        "volunteer_id": volunteer["_id"], "score": round(score, 4),
        "confirmed_at": now.isoformat()}, site_id=demand["site_id"],
        subject=match_id, now=now)
    return match, event


def _require_open(match):
    if match["status"] != OPEN:
        raise Conflict(f"Match {match['_id']} is {match['status']}, not open.",
                       {"status": [match["status"]]})


def decline_match(match, reason, now):
    """The changes to an open match the volunteer declines, and its event."""
    _require_open(match)
    changes = {"status": DECLINED, "closed_at": now, "close_reason": reason,
               "needs_rematch": False}
    event = new_event("match.declined", {
        "match_id": match["_id"], "referral_id": match["referral_id"],
        "volunteer_id": match["volunteer_id"], "reason": reason,
        "declined_at": now.isoformat()}, site_id=match["site_id"],
        subject=match["_id"], now=now)
    return changes, event


def end_match(match, reason, now):
    """(changes, event, whether the referral waits again)."""
    _require_open(match)
    rematch = reason in MATCH_REMATCH_REASONS
    changes = {"status": ENDED, "closed_at": now, "close_reason": reason,
               "needs_rematch": False}
    event = new_event("match.ended", {
        "match_id": match["_id"], "referral_id": match["referral_id"],
        "volunteer_id": match["volunteer_id"], "reason": reason,
        "rematch": rematch, "ended_at": now.isoformat()},
        site_id=match["site_id"], subject=match["_id"], now=now)
    return changes, event, rematch
