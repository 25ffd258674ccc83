"""The rollouts stage's Plan (launch/stages/rollouts.py): the RL Plan's agent settings, served; bad settings named."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from launch.compose import compose_config
from launch.stages import rl, rollouts
from launch.stages.rollouts import RolloutsConfigError
from launch.trainer_keys import check_overrides


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tmp cache and no W&B key, so Plans do not depend on the machine."""
    monkeypatch.setenv("LONGVIDEO_R1_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


def plans(recipe: str, tmp_path: Path, *overrides: str):
    """The dry-run rollouts and RL Plans of `recipe` for one run directory (rl.model set: no hand-off needed)."""
    model = tmp_path / "model"
    model.mkdir(exist_ok=True)
    common = [f"recipe={recipe}", "dry_run=true", f"rl.model={model}", f"run_root={tmp_path}", *overrides]
    run_dir = tmp_path / "run"
    preflight = rollouts.build_rollouts_plan(compose_config("rollouts", common).config, run_dir,
                                             f"{recipe}/run", sys.executable)
    training = rl.build_plan(compose_config("rl", common).config, run_dir, f"{recipe}/run", sys.executable)
    return preflight, training


def overrides_of(plan) -> dict:
    """The trainer values a Plan's overrides file sets, by key."""
    text = next(f.content for f in plan.files if f.path == rl.OVERRIDES_FILE)
    return check_overrides(text.splitlines())


@pytest.mark.parametrize("recipe", ["tiny", "qwen3_8b"])
def test_agent_settings_are_the_rl_plans(recipe: str, tmp_path: Path) -> None:
    """Every trainer value but the group size and sampling equals the RL Plan's; the agent files are its own."""
    preflight, training = plans(recipe, tmp_path, "rollouts.n=3", "rollouts.temperature=0.7")
    mine, theirs = overrides_of(preflight), overrides_of(training)
    # The preflight logs to the console only; RL may add W&B (report_to).
    differing = {key for key in mine if mine[key] != theirs.get(key)} - {"trainer.logger"}
    assert differing == {"actor_rollout_ref.rollout.n", "actor_rollout_ref.rollout.temperature"}
    assert mine["trainer.logger"] == ["console"]
    assert set(mine) == set(theirs)
    assert (mine["actor_rollout_ref.rollout.n"], mine["actor_rollout_ref.rollout.temperature"]) == (3, 0.7)
    shared = {rl.TOOL_CONFIG, rl.STOP_TOKENS_FILE}
    assert {f.path: f.content for f in preflight.files if f.path in shared} == \
        {f.path: f.content for f in training.files if f.path in shared}


def test_tiny_serves_its_policy_on_the_cpu_build(tmp_path: Path) -> None:
    """tiny: the tool server and the policy under vLLM's CPU build; the sampler reads the rendered settings."""
    preflight, _ = plans("tiny", tmp_path)
    assert [s.name for s in preflight.services] == ["tool_server", "policy"]
    policy = preflight.services[-1]
    assert policy.argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert policy.argv[policy.argv.index("--max-model-len") + 1] == "3072"
    assert preflight.main.argv[1:3] == ["-m", "tools.rollouts"]
    settings = json.loads(next(f.content for f in preflight.files if f.path == rollouts.SETTINGS_FILE))
    assert (settings["prompts"], settings["split"], settings["policy"]["model"]) == (4, "train", "policy")
    assert settings["policy"]["base_url"] == "http://127.0.0.1:{{free_port:policy}}/v1"
    assert [step.name for step in preflight.before] == ["build_rl_data"]
    assert [step.argv[1:] for step in preflight.after] == [["-m", "launch", "view", "rollouts", "--output",
                                                            "rollouts/view.html"]]


def test_paper_recipe_serves_the_vlm_and_the_policy_on_gpus(tmp_path: Path) -> None:
    """qwen3_8b: the VLM on its GPUs, the tool server, and `vllm serve` for the policy on rollouts.gpus."""
    preflight, _ = plans("qwen3_8b", tmp_path, "rollouts.gpus=[0,1]")
    assert [s.name for s in preflight.services] == ["vlm", "tool_server", "policy"]
    policy = preflight.services[-1]
    assert policy.argv[:2] == ["vllm", "serve"]
    assert (policy.env["CUDA_VISIBLE_DEVICES"], policy.gpus) == ("0,1", 2)


@pytest.mark.parametrize(("override", "message"), [
    ("rollouts.n=1", "rollouts.n=1: a GRPO group needs at least 2 rollouts"),
    ("rollouts.split=test", "rollouts.split='test' is not one of: train, val"),
    ("rollouts.prompts=0", "rollouts.prompts"),
    ("rollouts.temperature=0", "rollouts.temperature=0.0 must be in (0, 2]"),
    ("rollouts.prompts=many", "rollouts"),
])
def test_bad_settings_name_the_key(override: str, message: str, tmp_path: Path) -> None:
    """A wrong `rollouts.*` value is refused before anything starts, naming the key."""
    with pytest.raises(RolloutsConfigError) as error:
        plans("tiny", tmp_path, override)
    assert message in str(error.value)
