"""The captions stage: the composed `captions` config to a Plan that builds caption trees through a VLM.

The Plan writes `captions/settings.json` (the resolved `captions` section with absolute paths; the
VLM's API key is never in it, only the name of its environment variable) and runs
`python -m tools.builders.build_captions --settings captions/settings.json`. The settings are checked here,
before anything is created (typed here, values by the builder's `check_settings`), and checked again by
the tool with the same `check_settings`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from launch.compose import ConfigError
from launch.plan import FileSpec, Plan, Resources, Step
from launch.schema import typed_section
from tools.builders.caption_settings import CaptionsConfig, CaptionSettingsError, check_settings

SETTINGS_FILE = "captions/settings.json"


class CaptionsConfigError(ConfigError):
    """The `captions` settings are missing a value or hold a wrong one; the message names the key."""


def captions_settings(config: DictConfig) -> dict[str, Any]:
    """The resolved, checked `captions` section with absolute folders, as the tool reads it."""
    section = config.get("captions")
    if section is None:
        raise CaptionsConfigError("the config has no 'captions' section; expected configs/captions/default.yaml")
    settings = dataclasses.asdict(typed_section(CaptionsConfig, section, "captions", CaptionsConfigError))
    try:
        check_settings(settings, "captions")
    except CaptionSettingsError as error:
        raise CaptionsConfigError(str(error)) from None
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
    main = Step("build_captions", [python, "-m", "tools.builders.build_captions", "--settings", SETTINGS_FILE])
    # One process on one node: the VLM runs behind its own endpoint, so this stage holds no GPU.
    return Plan(stage="captions", run_dir=str(run_dir), main=main, files=files,
                resources=Resources(nodes=1, gpus_per_node=0), outputs={"captions": settings["output_dir"]})
