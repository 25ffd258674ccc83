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
from launch.schema import check_choice, check_positive, check_range, typed_section
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

    name: str
    format: str
    annotations: str
    data_source: str
    caption_dir: str | None
    video_dir: str | None
    length: str | None
    limit: int | None
    build: str | None


@dataclass
class GenerationConfig:
    """How the model is asked each turn: the agent loop's `Generation` less the recipe's turn limit."""

    top_p: float
    send_stop: bool
    vllm_stop: bool
    question_timeout_s: float
    extra_body: dict[str, Any]


GENERATION_KEYS = tuple(field.name for field in dataclasses.fields(GenerationConfig))


@dataclass
class AgentStageConfig(GenerationConfig):
    """What eval and trajectories share: the endpoint, the generation keys and how many questions at once."""

    endpoint: dict[str, Any]
    concurrency: int
    max_failed_questions: int
    system_prompt_file: str | None


@dataclass
class EvalConfig(AgentStageConfig):
    """The `eval` section (configs/eval/default.yaml): the model to serve and the VLM beside it."""

    model: str | None
    serve: bool
    gpus: list[int]
    max_model_len: int
    gpu_memory_utilization: float
    extra_args: list[str]
    ready_timeout_s: float
    vlm: VLMServeConfig


@dataclass
class TrajectoriesConfig(AgentStageConfig):
    """The `trajectories` section (configs/trajectories/default.yaml): the teacher's attempts and hints."""

    attempts: int
    hints: bool


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
