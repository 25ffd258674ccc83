"""The world of the video_qa benchmark: production-like videos, their caption trees, the RL access pattern.

Videos are real H.264 at 1920x1080, 30 fps, with a 250-frame keyframe interval (the usual for web
video), 432 s long so that width 3 gives 16 s leaves as in the paper. They are encoded once into a
cache outside the repository ($LONGVIDEO_R1_BENCH_CACHE, default ~/.cache/longvideo-r1/bench).
"""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from tests.fixtures.tool_world import write_tree
from tools.environment import geometry

SIZE = (1920, 1080)
FPS = 30
KEYFRAME_INTERVAL = 250
DURATION_S = 432.0
WIDTH = 3
CACHE = Path(os.environ.get("LONGVIDEO_R1_BENCH_CACHE", Path.home() / ".cache" / "longvideo-r1" / "bench"))


def frame_pixels(index: int, rng: np.random.Generator) -> np.ndarray:
    """Frame `index`: a drifting gradient, moving blocks and light noise, so it compresses like real footage."""
    width, height = SIZE
    x = np.arange(width, dtype=np.uint16)[None, :]
    y = np.arange(height, dtype=np.uint16)[:, None]
    base = ((x + 3 * index) // 4 + (y // 3)) % 256
    image = np.stack([base, (base + 85) % 256, (255 - base)], axis=-1).astype(np.uint8)
    for block in range(6):
        left = (index * (4 + block) + block * 300) % (width - 200)
        top = (block * 170 + index * 2) % (height - 150)
        image[top:top + 150, left:left + 200] = (40 * block, 255 - 30 * block, 120)
    noise = rng.integers(0, 12, size=(height // 4, width // 4, 1), dtype=np.uint8)
    image[::4, ::4] += noise
    return image


def encode_video(path: Path, duration_s: float = DURATION_S, seed: int = 0) -> Path:
    """Encode one benchmark video into `path` (through a temporary file, so a half-written one is never used)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    rng = np.random.default_rng(seed)
    with av.open(str(temporary), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = KEYFRAME_INTERVAL
        # x264's default B-frames; veryfast only so the one-time encode takes minutes, not an hour.
        stream.options = {"crf": "23", "preset": "veryfast", "keyint": str(KEYFRAME_INTERVAL),
                          "min-keyint": str(KEYFRAME_INTERVAL), "scenecut": "0"}
        for index in range(round(duration_s * FPS)):
            frame = av.VideoFrame.from_ndarray(frame_pixels(index + seed * 1000, rng), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    temporary.replace(path)
    return path


def cached_videos(count: int) -> list[Path]:
    """`count` benchmark videos from the cache, encoding those that are missing (minutes each, once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = CACHE / f"h264_1080p{FPS}_gop{KEYFRAME_INTERVAL}_{int(DURATION_S)}s_{index}.mp4"
        if not path.is_file():
            print(f"encoding {path} (once; about {DURATION_S / 60:.0f} min of 1080p)", flush=True)
            encode_video(path, seed=index)
        paths.append(path)
    return paths


@dataclass(frozen=True)
class World:
    """Caption and video folders of the benchmark's videos, by video uid."""

    caption_dir: Path
    video_dir: Path
    uids: list[str]


def build_world(root: Path, videos: list[Path]) -> World:
    """Link the cached videos under `root` and write a width-3 caption tree for each."""
    video_dir, caption_dir = root / "videos", root / "captions"
    video_dir.mkdir(parents=True)
    uids = []
    for index, video in enumerate(videos):
        uid = f"bench{index}"
        (video_dir / f"{uid}.mp4").symlink_to(video)
        write_tree(caption_dir, uid, WIDTH, DURATION_S)
        uids.append(uid)
    return World(caption_dir, video_dir, uids)


def leaves() -> list[tuple[int, ...]]:
    """Every leaf of a width-3 tree."""
    return [geometry.ids_of(index, 3, WIDTH) for index in range(WIDTH ** 3)]


@dataclass(frozen=True)
class Rollout:
    """One rollout of the pattern: its trajectory id, its video and the leaves it asks video_qa about."""

    trajectory_id: str
    video_uid: str
    leaves: list[tuple[int, ...]]


def access_pattern(uids: list[str], questions: int, rollouts: int, seed: int = 0) -> list[Rollout]:
    """RL's pattern: each question's group of rollouts makes 2-3 video_qa calls, mostly on its 2-4 hot leaves."""
    rng = random.Random(seed)
    every_leaf = leaves()
    pattern = []
    for question in range(questions):
        uid = uids[question % len(uids)]
        hot = rng.sample(every_leaf, rng.randint(2, 4))
        for index in range(rollouts):
            picked = [rng.choice(hot) if rng.random() < 0.85 else rng.choice(every_leaf)
                      for _ in range(rng.randint(2, 3))]
            pattern.append(Rollout(f"q{question}-r{index}", uid, picked))
    return pattern


def git_file(revision: str, path: str, destination: Path) -> Path:
    """`path` as it was at `revision` of this checkout, written to `destination`; SystemExit saying why not."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"cannot read {path} at {revision} (the baseline): {done.stderr.strip()}; run the benchmark "
                         "from a git checkout with its history")
    destination.write_text(done.stdout)
    return destination
