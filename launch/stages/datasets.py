"""The dataset stages: `sft_data` (trajectories to LLaMA-Factory's sharegpt) and `rl_data` (annotations to parquet).

Each Plan writes its settings, resolved and checked here, to `<stage>/settings.json` in the run
directory and runs the builder (`python -m tools.builders.sft_data` or `python -m tools.builders.rl_data`), which
writes its output beside them. The recipe supplies what the training stages must agree on: the
turn limit (`agent.max_turns`), the observation role and template (`chat`), and `sft.cutoff_len`;
caption folders come from the tool config, per data source.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from launch.compose import ConfigError
from launch.handoff import InputSource, resolve_input
from launch.plan import FileSpec, Plan, Resources, Step
from launch.schema import check_choice, check_positive, check_range, described, typed_section
from launch.stages.sft_config import SFT_FILE, check_chat_config
from tools.builders.annotations import FORMAT_NAMES
from tools.environment.tool_settings import ToolSettings, ToolSettingsError, settings_from_dict

SFT_SOURCES = ("trajectories", "released")
NAME = re.compile(r"[A-Za-z0-9._-]+")


class DatasetConfigError(ConfigError):
    """A dataset stage's settings are missing a value or hold a wrong one; the message names the key."""


@dataclass
class AgentConfig:
    """The recipe's `agent` section: what every stage that plays or renders turns must agree on."""

    max_turns: int = described("tool calls per episode: the turn limit SFT data, RL and eval agree on")


@dataclass
class ToolSourceConfig:
    """One data source of the `tool` section; its VLM endpoint is checked by the tool's own settings."""

    caption_dir: str = described("the folder of <video_uid>.json caption trees")
    video_dir: str = described("the folder of <video_uid>.<ext> videos video_qa samples frames from")
    vlm: dict[str, Any] = described(
        "the OpenAI-compatible endpoint video_qa asks: base_url, model, api_key_env, timeout_s, ...")


@dataclass
class ToolConfig:
    """The `tool` section (configs/tool/default.yaml); per-source overrides name only what differs."""

    default: ToolSourceConfig = described("the caption trees, videos and VLM of every data source")
    sources: dict[str, Any] = described("per data source overrides of `default`, by the rows' data_source")
    frames_per_query: int = described("frames video_qa samples uniformly inside a low segment")
    max_side: int = described("frames are scaled so that their long side is at most this many pixels")
    jpeg_quality: int = described("JPEG quality of the frames sent to the VLM")
    max_trees: int = described("caption trees kept parsed in memory (least recently used dropped)")
    max_trajectories: int = described("trajectories whose state the tool keeps (older ones dropped)")
    video_extensions: list[str] = described("the file extensions of the videos the tool reads")
    frame_cache_mb: int = described("MiB of a leaf's encoded frames kept for the next query of the same leaf; 0: none")
    frame_workers: int = described("processes that decode and encode frames; 0: one per core, at most 16")


@dataclass
class SFTDataStageConfig:
    """The `sft_data` section (configs/sft_data/default.yaml)."""

    dataset: str = described("the name of the built dataset (its run group: runs/sft_data/NAME/)")
    source: str = described(
        "what `input` is: our trajectory JSONL, or the paper's released LLaMA-Factory file", SFT_SOURCES)
    input: str | None = described(
        "the input file; null (source trajectories): the newest finished trajectories run's trajectories.jsonl")
    keep_wrong: bool = described("keep trajectories whose final answer is wrong")
    keep_hinted: bool = described("keep trajectories whose teacher was given hints")
    keep_invalid_turns: bool = described("keep trajectories with a turn the tool refused")
    tokenizer: str | None = described(
        "a tokenizer (model folder or hub id) that counts tokens per sample against sft.cutoff_len; null: no count")


@dataclass
class RLDataStageConfig:
    """The `rl_data` section (configs/rl_data/default.yaml)."""

    dataset: str = described("the name of the built dataset (its run group: runs/rl_data/NAME/)")
    format: str = described("the annotation format", FORMAT_NAMES)
    annotations: str = described("the annotation file: a .json list, .jsonl or .parquet")
    data_source: str = described(
        "the rows' data_source: the reward logs per source, tool.sources may serve each its folders")
    caption_dir: str | None = described(
        "the folder of <video_uid>.json caption trees; null: the tool's folder for data_source")
    video_dir: str | None = described(
        "videos, read only for a duration neither annotation nor caption file gives; null: none")
    val_fraction: float = described("the fraction of videos held out for validation, in [0, 1]")
    seed: int = described("the seed of the split by video")


def check_name(section: str, key: str, value: str) -> None:
    """`section.key` must be a name of letters, digits, `.`, `_` and `-` (it becomes a folder name)."""
    if not NAME.fullmatch(value):
        raise DatasetConfigError(f"{section}.{key}={value!r}: expected a name of letters, digits, . _ -")


def existing_path(path: str, key: str, folder: bool = False) -> str:
    """`path` made absolute; DatasetConfigError naming `key` unless it is an existing file (or folder)."""
    if not path:
        raise DatasetConfigError(f"{key}={path!r}: expected a path")
    absolute = Path(path).expanduser().absolute()
    if not (absolute.is_dir() if folder else absolute.is_file()):
        raise DatasetConfigError(f"{key}={path}: no such {'folder' if folder else 'file'}")
    return str(absolute)


def max_turns_of(config: DictConfig) -> int:
    """The recipe's agent.max_turns, checked."""
    if OmegaConf.select(config, "agent") is None:
        raise DatasetConfigError("agent.max_turns: missing; it is set by the recipe (recipe=NAME)")
    agent: AgentConfig = typed_section(AgentConfig, config.agent, "agent", DatasetConfigError)
    check_positive("agent", "max_turns", agent.max_turns, error=DatasetConfigError)
    return agent.max_turns


def tool_settings(config: DictConfig) -> ToolSettings:
    """The `tool` config typed, then read as the tool reads it (per-source folders fall back to the default's)."""
    tool: ToolConfig = typed_section(ToolConfig, config.tool, "tool", DatasetConfigError)
    try:
        return settings_from_dict(dataclasses.asdict(tool), "tool")
    except ToolSettingsError as error:
        raise DatasetConfigError(str(error)) from None


def demo_world_dir(config: DictConfig) -> str:
    """The cached demo world (`tools.demo.world`) the tiny recipe's SFT and RL data are built from."""
    return str(Path(config.paths.cache).expanduser().absolute() / "demo" / "world")


def demo_sft_file(config: DictConfig) -> str:
    """The demo SFT file `sft.dataset.build=demo` writes when no sft_data run finished (per role and turn budget)."""
    folder = f"sft-{config.chat.observation_role}-t{config.agent.max_turns}"
    return str(Path(config.paths.cache).expanduser().absolute() / "demo" / folder / SFT_FILE)


def demo_rl_dir(config: DictConfig) -> Path:
    """The folder of the demo parquet `rl.data.build=demo` writes when no rl_data run finished (per turn budget)."""
    return Path(config.paths.cache).expanduser().absolute() / "demo" / f"rl-t{config.agent.max_turns}"


def sft_data_input(config: DictConfig, section: SFTDataStageConfig) -> str:
    """`sft_data.input`, else (source trajectories) the newest finished trajectories run's trajectories.jsonl."""
    if section.input is None and section.source != "trajectories":
        raise DatasetConfigError(f"sft_data.input: null takes a trajectories run's output, and "
                                 f"sft_data.source={section.source}; set sft_data.input=PATH")
    source = InputSource("trajectories", "trajectories", "python -m launch trajectories recipe=NAME benchmark=NAME")
    chosen = resolve_input(config, "sft_data", "sft_data.input", section.input, source)
    # A dry run without a trajectories run has only a placeholder, which it already warned about.
    return existing_path(chosen.path, "sft_data.input") if chosen.found else chosen.path


def sft_data_settings(config: DictConfig) -> dict:
    """The resolved, checked settings `tools.builders.sft_data` reads."""
    section: SFTDataStageConfig = typed_section(SFTDataStageConfig, config.sft_data, "sft_data", DatasetConfigError)
    check_choice("sft_data", "source", section.source, SFT_SOURCES, DatasetConfigError)
    check_name("sft_data", "dataset", section.dataset)
    chat = check_chat_config(config)
    cutoff_len = OmegaConf.select(config, "sft.cutoff_len")
    tool = tool_settings(config)
    caption_dirs = {"default": tool.default.caption_dir,
                    "sources": {name: source.caption_dir for name, source in tool.sources.items()}}
    tokenizer = section.tokenizer
    if tokenizer is not None and Path(tokenizer).expanduser().exists():
        tokenizer = str(Path(tokenizer).expanduser().absolute())
    return {"source": section.source, "input": sft_data_input(config, section),
            "observation_role": chat.observation_role, "chat_template": chat.template,
            "max_turns": max_turns_of(config), "cutoff_len": cutoff_len, "keep_wrong": section.keep_wrong,
            "keep_hinted": section.keep_hinted, "keep_invalid_turns": section.keep_invalid_turns,
            "tokenizer": tokenizer, "caption_dirs": caption_dirs}


def rl_data_settings(config: DictConfig) -> dict:
    """The resolved, checked settings `tools.builders.rl_data` reads."""
    section: RLDataStageConfig = typed_section(RLDataStageConfig, config.rl_data, "rl_data", DatasetConfigError)
    check_choice("rl_data", "format", section.format, FORMAT_NAMES, DatasetConfigError)
    check_name("rl_data", "dataset", section.dataset)
    check_name("rl_data", "data_source", section.data_source)
    check_range("rl_data", "val_fraction", section.val_fraction, 0, 1, error=DatasetConfigError)
    caption_key = "rl_data.caption_dir"
    caption_dir = section.caption_dir
    if caption_dir is None:
        caption_dir = tool_settings(config).for_source(section.data_source).caption_dir
        caption_key = (f"rl_data.caption_dir (unset, so the tool's folder for {section.data_source}: "
                       f"tool.sources.{section.data_source}.caption_dir or tool.default.caption_dir)")
    video_dir = section.video_dir
    return {"annotations": existing_path(section.annotations, "rl_data.annotations"), "format": section.format,
            "data_source": section.data_source, "caption_dir": existing_path(caption_dir, caption_key, True),
            "video_dir": None if video_dir is None else existing_path(video_dir, "rl_data.video_dir", True),
            "max_turns": max_turns_of(config), "val_fraction": section.val_fraction, "seed": section.seed}


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
