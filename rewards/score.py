"""The composite reward and verl's entry: `compute_score(data_source, solution_str, ground_truth, extra_info, **spec)`.

The score is the weighted sum of the spec's components that apply to the question: location does
not apply without clue intervals, and a spec may keep only some components on such data (the
paper's keeps the answer alone). The returned dict holds the score, every component (NaN where it
does not apply) and the rollout's counts, so verl logs each in `reward_extra_info`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rewards.question import AnswerKey, RewardInputError, read_question
from rewards.rollout import judge_rollout, rollout_counts
from rewards.spec import RewardSpec, spec_for_kwargs
from tools.environment.plain_data import plain_data


def score_rollout(spec: RewardSpec, solution_str: str, question: AnswerKey) -> dict[str, float]:
    """The score, each component and the counts of one decoded rollout under `spec`."""
    rollout = judge_rollout(solution_str, question.width)
    values = {term.name: term.component(rollout, question, term.options) for term in spec.terms}
    kept = spec.no_clue_components if question.clues is None else None
    score = 0.0
    for term in spec.terms:
        value = values[term.name]
        if value is not None and (kept is None or term.name in kept):
            score += term.weight * value
    result: dict[str, float] = {"score": score}
    result.update({name: math.nan if value is None else float(value) for name, value in values.items()})
    result.update(rollout_counts(rollout))
    result["has_clues"] = int(question.clues is not None)
    return result


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping | None = None,
                  **reward_kwargs: Any) -> dict[str, float]:
    """verl's reward function: the score dict of one rollout under the spec in `reward_kwargs` (default preset)."""
    spec = spec_for_kwargs(reward_kwargs)
    if not isinstance(solution_str, str):
        raise RewardInputError(f"{data_source}: solution_str must be the decoded rollout text, got "
                               f"{type(solution_str).__name__}")
    try:
        question = read_question(ground_truth, extra_info)
    except RewardInputError as error:
        # A parquet row's index may be a numpy integer; the message shows the plain number.
        where = plain_data(extra_info.get("index")) if isinstance(extra_info, Mapping) else None
        raise RewardInputError(f"data_source={data_source!r}, extra_info.index={where!r}: {error}") from None
    return score_rollout(spec, solution_str, question)
