"""Typed schema of the RL stage's config and the checks the trainer would only make after minutes.

`check_rl_config` types the `rl` section (unknown keys and wrong types name the key); `check_layout`
places the trainer and the VLM on the node's GPUs; `check_trainer_values` runs the cross-field rules
of verl and verl-tool on the final trainer overrides (batch divisibility, response lengths, timeouts).
"""

from __future__ import annotations

from dataclasses import dataclass

# OmegaConf's structured configs read typing.Optional, not `X | None`.
from typing import Any, Optional

from omegaconf import DictConfig

from launch.compose import ConfigError
from launch.schema import check_choice, check_positive, typed_section
from launch.trainer_keys import effective

ALGORITHMS = ("grpo", "gae", "rloo", "reinforce_plus_plus", "remax")
KL_LOSS_TYPES = ("kl", "abs", "mse", "low_var_kl", "full")
REPORT_TO = ("auto", "wandb", "offline", "console")
DATA_BUILDERS = ("demo",)


class RLConfigError(ConfigError):
    """The `rl` section (or what it implies for the trainer) is invalid; the message names the key."""


# The schemas hold types only: every value, default included, is in configs/rl/default.yaml (and the
# recipes), so a key the YAML lacks is an error naming it.
@dataclass
class RLDataConfig:
    train_files: str
    val_files: str
    build: Optional[str]


@dataclass
class ToolServerConfig:
    host: str
    thread_pool_size: int
    ready_timeout_s: float


@dataclass
class VLMServeConfig:
    serve: bool
    model: str
    gpus: list[int]
    max_model_len: int
    gpu_memory_utilization: float
    extra_args: list[str]
    ready_timeout_s: float


@dataclass
class RLConfig:
    model: Optional[str]
    data: RLDataConfig
    algorithm: str
    rollouts_per_prompt: int
    train_batch_size: int
    ppo_mini_batch_size: int
    ppo_micro_batch_size_per_gpu: int
    log_prob_micro_batch_size_per_gpu: int
    use_dynamic_bsz: bool
    learning_rate: float
    lr_warmup_steps: int
    kl_loss_coef: float
    kl_loss_type: str
    entropy_coeff: float
    max_prompt_length: int
    max_response_length: int
    max_action_length: int
    max_observation_length: int
    temperature: float
    top_p: float
    total_epochs: int
    total_training_steps: Optional[int]
    save_freq: int
    test_freq: int
    val_before_train: bool
    max_checkpoints_to_keep: Optional[int]
    lora_rank: int
    lora_alpha: int
    lora_target_modules: str
    gradient_checkpointing: bool
    offload: bool
    ulysses_sequence_parallel_size: int
    rollout_tensor_parallel_size: int
    rollout_gpu_memory_utilization: float
    trainer_gpus: int
    max_concurrent_trajectories: int
    tool_call_timeout: int
    report_to: str
    tool_server: ToolServerConfig
    vlm: VLMServeConfig
    trainer_overrides: dict[str, Any]


def check_rl_config(config: DictConfig) -> RLConfig:
    """Type- and range-check the `rl` section; errors name the key."""
    rl: RLConfig = typed_section(RLConfig, config.rl, "rl", RLConfigError)
    check_choice("rl", "algorithm", rl.algorithm, ALGORITHMS, RLConfigError)
    check_choice("rl", "kl_loss_type", rl.kl_loss_type, KL_LOSS_TYPES, RLConfigError)
    check_choice("rl", "report_to", rl.report_to, REPORT_TO, RLConfigError)
    if rl.data.build is not None:
        check_choice("rl.data", "build", rl.data.build, DATA_BUILDERS, RLConfigError)
    for key in ("rollouts_per_prompt", "train_batch_size", "ppo_mini_batch_size", "ppo_micro_batch_size_per_gpu",
                "log_prob_micro_batch_size_per_gpu", "learning_rate", "max_prompt_length", "max_response_length",
                "max_action_length", "max_observation_length", "total_epochs", "trainer_gpus",
                "rollout_tensor_parallel_size", "ulysses_sequence_parallel_size", "max_concurrent_trajectories",
                "tool_call_timeout"):
        check_positive("rl", key, getattr(rl, key), error=RLConfigError)
    for key in ("save_freq", "test_freq"):
        check_positive("rl", key, getattr(rl, key), allow_minus_one=True, error=RLConfigError)
    if rl.algorithm == "grpo" and rl.rollouts_per_prompt < 2:
        raise RLConfigError(f"rl.rollouts_per_prompt={rl.rollouts_per_prompt}: GRPO normalises within a group, "
                            "so it needs at least 2 rollouts per prompt")
    for key in ("rollout_gpu_memory_utilization", "temperature", "top_p"):
        value = getattr(rl, key)
        upper = 2.0 if key == "temperature" else 1.0
        if not 0 < value <= upper:
            raise RLConfigError(f"rl.{key}={value!r} must be in (0, {upper}]")
    if not 0 < rl.vlm.gpu_memory_utilization <= 1:
        raise RLConfigError(f"rl.vlm.gpu_memory_utilization={rl.vlm.gpu_memory_utilization!r} must be in (0, 1]")
    if rl.lora_rank < 0:
        raise RLConfigError(f"rl.lora_rank={rl.lora_rank!r} must be 0 (full fine-tuning) or positive")
    return rl


def check_layout(rl: RLConfig, gpus_per_node: int) -> tuple[list[int], list[int]]:
    """The GPU indices of the trainer and of a Plan-served VLM on one node; RLConfigError if they do not fit."""
    vlm = list(rl.vlm.gpus) if rl.vlm.serve else []
    if rl.vlm.serve:
        if not vlm:
            raise RLConfigError("rl.vlm.serve=true needs rl.vlm.gpus (e.g. [6, 7]); or set rl.vlm.serve=false and "
                                "point tool.default.vlm.base_url at a running endpoint")
        if len(set(vlm)) != len(vlm) or any(g < 0 or g >= gpus_per_node for g in vlm):
            raise RLConfigError(f"rl.vlm.gpus={vlm}: expected distinct GPU indices in 0..{gpus_per_node - 1} "
                                f"(launcher.gpus_per_node={gpus_per_node})")
    if rl.trainer_gpus + len(vlm) > gpus_per_node:
        raise RLConfigError(f"rl.trainer_gpus={rl.trainer_gpus} plus the VLM's {len(vlm)} (rl.vlm.gpus={vlm}) need "
                            f"{rl.trainer_gpus + len(vlm)} GPUs, but the node has launcher.gpus_per_node="
                            f"{gpus_per_node}")
    trainer = [g for g in range(gpus_per_node) if g not in vlm][: rl.trainer_gpus]
    return trainer, vlm


def check_trainer_values(values: dict[str, Any], vlm_timeout_s: float) -> None:
    """Cross-field rules of verl and verl-tool on the final trainer values; RLConfigError naming the keys."""
    batch, n = effective(values, "data.train_batch_size"), effective(values, "actor_rollout_ref.rollout.n")
    mini = effective(values, "actor_rollout_ref.actor.ppo_mini_batch_size")
    gpus = effective(values, "trainer.n_gpus_per_node") * effective(values, "trainer.nnodes")
    sp = effective(values, "actor_rollout_ref.actor.ulysses_sequence_parallel_size")
    if mini > batch or batch % mini:
        raise RLConfigError(f"data.train_batch_size={batch} must be a multiple of actor_rollout_ref.actor."
                            f"ppo_mini_batch_size={mini} (rl.train_batch_size, rl.ppo_mini_batch_size)")
    if (batch * n) % gpus:
        raise RLConfigError(f"data.train_batch_size * rollout.n = {batch} * {n} = {batch * n} trajectories must "
                            f"split evenly over the {gpus} training GPUs (trainer.n_gpus_per_node * trainer.nnodes)")
    if gpus % sp or (mini * n) % (gpus // sp):
        raise RLConfigError(f"ppo_mini_batch_size * rollout.n = {mini * n} must split evenly over the "
                            f"{gpus // max(sp, 1)} data-parallel ranks ({gpus} GPUs / ulysses_sequence_parallel_size "
                            f"{sp}); verl would silently round it down")
    response = effective(values, "actor_rollout_ref.rollout.response_length")
    for agent_key in ("max_response_length", "train_max_response_length", "val_max_response_length"):
        agent_value = effective(values, f"actor_rollout_ref.agent.{agent_key}")
        if agent_value is not None and agent_value > response:
            raise RLConfigError(f"actor_rollout_ref.rollout.response_length={response} must be >= "
                                f"actor_rollout_ref.agent.{agent_key}={agent_value} (verl-tool asserts it at start)")
    tp = effective(values, "actor_rollout_ref.rollout.tensor_model_parallel_size")
    if effective(values, "trainer.n_gpus_per_node") % tp:
        raise RLConfigError(f"actor_rollout_ref.rollout.tensor_model_parallel_size={tp} must divide "
                            f"trainer.n_gpus_per_node={effective(values, 'trainer.n_gpus_per_node')}")
    timeout = effective(values, "actor_rollout_ref.agent.tool_call_timeout")
    if timeout <= vlm_timeout_s:
        raise RLConfigError(f"actor_rollout_ref.agent.tool_call_timeout={timeout} (rl.tool_call_timeout) must exceed "
                            f"the VLM's timeout tool.default.vlm.timeout_s={vlm_timeout_s}, or a slow video_qa is "
                            "cut off by the agent loop instead of answered with the tool's own explanation")
