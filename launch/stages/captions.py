"""The captions stage: the composed `captions` config to a Plan that builds caption trees through a VLM.

The Plan writes `captions/settings.json` (the resolved `captions` section with absolute paths; the
VLM's API key is never in it, only the name of its environment variable) and runs
`python -m tools.build_captions --settings captions/settings.json`. The settings are checked here,
before anything is created, and checked again by the tool with the same `check_settings`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from launch.compose import ConfigError
from launch.plan import FileSpec, Plan, Resources, Step
from tools.geometry import LEVEL_NAMES
from tools.vlm_endpoint import VLMEndpoint

SETTINGS_FILE = "captions/settings.json"
REQUIRED_PATHS = ("video_dir", "output_dir")
PER_LEVEL_KEYS = ("frames_per_level", "max_side", "words_per_level")
POSITIVE_INT_KEYS = ("min_width", "max_width", "workers")
SETTING_KEYS = ("dataset", "video_dir", "output_dir", "subtitle_dir", "video_extensions", *PER_LEVEL_KEYS,
                *POSITIVE_INT_KEYS, "jpeg_quality", "vlm")
DATASET_PATTERN = re.compile(r"[A-Za-z0-9._-]+")


class CaptionsConfigError(ConfigError):
    """The `captions` settings are missing a value or hold a wrong one; the message names the key."""


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_per_level(data: Mapping[str, Any], key: str, where: str) -> None:
    """`data[key]` must map exactly high, medium and low to positive integers."""
    value = data[key]
    if not isinstance(value, Mapping) or set(value) != set(LEVEL_NAMES):
        raise CaptionsConfigError(f"{where}.{key}={value!r}: expected a positive integer for each of "
                                  f"{', '.join(LEVEL_NAMES)}")
    for level in LEVEL_NAMES:
        if not _is_positive_int(value[level]):
            raise CaptionsConfigError(f"{where}.{key}.{level}={value[level]!r}: expected a positive integer")


def _check_vlm(vlm: object, where: str) -> None:
    """The VLM section, checked by the endpoint's own validation (which refuses an API key in a config)."""
    try:
        VLMEndpoint.from_dict(vlm, where=f"{where}.vlm")
    except (TypeError, ValueError) as error:
        raise CaptionsConfigError(str(error)) from None


def check_settings(data: Mapping[str, Any], where: str) -> None:
    """Raise CaptionsConfigError naming `where` and the key unless `data` holds valid captions settings."""
    if not isinstance(data, Mapping):
        raise CaptionsConfigError(f"{where}: expected a mapping of captions settings, got {type(data).__name__}")
    missing = [key for key in SETTING_KEYS if key not in data]
    unknown = [key for key in data if key not in SETTING_KEYS]
    if missing or unknown:
        raise CaptionsConfigError(f"{where}: missing keys {missing}, unknown keys {unknown}; "
                                  f"expected exactly {', '.join(SETTING_KEYS)}")
    dataset = data["dataset"]
    if not isinstance(dataset, str) or not DATASET_PATTERN.fullmatch(dataset):
        raise CaptionsConfigError(f"{where}.dataset={dataset!r}: expected a name of letters, digits, . _ -")
    for key in REQUIRED_PATHS:
        if not isinstance(data[key], str) or not data[key] or data[key] == "???":
            raise CaptionsConfigError(f"{where}.{key}: missing; set {where}.{key}=/path/to/folder")
    if data["subtitle_dir"] is not None and (not isinstance(data["subtitle_dir"], str) or not data["subtitle_dir"]):
        raise CaptionsConfigError(f"{where}.subtitle_dir={data['subtitle_dir']!r}: expected a folder path or null")
    extensions = data["video_extensions"]
    if (not isinstance(extensions, list) or not extensions
            or not all(isinstance(e, str) and e.startswith(".") and len(e) > 1 for e in extensions)):
        raise CaptionsConfigError(f"{where}.video_extensions={extensions!r}: expected a list like [.mp4, .mkv]")
    for key in PER_LEVEL_KEYS:
        _check_per_level(data, key, where)
    for key in POSITIVE_INT_KEYS:
        if not _is_positive_int(data[key]):
            raise CaptionsConfigError(f"{where}.{key}={data[key]!r}: expected a positive integer")
    if data["min_width"] > data["max_width"]:
        raise CaptionsConfigError(f"{where}.min_width={data['min_width']} is greater than "
                                  f"{where}.max_width={data['max_width']}; expected min_width <= max_width")
    quality = data["jpeg_quality"]
    if not _is_positive_int(quality) or quality > 100:
        raise CaptionsConfigError(f"{where}.jpeg_quality={quality!r}: expected an integer from 1 to 100")
    _check_vlm(data["vlm"], where)


def captions_settings(config: DictConfig) -> dict[str, Any]:
    """The resolved, checked `captions` section with absolute folders, as the tool reads it."""
    section = config.get("captions")
    if section is None:
        raise CaptionsConfigError("the config has no 'captions' section; expected configs/captions/default.yaml")
    for key in REQUIRED_PATHS:
        if OmegaConf.is_missing(section, key):
            raise CaptionsConfigError(f"captions.{key}: missing; set captions.{key}=/path/to/folder")
    settings = OmegaConf.to_container(section, resolve=True)
    check_settings(settings, "captions")
    for key in ("video_dir", "output_dir", "subtitle_dir"):
        if settings[key] is not None:
            # Steps run inside the run directory, so every folder is made absolute here.
            settings[key] = str(Path(settings[key]).expanduser().absolute())
    for key in ("video_dir", "subtitle_dir"):
        if settings[key] is not None and not Path(settings[key]).is_dir():
            raise CaptionsConfigError(f"captions.{key}={settings[key]}: no such folder")
    if Path(settings["output_dir"]).exists() and not Path(settings["output_dir"]).is_dir():
        raise CaptionsConfigError(f"captions.output_dir={settings['output_dir']}: exists and is not a folder")
    return settings


def build_plan(config: DictConfig, run_dir: Path, run_name: str, python: str) -> Plan:
    """The captions Plan for a composed config, to run in `run_dir`."""
    settings = captions_settings(config)
    files = [FileSpec(SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")]
    main = Step("build_captions", [python, "-m", "tools.build_captions", "--settings", SETTINGS_FILE])
    # One process on one node: the VLM runs behind its own endpoint, so this stage holds no GPU.
    return Plan(stage="captions", run_dir=str(run_dir), main=main, files=files,
                resources=Resources(nodes=1, gpus_per_node=0), outputs={"captions": settings["output_dir"]})
