"""Frame sampling from a real video file with PyAV, as `video_qa` shows a low segment to the VLM.

`read_frames` returns, for each requested time t, the frame that a player displays at t: the last
frame whose presentation time is <= t. It seeks to the keyframe before t and decodes forward, and
it serves the requests in time order from one decoding position, so the 16 frames of one leaf cost
one seek, not 16. Times are seconds from the first frame of the video stream.

Two things keep a cold decode cheap without changing which frame is returned: packets well before
the next requested time are decoded with non-reference frames dropped (no other frame depends on
them, and none of them can be the frame displayed at a requested time), and frames are scaled by
the decoder's own converter while they are turned into RGB.
"""

from __future__ import annotations

import base64
import bisect
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

# Requests further ahead than this from the current decoding position seek instead of decoding on.
FORWARD_DECODE_LIMIT_S = 8.0
# Times within a microsecond count as equal: 1.7 s asks for a frame at pts 1.7 s, whatever the float error.
TIME_TOLERANCE = Fraction(1, 1_000_000)
# How far before t successive seeks land when a seek overshoots t (inexact seeking in some formats).
_SEEK_STEP_BACKS_S = (0.0, 1.0, 4.0, 16.0, math.inf)
# Packets more than this (or NONREF_SKIP_MARGIN_FRAMES frame durations, if longer) before the next
# requested time are decoded with non-reference frames dropped; closer ones are decoded in full.
NONREF_SKIP_MARGIN_S = 0.1
NONREF_SKIP_MARGIN_FRAMES = 3
# Decoders for which dropping non-reference frames was checked against full decodes. Not HEVC yet:
# exact on closed-GOP streams, but after a seek into an open GOP its output already differs.
NONREF_SKIP_CODECS = frozenset({"h264", "mpeg4", "mpeg2video"})
# The decoder's converter filter when it shrinks a frame while turning it into RGB.
SCALE_INTERPOLATION = "BICUBIC"


class FrameError(Exception):
    """A video could not be read, or a requested time lies outside it."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame: the time asked for, the frame's own presentation time and its image."""

    requested: float
    time: float
    image: Image.Image


def leaf_timestamps(start: float, end: float, count: int = 16) -> list[float]:
    """`count` times spread uniformly over [start, end): the centres of `count` equal bins."""
    if count < 1:
        raise ValueError(f"count={count}: expected at least 1 frame")
    if not end > start:
        raise ValueError(f"end={end} must be greater than start={start}")
    step = (end - start) / count
    return [start + (i + 0.5) * step for i in range(count)]


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size (aspect kept) whose longer side is at most `max_side`; never larger than (width, height)."""
    if max_side < 1:
        raise ValueError(f"max_side={max_side}: expected a positive number of pixels")
    longest = max(width, height)
    if longest <= max_side:
        return width, height
    scale = max_side / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def scale_to_max_side(image: Image.Image, max_side: int) -> Image.Image:
    """`image` shrunk (aspect kept) so that its longer side is at most `max_side`; never enlarged."""
    size = scaled_size(*image.size, max_side)
    return image if size == image.size else image.resize(size, Image.Resampling.BICUBIC)


def frame_image(frame: av.VideoFrame, max_side: int) -> Image.Image:
    """`frame` as an RGB image scaled to `max_side`, scaled by the decoder's converter in the same pass."""
    width, height = scaled_size(frame.width, frame.height, max_side)
    if (width, height) == (frame.width, frame.height):
        return frame.to_image()
    return frame.to_image(width=width, height=height, interpolation=SCALE_INTERPOLATION)


def to_jpeg_data_url(image: Image.Image, quality: int = 90) -> str:
    """`image` as a JPEG `data:` URL, the form an OpenAI `image_url` content part accepts."""
    buffer = io.BytesIO()
    (image if image.mode == "RGB" else image.convert("RGB")).save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class _Cursor:
    """A decoding position in one video stream that moves forward through the requested times."""

    def __init__(self, container: av.container.InputContainer, path: Path, targets: Sequence[Fraction],
                 threads: int | None) -> None:
        self.container = container
        self.path = path
        if not container.streams.video:
            raise FrameError(f"{path}: no video stream")
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"
        if threads is not None:
            self.stream.codec_context.thread_count = threads
        self.time_base = self.stream.time_base
        self.origin = self.stream.start_time or 0
        # The requested times (with tolerance), sorted: packets well before the next one may drop frames.
        self.targets = sorted(targets)
        rate = self.stream.average_rate or self.stream.guessed_rate
        frames_margin = NONREF_SKIP_MARGIN_FRAMES / Fraction(rate) if rate else Fraction(0)
        self.skip_margin = max(Fraction(NONREF_SKIP_MARGIN_S), frames_margin)
        self.skipping = self.stream.codec_context.name in NONREF_SKIP_CODECS
        self._frames: Iterator[av.VideoFrame] | None = None
        # Times of packets decoded with non-reference frames dropped since the last seek.
        self.dropped: list[Fraction] = []
        # The last frame decoded with time <= the latest request, and the one decoded after it.
        self.current: av.VideoFrame | None = None
        self.pending: av.VideoFrame | None = None
        self.exhausted = False

    def seconds(self, frame: av.VideoFrame | av.Packet) -> Fraction:
        """Exact presentation time of `frame` (or of a packet), from the stream's first frame."""
        return (frame.pts - self.origin) * self.time_base

    def frame_duration(self, frame: av.VideoFrame) -> Fraction:
        """How long `frame` stays on screen, from its own duration or else the stream's rate."""
        if frame.duration:
            return frame.duration * self.time_base
        rate = self.stream.average_rate or self.stream.guessed_rate
        return Fraction(1) / Fraction(rate) if rate else Fraction(0)

    def _may_drop(self, packet: av.Packet) -> bool:
        """Whether `packet` lies more than the skip margin before the next requested time after it."""
        if not self.skipping or packet.pts is None:
            return False
        time = self.seconds(packet)
        following = bisect.bisect_left(self.targets, time)
        return following < len(self.targets) and time < self.targets[following] - self.skip_margin

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Frames from the current demuxing position, dropping non-reference frames far before requests."""
        codec = self.stream.codec_context
        for packet in self.container.demux(self.stream):
            # The decoder reads skip_frame as each packet is submitted, frame threads included.
            drop = self._may_drop(packet)
            codec.skip_frame = "NONREF" if drop else "DEFAULT"
            if drop:
                self.dropped.append(self.seconds(packet))
            yield from codec.decode(packet)

    def _peek(self) -> av.VideoFrame | None:
        """The next decoded frame without consuming it; None at the end of the stream."""
        if self.pending is None and not self.exhausted:
            assert self._frames is not None
            try:
                self.pending = next(self._frames)
            except StopIteration:
                self.exhausted = True
            except av.FFmpegError as error:
                raise FrameError(f"{self.path}: decoding failed: {error}") from error
        return self.pending

    def _seek(self, t: Fraction) -> None:
        """Position the decoder at the last keyframe at or before `t`."""
        for step_back in _SEEK_STEP_BACKS_S:
            target = max(t - Fraction(step_back), Fraction(0)) if step_back != math.inf else Fraction(0)
            offset = self.origin + math.floor(target / self.time_base)
            try:
                self.container.seek(offset, stream=self.stream, backward=True)
            except av.FFmpegError as error:
                raise FrameError(f"{self.path}: seeking to {float(target):.3f} s failed: {error}") from error
            self._frames = self._decode()
            self.current, self.pending, self.exhausted, self.dropped = None, None, False, []
            first = self._peek()
            if target == 0 or (first is not None and self.seconds(first) <= t):
                return

    def _advance_to(self, t: Fraction) -> av.VideoFrame | None:
        """Decode on to the last frame with time <= `t`; the frame after it (None at the end)."""
        while (upcoming := self._peek()) is not None and self.seconds(upcoming) <= t:
            self.current, self.pending = upcoming, None
        return upcoming

    def frame_at(self, requested: float) -> av.VideoFrame:
        """The frame displayed at time `requested` (seconds)."""
        t = Fraction(requested) + TIME_TOLERANCE
        position = self.seconds(self.current) if self.current is not None else None
        # Decode on from here when t is a little ahead; otherwise seek back to the keyframe before t.
        if position is None or not position <= t <= position + Fraction(FORWARD_DECODE_LIMIT_S):
            self._seek(t)
        upcoming = self._advance_to(t)
        shown = self.seconds(self.current) if self.current is not None else -math.inf
        if any(shown < dropped <= t for dropped in self.dropped):
            # A dropped frame may be the one displayed at t (frames sparser than the margin): decode in full.
            self.skipping = False
            self._seek(t)
            upcoming = self._advance_to(t)
        if self.current is None:
            # t lies before the first frame (or the stream is empty): show the first frame.
            if upcoming is None:
                raise FrameError(f"{self.path}: the video stream has no frames")
            return upcoming
        if upcoming is None:
            self._check_within_end(requested)
        return self.current

    def _check_within_end(self, requested: float) -> None:
        """Raise unless `requested` is at most one frame duration past the end of the stream."""
        assert self.current is not None
        duration = self.frame_duration(self.current)
        end = self.seconds(self.current) + duration
        if Fraction(requested) > end + duration + TIME_TOLERANCE:
            raise FrameError(f"{self.path}: timestamp {requested:.3f} s is past the end of the video stream "
                             f"(duration {float(end):.3f} s)")


def read_frames(video_path: Path | str, timestamps: Sequence[float], max_side: int = 1024, *,
                threads: int | None = None) -> list[Frame]:
    """The frame displayed at each of `timestamps` (seconds), in the order asked, scaled to `max_side`."""
    path = Path(video_path)
    for t in timestamps:
        if not (math.isfinite(t) and t >= 0):
            raise FrameError(f"{path}: timestamp {t} is not a time in the video (expected seconds >= 0)")
    # threads: the decoder's thread count; None lets the codec choose (all cores), 1 suits one worker process per core.
    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads}: expected None or a positive thread count")
    if not path.is_file():
        raise FrameError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise FrameError(f"{path}: cannot open as a video: {error}") from error
    frames: list[Frame | None] = [None] * len(timestamps)
    with container:
        cursor = _Cursor(container, path, [Fraction(t) + TIME_TOLERANCE for t in timestamps], threads)
        # Serve requests in time order, so one decoding position moves only forward.
        for position in sorted(range(len(timestamps)), key=lambda i: timestamps[i]):
            requested = timestamps[position]
            decoded = cursor.frame_at(requested)
            image = frame_image(decoded, max_side)
            frames[position] = Frame(requested=requested, time=float(cursor.seconds(decoded)), image=image)
    return [frame for frame in frames if frame is not None]


def prepare_leaf_images(video_path: Path | str, timestamps: Sequence[float], max_side: int, jpeg_quality: int,
                        threads: int | None = None) -> list[str]:
    """The JPEG data URLs that video_qa sends for `timestamps`: read_frames, then to_jpeg_data_url."""
    decoded = read_frames(video_path, timestamps, max_side, threads=threads)
    return [to_jpeg_data_url(frame.image, jpeg_quality) for frame in decoded]


def probe_duration(path: Path) -> float:
    """The duration in seconds of the video stream of `path`; FrameError if it cannot be read."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FrameError(f"{path}: no video stream")
            stream = container.streams.video[0]
            # The video stream's own duration; the container's (all streams) when the stream has none.
            duration = float(stream.duration * stream.time_base) if stream.duration else (
                (container.duration or 0) / av.time_base)
    except (av.FFmpegError, OSError) as error:
        raise FrameError(f"{path}: cannot open as a video: {error}") from None
    if not duration > 0:
        raise FrameError(f"{path}: the video reports no duration")
    return duration


def find_video(folder: str | Path, video_uid: str, extensions: Sequence[str]) -> Path:
    """`<folder>/<video_uid><ext>` for the first extension that exists; FileNotFoundError naming what was tried."""
    folder = Path(folder)
    for extension in extensions:
        candidate = folder / f"{video_uid}{extension}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no video file for {video_uid!r} in {folder} (tried {', '.join(extensions)})")
