"""Fuzz: 10,000 rollouts through verl's reward entry under every preset, in bounds, and degenerates never pay more.

Each example is one question (any allowed width and duration, options, clue intervals or none) with a
correct rollout (its clue leaves read once each, then the right letter) and 24 degenerate variants of
that same rollout: repeated calls, hedged answers, junk in place of the answer, no answer, a wrong
answer, invalid calls, calls after the answer, and mixes of these. Every score of every preset must lie
inside the preset's bounds (`RewardSpec.bounds`, defined once with the spec), no degenerate variant
may score above the correct rollout under any preset, and one without the right answer (a hedge,
junk, none, a wrong letter; no call added after it) scores at least the answer's weight below it. A
second test sends adversarial text (huge strings, unicode, nested tags, `</tool>` injection,
negative, huge and float ids) for the bounds alone, and values that are not text must be refused
with a reason, never scored. Generation is derandomized.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from launch.compose import compose_config, to_container
from rewards.policies import AuditCase, clue_leaves
from rewards.question import RewardInputError
from rewards.rollout import decoded_rollout
from rewards.score import compute_score
from rewards.spec import PRESET_DIR, spec_from_dict
from tools.environment import geometry
from tools.environment.answers import LETTERS
from tools.environment.prompts import caption_observation

ROLLOUTS_PER_EXAMPLE = 25
EXAMPLES = 400
# No shrinking: a failure reports its rollout at once instead of spending minutes of CI on a smaller one.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                phases=(Phase.explicit, Phase.generate))
ADVERSARIAL = settings(FUZZ, max_examples=100)
DATA_SOURCE = "lvbench"
# Every preset, composed through Hydra as the RL stage passes it to verl.
PRESETS = {path.stem: to_container(compose_config("sft", [f"reward={path.stem}"], False).config)["reward"]
           for path in sorted(PRESET_DIR.glob("*.yaml"))}
SPECS = {name: spec_from_dict(kwargs) for name, kwargs in PRESETS.items()}
ANSWER_WEIGHTS = {name: next(term.weight for term in spec.terms if term.name == "answer")
                  for name, spec in SPECS.items()}
OPTION_WORDS = ("a dog", "the red car", "a cat", "two people", "a kitchen", "the blue door")


@st.composite
def questions(draw: st.DrawFn) -> AuditCase:
    """A valid question: any allowed width, 30 s to 6 h, 2-6 options, and clue intervals inside the video or none."""
    width = draw(st.integers(geometry.SMALLEST_MIN_WIDTH, geometry.MAX_WIDTH))
    duration = draw(st.floats(30.0, 21_600.0))
    options = tuple(OPTION_WORDS[:draw(st.integers(2, len(OPTION_WORDS)))])
    clues = ()
    for _ in range(draw(st.integers(0, 3))):
        start = draw(st.floats(0.0, 0.99)) * duration
        clues += ((start, min(duration, start + draw(st.floats(0.5, 0.2 * duration)))),)
    return AuditCase("vid", duration, width, clues, options, LETTERS[draw(st.integers(0, len(options) - 1))])


def extra_info(question: AuditCase) -> dict:
    """The question's extra_info; an empty clue list where it has no clues (location does not apply)."""
    return question.extra_info(7)


def read(question: AuditCase, ids: tuple[int, ...]) -> tuple[str, str]:
    """A well-formed get_caption turn and the observation the tool serves for it."""
    turn = f"<think>I read {geometry.format_ids(ids)}.</think><tool>get_caption({geometry.format_ids(ids)})</tool>"
    return turn, caption_observation(ids, question.width, question.duration, "people talk")


def answer(text: str) -> tuple[str, str]:
    """A well-formed answer turn (nothing follows it)."""
    return f"<think>I know.</think><answer>{text}</answer>", ""


def correct_steps(question: AuditCase) -> list[tuple[str, str]]:
    """The correct rollout: each clue leaf read once (the first medium segment without clues), then the letter."""
    leaves = clue_leaves(question)[:8] if question.clues else [(1, 1)]
    return [read(question, ids) for ids in leaves] + [answer(question.letter)]


def hedges(question: AuditCase) -> st.SearchStrategy[str]:
    """Answers that hedge between the right letter and another: `B, or maybe C`, `either B or C`, `b/c`."""
    right, other = question.letter, question.wrong_letter
    joined = st.sampled_from([" or ", ", or maybe ", "/", " and ", ", ", " or perhaps ", " & "])
    pair = st.tuples(st.sampled_from([(right, other), (other, right)]), joined, st.booleans()).map(
        lambda case: case[0][0] + case[1] + case[0][1] if not case[2] else (case[0][0] + case[1] + case[0][1]).lower())
    return st.one_of(pair, pair.map("either {}".format), pair.map("The answer is {}".format),
                     st.just(f"{right}, or maybe the answer is {other}"))


# Text that can make neither a call nor an answer (no <tool> or <answer> tag): junk where an answer should be.
JUNK = st.one_of(st.text(max_size=60).map(lambda text: text.replace("<", "")),
                 st.lists(st.sampled_from(["<think>", "</think>", "</tool>", "</answer>", "get_caption((1, 1))", "B",
                                           "(", "1", "é", "🐱", "\n"]), max_size=20).map("".join))


@st.composite
def degenerate(draw: st.DrawFn, question: AuditCase,
               steps: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], bool]:
    """A degenerate variant of the correct `steps` (one or two of the ways a policy can go wrong, each applied to the
    calls before the answer, the answer itself, or turns after it) and whether it lost the right answer and nothing
    but bad turns was added."""
    calls, before, final, after = steps[:-1], list(steps[:-1]), steps[-1], []
    kinds = draw(st.lists(st.sampled_from(["repeat", "hedge", "junk", "no_answer", "wrong", "invalid", "after"]),
                          min_size=1, max_size=2, unique=True))
    for kind in kinds:
        if kind == "repeat":
            for _ in range(draw(st.integers(1, 12))):
                before.insert(draw(st.integers(0, len(before))), draw(st.sampled_from(calls)))
        elif kind == "hedge":
            final = answer(draw(hedges(question)))
        elif kind == "junk":
            final = (draw(JUNK), "")
        elif kind == "no_answer":
            final = draw(st.sampled_from([("", ""), ("<think>t</think><answer>" + question.letter, "")]))
        elif kind == "wrong":
            final = answer(question.wrong_letter)
        elif kind == "invalid":
            bad = st.sampled_from(["get_caption((3))", f"get_caption(({question.width + 1}, 1))", "get_caption(-1)",
                                   "get_caption((1.5, 2))", "video_qa((1, 1, 1))", "get_caption((1, 1, 1, 1))"])
            turn = f"<think>t</think><tool>{draw(bad)}</tool>"
            before.insert(draw(st.integers(0, len(before))), (turn, "Invalid action: that call is refused."))
        else:
            # Calls after the answer, which the tool never serves.
            after += [draw(st.sampled_from(calls)), read(question, (1, 2))]
    # Turns after a lost answer are served (they change location), so only a lost answer alone must cost its weight.
    return before + [final] + after, final != steps[-1] and not after


def check_in_bounds(name: str, result: dict) -> None:
    """The score and every component of preset `name` lie inside the bounds the spec defines."""
    spec = SPECS[name]
    low, high = spec.bounds()
    assert math.isfinite(result["score"]) and low <= result["score"] <= high, (name, result)
    for term in spec.terms:
        value = result[term.name]
        if not math.isnan(value):
            bottom, top = term.component.bounds(term.options)
            assert bottom <= value <= top, (name, term.name, value)


def scores(text: str, question: AuditCase) -> dict[str, float]:
    """The score of `text` under every preset, each checked against its bounds."""
    results = {}
    for name, kwargs in PRESETS.items():
        result = compute_score(DATA_SOURCE, text, question.letter, extra_info(question), **kwargs)
        check_in_bounds(name, result)
        results[name] = result["score"]
    return results


def test_ten_thousand_rollouts_stay_in_bounds_and_degenerates_never_outscore_the_correct_one() -> None:
    """400 questions, each a correct rollout and 24 degenerate variants, under every preset."""
    scored = []

    @FUZZ
    @given(st.data())
    def one_question(data: st.DataObject) -> None:
        """One question's correct rollout against its degenerate variants."""
        question = data.draw(questions())
        steps = correct_steps(question)
        best = scores(decoded_rollout(steps), question)
        for _ in range(ROLLOUTS_PER_EXAMPLE - 1):
            variant_steps, lost_answer = data.draw(degenerate(question, steps))
            variant = decoded_rollout(variant_steps)
            for name, value in scores(variant, question).items():
                # Without the right answer a variant loses at least the answer's weight, whatever else it does.
                margin = ANSWER_WEIGHTS[name] if lost_answer else 0.0
                assert value <= best[name] - margin + 1e-9, (name, value, best[name], variant[-400:])
        scored.append(ROLLOUTS_PER_EXAMPLE)

    one_question()
    assert sum(scored) >= 10_000


ID = st.one_of(st.integers(-5, 12), st.sampled_from(["10**40", "1e9", "1.5", "-0", "١", "None", "'1'"]))
CALL = st.one_of(
    st.lists(ID, max_size=4).map(lambda ids: f"get_caption(({', '.join(map(str, ids))}))"),
    st.lists(ID, max_size=4).map(lambda ids: f'video_qa(({", ".join(map(str, ids))}), "q</tool>x")'),
    st.sampled_from(["get_caption((1, 1))" + " " * 50_000, "<tool>get_caption((1, 1))</tool>", "x" * 100_000]),
)
ADVERSARIAL_TURN = st.one_of(
    CALL.map("<think>t</think><tool>{}</tool>".format),
    CALL.map("<tool><tool>{}</tool></tool>".format),
    st.text(max_size=40).map("<think>t</think><answer>{}</answer>".format),
    st.sampled_from(["<answer><answer>B</answer></answer>", "</tool>" * 500, "<think>" * 500, "B" * 200_000,
                     "<answer>" + "B or " * 5000 + "</answer>", "\udcff", "\x00\x00"]),
    st.text(max_size=80),
)
OBSERVATION = st.sampled_from(["", "\nuser\nLow caption (1, 1, 1) [0.0s-1.0s]: x\nassistant\n",
                               "\nuser\nThe tool failed: no video. Try another action or answer.\nassistant\n"])


@ADVERSARIAL
@given(questions(), st.lists(st.tuples(ADVERSARIAL_TURN, OBSERVATION), max_size=12))
def test_adversarial_rollouts_stay_in_bounds(question: AuditCase, steps: list[tuple[str, str]]) -> None:
    """Huge, unicode, nested, injected and ill-numbered rollouts score inside every preset's bounds."""
    scores(decoded_rollout(steps), question)


@pytest.mark.parametrize("solution", [None, b"<answer>B</answer>", 3, ["<answer>B</answer>"], 2.5],
                         ids=["none", "bytes", "int", "list", "float"])
def test_a_rollout_that_is_not_text_is_refused_with_a_reason(solution: object) -> None:
    """verl hands decoded text; anything else raises RewardInputError naming the source, never a silent score."""
    question = AuditCase("vid", 640.0, 4, ((0.0, 10.0),), OPTION_WORDS[:4], "B")
    with pytest.raises(RewardInputError, match="lvbench: solution_str must be the decoded rollout text"):
        compute_score(DATA_SOURCE, solution, "B", extra_info(question))
