"""Real MP4 files for the demo set and the tests: every frame shows its own index as a grid of blocks.

The index is written as 12 bits, one per block of a 4 x 3 grid that covers the whole frame, so it
survives video compression, JPEG compression and downscaling; `decode_frame_index` reads it back
from any image of the frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

GRID_COLUMNS = 4
GRID_ROWS = 3
INDEX_BITS = GRID_COLUMNS * GRID_ROWS
# Timestamps of irregular (variable frame rate) videos are written in milliseconds.
VFR_TIME_BASE = Fraction(1, 1000)


def default_codec() -> str:
    """H.264 when this PyAV build can encode it, otherwise MPEG-4 part 2."""
    try:
        av.codec.Codec("h264", "w")
    except (av.FFmpegError, ValueError):
        return "mpeg4"
    return "h264"


def frame_index_at(t: float, fps: int) -> int:
    """Index of the frame a constant-`fps` video displays at time `t` (times a microsecond apart are equal)."""
    return math.floor((Fraction(t) + Fraction(1, 1_000_000)) * fps)


def _block_map(width: int, height: int) -> np.ndarray:
    """For every pixel, the bit number of the grid block it belongs to."""
    columns = np.arange(width) * GRID_COLUMNS // width
    rows = np.arange(height) * GRID_ROWS // height
    return rows[:, None] * GRID_COLUMNS + columns[None, :]


def index_pattern(index: int, size: tuple[int, int]) -> np.ndarray:
    """The RGB pixels (height x width x 3, uint8) that encode frame number `index`."""
    if not 0 <= index < 2**INDEX_BITS:
        raise ValueError(f"frame index {index} does not fit in {INDEX_BITS} bits")
    width, height = size
    bits = np.array([(index >> bit) & 1 for bit in range(INDEX_BITS)], dtype=np.uint8) * 255
    gray = bits[_block_map(width, height)]
    return np.repeat(gray[:, :, None], 3, axis=2)


def decode_frame_index(image: Image.Image) -> int:
    """The frame number written into `image` by `encode_test_video`; ValueError if a block is unclear."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    height, width = gray.shape
    index = 0
    for bit in range(INDEX_BITS):
        row, column = divmod(bit, GRID_COLUMNS)
        # The middle half of each block: far from edges that compression and scaling blur.
        top, bottom = (row * 4 + 1) * height // (GRID_ROWS * 4), (row * 4 + 3) * height // (GRID_ROWS * 4)
        left, right = (column * 4 + 1) * width // (GRID_COLUMNS * 4), (column * 4 + 3) * width // (GRID_COLUMNS * 4)
        level = float(gray[top:bottom, left:right].mean())
        if 64 < level < 192:
            raise ValueError(f"block {bit} of a {width}x{height} image has mean level {level:.0f}; "
                             "expected near 0 or 255 (not an encode_test_video frame?)")
        index |= int(level >= 128) << bit
    return index


def _encoder_options(codec: str) -> dict[str, str]:
    """Quality settings that keep the blocks sharp and encoding fast."""
    if codec in ("h264", "libx264"):
        return {"preset": "ultrafast", "crf": "20"}
    return {"qscale": "3"}


def encode_test_video(path: Path | str, duration_s: float, fps: int = 8, size: tuple[int, int] = (160, 96),
                      codec: str | None = None, *, frame_times: Sequence[float] | None = None) -> Path:
    """Write an MP4 of `duration_s` seconds at `fps` whose frame i shows the number i.

    `frame_times` (seconds, increasing) replaces the constant rate with these presentation times.
    Frames are grouped into pictures of two seconds between keyframes, so readers must seek.
    """
    path = Path(path)
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"size={size}: width and height must be even (yuv420p)")
    if frame_times is None:
        count = round(duration_s * fps)
        pts_list = list(range(count))
        time_base = Fraction(1, fps)
    else:
        if any(b <= a for a, b in zip(frame_times, frame_times[1:], strict=False)):
            raise ValueError("frame_times must be strictly increasing")
        pts_list = [round(Fraction(t) / VFR_TIME_BASE) for t in frame_times]
        time_base = VFR_TIME_BASE
    codec = codec or default_codec()
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps, options=_encoder_options(codec))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = 2 * fps
        for index, pts in enumerate(pts_list):
            frame = av.VideoFrame.from_ndarray(index_pattern(index, size), format="rgb24")
            frame.pts = pts
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
