"""Sample GRPO groups as verl-tool's trainer does, one step of it: data, agent loop, reward, advantages.

The trainer config is composed by Hydra from verl-tool's own `ppo_trainer` with the overrides the RL
Plan rendered (`rl/trainer_overrides.txt`), so every agent setting is the one RL would run. The
questions come from verl's `RLHFDataset` and sampler over the RL parquet (the first `prompts` the
trainer's first step would draw); verl's `_get_gen_batch`, `repeat(n, interleave=True)`, verl-tool's
`AgentLoopWorker` (its agent loop, tool client and reward worker), the reward manager and
`compute_advantage` then run as in `RayPPOTrainer.fit`. Only the policy server differs: an HTTP
client of a vLLM server (`policy_client`) instead of the trainer's in-process engine.
"""

from __future__ import annotations

import os
import shutil
import time
import types
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from tools.rollouts.policy_client import PolicyClient
from tools.rollouts.text_only import stand_in_multimodal_modules

TRAINER_CONFIG_NAME = "ppo_trainer"
# Ray's logical CPUs: the agent-loop worker, its reward worker, the policy client and small tasks.
RAY_CPUS = 8
# Ray's session folder is /tmp/<prefix><pid>: every process of the preflight's Ray names it.
RAY_TEMP_PREFIX = "ray-preflight-"


class SamplingError(RuntimeError):
    """The rollouts could not be sampled; the message says which part failed."""


@dataclass
class Sampled:
    """One sampled step: verl's batch after advantages, and where the time went."""

    batch: object
    timing_s: dict[str, float] = field(default_factory=dict)
    policy_requests: int = 0


def compose_trainer_config(overrides: list[str], config_dir: Path | None = None) -> DictConfig:
    """verl-tool's trainer config with `overrides`, composed as its `main_ppo` composes it.

    `config_dir`: the config folder of a verl-tool checkout; by default the installed verl-tool's.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if config_dir is None:
        import verl_tool.trainer

        config_dir = Path(verl_tool.trainer.__file__).parent / "config"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(Path(config_dir).absolute()), version_base=None):
        return compose(config_name=TRAINER_CONFIG_NAME, overrides=list(overrides))


def first_prompts(config: DictConfig, tokenizer, split: str, count: int):
    """The first `count` questions the trainer's sampler draws from `split`'s parquet, as one DataProto."""
    from verl.protocol import DataProto
    from verl.trainer.main_ppo import create_rl_dataset, create_rl_sampler
    from verl.utils.dataset.rl_dataset import collate_fn

    files = config.data.train_files if split == "train" else config.data.val_files
    dataset = create_rl_dataset(files, config.data, tokenizer, None, is_train=split == "train")
    if len(dataset) == 0:
        raise SamplingError(f"{files}: no question survived verl's dataset filters (prompt longer than "
                            f"data.max_prompt_length={config.data.max_prompt_length}?)")
    indices = list(create_rl_sampler(config.data, dataset))[:count]
    return DataProto.from_single_dict(collate_fn([dataset[i] for i in indices]))


def start_ray(num_cpus: int = RAY_CPUS) -> None:
    """A private local Ray whose workers stand in for the multimodal modules a text policy never imports."""
    import ray

    if ray.is_initialized():
        return
    # This Ray is private to the preflight. Ray's default token authentication would write
    # ~/.ray/auth_token, which turns every later Ray of this user (the RL job on Slurm) to token mode.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    hook = f"{stand_in_multimodal_modules.__module__}.{stand_in_multimodal_modules.__name__}"
    # A short session folder of its own: Ray's socket paths must stay under 107 characters.
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True, _temp_dir=ray_temp_dir(),
             runtime_env={"worker_process_setup_hook": hook})


def ray_temp_dir() -> str:
    """The folder of this process's private Ray session."""
    return f"/tmp/{RAY_TEMP_PREFIX}{os.getpid()}"


def stop_ray() -> None:
    """Stop this process's Ray (its workers and head processes) and remove its session folder."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    shutil.rmtree(ray_temp_dir(), ignore_errors=True)


def sample(config: DictConfig, tokenizer, policy_url: str, policy_model: str, max_model_len: int,
           split: str, prompts: int, extra_body: dict, timeout_s: float) -> Sampled:
    """Play `prompts` questions x `actor_rollout_ref.rollout.n` rollouts and score them as one trainer step."""
    import ray
    from verl.trainer.ppo.ray_trainer import RayPPOTrainer, compute_advantage

    stand_in_multimodal_modules()
    from verl_tool.agent_loop.agent_loop import AgentLoopWorker
    from verl_tool.trainer.ppo.reward import compute_reward, load_reward_manager

    n = int(config.actor_rollout_ref.rollout.n)
    batch = first_prompts(config, tokenizer, split, prompts)
    batch.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(batch))], dtype=object)
    # The trainer's own split of what generation sees (its agent-loop mode keeps the reward keys too).
    gen_batch = RayPPOTrainer._get_gen_batch(types.SimpleNamespace(async_rollout_mode=True), batch)
    gen_batch.meta_info["global_steps"] = 1
    gen_batch = gen_batch.repeat(repeat_times=n, interleave=True)

    start_ray()
    policy = ray.remote(PolicyClient).options(num_cpus=0).remote(policy_url, policy_model, max_model_len,
                                                                 timeout_s, extra_body)
    worker = AgentLoopWorker.remote(config, [policy])
    started = time.monotonic()
    try:
        output = ray.get(worker.generate_sequences.remote(gen_batch))
    except ray.exceptions.RayError as error:
        raise SamplingError(f"verl-tool's agent loop failed: {error}") from None
    timing = {"generation_wall": time.monotonic() - started}
    usage = ray.get(policy.usage.remote())

    batch = batch.repeat(repeat_times=n, interleave=True).union(output)
    # The reward as the trainer reads it: verl's manager returns the scores the agent loop's reward
    # worker wrote (rm_scores). Scored again here without them, timed, it must give the same numbers.
    reward_fn = load_reward_manager(config, tokenizer, num_examine=0, **config.reward_model.get("reward_kwargs", {}))
    reward_tensor, extra = compute_reward(batch, reward_fn)
    started = time.monotonic()
    rescored = reward_fn(_without_scores(batch), return_dict=True)
    timing["reward"] = time.monotonic() - started
    if not np.allclose(rescored["reward_tensor"].sum(-1).numpy(), reward_tensor.sum(-1).numpy()):
        raise SamplingError("the agent loop's reward worker and verl's reward manager disagree on the same rollouts")
    batch.batch["token_level_scores"] = reward_tensor
    extra = extra or rescored["reward_extra_info"]
    batch.non_tensor_batch.update({key: np.array(value) for key, value in extra.items()})
    batch.batch["token_level_rewards"] = batch.batch["token_level_scores"]
    batch = compute_advantage(batch, adv_estimator=config.algorithm.adv_estimator, gamma=config.algorithm.gamma,
                              lam=config.algorithm.lam, num_repeat=n,
                              norm_adv_by_std_in_grpo=config.algorithm.get("norm_adv_by_std_in_grpo", True),
                              config=config.algorithm)
    metrics = batch.meta_info.get("metrics") or []
    timing["policy"] = float(sum(m.get("generate_sequences", 0.0) for m in metrics))
    timing["tool"] = float(sum(m.get("tool_calls", 0.0) for m in metrics))
    timing["policy_busy"] = float(usage["busy_s"])
    return Sampled(batch, timing, int(usage["requests"]))


def _without_scores(batch):
    """A copy of `batch` without the agent loop's `rm_scores`, for the reward manager to score from the text."""
    from verl.protocol import DataProto

    tensors = {key: value for key, value in batch.batch.items() if key != "rm_scores"}
    return DataProto.from_dict(tensors=tensors, non_tensors=dict(batch.non_tensor_batch), meta_info={})
