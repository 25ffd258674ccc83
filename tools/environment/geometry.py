"""Caption-tree geometry: segment ids to list indices to time ranges, and the tree width.

The one place this is computed. A video of D seconds is split into `w` high segments, each into
`w` medium and each into `w` low ones (ids are 1-based tuples `(h,)`, `(h, m)`, `(h, m, l)`); a
segment's time range is the uniform split of [0, D] at its level. The tools, rewards, dataset
builders and evaluation all call these functions, so a rollout is scored on exactly the segments
the tool served.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Real

LEAF_SECONDS = 16.0
# The width rule's bounds: the paper's minimum and maximum, the caption builder's defaults.
MIN_WIDTH = 4
MAX_WIDTH = 8
# The smallest minimum any caption tree is built with: MLVU's 3.
SMALLEST_MIN_WIDTH = 3
LEVEL_NAMES = ("high", "medium", "low")
# The level of the low segments, the leaves whose frames video_qa asks about.
LEAF_LEVEL = len(LEVEL_NAMES)


class GeometryError(ValueError):
    """Ids or times that do not name a segment of a tree of the given width and duration."""


def width_for_duration(duration: float, min_width: int = MIN_WIDTH, max_width: int = MAX_WIDTH) -> int:
    """The paper's width: `clamp(round((D / 16) ** (1/3)), min_width, max_width)`."""
    if isinstance(duration, bool) or not isinstance(duration, Real) or not (0 < duration < math.inf):
        raise GeometryError(f"duration must be a positive number of seconds, got {duration!r}")
    return max(min_width, min(max_width, round((duration / LEAF_SECONDS) ** (1 / 3))))


def check_width(width: object, name: str = "width") -> int:
    """`width` as an int if the width rule makes it (SMALLEST_MIN_WIDTH..MAX_WIDTH), else GeometryError naming `name`.

    Only the range is checked, not `width == width_for_duration(D)`: the exact width depends on the
    minimum a tree was built with (4, or 3 for MLVU; released caption files carry either), which a
    question does not record. A width outside the range no setting of the rule makes (1, 2, 100).
    """
    if isinstance(width, float) and width.is_integer():
        width = int(width)
    if isinstance(width, bool) or not isinstance(width, int):
        raise GeometryError(f"{name} must be a whole number of segments per level, got {width!r}")
    if not SMALLEST_MIN_WIDTH <= width <= MAX_WIDTH:
        raise GeometryError(f"{name}={width!r} is outside {SMALLEST_MIN_WIDTH}..{MAX_WIDTH}, the widths the tree rule "
                            f"clamp(round((D / {LEAF_SECONDS:g}) ** (1/3)), min_width, max_width) makes (min_width "
                            f"{MIN_WIDTH}, or {SMALLEST_MIN_WIDTH} for MLVU; max_width {MAX_WIDTH})")
    return width


def level_size(width: int, level: int) -> int:
    """How many segments level `level` (1 high, 2 medium, 3 low) holds: `width ** level`."""
    return width**level


def level_of(ids: tuple[int, ...]) -> int:
    """The level of segment `ids` (1 high, 2 medium, 3 low): how many numbers it has."""
    return len(ids)


def level_name(ids: tuple[int, ...]) -> str:
    """The name of segment `ids`' level in `LEVEL_NAMES`: high, medium or low."""
    return LEVEL_NAMES[level_of(ids) - 1]


def check_ids(ids: tuple[int, ...], width: int) -> None:
    """Raise GeometryError naming the offending id unless `ids` is a valid 1-, 2- or 3-level id."""
    if not 1 <= len(ids) <= 3:
        raise GeometryError(f"a segment id has 1 to 3 numbers (h, m, l), got {len(ids)}: {ids}")
    for position, value in enumerate(ids):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= width:
            name = "hml"[position]
            raise GeometryError(f"{name}={value!r} in {ids} is out of range: each id is 1..{width} at width {width}")


def index_of(ids: tuple[int, ...], width: int) -> int:
    """The 0-based position of segment `ids` in its level's flat list, e.g. (h, m) -> (h-1)*w + (m-1)."""
    check_ids(ids, width)
    index = 0
    for value in ids:
        index = index * width + (value - 1)
    return index


def ids_of(index: int, level: int, width: int) -> tuple[int, ...]:
    """The inverse of `index_of`: the 1-based ids of position `index` at `level`."""
    count = level_size(width, level)
    if not 0 <= index < count:
        raise GeometryError(f"index {index} is outside level {level}, which has {count} segments at width {width}")
    ids = []
    for _ in range(level):
        index, remainder = divmod(index, width)
        ids.append(remainder + 1)
    return tuple(reversed(ids))


def boundary(position: int, count: int, duration: float) -> float:
    """The time of the `position`-th of `count + 1` boundaries that split [0, duration] evenly."""
    if position >= count:
        return float(duration)
    return duration * position / count


def index_range(index: int, count: int, duration: float) -> tuple[float, float]:
    """The time range [start, end) of slot `index` when [0, duration] is split into `count` slots."""
    return boundary(index, count, duration), boundary(index + 1, count, duration)


def time_range(ids: tuple[int, ...], width: int, duration: float) -> tuple[float, float]:
    """The time range in seconds of segment `ids` in a video of `duration` seconds."""
    return index_range(index_of(ids, width), level_size(width, level_of(ids)), duration)


def segment_at(time: float, level: int, width: int, duration: float) -> tuple[int, ...]:
    """The ids of the segment at `level` whose range holds `time` (the end time belongs to the last one)."""
    if not 0 <= time <= duration:
        raise GeometryError(f"time {time!r}s is outside the video [0, {duration}]s")
    count = level_size(width, level)
    index = min(int(time * count / duration), count - 1)
    # Float rounding can put `index` one slot off; the boundaries decide.
    while index > 0 and time < boundary(index, count, duration):
        index -= 1
    while index < count - 1 and time >= boundary(index + 1, count, duration):
        index += 1
    return ids_of(index, level, width)


@dataclass(frozen=True)
class Segment:
    """One node of a tree: its level (1 high, 2 medium, 3 low), position in the level, ids and time range."""

    level: int
    index: int
    ids: tuple[int, ...]
    start: float
    end: float


def segments(width: int, duration: float, levels: tuple[int, ...] = (1, 2, 3)) -> Iterator[Segment]:
    """Every segment of a tree, level by level, each level in order."""
    for level in levels:
        count = level_size(width, level)
        for index in range(count):
            yield Segment(level, index, ids_of(index, level, width), *index_range(index, count, duration))


def format_ids(ids: tuple[int, ...]) -> str:
    """Ids as the model writes them: `(2, 3)` or `(2, 3, 1)`."""
    return "(" + ", ".join(str(value) for value in ids) + ")"
