"""`python -m launch`: help, argument errors, dry runs of every recipe, sweeps, resume and W&B secrets."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import yaml

from launch.cli import main
from launch.compose import CONFIG_DIR, recipe_names
from launch.plan import Plan
from launch.stages import STAGES, Stage, register
from launch.stages.agent_config import benchmark_names
from rewards.spec import preset_names
from tests.conftest import dry_run_in_fresh_interpreter, launch
from tools.builders.chat_template import TEMPLATE_NAMES

PLANTED_KEY = "wandb-planted-0123456789abcdef-secret"


@dataclass
class Result:
    """Exit code and output of one in-process `main(argv)` call."""

    code: int
    out: str
    err: str


def run_main(*argv: str, env: dict[str, str] | None = None) -> Result:
    """Call launch.cli.main in this process (fast) with `env` set, capturing stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return Result(code, out.getvalue(), err.getvalue())


def blocks(output: str, header: str) -> list[str]:
    """The YAML blocks of a dry run's output that follow lines starting with `header`."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(header):
            current = []
            found.append(current)
        elif line.startswith(("# ", "[launch]")):
            current = None
        elif current is not None:
            current.append(line)
    return ["\n".join(lines) for lines in found]


def plans(output: str) -> list[Plan]:
    """Every Plan a dry run printed."""
    return [Plan.from_yaml(text) for text in blocks(output, "# Plan")]


def rendered(plan: Plan, path: str) -> dict:
    """A YAML file the Plan would write, parsed."""
    return yaml.safe_load(next(f.content for f in plan.files if f.path == path))


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """An environment without a W&B key and with a private cache, so dry runs are deterministic."""
    return {"WANDB_API_KEY": "", "LONGVIDEO_R1_CACHE": str(tmp_path / "cache")}


@pytest.fixture(scope="module")
def paper_plan(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    """The dry-run Plan of recipe qwen3_8b (the paper's recipe), without a W&B key."""
    root = tmp_path_factory.mktemp("paper")
    result = run_main("sft", "recipe=qwen3_8b", "--dry-run", f"run_root={root / 'runs'}",
                      env={"WANDB_API_KEY": "", "LONGVIDEO_R1_CACHE": str(root / "cache")})
    assert result.code == 0, result.err
    (plan,) = plans(result.out)
    return plan


def test_help_lists_every_stage_and_recipe() -> None:
    """`python -m launch --help` exits 0 and names every stage and every recipe."""
    result = launch("--help")
    assert result.returncode == 0
    for name in [*STAGES, *recipe_names()]:
        assert name in result.stdout
    assert "--dry-run" in result.stdout


@pytest.mark.parametrize("argv", [[], ["-h"], ["help"]])
def test_every_way_of_asking_for_help_prints_usage(argv: list[str]) -> None:
    """No arguments, -h or help print the usage and return 0 (`STAGE --help`: tests/launch/test_stage_help.py)."""
    result = run_main(*argv)
    assert result.code == 0
    assert result.out.startswith("usage: python -m launch STAGE")


def test_help_lists_every_benchmark_and_reward_preset() -> None:
    """The help reads the registries: every configs/benchmark/ and configs/reward/ file is named."""
    result = run_main("--help")
    assert f"(benchmark=NAME): {', '.join(benchmark_names())}" in result.out
    assert f"(reward=NAME): {', '.join(preset_names())}" in result.out


def test_a_second_stage_under_a_registered_name_is_refused() -> None:
    """The stage registry refuses a duplicate, naming it, and keeps the first."""
    first = STAGES["sft"]
    with pytest.raises(ValueError, match="stage 'sft' is already registered"):
        register(Stage("sft", "another", first.build_plan))
    assert STAGES["sft"] is first


@pytest.mark.parametrize("stage", ["sft", "sft_data", "eval"])
def test_a_chat_template_no_checkpoint_can_carry_fails_the_dry_run(stage: str, tmp_path: Path) -> None:
    """chat.template=qwen3 (LLaMA-Factory knows it; our checkpoints cannot carry it) exits 2 at --dry-run,
    naming the key and the templates that work, before any training."""
    result = run_main(stage, "recipe=tiny", "chat.template=qwen3", "benchmark=demo", "sft_data.input=/x",
                      f"run_root={tmp_path / 'runs'}", "--dry-run")
    assert result.code == 2
    assert f"chat.template='qwen3' is not one of: {', '.join(TEMPLATE_NAMES)}" in result.err
    assert not (tmp_path / "runs").exists()


def test_unknown_stage_exits_2_naming_the_valid_stages() -> None:
    """A stage that does not exist exits 2 (through the real entry point) listing the valid stages."""
    result = launch("train", "recipe=tiny")
    assert result.returncode == 2
    assert "unknown stage 'train'" in result.stderr
    assert f"valid stages: {', '.join(STAGES)}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sft", "recipe=tiny", "--dryrun"], "unknown option '--dryrun'"),
        (["sft", "recipe=tiny", "-x"], "unknown option '-x'"),
        (["-m", "sft"], "unknown stage '-m'"),
        (["sft", "recipe=nope", "--dry-run"], "tiny"),
        (["sft", "--dry-run"], "recipe"),
        (["sft", "recipe=tiny", "sft.lerning_rate=1", "--dry-run"], "did you mean sft.learning_rate?"),
        (["sft", "recipe=tiny", "sft.precision=fp8", "--dry-run"], "sft.precision='fp8'"),
        (["sft", "recipe=tiny", "name=a/b", "--dry-run"], "not a valid directory name"),
        (["sft", "recipe=tiny", "resume=true", "--dry-run"], "resume=true needs name="),
        (["sft", "recipe=tiny", "resume=true"], "resume=true needs name="),
    ],
)
def test_bad_command_lines_exit_2_with_a_message(argv: list[str], message: str, env: dict[str, str],
                                                 tmp_path: Path) -> None:
    """Unknown options, stages, recipes and keys, bad values and resume without name exit 2 with a message."""
    result = run_main(*argv, f"run_root={tmp_path / 'runs'}", env=env)
    assert result.code == 2
    assert result.err.startswith("error: ")
    assert message in result.err
    assert not (tmp_path / "runs").exists()


def test_tiny_dry_run_prints_config_and_plan_and_creates_nothing(run_root: Path, tmp_path: Path) -> None:
    """`sft recipe=tiny --dry-run` exits 0, prints the config and the Plan, and creates no directory."""
    result = launch("sft", "recipe=tiny", "--dry-run", f"run_root={run_root}",
                    env={"LONGVIDEO_R1_CACHE": str(tmp_path / "cache"), "WANDB_API_KEY": ""})
    assert result.returncode == 0, result.stderr
    (config,) = blocks(result.stdout, "# composed config")
    assert yaml.safe_load(config)["sft"]["cutoff_len"] == 2048
    (plan,) = plans(result.stdout)
    assert plan.run_dir.startswith(str(run_root / "sft" / "tiny"))
    train = rendered(plan, "llamafactory/train.yaml")
    assert train["template"] == "qwen3_nothink"
    assert train["stage"] == "sft"
    assert "mask_history" not in train
    assert "mask_history" not in result.stdout
    # A CPU recipe hides GPUs from training.
    assert plan.main.env == {"CUDA_VISIBLE_DEVICES": ""}
    assert not run_root.exists()
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["sft", "recipe=tiny", "--dry-run"],
        ["sft", "recipe=qwen3_8b", "--dry-run"],
        ["rl", "recipe=qwen3_8b", "--dry-run"],
        ["rl", "recipe=tiny", "--dry-run"],
    ],
    ids=["sft-tiny", "sft-qwen3_8b", "rl-qwen3_8b", "rl-tiny"],
)
def test_dry_run_imports_no_training_stack(argv: list[str], run_root: Path) -> None:
    """A dry run (in a fresh interpreter) imports neither torch, transformers, llamafactory, verl nor deepspeed."""
    _, heavy = dry_run_in_fresh_interpreter([*argv, f"run_root={run_root}"], env={"WANDB_API_KEY": ""})
    assert heavy == []


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("stage", "sft"),
        ("finetuning_type", "full"),
        ("template", "qwen3_nothink"),
        ("cutoff_len", 24576),
        ("learning_rate", 1e-5),
        ("lr_scheduler_type", "cosine"),
        ("warmup_ratio", 0.1),
        ("num_train_epochs", 3.0),
        ("max_steps", -1),
        ("per_device_train_batch_size", 8),
        ("gradient_accumulation_steps", 4),
        ("bf16", True),
        ("enable_liger_kernel", True),
        ("deepspeed", str(CONFIG_DIR / "deepspeed" / "z3.json")),
        ("model_name_or_path", "Qwen/Qwen3-8B"),
    ],
)
def test_paper_recipe_renders_the_papers_values(paper_plan: Plan, key: str, expected: object) -> None:
    """qwen3_8b's LLaMA-Factory YAML carries the paper's SFT hyper-parameters."""
    assert rendered(paper_plan, "llamafactory/train.yaml")[key] == expected


def test_paper_recipe_has_no_contrary_flags(paper_plan: Plan) -> None:
    """No fp16/fp32 switch, no mask_history, gradient checkpointing on, and a ZeRO-3 JSON that exists."""
    train = rendered(paper_plan, "llamafactory/train.yaml")
    assert not {"fp16", "mask_history", "disable_gradient_checkpointing", "lora_rank"} & set(train)
    assert json.loads(Path(train["deepspeed"]).read_text())["zero_optimization"]["stage"] == 3


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("FORCE_TORCHRUN", "1"),
        ("NPROC_PER_NODE", "8"),
        ("NNODES", "{{nnodes}}"),
        ("NODE_RANK", "{{node_rank}}"),
        ("MASTER_ADDR", "{{head_addr}}"),
        ("MASTER_PORT", "{{free_port:master}}"),
    ],
)
def test_paper_recipe_trains_through_torchrun(paper_plan: Plan, var: str, value: str) -> None:
    """The train step's environment launches torchrun on 8 GPUs, node values left as placeholders."""
    assert paper_plan.main.env[var] == value


def test_paper_recipe_plan_shape(paper_plan: Plan) -> None:
    """Full fine-tune: validate, train, chat_template; the output model is the checkpoint dir."""
    assert [s.name for s in paper_plan.steps()] == ["validate", "train", "chat_template"]
    assert paper_plan.main.argv == ["llamafactory-cli", "train", "llamafactory/train.yaml"]
    assert paper_plan.outputs["model"] == f"{paper_plan.run_dir}/checkpoints"
    assert (paper_plan.resources.nodes, paper_plan.resources.gpus_per_node) == (1, 8)


def test_lora_recipe_merges_before_the_chat_template(env: dict[str, str], tmp_path: Path) -> None:
    """qwen2_5_7b (LoRA) merges the adapter before chat_template, and its output model is the merged dir."""
    result = run_main("sft", "recipe=qwen2_5_7b", "--dry-run", f"run_root={tmp_path / 'runs'}", env=env)
    assert result.code == 0, result.err
    (plan,) = plans(result.out)
    assert [s.name for s in plan.after] == ["merge_lora", "chat_template"]
    merged = f"{plan.run_dir}/model"
    assert plan.outputs["model"] == merged
    template = plan.after[1].argv
    assert template[template.index("--model") + 1] == merged
    assert rendered(plan, "llamafactory/export.yaml")["export_dir"] == merged
    train = rendered(plan, "llamafactory/train.yaml")
    assert (train["finetuning_type"], train["lora_rank"], train["lora_target"]) == ("lora", 64, "all")
    assert train["deepspeed"].endswith("deepspeed/z2.json")


def test_multirun_dry_run_prints_one_plan_per_point(env: dict[str, str], tmp_path: Path) -> None:
    """`-m sft.learning_rate=1e-4,2e-4 --dry-run` prints two Plans in one sweep dir and creates nothing."""
    root = tmp_path / "runs"
    result = run_main("sft", "recipe=tiny", "-m", "sft.learning_rate=1e-4,2e-4", "--dry-run", f"run_root={root}",
                      env=env)
    assert result.code == 0, result.err
    points = plans(result.out)
    assert len(points) == 2
    assert [rendered(p, "llamafactory/train.yaml")["learning_rate"] for p in points] == [1e-4, 2e-4]
    dirs = [Path(p.run_dir) for p in points]
    assert [d.name for d in dirs] == ["0", "1"] and dirs[0].parent == dirs[1].parent
    assert "2 of 2 points were printed" in result.out
    assert not root.exists()


def test_resume_of_a_missing_run_exits_2_and_creates_nothing(env: dict[str, str], tmp_path: Path) -> None:
    """`resume=true name=ghost` (not a dry run) exits 2 before anything is created or started."""
    root = tmp_path / "runs"
    result = run_main("sft", "recipe=tiny", "resume=true", "name=ghost", f"run_root={root}", env=env)
    assert result.code == 2
    assert "no run to resume" in result.err
    assert not (root / "sft" / "tiny" / "ghost").exists()


def test_existing_run_name_exits_2_and_leaves_the_run_alone(env: dict[str, str], tmp_path: Path) -> None:
    """Reusing a run name without resume=true exits 2 and suggests resume=true; the old run is untouched."""
    run_dir = tmp_path / "runs" / "sft" / "tiny" / "taken"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("old\n")
    result = run_main("sft", "recipe=tiny", "name=taken", f"run_root={tmp_path / 'runs'}", env=env)
    assert result.code == 2
    assert "resume=true" in result.err
    assert [p.name for p in run_dir.iterdir()] == ["config.yaml"]


def test_existing_sweep_name_exits_2_and_leaves_the_sweep_alone(env: dict[str, str], tmp_path: Path) -> None:
    """A multirun under an existing sweep name (without resume) exits 2 before any point runs."""
    sweep_dir = tmp_path / "runs" / "sft" / "tiny" / "sweep1"
    (sweep_dir / "0").mkdir(parents=True)
    result = run_main("sft", "recipe=tiny", "name=sweep1", "-m", "sft.learning_rate=1e-4,2e-4",
                      f"run_root={tmp_path / 'runs'}", env=env)
    assert result.code == 2
    assert "already exists" in result.err and "resume=true" in result.err
    assert [p.name for p in sweep_dir.iterdir()] == ["0"]


@pytest.mark.parametrize(
    ("key", "report_to", "expected_report_to", "expected_env"),
    [
        (PLANTED_KEY, "auto", "wandb", {"WANDB_PROJECT": "longvideo-r1", "WANDB_DIR": "."}),
        ("", "auto", "wandb", {"WANDB_PROJECT": "longvideo-r1", "WANDB_DIR": ".", "WANDB_MODE": "offline"}),
        (PLANTED_KEY, "offline", "wandb", {"WANDB_PROJECT": "longvideo-r1", "WANDB_DIR": ".",
                                           "WANDB_MODE": "offline"}),
        (PLANTED_KEY, "none", "none", {}),
    ],
)
def test_wandb_settings_never_carry_the_key(key: str, report_to: str, expected_report_to: str,
                                            expected_env: dict[str, str], tmp_path: Path) -> None:
    """report_to picks online/offline W&B from the key's presence; the key never reaches output or Plan."""
    result = run_main("sft", "recipe=tiny", f"sft.report_to={report_to}", "--dry-run",
                      f"run_root={tmp_path / 'runs'}",
                      env={"WANDB_API_KEY": key, "LONGVIDEO_R1_CACHE": str(tmp_path / "cache")})
    assert result.code == 0, result.err
    assert PLANTED_KEY not in result.out + result.err
    (plan,) = plans(result.out)
    assert rendered(plan, "llamafactory/train.yaml")["report_to"] == expected_report_to
    wandb_env = {k: v for k, v in plan.main.env.items() if k.startswith("WANDB")}
    assert wandb_env == expected_env
    assert all(PLANTED_KEY not in value for step in plan.steps() for value in step.env.values())


def test_wandb_without_a_key_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    """`sft.report_to=wandb` without $WANDB_API_KEY exits 2 naming the variable and the alternatives."""
    result = run_main("sft", "recipe=tiny", "sft.report_to=wandb", "--dry-run", f"run_root={tmp_path / 'runs'}",
                      env={"WANDB_API_KEY": "", "LONGVIDEO_R1_CACHE": str(tmp_path / "cache")})
    assert result.code == 2
    assert "sft.report_to=wandb but $WANDB_API_KEY is not set" in result.err
    assert "offline" in result.err


def test_secret_extra_args_do_not_leak_into_the_printed_plan(env: dict[str, str], tmp_path: Path) -> None:
    """A secret passed through extra_args (hub_token) is refused, and appears nowhere in the output."""
    result = run_main("sft", "recipe=tiny", f"+sft.extra_args.hub_token={PLANTED_KEY}", "--dry-run",
                      f"run_root={tmp_path / 'runs'}", env=env)
    assert result.code == 2 and "sft.extra_args.hub_token looks like a secret" in result.err
    assert PLANTED_KEY not in result.out + result.err


@pytest.mark.parametrize("below", ["", "runs"])
def test_run_root_that_is_a_file_exits_2_naming_it(env: dict[str, str], tmp_path: Path, below: str) -> None:
    """run_root=FILE (or a path below a file) exits 2 with a clear message instead of a traceback."""
    (tmp_path / "file").write_text("")
    root = tmp_path / "file" / below if below else tmp_path / "file"
    for extra in ([], ["resume=true"]):
        result = run_main("audit", "name=x", f"run_root={root}", *extra, env=env)
        assert result.code == 2, result.err
        assert f"run_root={root} is a file" in result.err and "expected a directory" in result.err
        assert "Traceback" not in result.err
    assert (tmp_path / "file").read_text() == ""
