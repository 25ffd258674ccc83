"""Typed schema of the SFT stage's config, checked before anything is rendered or started."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# OmegaConf's structured configs read typing.Optional, not `X | None`.
from typing import Any, Optional

from omegaconf import DictConfig

from launch.compose import ConfigError
from launch.schema import check_choice, check_positive, described, typed_section
from tools.builders.chat_template import TEMPLATE_NAMES
from tools.environment.secrets import is_secret_key

FINETUNING_TYPES = ("full", "lora")
DEEPSPEED_CONFIGS = ("z2", "z3", "z3_offload")
PRECISIONS = ("bf16", "fp16", "fp32")
REPORT_TO = ("auto", "wandb", "offline", "none")
DATASET_BUILDERS = ("demo",)
# The file the demo builder writes into the folder of sft.dataset.path.
SFT_FILE = "sft.json"
MODEL_BUILDERS = ("tiny_qwen3",)
OBSERVATION_ROLES = ("user", "tool")
# LLaMA-Factory arguments our recipes must never set through `extra_args`, and why.
FORBIDDEN_EXTRA_ARGS = {
    "mask_history": "it trains only the last turn; every model turn must be trained",
    "overwrite_output_dir": "a run never overwrites output; use resume=true name=X",
    "output_dir": "the output directory is always inside the run directory",
    "stage": "this stage is always LLaMA-Factory's `sft`",
    "dataset": "set sft.dataset.path; the stage registers it",
    "dataset_dir": "set sft.dataset.path; the stage registers it",
    "template": "set chat.template; SFT, datasets and RL all read it",
}


class SFTConfigError(ConfigError):
    """The `sft` (or `model`, `chat`) section of the composed config is invalid."""


# The schemas hold types and meanings only: every value, default included, is in configs/sft/default.yaml (and the
# recipes), so a key the YAML lacks is an error naming it.
@dataclass
class LoraConfig:
    rank: int = described("LoRA rank (with sft.finetuning_type=lora)")
    alpha: int = described("LoRA alpha, the adapter's scale")
    dropout: float = described("dropout on the LoRA adapter's input")
    target: str = described("the modules LoRA adapts: all, or comma-separated module names")


@dataclass
class DatasetConfig:
    path: Optional[str] = described(
        "the LLaMA-Factory sharegpt JSON of tool trajectories (one sample per trajectory); null: the `dataset` "
        "of the newest finished sft_data run")
    build: Optional[str] = described(
        "demo: generate the small demo trajectories at `path` first, if they are not there (path null: when no "
        "sft_data run finished, at the cache's demo file); null: the file must exist", DATASET_BUILDERS)


@dataclass
class SFTConfig:
    finetuning_type: str = described("train every parameter (full) or a LoRA adapter (lora)", FINETUNING_TYPES)
    lora: LoraConfig = described("the LoRA adapter, when finetuning_type is lora")
    deepspeed: Optional[str] = described(
        "the DeepSpeed config, configs/deepspeed/NAME.json; null: no DeepSpeed", DEEPSPEED_CONFIGS)
    dataset: DatasetConfig = described("the SFT file LLaMA-Factory trains on")
    cutoff_len: int = described("tokens per sample; longer samples are cut")
    learning_rate: float = described("peak learning rate")
    lr_scheduler_type: str = described("learning-rate schedule, a transformers scheduler name (e.g. cosine)")
    warmup_ratio: float = described("fraction of the steps that warm the learning rate up, in [0, 1)")
    num_train_epochs: float = described("passes over the dataset")
    max_steps: int = described("optimizer steps; > 0 overrides num_train_epochs, -1: the epochs decide")
    per_device_train_batch_size: int = described("samples per GPU per forward pass")
    gradient_accumulation_steps: int = described("forward passes per optimizer step")
    precision: str = described("training precision", PRECISIONS)
    liger_kernel: bool = described("use Liger's fused kernels")
    gradient_checkpointing: bool = described("recompute activations in the backward pass to save memory")
    packing: bool = described("pack several samples into one sequence of cutoff_len tokens")
    logging_steps: int = described("steps between loss logs")
    save_steps: int = described("steps between checkpoints")
    save_total_limit: Optional[int] = described("checkpoints kept; null: all")
    report_to: str = described(
        "where metrics go: auto (W&B online with a key, offline without), wandb, offline or none", REPORT_TO)
    preprocessing_num_workers: int = described("processes that tokenize the dataset")
    dataloader_num_workers: int = described("data-loader worker processes per GPU")
    extra_args: dict[str, Any] = described(
        "any other LLaMA-Factory argument, passed through and checked by LLaMA-Factory's own parser")


@dataclass
class WandbConfig:
    """The `wandb` section (configs/config.yaml), read by the stages that report to W&B."""

    project: str = described("the W&B project")
    entity: Optional[str] = described("the W&B entity (team or user); null: the key's default")
    group: Optional[str] = described("the W&B run group; a sweep sets it to the sweep's name for every point")
    api_key_env: str = described("the environment variable W&B reads its API key from (the key is never written)")


@dataclass
class ModelConfig:
    path: str = described("the base model: a folder or a hub id")
    build: Optional[str] = described(
        "tiny_qwen3: build the tiny model at `path` first, if it is not there; null: it must exist", MODEL_BUILDERS)


@dataclass
class ChatConfig:
    template: str = described("LLaMA-Factory's chat template, one a trained checkpoint can carry", TEMPLATE_NAMES)
    observation_role: str = described("the role each tool observation is sent in", OBSERVATION_ROLES)


def check_chat_config(config: DictConfig) -> ChatConfig:
    """Type-check the recipe's `chat` section, which SFT, the dataset builders and RL all read."""
    chat: ChatConfig = typed_section(ChatConfig, config.chat, "chat", error=SFTConfigError)
    check_choice("chat", "observation_role", chat.observation_role, OBSERVATION_ROLES, error=SFTConfigError)
    # The templates a trained checkpoint can carry (tools/builders/chat_template.py), checked before any training.
    check_choice("chat", "template", chat.template, TEMPLATE_NAMES, error=SFTConfigError)
    return chat


def check_sft_config(config: DictConfig) -> tuple[SFTConfig, ModelConfig, ChatConfig]:
    """Type- and range-check the sections the SFT stage reads; errors name the key."""
    sft: SFTConfig = typed_section(SFTConfig, config.sft, "sft", error=SFTConfigError)
    model: ModelConfig = typed_section(ModelConfig, config.model, "model", error=SFTConfigError)
    chat = check_chat_config(config)
    check_choice("sft", "finetuning_type", sft.finetuning_type, FINETUNING_TYPES, error=SFTConfigError)
    if sft.deepspeed is not None:
        check_choice("sft", "deepspeed", sft.deepspeed, DEEPSPEED_CONFIGS, error=SFTConfigError)
    check_choice("sft", "precision", sft.precision, PRECISIONS, error=SFTConfigError)
    check_choice("sft", "report_to", sft.report_to, REPORT_TO, error=SFTConfigError)
    if sft.dataset.build is not None:
        check_choice("sft.dataset", "build", sft.dataset.build, DATASET_BUILDERS, error=SFTConfigError)
        if sft.dataset.path is not None and Path(sft.dataset.path).name != SFT_FILE:
            raise SFTConfigError(f"sft.dataset.path={sft.dataset.path}: the demo builder writes {SFT_FILE} into a "
                                 f"folder, so the path must end in /{SFT_FILE}")
    if model.build is not None:
        check_choice("model", "build", model.build, MODEL_BUILDERS, error=SFTConfigError)
    for key in ("cutoff_len", "learning_rate", "num_train_epochs", "per_device_train_batch_size",
                "gradient_accumulation_steps", "logging_steps", "save_steps"):
        check_positive("sft", key, getattr(sft, key), error=SFTConfigError)
    check_positive("sft", "max_steps", sft.max_steps, allow_minus_one=True, error=SFTConfigError)
    if not 0 <= sft.warmup_ratio < 1:
        raise SFTConfigError(f"sft.warmup_ratio={sft.warmup_ratio!r} must be in [0, 1)")
    for key in sft.extra_args:
        if is_secret_key(key):
            raise SFTConfigError(f"sft.extra_args.{key} looks like a secret; it would be written into the run "
                                 "directory. Pass secrets through the environment (e.g. HF_TOKEN) instead")
    for key, why in FORBIDDEN_EXTRA_ARGS.items():
        if key in sft.extra_args:
            raise SFTConfigError(f"sft.extra_args.{key} is not allowed: {why}")
    return sft, model, chat
