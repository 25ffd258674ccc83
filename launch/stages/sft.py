"""The SFT stage: the composed config to a Plan that trains with LLaMA-Factory.

The Plan writes LLaMA-Factory's training YAML and a `dataset_info.json` that registers the
trajectory dataset, builds the tiny model and demo data when the recipe asks for them, validates
the arguments with LLaMA-Factory's own parser, trains (through LLaMA-Factory's torchrun launch when
there are several GPUs or DeepSpeed), merges a LoRA adapter, and installs the chat template that
RL and evaluation render with.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from omegaconf import DictConfig

from launch.compose import CONFIG_DIR
from launch.handoff import ChosenInput, InputSource, resolve_input
from launch.plan import FileSpec, Plan, Resources, Step
from launch.preflight_checks import InputFile, Needs, check_needs
from launch.stages.datasets import demo_sft_file, demo_world_dir
from launch.stages.sft_config import SFTConfig, SFTConfigError, check_sft_config
from tools.builders.sft_format import DATASET_NAME, dataset_info

LF_DIR = "llamafactory"
TRAIN_YAML = f"{LF_DIR}/train.yaml"
EXPORT_YAML = f"{LF_DIR}/export.yaml"
CHECKPOINT_DIR = "checkpoints"
MERGED_DIR = "model"


def local_path(path: str) -> str:
    """An absolute path for a local file or directory, as given otherwise (a hub model id)."""
    if path.startswith(("/", "~", ".")) or (os.sep in path and Path(path).expanduser().exists()):
        return str(Path(path).expanduser().absolute())
    return path


def report_settings(mode: str, config: DictConfig, key: str = "sft.report_to",
                    error: type[Exception] = SFTConfigError) -> tuple[str, dict[str, str]]:
    """The reporting mode (`wandb` or `none`) for `mode` (key `key`) and the W&B environment (never the key itself)."""
    has_key = bool(os.environ.get(config.wandb.api_key_env))
    if mode == "auto":
        mode = "wandb" if has_key else "offline"
    if mode == "none":
        return "none", {}
    if mode == "wandb" and not has_key:
        raise error(f"{key}=wandb but ${config.wandb.api_key_env} is not set; set it, or use {key}=offline or none")
    env = {"WANDB_PROJECT": str(config.wandb.project), "WANDB_DIR": "."}
    if config.wandb.entity:
        env["WANDB_ENTITY"] = str(config.wandb.entity)
    if config.wandb.get("group"):
        # The runs of one sweep share a W&B group (the sweep's name), so they plot side by side.
        env["WANDB_RUN_GROUP"] = str(config.wandb.group)
    if mode == "offline":
        env["WANDB_MODE"] = "offline"
    return "wandb", env


def train_args(config: DictConfig, run_dir: Path, run_name: str) -> dict:
    """LLaMA-Factory's training arguments rendered from the recipe."""
    sft, model, chat = check_sft_config(config)
    report_to, _ = report_settings(sft.report_to, config)
    args: dict = {
        "model_name_or_path": local_path(model.path),
        "trust_remote_code": True,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": sft.finetuning_type,
        "dataset": DATASET_NAME,
        "dataset_dir": str(run_dir / LF_DIR),
        "template": chat.template,
        "cutoff_len": sft.cutoff_len,
        "packing": sft.packing,
        "preprocessing_num_workers": sft.preprocessing_num_workers,
        "dataloader_num_workers": sft.dataloader_num_workers,
        "output_dir": str(run_dir / CHECKPOINT_DIR),
        "logging_steps": sft.logging_steps,
        "save_steps": sft.save_steps,
        "plot_loss": True,
        "per_device_train_batch_size": sft.per_device_train_batch_size,
        "gradient_accumulation_steps": sft.gradient_accumulation_steps,
        "learning_rate": sft.learning_rate,
        "num_train_epochs": sft.num_train_epochs,
        "max_steps": sft.max_steps,
        "lr_scheduler_type": sft.lr_scheduler_type,
        "warmup_ratio": sft.warmup_ratio,
        "report_to": report_to,
        "run_name": run_name,
        "seed": int(config.seed),
        "ddp_timeout": 180000000,
    }
    if sft.save_total_limit is not None:
        args["save_total_limit"] = sft.save_total_limit
    if sft.precision != "fp32":
        args[sft.precision] = True
    if sft.liger_kernel:
        args["enable_liger_kernel"] = True
    if not sft.gradient_checkpointing:
        args["disable_gradient_checkpointing"] = True
    if sft.deepspeed:
        args["deepspeed"] = str(CONFIG_DIR / "deepspeed" / f"{sft.deepspeed}.json")
    if sft.finetuning_type == "lora":
        args.update(lora_rank=sft.lora.rank, lora_alpha=sft.lora.alpha,
                    lora_dropout=sft.lora.dropout, lora_target=sft.lora.target)
    args.update(sft.extra_args)
    return args


def export_args(config: DictConfig, run_dir: Path) -> dict:
    """LLaMA-Factory's export arguments that merge the LoRA adapter into full weights."""
    _, model, chat = check_sft_config(config)
    return {
        "model_name_or_path": local_path(model.path),
        "adapter_name_or_path": str(run_dir / CHECKPOINT_DIR),
        "template": chat.template,
        "finetuning_type": "lora",
        "trust_remote_code": True,
        "export_dir": str(run_dir / MERGED_DIR),
        "export_size": 5,
        "export_device": "cpu",
        "export_legacy_format": False,
    }


def distributed_env(config: DictConfig, sft: SFTConfig) -> dict[str, str]:
    """Environment for LLaMA-Factory's own torchrun launch, or for a CPU-only run."""
    gpus, nodes = int(config.launcher.gpus_per_node), int(config.launcher.nodes)
    # A CPU recipe stays on the CPU even on a GPU node.
    cpu_only = {"CUDA_VISIBLE_DEVICES": ""} if gpus == 0 and not sft.deepspeed else {}
    if nodes == 1 and (cpu_only or (gpus <= 1 and not sft.deepspeed)):
        return cpu_only
    # DeepSpeed, several GPUs and several nodes need torchrun; the executor resolves the placeholders per node.
    return {
        **cpu_only,
        "FORCE_TORCHRUN": "1",
        "NPROC_PER_NODE": str(max(gpus, 1)),
        "NNODES": "{{nnodes}}",
        "NODE_RANK": "{{node_rank}}",
        "MASTER_ADDR": "{{head_addr}}",
        "MASTER_PORT": "{{free_port:master}}",
    }


def sft_dataset(config: DictConfig, sft: SFTConfig, recipe: str) -> ChosenInput:
    """The file SFT trains on: sft.dataset.path, else the newest finished sft_data run's, else the demo file."""
    source = InputSource("sft_data", "dataset", f"python -m launch sft_data recipe={recipe}")
    demo = demo_sft_file(config) if sft.dataset.build else None
    return resolve_input(config, "sft", "sft.dataset.path", sft.dataset.path, source, demo)


def build_plan(config: DictConfig, run_dir: Path, run_name: str, python: str) -> Plan:
    """The SFT Plan for a composed config, to run in `run_dir`."""
    sft, model, chat = check_sft_config(config)
    recipe = run_name.split("/", 1)[0]
    dataset = sft_dataset(config, sft, recipe)
    dataset_path = dataset.path
    model_path = local_path(model.path)
    files = [
        FileSpec(f"{LF_DIR}/dataset_info.json", json.dumps(dataset_info(dataset_path), indent=2) + "\n"),
        FileSpec(TRAIN_YAML, yaml.safe_dump(train_args(config, run_dir, run_name), sort_keys=False)),
    ]
    before = []
    if model.build:
        before.append(Step("build_model", [python, "-m", "tools.demo.tiny_model", "--output", model_path,
                                          "--template", chat.template],
                           skip_if_exists=f"{model_path}/config.json", console="progress"))
    if dataset.demo:
        # The demo world is shared by every rendering; the SFT file depends on the role and the turn budget.
        before.append(Step("build_dataset", [python, "-m", "tools.demo.world", "--output", demo_world_dir(config),
                                             "--sft-output", str(Path(dataset_path).parent),
                                             "--observation-role", chat.observation_role,
                                             "--max-turns", str(config.agent.max_turns)],
                           skip_if_exists=dataset_path))
    # Library-heavy steps show their progress, loss and problems; their logs hold the rest (launch/console.py).
    before.append(Step("validate", [python, "-m", "launch.validate_sft", TRAIN_YAML], console="progress"))

    _, report_env = report_settings(sft.report_to, config)
    env = {**report_env, **distributed_env(config, sft)}
    main = Step("train", ["llamafactory-cli", "train", TRAIN_YAML], env=env, console="progress")

    after = []
    final_model = str(run_dir / CHECKPOINT_DIR)
    if sft.finetuning_type == "lora":
        files.append(FileSpec(EXPORT_YAML, yaml.safe_dump(export_args(config, run_dir), sort_keys=False)))
        after.append(Step("merge_lora", ["llamafactory-cli", "export", EXPORT_YAML],
                          env={"CUDA_VISIBLE_DEVICES": ""}, console="progress"))
        final_model = str(run_dir / MERGED_DIR)
    after.append(Step("chat_template", [python, "-m", "tools.builders.chat_template", "--model", final_model,
                                        "--template", chat.template], console="progress"))
    resources = Resources(nodes=int(config.launcher.nodes), gpus_per_node=int(config.launcher.gpus_per_node))
    # A dataset the Plan builds need not exist yet, nor one a dry run lacks a run for (it warned); any other comes
    # from the sft_data stage.
    inputs = [] if dataset.demo or not dataset.found else [
        InputFile("sft.dataset.path", dataset_path, f"python -m launch sft_data recipe={recipe}",
                  "that run's sft_data/sft.json")]
    check_needs(config, "sft", python, Needs(gpus=range(resources.gpus_per_node), files=inputs))
    return Plan(stage="sft", run_dir=str(run_dir), main=main, files=files, before=before, after=after,
                resources=resources, outputs={"model": final_model})
