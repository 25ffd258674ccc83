"""The checks every dataset builder runs on a row it is about to write, each stated once here.

A row is refused when the reward or the tool would refuse it later (`rejected_by_reward`: the reward's
own reading of `ground_truth` and `extra_info`), when its question id was seen on an earlier row
(`UniqueIds`), or when its duration disagrees with the duration its caption file records
(`check_tree_duration`). Each raises RowRejected with a short reason key and a detail for the report;
the builder adds the file and row.
"""

from __future__ import annotations

from rewards.question import RewardInputError, read_question
from tools.environment.caption_tree import CaptionTree

# A caption file's recorded duration may differ from the question's by this fraction (container rounding).
DURATION_TOLERANCE = 0.01


class RowRejected(ValueError):
    """A row that a builder must not write; `reason` is a short key for the report, the message says why."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def check_tree_duration(tree: CaptionTree, duration: float) -> None:
    """RowRejected("duration_mismatch") when the caption file records a duration other than `duration`."""
    if tree.duration is not None and abs(tree.duration - duration) > DURATION_TOLERANCE * duration:
        raise RowRejected("duration_mismatch", f"{tree.source}: the caption file's duration is {tree.duration:g} s "
                                               f"but the question's is {duration:g} s")


def check_reward_reads(ground_truth: object, extra_info: dict) -> None:
    """RowRejected("reward_input") when the reward (compute_score's reading of the row) would raise on it."""
    try:
        read_question(ground_truth, extra_info)
    except RewardInputError as error:
        raise RowRejected("reward_input", f"the reward would refuse this row: {error}") from None


class UniqueIds:
    """The question ids seen so far; `check` refuses one that an earlier row had."""

    def __init__(self, row_name: str = "row"):
        # What a row is called in messages: "row" of an annotation file, "line" of a JSONL file.
        self.row_name = row_name
        self._first: dict[str, int] = {}

    def check(self, question_id: str, row: int) -> None:
        """Remember `question_id` at `row`; RowRejected("duplicate_id") if an earlier row has it."""
        if question_id in self._first:
            raise RowRejected("duplicate_id", f"question id {question_id!r} appears earlier, on {self.row_name} "
                                              f"{self._first[question_id]}")
        self._first[question_id] = row
