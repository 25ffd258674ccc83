"""What the reward knows about one question: its ground-truth letter, options, tree geometry and clues.

Read from verl's `ground_truth` and `extra_info` (field names fixed in rewards/README.md). Rows from a
parquet file arrive with numpy arrays where the JSON had lists, so `extra_info` is made plain first.
Bad data raises RewardInputError naming the field: a question never silently scores zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

from tools.environment.answers import LETTERS, ground_truth_letter
from tools.environment.intervals import Interval, merge
from tools.environment.plain_data import plain_data
from tools.environment.question_fields import VideoFields


class RewardInputError(ValueError):
    """A rollout's ground truth or extra_info cannot be scored; the message names the field."""


@dataclass(frozen=True)
class AnswerKey:
    """What a rollout is scored against: the ground-truth letter, the options, the tree geometry and the clues.

    `clues` is None where the data has no clue intervals.
    """

    letter: str
    options: tuple[str, ...]
    width: int
    duration: float
    clues: tuple[Interval, ...] | None

    def merged_clues(self, gap: float) -> list[Interval] | None:
        """The clue intervals as a disjoint list, joined when closer than `gap` seconds; None without clues."""
        return None if self.clues is None else merge(self.clues, gap)


def _ground_truth_letter(ground_truth: object, options: tuple[str, ...]) -> str:
    """The option letter of `ground_truth`: a letter such as `B`, `(B)` or `B.`, in range of the options."""
    letter = ground_truth_letter(ground_truth)
    if letter is None:
        raise RewardInputError(f"ground_truth={ground_truth!r}: expected an option letter such as 'B'")
    if options and LETTERS.index(letter) >= len(options):
        raise RewardInputError(f"ground_truth={ground_truth!r} names option {letter}, but extra_info.options has "
                               f"only {len(options)} options")
    return letter


def _options(options: object) -> tuple[str, ...]:
    """extra_info.options as a tuple of strings (empty when absent)."""
    if options is None:
        return ()
    if not isinstance(options, list) or not all(isinstance(option, str) for option in options):
        raise RewardInputError(f"extra_info.options={options!r}: expected a list of option texts")
    return tuple(options)


def _clues(raw: object, duration: float) -> tuple[Interval, ...] | None:
    """extra_info.clue_intervals clipped to [0, duration]; None when absent or empty (no location term)."""
    if raw is None or (isinstance(raw, list) and not raw):
        return None
    if not isinstance(raw, list):
        raise RewardInputError(f"extra_info.clue_intervals={raw!r}: expected a list of [start, end] seconds")
    clues = []
    for position, interval in enumerate(raw):
        if (not isinstance(interval, (list, tuple)) or len(interval) != 2
                or not all(isinstance(t, Real) and not isinstance(t, bool) and math.isfinite(t) for t in interval)
                or interval[0] > interval[1]):
            raise RewardInputError(f"extra_info.clue_intervals[{position}]={interval!r}: expected [start, end] "
                                   "seconds with start <= end")
        start, end = max(0.0, float(interval[0])), min(duration, float(interval[1]))
        if end > start:
            clues.append((start, end))
    if not clues:
        raise RewardInputError(f"extra_info.clue_intervals={raw!r}: no interval overlaps the video [0, {duration}]s")
    return tuple(clues)


def read_question(ground_truth: object, extra_info: object) -> AnswerKey:
    """The AnswerKey of one rollout; RewardInputError naming the field when something is missing or wrong."""
    if not isinstance(extra_info, dict):
        raise RewardInputError(f"extra_info must be a mapping with video_uid, duration and width, got "
                               f"{type(extra_info).__name__}")
    extra_info = plain_data(extra_info)
    try:
        fields = VideoFields.from_extra_info(extra_info)
    except ValueError as error:
        raise RewardInputError(str(error)) from None
    return _answer_key(ground_truth, extra_info.get("options"), fields.width, fields.duration,
                       extra_info.get("clue_intervals"))


def answer_key(ground_truth: object, options: object, width: int, duration: float,
               clue_intervals: object) -> AnswerKey:
    """The AnswerKey from its fields (width and duration already checked, as `VideoFields` or a trajectory do)."""
    return _answer_key(ground_truth, plain_data(options), width, duration, plain_data(clue_intervals))


def _answer_key(ground_truth: object, options: object, width: int, duration: float,
                clue_intervals: object) -> AnswerKey:
    """The AnswerKey from plain fields."""
    options = _options(options)
    return AnswerKey(_ground_truth_letter(ground_truth, options), options, width, duration,
                     _clues(clue_intervals, duration))
