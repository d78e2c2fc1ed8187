"""Every scoring rule of the outcome measures against worked examples.

The expected scores here are written out from the issue's text and the
printed forms, not computed with the code under test.
"""
import csv
import os

import pytest

from services.journeys import instruments
from services.journeys.instruments import answer_errors, score

# -- WEMWBS -----------------------------------------------------------------------


def test_wemwbs_scores_each_option_1_to_5_from_the_first():
    assert score("wemwbs", [0] * 14)["scores"] == {"total": 14}
    assert score("wemwbs", [4] * 14)["scores"] == {"total": 70}
    answers = [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1, 2, 3]
    result = score("wemwbs", answers)
    assert result["item_scores"] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4]
    assert result["scores"] == {"total": 40}
    assert result["flags"] == [] and result["self_harm_risk"] is False


def test_wemwbs_needs_fourteen_answers_each_0_to_4():
    assert answer_errors("wemwbs", [2] * 14) == {}
    errors = answer_errors("wemwbs", [2] * 12 + [5, -1])
    assert set(errors) == {"answers.13", "answers.14"}
    assert set(answer_errors("wemwbs", [2] * 13)) == {"answers.14"}


# -- SWEMWBS ----------------------------------------------------------------------

REFERENCE = "/work/shared/reference/swemwbs-conversion.csv"
PACKAGED = os.path.join(os.path.dirname(instruments.__file__), "swemwbs-conversion.csv")


def _table_rows(path):
    with open(path, newline="") as handle:
        return [(int(r["raw"]), float(r["metric"])) for r in csv.DictReader(handle)]


def answers_for_raw(raw):
    """Seven answers (0-4 each, scoring 1-5) whose item scores add up to ``raw``."""
    left, answers = raw - 7, []
    for _ in range(7):
        step = min(4, left)
        answers.append(step)
        left -= step
    assert left == 0
    return answers


def test_swemwbs_is_the_seven_wemwbs_items_1_2_3_6_7_9_11():
    assert [item.source for item in instruments.SWEMWBS_ITEMS] == [
        "WEMWBS item 1", "WEMWBS item 2", "WEMWBS item 3", "WEMWBS item 6",
        "WEMWBS item 7", "WEMWBS item 9", "WEMWBS item 11"]
    assert answer_errors("swemwbs", [1] * 7) == {}
    assert "answers" in answer_errors("swemwbs", [1] * 14)   # not the whole WEMWBS


@pytest.mark.parametrize("raw,metric", _table_rows(PACKAGED))
def test_every_swemwbs_row_of_the_table_round_trips(raw, metric):
    result = score("swemwbs", answers_for_raw(raw))
    assert result["scores"] == {"raw": raw, "metric": metric}
    assert sum(result["item_scores"]) == raw


def test_the_swemwbs_table_is_the_published_one():
    rows = dict(_table_rows(PACKAGED))
    assert sorted(rows) == list(range(7, 36))
    # Spot values of the published table.
    assert (rows[7], rows[8], rows[14], rows[20], rows[27], rows[34], rows[35]) == (
        7.00, 9.51, 15.32, 18.59, 24.11, 32.55, 35.00)
    if os.path.exists(REFERENCE):
        assert _table_rows(REFERENCE) == _table_rows(PACKAGED)


def test_a_broken_swemwbs_table_is_refused(tmp_path):
    bad = tmp_path / "table.csv"
    bad.write_text("raw,metric\n7,7.00\n8,9.51\n")
    with pytest.raises(ValueError):
        instruments.load_swemwbs_conversion(str(bad))


# -- HADS -------------------------------------------------------------------------

# On the printed form, the first option scores 0 on these items, 3 on the others.
HADS_FIRST_OPTION_ZERO = {2, 4, 7, 9, 12, 14}
HADS_ANXIETY = (1, 3, 5, 7, 9, 11, 13)
HADS_DEPRESSION = (2, 4, 6, 8, 10, 12, 14)


def hads_answer(item, item_score):
    """The option position that scores ``item_score`` on ``item``."""
    return item_score if item in HADS_FIRST_OPTION_ZERO else 3 - item_score


def hads_answers(item_scores):
    return [hads_answer(item, s) for item, s in enumerate(item_scores, start=1)]


@pytest.mark.parametrize("item", range(1, 15))
def test_hads_each_items_options_score_as_printed(item):
    expected = [0, 1, 2, 3] if item in HADS_FIRST_OPTION_ZERO else [3, 2, 1, 0]
    assert instruments.HADS_ITEMS[item - 1].options == tuple(expected)
    zeros = hads_answers([0] * 14)
    for position, item_score in enumerate(expected):
        answers = list(zeros)
        answers[item - 1] = position
        result = score("hads", answers)
        assert result["item_scores"][item - 1] == item_score
        scale = "anxiety" if item in HADS_ANXIETY else "depression"
        other = "depression" if scale == "anxiety" else "anxiety"
        assert result["scores"][scale] == item_score and result["scores"][other] == 0


def test_hads_worked_example_all_first_options():
    # Every first option: 3 on items 1,3,5,6,8,10,11,13; 0 on 2,4,7,9,12,14.
    result = score("hads", [0] * 14)
    # anxiety: items 1,3,5,11,13 score 3, items 7,9 score 0 -> 15
    # depression: items 6,8,10 score 3, items 2,4,12,14 score 0 -> 9
    assert result["scores"] == {"anxiety": 15, "depression": 9}
    assert result["bands"] == {"anxiety": "abnormal", "depression": "borderline"}
    assert result["flags"] == ["hads_anxiety_abnormal", "hads_depression_borderline"]


def _scale_scores(total):
    """Seven item scores (0-3) adding up to ``total``."""
    out, left = [], total
    for _ in range(7):
        out.append(min(3, left))
        left -= out[-1]
    return out


@pytest.mark.parametrize("total,band", [(0, "normal"), (7, "normal"), (8, "borderline"),
                                        (10, "borderline"), (11, "abnormal"),
                                        (21, "abnormal")])
def test_hads_band_edges_on_both_scales(total, band):
    item_scores = [0] * 14
    for item, s in zip(HADS_ANXIETY, _scale_scores(total)):
        item_scores[item - 1] = s
    result = score("hads", hads_answers(item_scores))
    assert result["scores"] == {"anxiety": total, "depression": 0}
    assert result["bands"] == {"anxiety": band, "depression": "normal"}
    assert result["flags"] == ([] if band == "normal" else [f"hads_anxiety_{band}"])
    item_scores = [0] * 14
    for item, s in zip(HADS_DEPRESSION, _scale_scores(total)):
        item_scores[item - 1] = s
    result = score("hads", hads_answers(item_scores))
    assert result["scores"] == {"anxiety": 0, "depression": total}
    assert result["bands"]["depression"] == band


# -- EPDS -------------------------------------------------------------------------

EPDS_FROM_FIRST = {1, 2, 4}          # 0,1,2,3 from the first answer
# the others (3, 5-10) are reversed: 3,2,1,0


def epds_answer(item, item_score):
    return item_score if item in EPDS_FROM_FIRST else 3 - item_score


@pytest.mark.parametrize("item", range(1, 11))
def test_epds_each_item_scores_as_printed(item):
    expected = [0, 1, 2, 3] if item in EPDS_FROM_FIRST else [3, 2, 1, 0]
    zeros = [epds_answer(i, 0) for i in range(1, 11)]
    for position, item_score in enumerate(expected):
        answers = list(zeros)
        answers[item - 1] = position
        result = score("epds", answers)
        assert result["item_scores"][item - 1] == item_score
        assert result["scores"] == {"total": item_score}


def test_epds_worked_examples():
    assert score("epds", [0] * 10)["scores"] == {"total": 21}   # 0+0+3+0+3*6
    assert score("epds", [3, 3, 0, 3, 0, 0, 0, 0, 0, 0])["scores"] == {"total": 30}
    assert score("epds", [0, 0, 3, 0, 3, 3, 3, 3, 3, 3])["scores"] == {"total": 0}


@pytest.mark.parametrize("total,flagged", [(0, False), (12, False), (13, True), (30, True)])
def test_epds_possible_depression_from_13(total, flagged):
    item_scores, left = [], total
    for _ in range(9):            # items 1-9 carry the total; item 10 scores 0
        item_scores.append(min(3, left))
        left -= item_scores[-1]
    item_scores.append(left)
    assert left <= 3
    answers = [epds_answer(i, s) for i, s in enumerate(item_scores, start=1)]
    result = score("epds", answers)
    assert result["scores"] == {"total": total}
    assert ("possible_depression" in result["flags"]) is flagged


@pytest.mark.parametrize("answer,risk", [(0, True), (1, True), (2, True), (3, False)])
def test_epds_item_10_any_answer_but_the_last_is_a_self_harm_risk(answer, risk):
    answers = [epds_answer(i, 0) for i in range(1, 10)] + [answer]
    result = score("epds", answers)
    assert result["item_scores"][9] == 3 - answer
    assert result["self_harm_risk"] is risk
    assert ("self_harm_risk" in result["flags"]) is risk


# -- answers refused, item named --------------------------------------------------


def test_missing_and_out_of_range_answers_name_the_item():
    assert answer_errors("epds", [0] * 9 + [4]) == {"answers.10": [
        "Item 10: the position of the option chosen, 0 (the first) to 3; got 4."]}
    errors = answer_errors("epds", [0, None, 1])
    assert set(errors) == {f"answers.{n}" for n in (2, 4, 5, 6, 7, 8, 9, 10)}
    assert errors["answers.4"] == ["Missing answer to item 4."]
    for bad in (-1, 1.5, "2", True, [1], {"a": 1}):
        assert set(answer_errors("hads", [0] * 13 + [bad])) == {"answers.14"}, bad
    assert "answers" in answer_errors("hads", [0] * 15)
    assert answer_errors("hads", "0" * 14) == {"answers": [
        "Must be a list of 14 answers, one per item."]}
    with pytest.raises(ValueError):
        score("epds", [0] * 9)


def test_instruments_are_described_with_the_sites_licences():
    rows = {r["instrument"]: r for r in instruments.describe(["epds", "swemwbs"])}
    assert {k: (r["items"], r["licensed"]) for k, r in rows.items()} == {
        "wemwbs": (14, False), "swemwbs": (7, True), "hads": (14, False),
        "epds": (10, True)}
    assert rows["hads"]["options_per_item"] == [4] * 14
    assert rows["wemwbs"]["options_per_item"] == [5] * 14
