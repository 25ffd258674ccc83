"""The stages `python -m launch STAGE` knows: each turns a composed config into a Plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from launch.compose import group_options
from launch.plan import Plan
from launch.slurm import SlurmSettings
from launch.stages import agent, audit, captions, datasets, rl, rollouts, sft
from launch.stages.agent_config import BenchmarkConfig, EvalConfig, TrajectoriesConfig, benchmark_names
from launch.stages.audit import AuditConfig
from launch.stages.datasets import AgentConfig, RLDataStageConfig, SFTDataStageConfig, ToolConfig
from launch.stages.rl_config import RewardConfig, RLConfig
from launch.stages.rollouts import RolloutsConfig
from launch.stages.serving import VLLMEngine
from launch.stages.sft_config import ChatConfig, ModelConfig, SFTConfig, WandbConfig
from rewards.spec import preset_names
from tools.builders.caption_settings import CaptionsConfig

# build_plan(config, run_dir, run_name, python) -> Plan
PlanBuilder = Callable[[DictConfig, Path, str, str], Plan]


@dataclass(frozen=True)
class Section:
    """A top-level config section: its schema, and the options of the config group that picks it (if one does)."""

    schema: type
    options: Callable[[], list[str]] | None = None


# Every section a stage reads, by name. launcher=local holds three of the Slurm launcher's keys (launch/cli.py).
SECTIONS: dict[str, Section] = {
    "sft": Section(SFTConfig), "model": Section(ModelConfig), "chat": Section(ChatConfig),
    "wandb": Section(WandbConfig), "agent": Section(AgentConfig), "tool": Section(ToolConfig),
    "vllm": Section(VLLMEngine), "rl": Section(RLConfig), "rollouts": Section(RolloutsConfig),
    "captions": Section(CaptionsConfig), "audit": Section(AuditConfig), "sft_data": Section(SFTDataStageConfig),
    "rl_data": Section(RLDataStageConfig), "eval": Section(EvalConfig), "trajectories": Section(TrajectoriesConfig),
    "reward": Section(RewardConfig, preset_names), "benchmark": Section(BenchmarkConfig, benchmark_names),
    "launcher": Section(SlurmSettings, partial(group_options, "launcher")),
}


@dataclass(frozen=True)
class Stage:
    """A stage: its name, what it does, the function that builds its Plan, and the sections that function reads."""

    name: str
    summary: str
    build_plan: PlanBuilder
    # The config sections build_plan reads (keys of SECTIONS), its own first; `STAGE --help` lists their keys.
    sections: tuple[str, ...] = ()
    # The commands a finished run suggests next ({recipe}, {run_dir} and {output_NAME} filled in), best first.
    next_steps: tuple[str, ...] = ()
    # Whether `recipe=NAME` is required (data-building stages may run without one).
    needs_recipe: bool = True
    # The folder under runs/<stage>/ that groups this stage's runs: the recipe, or a dataset name.
    run_group: Callable[[DictConfig, str | None], str] = lambda config, recipe: str(recipe)


STAGES: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Add a stage; a second stage under the same name is an error."""
    if stage.name in STAGES:
        raise ValueError(f"stage {stage.name!r} is already registered")
    unknown = [name for name in stage.sections if name not in SECTIONS]
    if unknown:
        raise ValueError(f"stage {stage.name!r} reads unknown sections {unknown}; known: {', '.join(SECTIONS)}")
    STAGES[stage.name] = stage
    return stage


# The launcher section is read by every stage (launch/cli.py checks it before the Plan is built).
register(Stage("sft", "cold-start SFT on tool trajectories with LLaMA-Factory", sft.build_plan,
               sections=("sft", "model", "chat", "agent", "launcher", "wandb"),
               next_steps=("python -m launch rollouts recipe={recipe}", "python -m launch eval recipe={recipe}")))
register(Stage("rl", "GRPO with verl-tool's trainer, our tool server and reward, from the newest SFT model",
               rl.build_plan, sections=("rl", "chat", "agent", "tool", "reward", "vllm", "launcher", "wandb"),
               next_steps=("python -m launch eval recipe={recipe}", "python -m launch view {run_dir}")))
register(Stage("rollouts", "the RL preflight: the RL config's rollouts through verl-tool's agent loop, our tool "
               "server and reward, GRPO advantages and a report", rollouts.build_rollouts_plan,
               sections=("rollouts", "rl", "chat", "agent", "tool", "reward", "vllm", "launcher", "wandb"),
               next_steps=("open {output_view} in a browser", "python -m launch rl recipe={recipe}")))
register(Stage("captions", "build caption trees for a folder of videos through a VLM", captions.build_plan,
               sections=("captions", "launcher"), needs_recipe=False,
               next_steps=("python -m launch rl_data recipe=RECIPE rl_data.caption_dir={output_captions} "
                           "rl_data.annotations=ANNOTATIONS",),
               run_group=lambda config, recipe: str(config.captions.dataset)))
register(Stage("audit", "score scripted policies with reward presets: a table and a plot of what each reward teaches",
               audit.build_plan, sections=("audit", "reward", "launcher"), needs_recipe=False,
               run_group=lambda config, recipe: str(config.reward.preset)))
register(Stage("sft_data", "build the SFT file (LLaMA-Factory sharegpt) from our trajectories or the released file",
               datasets.build_sft_data_plan, sections=("sft_data", "chat", "agent", "tool", "launcher"),
               next_steps=("python -m launch sft recipe={recipe}",),
               run_group=lambda config, recipe: str(config.sft_data.dataset)))
register(Stage("rl_data", "build the RL parquet (train and validation, split by video) from benchmark annotations",
               datasets.build_rl_data_plan, sections=("rl_data", "agent", "tool", "launcher"),
               next_steps=("python -m launch rollouts recipe={recipe}", "python -m launch rl recipe={recipe}"),
               run_group=lambda config, recipe: str(config.rl_data.dataset)))
register(Stage("eval", f"the agent loop on a benchmark (benchmark={'|'.join(benchmark_names())}): accuracy, "
               "turns, calls, location F1, time", agent.build_eval_plan,
               sections=("eval", "benchmark", "chat", "agent", "tool", "vllm", "launcher"),
               next_steps=("open {output_view} in a browser",
                           "python -m launch compare {output_results} OTHER_RUN/eval/results.json")))
register(Stage("trajectories", "a teacher plays a question set (benchmark=NAME, as eval): the trajectory JSONL "
               "sft_data reads",
               agent.build_trajectories_plan, sections=("trajectories", "benchmark", "agent", "tool", "launcher"),
               next_steps=("python -m launch sft_data recipe={recipe}", "open {output_view} in a browser"),
               run_group=lambda config, recipe: str(OmegaConf.select(config, "benchmark.name", default="none"))))
