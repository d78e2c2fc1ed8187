"""The outcome measures, as data, and their scoring: pure (no nameko, no
pymongo, no clock).

Each answer is the position of the option the parent chose, as printed on
the form, 0 for the first option. Every item lists the score of each of its
options in printed order, so a reversed item is visible in the data and
never inferred from its position.

- WEMWBS: 14 items, options scored 1-5 from the first; total 14-70.
- SWEMWBS: WEMWBS items 1, 2, 3, 6, 7, 9 and 11 alone (7 answers), raw 7-35,
  converted to the metric score with the published table
  (``swemwbs-conversion.csv``, copied from the reference, loaded here).
- HADS: 14 items scored 0-3; the first option scores 0 on items 2, 4, 7, 9,
  12 and 14, and 3 on the others. Anxiety = odd items, depression = even
  items, each 0-21; bands 0-7 normal, 8-10 borderline, 11-21 abnormal.
- EPDS: 10 items scored 0-3; items 1, 2 and 4 from the first answer down,
  items 3 and 5-10 reversed. Total 0-30; 13 or more flags possible
  depression; item 10 (self-harm) above 0 sets ``self_harm_risk``.
"""
import csv
import os
from dataclasses import dataclass

CONVERSION_FILE = os.path.join(os.path.dirname(__file__), "swemwbs-conversion.csv")

UP_1_5 = (1, 2, 3, 4, 5)
UP_0_3 = (0, 1, 2, 3)
DOWN_3_0 = (3, 2, 1, 0)


@dataclass(frozen=True)
class Item:
    number: int            # as printed on this instrument's form, from 1
    options: tuple         # the score of each option, in printed order
    source: str = ""       # e.g. "WEMWBS item 6" for a SWEMWBS item


@dataclass(frozen=True)
class Instrument:
    key: str
    name: str
    items: tuple
    total_range: tuple
    description: str


def load_swemwbs_conversion(path=CONVERSION_FILE):
    """{raw: metric} from the published table; every raw score 7-35 once."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    table = {}
    for row in rows:
        raw = int(row["raw"])
        if raw in table:
            raise ValueError(f"SWEMWBS conversion: raw {raw} appears twice")
        table[raw] = float(row["metric"])
    if sorted(table) != list(range(7, 36)):
        raise ValueError("SWEMWBS conversion: the table must cover raw 7-35")
    return table


SWEMWBS_CONVERSION = load_swemwbs_conversion()

WEMWBS_ITEMS = tuple(Item(n, UP_1_5) for n in range(1, 15))
SWEMWBS_FROM_WEMWBS = (1, 2, 3, 6, 7, 9, 11)
SWEMWBS_ITEMS = tuple(Item(position, UP_1_5, f"WEMWBS item {wemwbs}")
                      for position, wemwbs in enumerate(SWEMWBS_FROM_WEMWBS, start=1))

# Each item's option scores as printed on the HADS form (0 for the first
# option on items 2, 4, 7, 9, 12 and 14; 3 on the others).
HADS_OPTION_SCORES = {
    1: DOWN_3_0, 2: UP_0_3, 3: DOWN_3_0, 4: UP_0_3, 5: DOWN_3_0, 6: DOWN_3_0,
    7: UP_0_3, 8: DOWN_3_0, 9: UP_0_3, 10: DOWN_3_0, 11: DOWN_3_0, 12: UP_0_3,
    13: DOWN_3_0, 14: UP_0_3,
}
HADS_ANXIETY_ITEMS = (1, 3, 5, 7, 9, 11, 13)
HADS_DEPRESSION_ITEMS = (2, 4, 6, 8, 10, 12, 14)
HADS_ITEMS = tuple(Item(n, HADS_OPTION_SCORES[n]) for n in range(1, 15))

# EPDS: items 1, 2 and 4 score 0-3 from the first answer; the rest reversed.
EPDS_OPTION_SCORES = {
    1: UP_0_3, 2: UP_0_3, 3: DOWN_3_0, 4: UP_0_3, 5: DOWN_3_0, 6: DOWN_3_0,
    7: DOWN_3_0, 8: DOWN_3_0, 9: DOWN_3_0, 10: DOWN_3_0,
}
EPDS_ITEMS = tuple(Item(n, EPDS_OPTION_SCORES[n]) for n in range(1, 11))
EPDS_POSSIBLE_DEPRESSION_AT = 13
EPDS_SELF_HARM_ITEM = 10

INSTRUMENTS = {
    "wemwbs": Instrument("wemwbs", "Warwick-Edinburgh Mental Wellbeing Scale",
                         WEMWBS_ITEMS, (14, 70), "14 items, each 1-5; total 14-70"),
    "swemwbs": Instrument("swemwbs", "Short Warwick-Edinburgh Mental Wellbeing Scale",
                          SWEMWBS_ITEMS, (7.0, 35.0),
                          "7 items (WEMWBS 1, 2, 3, 6, 7, 9, 11), raw 7-35, "
                          "converted to the metric score"),
    "hads": Instrument("hads", "Hospital Anxiety and Depression Scale", HADS_ITEMS,
                       (0, 21), "14 items, each 0-3; anxiety and depression 0-21 "
                       "each; 0-7 normal, 8-10 borderline, 11-21 abnormal"),
    "epds": Instrument("epds", "Edinburgh Postnatal Depression Scale", EPDS_ITEMS,
                       (0, 30), "10 items, each 0-3; total 0-30; 13+ possible "
                       "depression; item 10 above 0: self-harm risk"),
}


def answer_errors(instrument_key, answers):
    """Field errors for a list of answers, each item named
    (``answers.<item number>``); {} if every answer is there and in range."""
    instrument = INSTRUMENTS[instrument_key]
    count = len(instrument.items)
    if not isinstance(answers, list):
        return {"answers": [f"Must be a list of {count} answers, one per item."]}
    errors = {}
    if len(answers) > count:
        errors["answers"] = [f"{instrument_key.upper()} has {count} items; "
                             f"got {len(answers)} answers."]
    for item in instrument.items:
        index = item.number - 1
        top = len(item.options) - 1
        value = answers[index] if index < len(answers) else None
        if value is None:
            errors[f"answers.{item.number}"] = [f"Missing answer to item {item.number}."]
        elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
            errors[f"answers.{item.number}"] = [
                f"Item {item.number}: the position of the option chosen, "
                f"0 (the first) to {top}; got {value!r}."]
    return errors


def hads_band(score):
    if score <= 7:
        return "normal"
    if score <= 10:
        return "borderline"
    return "abnormal"


def score(instrument_key, answers):
    """Score a complete, valid list of answers (see :func:`answer_errors`).

    Returns ``{"item_scores", "scores", "bands", "flags", "self_harm_risk"}``.
    """
    instrument = INSTRUMENTS[instrument_key]
    errors = answer_errors(instrument_key, answers)
    if errors:
        raise ValueError(f"invalid answers: {errors}")
    item_scores = [item.options[answer] for item, answer in zip(instrument.items, answers)]
    by_item = dict(zip((item.number for item in instrument.items), item_scores))
    bands, flags, self_harm_risk = {}, [], False
    if instrument_key == "wemwbs":
        scores = {"total": sum(item_scores)}
    elif instrument_key == "swemwbs":
        raw = sum(item_scores)
        scores = {"raw": raw, "metric": SWEMWBS_CONVERSION[raw]}
    elif instrument_key == "hads":
        scores = {"anxiety": sum(by_item[n] for n in HADS_ANXIETY_ITEMS),
                  "depression": sum(by_item[n] for n in HADS_DEPRESSION_ITEMS)}
        for scale in ("anxiety", "depression"):
            bands[scale] = hads_band(scores[scale])
            if bands[scale] != "normal":
                flags.append(f"hads_{scale}_{bands[scale]}")
    elif instrument_key == "epds":
        scores = {"total": sum(item_scores)}
        if scores["total"] >= EPDS_POSSIBLE_DEPRESSION_AT:
            flags.append("possible_depression")
        self_harm_risk = by_item[EPDS_SELF_HARM_ITEM] > 0
        if self_harm_risk:
            flags.append("self_harm_risk")
    else:  # pragma: no cover - INSTRUMENTS names every key above
        raise KeyError(instrument_key)
    return {"item_scores": item_scores, "scores": scores, "bands": bands,
            "flags": flags, "self_harm_risk": self_harm_risk}


def describe(licensed):
    """The instruments, each with its items' option counts and whether the
    site holds the licence to use it."""
    licensed = set(licensed or ())
    return [{"instrument": key, "name": instrument.name,
             "description": instrument.description,
             "items": len(instrument.items),
             "options_per_item": [len(item.options) for item in instrument.items],
             "licensed": key in licensed}
            for key, instrument in INSTRUMENTS.items()]
