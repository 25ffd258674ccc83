"""Typed schemas of the agent-loop stages: `eval`, `trajectories`, and the question set they play (`benchmark`).

The benchmarks are the files of configs/benchmark/ (one YAML each, found by globbing); their annotation
formats are the readers of tools/builders/annotations.py. The generation keys of both stages are the fields of
`GenerationConfig`, the agent loop's `Generation` less the recipe's turn limit (a test keeps the two in step;
the loop's module is too heavy for a dry run to import): the stage passes every one of them on.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from launch.compose import group_options
from launch.schema import check_choice, check_positive, check_range, described, typed_section
from launch.stages.datasets import DatasetConfigError, existing_path, tool_settings
from launch.stages.rl_config import VLMServeConfig
from tools.builders.annotations import FORMAT_NAMES, LENGTH_CLASSES

# The annotation formats whose questions have a length class (Video-MME's short, medium, long).
LENGTH_FORMATS = ("videomme",)
BENCHMARK_BUILDERS = ("demo",)


class AgentConfigError(DatasetConfigError):
    """An eval or trajectories setting is missing or wrong; the message names the key."""


def benchmark_names() -> list[str]:
    """The benchmarks `benchmark=NAME` chooses from: configs/benchmark/*.yaml."""
    return group_options("benchmark")


@dataclass
class BenchmarkConfig:
    """One question set (configs/benchmark/NAME.yaml); null folders are the tool's for its data source."""

    name: str = described("the question set (benchmark=NAME picks it; configs/benchmark/NAME.yaml)", benchmark_names)
    format: str = described("the annotation format", FORMAT_NAMES)
    annotations: str = described("the annotation file")
    data_source: str = described("the questions' data source: the tool serves its folders")
    caption_dir: str | None = described("the folder of caption trees; null: the tool's folder for data_source")
    video_dir: str | None = described("the folder of videos; null: the tool's folder for data_source")
    length: str | None = described("only the questions of this length class (Video-MME); null: all", LENGTH_CLASSES)
    limit: int | None = described("play at most this many questions; null: all")
    build: str | None = described(
        "demo: build the demo world before playing; null: the files must exist", BENCHMARK_BUILDERS)


@dataclass
class GenerationConfig:
    """How the model is asked each turn: the agent loop's `Generation` less the recipe's turn limit."""

    top_p: float = described("nucleus sampling of each model turn, in (0, 1]")
    send_stop: bool = described("send the action stop strings </tool> and </answer> as `stop`")
    vllm_stop: bool = described("send vLLM's include_stop_str_in_output, so each turn ends where the RL rollout's does")
    question_timeout_s: float = described("wall-clock seconds one question may take, every turn included")
    extra_body: dict[str, Any] = described("extra request fields for every model call")


GENERATION_KEYS = tuple(field.name for field in dataclasses.fields(GenerationConfig))


@dataclass
class AgentStageConfig(GenerationConfig):
    """What eval and trajectories share: the endpoint, the generation keys and how many questions at once."""

    endpoint: dict[str, Any] = described(
        "the model's OpenAI-compatible endpoint: base_url, model, api_key_env, timeout_s, max_tokens, ...")
    concurrency: int = described("questions in flight at once")
    max_failed_questions: int = described(
        "questions whose endpoint failed (each counts as wrong) a successful run may have")
    system_prompt_file: str | None = described(
        "a system prompt file instead of ours ({width}, {max_turns} filled in); null: ours")


@dataclass
class EvalConfig(AgentStageConfig):
    """The `eval` section (configs/eval/default.yaml): the model to serve and the VLM beside it."""

    model: str | None = described(
        "the model served: a folder, a finished RL or SFT run directory or a hub id; null: the newest finished RL "
        "run's (else SFT's)")
    serve: bool = described("start vLLM for the model as a service of the Plan; false: ask `endpoint` as it is")
    gpus: list[int] = described("GPU indices of this node the model is served on (vllm.backend=gpu)")
    max_model_len: int = described("the served model's context length in tokens")
    gpu_memory_utilization: float = described("the share of each of its GPUs' memory vLLM may take, in (0, 1]")
    extra_args: list[str] = described("further vLLM server arguments")
    ready_timeout_s: float = described("seconds to wait for the model server's /health")
    vlm: VLMServeConfig = described("the VLM that video_qa asks")


@dataclass
class TrajectoriesConfig(AgentStageConfig):
    """The `trajectories` section (configs/trajectories/default.yaml): the teacher's attempts and hints."""

    attempts: int = described("episodes per question until one is correct")
    hints: bool = described("tell the teacher which low segments hold the clue intervals (trajectories marked hinted)")


STAGE_SCHEMAS = {"eval": EvalConfig, "trajectories": TrajectoriesConfig}


def check_stage_section(config: DictConfig, stage: str) -> AgentStageConfig:
    """Type- and range-check the `eval` or `trajectories` section; errors name the key."""
    section: AgentStageConfig = typed_section(STAGE_SCHEMAS[stage], config[stage], stage, AgentConfigError)
    positive = ["concurrency", "question_timeout_s"]
    fractions = ["top_p"]
    if isinstance(section, TrajectoriesConfig):
        positive.append("attempts")
    if isinstance(section, EvalConfig):
        positive += ["max_model_len", "ready_timeout_s"]
        fractions.append("gpu_memory_utilization")
    for key in positive:
        check_positive(stage, key, getattr(section, key), error=AgentConfigError)
    for key in fractions:
        check_range(stage, key, getattr(section, key), 0, 1, low_open=True, error=AgentConfigError)
    check_range(stage, "max_failed_questions", section.max_failed_questions, 0, error=AgentConfigError)
    return section


def check_benchmark(config: DictConfig, stage: str) -> BenchmarkConfig:
    """The chosen benchmark, typed and checked; its folders made absolute (checked to exist in a real run)."""
    if OmegaConf.select(config, "benchmark") is None:
        raise AgentConfigError(f"{stage}: choose a question set with benchmark=NAME, one of "
                               f"{', '.join(benchmark_names())} (configs/benchmark/)")
    spec: BenchmarkConfig = typed_section(BenchmarkConfig, config.benchmark, "benchmark", AgentConfigError)
    check_choice("benchmark", "format", spec.format, FORMAT_NAMES, AgentConfigError)
    if spec.length is not None:
        check_choice("benchmark", "length", spec.length, LENGTH_CLASSES, AgentConfigError)
        if spec.format not in LENGTH_FORMATS:
            raise AgentConfigError(f"benchmark.length={spec.length}: only {', '.join(LENGTH_FORMATS)} questions "
                                   f"have a length class; {spec.format} needs benchmark.length=null")
    if spec.limit is not None:
        check_positive("benchmark", "limit", spec.limit, error=AgentConfigError)
    if spec.build is not None:
        check_choice("benchmark", "build", spec.build, BENCHMARK_BUILDERS, AgentConfigError)
    tool = tool_settings(config).for_source(spec.data_source)
    # A benchmark built before the run, and any dry run, may name paths that do not exist yet.
    planned = spec.build is not None or bool(config.dry_run)
    for key, fallback in (("caption_dir", tool.caption_dir), ("video_dir", tool.video_dir)):
        path = getattr(spec, key) or fallback
        setattr(spec, key, str(Path(path).expanduser().absolute()) if planned else
                existing_path(path, f"benchmark.{key}", folder=True))
    spec.annotations = str(Path(spec.annotations).expanduser().absolute()) if planned else \
        existing_path(spec.annotations, "benchmark.annotations")
    return spec
