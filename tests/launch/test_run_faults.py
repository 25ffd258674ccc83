"""Faults at every phase of a run: kill -9, SIGINT or SIGTERM, then resume; and the run's lock.

Each test drives a real `python -m launch`-equivalent subprocess (`launch.cli.main` with one extra
stage, `faults`, whose Plan has a file, a service, a main step and an after step and runs in well
under a second). The launcher's test hook `LONGVIDEO_R1_FAULT_AT=<phase>` makes it print a marker
and pause at that phase, where the test delivers the signal. Whatever the fault, a later resume
finishes the run (DONE), and no two attempts of one run are ever live at once.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from launch.compose import PROJECT_ROOT
from launch.rundir import DONE_MARKER, FAULT_PHASES, FAULT_VAR, LOCK_FILE

STAGE = "faults"
GROUP = "demo"
# Runs the launcher's own entry point with the `faults` stage registered.
DRIVER = "from tests.launch.test_run_faults import drive; drive()"
SIGNALS = {"kill9": signal.SIGKILL, "sigint": signal.SIGINT, "sigterm": signal.SIGTERM}


def build_plan(config, run_dir: Path, run_name: str, python: str):
    """A cheap Plan with every phase: a file, an idle service, a main step and an after step."""
    from launch.plan import FileSpec, Plan, Resources, Service, Step

    def py(code: str) -> list[str]:
        return [python, "-c", code]

    return Plan(
        stage=STAGE, run_dir=str(run_dir), files=[FileSpec("inputs.txt", "question\n")],
        # The service records its pid, so the test can check that it is stopped (or clean up after kill -9).
        services=[Service("idle", py("import os, time; open('service.pids', 'a').write(f'{os.getpid()}\\n'); "
                                     "time.sleep(600)"))],
        main=Step("main", py("open('main.txt', 'a').write(open('inputs.txt').read())")),
        after=[Step("after", py("open('after.txt', 'a').write('after\\n')"))],
        resources=Resources(nodes=1, gpus_per_node=0), outputs={"main": str(run_dir / "main.txt")})


def drive() -> None:
    """`python -m launch faults ARGS`: the launcher's entry point with the `faults` stage registered."""
    from launch.cli import main
    from launch.stages import Stage, register

    register(Stage(STAGE, "a cheap Plan for fault tests", build_plan, needs_recipe=False,
                   run_group=lambda config, recipe: GROUP))
    sys.exit(main([STAGE, *sys.argv[1:]]))


class Launcher:
    """One launcher subprocess, its output read line by line."""

    def __init__(self, root: Path, name: str, *args: str, fault: str | None = None, path: str | None = None):
        env = {**os.environ, FAULT_VAR: fault or "", **({"PATH": path} if path else {})}
        self.process = subprocess.Popen([sys.executable, "-c", DRIVER, f"run_root={root}", f"name={name}", *args],
                                        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines: list[str] = []

    def wait_for(self, text: str, timeout_s: float = 60.0) -> None:
        """Read output until a line holds `text`; fail with the output so far if the launcher ends first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"launcher never printed {text!r}:\n{''.join(self.lines)}")

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str]:
        """Its exit code and its whole output."""
        rest, _ = self.process.communicate(timeout=timeout_s)
        return self.process.returncode, "".join(self.lines) + rest


def launch(root: Path, name: str, *args: str) -> tuple[int, str]:
    """Run the launcher to its end."""
    return Launcher(root, name, *args).finish()


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie that nobody reaped does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    """The run root; every service pid recorded under it is killed at teardown (kill -9 orphans them)."""
    yield tmp_path / "runs"
    for pids in (tmp_path / "runs").rglob("service.pids"):
        for pid in map(int, pids.read_text().split()):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def run_dir(root: Path, name: str) -> Path:
    """The directory of run `name` of the faults stage."""
    return root / STAGE / GROUP / name


def test_a_run_without_faults_finishes(root: Path) -> None:
    """The faults stage runs every phase and marks the run done: the baseline of the tests below."""
    code, out = launch(root, "clean")
    run = run_dir(root, "clean")
    assert code == 0, out
    assert (run / DONE_MARKER).is_file() and (run / "main.txt").read_text() == "question\n"
    assert (run / "after.txt").read_text() == "after\n"


@pytest.mark.parametrize("how", list(SIGNALS))
def test_a_fault_at_every_phase_leaves_a_run_that_resumes(root: Path, how: str) -> None:
    """Attempt k is signalled at phase k (claim, provenance, files, services, main, after); each resume is
    accepted, the Plan's services die with an orderly stop, and the attempt after the last fault finishes."""
    run = run_dir(root, "r")
    for attempt, phase in enumerate(FAULT_PHASES):
        launcher = Launcher(root, "r", *(["resume=true"] if attempt else []), fault=phase)
        launcher.wait_for(f"fault point {phase}")
        launcher.process.send_signal(SIGNALS[how])
        code, out = launcher.finish()
        assert code == (-signal.SIGKILL if how == "kill9" else 128 + SIGNALS[how]), out
        assert f"(attempt {attempt})" in out or phase in ("claim", "provenance"), out
        assert not (run / DONE_MARKER).exists()
        if how != "kill9":
            pids = (run / "service.pids").read_text().split() if (run / "service.pids").exists() else []
            # An orderly stop takes the Plan's services with it.
            assert not any(alive(int(pid)) for pid in pids), out
        if how != "kill9" and phase in ("claim", "provenance"):
            assert "continue the run with resume=true name=r" in out
        if phase == "provenance":
            # Attempt 0 was stopped before it wrote config.yaml: this attempt said so and wrote it.
            assert "config.yaml is missing or empty" in out, out
    code, out = launch(root, "r", "resume=true")
    assert code == 0 and f"(attempt {len(FAULT_PHASES)})" in out, out
    assert (run / DONE_MARKER).is_file()
    assert yaml.safe_load((run / "config.yaml").read_text())["name"] == "r"
    # The main step ran to its end twice: in the attempt stopped before its after step, and in the last.
    assert (run / "main.txt").read_text() == "question\n" * 2
    assert sorted(int(p.name) for p in (run / "attempts").iterdir()) == list(range(len(FAULT_PHASES) + 1))


def test_a_resume_while_attempt_0_lives_is_refused_and_one_after_kill_9_runs(root: Path) -> None:
    """While attempt 0 pauses in its main phase a resume exits 2 naming it; after kill -9 a resume finishes."""
    first = Launcher(root, "live", fault="main")
    first.wait_for("fault point main")
    run = run_dir(root, "live")
    code, out = launch(root, "live", "resume=true")
    assert code == 2, out
    assert (f"is in use by attempt 0 (launch, pid {first.process.pid} on host {os.uname().nodename}" in out
            and "wait for it to end or stop it" in out), out
    assert sorted(p.name for p in (run / "attempts").iterdir()) == ["0"]
    first.process.send_signal(signal.SIGKILL)
    first.finish()
    code, out = launch(root, "live", "resume=true")
    assert code == 0 and (run / DONE_MARKER).is_file(), out


def test_two_resumes_at_once_exactly_one_runs(root: Path) -> None:
    """Two resumes that race for one run: exactly one is accepted, the other is refused by the lock."""
    first = Launcher(root, "race", fault="files")
    first.wait_for("fault point files")
    first.process.send_signal(signal.SIGKILL)
    first.finish()
    # The winner pauses right after its claim, holding the lock, so the two certainly overlap.
    racers = [Launcher(root, "race", "resume=true", fault="claim") for _ in range(2)]
    deadline = time.monotonic() + 60
    while all(r.process.poll() is None for r in racers) and time.monotonic() < deadline:
        time.sleep(0.05)
    (loser,) = [r for r in racers if r.process.poll() is not None]
    (winner,) = [r for r in racers if r is not loser]
    code, out = loser.finish()
    # The winner may not have recorded itself, or numbered its attempt, yet when the loser looks.
    holder = (r"is in use by (attempt 1 \(launch, pid|a resume still numbering its attempt \(launch, pid|an attempt "
              r"that has not recorded itself yet)")
    assert code == 2 and re.search(holder, out), out
    winner.wait_for("fault point claim")
    winner.process.send_signal(signal.SIGINT)
    assert winner.finish()[0] == 130
    run = run_dir(root, "race")
    assert sorted(p.name for p in (run / "attempts").iterdir()) == ["0", "1"]
    code, out = launch(root, "race", "resume=true")
    assert code == 0 and (run / "main.txt").read_text() == "question\n", out


def test_a_fresh_name_works_beside_a_killed_run(root: Path) -> None:
    """A run killed while claiming wedges nothing: its name is refused without resume, others run."""
    first = Launcher(root, "wedge", fault="claim")
    first.wait_for("fault point claim")
    first.process.send_signal(signal.SIGKILL)
    first.finish()
    code, out = launch(root, "wedge")
    assert code == 2 and "already exists; choose another name=, or add resume=true" in out, out
    code, out = launch(root, "fresh")
    assert code == 0, out
    assert (run_dir(root, "wedge") / LOCK_FILE).is_file()


# Holds the run's lock as `role` for attempt 0, prints "held", lets go after argv[3] seconds.
LOCK_HOLDER = """
import sys, time
from pathlib import Path
from launch.rundir import acquire_run_lock
lock = acquire_run_lock(Path(sys.argv[1]), 0, sys.argv[2])
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""
NODE_ENV = {"SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0", "LONGVIDEO_R1_HEAD_ADDR": "localhost"}


def hold_lock(run: Path, role: str, seconds: float) -> subprocess.Popen:
    """A process that holds the run's lock as `role` for `seconds`, once it said so."""
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run), role, str(seconds)], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def submitted_plan(run: Path) -> Path:
    """A Plan as a Slurm submission leaves it under the run (slurm/1/plan.yaml), and attempt 0's directory."""
    from launch.plan import Plan, Step

    (run / "attempts" / "0").mkdir(parents=True)
    path = run / "slurm" / "1" / "plan.yaml"
    path.parent.mkdir(parents=True)
    main = Step("main", [sys.executable, "-c", "open('main.txt', 'a').write('main\\n')"])
    path.write_text(Plan(stage=STAGE, run_dir=str(run), main=main).to_yaml())
    return path


def node(part: str, plan: Path) -> subprocess.CompletedProcess:
    """`python -m launch.node PART PLAN --attempt 1` as a job step runs it."""
    return subprocess.run([sys.executable, "-m", "launch.node", part, str(plan), "--attempt", "1"], cwd=PROJECT_ROOT,
                          env={**os.environ, **NODE_ENV}, capture_output=True, text=True, timeout=120)


def test_a_job_fails_clearly_while_another_attempt_holds_the_run(tmp_path: Path) -> None:
    """The job's first part refuses to run while a live local attempt holds the run; it adds no attempt."""
    run = tmp_path / "run"
    plan = submitted_plan(run)
    holder = hold_lock(run, "launch", 60)
    try:
        done = node("run", plan)
    finally:
        holder.kill()
        holder.wait()
    assert done.returncode == 1
    assert f"is in use by attempt 0 (launch, pid {holder.pid}" in done.stderr, done.stderr
    assert not (run / "main.txt").exists() and sorted(p.name for p in (run / "attempts").iterdir()) == ["0"]


def test_a_job_waits_for_its_submitter_to_let_go(tmp_path: Path) -> None:
    """A job that starts while its submitter still holds the lock waits for it, then runs and holds it."""
    run = tmp_path / "run"
    plan = submitted_plan(run)
    holder = hold_lock(run, "submit", 1.5)
    done = node("run", plan)
    holder.wait()
    assert done.returncode == 0, done.stdout + done.stderr
    assert (run / "main.txt").read_text() == "main\n" and (run / DONE_MARKER).is_file()
    assert "role=job" in (run / LOCK_FILE).read_text()


@pytest.mark.parametrize("launcher", ["slurm", "local"])
@pytest.mark.parametrize("squeue", ["RUNNING", None])
def test_slurm_resume_is_refused_while_its_job_is_queued(root: Path, tmp_path: Path, squeue: str | None,
                                                         launcher: str) -> None:
    """resume=true of a run submitted to Slurm is refused while squeue lists its job, or when squeue is missing,
    with either launcher (between the job's steps no process of it holds the run's lock)."""
    run = run_dir(root, "queued")
    (run / "attempts" / "0").mkdir(parents=True)
    (run / "config.yaml").write_text("name: queued\n")
    (run / "slurm").mkdir()
    (run / "slurm" / "jobs.tsv").write_text(f"0\t4242\t{run / 'slurm' / '0' / 'job.sbatch'}\n")
    tools = tmp_path / "bin"
    tools.mkdir()
    if squeue:
        (tools / "squeue").write_text(f'#!/bin/sh\n[ "$3" = 4242 ] && echo {squeue}\n')
        (tools / "squeue").chmod(0o755)
    # PATH holds only the fake tools, so the real squeue of this machine (if any) is never asked.
    code, out = Launcher(root, "queued", "resume=true", f"launcher={launcher}", path=str(tools)).finish()
    assert code == 2, out
    if squeue:
        assert "is in use by attempt 0 (Slurm job 4242, RUNNING); wait for it to end or `scancel 4242`" in out
    else:
        assert "cannot tell whether Slurm job 4242 still runs: `squeue` is not on PATH" in out
    assert sorted(p.name for p in (run / "attempts").iterdir()) == ["0"]


def service_pids(run: Path, count: int, timeout_s: float = 30.0) -> list[int]:
    """The pids the faults stage's services wrote to service.pids, once there are `count` of them."""
    deadline = time.monotonic() + timeout_s
    path = run / "service.pids"
    while time.monotonic() < deadline:
        pids = [int(p) for p in path.read_text().split()] if path.exists() else []
        if len(pids) >= count:
            return pids
        time.sleep(0.05)
    raise AssertionError(f"{path} never held {count} pids")


def test_a_resume_stops_the_services_a_killed_launcher_left_running(root: Path) -> None:
    """kill -9 while the service runs orphans it; the resume stops it before starting its own, then finishes."""
    run = run_dir(root, "orphan")
    first = Launcher(root, "orphan", fault="main")
    first.wait_for("fault point main")
    (orphan,) = service_pids(run, 1)
    first.process.send_signal(signal.SIGKILL)
    first.finish()
    # Nothing was left to stop it: the orphan holds on to whatever it held.
    assert alive(orphan)
    code, out = launch(root, "orphan", "resume=true")
    assert code == 0 and (run / DONE_MARKER).is_file(), out
    message = f"[launch] stopped service idle (pid {orphan}) left running by attempt 0"
    assert message in out, out
    # It was stopped before the resumed attempt started its own service.
    assert out.index(message) < out.index("[launch] service idle started"), out
    assert not alive(orphan)
    # The resumed attempt's own service was stopped at its end as usual.
    assert not any(alive(pid) for pid in service_pids(run, 2)), out
    records = json.loads((run / "attempts" / "0" / "services.json").read_text())["services"]
    assert [(r["name"], r["pid"], r["pgid"], r["host"]) for r in records] == [
        ("idle", orphan, orphan, os.uname().nodename)]


def test_a_reused_pid_or_another_host_is_not_stopped_and_a_malformed_record_is_reported(tmp_path: Path) -> None:
    """Only a record whose process runs here with the recorded start time is stopped; bad files are named."""
    from launch import service_records

    run = tmp_path / "run"
    me = service_records.service_record("me", os.getpid())
    # This test's own process, as if an earlier process had held its pid: another start time.
    reused = {**me, "name": "reused", "start_time": me["start_time"] + 1}
    elsewhere = {**me, "name": "elsewhere", "host": "another-node"}
    service_records.write_records(service_records.records_path(run, 0), [reused])
    service_records.write_records(service_records.records_path(run, 1, ".node1"), [elsewhere])
    malformed = run / "attempts" / "1" / "services.json"
    malformed.write_text('{"services": [{"name": "x", "pid": "12"}]}')
    (run / "attempts" / "0" / "services.node2.json").write_text("{not json")
    # The attempt that reaps, and a later one: their records are never touched.
    service_records.write_records(service_records.records_path(run, 2), [me])
    stopped: list[int] = []
    said: list[str] = []
    assert service_records.reap_orphans(run, 2, stopped.append, said.append) == []
    assert stopped == [], said
    assert said == [f"[launch] skipping malformed service records: {run / 'attempts/0/services.node2.json'}: "
                    "cannot read the service records (Expecting property name enclosed in double quotes: line 1 "
                    'column 2 (char 1)); expected the {"services": [...]} this launcher writes',
                    f"[launch] skipping malformed service records: {malformed}: service 0 lacks 'pid' (int)"], said
    # The same record with the true start time would be stopped (with a stop that does nothing here).
    assert service_records.reap_orphans(run, 3, stopped.append, said.append) == [me]
    assert stopped == [os.getpgid(0)] and said[-1] == (
        f"[launch] stopped service me (pid {os.getpid()}) left running by attempt 2")


# Starts `sleep` in its own process group and exits, leaving it to init: an orphan as kill -9 leaves one.
ORPHAN_MAKER = ("import subprocess; print(subprocess.Popen(['sleep', '120'], start_new_session=True, "
                "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)")


def test_a_nodes_main_part_records_per_node_and_stops_its_hosts_orphans(tmp_path: Path) -> None:
    """On a job's node the main part (log suffix .node1) records to services.node1.json and stops the
    services an earlier attempt recorded on this host, whichever node's file holds them."""
    from launch import service_records
    from launch.local import LocalExecutor
    from launch.plan import Plan, Service, Step

    run = tmp_path / "run"
    orphan = int(subprocess.run([sys.executable, "-c", ORPHAN_MAKER], capture_output=True, text=True).stdout)
    try:
        service_records.write_records(service_records.records_path(run, 0, ".node1"),
                                      [service_records.service_record("policy", orphan)])
        plan = Plan(stage=STAGE, run_dir=str(run), services=[Service("idle", ["sleep", "120"])],
                    main=Step("main", [sys.executable, "-c", "pass"]))
        stream = io.StringIO()
        assert LocalExecutor(plan, 1, stream, log_suffix=".node1").run(prepare=False, finish=False) == 0
        assert f"[launch] stopped service policy (pid {orphan}) left running by attempt 0" in stream.getvalue()
        assert not alive(orphan)
        (record,) = service_records.read_records(service_records.records_path(run, 1, ".node1"))
        assert record["name"] == "idle" and not alive(record["pid"])
        assert not service_records.records_path(run, 1).exists()
    finally:
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)
