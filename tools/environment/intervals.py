"""Time intervals as sorted, disjoint lists of `(start, end)` seconds: union, merge, length and overlap.

The location reward compares the union of the segments a rollout visited with the union of the
ground-truth clue intervals. Both are reduced to disjoint lists first, so a segment visited twice,
or two overlapping clues, are counted once.
"""

from __future__ import annotations

from collections.abc import Iterable

Interval = tuple[float, float]


def merge(intervals: Iterable[Interval], gap: float = 0.0) -> list[Interval]:
    """The union of `intervals` as a sorted disjoint list; intervals closer than `gap` seconds are joined."""
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        # Overlapping or touching intervals always join; separate ones join when the gap is small.
        if merged and (start <= merged[-1][1] or start - merged[-1][1] < gap):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def total_length(intervals: Iterable[Interval]) -> float:
    """The summed length of disjoint intervals."""
    return sum(end - start for start, end in intervals)


def overlap_length(first: list[Interval], second: list[Interval]) -> float:
    """The length of the intersection of two sorted disjoint interval lists (one linear sweep)."""
    total, i, j = 0.0, 0, 0
    while i < len(first) and j < len(second):
        start = max(first[i][0], second[j][0])
        end = min(first[i][1], second[j][1])
        if end > start:
            total += end - start
        # Advance whichever interval ends first; the other may still overlap the next one.
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return total


def overlaps(start: float, end: float, intervals: Iterable[Interval]) -> bool:
    """Whether [start, end] shares a stretch of positive length with any of `intervals`."""
    return any(min(end, other_end) > max(start, other_start) for other_start, other_end in intervals)


def f1_of_overlap(visited: list[Interval], clues: list[Interval]) -> tuple[float, float, float]:
    """(coverage, precision, F1) of disjoint visited intervals against disjoint clue intervals, each in [0, 1]."""
    shared = overlap_length(visited, clues)
    clue_time, visited_time = total_length(clues), total_length(visited)
    coverage = shared / clue_time if clue_time > 0 else 0.0
    precision = shared / visited_time if visited_time > 0 else 0.0
    if coverage + precision == 0:
        return coverage, precision, 0.0
    # Float sums can land a hair above 1; the documented range is exact.
    coverage, precision = min(coverage, 1.0), min(precision, 1.0)
    return coverage, precision, 2 * coverage * precision / (coverage + precision)
