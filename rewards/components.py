"""The reward components: answer, location, efficiency, format, and the paper's repeat ratio.

Each is a plain function of a judged rollout, its question and keyword options (whose defaults are
the options a preset may set), registered with its range. rewards/README.md documents every formula.
"""

from __future__ import annotations

from collections.abc import Sequence

from rewards.question import AnswerKey
from rewards.registry import register
from rewards.rollout import Rollout
from tools.environment import geometry
from tools.environment.actions import VideoQA
from tools.environment.answers import answer_option
from tools.environment.intervals import f1_of_overlap, merge

# Which served calls count as visits for location: medium captions, low captions, video_qa questions.
VISIT_KINDS = (*geometry.LEVEL_NAMES[1:], "video_qa")


@register("answer", bounds=lambda options: (0.0, 1.0))
def answer_reward(rollout: Rollout, question: AnswerKey) -> float:
    """1 when every answer of the rollout names the ground-truth option, else 0 (none, unreadable or different)."""
    letters = {answer_option(answer.text, question.options) for answer in rollout.answers}
    return float(letters == {question.letter})


def visited_intervals(rollout: Rollout, question: AnswerKey, visits: Sequence[str]) -> list[tuple[float, float]]:
    """The union of the time ranges of the served calls of the kinds in `visits`, as a disjoint list."""
    ranges = []
    for action in rollout.served_calls:
        kind = "video_qa" if isinstance(action, VideoQA) else geometry.level_name(action.ids)
        if kind in visits:
            ranges.append(geometry.time_range(action.ids, question.width, question.duration))
    return merge(ranges)


@register("location", bounds=lambda options: (0.0, 1.0), choices={"visits": VISIT_KINDS})
def location_reward(rollout: Rollout, question: AnswerKey, *, merge_gap_s: float = 5.0,
                    visits: Sequence[str] = VISIT_KINDS) -> float | None:
    """F1 of coverage and precision of visited time against clue time; None when the data has no clues."""
    clues = question.merged_clues(merge_gap_s)
    if clues is None:
        return None
    return f1_of_overlap(visited_intervals(rollout, question, visits), clues)[2]


@register("efficiency", bounds=lambda options: (-float(options["max_penalty"]), 0.0))
def efficiency_reward(rollout: Rollout, question: AnswerKey, *, repeat_penalty: float = 0.1, turn_budget: int = 10,
                      over_budget_penalty: float = 0.05, video_qa_penalty: float = 0.02,
                      max_penalty: float = 0.5) -> float:
    """Minus the penalties for repeated calls, calls beyond the budget and video_qa calls, capped; never positive."""
    served = rollout.served_calls
    repeats = len(served) - rollout.unique_calls
    over_budget = max(0, rollout.tool_calls - turn_budget)
    video_qa = sum(isinstance(action, VideoQA) for action in served)
    penalty = repeat_penalty * repeats + over_budget_penalty * over_budget + video_qa_penalty * video_qa
    return 0.0 - min(max_penalty, penalty)


@register("format", bounds=lambda options: (-float(options["max_penalty"]), 0.0))
def format_reward(rollout: Rollout, question: AnswerKey, *, penalty_per_turn: float = 0.1,
                  max_penalty: float = 0.5) -> float:
    """Minus a penalty per turn that is invalid or breaks the grammar (an empty rollout is one such turn), capped."""
    bad_turns = rollout.ill_formed_turns if rollout.turns else 1
    return 0.0 - min(max_penalty, penalty_per_turn * bad_turns)


@register("repeat_ratio", bounds=lambda options: (0.0, float(options["cap"])))
def repeat_ratio(rollout: Rollout, question: AnswerKey, *, cap: float = 14.0) -> float:
    """The paper's (calls - unique calls) / unique calls over served calls, at most `cap`; 0 without calls."""
    unique = rollout.unique_calls
    if unique == 0:
        return 0.0
    return min(cap, (len(rollout.served_calls) - unique) / unique)
