"""The RL stage: the composed config to a Plan that trains with verl-tool's GRPO trainer.

Services: `vllm serve` for the VLM that video_qa asks (when `rl.vlm.serve`), then verl-tool's tool
server with our navigation tool (`python -m tools.environment.serve_tool`), each on a free loopback port. Main:
`python -m verl_tool.trainer.main_ppo` with every override rendered from the recipe and checked
against verl-tool's key set (`launch/trainer_keys.py`) and the cross-field rules
(`launch/stages/rl_config.py`). After: the last checkpoint merged into a Hugging Face model with
verl's model merger (`launch/rl_merge.py`). RL starts from the newest finished SFT run of the recipe
unless `rl.model` says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from launch.compose import PROJECT_ROOT
from launch.handoff import Handoff, HandoffError, InputSource, resolve_input, resolve_model
from launch.plan import FileSpec, Plan, ReadyCheck, Resources, Service, Step
from launch.preflight_checks import InputFile, Needs, check_needs
from launch.rl_merge import CHECKPOINT_DIR, MERGED_DIR
from launch.stages.datasets import demo_rl_dir, demo_world_dir, tool_settings
from launch.stages.rl_config import RLConfig, RLConfigError, check_layout, check_rl_config, check_trainer_values
from launch.stages.serving import VLLMEngine, tool_settings_dict, vllm_engine, vllm_service
from launch.stages.sft import report_settings
from launch.stages.sft_config import check_chat_config
from launch.trainer_keys import check_overrides, render_override, trainer_keys
from rewards.spec import RewardSpecError, spec_from_dict
from tools.environment.actions import ACTION_STOPS
from tools.environment.secrets import is_secret_key
from tools.environment.tool_settings import ENV_VAR, ToolSettings

TOOL_CONFIG = "rl/tool.json"
STOP_TOKENS_FILE = "rl/action_stop_tokens.txt"
OVERRIDES_FILE = "rl/trainer_overrides.txt"
ROLLOUT_DIR = "rollouts"
VALIDATION_DIR = "validation"
REWARD_ENTRY = PROJECT_ROOT / "rewards" / "verl_entry.py"
REWARD_FUNCTION = "compute_score"
TOOL_PORT = "{{free_port:tool}}"


def start_model(config: DictConfig, rl: RLConfig, recipe: str, stage: str = "rl") -> str:
    """The model RL starts from (the SFT hand-off unless `rl.model` is set); says which one `stage` took."""
    try:
        chosen = resolve_model(rl.model, config.run_root, "sft", recipe)
    except HandoffError as error:
        hint = f"run `python -m launch sft recipe={recipe}` first, or set rl.model=PATH (a model or an SFT run)"
        # A model named explicitly must exist even in a dry run; only the hand-off may be waiting for SFT.
        if rl.model is not None or not config.dry_run:
            raise HandoffError(f"{stage}: {error}; {hint}") from None
        print(f"[launch] warning: {error}; a real run stops here ({hint})", file=sys.stderr)
        return f"<no finished sft run of {recipe}: set rl.model>"
    if isinstance(chosen, Handoff):
        if not config.dry_run and not Path(chosen.value).is_dir():
            raise HandoffError(f"{stage}: SFT run {chosen.run_dir} records model {chosen.value}, which no longer "
                               "exists")
        print(f"[launch] {stage} starts from {chosen.value} (the model of SFT run {chosen.run_dir})", file=sys.stderr)
        return chosen.value
    print(f"[launch] {stage} starts from {chosen} (rl.model)", file=sys.stderr)
    return chosen


def resolve_data(config: DictConfig, rl: RLConfig, recipe: str, stage: str = "rl") -> tuple[RLConfig, bool]:
    """`rl` with absolute parquet files: as set, else the newest finished rl_data run's, else the demo files; and
    whether both were found (a dry run may lack an rl_data run). `rl.data.build` stays only where the Plan builds."""
    demo_dir = demo_rl_dir(config) if rl.data.build else None
    command = f"python -m launch rl_data recipe={recipe} rl_data.annotations=PATH"
    chosen = {key: resolve_input(config, stage, f"rl.data.{key}", getattr(rl.data, key),
                                 InputSource("rl_data", output, command),
                                 None if demo_dir is None else str(demo_dir / f"{output}.parquet"))
              for key, output in (("train_files", "train"), ("val_files", "val"))}
    build = rl.data.build if any(choice.demo for choice in chosen.values()) else None
    data = dataclasses.replace(rl.data, build=build, **{key: choice.path for key, choice in chosen.items()})
    return dataclasses.replace(rl, data=data), all(choice.found for choice in chosen.values())


def data_files(rl: RLConfig) -> tuple[str, str]:
    """The train and validation parquet paths, as `resolve_data` made them (`data_inputs` says which must exist)."""
    return rl.data.train_files, rl.data.val_files


def data_inputs(rl: RLConfig, recipe: str) -> list[InputFile]:
    """The parquet files a run reads, with the stage that builds them; none when the Plan builds them itself."""
    if rl.data.build:
        return []
    return [InputFile(f"rl.data.{key}", path, f"python -m launch rl_data recipe={recipe}", f"that run's rl_data/{name}")
            for key, path, name in zip(("train_files", "val_files"), data_files(rl), ("train.parquet", "val.parquet"),
                                       strict=True)]


def tool_config_json(tool: ToolSettings, rl: RLConfig) -> str:
    """The tool settings as JSON, the VLM endpoint pointed at the Plan's `vllm serve` when it serves one."""
    return json.dumps(tool_settings_dict(tool, rl.vlm.model if rl.vlm.serve else None), indent=2) + "\n"


def reward_kwargs(config: DictConfig) -> dict:
    """The chosen reward preset fully resolved: what our `compute_score` receives as `reward_kwargs`."""
    try:
        return spec_from_dict(OmegaConf.to_container(config.reward, resolve=True), "reward").to_dict()
    except RewardSpecError as error:
        raise RLConfigError(str(error)) from None


def trainer_values(config: DictConfig, rl: RLConfig, model_path: str, run_dir: Path, run_name: str,
                   logger: list[str]) -> dict[str, object]:
    """Every trainer key this stage sets, by verl-tool's dotted name (the chat config is checked by build_plan)."""
    prompt, response = rl.max_prompt_length, rl.max_response_length
    actor, rollout, ref, agent = ("actor_rollout_ref.actor", "actor_rollout_ref.rollout", "actor_rollout_ref.ref",
                                  "actor_rollout_ref.agent")
    train_files, val_files = data_files(rl)
    values: dict[str, object] = {
        "algorithm.adv_estimator": rl.algorithm,
        "algorithm.use_kl_in_reward": False,
        "data.train_files": train_files,
        "data.val_files": val_files,
        "data.train_batch_size": rl.train_batch_size,
        "data.max_prompt_length": prompt,
        "data.max_response_length": response,
        # Overlong prompts are dropped (and counted in the log) when the data loads, never cut mid-training.
        "data.filter_overlong_prompts": True,
        "data.truncation": "error",
        "data.seed": int(config.seed),
        "reward_model.reward_manager": "naive",
        "reward_model.launch_reward_fn_async": True,
        "custom_reward_function.path": str(REWARD_ENTRY),
        "custom_reward_function.name": REWARD_FUNCTION,
        "custom_reward_function.reward_kwargs": reward_kwargs(config),
        "actor_rollout_ref.model.path": model_path,
        "actor_rollout_ref.model.trust_remote_code": True,
        "actor_rollout_ref.model.use_remove_padding": True,
        "actor_rollout_ref.model.enable_gradient_checkpointing": rl.gradient_checkpointing,
        f"{actor}.strategy": "fsdp",
        f"{actor}.optim.lr": rl.learning_rate,
        f"{actor}.optim.lr_warmup_steps": rl.lr_warmup_steps,
        f"{actor}.ppo_mini_batch_size": rl.ppo_mini_batch_size,
        f"{actor}.ppo_micro_batch_size_per_gpu": rl.ppo_micro_batch_size_per_gpu,
        f"{actor}.use_dynamic_bsz": rl.use_dynamic_bsz,
        f"{actor}.ppo_max_token_len_per_gpu": prompt + response,
        f"{actor}.use_kl_loss": True,
        f"{actor}.kl_loss_coef": rl.kl_loss_coef,
        f"{actor}.kl_loss_type": rl.kl_loss_type,
        f"{actor}.entropy_coeff": rl.entropy_coeff,
        f"{actor}.fsdp_config.param_offload": rl.offload,
        f"{actor}.fsdp_config.optimizer_offload": rl.offload,
        f"{actor}.ulysses_sequence_parallel_size": rl.ulysses_sequence_parallel_size,
        f"{rollout}.name": "vllm",
        f"{rollout}.mode": "async",
        f"{rollout}.n": rl.rollouts_per_prompt,
        f"{rollout}.temperature": rl.temperature,
        f"{rollout}.top_p": rl.top_p,
        f"{rollout}.prompt_length": prompt,
        f"{rollout}.response_length": response,
        f"{rollout}.tensor_model_parallel_size": rl.rollout_tensor_parallel_size,
        f"{rollout}.gpu_memory_utilization": rl.rollout_gpu_memory_utilization,
        f"{rollout}.log_prob_micro_batch_size_per_gpu": rl.log_prob_micro_batch_size_per_gpu,
        f"{rollout}.log_prob_use_dynamic_bsz": rl.use_dynamic_bsz,
        f"{ref}.log_prob_micro_batch_size_per_gpu": rl.log_prob_micro_batch_size_per_gpu,
        f"{ref}.log_prob_use_dynamic_bsz": rl.use_dynamic_bsz,
        f"{ref}.fsdp_config.param_offload": rl.offload,
        f"{ref}.ulysses_sequence_parallel_size": rl.ulysses_sequence_parallel_size,
        f"{agent}.enable_agent": True,
        f"{agent}.tool_server_url": f"http://{rl.tool_server.host}:{TOOL_PORT}/get_observation",
        f"{agent}.max_turns": int(config.agent.max_turns),
        f"{agent}.max_prompt_length": prompt,
        f"{agent}.max_start_length": prompt,
        f"{agent}.max_response_length": response,
        f"{agent}.max_action_length": rl.max_action_length,
        f"{agent}.max_obs_length": rl.max_observation_length,
        f"{agent}.action_stop_tokens": str(run_dir / STOP_TOKENS_FILE),
        f"{agent}.mask_observations": True,
        # Multi-turn: each observation is a new `user` turn (mtrl_sep stays null: verl-tool derives it).
        f"{agent}.enable_mtrl": True,
        f"{agent}.mtrl_role": str(config.chat.observation_role),
        f"{agent}.tool_call_timeout": rl.tool_call_timeout,
        f"{agent}.max_concurrent_trajectories": rl.max_concurrent_trajectories,
        "trainer.logger": logger,
        "trainer.project_name": str(config.wandb.project),
        "trainer.experiment_name": run_name,
        "trainer.default_local_dir": str(run_dir / CHECKPOINT_DIR),
        "trainer.rollout_data_dir": str(run_dir / ROLLOUT_DIR),
        "trainer.validation_data_dir": str(run_dir / VALIDATION_DIR),
        # A new run directory has no checkpoint; resume=true reopens one that has.
        "trainer.resume_mode": "auto",
        "trainer.n_gpus_per_node": rl.trainer_gpus,
        "trainer.nnodes": int(config.launcher.nodes),
        "trainer.save_freq": rl.save_freq,
        "trainer.test_freq": rl.test_freq,
        "trainer.val_before_train": rl.val_before_train,
        "trainer.total_epochs": rl.total_epochs,
        "trainer.total_training_steps": rl.total_training_steps,
        "trainer.max_actor_ckpt_to_keep": rl.max_checkpoints_to_keep,
    }
    if rl.lora_rank > 0:
        values.update({"actor_rollout_ref.model.lora_rank": rl.lora_rank,
                       "actor_rollout_ref.model.lora_alpha": rl.lora_alpha,
                       "actor_rollout_ref.model.target_modules": rl.lora_target_modules})
    for key, value in flat_overrides(rl.trainer_overrides):
        if is_secret_key(key.rsplit(".", 1)[-1]):
            raise RLConfigError(f"rl.trainer_overrides.{key} looks like a secret; verl reads its config from the "
                                "command line, which the run records. Pass secrets through the environment instead")
        if key in values:
            raise RLConfigError(f"rl.trainer_overrides.{key}: this stage sets {key} from the recipe; change the rl.* "
                                "key it comes from instead")
        values[key] = value
    return values


def flat_overrides(mapping: dict, prefix: str = "") -> list[tuple[str, object]]:
    """`rl.trainer_overrides` as dotted trainer keys: nested mappings are walked down to a trainer key."""
    flat = []
    for name, value in mapping.items():
        key = f"{prefix}{name}"
        # Walk down to trainer keys; inside a mapping-typed key, each entry becomes its own `+key.name=value`.
        if isinstance(value, dict) and value and (key not in trainer_keys() or trainer_keys()[key]["type"] == "dict"):
            flat.extend(flat_overrides(value, f"{key}."))
        else:
            flat.append((key, value))
    return flat


def vlm_service(rl: RLConfig, gpus: list[int], engine: VLLMEngine) -> Service:
    """vLLM with the paper's flags on the recipe's GPUs, under the model name the tool asks for."""
    vlm = rl.vlm
    return vllm_service("vlm", vlm.model, vlm.model, gpus, vlm.max_model_len, vlm.gpu_memory_utilization,
                        vlm.extra_args, vlm.ready_timeout_s, engine)


def tool_service(rl: RLConfig, run_dir: Path, python: str) -> Service:
    """verl-tool's tool server with our tool, reading the settings this Plan renders."""
    argv = [python, "-m", "tools.environment.serve_tool", "--host", rl.tool_server.host, "--port", TOOL_PORT,
            "--thread-pool-size", str(rl.tool_server.thread_pool_size)]
    return Service("tool_server", argv, env={ENV_VAR: str(run_dir / TOOL_CONFIG), "CUDA_VISIBLE_DEVICES": ""},
                   ready=ReadyCheck(http_url=f"http://{rl.tool_server.host}:{TOOL_PORT}/health",
                                    timeout_s=rl.tool_server.ready_timeout_s))


def checked_overrides(config: DictConfig, values: dict[str, object]) -> list[str]:
    """The trainer overrides of `values`, each checked against verl-tool's keys and the cross-field rules."""
    overrides = [render_override(key, value) for key, value in values.items()]
    check_trainer_values(check_overrides(overrides), float(tool_settings(config).default.vlm.timeout_s))
    return overrides


def agent_files(config: DictConfig, rl: RLConfig, overrides: list[str]) -> list[FileSpec]:
    """The files verl-tool's agent loop and tool server read: tool settings, stop strings, trainer overrides."""
    return [
        FileSpec(TOOL_CONFIG, tool_config_json(tool_settings(config), rl), resolve=True),
        FileSpec(STOP_TOKENS_FILE, ",".join(ACTION_STOPS)),
        FileSpec(OVERRIDES_FILE, "\n".join(overrides) + "\n", resolve=True),
    ]


def data_steps(config: DictConfig, rl: RLConfig, values: dict[str, object], python: str) -> list[Step]:
    """The step that builds the demo RL parquet when the recipe asks for it (skipped once built)."""
    if not rl.data.build:
        return []
    return [Step("build_rl_data", [python, "-m", "tools.demo.world", "--output", demo_world_dir(config),
                                   "--rl-output", str(Path(values["data.train_files"]).parent),
                                   "--max-turns", str(config.agent.max_turns)],
                 skip_if_exists=str(values["data.train_files"]))]


def check_user_role(config: DictConfig, stage: str):
    """The chat config, which must send observations as user turns, as verl-tool's multi-turn rollout does."""
    chat = check_chat_config(config)
    if chat.observation_role != "user":
        raise RLConfigError(f"chat.observation_role={chat.observation_role}: verl-tool's multi-turn rollout opens a "
                            "plain `tool` turn without the <tool_response> wrapper the SFT template trains, so SFT "
                            f"and RL would disagree token for token (README: Chat rendering); {stage} needs user")
    return chat


def build_plan(config: DictConfig, run_dir: Path, run_name: str, python: str) -> Plan:
    """The RL Plan for a composed config, to run in `run_dir`."""
    rl = check_rl_config(config)
    chat = check_user_role(config, "rl")
    trainer_gpus, vlm_gpus = check_layout(rl, int(config.launcher.gpus_per_node))
    recipe = run_name.split("/", 1)[0]
    mode, report_env = report_settings(rl.report_to if rl.report_to != "console" else "none", config,
                                       "rl.report_to", RLConfigError)
    logger = ["console", "wandb"] if mode == "wandb" else ["console"]
    model = start_model(config, rl, recipe)
    rl, data_found = resolve_data(config, rl, recipe)
    values = trainer_values(config, rl, model, run_dir, run_name, logger)
    overrides = checked_overrides(config, values)
    files = agent_files(config, rl, overrides)
    engine = vllm_engine(config, python) if rl.vlm.serve else None
    services = [vlm_service(rl, vlm_gpus, engine)] if engine is not None else []
    services.append(tool_service(rl, run_dir, python))
    env = {**report_env, "CUDA_VISIBLE_DEVICES": ",".join(map(str, trainer_gpus)), "PYTHONUNBUFFERED": "1",
           "HYDRA_FULL_ERROR": "1", "VLLM_USE_V1": "1"}
    main = Step("train", [python, "-m", "verl_tool.trainer.main_ppo", *overrides], env=env)
    before = data_steps(config, rl, values, python)
    after = [
        Step("merge", [python, "-m", "launch.rl_merge", str(run_dir)]),
        Step("chat_template", [python, "-m", "tools.builders.chat_template", "--model", str(run_dir / MERGED_DIR),
                               "--template", chat.template]),
    ]
    resources = Resources(nodes=int(config.launcher.nodes), gpus_per_node=int(config.launcher.gpus_per_node),
                          multi_node="ray", main_gpus=list(trainer_gpus))
    vlm_on_gpus = vlm_gpus if engine is not None and engine.uses_gpus else []
    check_needs(config, "rl", python, Needs(verl_tool=True, vllm=engine, gpus=[*trainer_gpus, *vlm_on_gpus],
                                            files=data_inputs(rl, recipe) if data_found else []))
    return Plan(stage="rl", run_dir=str(run_dir), main=main, files=files, services=services, before=before,
                after=after, resources=resources,
                outputs={"model": str(run_dir / MERGED_DIR), "checkpoints": str(run_dir / CHECKPOINT_DIR)})

