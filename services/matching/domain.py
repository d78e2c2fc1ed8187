"""Matching rules, pure: no nameko, no pymongo, no clock read here.

- A volunteer is a candidate for a referral only if every hard rule passes:
  eligible (training says so, the profile is filled in, not left), same
  site, capacity left, and, when the parent needs their language without an
  interpreter, a volunteer who speaks it.
- Candidates are ranked by a weighted score of seven components, each 0..1:
  area, language, shared (lived) experience, support modes, current load,
  birth buddy and availability. The weights are a site setting; the score is
  the weighted mean of the components that apply, 0..1.
  - birth buddy applies only to a pregnant parent (due month this month or
    later): 1 for a volunteer who is a birth buddy, else 0. For a parent
    whose baby is born it is left out of the mean (shown as not applying).
  - availability: the days a week the volunteer can give, saturating at
    three (a weekly visit with room to move it): min(days, 3) / 3; a profile
    listing no days scores 0. Referrals carry no preferred days, so days are
    scored, not matched.
- A volunteer who declined a referral is never put forward for it again
  (the ``not_declined_before`` hard rule).
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
COMPONENTS = ("area", "language", "shared_experience", "modes", "load", "birth_buddy",
              "availability")
DEFAULT_WEIGHTS = {"area": 3.0, "language": 2.0, "shared_experience": 2.0,
                   "modes": 1.0, "load": 1.0, "birth_buddy": 1.0, "availability": 0.5}
FULL_AVAILABILITY_DAYS = 3
HARD_RULES = ("eligible", "same_site", "capacity_left", "language", "not_declined_before")
PASSED, FAILED, NOT_APPLICABLE = "passed", "failed", "not_applicable"

# A match: proposed (the volunteer is asked; it holds a place) -> open
# (confirmed), or open at once; then declined (by the volunteer) or ended
# (with a reason).
PROPOSED, OPEN, DECLINED, ENDED = "proposed", "open", "declined", "ended"
LIVE = (PROPOSED, OPEN)
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


def availability_score(days):
    """min(days a week, 3) / 3: see the module's docstring."""
    return min(len(days or ()), FULL_AVAILABILITY_DAYS) / FULL_AVAILABILITY_DAYS


def is_pregnant(due_month, today):
    """A due month ('2027-03') this month or later; ``today`` a date."""
    return bool(due_month) and due_month >= f"{today.year:04d}-{today.month:02d}"


def with_pregnancy(demand, today):
    """The referral as scored today: whether the parent is still pregnant."""
    return dict(demand, pregnant=is_pregnant(demand.get("due_month"), today))


def components(referral, volunteer, extra=0):
    """The component values (``birth_buddy`` None when it does not apply);
    ``extra``: parents the volunteer would already have gained (a plan's
    later places)."""
    return _components(_prepare(referral), volunteer, extra)


def _prepare(referral):
    """What every pair with this referral needs, computed once."""
    return (referral["area"], postcode_area(referral["area"]),
            primary_language(referral["preferred_language"]),
            frozenset(referral["needs"]), frozenset(referral["preferred_support"]),
            bool(referral.get("pregnant")))


def _components(prepared, volunteer, extra=0):
    # The same rules as the *_score functions above, without their set-up
    # per pair.
    area, area_letters, language, needs, preferred, pregnant = prepared
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
            "load": load_score(volunteer["active"] + extra, volunteer["capacity"]),
            "birth_buddy": (1.0 if volunteer.get("birth_buddy") else 0.0) if pregnant else None,
            "availability": availability_score(volunteer.get("available_days"))}


def weighted_score(values, weights):
    """The weighted mean of the components that apply (value not None)."""
    applying = [name for name in COMPONENTS if values[name] is not None]
    total_weight = sum(weights[name] for name in applying)
    if total_weight <= 0:
        return 0.0
    return sum(weights[name] * values[name] for name in applying) / total_weight


def breakdown(values, weights):
    return {name: {"value": None if values[name] is None else round(values[name], 4),
                   "weight": weights[name], "applies": values[name] is not None,
                   "points": 0.0 if values[name] is None
                   else round(weights[name] * values[name], 4)}
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
        "not_declined_before": rule(volunteer["_id"] not in referral.get("declined_by", ())),
    }


def failed_rules(rules):
    return [name for name in HARD_RULES if rules[name] == FAILED]


# -- a site's volunteers as arrays ---------------------------------------------

_NEED_BIT = {need: 1 << i for i, need in enumerate(NEEDS)}
_MODE_BIT = {mode: 1 << i for i, mode in enumerate(SUPPORT_MODES)}
_POPCOUNT = np.array([bin(i).count("1") for i in range(1 << max(len(NEEDS),
                                                             len(SUPPORT_MODES)))])


def _bits(values, bit_of):
    mask = 0
    for value in values:
        mask |= bit_of.get(value, 0)
    return mask


def _share(parent_mask, volunteer_masks, empty_value):
    """|parent & volunteer| / |parent| for every volunteer (empty_value when
    the parent's set is empty)."""
    size = _POPCOUNT[parent_mask]
    if size == 0:
        return np.full(len(volunteer_masks), float(empty_value))
    return _POPCOUNT[volunteer_masks & parent_mask] / size


def _incidence(volunteers, keys_of):
    """{key: bool vector over volunteers}, for the keys the volunteers have."""
    columns = {}
    for index, volunteer in enumerate(volunteers):
        for key in keys_of(volunteer):
            if key not in columns:
                columns[key] = np.zeros(len(volunteers), dtype=bool)
            columns[key][index] = True
    return columns


class Pool:
    """Volunteers as arrays, built once and scored against any referral
    with the same rules as :func:`components` and :func:`hard_rules`."""

    def __init__(self, volunteers):
        self.volunteers = list(volunteers)
        vs = self.volunteers
        n = len(vs)
        self.ids = np.array([v["_id"] for v in vs], dtype=object)
        self.position = {v["_id"]: i for i, v in enumerate(vs)}
        self.none = np.zeros(n, dtype=bool)
        self.districts = _incidence(vs, lambda v: set(v["districts"]))
        self.areas = _incidence(vs, lambda v: {postcode_area(d) for d in v["districts"]})
        self.languages = _incidence(vs, lambda v: {primary_language(t)
                                                   for t in v["languages"]})
        self.need_masks = np.array([_bits(v["lived_experience"], _NEED_BIT) for v in vs],
                                   dtype=np.int64)
        self.mode_masks = np.array([_bits(v["support_modes"], _MODE_BIT) for v in vs],
                                   dtype=np.int64)
        self.birth_buddy = np.array([1.0 if v.get("birth_buddy") else 0.0 for v in vs])
        self.availability = np.array([availability_score(v.get("available_days"))
                                      for v in vs])
        self.active = np.array([v["active"] for v in vs], dtype=np.int64)
        self.capacity = np.array([v["capacity"] for v in vs], dtype=np.int64)
        self.sites = np.array([v["site_id"] for v in vs], dtype=object)
        self.ok = np.array([is_matchable(v) for v in vs], dtype=bool) & (
            self.active < self.capacity)
        self.load = self.loads(0)
        self.stale = 0      # rows switched off by :meth:`changed`

    _ROWS = ("ids", "need_masks", "mode_masks", "birth_buddy", "availability", "active",
             "capacity", "sites", "ok", "load")

    def changed(self, volunteer_ids, fresh):
        """A new pool where these volunteers' rows are switched off and
        ``fresh`` (their facts now, those who can still take a parent) are
        added at the end: no other row is rebuilt."""
        added = Pool(fresh)
        pool = Pool.__new__(Pool)
        count = len(self)
        pool.volunteers = self.volunteers + added.volunteers
        pool.none = np.zeros(len(pool.volunteers), dtype=bool)
        for name in ("districts", "areas", "languages"):
            old, new = getattr(self, name), getattr(added, name)
            setattr(pool, name, {key: np.concatenate([old.get(key, self.none),
                                                      new.get(key, added.none)])
                                 for key in old.keys() | new.keys()})
        for name in self._ROWS:
            setattr(pool, name, np.concatenate([getattr(self, name), getattr(added, name)]))
        pool.position = dict(self.position)
        pool.stale = self.stale
        for volunteer_id in volunteer_ids:
            if volunteer_id in pool.position:
                pool.ok[pool.position.pop(volunteer_id)] = False
                pool.stale += 1
        pool.position.update({volunteer_id: count + index
                              for volunteer_id, index in added.position.items()})
        return pool

    def __len__(self):
        return len(self.volunteers)

    def count(self):
        """Volunteers who can take one more parent."""
        return int(self.ok.sum())

    def places(self):
        """Their places left, all told."""
        return int(np.where(self.ok, self.capacity - self.active, 0).sum())

    def loads(self, extra):
        """Each volunteer's load score after ``extra`` more parents."""
        with np.errstate(divide="ignore", invalid="ignore"):
            load = np.where(self.capacity > 0,
                            np.maximum(0.0, 1.0 - (self.active + extra)
                                       / np.maximum(self.capacity, 1)), 0.0)
        return load

    def row(self, referral):
        """({component: values over the volunteers} without load, feasible)."""
        area = np.where(self.districts.get(referral["area"], self.none), 1.0,
                        np.where(self.areas.get(postcode_area(referral["area"]), self.none),
                                 0.5, 0.0))
        speaks_it = self.languages.get(primary_language(referral["preferred_language"]),
                                       self.none)
        values = {
            "area": area, "language": speaks_it.astype(float),
            "shared_experience": _share(_bits(referral["needs"], _NEED_BIT),
                                        self.need_masks, 0.0),
            "modes": _share(_bits(referral["preferred_support"], _MODE_BIT),
                            self.mode_masks, 1.0),
            "birth_buddy": self.birth_buddy if referral.get("pregnant") else None,
            "availability": self.availability,
        }
        feasible = self.ok & (self.sites == referral["site_id"])
        if not referral["interpreter_needed"]:
            feasible = feasible & speaks_it
        for volunteer_id in referral.get("declined_by", ()):
            if volunteer_id in self.position:
                feasible[self.position[volunteer_id]] = False
        return values, feasible


def _row_weight(referral, weights):
    """The total weight of the components that apply to this referral."""
    return sum(weights[name] for name in COMPONENTS
               if name != "birth_buddy" or referral.get("pregnant"))


def pair_matrices(referrals, volunteers, weights):
    """(weighted points without load, feasible, total weight) for every
    referral x volunteer pair (the total weight per referral): whole arrays
    at a time. ``volunteers``: a list or a :class:`Pool`."""
    pool = volunteers if isinstance(volunteers, Pool) else Pool(volunteers)
    base = np.zeros((len(referrals), len(pool)))
    feasible = np.zeros((len(referrals), len(pool)), dtype=bool)
    for index, referral in enumerate(referrals):
        values, feasible[index] = pool.row(referral)
        for name, value in values.items():
            if value is not None:
                base[index] += weights[name] * value
    totals = np.array([_row_weight(r, weights) for r in referrals], dtype=float)
    return base, feasible, totals


# -- suggestions ---------------------------------------------------------------

def suggest(referral, volunteers, weights, limit):
    """(how many volunteers pass every hard rule, the best ``limit`` of them
    ranked with their scores broken down and their hard rules). Scored as
    arrays in one pass; the best are then broken down one by one.
    ``volunteers``: a list or a :class:`Pool`."""
    pool = volunteers if isinstance(volunteers, Pool) else Pool(volunteers)
    base, feasible, totals = pair_matrices([referral], pool, weights)
    candidates = np.flatnonzero(feasible[0])
    if not len(candidates) or totals[0] <= 0:
        best = candidates
    else:
        scores = (base[0, candidates] + weights["load"] * pool.load[candidates]) / totals[0]
        if len(candidates) > limit:
            # Every candidate scoring at least the limit-th best (ties kept,
            # they are ordered by id below).
            kth = np.partition(-scores, limit - 1)[limit - 1]
            best = candidates[-scores <= kth + 1e-12]
        else:
            best = candidates
    prepared = _prepare(referral)
    ranked = []
    for index in best:
        volunteer = pool.volunteers[index]
        values = _components(prepared, volunteer)
        ranked.append((-weighted_score(values, weights), volunteer["_id"], volunteer,
                       values, hard_rules(referral, volunteer)))
    ranked.sort(key=lambda row: (row[0], row[1]))
    return len(candidates), [{
        "volunteer_id": volunteer["_id"],
        "score": round(-negative, 4),
        "breakdown": breakdown(values, weights),
        "hard_rules": rules,
        "active": volunteer["active"],
        "capacity": volunteer["capacity"],
        "birth_buddy": volunteer.get("birth_buddy", False),
        "available_days": volunteer.get("available_days", []),
    } for negative, _, volunteer, values, rules in ranked[:limit]]


# -- the match plan ------------------------------------------------------------

def plan(referrals, volunteers, weights):
    """The assignment of referrals to volunteers' places left that maximises
    the total score over pairs passing every hard rule, no volunteer over
    capacity. Returns (pairs, unmatched referral ids); each pair is
    (referral, volunteer, extra, values), ``extra`` the number of parents
    the plan gives that volunteer before this one. ``volunteers``: a list
    or a :class:`Pool`."""
    pool = volunteers if isinstance(volunteers, Pool) else Pool(volunteers)
    if not referrals:
        return [], []
    places = np.where(pool.ok, pool.capacity - pool.active, 0)
    if not places.sum():
        return [], [r["_id"] for r in referrals]
    # One column per place left: the k-th place of a volunteer carries the
    # load the volunteer would have after k more parents.
    slot_volunteer = np.repeat(np.arange(len(pool)), places)
    starts = np.cumsum(places) - places
    slot_extra = np.arange(len(slot_volunteer)) - np.repeat(starts, places)
    base, feasible, totals = pair_matrices(referrals, pool, weights)
    n_rows = len(referrals)
    scale = 1.0 / np.maximum(totals, 1e-12)

    def place_scores(rows, volunteers, extras):
        """Scores of rows on volunteers' (extras+1)-th places, -inf where a
        hard rule fails or the volunteer has no such place. ``volunteers``
        and ``extras``: one per column, or one per row and column."""
        load = np.maximum(0.0, 1.0 - (pool.active[volunteers] + extras)
                          / np.maximum(pool.capacity[volunteers], 1))
        if volunteers.ndim == 1:     # the same columns for every row: a slice
            scores = (base[:, volunteers] + weights["load"] * load) * scale[:, None]
            ok = feasible[:, volunteers] & (extras < places[volunteers])
        else:
            scores = (base[rows, volunteers] + weights["load"] * load) * scale[rows]
            ok = feasible[rows, volunteers] & (extras < places[volunteers])
        return np.where(ok, scores, -np.inf)

    # Each row needs only its n_rows best places: whatever optimum uses a
    # worse one, one of those n_rows is free (the other rows take at most
    # n_rows - 1), scores at least as much, and can take its place. A
    # volunteer's first place is never worse than a later one, so those
    # places are among the places of the row's n_rows best volunteers.
    every = np.arange(n_rows)[:, None]
    first = place_scores(every, np.arange(len(pool)), 0)
    if len(pool) > n_rows:
        near = np.argpartition(-first, n_rows - 1, axis=1)[:, :n_rows]
    else:
        near = np.broadcast_to(np.arange(len(pool)), (n_rows, len(pool)))
    most = int(places.max())
    volunteers = np.repeat(near, most, axis=1)
    extras = np.tile(np.arange(most), near.shape[1])[None, :]
    scores = place_scores(every, volunteers, extras)
    slots = starts[volunteers] + extras
    if scores.shape[1] > n_rows:
        best = np.argpartition(-scores, n_rows - 1, axis=1)[:, :n_rows]
        slots = np.take_along_axis(slots, best, 1)[
            np.isfinite(np.take_along_axis(scores, best, 1))]
    else:
        slots = np.broadcast_to(slots, scores.shape)[np.isfinite(scores)]
    columns = np.unique(slots)
    kept = place_scores(every, slot_volunteer[columns], slot_extra[columns])
    # One "unassigned" column per row, worth 0; infeasible pairs are never worth it.
    matrix = np.zeros((n_rows, len(columns) + n_rows))
    matrix[:, :len(columns)] = np.where(np.isfinite(kept), kept, -1e9)
    rows, chosen = linear_sum_assignment(matrix, maximize=True)
    chosen_pairs = [(row, columns[column]) for row, column in zip(rows, chosen)
                    if column < len(columns) and np.isfinite(kept[row, column])]
    # A volunteer's places fill in the order the solver chose them (a place
    # it skipped is closed up, which only raises the load score).
    chosen_pairs.sort(key=lambda pair: (slot_volunteer[pair[1]], slot_extra[pair[1]]))
    pairs, matched, taken = [], set(), {}
    for row, slot in chosen_pairs:
        volunteer = pool.volunteers[slot_volunteer[slot]]
        extra = taken.get(volunteer["_id"], 0)
        taken[volunteer["_id"]] = extra + 1
        values = components(referrals[row], volunteer, extra)
        pairs.append((referrals[row], volunteer, extra, values))
        matched.add(row)
    pairs.sort(key=lambda pair: -weighted_score(pair[3], weights))
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


def _confirmed_event(match, volunteer_user_id, now):
    return new_event("match.confirmed", {
        "match_id": match["_id"], "referral_id": match["referral_id"],
        "volunteer_id": match["volunteer_id"], "volunteer_user_id": volunteer_user_id,
        "score": match["score"], "confirmed_at": now.isoformat()},
        site_id=match["site_id"], subject=match["_id"], now=now)


def confirm_match(demand, volunteer, weights, match_id, confirmed_by, now, propose=False):
    """A new match and its event: open with ``match.confirmed``, or, to
    ask the volunteer first, proposed with ``match.proposed`` (it holds a
    place either way). Conflict if the referral is not waiting or the
    volunteer fails a hard rule. ``demand`` as scored today
    (:func:`with_pregnancy`)."""
    if demand["status"] != WAITING:
        raise Conflict(f"Referral {demand['_id']} is {demand['status']}, not waiting.",
                       {"referral_id": [f"status is {demand['status']}"]})
    failed = failed_rules(hard_rules(demand, volunteer))
    if failed:
        raise Conflict("The volunteer does not pass every hard rule.",
                       {"hard_rules": failed})
    values = components(demand, volunteer)
    score = round(weighted_score(values, weights), 4)
    match = {"_id": match_id, "site_id": demand["site_id"],
             "referral_id": demand["_id"], "volunteer_id": volunteer["_id"],
             "status": PROPOSED if propose else OPEN, "score": score,
             "breakdown": breakdown(values, weights), "needs_rematch": False,
             "rematch_reason": None, "confirmed_by": confirmed_by,
             "proposed_at": now if propose else None,
             "confirmed_at": None if propose else now, "closed_at": None,
             "close_reason": None}
    user_id = volunteer.get("user_id")
    if propose:
        event = new_event("match.proposed", {
            "match_id": match_id, "referral_id": demand["_id"],
            "volunteer_id": volunteer["_id"], "volunteer_user_id": user_id,
            "proposed_at": now.isoformat()}, site_id=demand["site_id"],
            subject=match_id, now=now)
    else:
        event = _confirmed_event(match, user_id, now)
    return match, event


def accept_match(match, volunteer_user_id, now):
    """The volunteer accepts a proposed match: (changes, ``match.confirmed``)."""
    if match["status"] != PROPOSED:
        raise Conflict(f"Match {match['_id']} is {match['status']}, not proposed.",
                       {"status": [match["status"]]})
    changes = {"status": OPEN, "confirmed_at": now}
    return changes, _confirmed_event(dict(match, **changes), volunteer_user_id, now)


def _require_live(match):
    if match["status"] not in LIVE:
        raise Conflict(f"Match {match['_id']} is {match['status']}, not open.",
                       {"status": [match["status"]]})


def decline_match(match, reason, now):
    """The changes to a proposed or open match the volunteer declines, and
    its event."""
    _require_live(match)
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
    _require_live(match)
    rematch = reason in MATCH_REMATCH_REASONS
    changes = {"status": ENDED, "closed_at": now, "close_reason": reason,
               "needs_rematch": False}
    event = new_event("match.ended", {
        "match_id": match["_id"], "referral_id": match["referral_id"],
        "volunteer_id": match["volunteer_id"], "reason": reason,
        "rematch": rematch, "ended_at": now.isoformat()},
        site_id=match["site_id"], subject=match["_id"], now=now)
    return changes, event, rematch


# Why a referral left the waiting list (its events) -> why its match ends.
REFERRAL_CLOSE_TO_MATCH_END = {"completed": "completed", "parent_ended": "parent_ended",
                               "moved_away": "parent_moved", "safeguarding": "safeguarding"}


def match_end_reason_for_closed_referral(reason):
    """A referral closed while matched: its match ends with this reason."""
    return REFERRAL_CLOSE_TO_MATCH_END.get(reason, "other")
