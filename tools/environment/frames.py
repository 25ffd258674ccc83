"""Frame sampling from a real video file with PyAV, as `video_qa` shows a low segment to the VLM.

`read_frames` returns, for each requested time t, the frame that a player displays at t: the last
frame whose presentation time is <= t. It seeks to the keyframe before t and decodes forward, and
it serves the requests in time order from one decoding position, so the 16 frames of one leaf cost
one seek, not 16. Times are seconds from the first frame of the video stream.
"""

from __future__ import annotations

import base64
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


def scale_to_max_side(image: Image.Image, max_side: int) -> Image.Image:
    """`image` shrunk (aspect kept) so that its longer side is at most `max_side`; never enlarged."""
    if max_side < 1:
        raise ValueError(f"max_side={max_side}: expected a positive number of pixels")
    width, height = image.size
    longest = max(width, height)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def to_jpeg_data_url(image: Image.Image, quality: int = 90) -> str:
    """`image` as a JPEG `data:` URL, the form an OpenAI `image_url` content part accepts."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class _Cursor:
    """A decoding position in one video stream that moves forward through requested times."""

    def __init__(self, container: av.container.InputContainer, path: Path) -> None:
        self.container = container
        self.path = path
        if not container.streams.video:
            raise FrameError(f"{path}: no video stream")
        self.stream = container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.time_base = self.stream.time_base
        self.origin = self.stream.start_time or 0
        self._frames: Iterator[av.VideoFrame] | None = None
        # The last frame decoded with time <= the latest request, and the one decoded after it.
        self.current: av.VideoFrame | None = None
        self.pending: av.VideoFrame | None = None
        self.exhausted = False

    def seconds(self, frame: av.VideoFrame) -> Fraction:
        """Exact presentation time of `frame`, from the stream's first frame."""
        return (frame.pts - self.origin) * self.time_base

    def frame_duration(self, frame: av.VideoFrame) -> Fraction:
        """How long `frame` stays on screen, from its own duration or else the stream's rate."""
        if frame.duration:
            return frame.duration * self.time_base
        rate = self.stream.average_rate or self.stream.guessed_rate
        return Fraction(1) / Fraction(rate) if rate else Fraction(0)

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
            self._frames = self.container.decode(self.stream)
            self.current, self.pending, self.exhausted = None, None, False
            first = self._peek()
            if target == 0 or (first is not None and self.seconds(first) <= t):
                return

    def frame_at(self, requested: float) -> av.VideoFrame:
        """The frame displayed at time `requested` (seconds)."""
        t = Fraction(requested) + TIME_TOLERANCE
        position = self.seconds(self.current) if self.current is not None else None
        # Decode on from here when t is a little ahead; otherwise seek back to the keyframe before t.
        if position is None or not position <= t <= position + Fraction(FORWARD_DECODE_LIMIT_S):
            self._seek(t)
        while (upcoming := self._peek()) is not None and self.seconds(upcoming) <= t:
            self.current, self.pending = upcoming, None
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


def read_frames(video_path: Path | str, timestamps: Sequence[float], max_side: int = 1024) -> list[Frame]:
    """The frame displayed at each of `timestamps` (seconds), in the order asked, scaled to `max_side`."""
    path = Path(video_path)
    for t in timestamps:
        if not (math.isfinite(t) and t >= 0):
            raise FrameError(f"{path}: timestamp {t} is not a time in the video (expected seconds >= 0)")
    if not path.is_file():
        raise FrameError(f"{path}: no such video file")
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as error:
        raise FrameError(f"{path}: cannot open as a video: {error}") from error
    frames: list[Frame | None] = [None] * len(timestamps)
    with container:
        cursor = _Cursor(container, path)
        # Serve requests in time order, so one decoding position moves only forward.
        for position in sorted(range(len(timestamps)), key=lambda i: timestamps[i]):
            requested = timestamps[position]
            decoded = cursor.frame_at(requested)
            image = scale_to_max_side(decoded.to_image(), max_side)
            frames[position] = Frame(requested=requested, time=float(cursor.seconds(decoded)), image=image)
    return [frame for frame in frames if frame is not None]


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
