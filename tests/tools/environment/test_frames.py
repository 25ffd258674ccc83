"""Frame sampling: leaf timestamps, exact frames from real MP4 files, scaling, errors."""

from __future__ import annotations

import base64
import bisect
import io
import pickle
import random
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from av.video.frame import PictureType
from PIL import Image

from tools.demo.synthetic_video import decode_frame_index, encode_test_video, frame_index_at, index_pattern
from tools.environment import frames
from tools.environment.frames import (
    FrameError,
    leaf_timestamps,
    prepare_leaf_images,
    read_frames,
    scale_to_max_side,
    scaled_size,
    to_jpeg_data_url,
)

FPS = 8
# B-frame test videos: 25 fps, a keyframe every 2 s, small frames with mild noise.
B_FPS = 25
B_SIZE = (160, 96)
# x264 with its default B-frames (3, adaptive, pyramid: some B-frames are references, some not).
X264_DEFAULT_B = {"preset": "fast", "crf": "20"}
# x264 with a fixed I B B P pattern and no pyramid: every B-frame is a non-reference frame.
X264_FIXED_B = {"preset": "fast", "crf": "20", "x264-params": "bframes=2:b-adapt=0:b-pyramid=none:scenecut=0"}
# Larger than any test video: read_frames returns frames at their native size.
NATIVE = 10_000


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


def record_seeks(monkeypatch: pytest.MonkeyPatch) -> list[Fraction]:
    """The times every cursor seeks to from now on, in order (the seek itself still happens)."""
    seeks: list[Fraction] = []
    original = frames._Cursor._seek

    def counting_seek(cursor: frames._Cursor, t: Fraction) -> None:
        seeks.append(t)
        original(cursor, t)

    monkeypatch.setattr(frames._Cursor, "_seek", counting_seek)
    return seeks


def test_read_frames_of_one_leaf_seek_once(video: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading one leaf's timestamps decodes the right frames with a single seek."""
    seeks = record_seeks(monkeypatch)
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


@pytest.mark.parametrize(("size", "max_side", "expected"), [
    ((1920, 1080), 1024, (1024, 576)),
    ((1080, 1920), 512, (288, 512)),
    ((1440, 1080), 1000, (1000, 750)),
    ((1000, 3), 10, (10, 1)),
    ((321, 123), 100, (100, 38)),
    ((640, 480), 640, (640, 480)),
    ((640, 480), 2000, (640, 480)),
])
def test_scaled_size_rule(size: tuple[int, int], max_side: int, expected: tuple[int, int]) -> None:
    """The long side shrinks to max_side, the short side rounds to the nearest pixel (at least 1), never enlarged."""
    assert scaled_size(*size, max_side) == expected


def test_decoded_frames_are_scaled_by_the_size_rule(tmp_path: Path) -> None:
    """read_frames scales in the decoder to the scaled_size of the frame, and keeps the content."""
    path = encode_test_video(tmp_path / "odd.mp4", duration_s=1, fps=FPS, size=(642, 362))
    for max_side in (100, 321, 641):
        (frame,) = read_frames(path, [0.5], max_side)
        assert frame.image.size == scaled_size(642, 362, max_side)
        assert decode_frame_index(frame.image) == 4


@pytest.mark.parametrize("max_side", [0, -5])
def test_max_side_below_one_is_rejected(video: Path, max_side: int) -> None:
    """A max_side below one pixel raises ValueError naming it."""
    with pytest.raises(ValueError, match=f"max_side={max_side}"):
        read_frames(video, [1.0], max_side)


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


def encode_b_frame_video(path: Path, frame_times: list[float], codec: str = "libx264",
                         options: dict[str, str] | None = None) -> Path:
    """An MP4 with B-frames whose frame i, at `frame_times[i]` (ms precision), shows the number i."""
    time_base = Fraction(1, 1000)
    rng = np.random.default_rng(0)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=B_FPS, options=options or X264_DEFAULT_B)
        stream.width, stream.height = B_SIZE
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = 2 * B_FPS
        if codec == "mpeg4":
            stream.codec_context.max_b_frames = 2
        for index, t in enumerate(frame_times):
            noisy = index_pattern(index, B_SIZE).astype(np.int16) + rng.integers(-8, 9, (B_SIZE[1], B_SIZE[0], 3))
            frame = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(Fraction(t) / time_base), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _regular(duration_s: float) -> list[float]:
    """Frame times at B_FPS for `duration_s` seconds."""
    return [i / B_FPS for i in range(round(duration_s * B_FPS))]


# Dense 25 fps, then 0.6 s apart for 6 s (sparser than the skip margin), then dense again.
SPARSE_TIMES = _regular(4) + [4 + 0.6 * i for i in range(10)] + [10 + t for t in _regular(4)]

B_VIDEOS = {
    "h264-default-b": lambda path: encode_b_frame_video(path, _regular(16)),
    "h264-fixed-b": lambda path: encode_b_frame_video(path, _regular(16), options=X264_FIXED_B),
    "mpeg4-b": lambda path: encode_b_frame_video(path, _regular(16), codec="mpeg4", options={"qscale": "3"}),
    "h264-sparse-stretch": lambda path: encode_b_frame_video(path, SPARSE_TIMES, options=X264_FIXED_B),
}


@pytest.fixture(scope="module")
def b_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The B-frame test videos, encoded once per module."""
    folder = tmp_path_factory.mktemp("b-frames")
    return {name: encode(folder / f"{name}.mp4") for name, encode in B_VIDEOS.items()}


Reference = list[tuple[Fraction, PictureType, bytes]]


def full_decode(path: Path) -> Reference:
    """Every frame of `path` with nothing skipped: (time from the first frame, picture type, RGB bytes)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        origin = stream.start_time or 0
        return [((frame.pts - origin) * stream.time_base, PictureType(frame.pict_type), frame.to_image().tobytes())
                for frame in container.decode(stream)]


def displayed(reference: Reference, t: float) -> tuple[Fraction, PictureType, bytes]:
    """The reference frame a player shows at `t`: the last with time <= t, else the first frame."""
    index = bisect.bisect_right([time for time, _, _ in reference], Fraction(t) + frames.TIME_TOLERANCE) - 1
    return reference[max(index, 0)]


def probe_times(reference: Reference, seed: int) -> list[list[float]]:
    """Groups of times to read: leaves, frame boundaries, around keyframes, the start and the end."""
    rng = random.Random(seed)
    times = [float(time) for time, _, _ in reference]
    end = times[-1]
    keyframes = [float(time) for time, kind, _ in reference if kind == PictureType.I]
    groups = [leaf_timestamps(start, start + min(8.0, end), 16) for start in (0.0, end / 3, max(0.0, end - 8.0))]
    groups.append(rng.sample(times, 24) + [t - 1e-3 for t in rng.sample(times[1:], 8)])
    groups.append([t + delta for t in keyframes[1:] for delta in (-0.05, -1e-3, 0.0, 1e-3, 0.05)])
    groups.append([0.0, 1e-7, 0.01, end - 0.01, end, end + 0.01])
    groups.extend(sorted(rng.uniform(0.0, end) for _ in range(16)) for _ in range(4))
    return groups


@pytest.mark.parametrize("threads", [None, 1], ids=["auto-threads", "one-thread"])
@pytest.mark.parametrize("name", list(B_VIDEOS))
def test_read_frames_matches_a_full_decode(b_videos: dict[str, Path], name: str, threads: int | None,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """With non-reference frames dropped far from requests, each time still gets the full decode's frame."""
    path = b_videos[name]
    reference = full_decode(path)
    assert PictureType.B in {kind for _, kind, _ in reference}, "the test video has no B-frames"
    sent_dropping = []
    original = frames._Cursor._may_drop

    def recording_may_drop(cursor: frames._Cursor, packet: av.Packet) -> bool:
        sent_dropping.append(original(cursor, packet))
        return sent_dropping[-1]

    monkeypatch.setattr(frames._Cursor, "_may_drop", recording_may_drop)
    for times in probe_times(reference, seed=len(name)):
        result = read_frames(path, times, NATIVE, threads=threads)
        for t, frame in zip(times, result, strict=True):
            time, _, pixels = displayed(reference, t)
            assert (frame.time, frame.image.tobytes() == pixels) == (float(time), True), f"{name} t={t}"
    # The fast path was taken: many packets were decoded with non-reference frames dropped.
    assert sum(sent_dropping) > len(sent_dropping) / 4


def test_frames_sparser_than_the_skip_margin_fall_back_to_a_full_decode(
        b_videos: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """When the frame shown at t lies far before t and may have been dropped, the cursor decodes again in full."""
    path = b_videos["h264-sparse-stretch"]
    reference = full_decode(path)
    seeks = record_seeks(monkeypatch)
    # Just before each sparse frame: the frame shown is the previous one, 0.55 s earlier.
    times = [4 + 0.6 * i - 0.05 for i in range(2, 10)]
    result = read_frames(path, times, NATIVE)
    assert [f.time for f in result] == [float(displayed(reference, t)[0]) for t in times]
    assert [f.image.tobytes() for f in result] == [displayed(reference, t)[2] for t in times]
    assert len(seeks) > 1


def test_one_decoder_thread_gives_the_same_frames(b_videos: dict[str, Path]) -> None:
    """threads=1 returns the same frames, times and scaled pixels as the codec's own thread count."""
    path = b_videos["h264-default-b"]
    times = leaf_timestamps(1.0, 15.0, 16)
    default, single = read_frames(path, times, 100), read_frames(path, times, 100, threads=1)
    assert [(f.time, f.image.size, f.image.tobytes()) for f in single] == [
        (f.time, f.image.size, f.image.tobytes()) for f in default]


@pytest.mark.parametrize("threads", [0, -2])
def test_a_thread_count_below_one_is_rejected(video: Path, threads: int) -> None:
    """threads must be None or a positive count."""
    with pytest.raises(ValueError, match=f"threads={threads}"):
        read_frames(video, [1.0], threads=threads)


def test_prepare_leaf_images_sends_what_read_frames_and_jpeg_give(video: Path) -> None:
    """prepare_leaf_images is read_frames then to_jpeg_data_url, and pickles as a worker-process task."""
    times = leaf_timestamps(2.0, 6.0, 5)
    urls = pickle.loads(pickle.dumps(prepare_leaf_images))(video, times, 100, 70, threads=1)
    assert urls == [to_jpeg_data_url(frame.image, 70) for frame in read_frames(video, times, 100)]
    images = [Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) for url in urls]
    assert [decode_frame_index(image) for image in images] == [frame_index_at(t, FPS) for t in times]
