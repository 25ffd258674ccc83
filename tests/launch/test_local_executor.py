"""The local executor on small Python commands: order, env, failures, logs, services and signals."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from launch.local import LocalExecutor
from launch.plan import FileSpec, Plan, ReadyCheck, Service, Step
from launch.rundir import DONE_MARKER
from tests.conftest import PROJECT_ROOT

PY = sys.executable

# A process that writes its pid to NAME.pid (atomically), starts `proc.py REST...` if REST is given, and sleeps.
PROC_PY = """\
import os, subprocess, sys, time
name, rest = sys.argv[1], sys.argv[2:]
if rest:
    subprocess.Popen([sys.executable, "proc.py", *rest])
with open(name + ".pid.tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(name + ".pid.tmp", name + ".pid")
time.sleep(120)
"""

# Runs a Plan in its own interpreter, so a test can signal the executor: `python -c EXECUTOR RUN_DIR MODE`.
EXECUTOR = """\
import sys
from pathlib import Path
from launch.local import LocalExecutor
from launch.plan import FileSpec, Plan, ReadyCheck, Service, Step

run_dir, mode = Path(sys.argv[1]), sys.argv[2]
(run_dir / "attempts" / "0").mkdir(parents=True)
py = sys.executable
if mode == "running":
    # The service is ready at once; the main step starts a child that starts a grandchild.
    ready = ReadyCheck()
else:
    # The service never gets ready: the executor is still waiting for it.
    ready = ReadyCheck(tcp_port="{{free_port:never}}", timeout_s=120)
plan = Plan(
    stage="test", run_dir=str(run_dir),
    main=Step("main", [py, "proc.py", "step", "child", "grandchild"]),
    files=[FileSpec("proc.py", sys.argv[3])],
    services=[Service("svc", [py, "proc.py", "service"], ready=ready)],
    after=[Step("after", [py, "-c", "open('after_ran', 'w')"])],
)
sys.exit(LocalExecutor(plan, 0).run())
"""


def py(code: str) -> list[str]:
    """argv running `code` with this interpreter."""
    return [PY, "-c", code]


def record(name: str, then: str = "") -> Step:
    """A step that appends its name to order.txt, then runs `then`."""
    return Step(name, py(f"import os, signal, sys\nopen('order.txt', 'a').write('{name}\\n')\n{then}"))


def make_plan(tmp_path: Path, main: Step, **fields) -> Plan:
    """A Plan whose run dir is a fresh tmp dir with attempts/0 created (what claim_run_dir does)."""
    run_dir = tmp_path / "run"
    (run_dir / "attempts" / "0").mkdir(parents=True)
    return Plan(stage="test", run_dir=str(run_dir), main=main, **fields)


def execute(plan: Plan, attempt: int = 0) -> tuple[int, str, LocalExecutor]:
    """Run the Plan in this process; its exit code, what it streamed, and the executor."""
    stream = io.StringIO()
    executor = LocalExecutor(plan, attempt, stream)
    return executor.run(), stream.getvalue(), executor


def group_gone(pid: int) -> bool:
    """Whether no process is left in process group `pid`."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (an unreaped zombie has exited, so it does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # PID 1 of a container (this sandbox's included) may never reap orphans: they stay zombies.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def still_alive(pids: list[int], timeout_s: float = 10.0) -> list[int]:
    """The pids still alive after waiting up to `timeout_s` for all of them to end."""
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


@pytest.fixture
def started() -> Iterator[list[int]]:
    """Pids a test saw started; whatever of them outlives a failing test is killed at teardown."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_steps_run_in_order_in_the_run_dir_and_mark_done(tmp_path: Path) -> None:
    """Before steps, main, after steps run in order with cwd = run dir; success writes DONE with outputs."""
    plan = make_plan(tmp_path, record("main"), before=[record("b1"), record("b2")], after=[record("a1")],
                     outputs={"model": "/x/model"})
    code, out, _ = execute(plan)
    run_dir = Path(plan.run_dir)
    assert code == 0, out
    assert (run_dir / "order.txt").read_text() == "b1\nb2\nmain\na1\n"
    assert yaml.safe_load((run_dir / DONE_MARKER).read_text())["outputs"] == {"model": "/x/model"}
    assert f"[launch] finished: {run_dir}" in out


def test_steps_get_the_plan_env_with_placeholders_resolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step sees the inherited env plus the Plan's, with placeholders resolved (one port per key)."""
    monkeypatch.setenv("LAUNCH_TEST_INHERITED", "yes")
    dump = ("import json, os, sys\n"
            "json.dump({'cwd': os.getcwd(), 'argv': sys.argv[1:], 'env': dict(os.environ)}, open('seen.json', 'w'))")
    main = Step("main", [*py(dump), "--port={{free_port:master}}", "{{node_rank}}"],
                env={"FOO": "bar", "RANK": "{{node_rank}}", "N": "{{nnodes}}", "HEAD": "{{head_addr}}",
                     "PORT": "{{free_port:master}}", "OTHER": "{{free_port:other}}"})
    plan = make_plan(tmp_path, main)
    code, out, _ = execute(plan)
    assert code == 0, out
    seen = json.loads((Path(plan.run_dir) / "seen.json").read_text())
    env = seen["env"]
    assert seen["cwd"] == plan.run_dir
    assert (env["FOO"], env["RANK"], env["N"], env["HEAD"]) == ("bar", "0", "1", "127.0.0.1")
    assert env["PORT"].isdigit() and env["PORT"] != env["OTHER"]
    assert seen["argv"] == [f"--port={env['PORT']}", "0"]
    assert env["LAUNCH_TEST_INHERITED"] == "yes"
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(PROJECT_ROOT)
    # The Plan saved in the attempt keeps the placeholders: they are resolved only on the node.
    saved = yaml.safe_load((Path(plan.run_dir) / "attempts" / "0" / "plan.yaml").read_text())
    assert saved["main"]["env"]["PORT"] == "{{free_port:master}}"


@pytest.mark.parametrize(
    ("failing", "then", "code"),
    [
        ("b1", "sys.exit(3)", 3),
        ("main", "sys.exit(7)", 7),
        ("main", "os.kill(os.getpid(), signal.SIGKILL)", 137),
        ("a1", "sys.exit(1)", 1),
    ],
)
def test_a_failing_step_stops_the_run_with_its_exit_code(tmp_path: Path, failing: str, then: str, code: int) -> None:
    """The failing step's exit code (128+N for signal N) is the run's; later steps do not run; no DONE."""
    names = ["b1", "main", "a1"]
    steps = {name: record(name, then if name == failing else "") for name in names}
    plan = make_plan(tmp_path, steps["main"], before=[steps["b1"]], after=[steps["a1"]])
    result, out, _ = execute(plan)
    run_dir = Path(plan.run_dir)
    assert result == code
    ran = names[: names.index(failing) + 1]
    assert (run_dir / "order.txt").read_text().split() == ran
    assert not (run_dir / DONE_MARKER).exists()
    assert "[launch] FAILED" in out and f"see {run_dir}/logs/{failing}.0.log" in out


@pytest.mark.parametrize(("marker", "skipped"), [("relative", True), ("absolute", True), ("missing", False)])
def test_skip_if_exists_skips_a_step(tmp_path: Path, marker: str, skipped: bool) -> None:
    """A step whose skip_if_exists path exists (relative to the run dir, or absolute) does not run."""
    absolute = tmp_path / "built.json"
    absolute.write_text("{}")
    path = {"relative": "model/config.json", "absolute": str(absolute), "missing": "nothing/here"}[marker]
    build = Step("build", py("open('built', 'w')"), skip_if_exists=path)
    plan = make_plan(tmp_path, record("main"), before=[build])
    (Path(plan.run_dir) / "model").mkdir()
    (Path(plan.run_dir) / "model" / "config.json").write_text("{}")
    code, out, _ = execute(plan)
    assert code == 0, out
    assert (Path(plan.run_dir) / "built").exists() is not skipped
    assert (f"step build: {path} exists, skipped" in out) is skipped
    assert (Path(plan.run_dir) / "order.txt").read_text() == "main\n"


def test_files_are_written_before_steps_and_the_plan_is_saved(tmp_path: Path) -> None:
    """The Plan's files exist (nested dirs too) when steps start; attempts/0/plan.yaml lists them by size."""
    files = [FileSpec("conf/train.yaml", "lr: 1\n"), FileSpec("notes.txt", "héllo\n")]
    main = Step("main", py("import shutil; shutil.copy('conf/train.yaml', 'seen.yaml')"))
    plan = make_plan(tmp_path, main, files=files)
    code, out, _ = execute(plan)
    run_dir = Path(plan.run_dir)
    assert code == 0, out
    assert (run_dir / "seen.yaml").read_text() == "lr: 1\n"
    assert (run_dir / "notes.txt").read_text() == "héllo\n"
    saved = yaml.safe_load((run_dir / "attempts" / "0" / "plan.yaml").read_text())
    assert saved["files"] == [{"path": "conf/train.yaml", "bytes": 6}, {"path": "notes.txt", "bytes": 7}]


@pytest.mark.parametrize("attempt", [0, 2])
def test_output_is_streamed_and_saved_per_step_and_attempt(tmp_path: Path, attempt: int) -> None:
    """stdout and stderr of a step go to the given stream and to logs/<step>.<attempt>.log."""
    # The lines are built at run time, so the echoed command line cannot contain them.
    code = ("import sys\nprint('-'.join(['line', 'one']), flush=True)\n"
            "print('-'.join(['to', 'stderr']), file=sys.stderr, flush=True)\nprint('-'.join(['line', 'two']))")
    plan = make_plan(tmp_path, Step("main", py(code)))
    (Path(plan.run_dir) / "attempts" / str(attempt)).mkdir(exist_ok=True)
    result, out, _ = execute(plan, attempt)
    assert result == 0, out
    log = (Path(plan.run_dir) / "logs" / f"main.{attempt}.log").read_text()
    for line in ("line-one", "to-stderr", "line-two"):
        assert line in out and line in log
    assert out.index("[launch] step main:") < out.index("line-one")


def http_service(ready: ReadyCheck) -> Service:
    """A `python -m http.server` on the run's free port `svc`."""
    return Service("svc", [PY, "-m", "http.server", "{{free_port:svc}}", "--bind", "127.0.0.1"], ready=ready)


@pytest.mark.parametrize(
    "ready",
    [ReadyCheck(http_url="http://127.0.0.1:{{free_port:svc}}/", timeout_s=30),
     ReadyCheck(tcp_port="{{free_port:svc}}", timeout_s=30)],
    ids=["http", "tcp"],
)
def test_service_is_ready_before_main_reachable_from_it_and_stopped_after(tmp_path: Path, ready: ReadyCheck) -> None:
    """A service starts and passes its readiness check first, serves the main step, and is stopped after."""
    fetch = ("import os, urllib.request\n"
             "url = 'http://127.0.0.1:' + os.environ['PORT'] + '/'\n"
             "open('status.txt', 'w').write(str(urllib.request.urlopen(url, timeout=5).status))")
    plan = make_plan(tmp_path, Step("main", py(fetch), env={"PORT": "{{free_port:svc}}"}),
                     services=[http_service(ready)])
    code, out, executor = execute(plan)
    run_dir = Path(plan.run_dir)
    assert code == 0, out
    assert (run_dir / "status.txt").read_text() == "200"
    assert out.index("service svc is ready") < out.index("[launch] step main:")
    ((_, process, log_path),) = executor.services
    assert process.returncode is not None
    assert group_gone(process.pid)
    assert log_path == run_dir / "logs" / "svc.0.log" and "GET / " in log_path.read_text()


@pytest.mark.parametrize(
    ("code", "ready", "message"),
    [
        ("import sys; sys.exit(4)", ReadyCheck(tcp_port="{{free_port:never}}", timeout_s=30), "exited with 4"),
        ("import time; time.sleep(60)", ReadyCheck(tcp_port="{{free_port:never}}", timeout_s=1), "not ready after"),
    ],
    ids=["exits", "times-out"],
)
def test_a_service_that_never_gets_ready_fails_the_run(tmp_path: Path, code: str, ready: ReadyCheck,
                                                       message: str) -> None:
    """A service that exits or times out before it is ready fails the run (1) before any step runs."""
    plan = make_plan(tmp_path, record("main"), services=[Service("svc", py(code), ready=ready)])
    result, out, executor = execute(plan)
    run_dir = Path(plan.run_dir)
    assert result == 1
    assert message in out and f"see {run_dir}/logs/svc.0.log" in out
    assert not (run_dir / "order.txt").exists() and not (run_dir / DONE_MARKER).exists()
    assert group_gone(executor.services[0][1].pid)


def test_a_service_dying_during_main_fails_the_run_fast(tmp_path: Path) -> None:
    """When a service dies while main runs, main is stopped within seconds and the message names the log."""
    service = Service("svc", py("import sys, time; time.sleep(1); sys.exit(5)"))
    plan = make_plan(tmp_path, record("main", "import time; time.sleep(60)"), services=[service],
                     after=[record("a1")])
    start = time.monotonic()
    code, out, _ = execute(plan)
    run_dir = Path(plan.run_dir)
    assert code == 1
    assert time.monotonic() - start < 15
    assert f"service svc died with exit code 5; see {run_dir}/logs/svc.0.log" in out
    assert (run_dir / "order.txt").read_text() == "main\n"
    assert not (run_dir / DONE_MARKER).exists()


def start_executor(run_dir: Path, mode: str) -> subprocess.Popen:
    """The EXECUTOR script in its own interpreter, output captured."""
    return subprocess.Popen([PY, "-c", EXECUTOR, str(run_dir), mode, PROC_PY], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_pids(run_dir: Path, names: list[str], process: subprocess.Popen, started: list[int]) -> list[int]:
    """The pids the named processes wrote to NAME.pid, once all have written them."""
    deadline = time.monotonic() + 30
    while not all((run_dir / f"{name}.pid").exists() for name in names):
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, f"timed out waiting for {names}"
        time.sleep(0.05)
    pids = [int((run_dir / f"{name}.pid").read_text()) for name in names]
    started.extend(pids)
    return pids


def signal_and_wait(process: subprocess.Popen, sig: int) -> str:
    """Send `sig` to the executor and return its output once it exits."""
    process.send_signal(sig)
    try:
        return process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_every_process_and_exits_128_plus_it(tmp_path: Path, started: list[int], sig: int,
                                                           code: int) -> None:
    """SIGTERM (143) or SIGINT (130) stops the service, the step, its child and grandchild; no DONE."""
    run_dir = tmp_path / "run"
    process = start_executor(run_dir, "running")
    pids = wait_for_pids(run_dir, ["service", "step", "child", "grandchild"], process, started)
    out = signal_and_wait(process, sig)
    assert process.returncode == code, out
    assert still_alive(pids) == []
    assert f"received signal {int(sig)}" in out
    assert not (run_dir / DONE_MARKER).exists()
    assert not (run_dir / "after_ran").exists()


def test_a_signal_while_waiting_for_a_service_exits_128_plus_it(tmp_path: Path, started: list[int]) -> None:
    """SIGTERM while the executor waits for a service to get ready exits 143 and stops the service."""
    run_dir = tmp_path / "run"
    process = start_executor(run_dir, "waiting")
    pids = wait_for_pids(run_dir, ["service"], process, started)
    out = signal_and_wait(process, signal.SIGTERM)
    assert still_alive(pids) == []
    assert process.returncode == 143, out


def test_a_step_whose_program_is_missing_fails_cleanly(tmp_path: Path) -> None:
    """A missing program fails the run with a non-zero code and a FAILED line, not a traceback."""
    plan = make_plan(tmp_path, Step("main", ["/nonexistent/llamafactory-cli", "train"]))
    code, out, _ = execute(plan)
    assert code == 127 and "[launch] FAILED" in out and "cannot start" in out
    assert not (Path(plan.run_dir) / DONE_MARKER).exists()
