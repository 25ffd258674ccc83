"""The rollouts stage (the RL preflight): the RL Plan's agent settings, served and sampled for real.

It renders the same trainer overrides, tool settings and stop-string file as the `rl` stage (from
the same `rl`, `agent`, `tool` and `reward` config, the same model hand-off), with the group size and
sampling of `rollouts.*`. Services: the VLM (when `rl.vlm.serve`), verl-tool's tool server with our
tool, and the policy under vLLM (`vllm.backend`: GPU or CPU). Main: `python -m tools.rollouts`, which
plays the questions through verl-tool's agent loop, scores them and writes the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from launch.plan import FileSpec, Plan, Resources, Step
from launch.preflight_checks import Needs, check_needs
from launch.schema import check_choice, check_positive, check_range, described, typed_section
from launch.stages.rl import (
    OVERRIDES_FILE,
    agent_files,
    check_user_role,
    checked_overrides,
    data_inputs,
    data_steps,
    resolve_data,
    start_model,
    tool_service,
    trainer_values,
    vlm_service,
)
from launch.stages.rl_config import RLConfigError, check_rl_config
from launch.stages.serving import local_url, served_gpus, vllm_engine, vllm_service
from launch.view import VIEW_FILE, view_step
from tools.rollouts import RECORDS_FILE

SPLITS = ("train", "val")
SETTINGS_FILE = "rollouts/settings.json"
OUTPUT_DIR = "rollouts"
POLICY_NAME = "policy"


class RolloutsConfigError(RLConfigError):
    """A `rollouts.*` setting is wrong; the message names the key."""


@dataclass
class RolloutsConfig:
    """The `rollouts` section (configs/rollouts/default.yaml): questions, rollouts, sampling, the policy server."""

    prompts: int = described("questions played: the first the RL trainer's sampler draws")
    n: int = described("rollouts per question (one GRPO group)")
    split: str = described("the parquet the questions come from", SPLITS)
    temperature: float = described("the policy's sampling temperature, in (0, 2]")
    top_p: float = described("the policy's nucleus sampling, in (0, 1]")
    gpus: list[int] = described("GPU indices of this node the model is served on (vllm.backend=gpu)")
    max_model_len: int | None = described(
        "the policy's context length; null: rl.max_prompt_length + rl.max_response_length")
    gpu_memory_utilization: float = described("the share of each of its GPUs' memory vLLM may take, in (0, 1]")
    extra_args: list[str] = described("further vLLM server arguments")
    ready_timeout_s: float = described("seconds to wait for the model server's /health")
    request_timeout_s: float = described("seconds one policy turn may take")
    extra_body: dict[str, Any] = described("extra fields of every policy request (vLLM's completions API)")


def check_rollouts_config(config: DictConfig) -> RolloutsConfig:
    """Type- and range-check the `rollouts` section; errors name the key."""
    section: RolloutsConfig = typed_section(RolloutsConfig, config.rollouts, "rollouts", RolloutsConfigError)
    check_choice("rollouts", "split", section.split, SPLITS, RolloutsConfigError)
    for key in ("prompts", "n", "ready_timeout_s", "request_timeout_s"):
        check_positive("rollouts", key, getattr(section, key), error=RolloutsConfigError)
    if section.n < 2:
        raise RolloutsConfigError(f"rollouts.n={section.n}: a GRPO group needs at least 2 rollouts")
    if section.max_model_len is not None:
        check_positive("rollouts", "max_model_len", section.max_model_len, error=RolloutsConfigError)
    check_range("rollouts", "temperature", section.temperature, 0, 2, low_open=True, error=RolloutsConfigError)
    for key in ("top_p", "gpu_memory_utilization"):
        check_range("rollouts", key, getattr(section, key), 0, 1, low_open=True, error=RolloutsConfigError)
    return section


def build_rollouts_plan(config: DictConfig, run_dir: Path, run_name: str, python: str) -> Plan:
    """The preflight Plan: the RL stage's agent files, its tool server (and VLM), the policy, then the sampler."""
    rl = check_rl_config(config)
    check_user_role(config, "rollouts")
    section = check_rollouts_config(config)
    if int(config.launcher.nodes) != 1:
        raise RolloutsConfigError(f"launcher.nodes={config.launcher.nodes}: rollouts runs on one node; "
                                  "use launcher.nodes=1")
    engine = vllm_engine(config, python)
    available = int(config.launcher.gpus_per_node)
    policy_gpus = served_gpus(section.gpus, "rollouts.gpus", available, engine)
    recipe = run_name.split("/", 1)[0]
    model = start_model(config, rl, recipe, "rollouts")
    rl, data_found = resolve_data(config, rl, recipe, "rollouts")
    values = trainer_values(config, rl, model, run_dir, run_name, ["console"])
    # The group size and sampling of the preflight; every other agent setting is the RL Plan's.
    values.update({"actor_rollout_ref.rollout.n": section.n, "actor_rollout_ref.rollout.temperature":
                   section.temperature, "actor_rollout_ref.rollout.top_p": section.top_p})
    max_model_len = section.max_model_len or rl.max_prompt_length + rl.max_response_length
    settings = {"overrides_file": OVERRIDES_FILE, "split": section.split, "prompts": section.prompts,
                "extra_body": section.extra_body, "reward_preset": str(config.reward.preset),
                "policy": {"base_url": local_url(POLICY_NAME), "model": POLICY_NAME, "path": model,
                           "max_model_len": max_model_len, "timeout_s": section.request_timeout_s,
                           "backend": engine.backend}}
    files = [*agent_files(config, rl, checked_overrides(config, values)),
             FileSpec(SETTINGS_FILE, json.dumps(settings, indent=2) + "\n", resolve=True)]
    services = [vlm_service(rl, list(rl.vlm.gpus), engine)] if rl.vlm.serve else []
    services.append(tool_service(rl, run_dir, python))
    services.append(vllm_service(POLICY_NAME, model, POLICY_NAME, policy_gpus,
                                 max_model_len, section.gpu_memory_utilization, section.extra_args,
                                 section.ready_timeout_s, engine))
    main = Step("rollouts", [python, "-m", "tools.rollouts", "--settings", SETTINGS_FILE, "--output", OUTPUT_DIR],
                env={"PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "", "HYDRA_FULL_ERROR": "1"})
    out = run_dir / OUTPUT_DIR
    vlm_gpus = list(rl.vlm.gpus) if rl.vlm.serve and engine.uses_gpus else []
    check_needs(config, "rollouts", python, Needs(verl_tool=True, vllm=engine, gpus=[*policy_gpus, *vlm_gpus],
                                                  files=data_inputs(rl, recipe) if data_found else []))
    return Plan(stage="rollouts", run_dir=str(run_dir), main=main, files=files, services=services,
                before=data_steps(config, rl, values, python), after=[view_step(python, OUTPUT_DIR)],
                resources=Resources(nodes=1, gpus_per_node=available),
                outputs={"rollouts": str(out / RECORDS_FILE), "report": str(out / "report.json"),
                         "view": str(out / VIEW_FILE)})
