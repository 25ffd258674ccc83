"""Caption-tree geometry: the width formula, ids <-> indices <-> time ranges, and their invariants."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tools.environment import geometry
from tools.environment.geometry import (
    MAX_WIDTH,
    MIN_WIDTH,
    SMALLEST_MIN_WIDTH,
    GeometryError,
    check_ids,
    check_width,
    ids_of,
    index_of,
    segment_at,
    time_range,
    width_for_duration,
)

FAST = settings(deadline=None, max_examples=200)
WIDTHS = st.integers(min_value=1, max_value=8)
LEVELS = st.integers(min_value=1, max_value=3)
# (0, 1e5] seconds; subnormal durations (below ~2.2e-308 s) are not videos and collapse the boundaries.
DURATIONS = st.floats(min_value=0, max_value=1e5, exclude_min=True, allow_nan=False, allow_infinity=False,
                      allow_subnormal=False)


@pytest.mark.parametrize(("duration", "expected"), [
    (1.0, 4),
    (60.0, 4),
    (16 * 3**3, 4),
    (16 * 4**3, 4),
    (1457.0, 4),
    (1460.0, 5),
    (16 * 5**3, 5),
    (16 * 6**3, 6),
    (16 * 7**3, 7),
    (16 * 8**3, 8),
    (16 * 9**3, 8),
    (36_000.0, 8),
    (10**6, 8),
], ids=["1s", "1min", "16*3^3", "16*4^3", "below-4.5", "above-4.5", "16*5^3", "16*6^3", "16*7^3", "16*8^3",
        "16*9^3-clamped", "10h-clamped", "1e6s-clamped"])
def test_width_for_duration_formula_and_clamp(duration: float, expected: int) -> None:
    """w = clamp(round((D/16)^(1/3)), 4, 8), exact at D = 16*w^3 and clamped at both ends."""
    assert width_for_duration(duration) == expected


@pytest.mark.parametrize(("duration", "expected"), [
    (1.0, 3),
    (60.0, 3),
    (16 * 3**3, 3),
    (16 * 5**3, 5),
    (36_000.0, 8),
], ids=["1s", "1min", "16*3^3", "16*5^3", "10h"])
def test_width_for_duration_mlvu_min_width_3(duration: float, expected: int) -> None:
    """MLVU's minimum width of 3 lowers only the lower clamp."""
    assert width_for_duration(duration, min_width=3) == expected


@pytest.mark.parametrize(("width", "expected"), [(3, 3), (4, 4), (8, 8), (5.0, 5)], ids=["3", "4", "8", "5.0"])
def test_check_width_accepts_the_widths_the_rule_makes(width: object, expected: int) -> None:
    """Every width from MLVU's minimum 3 to the maximum 8 is a tree's width; a whole float reads as its int."""
    assert check_width(width) == expected and type(check_width(width)) is int


@pytest.mark.parametrize(("width", "phrases"), [
    (1, ("extra_info.width=1", "outside 3..8", "min_width 4, or 3 for MLVU")),
    (2, ("extra_info.width=2", "outside 3..8")),
    (9, ("extra_info.width=9", "outside 3..8", "max_width 8")),
    (100, ("extra_info.width=100", "outside 3..8")),
    (0, ("extra_info.width=0",)),
    (-4, ("extra_info.width=-4",)),
    (4.5, ("extra_info.width", "whole number", "4.5")),
    (True, ("extra_info.width", "whole number", "True")),
    (None, ("extra_info.width", "whole number", "None")),
    ("4", ("extra_info.width", "whole number", "'4'")),
], ids=["1", "2", "9", "100", "0", "negative", "fraction", "bool", "none", "string"])
def test_check_width_refuses_widths_no_tree_has(width: object, phrases: tuple[str, ...]) -> None:
    """A width outside 3..8 or not a whole number is refused, naming the field and the allowed range."""
    with pytest.raises(GeometryError) as raised:
        check_width(width, "extra_info.width")
    for phrase in phrases:
        assert phrase in str(raised.value)


@FAST
@given(DURATIONS, st.integers(SMALLEST_MIN_WIDTH, MIN_WIDTH))
def test_every_width_the_rule_makes_passes_the_check(duration: float, min_width: int) -> None:
    """width_for_duration with any minimum in use (MLVU's 3, the paper's 4) gives a width check_width accepts."""
    assert check_width(width_for_duration(duration, min_width)) == width_for_duration(duration, min_width)


def test_the_caption_builder_defaults_are_the_geometry_bounds() -> None:
    """configs/captions/default.yaml builds trees with geometry's MIN_WIDTH and MAX_WIDTH (one width rule)."""
    path = Path(__file__).resolve().parents[3] / "configs" / "captions" / "default.yaml"
    settings_data = yaml.safe_load(path.read_text())
    assert (settings_data["min_width"], settings_data["max_width"]) == (MIN_WIDTH, MAX_WIDTH)


@pytest.mark.parametrize("duration", [0, 0.0, -1.0, -1e9, math.nan, math.inf, -math.inf, None, "600", True],
                         ids=["0", "0.0", "-1", "-1e9", "nan", "inf", "-inf", "None", "str", "bool"])
def test_width_for_duration_rejects_bad_durations(duration: object) -> None:
    """Non-positive, non-finite or non-numeric durations raise GeometryError naming the value."""
    with pytest.raises(GeometryError, match="duration must be a positive number"):
        width_for_duration(duration)  # type: ignore[arg-type]


@pytest.mark.parametrize(("ids", "width", "expected"), [
    ((1,), 4, 0),
    ((4,), 4, 3),
    ((1, 1), 4, 0),
    ((2, 3), 4, 6),
    ((4, 4), 4, 15),
    ((3, 2), 5, 11),
    ((1, 1, 1), 4, 0),
    ((2, 3, 4), 4, 27),
    ((4, 4, 4), 4, 63),
    ((3, 2, 1), 5, 55),
    ((8, 8, 8), 8, 511),
], ids=["h1", "h4", "m-first", "m-2-3", "m-last", "m-w5", "l-first", "l-2-3-4", "l-last", "l-w5", "l-w8-last"])
def test_index_of_examples(ids: tuple[int, ...], width: int, expected: int) -> None:
    """The flat index follows tools/environment/README.md and `ids_of` inverts it."""
    assert index_of(ids, width) == expected
    assert ids_of(expected, len(ids), width) == ids


@pytest.mark.parametrize("width", [3, 4, 5, 8])
def test_index_of_matches_design_formulas(width: int) -> None:
    """(h,m) -> (h-1)*w+(m-1) and (h,m,l) -> (h-1)*w*w+(m-1)*w+(l-1) for every id."""
    for h in range(1, width + 1):
        for m in range(1, width + 1):
            assert index_of((h, m), width) == (h - 1) * width + (m - 1)
            for low in range(1, width + 1):
                assert index_of((h, m, low), width) == (h - 1) * width * width + (m - 1) * width + (low - 1)


@pytest.mark.parametrize(("ids", "width", "phrase"), [
    ((0, 1), 4, "h=0"),
    ((5,), 4, "h=5"),
    ((1, 5), 4, "m=5"),
    ((1, -1), 4, "m=-1"),
    ((1, 2, 9), 8, "l=9"),
    ((1, True), 4, "m=True"),
    ((1, 2.0), 4, "m=2.0"),
    ((1, "2"), 4, "m='2'"),
    ((), 4, "got 0"),
    ((1, 2, 3, 4), 4, "got 4"),
], ids=["h-zero", "h-over", "m-over", "m-negative", "l-over", "bool", "float", "str", "empty", "four-ids"])
def test_check_ids_error_names_the_bad_id(ids: tuple, width: int, phrase: str) -> None:
    """Invalid ids raise GeometryError whose message names the offending number."""
    with pytest.raises(GeometryError) as info:
        check_ids(ids, width)
    assert phrase in str(info.value)


@pytest.mark.parametrize(("index", "level", "width"), [(-1, 2, 4), (16, 2, 4), (64, 3, 4), (4, 1, 4)],
                         ids=["negative", "medium-past-end", "low-past-end", "high-past-end"])
def test_ids_of_rejects_out_of_level_indices(index: int, level: int, width: int) -> None:
    """An index outside its level raises GeometryError naming the index."""
    with pytest.raises(GeometryError, match=f"index {index}"):
        ids_of(index, level, width)


@pytest.mark.parametrize(("ids", "expected"), [
    ((1,), (0.0, 1600.0)),
    ((4,), (4800.0, 6400.0)),
    ((2, 3), (2400.0, 2800.0)),
    ((1, 1, 1), (0.0, 100.0)),
    ((4, 4, 4), (6300.0, 6400.0)),
], ids=["h1", "h4", "m-2-3", "l-first", "l-last"])
def test_time_range_examples(ids: tuple[int, ...], expected: tuple[float, float]) -> None:
    """At w=4, D=6400 s the ranges are the uniform split of [0, D], ending exactly at D."""
    assert time_range(ids, 4, 6400.0) == expected


@pytest.mark.parametrize("time", [-0.1, 6400.1, math.inf, math.nan], ids=["before", "after", "inf", "nan"])
def test_segment_at_rejects_times_outside_the_video(time: float) -> None:
    """A time outside [0, D] raises GeometryError."""
    with pytest.raises(GeometryError, match="outside the video"):
        segment_at(time, 3, 4, 6400.0)


@pytest.mark.parametrize(("time", "level", "expected"), [
    (0.0, 3, (1, 1, 1)),
    (100.0, 3, (1, 1, 2)),
    (99.999, 3, (1, 1, 1)),
    (6400.0, 3, (4, 4, 4)),
    (6400.0, 1, (4,)),
    (2400.0, 2, (2, 3)),
], ids=["zero", "boundary-goes-right", "just-before", "end-is-last-leaf", "end-is-last-high", "medium"])
def test_segment_at_examples(time: float, level: int, expected: tuple[int, ...]) -> None:
    """Ranges are [start, end): a boundary belongs to the later segment, the end D to the last one."""
    assert segment_at(time, level, 4, 6400.0) == expected


@st.composite
def segments(draw: st.DrawFn) -> tuple[int, int, float, tuple[int, ...]]:
    """A width, a level, a duration and a valid id at that level."""
    width, level, duration = draw(WIDTHS), draw(LEVELS), draw(DURATIONS)
    ids = tuple(draw(st.integers(min_value=1, max_value=width)) for _ in range(level))
    return width, level, duration, ids


@FAST
@given(segments())
def test_every_valid_id_maps_inside_the_video(segment: tuple[int, int, float, tuple[int, ...]]) -> None:
    """Property (a): every valid id's range lies in [0, D] with start < end."""
    width, _, duration, ids = segment
    start, end = time_range(ids, width, duration)
    assert 0.0 <= start < end <= duration


@FAST
@given(WIDTHS, LEVELS, DURATIONS)
def test_ranges_of_a_level_tile_the_video(width: int, level: int, duration: float) -> None:
    """Property (b): one level's ranges tile [0, D] exactly: no gaps, no overlaps, from 0 to D."""
    ranges = [time_range(ids_of(i, level, width), width, duration) for i in range(geometry.level_size(width, level))]
    assert ranges[0][0] == 0.0
    assert ranges[-1][1] == duration
    for (_, end), (next_start, _) in zip(ranges, ranges[1:], strict=False):
        assert end == next_start


@FAST
@given(segments())
def test_ids_index_ids_round_trip(segment: tuple[int, int, float, tuple[int, ...]]) -> None:
    """Property (c): ids -> index -> ids is the identity, and the index is inside its level."""
    width, level, _, ids = segment
    index = index_of(ids, width)
    assert 0 <= index < geometry.level_size(width, level)
    assert ids_of(index, level, width) == ids


@FAST
@given(segments(), st.floats(min_value=0.0, max_value=1.0, exclude_max=True))
def test_any_time_inside_a_range_maps_back_to_its_ids(segment: tuple[int, int, float, tuple[int, ...]],
                                                      fraction: float) -> None:
    """Property (d): any time in [start, end) of a segment, its start included, maps back to that segment."""
    width, level, duration, ids = segment
    start, end = time_range(ids, width, duration)
    assert segment_at(start, level, width, duration) == ids
    time = start + fraction * (end - start)
    assume(time < end)
    assert segment_at(time, level, width, duration) == ids


@FAST
@given(segments())
def test_low_segment_lies_inside_its_medium_parent(segment: tuple[int, int, float, tuple[int, ...]]) -> None:
    """Property (e): a low range lies inside its medium parent's, and a medium inside its high one (tol 1e-9*D)."""
    width, _, duration, ids = segment
    assume(len(ids) >= 2)
    tolerance = 1e-9 * duration
    for child, parent in (((*ids[:2], 1), ids[:2]), ((*ids[:2], width), ids[:2]), (ids, ids[:-1])):
        child_start, child_end = time_range(child, width, duration)
        parent_start, parent_end = time_range(parent, width, duration)
        assert parent_start - tolerance <= child_start < child_end <= parent_end + tolerance


@pytest.mark.parametrize("width", [1, 3, 4, 8])
def test_segments_walks_every_level_in_order(width: int) -> None:
    """segments() yields w + w² + w³ nodes, level by level, with the ids and ranges of ids_of and index_range."""
    duration = 1000.0
    found = list(geometry.segments(width, duration))
    assert len(found) == width + width**2 + width**3
    assert [s.level for s in found] == sorted(s.level for s in found)
    for segment in found:
        assert segment.ids == geometry.ids_of(segment.index, segment.level, width)
        assert (segment.start, segment.end) == geometry.time_range(segment.ids, width, duration)
