"""Frame sampling: leaf timestamps, exact frames from real MP4 files, scaling, errors."""

from __future__ import annotations

import base64
import io
import random
from pathlib import Path

import pytest
from PIL import Image

from tools.demo.synthetic_video import decode_frame_index, encode_test_video, frame_index_at
from tools.environment import frames
from tools.environment.frames import FrameError, leaf_timestamps, read_frames, scale_to_max_side, to_jpeg_data_url

FPS = 8


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 s, 8 fps test video whose frames show their own index."""
    return encode_test_video(tmp_path_factory.mktemp("video") / "clip.mp4", duration_s=20, fps=FPS)


@pytest.mark.parametrize(("start", "end", "count", "expected"), [
    (0.0, 16.0, 4, [2.0, 6.0, 10.0, 14.0]),
    (10.0, 12.0, 1, [11.0]),
    (1.0, 2.0, 2, [1.25, 1.75]),
])
def test_leaf_timestamps_are_bin_centres(start: float, end: float, count: int, expected: list[float]) -> None:
    """Leaf timestamps are the centres of `count` equal bins spanning [start, end)."""
    assert leaf_timestamps(start, end, count) == pytest.approx(expected)


def test_leaf_timestamps_default_count_stays_inside_the_leaf() -> None:
    """The default count gives 16 sorted timestamps, all inside the leaf's [start, end) interval."""
    times = leaf_timestamps(32.0, 48.0)
    assert len(times) == 16
    assert all(32.0 <= t < 48.0 for t in times)
    assert times == sorted(times)


@pytest.mark.parametrize(("start", "end", "count", "message"), [
    (0.0, 16.0, 0, "count=0"),
    (0.0, 16.0, -3, "count=-3"),
    (5.0, 5.0, 4, "end=5.0"),
    (8.0, 2.0, 4, "start=8.0"),
])
def test_leaf_timestamps_rejects_bad_arguments(start: float, end: float, count: int, message: str) -> None:
    """A non-positive count or an empty or reversed interval raises ValueError naming the bad argument."""
    with pytest.raises(ValueError, match=message):
        leaf_timestamps(start, end, count)


def _ordered(times: list[float], order: str) -> list[float]:
    if order == "increasing":
        return sorted(times)
    if order == "decreasing":
        return sorted(times, reverse=True)
    shuffled = list(times)
    random.Random(7).shuffle(shuffled)
    return shuffled


@pytest.mark.parametrize("order", ["increasing", "decreasing", "shuffled"])
def test_read_frames_returns_the_displayed_frame_in_input_order(video: Path, order: str) -> None:
    # Bin centres, exact frame boundaries, the first instant and the last frame.
    """Each time gets the frame on display at that instant, returned in the order the times were given."""
    times = _ordered(leaf_timestamps(0.0, 20.0, 37) + [0.0, 1.0, 2.125, 7.999, 19.9], order)
    result = read_frames(video, times)
    assert [f.requested for f in result] == times
    for frame in result:
        expected = frame_index_at(frame.requested, FPS)
        assert decode_frame_index(frame.image) == expected, f"t={frame.requested}"
        assert frame.time == pytest.approx(expected / FPS)
        assert frame.time <= frame.requested


def test_read_frames_of_one_leaf_seek_once(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading one leaf's timestamps decodes the right frames with a single seek."""
    seeks = []
    original = frames._Cursor._seek

    def counting_seek(cursor: frames._Cursor, t: object) -> None:
        seeks.append(t)
        original(cursor, t)

    monkeypatch.setattr(frames._Cursor, "_seek", counting_seek)
    result = read_frames(video, leaf_timestamps(4.0, 8.0))
    assert [decode_frame_index(f.image) for f in result] == [frame_index_at(t, FPS) for t in leaf_timestamps(4.0, 8.0)]
    assert len(seeks) == 1


def test_read_frames_handles_a_variable_frame_rate(tmp_path: Path) -> None:
    """With uneven frame times each request gets the frame shown at that instant, with its exact timestamp."""
    frame_times = [0.0, 0.1, 0.5, 0.55, 1.7, 3.0, 3.01]
    path = encode_test_video(tmp_path / "vfr.mp4", duration_s=0, frame_times=frame_times)
    cases = {0.0: 0, 0.09: 0, 0.1: 1, 0.6: 3, 1.69: 3, 1.7: 4, 2.99: 4, 3.0: 5, 3.005: 5, 3.01: 6, 3.1: 6}
    result = read_frames(path, list(cases))
    assert [decode_frame_index(f.image) for f in result] == list(cases.values())
    assert [f.time for f in result] == pytest.approx([frame_times[i] for i in cases.values()])


def test_read_frames_accepts_the_mpeg4_codec(tmp_path: Path) -> None:
    """A video encoded with the mpeg4 codec yields the correct frames."""
    path = encode_test_video(tmp_path / "mpeg4.mp4", duration_s=4, fps=FPS, codec="mpeg4")
    times = leaf_timestamps(0.0, 4.0, 10)
    assert [decode_frame_index(f.image) for f in read_frames(path, times)] == [frame_index_at(t, FPS) for t in times]


def test_large_video_is_scaled_to_max_side(tmp_path: Path) -> None:
    """A 1280x720 video's frames are scaled down to a 1024-pixel long side, keeping aspect ratio and content."""
    path = encode_test_video(tmp_path / "hd.mp4", duration_s=1, fps=FPS, size=(1280, 720))
    (frame,) = read_frames(path, [0.5])
    assert frame.image.size == (1024, 576)
    assert decode_frame_index(frame.image) == 4


def test_small_video_is_not_upscaled(video: Path) -> None:
    """A video smaller than max_side keeps its native 160x96 size."""
    (frame,) = read_frames(video, [3.0], max_side=1024)
    assert frame.image.size == (160, 96)


@pytest.mark.parametrize(("size", "max_side", "expected"), [
    ((1280, 720), 1024, (1024, 576)),
    ((720, 1280), 640, (360, 640)),
    ((100, 50), 100, (100, 50)),
    ((100, 50), 400, (100, 50)),
])
def test_scale_to_max_side(size: tuple[int, int], max_side: int, expected: tuple[int, int]) -> None:
    """scale_to_max_side shrinks the longer side to max_side, keeping the aspect ratio, and never upscales."""
    assert scale_to_max_side(Image.new("RGB", size), max_side).size == expected


def test_jpeg_data_url_round_trips_the_frame_index(video: Path) -> None:
    """to_jpeg_data_url gives a base64 JPEG data URL that decodes back to the same frame index."""
    (frame,) = read_frames(video, [12.3])
    url = to_jpeg_data_url(frame.image, quality=60)
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    decoded = Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))
    assert decoded.format == "JPEG"
    assert decode_frame_index(decoded) == frame_index_at(12.3, FPS)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    """Reading a nonexistent file raises FrameError naming the path."""
    missing = tmp_path / "nowhere.mp4"
    with pytest.raises(FrameError, match="nowhere.mp4"):
        read_frames(missing, [1.0])


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    """Reading a file that is not a video raises FrameError naming the path."""
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(FrameError, match="junk.mp4"):
        read_frames(junk, [1.0])


def test_time_just_past_the_end_gives_the_last_frame(video: Path) -> None:
    # The video lasts 20.0 s; within one frame duration (0.125 s) past it the last frame is still valid.
    """Times at the end or within one frame duration past it give the last frame."""
    result = read_frames(video, [19.95, 20.0, 20.1])
    assert [decode_frame_index(f.image) for f in result] == [159, 159, 159]


@pytest.mark.parametrize("times", [[20.3], [1.0, 25.0], [300.0]])
def test_time_past_the_end_names_file_timestamp_and_duration(video: Path, times: list[float]) -> None:
    """A time beyond the end raises FrameError naming the file, the latest requested time and the duration."""
    with pytest.raises(FrameError) as caught:
        read_frames(video, times)
    message = str(caught.value)
    assert "clip.mp4" in message
    assert f"{max(times):.3f}" in message
    assert "duration 20.000 s" in message


def test_negative_time_is_rejected(video: Path) -> None:
    """A negative time raises FrameError naming it."""
    with pytest.raises(FrameError, match="-1.0"):
        read_frames(video, [-1.0])
