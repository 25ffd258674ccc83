"""Properties of the reward over arbitrary rollouts: it never raises, stays in range, and repeats never pay.

Rollouts are arbitrary text or text built from a grammar that mixes real turn tags, tool calls with
random ids (some out of range for the width), answers in many spellings, observations and junk.
Every preset in configs/reward is checked, composed through Hydra as the RL stage passes it.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from launch.compose import compose_config, to_container
from rewards.components import VISIT_KINDS, location_reward
from rewards.question import read_question
from rewards.rollout import COUNT_KEYS, Rollout, decoded_rollout, judge_rollout
from rewards.score import compute_score
from rewards.spec import PRESET_DIR, spec_from_dict
from tools.environment.actions import ANSWER_CLOSE, TOOL_CLOSE, TURN_TAGS, Answer
from tools.environment.geometry import MAX_WIDTH, SMALLEST_MIN_WIDTH, format_ids
from tools.environment.prompts import LETTERS, defuse_action_tags

FAST = settings(deadline=None, max_examples=200)
DATA_SOURCE = "lvbench"
PRESETS = {path.stem: to_container(compose_config("sft", [f"reward={path.stem}"], False).config)["reward"]
           for path in sorted(PRESET_DIR.glob("*.yaml"))}
SPECS = {name: spec_from_dict(kwargs) for name, kwargs in PRESETS.items()}
# What verl-tool puts between a model turn and the next once special tokens are decoded away.
OBSERVATION = "\nuser\nLow caption (1, 1, 1) [0.0s-10.0s]: a man opens the door.\nassistant\n"


@st.composite
def questions(draw: st.DrawFn, clues: tuple[str, ...] = ("absent", "empty", "some")) -> tuple[str, dict]:
    """A valid (ground truth, extra_info): any allowed width, any duration, 2-6 options, clues of a kind in `clues`."""
    width = draw(st.integers(SMALLEST_MIN_WIDTH, MAX_WIDTH))
    duration = draw(st.floats(1.0, 20000.0))
    options = draw(st.lists(st.text(max_size=12), min_size=2, max_size=6))
    letter = LETTERS[draw(st.integers(0, len(options) - 1))]
    ground_truth = draw(st.sampled_from([letter, f"({letter})", f"{letter}."]))
    info = {"video_uid": "vid", "width": width, "duration": duration, "options": options, "index": 3}
    kind = draw(st.sampled_from(clues))
    if kind == "empty":
        info["clue_intervals"] = []
    elif kind == "some":
        # The first clue overlaps the video, so clipping keeps it; the others may lie anywhere, even outside.
        start = draw(st.floats(0.0, 0.95))
        fractions = [(start, start + draw(st.floats(0.001, 1.0)))]
        for _ in range(draw(st.integers(0, 3))):
            other = draw(st.floats(-0.3, 1.3))
            fractions.append((other, other + draw(st.floats(0.0, 0.5))))
        info["clue_intervals"] = [[a * duration, b * duration] for a, b in draw(st.permutations(fractions))]
    if draw(st.booleans()):
        # As a parquet row gives them: numpy arrays and scalars.
        info.update(width=np.int64(width), options=np.array(options, dtype=object))
        if info.get("clue_intervals"):
            info["clue_intervals"] = np.array([np.array(clue) for clue in info["clue_intervals"]], dtype=object)
    return ground_truth, info


# Ids are mostly small (valid at any width) and sometimes anything, out of range or not an id at all.
ID = st.integers(1, 2) | st.integers(1, 2) | st.integers(-1, 10)
IDS = st.sampled_from([2, 3, 3, 1, 4]).flatmap(lambda n: st.tuples(*[ID] * n)) | st.sampled_from(
    [(1, 1, 1), (1, 2), (2, 1, 2)])
LEAF = st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2))
QUERY = st.sampled_from(["what colour is the car?", "What  colour is the CAR?", "who?", ""]) | st.text(
    st.characters(blacklist_characters='"\\<>'), max_size=8)
CALL = (st.builds(lambda ids: f"get_caption({format_ids(ids)})", IDS)
        | st.builds(lambda ids, query: f'video_qa({format_ids(ids)}, "{query}")', IDS.filter(lambda ids: len(ids) == 3),
                    QUERY)
        | st.sampled_from(["get_caption((3))", "get_caption([1, 2])", "get_caption((1, 2)", "search(x)", ""]))
ANSWER = st.sampled_from(["A", "B", "(C)", "D.", "B. a dog", "Answer: A", "the answer is C", "Option D", "A or B",
                          "B, C", "b", "Z", "", " ", "a dog"]) | st.text(max_size=10)
THOUGHT = st.sampled_from(["t", "", "maybe (1, 2)", "use </tool> now", "<answer>A</answer>", "<think>"]) | st.text(
    max_size=10)
TURN = st.one_of(
    st.builds(lambda thought, call: f"<think>{thought}</think><tool>{call}</tool>", THOUGHT, CALL),
    st.builds(lambda thought, call: f"<think>{thought}</think><tool>{call}</tool>", st.just("t"), CALL),
    st.builds(lambda thought, text: f"<think>{thought}</think><answer>{text}</answer>", THOUGHT, ANSWER),
    # A leaf's caption, then a question about it: a video_qa the tool serves.
    st.builds(lambda leaf, query: f"<think>t</think><tool>get_caption({format_ids(leaf)})</tool>{OBSERVATION}"
              f'<think>t</think><tool>video_qa({format_ids(leaf)}, "{query}")</tool>', LEAF, QUERY),
    st.builds(lambda call: f"<tool>{call}</tool>", CALL),
    st.builds(lambda text: f"<answer>{text}</answer>", ANSWER),
    st.sampled_from(TURN_TAGS),
    st.text(max_size=12),
)
# An observation never holds a turn tag (tools.environment.prompts respells them); an empty one joins two turns.
OBSERVATIONS = st.sampled_from([OBSERVATION, "\nuser\n<information>red</information>\nassistant\n", ""]) | st.text(
    max_size=12).map(defuse_action_tags)
STEPS = st.lists(st.tuples(TURN, OBSERVATIONS), max_size=16)
GRAMMAR = STEPS.map(decoded_rollout)
# A call the tool serves at any width of 2 or more (unless it comes after the answer).
SERVABLE = st.sampled_from([(1, 1), (1, 2), (2, 2, 1), (1, 1, 1)]).map(
    lambda ids: f"<think>t</think><tool>get_caption({format_ids(ids)})</tool>")
TEXTS = st.text() | GRAMMAR


def same(first: float, second: float) -> bool:
    """Equal, counting two NaNs as equal."""
    return (math.isnan(first) and math.isnan(second)) or first == second


def check_result(name: str, result: dict) -> None:
    """Invariants of one score dict under preset `name`: score and components in range, counts consistent."""
    spec = SPECS[name]
    low, high = spec.bounds()
    assert low <= result["score"] <= high
    for term in spec.terms:
        value = result[term.name]
        if math.isnan(value):
            assert term.name == "location" and result["has_clues"] == 0
            continue
        bottom, top = term.component.bounds(term.options)
        assert bottom <= value <= top, (term.name, value)
    if "location" in result and result["has_clues"]:
        assert 0.0 <= result["location"] <= 1.0
    assert all(isinstance(result[key], int) and result[key] >= 0 for key in COUNT_KEYS)
    assert result["unique_calls"] <= result["served_calls"] <= result["tool_calls"] <= result["turns"]
    assert result["invalid_turns"] <= result["ill_formed_turns"] <= result["turns"]


@FAST
@given(TEXTS, questions())
def test_compute_score_never_raises_and_stays_in_bounds(text: str, question: tuple[str, dict]) -> None:
    """For valid question fields and any rollout text, every preset scores within its bounds."""
    ground_truth, info = question
    for name, kwargs in PRESETS.items():
        check_result(name, compute_score(DATA_SOURCE, text, ground_truth, info, **kwargs))


def insertion_point(text: str, judged: Rollout) -> int | None:
    """Where a copied call turn goes: before the first answer, else before an unterminated last turn, else the end."""
    starts, position = [], 0
    for turn in judged.turns:
        # Turns are slices in order, each starting at its first tag (or the text's first non-space character).
        position = text.find(turn.text, position)
        starts.append(position)
        position += len(turn.text)
    for index, turn in enumerate(judged.turns):
        if isinstance(turn.parsed.action, Answer):
            return starts[index]
    if judged.turns and not judged.turns[-1].text.endswith((TOOL_CLOSE, ANSWER_CLOSE)):
        return starts[-1]
    return len(text)


@FAST
@given(STEPS, SERVABLE, questions(), st.data())
def test_repeating_a_served_call_never_raises_the_score(steps: list[tuple[str, str]], servable: str,
                                                        question: tuple[str, dict], data: st.DataObject) -> None:
    """A copy of a served call (with its observation) inserted before the answer lowers or keeps every score."""
    ground_truth, info = question
    # A servable call somewhere among the steps, so that most rollouts have a call to repeat.
    steps.insert(data.draw(st.integers(0, len(steps))), (servable, OBSERVATION))
    text = decoded_rollout(steps)
    judged = judge_rollout(text, int(info["width"]))
    served = [turn for turn in judged.turns if turn.valid and turn.is_call]
    assume(served)
    copied = data.draw(st.sampled_from(served))
    at = insertion_point(text, judged)
    repeated = text[:at] + copied.text + OBSERVATION + text[at:]
    for name, kwargs in PRESETS.items():
        before = compute_score(DATA_SOURCE, text, ground_truth, info, **kwargs)
        after = compute_score(DATA_SOURCE, repeated, ground_truth, info, **kwargs)
        check_result(name, after)
        assert after["repeats"] == before["repeats"] + 1
        assert after["unique_calls"] == before["unique_calls"]
        assert after["score"] <= before["score"]
        assert after["answer"] == before["answer"]
        if "location" in before:
            assert same(after["location"], before["location"])


@st.composite
def visit_rollouts(draw: st.DrawFn, width: int) -> list[str]:
    """Well-formed call turns the tool serves: medium and low captions, and video_qa on leaves read before."""
    node = st.integers(1, width)
    turns = []
    for _ in range(draw(st.integers(0, 8))):
        leaf = (draw(node), draw(node), draw(node))
        kind = draw(st.sampled_from(VISIT_KINDS))
        if kind == "medium":
            turns.append(f"<think>t</think><tool>get_caption({format_ids(leaf[:2])})</tool>")
            continue
        turns.append(f"<think>t</think><tool>get_caption({format_ids(leaf)})</tool>")
        if kind == "video_qa":
            query = draw(QUERY.filter(str.strip))
            turns.append(f'<think>t</think><tool>video_qa({format_ids(leaf)}, "{query}")</tool>')
    return turns


@FAST
@given(questions(clues=("some",)), st.data(), st.lists(st.sampled_from(VISIT_KINDS), unique=True),
       st.floats(0.0, 60.0))
def test_a_repeated_visit_never_changes_location(question: tuple[str, dict], data: st.DataObject,
                                                 visits: list[str], merge_gap_s: float) -> None:
    """Copying any served visit to any later place leaves location unchanged, for any visit kinds and gap."""
    ground_truth, info = question
    read = read_question(ground_truth, info)
    turns = data.draw(visit_rollouts(int(info["width"])))
    assume(turns)
    source = data.draw(st.integers(0, len(turns) - 1))
    target = data.draw(st.integers(source + 1, len(turns)))
    repeated = turns[:target] + [turns[source]] + turns[target:]

    def location(calls: list[str]) -> float:
        """The location of `calls` followed by an answer, as served at the question's width."""
        text = decoded_rollout([(call, OBSERVATION) for call in calls] + [("<think>t</think><answer>A</answer>", "")])
        judged = judge_rollout(text, read.width)
        assert all(turn.valid for turn in judged.turns)
        return location_reward(judged, read, merge_gap_s=merge_gap_s, visits=tuple(visits))

    original = location(turns)
    assert 0.0 <= original <= 1.0
    assert location(repeated) == original
