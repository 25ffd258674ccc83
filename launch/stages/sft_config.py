"""Typed schema of the SFT stage's config, checked before anything is rendered or started."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# OmegaConf's structured configs read typing.Optional, not `X | None`.
from typing import Any, Optional

from omegaconf import DictConfig

from launch.compose import ConfigError
from launch.rundir import SECRET_KEY
from launch.schema import check_choice, check_positive, typed_section

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


@dataclass
class LoraConfig:
    rank: int = 64
    alpha: int = 128
    dropout: float = 0.05
    target: str = "all"


@dataclass
class DatasetConfig:
    path: str = "???"
    build: Optional[str] = None


@dataclass
class SFTConfig:
    finetuning_type: str = "full"
    lora: LoraConfig = field(default_factory=LoraConfig)
    deepspeed: Optional[str] = None
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    cutoff_len: int = 24576
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.1
    num_train_epochs: float = 3.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 4
    precision: str = "bf16"
    liger_kernel: bool = True
    gradient_checkpointing: bool = True
    packing: bool = False
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: Optional[int] = None
    report_to: str = "auto"
    preprocessing_num_workers: int = 16
    dataloader_num_workers: int = 4
    extra_args: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelConfig:
    path: str = "???"
    build: Optional[str] = None


@dataclass
class ChatConfig:
    template: str = "qwen3_nothink"
    observation_role: str = "user"


def check_chat_config(config: DictConfig) -> ChatConfig:
    """Type-check the recipe's `chat` section, which SFT, the dataset builders and RL all read."""
    chat: ChatConfig = typed_section(ChatConfig, config.chat, "chat", error=SFTConfigError)
    check_choice("chat", "observation_role", chat.observation_role, OBSERVATION_ROLES, error=SFTConfigError)
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
        if Path(sft.dataset.path).name != SFT_FILE:
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
        if SECRET_KEY.search(str(key)):
            raise SFTConfigError(f"sft.extra_args.{key} looks like a secret; it would be written into the run "
                                 "directory. Pass secrets through the environment (e.g. HF_TOKEN) instead")
    for key, why in FORBIDDEN_EXTRA_ARGS.items():
        if key in sft.extra_args:
            raise SFTConfigError(f"sft.extra_args.{key} is not allowed: {why}")
    return sft, model, chat
