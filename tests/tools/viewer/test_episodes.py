"""The viewer's episodes: each turn's status, the visits in order with their kind and time range, table-driven."""

from __future__ import annotations

import pytest

from rewards.question import answer_key
from rewards.rollout import decoded_rollout, observation_of, split_steps
from tools.environment.prompts import tool_failure_observation
from tools.viewer.episodes import episode_of_text, finite_or_none
from tools.viewer.sources import plain_text, user_turn

QUESTION = answer_key("B", ["a", "b", "c", "d"], 4, 1024.0, [[144.0, 160.0]])
MEDIUM = ("<think>m</think><tool>get_caption((1, 3))</tool>", "Medium caption (1, 3) [128.0s-192.0s]: x")
LOW = ("<think>l</think><tool>get_caption((1, 3, 2))</tool>", "Low caption (1, 3, 2) [144.0s-160.0s]: y")
QA = ('<think>q</think><tool>video_qa((1, 3, 2), "what?")</tool>', "<information>z</information>")
QA_EARLY = ('<think>q</think><tool>video_qa((2, 1, 1), "what?")</tool>', "Invalid: read its caption first")
FAILED_QA = ('<think>q</think><tool>video_qa((1, 3, 2), "what?")</tool>', tool_failure_observation("the VLM timed out"))
OUT_OF_RANGE = ("<think>far</think><tool>get_caption((9, 1))</tool>", "Invalid: out of range")
UNREADABLE = ("<think>hm</think><tool>get_caption(one)</tool>", "Invalid: cannot read")
ANSWER_B = ("<think>so B</think><answer>B</answer>", "")
ANSWER_C = ("<think>so C</think><answer>C</answer>", "")

CASES = [
    # (name, steps, statuses, visits as (n, kind, start, end), correct)
    ("medium, low, video_qa, answer", [MEDIUM, LOW, QA, ANSWER_B], ["served", "served", "served", "answer"],
     [(1, "medium", 128.0, 192.0), (2, "low", 144.0, 160.0), (3, "video_qa", 144.0, 160.0)], True),
    ("video_qa before its caption is refused", [QA_EARLY, ANSWER_B], ["refused", "answer"], [], True),
    ("a failed video_qa is not a visit", [LOW, FAILED_QA, ANSWER_C], ["served", "failed", "answer"],
     [(1, "low", 144.0, 160.0)], False),
    ("out of range and unreadable are refused", [OUT_OF_RANGE, UNREADABLE, MEDIUM, ANSWER_B],
     ["refused", "refused", "served", "answer"], [(1, "medium", 128.0, 192.0)], True),
    ("a repeat is a second visit", [MEDIUM, MEDIUM, ANSWER_B], ["served", "served", "answer"],
     [(1, "medium", 128.0, 192.0), (2, "medium", 128.0, 192.0)], True),
    ("a turn after the answer is refused", [ANSWER_B, MEDIUM], ["answer", "refused"], [], True),
]


@pytest.mark.parametrize(("name", "steps", "statuses", "visits", "correct"), CASES, ids=[case[0] for case in CASES])
def test_episode_of_text(name: str, steps: list, statuses: list, visits: list, correct: bool) -> None:
    """Statuses follow the serve rule; visits are the served calls, numbered, at their segments' time ranges."""
    episode = episode_of_text("e", decoded_rollout(steps), QUESTION)
    assert [step.status for step in episode.steps] == statuses
    assert [(v.n, v.kind, v.start, v.end) for v in episode.visits] == visits
    assert [step.visit for step in episode.steps if step.status == "served"] == [v[0] for v in visits]
    assert episode.correct is correct
    assert [step.observation for step in episode.steps] == [observation for _, observation in steps]
    refused = [step for step in episode.steps if step.status in ("refused", "failed")]
    assert all(step.reason for step in refused)
    assert episode.clues == [[144.0, 160.0]]


def test_thought_and_action_are_split() -> None:
    """The thought is the text inside <think>, the action the call as the model wrote it."""
    episode = episode_of_text("e", decoded_rollout([QA, ANSWER_B]), QUESTION)
    assert (episode.steps[0].think, episode.steps[0].action) == ("q", 'video_qa((1, 3, 2), "what?")')
    assert episode.steps[1].action == "B"


def test_location_f1_and_reward_fields() -> None:
    """Location F1 is the reward's location component; NaN components and count fields leave the page data."""
    episode = episode_of_text("e", decoded_rollout([LOW, ANSWER_B]), QUESTION,
                              reward={"score": 1.5, "location": float("nan"), "turns": 2, "note": "text"})
    assert episode.location_f1 == pytest.approx(1.0)
    assert episode.to_dict()["reward"] == {"score": 1.5, "location": None}


@pytest.mark.parametrize(("value", "expected"), [(1, 1.0), (0.5, 0.5), (float("nan"), None), (float("inf"), None),
                                                 (True, None), ("1", None), (None, None)])
def test_finite_or_none(value: object, expected: float | None) -> None:
    """Only finite numbers survive into the page's JSON."""
    assert finite_or_none(value) == expected


@pytest.mark.parametrize(("between", "observation"), [
    ("\nuser\nMedium caption x\nassistant\n", "Medium caption x"), ("", ""), ("\nuser\ncut off", "cut off")])
def test_observation_of(between: str, observation: str) -> None:
    """The chat role text around an observation is removed, an unterminated last one kept."""
    assert observation_of(between) == observation


def test_a_dump_decoded_with_special_tokens_reads_as_the_reward_reads_it() -> None:
    """verl's dumps keep the chat template's tokens; without them the text splits into the same turns."""
    plain = decoded_rollout([MEDIUM, ANSWER_B])
    special = ("<think>m</think><tool>get_caption((1, 3))</tool><|im_end|>\n<|im_start|>user\n"
               "Medium caption (1, 3) [128.0s-192.0s]: x<|im_end|>\n<|im_start|>assistant\n"
               "<think>so B</think><answer>B</answer><|im_end|><|endoftext|>")
    assert split_steps(plain_text(special)) == split_steps(plain)
    prompt = ("<|im_start|>system\nrules<|im_end|>\n<|im_start|>user\nQuestion: which?\n(A) a<|im_end|>\n"
              "<|im_start|>assistant\n")
    assert user_turn(prompt) == "Question: which?\n(A) a"
    assert user_turn("no chat markers") is None
