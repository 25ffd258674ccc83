"""The RL stage's Plan (launch/stages/rl.py): every recipe renders, the paper's values land, bad configs are named.

Plans are built in-process (compose + build_plan, or `launch.cli.main` with capsys) with `rl.model` set to
a folder, so the SFT hand-off (tests/launch/test_handoff.py) does not matter here. One error goes end to end
through `python -m launch`. The demo RL data is built with the exact command the tiny Plan's build step runs.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from launch.cli import main as cli_main
from launch.compose import ConfigError, compose_config, recipe_names
from launch.local import LocalExecutor
from launch.plan import Plan, resolve_placeholders
from launch.stages import rl
from launch.trainer_keys import check_overrides
from rewards.spec import spec_from_dict
from tests.conftest import PROJECT_ROOT, launch

TRAINER_MODULE = ["-m", "verl_tool.trainer.main_ppo"]
TINY_MAX_TURNS = 15


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tmp cache, and no W&B key, so Plans do not depend on the machine."""
    monkeypatch.setenv("LONGVIDEO_R1_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder given as rl.model, so no SFT run is needed."""
    return tmp_path_factory.mktemp("sft-model")


def build(recipe: str, run_dir: Path, model_dir: Path, *overrides: str) -> tuple[Plan, dict]:
    """The recipe's dry-run RL Plan in `run_dir` and its trainer overrides as checked values by key."""
    config = compose_config("rl", [f"recipe={recipe}", "dry_run=true", f"rl.model={model_dir}",
                                   f"run_root={run_dir.parent}", *overrides]).config
    plan = rl.build_plan(config, run_dir, f"{recipe}/{run_dir.name}", sys.executable)
    assert plan.main.argv[:3] == [sys.executable, *TRAINER_MODULE]
    return plan, check_overrides(plan.main.argv[3:])


def values_of(recipe: str, tmp_path: Path, model_dir: Path, *overrides: str) -> dict:
    """Only the trainer values of the recipe's Plan."""
    return build(recipe, tmp_path / "run", model_dir, *overrides)[1]


def file_of(plan: Plan, path: str) -> rl.FileSpec:
    """The Plan's file spec at `path` (relative to the run directory)."""
    [spec] = [f for f in plan.files if f.path == path]
    return spec


def service(plan: Plan, name: str) -> rl.Service:
    """The Plan's service `name`."""
    [found] = [s for s in plan.services if s.name == name]
    return found


def cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """`python -m launch ARGV` in-process: exit code, stdout, stderr."""
    code = cli_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def printed_plan(stdout: str) -> Plan:
    """The Plan a dry run printed after its composed config."""
    _, _, tail = stdout.partition("\n# Plan (dry run")
    assert tail, stdout[-2000:]
    return Plan.from_yaml(tail.split("\n", 1)[1])


# ---------------------------------------------------------------- every recipe


@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_prints_a_dry_run_plan(recipe: str, tmp_path: Path, model_dir: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """`python -m launch rl recipe=NAME --dry-run` exits 0, prints a Plan whose overrides all pass the key check."""
    run_root = tmp_path / "runs"
    code, out, err = cli(["rl", f"recipe={recipe}", "--dry-run", f"run_root={run_root}", f"rl.model={model_dir}"],
                         capsys)
    assert code == 0, err
    plan = printed_plan(out)
    assert plan.stage == "rl"
    assert plan.main.argv[1:3] == TRAINER_MODULE
    values = check_overrides(plan.main.argv[3:])
    assert values["actor_rollout_ref.model.path"] == str(model_dir)
    assert Path(plan.run_dir).parent == run_root / "rl" / recipe
    assert f"rl starts from {model_dir} (rl.model)" in err
    assert not run_root.exists(), "a dry run creates nothing"


@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_writes_its_overrides_file(recipe: str, tmp_path: Path, model_dir: Path) -> None:
    """rl/trainer_overrides.txt holds exactly the main command's overrides, one per line."""
    plan, _ = build(recipe, tmp_path / "run", model_dir)
    assert file_of(plan, rl.OVERRIDES_FILE).content.splitlines() == plan.main.argv[3:]


# ---------------------------------------------------------------- the paper's values (qwen3_8b)


@pytest.fixture(scope="module")
def paper(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> tuple[Plan, dict, Path]:
    """The qwen3_8b Plan, its trainer values and its run directory."""
    run_dir = tmp_path_factory.mktemp("runs") / "rl" / "qwen3_8b" / "paper"
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("WANDB_API_KEY", raising=False)
        plan, values = build("qwen3_8b", run_dir, model_dir)
    return plan, values, run_dir


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("algorithm.adv_estimator", "grpo"),
        ("algorithm.use_kl_in_reward", False),
        ("actor_rollout_ref.rollout.n", 16),
        ("data.train_batch_size", 12),
        ("actor_rollout_ref.actor.ppo_mini_batch_size", 12),
        ("actor_rollout_ref.actor.optim.lr", 1e-6),
        ("actor_rollout_ref.actor.use_kl_loss", True),
        ("actor_rollout_ref.actor.kl_loss_coef", 1e-4),
        ("actor_rollout_ref.actor.kl_loss_type", "low_var_kl"),
        ("actor_rollout_ref.agent.max_turns", 15),
        ("data.max_prompt_length", 8192),
        ("data.max_response_length", 12288),
        ("actor_rollout_ref.rollout.response_length", 12288),
        ("actor_rollout_ref.agent.max_response_length", 12288),
        ("actor_rollout_ref.agent.max_obs_length", 8192),
        ("actor_rollout_ref.rollout.temperature", 1.0),
        ("actor_rollout_ref.agent.enable_agent", True),
        ("actor_rollout_ref.agent.mask_observations", True),
        ("actor_rollout_ref.agent.enable_mtrl", True),
        ("actor_rollout_ref.agent.mtrl_role", "user"),
        ("actor_rollout_ref.rollout.mode", "async"),
        ("actor_rollout_ref.rollout.name", "vllm"),
        ("trainer.n_gpus_per_node", 6),
        ("trainer.nnodes", 1),
        ("trainer.total_epochs", 2),
        ("custom_reward_function.name", "compute_score"),
    ],
    ids=lambda v: v if isinstance(v, str) and "." in v else None,
)
def test_qwen3_8b_carries_the_papers_values(paper: tuple[Plan, dict, Path], key: str, expected: object) -> None:
    """The qwen3_8b Plan sets the paper's value (configs/README.md), with its type, for each key."""
    value = paper[1][key]
    assert value == expected
    assert type(value) is type(expected)


def test_mtrl_sep_is_left_to_verl_tool(paper: tuple[Plan, dict, Path]) -> None:
    """mtrl_sep is never set, so it stays null and verl-tool derives it from the chat template."""
    assert not [arg for arg in paper[0].main.argv if "mtrl_sep" in arg]


def test_gpu_layout_of_the_paper(paper: tuple[Plan, dict, Path]) -> None:
    """The VLM is served on GPUs 6,7 with tensor parallel 2; the trainer sees GPUs 0..5."""
    plan = paper[0]
    vlm = service(plan, "vlm")
    assert vlm.env["CUDA_VISIBLE_DEVICES"] == "6,7"
    assert vlm.gpus == 2
    assert vlm.argv[vlm.argv.index("--tensor-parallel-size") + 1] == "2"
    assert vlm.argv[:3] == ["vllm", "serve", "Qwen/Qwen3-VL-32B-Instruct"]
    assert plan.main.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5"
    assert service(plan, "tool_server").env["CUDA_VISIBLE_DEVICES"] == ""
    assert [s.name for s in plan.services] == ["vlm", "tool_server"]
    assert (plan.resources.nodes, plan.resources.gpus_per_node) == (1, 8)


def test_stop_tokens_file_is_written_in_the_run_dir(paper: tuple[Plan, dict, Path], tmp_path: Path) -> None:
    """agent.action_stop_tokens names a file of the run directory that holds `</tool>,</answer>`."""
    plan, values, run_dir = paper
    spec = file_of(plan, rl.STOP_TOKENS_FILE)
    assert spec.content == "</tool>,</answer>"
    assert values["actor_rollout_ref.agent.action_stop_tokens"] == str(run_dir / spec.path)
    # Written by the executor, the file is where the trainer looks.
    copy = Plan.from_dict({**plan.to_dict(), "run_dir": str(tmp_path / "run")})
    (tmp_path / "run" / "attempts" / "1").mkdir(parents=True)
    LocalExecutor(copy, 1).write_files()
    assert (tmp_path / "run" / spec.path).read_text() == "</tool>,</answer>"


def test_reward_function_file_imports_like_verl_does(paper: tuple[Plan, dict, Path]) -> None:
    """custom_reward_function.path is a file that imports by path and exposes custom_reward_function.name."""
    values = paper[1]
    path = Path(values["custom_reward_function.path"])
    assert path.is_absolute() and path.is_file()
    spec = importlib.util.spec_from_file_location("custom_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(getattr(module, values["custom_reward_function.name"]))


def resolved_reward(*overrides: str) -> dict:
    """The reward preset composed with `overrides`, resolved as our compute_score reads it."""
    config = compose_config("rl", ["recipe=qwen3_8b", *overrides]).config
    return spec_from_dict(OmegaConf.to_container(config.reward, resolve=True)).to_dict()


@pytest.mark.parametrize(
    "overrides",
    [[], ["reward=paper"], ["reward.components.answer.weight=2.0"], ["reward=answer_only"]],
    ids=["default", "paper", "answer-weight", "answer-only"],
)
def test_reward_kwargs_are_the_resolved_preset(overrides: list[str], tmp_path: Path, model_dir: Path) -> None:
    """custom_reward_function.reward_kwargs equal the chosen preset, fully resolved."""
    values = values_of("qwen3_8b", tmp_path, model_dir, *overrides)
    assert values["custom_reward_function.reward_kwargs"] == resolved_reward(*overrides)


def test_reward_kwargs_follow_the_reward_choice(tmp_path: Path, model_dir: Path) -> None:
    """A preset or a weight on the command line changes what the reward receives."""
    default = values_of("qwen3_8b", tmp_path, model_dir)["custom_reward_function.reward_kwargs"]
    paper = values_of("qwen3_8b", tmp_path, model_dir, "reward=paper")["custom_reward_function.reward_kwargs"]
    heavy = values_of("qwen3_8b", tmp_path, model_dir, "reward.components.answer.weight=2.0")[
        "custom_reward_function.reward_kwargs"]
    assert (default["preset"], paper["preset"]) == ("default", "paper")
    assert paper["components"] != default["components"]
    assert default["components"]["answer"]["weight"] == 1.0
    assert heavy["components"]["answer"]["weight"] == 2.0
    assert {**heavy["components"], "answer": default["components"]["answer"]} == default["components"]


@pytest.mark.parametrize(
    ("key", "folder"),
    [("trainer.default_local_dir", "checkpoints"), ("trainer.rollout_data_dir", "rollouts"),
     ("trainer.validation_data_dir", "validation")],
    ids=["checkpoints", "rollouts", "validation"],
)
def test_run_outputs_stay_in_the_run_dir(paper: tuple[Plan, dict, Path], key: str, folder: str) -> None:
    """Checkpoints, rollouts and validation generations are written inside the run directory."""
    assert paper[1][key] == str(paper[2] / folder)


def test_plan_outputs_are_in_the_run_dir(paper: tuple[Plan, dict, Path]) -> None:
    """The merged model and the checkpoints the Plan records are inside the run directory; the merge runs last."""
    plan, _, run_dir = paper
    assert plan.outputs == {"model": str(run_dir / "model"), "checkpoints": str(run_dir / "checkpoints")}
    assert [s.name for s in plan.after] == ["merge", "chat_template"]
    assert plan.after[0].argv[-1] == str(run_dir)


def test_tool_server_port_is_a_placeholder(paper: tuple[Plan, dict, Path]) -> None:
    """The trainer's tool URL, the server's --port and its readiness check share `{{free_port:tool}}`."""
    plan, values, run_dir = paper
    tool = service(plan, "tool_server")
    assert values["actor_rollout_ref.agent.tool_server_url"] == "http://127.0.0.1:{{free_port:tool}}/get_observation"
    assert tool.argv[tool.argv.index("--port") + 1] == "{{free_port:tool}}"
    assert tool.ready.http_url == "http://127.0.0.1:{{free_port:tool}}/health"
    assert tool.argv[1:3] == ["-m", "tools.environment.serve_tool"]
    assert tool.env[rl.ENV_VAR] == str(run_dir / rl.TOOL_CONFIG)


def test_tool_config_points_at_the_served_vlm(paper: tuple[Plan, dict, Path]) -> None:
    """rl/tool.json is resolved by the executor and asks the Plan's VLM, under rl.vlm.model."""
    spec = file_of(paper[0], rl.TOOL_CONFIG)
    assert spec.resolve
    vlm = json.loads(spec.content)["default"]["vlm"]
    assert vlm["base_url"] == "http://127.0.0.1:{{free_port:vlm}}/v1"
    assert vlm["model"] == "Qwen/Qwen3-VL-32B-Instruct"
    assert service(paper[0], "vlm").ready.http_url == "http://127.0.0.1:{{free_port:vlm}}/health"


def test_tool_config_and_vlm_service_resolve_to_the_same_port(paper: tuple[Plan, dict, Path], tmp_path: Path) -> None:
    """Once the executor writes rl/tool.json, its VLM port is the port `vllm serve` is started on."""
    copy = Plan.from_dict({**paper[0].to_dict(), "run_dir": str(tmp_path)})
    (tmp_path / "attempts" / "1").mkdir(parents=True)
    executor = LocalExecutor(copy, 1)
    executor.write_files()
    written = json.loads((tmp_path / rl.TOOL_CONFIG).read_text())["default"]["vlm"]["base_url"]
    argv = [resolve_placeholders(arg, executor.resolve) for arg in service(copy, "vlm").argv]
    assert written == f"http://127.0.0.1:{argv[argv.index('--port') + 1]}/v1"


def test_vlm_model_follows_rl_vlm_model(tmp_path: Path, model_dir: Path) -> None:
    """rl.vlm.model names the served model and the model the tool asks."""
    plan, _ = build("qwen3_8b", tmp_path / "run", model_dir, "rl.vlm.model=Org/Other-VL")
    assert json.loads(file_of(plan, rl.TOOL_CONFIG).content)["default"]["vlm"]["model"] == "Org/Other-VL"
    vlm = service(plan, "vlm")
    assert vlm.argv[2] == "Org/Other-VL"
    assert vlm.argv[vlm.argv.index("--served-model-name") + 1] == "Org/Other-VL"


def test_unserved_vlm_keeps_the_configured_endpoint(tmp_path: Path, model_dir: Path) -> None:
    """With rl.vlm.serve=false there is no vlm service and the tool keeps tool.default.vlm."""
    overrides = ("rl.vlm.serve=false", "tool.default.vlm.base_url=http://10.0.0.9:8000/v1", "tool.default.vlm.model=M")
    plan, _ = build("qwen3_8b", tmp_path / "run", model_dir, *overrides)
    assert [s.name for s in plan.services] == ["tool_server"]
    vlm = json.loads(file_of(plan, rl.TOOL_CONFIG).content)["default"]["vlm"]
    assert (vlm["base_url"], vlm["model"]) == ("http://10.0.0.9:8000/v1", "M")
    assert "{{free_port:vlm}}" not in file_of(plan, rl.TOOL_CONFIG).content


def test_unserved_vlm_default_endpoint_is_kept(tmp_path: Path, model_dir: Path) -> None:
    """rl.vlm.serve=false with the default tool settings keeps configs/tool/default.yaml's base_url."""
    plan, _ = build("qwen3_8b", tmp_path / "run", model_dir, "rl.vlm.serve=false")
    config = compose_config("rl", ["recipe=qwen3_8b"]).config
    vlm = json.loads(file_of(plan, rl.TOOL_CONFIG).content)["default"]["vlm"]
    assert vlm["base_url"] == config.tool.default.vlm.base_url


def test_a_source_with_its_own_endpoint_keeps_it(tmp_path: Path, model_dir: Path) -> None:
    """A tool.sources entry with its own VLM endpoint is not redirected to the served VLM; one without is."""
    sources = "+tool.sources={own:{vlm:{base_url:'http://10.0.0.2:9000/v1'}},plain:{caption_dir:/c}}"
    plan, _ = build("qwen3_8b", tmp_path / "run", model_dir, sources)
    written = json.loads(file_of(plan, rl.TOOL_CONFIG).content)["sources"]
    assert written["own"]["vlm"]["base_url"] == "http://10.0.0.2:9000/v1"
    assert written["plain"]["vlm"]["base_url"] == "http://127.0.0.1:{{free_port:vlm}}/v1"


def test_report_to_console_logs_to_console_only(tmp_path: Path, model_dir: Path) -> None:
    """rl.report_to=console sets trainer.logger to console and no W&B environment."""
    plan, values = build("qwen3_8b", tmp_path / "run", model_dir, "rl.report_to=console")
    assert values["trainer.logger"] == ["console"]
    assert not [name for name in plan.main.env if name.startswith("WANDB")]


# ---------------------------------------------------------------- the other recipes


def test_qwen2_5_7b_trains_a_lora_actor(tmp_path: Path, model_dir: Path) -> None:
    """qwen2_5_7b renders LoRA rank 64 (alpha 128, all linear layers) on 2 trainer GPUs, VLM on 2,3."""
    plan, values = build("qwen2_5_7b", tmp_path / "run", model_dir)
    assert values["actor_rollout_ref.model.lora_rank"] == 64
    assert values["actor_rollout_ref.model.lora_alpha"] == 128
    assert values["actor_rollout_ref.model.target_modules"] == "all-linear"
    assert values["trainer.n_gpus_per_node"] == 2
    assert plan.main.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert service(plan, "vlm").env["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_qwen3_8b_renders_no_lora_key(paper: tuple[Plan, dict, Path]) -> None:
    """Full fine-tuning sets no LoRA key at all."""
    assert not [key for key in paper[1] if "lora" in key or key.endswith("target_modules")]


def test_tiny_renders_for_one_gpu_with_a_data_build(tmp_path: Path, model_dir: Path) -> None:
    """tiny trains on one GPU, serves no VLM, and builds the demo RL parquet first (skipped once it exists)."""
    plan, values = build("tiny", tmp_path / "run", model_dir)
    assert values["trainer.n_gpus_per_node"] == 1
    assert plan.main.env["CUDA_VISIBLE_DEVICES"] == "0"
    assert [s.name for s in plan.services] == ["tool_server"]
    [step] = plan.before
    assert step.name == "build_rl_data"
    assert step.argv[1:3] == ["-m", "tools.demo.world"]
    assert step.skip_if_exists == values["data.train_files"]
    assert step.argv[step.argv.index("--rl-output") + 1] == str(Path(values["data.train_files"]).parent)
    assert step.argv[step.argv.index("--max-turns") + 1] == str(values["actor_rollout_ref.agent.max_turns"])
    assert values["data.train_files"] == str(tmp_path / "cache" / "demo" / "rl-t15" / "train.parquet")


@pytest.mark.parametrize("recipe", ["qwen3_8b", "qwen3_4b", "qwen2_5_7b"])
def test_recipes_without_a_build_step_build_nothing(recipe: str, tmp_path: Path, model_dir: Path) -> None:
    """A recipe that reads existing parquet has no step before training."""
    assert build(recipe, tmp_path / "run", model_dir)[0].before == []


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["rl.learning_rat=1"], ["rl.learning_rat"]),
        (["rl.train_batch_size=abc"], ["train_batch_size", "abc"]),
        (["rl.algorithm=ppo"], ["rl.algorithm", "ppo", "grpo"]),
        (["rl.kl_loss_type=kl2"], ["rl.kl_loss_type", "kl2"]),
        (["rl.temperature=0"], ["rl.temperature"]),
        (["rl.learning_rate=0"], ["rl.learning_rate"]),
        (["rl.report_to=wandb"], ["rl.report_to=wandb", "WANDB_API_KEY"]),
        (["rl.train_batch_size=12", "rl.ppo_mini_batch_size=5"],
         ["data.train_batch_size=12", "ppo_mini_batch_size=5", "rl.ppo_mini_batch_size"]),
        (["rl.train_batch_size=5", "rl.ppo_mini_batch_size=5", "rl.rollouts_per_prompt=2"],
         ["5 * 2 = 10", "6 training GPUs", "trainer.n_gpus_per_node"]),
        (["rl.ulysses_sequence_parallel_size=4"], ["ulysses_sequence_parallel_size", "4"]),
        (["rl.rollout_tensor_parallel_size=4"], ["tensor_model_parallel_size=4", "trainer.n_gpus_per_node=6"]),
        (["rl.trainer_gpus=7"], ["rl.trainer_gpus=7", "rl.vlm.gpus=[6, 7]", "launcher.gpus_per_node=8"]),
        (["rl.vlm.gpus=[6,8]"], ["rl.vlm.gpus=[6, 8]", "0..7"]),
        (["rl.vlm.gpus=[6,6]"], ["rl.vlm.gpus=[6, 6]", "distinct"]),
        (["rl.vlm.gpus=[]"], ["rl.vlm.gpus", "rl.vlm.serve=false"]),
        (["rl.tool_call_timeout=120"], ["tool_call_timeout=120", "rl.tool_call_timeout",
                                        "tool.default.vlm.timeout_s=120.0"]),
        (["tool.default.vlm.timeout_s=300"], ["tool_call_timeout=180", "tool.default.vlm.timeout_s=300.0"]),
        (["+rl.trainer_overrides.trainer.n_gpu_per_node=6"], ["trainer.n_gpu_per_node", "trainer.n_gpus_per_node"]),
        (["+rl.trainer_overrides.trainer.log_val_generations=ten"], ["trainer.log_val_generations", "expects int"]),
        (["+rl.trainer_overrides.actor_rollout_ref.actor.optim.lr=1e-5"],
         ["rl.trainer_overrides.actor_rollout_ref.actor.optim.lr", "this stage sets"]),
        (["+rl.trainer_overrides.actor_rollout_ref.agent.val_max_response_length=20000"],
         ["actor_rollout_ref.rollout.response_length=12288", "actor_rollout_ref.agent.val_max_response_length=20000"]),
        (["+rl.trainer_overrides.trainer={nope:1}"], ["trainer.nope"]),
        (["chat.observation_role=tool"], ["chat.observation_role=tool", "<tool_response>"]),
        (["rl.rollouts_per_prompt=1"], ["rl.rollouts_per_prompt=1", "GRPO"]),
        (["reward.components.answer.weight=heavy"], ["answer", "weight"]),
    ],
    ids=["typo", "wrong-type", "algorithm", "kl-loss-type", "temperature", "lr-zero", "wandb-without-key",
         "mini-batch-not-a-divisor", "trajectories-over-gpus", "ulysses-over-gpus", "rollout-tp", "too-many-gpus",
         "vlm-gpu-out-of-range", "vlm-gpu-twice", "vlm-no-gpus", "tool-timeout-equal", "vlm-timeout-above",
         "override-typo", "override-wrong-type", "override-stage-key", "val-response-longer", "override-unknown-nested",
         "observation-role-tool", "one-rollout-grpo", "reward-type"],
)
def test_invalid_config_is_named(overrides: list[str], named: list[str], tmp_path: Path, model_dir: Path) -> None:
    """Each invalid RL config raises ConfigError before anything starts, naming the key(s) at fault."""
    with pytest.raises(ConfigError) as error:
        build("qwen3_8b", tmp_path / "run", model_dir, *overrides)
    for part in named:
        assert part in str(error.value), str(error.value)


def test_a_valid_trainer_override_lands_in_the_main_command(tmp_path: Path, model_dir: Path) -> None:
    """rl.trainer_overrides passes a key the stage leaves alone to the trainer, checked like the rest."""
    override = "+rl.trainer_overrides.trainer.log_val_generations=10"
    plan, values = build("qwen3_8b", tmp_path / "run", model_dir, override)
    assert "trainer.log_val_generations=10" in plan.main.argv
    assert values["trainer.log_val_generations"] == 10
    assert "trainer.log_val_generations=10" in file_of(plan, rl.OVERRIDES_FILE).content.splitlines()


def test_dotted_and_nested_trainer_overrides_agree(tmp_path: Path, model_dir: Path) -> None:
    """A trainer override given nested or with a dotted key renders the same argument."""
    nested = build("qwen3_8b", tmp_path / "a", model_dir, "+rl.trainer_overrides={trainer:{log_val_generations:3}}")
    dotted = build("qwen3_8b", tmp_path / "b", model_dir, "+rl.trainer_overrides.trainer.log_val_generations=3")
    assert nested[1]["trainer.log_val_generations"] == dotted[1]["trainer.log_val_generations"] == 3


def test_a_shorter_val_response_is_accepted(tmp_path: Path, model_dir: Path) -> None:
    """agent.val_max_response_length up to rollout.response_length passes the cross-field rule."""
    values = values_of("qwen3_8b", tmp_path, model_dir,
                       "+rl.trainer_overrides.actor_rollout_ref.agent.val_max_response_length=12288")
    assert values["actor_rollout_ref.agent.val_max_response_length"] == 12288


def test_errors_exit_2_with_error_on_stderr(tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture) -> None:
    """In-process, a real run with an invalid config prints `error: ...` naming the key, exits 2, creates nothing."""
    run_root, data = tmp_path / "runs", tmp_path / "data"
    data.mkdir()
    for split in ("train", "val"):
        (data / f"{split}.parquet").write_bytes(b"")
    code, _, err = cli(["rl", "recipe=qwen3_8b", "rl.ppo_mini_batch_size=5", f"run_root={run_root}",
                        f"rl.model={model_dir}", f"rl.data.train_files={data / 'train.parquet'}",
                        f"rl.data.val_files={data / 'val.parquet'}"], capsys)
    assert code == 2
    last = err.splitlines()[-1]
    assert last.startswith("error: ") and "ppo_mini_batch_size=5" in last
    assert not run_root.exists()


def test_python_m_launch_reports_an_invalid_config(tmp_path: Path, model_dir: Path) -> None:
    """End to end: `python -m launch rl ... --dry-run` with a bad value exits 2 with `error:` on stderr."""
    result = launch("rl", "recipe=qwen3_8b", "--dry-run", "rl.vlm.gpus=[6,6]", f"rl.model={model_dir}",
                    f"run_root={tmp_path / 'runs'}", timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "rl.vlm.gpus=[6, 6]" in result.stderr
    assert "# Plan" not in result.stdout


def test_missing_parquet_is_an_error_only_for_a_real_run(tmp_path: Path, model_dir: Path) -> None:
    """A real run needs rl.data.train_files to exist (a dry run only prints); the message says how to build it."""
    missing = tmp_path / "nowhere" / "train.parquet"
    config = compose_config("rl", ["recipe=qwen3_8b", f"rl.model={model_dir}", f"rl.data.train_files={missing}",
                                   f"rl.data.val_files={missing.parent / 'val.parquet'}", "dry_run=false",
                                   f"run_root={tmp_path / 'runs'}"]).config
    with pytest.raises(ConfigError, match=f"rl.data.train_files={missing}: no such file.*launch rl_data"):
        rl.build_plan(config, tmp_path / "run", "qwen3_8b/run", sys.executable)


# ---------------------------------------------------------------- the demo RL data


@pytest.fixture(scope="module")
def demo_rl(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> tuple[Path, dict]:
    """The tiny Plan's build_rl_data step, run as the executor runs it; its output folder and the trainer values."""
    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LONGVIDEO_R1_CACHE", str(root / "cache"))
        plan, values = build("tiny", root / "runs" / "rl" / "tiny" / "run", model_dir)
    [step] = plan.before
    done = subprocess.run(step.argv, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert Path(step.skip_if_exists).is_file()
    return Path(values["data.train_files"]).parent, values


def test_demo_rl_data_has_both_splits(demo_rl: tuple[Path, dict]) -> None:
    """The build step writes the train and validation parquet the trainer reads."""
    folder, values = demo_rl
    assert Path(values["data.train_files"]).is_file() and Path(values["data.val_files"]).is_file()
    assert Path(values["data.val_files"]).parent == folder
    assert len(pd.read_parquet(values["data.train_files"])) > 0
    assert len(pd.read_parquet(values["data.val_files"])) > 0


def test_demo_rl_splits_share_no_video(demo_rl: tuple[Path, dict]) -> None:
    """Train and validation are split by video: no video_uid is in both."""
    videos = {split: {row["extra_info"]["video_uid"] for row in pd.read_parquet(demo_rl[0] / f"{split}.parquet")
                      .to_dict(orient="records")} for split in ("train", "val")}
    assert videos["train"] and videos["val"]
    assert not videos["train"] & videos["val"]


def test_demo_rl_prompts_state_the_turn_budget(demo_rl: tuple[Path, dict]) -> None:
    """Every row's system message states the recipe's turn budget, the same number as agent.max_turns."""
    budget = demo_rl[1]["actor_rollout_ref.agent.max_turns"]
    assert budget == TINY_MAX_TURNS
    for split in ("train", "val"):
        for row in pd.read_parquet(demo_rl[0] / f"{split}.parquet").to_dict(orient="records"):
            system = row["prompt"][0]
            assert system["role"] == "system"
            assert f"at most {budget} tool calls" in system["content"]


def test_demo_rl_report_counts_every_row(demo_rl: tuple[Path, dict]) -> None:
    """report.json counts the rows written to each split and no rejection."""
    report = json.loads((demo_rl[0] / "report.json").read_text())
    for split in ("train", "val"):
        assert report["rows"][split] == len(pd.read_parquet(demo_rl[0] / f"{split}.parquet"))
    assert report["rejected"] == 0
    assert (demo_rl[0] / "rejected.jsonl").read_text().strip() == ""
