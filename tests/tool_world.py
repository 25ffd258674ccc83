"""A small world for the navigation tool: caption trees, a real encoded video and a loopback VLM."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.fake_vlm import FakeVLM
from tools import geometry
from tools.caption_tree import tree_data
from tools.synthetic_video import encode_test_video
from tools.tool_settings import ToolSettings, settings_from_dict

VIDEO_UID = "clip"
WIDTH = 4
# 64 leaves of 1 s each at width 4.
DURATION = 64.0
FPS = 8


def caption_text(ids: tuple[int, ...]) -> str:
    """The caption the world stores for segment `ids`: it names the segment, so tests can check what was read."""
    return f"caption of {geometry.format_ids(ids)}"


def caption_tree_data(width: int, duration: float, text=caption_text) -> dict:
    """A valid caption file's JSON for a video of `duration` seconds at `width`."""
    return tree_data(width, duration, lambda segment: text(segment.ids))


def write_tree(caption_dir: Path, video_uid: str, width: int, duration: float, text=caption_text) -> Path:
    """Write a caption file for `video_uid` and return its path."""
    caption_dir.mkdir(parents=True, exist_ok=True)
    path = caption_dir / f"{video_uid}.json"
    path.write_text(json.dumps(caption_tree_data(width, duration, text)))
    return path


def settings_dict(root: Path, base_url: str, **overrides) -> dict:
    """Tool settings for a world under `root`, served by the VLM at `base_url`."""
    vlm = {"base_url": base_url, "model": "fake-vlm", "api_key_env": "TEST_VLM_KEY", "timeout_s": 5.0,
           "max_retries": 1, "backoff_s": 0.05, "max_concurrency": 8}
    vlm.update(overrides.pop("vlm", {}))
    data = {"default": {"caption_dir": str(root / "captions"), "video_dir": str(root / "videos"), "vlm": vlm}}
    data.update(overrides)
    return data


def extra_info(video_uid: str = VIDEO_UID, duration: float = DURATION, width: int = WIDTH, **more) -> dict:
    """A question's `extra_info` with the DESIGN §4 field names."""
    return {"video_uid": video_uid, "duration": duration, "width": width, "fps": FPS, "clue_intervals": [],
            **more}


@dataclass
class ToolWorld:
    """Paths, the VLM and the settings of one world."""

    root: Path
    vlm: FakeVLM
    settings: ToolSettings
    video: Path


def build_world(root: Path, fake_vlm: FakeVLM, with_video: bool = True, **overrides) -> ToolWorld:
    """Write the caption tree and (optionally) the video of VIDEO_UID under `root`."""
    write_tree(root / "captions", VIDEO_UID, WIDTH, DURATION)
    video = root / "videos" / f"{VIDEO_UID}.mp4"
    if with_video:
        video.parent.mkdir(parents=True, exist_ok=True)
        encode_test_video(video, DURATION, fps=FPS)
    settings = settings_from_dict(settings_dict(root, fake_vlm.base_url, **overrides))
    return ToolWorld(root, fake_vlm, settings, video)


def turn(action: str, think: str = "I look closer.") -> str:
    """A well-formed model turn around `action` (a call, or an answer's text with `answer=`)."""
    return f"<think>{think}</think><tool>{action}</tool>"
