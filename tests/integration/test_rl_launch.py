"""`python -m launch rl recipe=tiny` for real, with `vllm serve` the only stand-in (tests/fixtures/fake_vllm.py).

Each test runs the real launcher in a subprocess with an executable `vllm` first on PATH that serves
FakeVLM on the port it is given. Once the VLM is ready the launcher starts the real tool server
(verl-tool's server with our tool); the fail-fast, exit-code and secret tests SIGKILL it while it
starts, as the OOM killer would, which is how they reach a failed run before the trainer could start;
the signal tests stop the launcher while it still waits for a slow VLM. Every process the
launcher starts inherits a marker variable, so tests find and check (and at teardown kill) all of
them, grandchildren included, through /proc.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from launch.preflight_checks import NODE_GPUS_ENV
from launch.rundir import DONE_MARKER
from tests.conftest import PROJECT_ROOT
from tests.fixtures.fake_vllm import DELAY_ENV, STATE_ENV, write_vllm_executable
from tests.launch.test_local_executor import alive, still_alive

pytestmark = pytest.mark.slow

MARKER_ENV = "LONGVIDEO_R1_TEST_RL_LAUNCH"
# Generous readiness timeouts, so that "fails fast" cannot mean "waited for a timeout".
READY_TIMEOUT_S = 600
FAIL_FAST_S = 60
LAUNCH_TIMEOUT_S = 300
TOOL_SERVER_MODULE = "tools.environment.serve_tool"


def marked_pids(marker: str) -> list[int]:
    """Live processes (zombies excluded) whose environment holds MARKER_ENV=marker."""
    needle = f"{MARKER_ENV}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0") and alive(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def marked_left(marker: str, timeout_s: float = 10.0) -> list[int]:
    """The marked processes still alive after waiting up to `timeout_s` for none to be left."""
    deadline = time.monotonic() + timeout_s
    while marked_pids(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return marked_pids(marker)


def kill_tool_server_once_started(marker: str, process: subprocess.Popen, timeout_s: float = 120.0) -> int:
    """SIGKILL the launcher's tool server as soon as it runs (long before it can answer /health); its pid."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        for pid in marked_pids(marker):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if TOOL_SERVER_MODULE.encode() in argv:
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.01)
    pytest.fail(f"the launcher never started {TOOL_SERVER_MODULE} (exit code {process.poll()})")


def kill_marked(marker: str) -> None:
    """SIGKILL every live process carrying the marker (teardown after a failing test)."""
    for pid in marked_pids(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_for_file(path: Path, process: subprocess.Popen, timeout_s: float = 120.0) -> dict:
    """The JSON in `path` once it exists; fails with the launcher's output if it exits first."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"launcher exited with {process.returncode} before {path} appeared:\n"
                        f"{process.communicate()[0]}")
        assert time.monotonic() < deadline, f"timed out waiting for {path}"
        time.sleep(0.05)
    return json.loads(path.read_text())


@dataclass
class Env:
    """What a launch needs: its environment, its run root, its marker and where the fake vllm reports."""

    env: dict[str, str]
    run_root: Path
    marker: str
    state: Path
    model: Path


@pytest.fixture(scope="module")
def fake_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only the stand-in `vllm` executable."""
    if shutil.which("vllm", path=str(Path(sys.executable).parent)):
        # The launcher puts the interpreter's folder first on PATH: a real vllm there would win.
        pytest.skip(f"a real vllm is installed next to {sys.executable}; it would shadow the stand-in")
    return write_vllm_executable(tmp_path_factory.mktemp("bin")).parent


def make_env(tmp_path: Path, fake_bin: Path, cache: Path, **extra: str) -> Env:
    """The launcher's environment: the stand-in first on PATH, the tiny cache, a fresh marker."""
    marker = uuid.uuid4().hex
    state = tmp_path / "vllm.json"
    # The node's 2 GPUs are stand-ins too: the trainer, the only user of a real one, never starts.
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}",
           "LONGVIDEO_R1_CACHE": str(cache), MARKER_ENV: marker, STATE_ENV: str(state), NODE_GPUS_ENV: "2", **extra}
    return Env(env, tmp_path / "runs", marker, state, cache / "models" / "tiny-qwen3")


def rl_args(env: Env, *extra: str) -> list[str]:
    """`python -m launch rl recipe=tiny` serving its VLM with `vllm serve` on GPU 0 of 2, from the tiny model."""
    return [sys.executable, "-m", "launch", "rl", "recipe=tiny", f"run_root={env.run_root}",
            f"rl.model={env.model}", "vllm.backend=gpu", "rl.vlm.serve=true", "rl.vlm.gpus=[0]",
            "launcher.gpus_per_node=2", "rl.trainer_gpus=1", f"rl.vlm.ready_timeout_s={READY_TIMEOUT_S}",
            f"rl.tool_server.ready_timeout_s={READY_TIMEOUT_S}", *extra]


def start_launcher(env: Env, *extra: str) -> subprocess.Popen:
    """The launcher in a subprocess from the project root, stdout and stderr together."""
    return subprocess.Popen(rl_args(env, *extra), cwd=PROJECT_ROOT, env=env.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout_s: float = LAUNCH_TIMEOUT_S) -> str:
    """The launcher's output once it exits; killed (and the test failed) if it overruns."""
    try:
        return process.communicate(timeout=timeout_s)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"launcher still running after {timeout_s}s:\n{process.communicate()[0]}")


def run_dirs(run_root: Path) -> list[Path]:
    """The RL run directories under `run_root`."""
    return sorted(p for p in (run_root / "rl" / "tiny").glob("*") if p.is_dir())


def secrets() -> dict[str, str]:
    """Distinctive planted values for the VLM and W&B key variables."""
    return {"VLM_API_KEY": f"sk-planted-{uuid.uuid4().hex}", "WANDB_API_KEY": f"sk-planted-{uuid.uuid4().hex}"}


def leaks(output: str, root: Path, values: list[str]) -> list[str]:
    """Where any of `values` appears: in `output`, or in the name or bytes of a file under `root`."""
    found = [f"output contains {v}" for v in values if v in output]
    for folder, _, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            data = str(path).encode() + b"\0" + path.read_bytes()
            found += [f"{path} contains {v}" for v in values if v.encode() in data]
    return found


@dataclass
class FailedRun:
    """A finished real launch whose tool server was killed while it started, after the VLM got ready."""

    code: int
    output: str
    elapsed_s: float
    env: Env
    run_dir: Path
    vllm: dict
    left: list[int]
    marked_left: list[int]
    secrets: dict[str, str]


@pytest.fixture(scope="module")
def failed_run(tiny_cache: Path, fake_bin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FailedRun]:
    """One real `launch rl` run with planted secrets and W&B on, where the tool server is SIGKILLed."""
    planted = secrets()
    env = make_env(tmp_path_factory.mktemp("failed_run"), fake_bin, tiny_cache, **planted)
    try:
        start = time.monotonic()
        process = start_launcher(env, "rl.report_to=wandb")
        kill_tool_server_once_started(env.marker, process)
        output = finish(process, timeout_s=2 * FAIL_FAST_S)
        elapsed = time.monotonic() - start
        (run_dir,) = run_dirs(env.run_root)
        vllm = json.loads(env.state.read_text()) if env.state.exists() else {}
        left = still_alive([vllm[k] for k in ("pid", "child_pid") if k in vllm])
        yield FailedRun(process.returncode, output, elapsed, env, run_dir, vllm, left, marked_left(env.marker),
                        planted)
    finally:
        kill_marked(env.marker)


def test_a_dying_tool_server_fails_the_run_fast_naming_its_log(failed_run: FailedRun) -> None:
    """The VLM gets ready, the tool server dies: a FAILED line naming tool_server's log, fast, nothing left."""
    run, run_dir = failed_run, failed_run.run_dir
    assert run.code != 0, run.output
    assert run.elapsed_s < FAIL_FAST_S, f"took {run.elapsed_s:.0f}s:\n{run.output}"
    assert run.vllm, f"the stand-in vllm never started:\n{run.output}"
    assert "[launch] service vlm is ready" in run.output
    log = run_dir / "logs" / "tool_server.0.log"
    failed = [line for line in run.output.splitlines() if line.startswith("[launch] FAILED")]
    assert len(failed) == 1, run.output
    assert "tool_server exited with -9" in failed[0] and str(log) in failed[0], failed[0]
    assert "step train" not in run.output, "the trainer started although the tool server never got ready"
    assert "GET /health" in (run_dir / "logs" / "vlm.0.log").read_text()
    assert not (run_dir / DONE_MARKER).exists()
    assert run.left == [], "the stand-in vllm or its engine child outlived the launcher"
    assert run.marked_left == [], "processes the launcher started outlived it"


def test_a_failed_run_exits_non_zero_and_keeps_its_rendered_files(failed_run: FailedRun) -> None:
    """The failure's exit code reaches the shell; the run dir holds the config, the Plan and the resolved files."""
    run, run_dir = failed_run, failed_run.run_dir
    assert run.code not in (0, None) and "Traceback" not in run.output, run.output
    assert not (run_dir / DONE_MARKER).exists()
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "attempts" / "0" / "plan.yaml").is_file()
    tool_json = (run_dir / "rl" / "tool.json").read_text()
    assert "{{" not in tool_json
    vlm = json.loads(tool_json)["default"]["vlm"]
    assert vlm["base_url"] == f"http://127.0.0.1:{run.vllm['port']}/v1"
    assert vlm["model"] == run.vllm["argv"][1]
    assert (run_dir / "rl" / "action_stop_tokens.txt").read_text().strip() == "</tool>,</answer>"
    overrides = (run_dir / "rl" / "trainer_overrides.txt").read_text().splitlines()
    assert any(re.fullmatch(r"actor_rollout_ref\.agent\.tool_server_url='http://127\.0\.0\.1:\d+/get_observation'",
                            line) for line in overrides), overrides
    assert "{{" not in "\n".join(overrides)
    assert [line for line in overrides if line.startswith("actor_rollout_ref.model.path=")] == [
        f"actor_rollout_ref.model.path='{run.env.model}'"]
    # The VLM got the GPUs the recipe gave it, not the trainer's.
    assert run.vllm["cuda_visible_devices"] == "0"


def test_secrets_never_reach_a_real_runs_output_or_files(failed_run: FailedRun) -> None:
    """The planted VLM and W&B keys appear nowhere in a real run's output or files; their variable names do."""
    run = failed_run
    assert leaks(run.output, run.env.run_root, list(run.secrets.values())) == []
    tool = json.loads((run.run_dir / "rl" / "tool.json").read_text())
    assert tool["default"]["vlm"]["api_key_env"] == "VLM_API_KEY"
    assert "api_key_env: WANDB_API_KEY" in (run.run_dir / "config.yaml").read_text()


def test_secrets_never_reach_a_dry_runs_output(tiny_cache: Path, fake_bin: Path, tmp_path: Path) -> None:
    """A dry run with W&B on (accepted: its key is set) prints neither planted key, only the variables' names."""
    planted = secrets()
    env = make_env(tmp_path, fake_bin, tiny_cache, **planted)
    result = subprocess.run([*rl_args(env, "rl.report_to=wandb"), "--dry-run"], cwd=PROJECT_ROOT, env=env.env,
                            capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "trainer.logger=['console','wandb']" in output
    assert leaks(output, tmp_path, list(planted.values())) == []
    # rl/tool.json, printed with the Plan, names the VLM key's variable; the config names W&B's.
    assert '"api_key_env": "VLM_API_KEY"' in output and "api_key_env: WANDB_API_KEY" in output
    assert not env.run_root.exists()


@pytest.fixture
def bystander(fake_bin: Path, tmp_path: Path) -> Iterator[dict]:
    """A `vllm serve` of the same user that the launcher did not start (its state: pid, child_pid)."""
    state = tmp_path / "bystander.json"
    env = {**os.environ, STATE_ENV: str(state)}
    process = subprocess.Popen([str(fake_bin / "vllm"), "serve", "bystander", "--port", "0"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield wait_for_file(state, process, timeout_s=60)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_vlm_loads_stops_all_it_started_and_nothing_else(
        tiny_cache: Path, fake_bin: Path, tmp_path: Path, bystander: dict, sig: int, code: int) -> None:
    """A signal while the launcher waits for `vllm serve` exits 128+N, stops vllm and its child, spares others."""
    env = make_env(tmp_path, fake_bin, tiny_cache, **{DELAY_ENV: "3600"})
    process = start_launcher(env)
    try:
        vllm = wait_for_file(env.state, process)
        assert process.poll() is None
        process.send_signal(sig)
        output = finish(process, timeout_s=90)
        assert process.returncode == code, output
        assert f"received signal {int(sig)}" in output
        assert still_alive([vllm["pid"], vllm["child_pid"]]) == [], output
        assert marked_left(env.marker) == [], output
        spared = alive(bystander["pid"]) and alive(bystander["child_pid"])
        assert spared, "the launcher stopped a `vllm serve` it did not start"
        (run_dir,) = run_dirs(env.run_root)
        assert not (run_dir / DONE_MARKER).exists()
        assert "service tool_server" not in output and not (run_dir / "logs" / "tool_server.0.log").exists()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        kill_marked(env.marker)
