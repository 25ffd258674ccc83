"""The per-question fields the tools and rewards read from `extra_info` (names fixed in tools/environment/README.md).

Kept apart from the navigation environment so that the reward imports it without the VLM client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tools.environment import geometry


@dataclass(frozen=True)
class VideoFields:
    """The per-question fields the tool needs, read from `extra_info` (names fixed in tools/environment/README.md)."""

    video_uid: str
    duration: float
    width: int

    @classmethod
    def from_extra_info(cls, extra_info: object) -> VideoFields:
        """Read video_uid, duration and width; ValueError naming the field that is missing or wrong (a width outside
        geometry's allowed range included)."""
        if not isinstance(extra_info, dict):
            raise ValueError(f"extra_info must be a mapping with video_uid, duration and width, got "
                             f"{type(extra_info).__name__}")
        video_uid, duration, width = (extra_info.get(key) for key in ("video_uid", "duration", "width"))
        if not isinstance(video_uid, str) or not video_uid:
            raise ValueError(f"extra_info.video_uid must be a non-empty string, got {video_uid!r}")
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
                or duration <= 0:
            raise ValueError(f"extra_info.duration must be a positive number of seconds, got {duration!r}")
        # The one width rule (geometry): a width no caption tree has, such as 1 or 100, is bad data, not a tree.
        return cls(video_uid, float(duration), geometry.check_width(width, "extra_info.width"))
