"""The dataset stages: `sft_data` (trajectories to LLaMA-Factory's sharegpt) and `rl_data` (annotations to parquet).

Each Plan writes its settings, resolved and checked here, to `<stage>/settings.json` in the run
directory and runs the builder (`python -m tools.builders.sft_data` or `python -m tools.builders.rl_data`), which
writes its output beside them. The recipe supplies what the training stages must agree on: the
turn limit (`agent.max_turns`), the observation role and template (`chat`), and `sft.cutoff_len`;
caption folders come from the tool config, per data source.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from launch.compose import ConfigError
from launch.plan import FileSpec, Plan, Resources, Step
from launch.stages.sft_config import check_chat_config
from tools.environment.tool_settings import ToolSettings, ToolSettingsError, settings_from_dict

SFT_SOURCES = ("trajectories", "released")
ANNOTATION_FORMATS = ("cgbench", "videomme", "lvbench")
NAME = re.compile(r"[A-Za-z0-9._-]+")


class DatasetConfigError(ConfigError):
    """A dataset stage's settings are missing a value or hold a wrong one; the message names the key."""


def _section(config: DictConfig, stage: str) -> dict:
    """The stage's section resolved, with a clear error for each missing value."""
    section = config[stage]
    for key in section:
        if OmegaConf.is_missing(section, key):
            raise DatasetConfigError(f"{stage}.{key}: missing; set {stage}.{key}=...")
    return OmegaConf.to_container(section, resolve=True)


def existing_path(path: object, key: str, folder: bool = False) -> str:
    """`path` made absolute; DatasetConfigError naming `key` unless it is an existing file (or folder)."""
    if not isinstance(path, str) or not path:
        raise DatasetConfigError(f"{key}={path!r}: expected a path")
    absolute = Path(path).expanduser().absolute()
    if not (absolute.is_dir() if folder else absolute.is_file()):
        raise DatasetConfigError(f"{key}={path}: no such {'folder' if folder else 'file'}")
    return str(absolute)


def _flags(section: dict, stage: str, keys: tuple[str, ...]) -> None:
    """Each of `keys` must be true or false."""
    for key in keys:
        if not isinstance(section[key], bool):
            raise DatasetConfigError(f"{stage}.{key}={section[key]!r}: expected true or false")


def max_turns_of(config: DictConfig) -> int:
    """The recipe's agent.max_turns, checked."""
    value = OmegaConf.select(config, "agent.max_turns")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DatasetConfigError(f"agent.max_turns={value!r}: expected a positive integer (set by the recipe)")
    return value


def tool_settings(config: DictConfig) -> ToolSettings:
    """The `tool` config read as the tool reads it (per-source folders fall back to the default's)."""
    try:
        return settings_from_dict(OmegaConf.to_container(config.tool, resolve=True), "tool")
    except ToolSettingsError as error:
        raise DatasetConfigError(str(error)) from None


def demo_world_dir(config: DictConfig) -> str:
    """The cached demo world (`tools.demo.world`) the tiny recipe's SFT and RL data are built from."""
    return str(Path(config.paths.cache).expanduser().absolute() / "demo" / "world")


def sft_data_settings(config: DictConfig) -> dict:
    """The resolved, checked settings `tools.builders.sft_data` reads."""
    section = _section(config, "sft_data")
    if section["source"] not in SFT_SOURCES:
        raise DatasetConfigError(f"sft_data.source={section['source']!r}: expected one of {', '.join(SFT_SOURCES)}")
    if not isinstance(section["dataset"], str) or not NAME.fullmatch(section["dataset"]):
        raise DatasetConfigError(f"sft_data.dataset={section['dataset']!r}: expected a name of letters, digits, . _ -")
    _flags(section, "sft_data", ("keep_wrong", "keep_hinted", "keep_invalid_turns"))
    chat = check_chat_config(config)
    cutoff_len = OmegaConf.select(config, "sft.cutoff_len")
    tool = tool_settings(config)
    caption_dirs = {"default": tool.default.caption_dir,
                    "sources": {name: source.caption_dir for name, source in tool.sources.items()}}
    tokenizer = section["tokenizer"]
    if tokenizer is not None and Path(str(tokenizer)).expanduser().exists():
        tokenizer = str(Path(tokenizer).expanduser().absolute())
    return {"source": section["source"], "input": existing_path(section["input"], "sft_data.input"),
            "observation_role": chat.observation_role, "chat_template": chat.template,
            "max_turns": max_turns_of(config), "cutoff_len": cutoff_len, "keep_wrong": section["keep_wrong"],
            "keep_hinted": section["keep_hinted"], "keep_invalid_turns": section["keep_invalid_turns"],
            "tokenizer": tokenizer, "caption_dirs": caption_dirs}


def rl_data_settings(config: DictConfig) -> dict:
    """The resolved, checked settings `tools.builders.rl_data` reads."""
    section = _section(config, "rl_data")
    if section["format"] not in ANNOTATION_FORMATS:
        raise DatasetConfigError(f"rl_data.format={section['format']!r}: expected one of "
                                 f"{', '.join(ANNOTATION_FORMATS)}")
    for key in ("dataset", "data_source"):
        if not isinstance(section[key], str) or not NAME.fullmatch(section[key]):
            raise DatasetConfigError(f"rl_data.{key}={section[key]!r}: expected a name of letters, digits, . _ -")
    fraction = section["val_fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
            math.isfinite(fraction) and 0 <= fraction <= 1):
        raise DatasetConfigError(f"rl_data.val_fraction={fraction!r}: expected a number from 0 to 1")
    caption_key = "rl_data.caption_dir"
    caption_dir = section["caption_dir"]
    if caption_dir is None:
        caption_dir = tool_settings(config).for_source(section["data_source"]).caption_dir
        caption_key = (f"rl_data.caption_dir (unset, so the tool's folder for {section['data_source']}: "
                       f"tool.sources.{section['data_source']}.caption_dir or tool.default.caption_dir)")
    video_dir = section["video_dir"]
    return {"annotations": existing_path(section["annotations"], "rl_data.annotations"), "format": section["format"],
            "data_source": section["data_source"], "caption_dir": existing_path(caption_dir, caption_key, True),
            "video_dir": None if video_dir is None else existing_path(video_dir, "rl_data.video_dir", True),
            "max_turns": max_turns_of(config), "val_fraction": float(fraction), "seed": int(section["seed"])}


def _plan(stage: str, settings: dict, run_dir: Path, python: str, outputs: dict[str, str]) -> Plan:
    """A one-process, CPU-only Plan that runs `tools.<stage>` on its settings file."""
    settings_file = f"{stage}/settings.json"
    files = [FileSpec(settings_file, json.dumps(settings, indent=2) + "\n")]
    main = Step(stage, [python, "-m", f"tools.builders.{stage}", "--settings", settings_file, "--output", stage])
    return Plan(stage=stage, run_dir=str(run_dir), main=main, files=files,
                resources=Resources(nodes=1, gpus_per_node=0),
                outputs={key: str(run_dir / stage / name) for key, name in outputs.items()})


def build_sft_data_plan(config: DictConfig, run_dir: Path, run_name: str, python: str) -> Plan:
    """The sft_data Plan for a composed config, to run in `run_dir`."""
    return _plan("sft_data", sft_data_settings(config), run_dir, python, {"dataset": "sft.json"})


def build_rl_data_plan(config: DictConfig, run_dir: Path, run_name: str, python: str) -> Plan:
    """The rl_data Plan for a composed config, to run in `run_dir`."""
    return _plan("rl_data", rl_data_settings(config), run_dir, python,
                 {"train": "train.parquet", "val": "val.parquet"})
