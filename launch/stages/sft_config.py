"""Typed schema of the SFT stage's config, checked before anything is rendered or started."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# OmegaConf's structured configs read typing.Optional, not `X | None`.
from typing import Any, Optional

from omegaconf import DictConfig

from launch.compose import ConfigError
from launch.schema import check_choice, check_positive, typed_section
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


# The schemas hold types only: every value, default included, is in configs/sft/default.yaml (and the
# recipes), so a key the YAML lacks is an error naming it.
@dataclass
class LoraConfig:
    rank: int
    alpha: int
    dropout: float
    target: str


@dataclass
class DatasetConfig:
    path: str
    build: Optional[str]


@dataclass
class SFTConfig:
    finetuning_type: str
    lora: LoraConfig
    deepspeed: Optional[str]
    dataset: DatasetConfig
    cutoff_len: int
    learning_rate: float
    lr_scheduler_type: str
    warmup_ratio: float
    num_train_epochs: float
    max_steps: int
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    precision: str
    liger_kernel: bool
    gradient_checkpointing: bool
    packing: bool
    logging_steps: int
    save_steps: int
    save_total_limit: Optional[int]
    report_to: str
    preprocessing_num_workers: int
    dataloader_num_workers: int
    extra_args: dict[str, Any]


@dataclass
class ModelConfig:
    path: str
    build: Optional[str]


@dataclass
class ChatConfig:
    template: str
    observation_role: str


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
        if is_secret_key(key):
            raise SFTConfigError(f"sft.extra_args.{key} looks like a secret; it would be written into the run "
                                 "directory. Pass secrets through the environment (e.g. HF_TOKEN) instead")
    for key, why in FORBIDDEN_EXTRA_ARGS.items():
        if key in sft.extra_args:
            raise SFTConfigError(f"sft.extra_args.{key} is not allowed: {why}")
    return sft, model, chat
