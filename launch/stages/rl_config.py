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
from launch.schema import check_choice, check_positive, described, typed_section
from launch.trainer_keys import effective
from rewards.registry import COMPONENTS
from rewards.spec import preset_names

ALGORITHMS = ("grpo", "gae", "rloo", "reinforce_plus_plus", "remax")
KL_LOSS_TYPES = ("kl", "abs", "mse", "low_var_kl", "full")
REPORT_TO = ("auto", "wandb", "offline", "console")
DATA_BUILDERS = ("demo",)


class RLConfigError(ConfigError):
    """The `rl` section (or what it implies for the trainer) is invalid; the message names the key."""


# The schemas hold types and meanings only: every value, default included, is in configs/rl/default.yaml (and the
# recipes), so a key the YAML lacks is an error naming it.
@dataclass
class RLDataConfig:
    train_files: Optional[str] = described(
        "the training parquet, as `python -m launch rl_data` writes it; null: the `train` of the newest finished "
        "rl_data run")
    val_files: Optional[str] = described("the validation parquet; null: the `val` of the newest finished rl_data run")
    build: Optional[str] = described(
        "demo: build both parquet files from the demo world first (files null: when no rl_data run finished, "
        "at the cache's demo files); null: they must exist", DATA_BUILDERS)


@dataclass
class ToolServerConfig:
    host: str = described("the address the tool server listens on (loopback unless the trainer runs on another host)")
    thread_pool_size: int = described("threads of the tool server")
    ready_timeout_s: float = described("seconds to wait for the tool server's /health")


@dataclass
class VLMServeConfig:
    serve: bool = described(
        "start `vllm serve` for the VLM video_qa asks, as a service of the Plan; false: ask tool.default.vlm")
    model: str = described("the VLM served, under the model name the tool asks for")
    gpus: list[int] = described("GPU indices of this node the VLM is served on (tensor parallel over them)")
    max_model_len: int = described("the VLM's context length in tokens")
    gpu_memory_utilization: float = described("the share of each of its GPUs' memory vLLM may take, in (0, 1]")
    extra_args: list[str] = described("further `vllm serve` arguments")
    ready_timeout_s: float = described("seconds to wait for the VLM server's /health")


@dataclass
class RLConfig:
    model: Optional[str] = described(
        "where RL starts: a model folder, a finished SFT run directory or a hub id; null: the newest finished SFT "
        "run of the recipe")
    data: RLDataConfig = described("the questions: verl's parquet files")
    algorithm: str = described("the advantage estimator", ALGORITHMS)
    rollouts_per_prompt: int = described("trajectories per question (one GRPO group)")
    train_batch_size: int = described("questions per training step")
    ppo_mini_batch_size: int = described("questions per actor update")
    ppo_micro_batch_size_per_gpu: int = described("samples per GPU per actor forward pass")
    log_prob_micro_batch_size_per_gpu: int = described("samples per GPU per log-probability forward pass")
    use_dynamic_bsz: bool = described("pack micro batches by token count instead of by sample count")
    learning_rate: float = described("the actor's learning rate")
    lr_warmup_steps: int = described("steps that warm the learning rate up")
    kl_loss_coef: float = described("weight of the KL-to-reference loss term (KL is not in the reward)")
    kl_loss_type: str = described("how the KL to the reference model is estimated", KL_LOSS_TYPES)
    entropy_coeff: float = described("weight of the entropy bonus")
    max_prompt_length: int = described("tokens of the first prompt")
    max_response_length: int = described("tokens of the whole multi-turn response")
    max_action_length: int = described("tokens of one model turn")
    max_observation_length: int = described("tokens of one tool observation")
    temperature: float = described("the rollout's sampling temperature, in (0, 2]")
    top_p: float = described("the rollout's nucleus sampling, in (0, 1]")
    total_epochs: int = described("passes over the training parquet")
    total_training_steps: Optional[int] = described("stop after this many steps; null: the epochs decide")
    save_freq: int = described("steps between checkpoints; -1: no periodic checkpoint")
    test_freq: int = described("steps between validations; -1: never during training")
    val_before_train: bool = described("validate once before the first step")
    max_checkpoints_to_keep: Optional[int] = described("checkpoints kept; null: all")
    lora_rank: int = described("LoRA rank of the actor; 0: full fine-tuning")
    lora_alpha: int = described("LoRA alpha, when lora_rank > 0")
    lora_target_modules: str = described("the modules LoRA adapts (e.g. all-linear)")
    gradient_checkpointing: bool = described("recompute activations in the backward pass to save memory")
    offload: bool = described("FSDP parameter and optimizer offload for the actor and the reference")
    ulysses_sequence_parallel_size: int = described("GPUs that split one sequence (Ulysses sequence parallel)")
    rollout_tensor_parallel_size: int = described("tensor parallel size of the rollout's vLLM")
    rollout_gpu_memory_utilization: float = described(
        "the share of each training GPU's memory the rollout's vLLM takes, in (0, 1]")
    trainer_gpus: int = described("GPUs of this node that train (the FSDP actor and the vLLM rollout)")
    max_concurrent_trajectories: int = described("trajectories in flight at once in the agent loop")
    tool_call_timeout: int = described(
        "seconds the agent loop waits for one tool call; must exceed tool.default.vlm.timeout_s")
    report_to: str = described(
        "where metrics go: console, wandb (needs the key), offline (W&B files in the run directory) or "
        "auto (wandb when the key is set)", REPORT_TO)
    tool_server: ToolServerConfig = described("verl-tool's tool server with our navigation tool")
    vlm: VLMServeConfig = described("the VLM that video_qa asks")
    trainer_overrides: dict[str, Any] = described(
        "any other verl-tool trainer key, e.g. {trainer.log_val_generations: 10}; validated like the rest")


@dataclass
class RewardConfig:
    """The `reward` section: the preset chosen with reward=NAME (configs/reward/), checked by rewards/spec.py."""

    preset: str = described(
        "the preset the spec starts from (reward=NAME picks it; configs/reward/NAME.yaml)", preset_names)
    components: dict[str, Any] = described(
        "the weighted reward components: NAME: {weight: W, OPTION: VALUE}", COMPONENTS)
    no_clue_components: Optional[list[str]] = described(
        "the components kept on data without clue intervals; null: every one that applies", COMPONENTS)


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
