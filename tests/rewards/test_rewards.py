"""The reward: intervals, question fields, turn splitting and judging, each component, the registry, specs and scores.

Table-driven like open-r1's tests/rewards/test_rewards.py: one table of rows per function, each row named by
what it checks. Rollouts are written as verl hands them to the reward (`decoded_rollout`: model
turns with their observations inline). The geometry used throughout: width 4 and 640 s, so a low
segment (leaf) lasts 10 s, a medium one 40 s and a high one 160 s; (1, 1, 1) is [0, 10] s.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from launch.compose import compose_config, to_container
from rewards import registry
from rewards.components import VISIT_KINDS
from rewards.question import AnswerKey, RewardInputError, read_question
from rewards.registry import COMPONENTS, RESERVED_NAMES, get_component, register
from rewards.rollout import (
    COUNT_KEYS,
    Rollout,
    decoded_rollout,
    judge_rollout,
    rollout_counts,
    split_turns,
)
from rewards.score import compute_score, score_rollout
from rewards.spec import PRESET_DIR, RewardSpecError, default_spec, spec_for_kwargs, spec_from_dict
from tools.environment.intervals import f1_of_overlap, merge, overlap_length, total_length
from tools.environment.prompts import tool_failure_observation

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRESET_NAMES = sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))
OPTIONS = ("a dog", "the red car", "a cat", "a bird")
WIDTH, DURATION = 4, 640.0
DATA_SOURCE = "lvbench"
# Marks a key of extra_info that a row removes.
MISSING = object()


def think(action: str, thought: str = "t") -> str:
    """A well-formed model turn: a thought, then `action`."""
    return f"<think>{thought}</think>{action}"


def call(*ids: int) -> str:
    """A well-formed get_caption turn for segment `ids`."""
    return think(f"<tool>get_caption(({', '.join(map(str, ids))}))</tool>")


def qa(*ids: int, query: str = "what colour is the car?") -> str:
    """A well-formed video_qa turn asking `query` about leaf `ids`."""
    return think(f'<tool>video_qa(({", ".join(map(str, ids))}), "{query}")</tool>')


def answer(text: str = "B") -> str:
    """A well-formed answer turn holding `text`."""
    return think(f"<answer>{text}</answer>")


def rollout(*turns: str) -> str:
    """The decoded rollout of `turns`: every turn but an answer is followed by an observation."""
    return decoded_rollout([(turn, "" if "<answer>" in turn else "Low caption (1, 1, 1): a car.") for turn in turns])


def extra(**overrides: object) -> dict:
    """extra_info of the standard question (4 options, width 4, 640 s, one clue [0, 10] s), with `overrides`."""
    fields = {"video_uid": "vid-1", "width": WIDTH, "duration": DURATION, "clue_intervals": [[0.0, 10.0]],
              "options": list(OPTIONS), "index": 7}
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not MISSING}


def question(**overrides: object) -> AnswerKey:
    """The standard question whose ground truth is B, with extra_info `overrides`."""
    return read_question("B", extra(**overrides))


def judged(*turns: str) -> Rollout:
    """The standard question's judgement of the rollout made of `turns`."""
    return judge_rollout(rollout(*turns), WIDTH)


def component(name: str, turns: tuple[str, ...], target: AnswerKey | None = None, **options: object) -> float | None:
    """The value of component `name` on the rollout of `turns`, with its default options updated by `options`."""
    chosen = COMPONENTS[name]
    return chosen(judged(*turns), target or question(), {**chosen.defaults, **options})


@cache
def _composed(name: str) -> dict:
    """The `reward` section of the sft config composed by Hydra with `reward=NAME` (cached)."""
    return to_container(compose_config("sft", [f"reward={name}"], False).config)["reward"]


def preset(name: str) -> dict:
    """The preset `name` as verl's reward_kwargs carry it: the composed `reward` config, a fresh copy."""
    return copy.deepcopy(_composed(name))


def score(text: str, ground_truth: object = "B", info: dict | None = None, **kwargs: object) -> dict[str, float]:
    """compute_score of `text` for the standard question (or `info`) under the spec in `kwargs`."""
    return compute_score(DATA_SOURCE, text, ground_truth, extra() if info is None else info, **kwargs)


# ---------------------------------------------------------------------------------------------------------------
# tools.environment.intervals


@pytest.mark.parametrize(("intervals", "gap", "expected"), [
    pytest.param([], 0.0, [], id="empty"),
    pytest.param([(0, 1)], 0.0, [(0, 1)], id="single"),
    pytest.param([(0, 1), (1, 2)], 0.0, [(0, 2)], id="touching-join"),
    pytest.param([(0, 5), (3, 8)], 0.0, [(0, 8)], id="overlapping-join"),
    pytest.param([(0, 10), (2, 3)], 0.0, [(0, 10)], id="contained"),
    pytest.param([(0, 1), (0, 1)], 0.0, [(0, 1)], id="duplicates-once"),
    pytest.param([(5, 6), (0, 1), (3, 4)], 0.0, [(0, 1), (3, 4), (5, 6)], id="unsorted-sorted"),
    pytest.param([(3, 8), (0, 5)], 0.0, [(0, 8)], id="unsorted-overlapping"),
    pytest.param([(0, 1), (2, 3)], 0.0, [(0, 1), (2, 3)], id="apart-without-gap"),
    pytest.param([(0, 1), (5.9, 7)], 5.0, [(0, 7)], id="closer-than-gap-join"),
    pytest.param([(0, 1), (6, 7)], 5.0, [(0, 1), (6, 7)], id="exactly-gap-apart-stay-apart"),
    pytest.param([(6, 7), (0, 1), (3, 4)], 2.5, [(0, 7)], id="unsorted-chain-within-gap"),
    pytest.param([(0, 10), (2, 3), (12, 14)], 5.0, [(0, 14)], id="gap-measured-from-furthest-end"),
])
def test_merge(intervals: list, gap: float, expected: list) -> None:
    """merge returns the sorted disjoint union, joining intervals that touch, overlap or lie closer than `gap`."""
    assert merge(intervals, gap) == expected


@pytest.mark.parametrize(("first", "second", "expected"), [
    pytest.param([], [(0, 1)], 0.0, id="empty"),
    pytest.param([(0, 1)], [(2, 3)], 0.0, id="disjoint"),
    pytest.param([(0, 5)], [(5, 10)], 0.0, id="touching"),
    pytest.param([(0, 10)], [(0, 10)], 10.0, id="identical"),
    pytest.param([(0, 10)], [(5, 15)], 5.0, id="partial"),
    pytest.param([(0, 100)], [(10, 20), (30, 40), (90, 120)], 30.0, id="one-spans-several"),
    pytest.param([(0, 2), (4, 6), (8, 10)], [(1, 5), (7, 9)], 3.0, id="interleaved"),
])
def test_overlap_length(first: list, second: list, expected: float) -> None:
    """overlap_length is the length of the intersection, the same either way round."""
    assert overlap_length(first, second) == pytest.approx(expected)
    assert overlap_length(second, first) == pytest.approx(expected)


@pytest.mark.parametrize(("visited", "clues", "expected"), [
    pytest.param([(0, 10)], [(0, 10)], (1.0, 1.0, 1.0), id="perfect"),
    pytest.param([(0, 5)], [(0, 10)], (0.5, 1.0, 2 / 3), id="half-covered"),
    pytest.param([(0, 20)], [(0, 10)], (1.0, 0.5, 2 / 3), id="twice-too-wide"),
    pytest.param([(20, 30)], [(0, 10)], (0.0, 0.0, 0.0), id="disjoint"),
    pytest.param([], [(0, 10)], (0.0, 0.0, 0.0), id="no-visits"),
    pytest.param([(0, 10)], [], (0.0, 0.0, 0.0), id="no-clues"),
    pytest.param([], [], (0.0, 0.0, 0.0), id="both-empty"),
    pytest.param([(0, 40)], [(0, 10), (30, 40)], (1.0, 0.5, 2 / 3), id="one-visit-spans-two-clues"),
    pytest.param([(0, 10), (20, 30)], [(0, 30)], (2 / 3, 1.0, 0.8), id="two-visits-inside-one-clue"),
])
def test_f1_of_overlap(visited: list, clues: list, expected: tuple[float, float, float]) -> None:
    """f1_of_overlap gives (coverage, precision, F1), all 0 where either list is empty."""
    assert f1_of_overlap(visited, clues) == pytest.approx(expected)


def test_total_length_sums_disjoint_intervals() -> None:
    """total_length adds up the lengths of the intervals."""
    assert total_length([(0, 10), (20, 25.5)]) == pytest.approx(15.5)


# ---------------------------------------------------------------------------------------------------------------
# rewards.question.read_question


@pytest.mark.parametrize(("ground_truth", "overrides", "expected"), [
    pytest.param("B", {}, AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0),)), id="plain-lists"),
    pytest.param("B", {"options": np.array(OPTIONS, dtype=object), "width": np.int64(4),
                       "duration": np.float64(640.0),
                       "clue_intervals": np.array([np.array([0.0, 10.0]), np.array([30.0, 40.0])], dtype=object)},
                 AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0), (30.0, 40.0))), id="parquet-numpy-object-arrays"),
    pytest.param("B", {"clue_intervals": np.array([[0, 10], [30, 40]])},
                 AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0), (30.0, 40.0))), id="numpy-2d-int-clues"),
    pytest.param("B", {"width": 4.0}, AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0),)), id="width-float-4.0"),
    pytest.param("B", {"width": np.float64(4.0)}, AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0),)),
                 id="width-numpy-float-4.0"),
    pytest.param("(B)", {}, AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0),)), id="ground-truth-parens"),
    pytest.param("B.", {}, AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0),)), id="ground-truth-dot"),
    pytest.param(" [B] ", {}, AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0),)), id="ground-truth-brackets-spaces"),
    pytest.param(np.str_("D"), {}, AnswerKey("D", OPTIONS, 4, 640.0, ((0.0, 10.0),)), id="ground-truth-numpy-str"),
    pytest.param("H", {"options": MISSING}, AnswerKey("H", (), 4, 640.0, ((0.0, 10.0),)),
                 id="no-options-any-letter"),
    pytest.param("B", {"clue_intervals": [[-5, 10], [600, 700]]},
                 AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0), (600.0, 640.0))), id="clues-clipped-to-duration"),
    pytest.param("B", {"clue_intervals": [[0, 10], [700, 800]]}, AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0),)),
                 id="clue-beyond-the-end-dropped"),
    pytest.param("B", {"clue_intervals": [[0, 10], [0, 10]]},
                 AnswerKey("B", OPTIONS, 4, 640.0, ((0.0, 10.0), (0.0, 10.0))), id="duplicate-clues-kept-raw"),
    pytest.param("B", {"clue_intervals": []}, AnswerKey("B", OPTIONS, 4, 640.0, None), id="empty-list-no-clues"),
    pytest.param("B", {"clue_intervals": np.array([])}, AnswerKey("B", OPTIONS, 4, 640.0, None),
                 id="empty-numpy-no-clues"),
    pytest.param("B", {"clue_intervals": None}, AnswerKey("B", OPTIONS, 4, 640.0, None), id="none-no-clues"),
    pytest.param("B", {"clue_intervals": MISSING}, AnswerKey("B", OPTIONS, 4, 640.0, None), id="absent-no-clues"),
])
def test_read_question(ground_truth: object, overrides: dict, expected: AnswerKey) -> None:
    """read_question accepts parquet's numpy values and the usual ground-truth spellings, and clips clues."""
    read = read_question(ground_truth, extra(**overrides))
    assert read == expected
    assert type(read.width) is int and type(read.duration) is float
    assert all(type(value) is float for clue in read.clues or () for value in clue)


@pytest.mark.parametrize(("ground_truth", "overrides", "phrases"), [
    pytest.param("Z", {}, ("ground_truth='Z'", "extra_info.options has only 4"), id="letter-beyond-options"),
    pytest.param("E", {}, ("ground_truth='E'", "only 4 options"), id="first-letter-beyond-options"),
    pytest.param("BC", {}, ("ground_truth='BC'",), id="two-letters"),
    pytest.param(2, {}, ("ground_truth=2",), id="int"),
    pytest.param("b", {}, ("ground_truth='b'",), id="lower-case"),
    pytest.param(None, {}, ("ground_truth=None",), id="none"),
    pytest.param("the red car", {}, ("ground_truth='the red car'",), id="option-text"),
    pytest.param("B", {"video_uid": MISSING}, ("extra_info.video_uid",), id="missing-video-uid"),
    pytest.param("B", {"video_uid": ""}, ("extra_info.video_uid",), id="empty-video-uid"),
    pytest.param("B", {"width": MISSING}, ("extra_info.width",), id="missing-width"),
    pytest.param("B", {"width": 4.5}, ("extra_info.width", "4.5"), id="fractional-width"),
    pytest.param("B", {"width": 0}, ("extra_info.width",), id="zero-width"),
    pytest.param("B", {"width": True}, ("extra_info.width",), id="bool-width"),
    pytest.param("B", {"width": 1}, ("extra_info.width=1", "3..8"), id="width-1-never-built"),
    pytest.param("B", {"width": 2}, ("extra_info.width=2", "3..8"), id="width-2-below-every-min-width"),
    pytest.param("B", {"width": 9}, ("extra_info.width=9", "3..8"), id="width-9-above-max-width"),
    pytest.param("B", {"width": 100}, ("extra_info.width=100", "3..8"), id="width-100-never-built"),
    pytest.param("B", {"duration": MISSING}, ("extra_info.duration",), id="missing-duration"),
    pytest.param("B", {"duration": 0}, ("extra_info.duration",), id="zero-duration"),
    pytest.param("B", {"duration": math.nan}, ("extra_info.duration",), id="nan-duration"),
    pytest.param("B", {"duration": "640"}, ("extra_info.duration",), id="string-duration"),
    pytest.param("B", {"options": [1, 2]}, ("extra_info.options",), id="options-not-text"),
    pytest.param("B", {"options": "a dog"}, ("extra_info.options",), id="options-a-string"),
    pytest.param("B", {"clue_intervals": [[0, 10], [5, 1]]}, ("extra_info.clue_intervals[1]", "start <= end"),
                 id="clue-reversed"),
    pytest.param("B", {"clue_intervals": [[0, 10], ["a", 3]]}, ("extra_info.clue_intervals[1]",),
                 id="clue-not-a-number"),
    pytest.param("B", {"clue_intervals": [[0, 10, 20]]}, ("extra_info.clue_intervals[0]",), id="clue-three-numbers"),
    pytest.param("B", {"clue_intervals": [[True, 3]]}, ("extra_info.clue_intervals[0]",), id="clue-bool"),
    pytest.param("B", {"clue_intervals": [[0, math.inf]]}, ("extra_info.clue_intervals[0]",), id="clue-infinite"),
    pytest.param("B", {"clue_intervals": [5, 10]}, ("extra_info.clue_intervals[0]",), id="clue-flat-pair"),
    pytest.param("B", {"clue_intervals": "0-10"}, ("extra_info.clue_intervals=",), id="clues-a-string"),
    pytest.param("B", {"clue_intervals": [[700, 800]]}, ("extra_info.clue_intervals=", "no interval overlaps"),
                 id="every-clue-beyond-the-end"),
])
def test_read_question_errors_name_the_field(ground_truth: object, overrides: dict, phrases: tuple[str, ...]) -> None:
    """Bad ground truth or extra_info raises RewardInputError whose message names the offending field."""
    with pytest.raises(RewardInputError) as raised:
        read_question(ground_truth, extra(**overrides))
    for phrase in phrases:
        assert phrase in str(raised.value)


@pytest.mark.parametrize("extra_info", [None, [("video_uid", "v")], "extra"], ids=["none", "list", "string"])
def test_read_question_requires_a_mapping(extra_info: object) -> None:
    """extra_info that is not a mapping raises RewardInputError saying so."""
    with pytest.raises(RewardInputError, match="extra_info must be a mapping"):
        read_question("B", extra_info)


@pytest.mark.parametrize(("clues", "gap", "expected"), [
    pytest.param([[0, 10], [12, 20]], 5.0, [(0.0, 20.0)], id="within-gap-joined"),
    pytest.param([[0, 10], [12, 20]], 0.0, [(0.0, 10.0), (12.0, 20.0)], id="no-gap-apart"),
    pytest.param([[12, 20], [0, 10]], 1.0, [(0.0, 10.0), (12.0, 20.0)], id="unsorted-sorted"),
])
def test_merged_clues(clues: list, gap: float, expected: list) -> None:
    """AnswerKey.merged_clues joins clues closer than the gap and sorts them."""
    assert question(clue_intervals=clues).merged_clues(gap) == expected


def test_merged_clues_none_without_clues() -> None:
    """AnswerKey.merged_clues is None where the data has no clue intervals."""
    assert question(clue_intervals=[]).merged_clues(5.0) is None


# ---------------------------------------------------------------------------------------------------------------
# rewards.rollout: split_turns and judge_rollout


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("", [], id="empty"),
    pytest.param(" \n\t", [], id="whitespace"),
    pytest.param(answer(), [answer()], id="one-answer"),
    pytest.param(rollout(call(1, 1), call(1, 1, 1), answer()), [call(1, 1), call(1, 1, 1), answer()],
                 id="observations-dropped"),
    pytest.param("\n " + answer(), [answer()], id="leading-whitespace-dropped"),
    pytest.param("Sure. " + answer(), ["Sure. " + answer()], id="leading-text-kept-in-first-turn"),
    pytest.param(rollout(call(1, 1)) + "<think>still thinking", [call(1, 1), "<think>still thinking"],
                 id="unterminated-last-turn"),
    pytest.param("<think>a </tool> b</think><answer>B</answer>", ["<think>a </tool>", "</think><answer>B</answer>"],
                 id="tool-close-in-think-ends-turn"),
    pytest.param("<think>a </answer> b</think><answer>B</answer>",
                 ["<think>a </answer>", "</think><answer>B</answer>"], id="answer-close-in-think-ends-turn"),
    pytest.param(rollout(call(1, 1)) + "more words with no tag", [call(1, 1)], id="untagged-text-after-last-ignored"),
    pytest.param(call(1, 1) + answer(), [call(1, 1), answer()], id="no-observation-between"),
    pytest.param("<tool>get_caption((1, 1))</tool>", ["<tool>get_caption((1, 1))</tool>"], id="missing-think"),
])
def test_split_turns(text: str, expected: list[str]) -> None:
    """split_turns cuts at each action close tag and restarts at the next turn tag, dropping observations."""
    assert split_turns(text) == expected


# Each row: the rollout text, then (valid, well_formed) for each turn, then a phrase of the first invalid reason.
JUDGED = [
    ("clean", rollout(call(1, 1), call(1, 1, 1), qa(1, 1, 1), answer()), [(True, True)] * 4, None),
    ("missing-think", rollout("<tool>get_caption((1, 1))</tool>", answer()), [(True, False), (True, True)], None),
    ("text-before-tool", rollout("<think>t</think> so: <tool>get_caption((1, 1))</tool>", answer()),
     [(True, False), (True, True)], None),
    ("text-after-tool-is-observation", rollout(call(1, 1) + " trailing", answer()), [(True, True)] * 2, None),
    ("unterminated-last", rollout(call(1, 1)) + "<think>still thinking", [(True, True), (False, False)],
     "no action"),
    ("tool-close-in-think", "<think>a </tool> b</think><answer>B</answer>", [(False, False), (True, False)],
     "no action"),
    ("id-at-width-valid", rollout(call(4, 4, 4), answer()), [(True, True), (True, True)], None),
    ("id-beyond-width", rollout(call(5, 1), answer()), [(False, False), (True, True)], "out of range"),
    ("low-id-beyond-width", rollout(call(1, 1, 5), answer()), [(False, False), (True, True)], "l=5"),
    ("unreadable-call", rollout(call(3), answer()), [(False, False), (True, True)], "1 id(s)"),
    ("video-qa-before-caption", rollout(qa(1, 1, 1), answer()), [(False, False), (True, True)],
     "after reading its caption"),
    ("video-qa-after-caption", rollout(call(1, 1, 1), qa(1, 1, 1), answer()), [(True, True)] * 3, None),
    ("video-qa-after-other-leaf", rollout(call(1, 1, 2), qa(1, 1, 1)), [(True, True), (False, False)],
     "after reading its caption"),
    ("video-qa-after-medium-parent", rollout(call(1, 1), qa(1, 1, 1)), [(True, True), (False, False)],
     "after reading its caption"),
    ("video-qa-after-invalid-caption", rollout(call(1, 1, 1, 1), qa(1, 1, 1)), [(False, False), (False, False)],
     "4 id(s)"),
    ("turn-after-answer", rollout(answer(), call(1, 1)), [(True, True), (False, False)], "after the answer"),
    ("answer-after-answer", rollout(answer(), answer("C")), [(True, True), (False, False)], "after the answer"),
    ("unclosed-answer", "<think>t</think><answer>B", [(False, False)], "not closed"),
    ("empty", "", [], None),
]


@pytest.mark.parametrize(("text", "expected", "reason"), [row[1:] for row in JUDGED], ids=[row[0] for row in JUDGED])
def test_judge_rollout(text: str, expected: list[tuple[bool, bool]], reason: str | None) -> None:
    """judge_rollout marks each turn valid exactly when the tool would serve it, and says why not."""
    judgement = judge_rollout(text, WIDTH)
    assert [(turn.valid, turn.well_formed) for turn in judgement.turns] == expected
    invalid = [turn.reason for turn in judgement.turns if not turn.valid]
    if reason is None:
        assert invalid == []
    else:
        assert reason in invalid[0]


def test_rollout_counts() -> None:
    """rollout_counts reports turns, calls (valid or not), served, unique, repeats, invalid turns and the answer."""
    text = rollout(call(1, 1), call(1, 1), call(9, 9), call(1, 1, 1), qa(1, 1, 1), "<tool>get_caption((2, 2))</tool>",
                   answer())
    assert rollout_counts(judge_rollout(text, WIDTH)) == {
        "turns": 7, "tool_calls": 6, "served_calls": 5, "unique_calls": 4, "repeats": 1, "invalid_turns": 1,
        "ill_formed_turns": 2, "get_caption_calls": 4, "video_qa_calls": 1, "answered": 1}


def test_a_failed_call_is_neither_served_nor_invalid() -> None:
    """A video_qa whose observation is the tool's failure notice: a tool call, not served, not an invalid turn."""
    failure = tool_failure_observation("the VLM at http://vlm:8000/v1 did not answer within 60 s")
    text = decoded_rollout([(call(1, 1, 1), "Low caption (1, 1, 1): a car."), (qa(1, 1, 1), failure),
                            (qa(1, 1, 1), "<information>red</information>"), (answer(), "")])
    judgement = judge_rollout(text, WIDTH)
    assert [(turn.valid, turn.failed) for turn in judgement.turns] == [(True, False), (True, True), (True, False),
                                                                       (True, False)]
    assert "did not answer within 60 s" in judgement.turns[1].reason
    counts = rollout_counts(judgement)
    assert (counts["tool_calls"], counts["served_calls"], counts["video_qa_calls"], counts["repeats"],
            counts["invalid_turns"]) == (3, 2, 1, 0, 0)


def test_rollout_counts_of_an_empty_rollout() -> None:
    """An empty rollout has no turns, calls or answer."""
    assert rollout_counts(judge_rollout("", WIDTH)) == dict.fromkeys(COUNT_KEYS, 0)


def test_video_qa_repeats_ignore_case_and_spacing() -> None:
    """Two video_qa calls on one leaf whose questions differ only in case and spacing are one unique call."""
    turns = (call(1, 1, 1), qa(1, 1, 1, query="What  colour?"), qa(1, 1, 1, query="what colour?"))
    counts = rollout_counts(judged(*turns))
    assert (counts["served_calls"], counts["unique_calls"], counts["repeats"]) == (3, 2, 1)


# ---------------------------------------------------------------------------------------------------------------
# rewards.components: answer


@pytest.mark.parametrize(("turns", "options", "expected"), [
    pytest.param((answer("B"),), OPTIONS, 1.0, id="letter"),
    pytest.param((answer("(B)"),), OPTIONS, 1.0, id="parens"),
    pytest.param((answer("[B]"),), OPTIONS, 1.0, id="brackets"),
    pytest.param((answer("B."),), OPTIONS, 1.0, id="dot"),
    pytest.param((answer("B)"),), OPTIONS, 1.0, id="close-paren"),
    pytest.param((answer("B. the red car"),), OPTIONS, 1.0, id="letter-and-text"),
    pytest.param((answer("Answer: B"),), OPTIONS, 1.0, id="answer-colon"),
    pytest.param((answer("the answer is B"),), OPTIONS, 1.0, id="the-answer-is"),
    pytest.param((answer("Option B"),), OPTIONS, 1.0, id="option-capital"),
    pytest.param((answer("the red car"),), OPTIONS, 1.0, id="option-text"),
    pytest.param((answer("The Red Car!"),), OPTIONS, 1.0, id="option-text-case-and-punctuation-ignored"),
    pytest.param((answer("Answer: the red car"),), OPTIONS, 1.0, id="answer-prefix-then-option-text"),
    pytest.param((answer("the red car"),), (), 0.0, id="option-text-without-options-0"),
    pytest.param((answer("B"),), (), 1.0, id="letter-without-options"),
    pytest.param((answer("B. a dog"),), OPTIONS, 1.0, id="letter-wins-over-other-options-text"),
    pytest.param((answer("a dog"),), OPTIONS, 0.0, id="other-option-text-0"),
    pytest.param((answer("A or B"),), OPTIONS, 0.0, id="A-or-B-0"),
    pytest.param((answer("B or A"),), OPTIONS, 0.0, id="B-or-A-0"),
    pytest.param((answer("A, B"),), OPTIONS, 0.0, id="A-comma-B-0"),
    pytest.param((answer("B, A"),), OPTIONS, 0.0, id="B-comma-A-0"),
    pytest.param((answer("B/C"),), OPTIONS, 0.0, id="B-slash-C-0"),
    pytest.param((answer("(B) and (C)"),), OPTIONS, 0.0, id="B-and-C-0"),
    pytest.param((answer("B C"),), OPTIONS, 0.0, id="B-space-C-0"),
    pytest.param((answer("b"),), OPTIONS, 1.0, id="lower-case-b"),
    pytest.param((answer("option b"),), OPTIONS, 1.0, id="option-lower-case-b"),
    pytest.param((answer("B, or maybe C"),), OPTIONS, 0.0, id="B-or-maybe-C-0"),
    pytest.param((answer("either A or B"),), OPTIONS, 0.0, id="either-A-or-B-0"),
    pytest.param((answer("B. A man opens the door"),), OPTIONS, 1.0, id="capital-article-in-explanation"),
    pytest.param((answer("I think B"),), OPTIONS, 0.0, id="sentence-not-read-0"),
    pytest.param((answer("E"),), OPTIONS, 0.0, id="letter-beyond-options-0"),
    pytest.param((answer("C"),), OPTIONS, 0.0, id="wrong-letter-0"),
    pytest.param((call(1, 1),), OPTIONS, 0.0, id="no-answer-0"),
    pytest.param((), OPTIONS, 0.0, id="empty-rollout-0"),
    pytest.param(("<think>t</think><answer>B",), OPTIONS, 0.0, id="unclosed-answer-0"),
    pytest.param((answer("B"), answer("C")), OPTIONS, 0.0, id="two-answers-different-letters-0"),
    pytest.param((answer("B"), answer("(B)")), OPTIONS, 1.0, id="two-answers-same-letter"),
    pytest.param(("<answer>B</answer>",), OPTIONS, 1.0, id="answer-without-think-still-counts"),
    pytest.param((answer("Answer: B or A"),), OPTIONS, 0.0, id="answer-prefix-B-or-A-0"),
    pytest.param((answer("the answer is B or C"),), OPTIONS, 0.0, id="the-answer-is-B-or-C-0"),
])
def test_answer(turns: tuple[str, ...], options: tuple[str, ...], expected: float) -> None:
    """answer is 1 exactly when every answer names option B (a letter as letter_form reads it, or its text)."""
    target = question(options=list(options) if options else MISSING)
    assert component("answer", turns, target) == expected


def scores_within(text: str, seconds: float) -> bool:
    """Whether compute_score of `text` for the standard question finishes within `seconds` in a fresh interpreter."""
    code = ("import json, sys\nfrom rewards.score import compute_score\n"
            f"compute_score({DATA_SOURCE!r}, sys.stdin.read(), 'B', json.loads({json.dumps(extra())!r}))\n")
    try:
        subprocess.run([sys.executable, "-c", code], input=text, text=True, cwd=PROJECT_ROOT, timeout=seconds,
                       check=True)
    except subprocess.TimeoutExpired:
        return False
    return True


@pytest.mark.parametrize("text", [
    pytest.param("A, B, C, D, E, F, G, H, I, J, K, L, M, N, O, P, Q, R, S, T or none", id="letter-list-then-words"),
    pytest.param("The answer" + " " * 4000 + "is unclear", id="answer-then-long-whitespace"),
    pytest.param("B. the red car, " * 300, id="long-answer-control"),
])
def test_answer_reading_takes_linear_time(text: str) -> None:
    """Scoring an answer of a few thousand characters never hangs, whatever it holds."""
    # A hang guard, not a speed target: the linear readers take milliseconds, the old regexes took minutes.
    assert scores_within(rollout(answer(text)), 30.0)


# ---------------------------------------------------------------------------------------------------------------
# rewards.components: location

ALL_VISITS = list(VISIT_KINDS)
LEAVES = ["low", "video_qa"]


@pytest.mark.parametrize(("turns", "clues", "options", "expected"), [
    pytest.param((call(1, 1, 1),), [[0, 10]], {}, 1.0, id="perfect-leaf"),
    pytest.param((call(1, 1, 1),) * 3, [[0, 10]], {}, 1.0, id="repeated-perfect-visit-unchanged"),
    pytest.param((call(1, 1, 1),), [[0, 20]], {}, 2 / 3, id="half-the-clue"),
    pytest.param((call(1, 1, 1),) * 4, [[0, 20]], {}, 2 / 3, id="repeated-half-visit-unchanged"),
    pytest.param((call(1, 1, 1), call(1, 1, 2)), [[0, 20]], {}, 1.0, id="two-leaves-cover-the-clue"),
    pytest.param((call(1, 1),), [[0, 40]], {"visits": ALL_VISITS}, 1.0, id="medium-counts-when-listed"),
    pytest.param((call(1, 1),), [[0, 40]], {"visits": LEAVES}, 0.0, id="medium-ignored-when-not-listed"),
    pytest.param((call(1, 1), call(1, 1, 1)), [[0, 10]], {"visits": ALL_VISITS}, 0.4, id="medium-lowers-precision"),
    pytest.param((call(1, 1), call(1, 1, 1)), [[0, 10]], {"visits": LEAVES}, 1.0, id="leaf-alone-with-leaf-visits"),
    pytest.param((call(1, 1, 1), qa(1, 1, 1)), [[0, 10]], {"visits": ["video_qa"]}, 1.0, id="video-qa-visit"),
    pytest.param((call(1, 1, 1), qa(1, 1, 1)), [[0, 10]], {"visits": ["medium"]}, 0.0, id="no-kind-listed-visited"),
    pytest.param((qa(1, 1, 1),), [[0, 10]], {}, 0.0, id="refused-video-qa-not-a-visit"),
    pytest.param((call(5, 1, 1),), [[0, 10]], {}, 0.0, id="out-of-range-not-a-visit"),
    pytest.param((answer(), call(1, 1, 1)), [[0, 10]], {}, 0.0, id="visit-after-answer-not-a-visit"),
    pytest.param((), [[0, 10]], {}, 0.0, id="no-visits"),
    pytest.param((call(4, 4, 4),), [[0, 10]], {}, 0.0, id="disjoint-visit"),
    pytest.param((call(1, 1, 1), call(1, 1, 2)), [[0, 10], [12, 20]], {"merge_gap_s": 5.0}, 1.0,
                 id="clues-within-merge-gap-joined"),
    pytest.param((call(1, 1, 1), call(1, 1, 2)), [[0, 10], [12, 20]], {"merge_gap_s": 0.0}, 1.8 / 1.9,
                 id="clues-apart-without-gap"),
    pytest.param((call(1, 1, 1), call(1, 1, 2)), [[0, 10], [15, 20]], {"merge_gap_s": 5.0}, 1.5 / 1.75,
                 id="clues-exactly-gap-apart-not-joined"),
    pytest.param((call(1, 1),), [[0, 10], [30, 40]], {"visits": ALL_VISITS, "merge_gap_s": 0.0}, 2 / 3,
                 id="one-visit-spans-two-clues"),
])
def test_location(turns: tuple[str, ...], clues: list, options: dict, expected: float) -> None:
    """location is the F1 of visited time against merged clue time, over the visit kinds listed."""
    value = component("location", turns, question(clue_intervals=clues), **options)
    assert value == pytest.approx(expected)
    assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("clues", [[], None, MISSING], ids=["empty", "none", "absent"])
def test_location_is_none_without_clues(clues: object) -> None:
    """location does not apply (None) where the data has no clue intervals."""
    assert component("location", (call(1, 1, 1), answer()), question(clue_intervals=clues)) is None


def test_location_in_unit_range_for_every_leaf() -> None:
    """Visiting any one leaf, or all of them, gives a location in [0, 1] for an off-grid clue."""
    target = question(clue_intervals=[[3.3, 27.1], [200, 205]])
    leaves = [(h, m, low) for h in range(1, 5) for m in range(1, 5) for low in range(1, 5)]
    values = [component("location", (call(*ids),), target) for ids in leaves]
    values.append(component("location", tuple(call(*ids) for ids in leaves), target))
    assert all(0.0 <= value <= 1.0 for value in values)
    assert max(values) > 0.0


# ---------------------------------------------------------------------------------------------------------------
# rewards.components: efficiency

TWELVE = tuple(call(1, m, low) for m in (1, 2, 3) for low in (1, 2, 3, 4))


@pytest.mark.parametrize(("turns", "options", "expected"), [
    pytest.param((call(1, 1), call(1, 1, 1), answer()), {}, 0.0, id="nothing-to-penalise"),
    pytest.param((answer(),), {}, 0.0, id="no-tool-answer-zero-not-bonus"),
    pytest.param((), {}, 0.0, id="empty-rollout"),
    pytest.param((call(1, 1), call(1, 1), answer()), {}, -0.1, id="one-repeat"),
    pytest.param((call(1, 1),) * 4, {}, -0.3, id="three-repeats"),
    pytest.param((call(1, 1), call(1, 1)), {"repeat_penalty": 0.25}, -0.25, id="repeat-weight"),
    pytest.param((call(9, 9), call(9, 9)), {}, 0.0, id="refused-repeat-not-a-repeat"),
    pytest.param(TWELVE, {}, -0.1, id="two-over-budget"),
    pytest.param(TWELVE, {"turn_budget": 12}, 0.0, id="at-budget"),
    pytest.param(TWELVE, {"over_budget_penalty": 0.02}, -0.04, id="over-budget-weight"),
    pytest.param((call(9, 9),) * 11, {}, -0.05, id="refused-calls-count-toward-budget"),
    pytest.param((call(1, 1, 1), qa(1, 1, 1), qa(1, 1, 1, query="who?")), {}, -0.04, id="two-video-qa"),
    pytest.param((call(1, 1, 1), qa(1, 1, 1), qa(1, 1, 1, query="who?")), {"video_qa_penalty": 0.1}, -0.2,
                 id="video-qa-weight"),
    pytest.param((call(1, 1, 1), qa(1, 1, 1, query="What  colour?"), qa(1, 1, 1, query="what colour?")), {}, -0.14,
                 id="video-qa-repeat-up-to-case-and-spacing"),
    pytest.param((qa(1, 1, 1),), {}, 0.0, id="refused-video-qa-not-charged"),
    pytest.param((call(1, 1),) * 20, {}, -0.5, id="capped-at-max-penalty"),
    pytest.param((call(1, 1),) * 20, {"max_penalty": 0.3}, -0.3, id="cap-weight"),
    pytest.param((call(1, 1),) * 20, {"repeat_penalty": 0.0, "over_budget_penalty": 0.0}, 0.0, id="weights-zero"),
])
def test_efficiency(turns: tuple[str, ...], options: dict, expected: float) -> None:
    """efficiency is minus the weighted repeats, calls over budget and video_qa calls, capped, never positive."""
    value = component("efficiency", turns, **options)
    assert value == pytest.approx(expected)
    assert value <= 0.0


# ---------------------------------------------------------------------------------------------------------------
# rewards.components: format


@pytest.mark.parametrize(("text", "options", "expected"), [
    pytest.param(rollout(call(1, 1), call(1, 1, 1), answer()), {}, 0.0, id="clean"),
    pytest.param(rollout(call(1, 1), call(1, 1)), {}, 0.0, id="repeats-are-not-format"),
    pytest.param(rollout("<tool>get_caption((1, 1))</tool>", answer()), {}, -0.1, id="missing-think"),
    pytest.param(rollout("<think>t</think> so: <tool>get_caption((1, 1))</tool>", answer()), {}, -0.1,
                 id="text-between-think-and-tool"),
    pytest.param(rollout(call(9, 9), answer()), {}, -0.1, id="out-of-range-call"),
    pytest.param(rollout(qa(1, 1, 1), answer()), {}, -0.1, id="video-qa-too-early"),
    pytest.param(rollout(call(3), answer()), {}, -0.1, id="unreadable-call"),
    pytest.param(rollout(answer(), call(1, 1)), {}, -0.1, id="turn-after-answer"),
    pytest.param(rollout(call(1, 1)) + "<think>cut off", {}, -0.1, id="unterminated-last-turn"),
    pytest.param("", {}, -0.1, id="empty-rollout"),
    pytest.param("  \n", {}, -0.1, id="blank-rollout"),
    pytest.param(rollout(call(9, 9), "<answer>B</answer>"), {}, -0.2, id="two-bad-turns"),
    pytest.param(rollout(*[call(9, 9)] * 8), {}, -0.5, id="capped"),
    pytest.param(rollout(*[call(9, 9)] * 3), {"penalty_per_turn": 0.2, "max_penalty": 1.0}, -0.6,
                 id="penalty-weight"),
    pytest.param(rollout(*[call(9, 9)] * 3), {"max_penalty": 0.25}, -0.25, id="cap-weight"),
])
def test_format(text: str, options: dict, expected: float) -> None:
    """format is minus a penalty per invalid or ill-formed turn (an empty rollout counts as one), capped."""
    chosen = COMPONENTS["format"]
    value = chosen(judge_rollout(text, WIDTH), question(), {**chosen.defaults, **options})
    assert value == pytest.approx(expected)
    assert value <= 0.0


# ---------------------------------------------------------------------------------------------------------------
# rewards.components: repeat_ratio


@pytest.mark.parametrize(("turns", "options", "expected"), [
    pytest.param((answer(),), {}, 0.0, id="no-calls"),
    pytest.param((), {}, 0.0, id="empty-rollout"),
    pytest.param((call(1, 1), call(1, 2), answer()), {}, 0.0, id="all-unique"),
    pytest.param((call(1, 1),) * 3, {}, 2.0, id="one-call-three-times"),
    pytest.param((call(1, 1), call(1, 2), call(1, 1)), {}, 0.5, id="two-unique-one-repeat"),
    pytest.param((call(1, 1), call(9, 9), call(9, 9)), {}, 0.0, id="refused-calls-not-counted"),
    pytest.param((call(9, 9),) * 3, {}, 0.0, id="only-refused-calls"),
    pytest.param((call(1, 1),) * 10, {}, 9.0, id="ten-copies"),
    pytest.param((call(1, 1),) * 20, {}, 14.0, id="capped-at-14"),
    pytest.param((call(1, 1),) * 3, {"cap": 1.0}, 1.0, id="cap-weight"),
])
def test_repeat_ratio(turns: tuple[str, ...], options: dict, expected: float) -> None:
    """repeat_ratio is (served - unique) / unique calls, 0 without calls, at most the cap."""
    assert component("repeat_ratio", turns, **options) == pytest.approx(expected)


@pytest.mark.parametrize(("name", "options", "expected"), [
    pytest.param("answer", {}, (0.0, 1.0), id="answer"),
    pytest.param("location", {}, (0.0, 1.0), id="location"),
    pytest.param("efficiency", {"max_penalty": 0.7}, (-0.7, 0.0), id="efficiency"),
    pytest.param("format", {"max_penalty": 0.3}, (-0.3, 0.0), id="format"),
    pytest.param("repeat_ratio", {"cap": 5.0}, (0.0, 5.0), id="repeat_ratio"),
])
def test_component_bounds(name: str, options: dict, expected: tuple[float, float]) -> None:
    """Each component's registered bounds follow its options."""
    chosen = COMPONENTS[name]
    assert chosen.bounds({**chosen.defaults, **options}) == expected


# ---------------------------------------------------------------------------------------------------------------
# rewards.registry


@pytest.fixture
def private_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A copy of the registry that registrations in one test go to, dropped afterwards."""
    components = dict(registry.COMPONENTS)
    monkeypatch.setattr(registry, "COMPONENTS", components)
    return components


def _bonus(rollout: Rollout, question: AnswerKey, scale: int = 3, *, size: float = 0.5,
           kinds: tuple[str, ...] = ("a",)) -> float:
    """A stand-in component with one positional default and two keyword-only options."""
    return size


def test_register_reads_keyword_only_defaults(private_registry: dict) -> None:
    """A new component's options are its keyword-only parameters with their defaults (positional ones are not)."""
    register("bonus", bounds=lambda options: (0.0, options["size"]), choices={"kinds": ("a", "b")})(_bonus)
    added = private_registry["bonus"]
    assert added.defaults == {"size": 0.5, "kinds": ("a",)}
    assert added.choices == {"kinds": ("a", "b")}
    assert added.bounds(added.defaults) == (0.0, 0.5)
    assert added(judged(), question(), {"size": 0.25, "kinds": ()}) == 0.25
    assert get_component("bonus") is added


def test_registry_fixture_leaves_the_real_registry_alone() -> None:
    """The real registry holds the shipped components and none that a test registered."""
    assert registry.COMPONENTS is COMPONENTS
    assert {"answer", "location", "efficiency", "format", "repeat_ratio"} <= set(COMPONENTS)
    assert not {"bonus", "needy", "score", "turns"} & set(COMPONENTS)


def test_register_duplicate_name_raises(private_registry: dict) -> None:
    """Registering a second component under a taken name raises ValueError naming the holder."""
    before = private_registry["answer"]
    with pytest.raises(ValueError, match="'answer' is already registered.*answer_reward"):
        register("answer", bounds=lambda options: (0.0, 1.0))(_bonus)
    assert private_registry["answer"] is before


@pytest.mark.parametrize("name", ["score", "turns", "has_clues", "repeats"])
def test_register_reserved_name_refused(private_registry: dict, name: str) -> None:
    """A name the score dict already reports cannot name a component."""
    assert name in RESERVED_NAMES
    with pytest.raises(ValueError, match="cannot name a reward component"):
        register(name, bounds=lambda options: (0.0, 1.0))(_bonus)
    assert name not in private_registry


def test_register_option_without_default_refused(private_registry: dict) -> None:
    """A keyword-only option without a default is refused and nothing is registered."""

    def needy(rollout: Rollout, question: AnswerKey, *, size: float) -> float:
        """A stand-in component whose option has no default."""
        return size

    with pytest.raises(TypeError, match=r"needy.*\['size'\]"):
        register("needy", bounds=lambda options: (0.0, 1.0))(needy)
    assert "needy" not in private_registry


def test_get_component_unknown_lists_registered() -> None:
    """get_component of an unknown name raises KeyError listing the registered names."""
    with pytest.raises(KeyError, match="unknown reward component 'bogus'.*answer, efficiency"):
        get_component("bogus")


# ---------------------------------------------------------------------------------------------------------------
# rewards.spec


def test_presets_found() -> None:
    """configs/reward holds the documented presets."""
    assert set(PRESET_NAMES) >= {"default", "paper", "answer_only", "no_efficiency", "no_format", "no_location"}


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_composes_into_a_valid_spec(name: str) -> None:
    """Each preset composes through Hydra into a spec named after it, with bounds around 0."""
    spec = spec_from_dict(preset(name))
    assert spec.preset == name
    assert spec.terms
    low, high = spec.bounds()
    assert low <= 0.0 < high


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_preset_to_dict_round_trips(name: str) -> None:
    """to_dict of a preset's spec reads back to the same spec, and is the composed config once resolved."""
    spec = spec_from_dict(preset(name))
    assert spec_from_dict(spec.to_dict()) == spec
    assert spec_from_dict(spec.to_dict()).to_dict() == spec.to_dict()


@pytest.mark.parametrize(("name", "expected"), [
    pytest.param("paper", (-2.8, 2.0), id="paper"),
    pytest.param("answer_only", (0.0, 1.0), id="answer_only"),
    pytest.param("default", (-1.0, 1.5), id="default"),
    pytest.param("no_location", (-1.0, 1.0), id="no_location"),
])
def test_preset_bounds(name: str, expected: tuple[float, float]) -> None:
    """The documented score range of a preset."""
    assert spec_from_dict(preset(name)).bounds() == pytest.approx(expected)


def test_negative_weight_flips_term_bounds() -> None:
    """A term with a negative weight spans weight * high to weight * low."""
    spec = spec_from_dict({"components": {"repeat_ratio": {"weight": -0.5, "cap": 4.0}}})
    assert spec.terms[0].bounds() == (-2.0, -0.0)
    assert spec.bounds() == (-2.0, 0.0)


def test_spec_defaults_fill_unset_options() -> None:
    """Options a spec leaves out take the component's defaults."""
    spec = spec_from_dict({"components": {"efficiency": {"weight": 1, "turn_budget": 12}}})
    assert spec.preset == "custom"
    assert dict(spec.terms[0].options) == {"repeat_penalty": 0.1, "turn_budget": 12, "over_budget_penalty": 0.05,
                                           "video_qa_penalty": 0.02, "max_penalty": 0.5}
    assert spec.terms[0].weight == 1.0 and type(spec.terms[0].weight) is float


def test_location_without_visits_takes_the_default() -> None:
    """A location term that leaves out `visits` counts every visit kind."""
    spec = spec_from_dict({"components": {"location": {"weight": 1.0}}})
    assert tuple(spec.terms[0].options["visits"]) == VISIT_KINDS


@pytest.mark.parametrize(("data", "phrase"), [
    pytest.param({"components": {"bogus": {"weight": 1}}}, "reward.components: unknown reward component 'bogus'",
                 id="unknown-component"),
    pytest.param({"components": {"answer": {"weight": 1, "bar": 2}}}, "reward.components.answer: unknown options "
                 "['bar']", id="unknown-option"),
    pytest.param({"components": {"answer": {"weight": "x"}}}, "reward.components.answer.weight='x'",
                 id="weight-string"),
    pytest.param({"components": {"answer": {"weight": True}}}, "reward.components.answer.weight=True",
                 id="weight-bool"),
    pytest.param({"components": {"answer": {"weight": math.inf}}}, "reward.components.answer.weight=inf",
                 id="weight-infinite"),
    pytest.param({"components": {"answer": {}}}, "reward.components.answer: expected a mapping with a weight",
                 id="no-weight"),
    pytest.param({"components": {"answer": 1.0}}, "reward.components.answer: expected a mapping with a weight",
                 id="bare-weight"),
    pytest.param({"components": {"efficiency": {"weight": 1, "repeat_penalty": -0.1}}},
                 "reward.components.efficiency.repeat_penalty=-0.1: expected a number >= 0", id="negative-penalty"),
    pytest.param({"components": {"efficiency": {"weight": 1, "turn_budget": 2.5}}},
                 "reward.components.efficiency.turn_budget=2.5: expected a whole number", id="fractional-budget"),
    pytest.param({"components": {"efficiency": {"weight": 1, "max_penalty": "0.5"}}},
                 "reward.components.efficiency.max_penalty='0.5'", id="penalty-string"),
    pytest.param({"components": {"location": {"weight": 1, "visits": ["high"]}}},
                 "reward.components.location.visits=['high']: expected a list drawn from", id="visits-high"),
    pytest.param({"components": {"location": {"weight": 1, "visits": "low"}}},
                 "reward.components.location.visits='low'", id="visits-a-string"),
    pytest.param({"components": {"answer": {"weight": 1}}, "no_clue_components": ["location"]},
                 "reward.no_clue_components=['location']", id="no-clue-component-not-in-spec"),
    pytest.param({"components": {"answer": {"weight": 1}}, "no_clue_components": "answer"},
                 "reward.no_clue_components='answer'", id="no-clue-components-a-string"),
    pytest.param({"components": {"answer": {"weight": 1}}, "weights": {}}, "reward: unknown keys ['weights']",
                 id="unknown-top-level-key"),
    pytest.param({"components": {}}, "reward.components={}", id="no-components"),
    pytest.param({"preset": "", "components": {"answer": {"weight": 1}}}, "reward.preset=''", id="empty-preset"),
    pytest.param(["answer"], "reward: expected a mapping", id="not-a-mapping"),
])
def test_spec_errors_name_the_key(data: object, phrase: str) -> None:
    """A bad spec raises RewardSpecError whose message names the offending key."""
    with pytest.raises(RewardSpecError) as raised:
        spec_from_dict(data)
    assert phrase in str(raised.value)


def test_spec_errors_from_kwargs_name_reward_kwargs() -> None:
    """A bad spec in verl's reward_kwargs is reported under `reward_kwargs`."""
    with pytest.raises(RewardSpecError, match=r"reward_kwargs\.components\.answer\.weight='x'"):
        score(answer(), components={"answer": {"weight": "x"}})


def test_compute_score_without_kwargs_uses_the_default_preset() -> None:
    """compute_score with no reward_kwargs scores as the composed default preset does."""
    text = rollout(call(1, 1, 1), call(1, 1, 1), answer())
    plain = score(text)
    assert plain == score(text, **preset("default"))
    assert default_spec() == spec_from_dict(preset("default"))
    assert {"efficiency", "format", "location"} <= set(plain)
    assert spec_for_kwargs({}) is default_spec()


def test_changing_one_weight_changes_the_score() -> None:
    """A sweep over one weight (a Hydra override of the preset) reaches the score."""
    text = rollout(call(1, 1, 1), answer())
    swept = to_container(compose_config("sft", ["reward=paper", "reward.components.location.weight=0.25"],
                                        False).config)["reward"]
    assert swept["components"]["location"]["weight"] == 0.25
    base, changed = score(text, **preset("paper")), score(text, **swept)
    assert base["location"] == changed["location"] == 1.0
    assert base["score"] == pytest.approx(2.0)
    assert changed["score"] == pytest.approx(1.25)


def test_changing_an_option_changes_the_score() -> None:
    """A sweep over one option reaches its component."""
    kwargs = preset("default")
    kwargs["components"]["efficiency"]["repeat_penalty"] = 0.2
    text = rollout(call(1, 1, 1), call(1, 1, 1), answer())
    assert score(text, **preset("default"))["efficiency"] == pytest.approx(-0.1)
    assert score(text, **kwargs)["efficiency"] == pytest.approx(-0.2)


@pytest.mark.parametrize("name", ["paper", "default"])
def test_omegaconf_kwargs_work(name: str) -> None:
    """reward_kwargs given as an OmegaConf DictConfig (lists as ListConfig) score as the plain dict does."""
    config = OmegaConf.create(preset(name))
    text = rollout(call(1, 1), call(1, 1, 1), qa(1, 1, 1), answer())
    assert score(text, **config) == score(text, **preset(name))
    assert spec_for_kwargs(config) == spec_for_kwargs(preset(name))
    # reward_kwargs are parsed from a key-sorted JSON form, so the terms may come in another order.
    by_name = {term.name: term for term in spec_from_dict(preset(name)).terms}
    assert {term.name: term for term in spec_for_kwargs(config).terms} == by_name


# ---------------------------------------------------------------------------------------------------------------
# rewards.score.compute_score

GOOD = rollout(call(1, 1), call(1, 1, 1), answer())


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_score_dict_holds_score_components_and_counts(name: str) -> None:
    """The score dict holds the score, every component of the spec, every count and has_clues."""
    kwargs = preset(name)
    result = score(GOOD, **kwargs)
    assert set(result) == {"score", "has_clues", *kwargs["components"], *COUNT_KEYS}
    assert result["has_clues"] == 1
    assert result["answer"] == 1.0
    assert (result["turns"], result["tool_calls"], result["answered"]) == (3, 2, 1)
    assert all(isinstance(result[key], int) for key in COUNT_KEYS)


@pytest.mark.parametrize(("name", "expected"), [
    pytest.param("paper", 2.0, id="paper"),
    pytest.param("default", 1.5, id="default"),
    pytest.param("answer_only", 1.0, id="answer_only"),
    pytest.param("no_location", 1.0, id="no_location"),
])
def test_score_of_a_perfect_rollout(name: str, expected: float) -> None:
    """Reading the one clue leaf and answering right reaches the preset's top score."""
    assert score(rollout(call(1, 1, 1), answer()), **preset(name))["score"] == pytest.approx(expected)


def test_score_is_the_weighted_sum() -> None:
    """The score is the weighted sum of the components under the default preset."""
    result = score(rollout(call(1, 1), call(1, 1), call(1, 1, 1), call(1, 1, 2), answer("C")))
    assert (result["answer"], result["location"], result["efficiency"]) == (0.0, pytest.approx(2 / 3), -0.1)
    assert result["score"] == pytest.approx(0.5 * 2 / 3 - 0.1)


@pytest.mark.parametrize("clues", [[], None, MISSING], ids=["empty", "none", "absent"])
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_score_without_clues(name: str, clues: object) -> None:
    """Without clue intervals location is NaN, has_clues 0, and the score leaves location out."""
    result = score(rollout(call(1, 1, 1), answer()), info=extra(clue_intervals=clues), **preset(name))
    assert result["has_clues"] == 0
    if "location" in result:
        assert math.isnan(result["location"])
    assert not math.isnan(result["score"])


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(rollout(call(1, 1, 1), answer()), 1.0, id="right"),
    pytest.param(rollout(*[call(1, 1, 1)] * 10, answer()), 1.0, id="right-with-repeats"),
    pytest.param(rollout(call(1, 1, 1), answer("C")), 0.0, id="wrong"),
    pytest.param("", 0.0, id="empty"),
])
def test_paper_scores_the_answer_alone_without_clues(text: str, expected: float) -> None:
    """The paper preset keeps only the answer on data without clues: repeats cost nothing there."""
    result = score(text, info=extra(clue_intervals=[]), **preset("paper"))
    assert result["score"] == expected
    assert result["score"] == result["answer"]


def test_default_keeps_every_other_component_without_clues() -> None:
    """The default preset still applies answer, efficiency and format on data without clues."""
    result = score(rollout(call(1, 1), call(1, 1), answer()), info=extra(clue_intervals=[]))
    assert result["score"] == pytest.approx(1.0 - 0.1)


@pytest.mark.parametrize(("ground_truth", "overrides", "field"), [
    pytest.param("Z", {}, "ground_truth='Z'", id="ground-truth-beyond-options"),
    pytest.param("BC", {}, "ground_truth='BC'", id="ground-truth-two-letters"),
    pytest.param("B", {"width": MISSING}, "extra_info.width", id="missing-width"),
    pytest.param("B", {"video_uid": MISSING}, "extra_info.video_uid", id="missing-video-uid"),
    pytest.param("B", {"clue_intervals": [[0, 10], [5, 1]]}, "extra_info.clue_intervals[1]", id="bad-clue"),
])
def test_compute_score_input_errors_name_source_and_index(ground_truth: object, overrides: dict, field: str) -> None:
    """Bad input raises RewardInputError naming the data source, extra_info.index and the field."""
    with pytest.raises(RewardInputError) as raised:
        score(GOOD, ground_truth, extra(**overrides))
    message = str(raised.value)
    assert f"data_source={DATA_SOURCE!r}" in message
    assert "extra_info.index=7" in message
    assert field in message


def test_compute_score_without_extra_info_names_the_source() -> None:
    """A missing extra_info raises RewardInputError naming the data source and an unknown index."""
    with pytest.raises(RewardInputError, match=r"data_source='lvbench', extra_info.index=None: extra_info must be"):
        compute_score(DATA_SOURCE, GOOD, "B")


def test_compute_score_refuses_token_ids() -> None:
    """A solution that is not decoded text raises RewardInputError naming the data source."""
    with pytest.raises(RewardInputError, match="lvbench: solution_str must be the decoded rollout text, got list"):
        compute_score(DATA_SOURCE, [1, 2, 3], "B", extra())


def test_score_rollout_matches_compute_score() -> None:
    """score_rollout on a read question is what compute_score returns."""
    spec = spec_from_dict(preset("paper"))
    assert score_rollout(spec, GOOD, question()) == score(GOOD, **preset("paper"))


# The flaw of rewards/README.md: in the public code ten copies of one right get_caption raised the paper score
# 1.75 -> 6.70.
ONE_RIGHT_CALL = rollout(call(1, 1, 1), answer())
TEN_RIGHT_CALLS = rollout(*[call(1, 1, 1)] * 10, answer())


def test_paper_ten_repeats_lower_the_score() -> None:
    """Repeating one correct get_caption ten times lowers the paper score and leaves location at 1."""
    once, ten = score(ONE_RIGHT_CALL, **preset("paper")), score(TEN_RIGHT_CALLS, **preset("paper"))
    assert once["score"] == pytest.approx(2.0)
    assert ten["location"] == once["location"] == 1.0
    assert ten["repeat_ratio"] == 9.0
    assert ten["score"] == pytest.approx(2.0 - 0.2 * 9)


@pytest.mark.parametrize("copies", [2, 5, 10, 15, 30])
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_repeats_never_raise_the_score(name: str, copies: int) -> None:
    """Under every preset, repeating one correct call never raises the score."""
    kwargs = preset(name)
    assert score(rollout(*[call(1, 1, 1)] * copies, answer()), **kwargs)["score"] <= \
        score(ONE_RIGHT_CALL, **kwargs)["score"]


@pytest.mark.parametrize("copies", [1, 2, 10, 15])
@pytest.mark.parametrize("name", PRESET_NAMES)
def test_wrong_answer_with_repeats_never_outscores_the_right_one(name: str, copies: int) -> None:
    """A wrong answer after repeated right calls scores below the right answer after one call, every preset."""
    kwargs = preset(name)
    wrong = score(rollout(*[call(1, 1, 1)] * copies, answer("C")), **kwargs)["score"]
    assert wrong < score(ONE_RIGHT_CALL, **kwargs)["score"]
    assert wrong <= score(rollout(answer()), **kwargs)["score"]
