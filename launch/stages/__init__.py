"""The stages `python -m launch STAGE` knows: each turns a composed config into a Plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from launch.plan import Plan
from launch.stages import agent, audit, captions, datasets, rl, rollouts, sft
from launch.stages.agent_config import benchmark_names

# build_plan(config, run_dir, run_name, python) -> Plan
PlanBuilder = Callable[[DictConfig, Path, str, str], Plan]


@dataclass(frozen=True)
class Stage:
    """A stage: its name, what it does, and the function that builds its Plan."""

    name: str
    summary: str
    build_plan: PlanBuilder
    # Whether `recipe=NAME` is required (data-building stages may run without one).
    needs_recipe: bool = True
    # The folder under runs/<stage>/ that groups this stage's runs: the recipe, or a dataset name.
    run_group: Callable[[DictConfig, str | None], str] = lambda config, recipe: str(recipe)


STAGES: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    """Add a stage; a second stage under the same name is an error."""
    if stage.name in STAGES:
        raise ValueError(f"stage {stage.name!r} is already registered")
    STAGES[stage.name] = stage
    return stage


register(Stage("sft", "cold-start SFT on tool trajectories with LLaMA-Factory", sft.build_plan))
register(Stage("rl", "GRPO with verl-tool's trainer, our tool server and reward, from the newest SFT model",
               rl.build_plan))
register(Stage("rollouts", "the RL preflight: the RL config's rollouts through verl-tool's agent loop, our tool "
               "server and reward, GRPO advantages and a report", rollouts.build_rollouts_plan))
register(Stage("captions", "build caption trees for a folder of videos through a VLM", captions.build_plan,
               needs_recipe=False, run_group=lambda config, recipe: str(config.captions.dataset)))
register(Stage("audit", "score scripted policies with reward presets: a table and a plot of what each reward teaches",
               audit.build_plan, needs_recipe=False,
               run_group=lambda config, recipe: str(config.reward.preset)))
register(Stage("sft_data", "build the SFT file (LLaMA-Factory sharegpt) from our trajectories or the released file",
               datasets.build_sft_data_plan, run_group=lambda config, recipe: str(config.sft_data.dataset)))
register(Stage("rl_data", "build the RL parquet (train and validation, split by video) from benchmark annotations",
               datasets.build_rl_data_plan, run_group=lambda config, recipe: str(config.rl_data.dataset)))
register(Stage("eval", f"the agent loop on a benchmark (benchmark={'|'.join(benchmark_names())}): accuracy, "
               "turns, calls, location F1, time", agent.build_eval_plan))
register(Stage("trajectories", "a teacher plays a question set (benchmark=NAME, as eval): the trajectory JSONL "
               "sft_data reads",
               agent.build_trajectories_plan,
               run_group=lambda config, recipe: str(OmegaConf.select(config, "benchmark.name", default="none"))))
