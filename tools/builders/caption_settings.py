"""The caption builder's settings: the keys of `captions/settings.json` and their one check.

The captions stage renders the file from the composed `captions` section and checks it with
`check_settings` before anything is created; `python -m tools.builders.build_captions` checks the file
again with the same function.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tools.environment.geometry import LEVEL_NAMES, GeometryError, check_width
from tools.environment.vlm_endpoint import VLMEndpoint

REQUIRED_PATHS = ("video_dir", "output_dir")
PER_LEVEL_KEYS = ("frames_per_level", "max_side", "words_per_level")
POSITIVE_INT_KEYS = ("min_width", "max_width", "workers")
WIDTH_KEYS = ("min_width", "max_width")
DATASET_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


@dataclass
class CaptionsConfig:
    """The keys of the settings file and their types (the `captions` section); `check_settings` checks the values."""

    dataset: str = field(metadata={"help": "the name of this video collection (its run group: runs/captions/NAME/)"})
    video_dir: str = field(metadata={"help": "the folder of the videos; a name without its extension is its video_uid"})
    output_dir: str = field(
        metadata={"help": "where <video_uid>.json captions are written; a valid file there is skipped"})
    subtitle_dir: str | None = field(
        metadata={"help": "a folder of <video_uid>.srt subtitles for the prompts; null: none"})
    video_extensions: list[str] = field(
        metadata={"help": "the extensions (case-insensitive) of the files that are captioned"})
    frames_per_level: dict[str, int] = field(
        metadata={"help": "frames shown to the VLM per segment, by level (high, medium, low)"})
    max_side: dict[str, int] = field(metadata={"help": "the longest image side in pixels, by level"})
    words_per_level: dict[str, int] = field(metadata={"help": "the word limit each level's caption is asked for"})
    min_width: int = field(
        metadata={"help": "the smallest tree width: round((duration / 16) ** (1/3)) is clamped to it"})
    max_width: int = field(metadata={"help": "the largest tree width"})
    workers: int = field(metadata={"help": "segments captioned at once, across segments and videos"})
    jpeg_quality: int = field(metadata={"help": "JPEG quality of the frames sent to the VLM"})
    vlm: dict[str, Any] = field(
        metadata={"help": "the captioning VLM's OpenAI-compatible endpoint: base_url, model, api_key_env, ..."})


# Exactly the schema's keys, in its order.
SETTING_KEYS = tuple(field.name for field in fields(CaptionsConfig))


class CaptionSettingsError(ValueError):
    """The captions settings are missing a value or hold a wrong one; the message names the key."""


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_per_level(data: Mapping[str, Any], key: str, where: str) -> None:
    """`data[key]` must map exactly high, medium and low to positive integers."""
    value = data[key]
    if not isinstance(value, Mapping) or set(value) != set(LEVEL_NAMES):
        raise CaptionSettingsError(f"{where}.{key}={value!r}: expected a positive integer for each of "
                                  f"{', '.join(LEVEL_NAMES)}")
    for level in LEVEL_NAMES:
        if not _is_positive_int(value[level]):
            raise CaptionSettingsError(f"{where}.{key}.{level}={value[level]!r}: expected a positive integer")


def _check_vlm(vlm: object, where: str) -> None:
    """The VLM section, checked by the endpoint's own validation (which refuses an API key in a config)."""
    try:
        VLMEndpoint.from_dict(vlm, where=f"{where}.vlm")
    except (TypeError, ValueError) as error:
        raise CaptionSettingsError(str(error)) from None


def _check_widths(data: Mapping[str, Any], where: str) -> None:
    """min_width and max_width inside the widths the tree rule allows (geometry's check), min_width <= max_width."""
    for key in WIDTH_KEYS:
        try:
            check_width(data[key], f"{where}.{key}")
        except GeometryError as error:
            raise CaptionSettingsError(str(error)) from None
    if data["min_width"] > data["max_width"]:
        raise CaptionSettingsError(f"{where}.min_width={data['min_width']} is greater than "
                                  f"{where}.max_width={data['max_width']}; expected min_width <= max_width")


def check_settings(data: Mapping[str, Any], where: str) -> None:
    """Raise CaptionSettingsError naming `where` and the key unless `data` holds valid captions settings."""
    if not isinstance(data, Mapping):
        raise CaptionSettingsError(f"{where}: expected a mapping of captions settings, got {type(data).__name__}")
    missing = [key for key in SETTING_KEYS if key not in data]
    unknown = [key for key in data if key not in SETTING_KEYS]
    if missing or unknown:
        raise CaptionSettingsError(f"{where}: missing keys {missing}, unknown keys {unknown}; "
                                  f"expected exactly {', '.join(SETTING_KEYS)}")
    dataset = data["dataset"]
    if not isinstance(dataset, str) or not DATASET_PATTERN.fullmatch(dataset):
        raise CaptionSettingsError(f"{where}.dataset={dataset!r}: expected a name of letters, digits, . _ -")
    for key in REQUIRED_PATHS:
        if not isinstance(data[key], str) or not data[key] or data[key] == "???":
            raise CaptionSettingsError(f"{where}.{key}: missing; set {where}.{key}=/path/to/folder")
    if data["subtitle_dir"] is not None and (not isinstance(data["subtitle_dir"], str) or not data["subtitle_dir"]):
        raise CaptionSettingsError(f"{where}.subtitle_dir={data['subtitle_dir']!r}: expected a folder path or null")
    extensions = data["video_extensions"]
    if (not isinstance(extensions, list) or not extensions
            or not all(isinstance(e, str) and e.startswith(".") and len(e) > 1 for e in extensions)):
        raise CaptionSettingsError(f"{where}.video_extensions={extensions!r}: expected a list like [.mp4, .mkv]")
    for key in PER_LEVEL_KEYS:
        _check_per_level(data, key, where)
    for key in POSITIVE_INT_KEYS:
        if not _is_positive_int(data[key]):
            raise CaptionSettingsError(f"{where}.{key}={data[key]!r}: expected a positive integer")
    _check_widths(data, where)
    quality = data["jpeg_quality"]
    if not _is_positive_int(quality) or quality > 100:
        raise CaptionSettingsError(f"{where}.jpeg_quality={quality!r}: expected an integer from 1 to 100")
    _check_vlm(data["vlm"], where)
