"""The navigation tool's settings: caption and video folders and the VLM endpoint, per data source.

They come from the Hydra `tool` config, rendered as JSON into the run directory; verl-tool builds a
tool with `num_workers` only, so the tool finds that file through the LONGVIDEO_R1_TOOL_CONFIG
environment variable. API keys are never in the file: only the name of the variable that holds one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tools.environment.settings_file import read_settings
from tools.environment.vlm_endpoint import VLMEndpoint

ENV_VAR = "LONGVIDEO_R1_TOOL_CONFIG"
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".avi")
_SOURCE_KEYS = {"caption_dir", "video_dir", "vlm"}
_TOP_KEYS = {"default", "sources", "frames_per_query", "max_side", "jpeg_quality", "max_trees",
             "max_trajectories", "video_extensions", "frame_cache_mb", "frame_workers"}
# MiB of prepared video_qa frames (JPEG data URLs) the tool server keeps; 0 keeps none.
DEFAULT_FRAME_CACHE_MB = 4096


class ToolSettingsError(ValueError):
    """A tool settings file or mapping that is missing or malformed; the message names the file and key."""


@dataclass(frozen=True)
class SourceSettings:
    """Where one data source's caption files and videos are, and which VLM answers video_qa for it."""

    caption_dir: str
    video_dir: str
    vlm: VLMEndpoint


@dataclass(frozen=True)
class ToolSettings:
    """Everything the navigation tool reads: a default source, per-source overrides and sampling options."""

    default: SourceSettings
    sources: dict[str, SourceSettings] = field(default_factory=dict)
    frames_per_query: int = 16
    max_side: int = 1024
    jpeg_quality: int = 90
    max_trees: int = 512
    max_trajectories: int = 100_000
    video_extensions: tuple[str, ...] = VIDEO_EXTENSIONS
    # Prepared leaves kept in memory, in MiB of data URL text (0: no caching).
    frame_cache_mb: int = DEFAULT_FRAME_CACHE_MB
    # Worker processes that decode cold leaves (0: one per usable core, at most 16).
    frame_workers: int = 0

    def for_source(self, data_source: str | None) -> SourceSettings:
        """The settings of `data_source`, or the default ones when it has no entry."""
        return self.sources.get(data_source or "", self.default)

    def to_dict(self) -> dict:
        """A JSON-ready mapping that `settings_from_dict` reads back."""
        data = asdict(self)
        data["video_extensions"] = list(self.video_extensions)
        return data


def _source(data: object, where: str, base: SourceSettings | None) -> SourceSettings:
    """One source's settings; keys missing from an override fall back to `base`."""
    if not isinstance(data, dict):
        raise ToolSettingsError(f"{where}: expected a mapping with {sorted(_SOURCE_KEYS)}, got {type(data).__name__}")
    unknown = set(data) - _SOURCE_KEYS
    if unknown:
        raise ToolSettingsError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys are {sorted(_SOURCE_KEYS)}")
    values = {}
    for key in ("caption_dir", "video_dir"):
        value = data.get(key, getattr(base, key, None))
        if not isinstance(value, str) or not value:
            raise ToolSettingsError(f"{where}.{key}: expected a folder path, got {value!r}")
        values[key] = str(Path(value).expanduser().absolute())
    vlm = data.get("vlm")
    if vlm is None and base is None:
        raise ToolSettingsError(f"{where}.vlm: missing; expected base_url, model and api_key_env")
    if vlm is None:
        values["vlm"] = base.vlm
    elif not isinstance(vlm, dict):
        raise ToolSettingsError(f"{where}.vlm: expected a mapping, got {type(vlm).__name__}")
    else:
        merged = {**(asdict(base.vlm) if base else {}), **vlm}
        try:
            values["vlm"] = VLMEndpoint.from_dict(merged, where=f"{where}.vlm")
        except (TypeError, ValueError) as error:
            raise ToolSettingsError(str(error)) from None
    return SourceSettings(**values)


def _positive_int(data: dict, key: str, default: int, where: str) -> int:
    """An optional positive integer setting."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ToolSettingsError(f"{where}.{key}: expected a positive integer, got {value!r}")
    return value


def _non_negative_int(data: dict, key: str, default: int, where: str, meaning_of_zero: str) -> int:
    """An optional integer setting that may be 0 (which means `meaning_of_zero`)."""
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ToolSettingsError(f"{where}.{key}: expected 0 ({meaning_of_zero}) or a positive integer, got {value!r}")
    return value


def settings_from_dict(data: object, where: str = "tool settings") -> ToolSettings:
    """Validate a settings mapping (as rendered from the Hydra `tool` config) into ToolSettings."""
    if not isinstance(data, dict):
        raise ToolSettingsError(f"{where}: expected a mapping, got {type(data).__name__}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ToolSettingsError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys are {sorted(_TOP_KEYS)}")
    default = _source(data.get("default"), f"{where}.default", None)
    sources = data.get("sources") or {}
    if not isinstance(sources, dict):
        raise ToolSettingsError(f"{where}.sources: expected a mapping of data source to settings")
    extensions = data.get("video_extensions", list(VIDEO_EXTENSIONS))
    if not isinstance(extensions, list) or not all(isinstance(e, str) and e.startswith(".") for e in extensions):
        raise ToolSettingsError(f"{where}.video_extensions: expected a list like ['.mp4'], got {extensions!r}")
    return ToolSettings(
        default=default,
        sources={name: _source(value, f"{where}.sources.{name}", default) for name, value in sources.items()},
        frames_per_query=_positive_int(data, "frames_per_query", 16, where),
        max_side=_positive_int(data, "max_side", 1024, where),
        jpeg_quality=_positive_int(data, "jpeg_quality", 90, where),
        max_trees=_positive_int(data, "max_trees", 512, where),
        max_trajectories=_positive_int(data, "max_trajectories", 100_000, where),
        video_extensions=tuple(extensions),
        frame_cache_mb=_non_negative_int(data, "frame_cache_mb", DEFAULT_FRAME_CACHE_MB, where, "no caching"),
        frame_workers=_non_negative_int(data, "frame_workers", 0, where, "one per usable core, at most 16"),
    )


def load_settings(path: str | Path | None = None) -> ToolSettings:
    """Read settings from `path`, or from the file named by $LONGVIDEO_R1_TOOL_CONFIG."""
    if path is None:
        path = os.environ.get(ENV_VAR)
        if not path:
            raise ToolSettingsError(f"${ENV_VAR} is not set: it must name the tool settings JSON that the "
                                    f"stage renders into its run directory")
    data = read_settings(Path(path), f"tool settings named by ${ENV_VAR}", "the JSON object the stage renders",
                         ToolSettingsError)
    return settings_from_dict(data, where=str(path))


def write_settings(settings: ToolSettings, path: str | Path) -> Path:
    """Write `settings` as JSON to `path` (which must not exist yet) and return it."""
    path = Path(path)
    with path.open("x", encoding="utf-8") as handle:
        json.dump(settings.to_dict(), handle, indent=2)
    return path
