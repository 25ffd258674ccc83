"""Run directories: names, claiming and resuming, secrets, config changes, DONE and provenance."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from launch import rundir
from launch.compose import PROJECT_ROOT
from launch.rundir import (
    DONE_MARKER,
    RunDirError,
    check_run_root,
    claim_run_dir,
    config_changes,
    create_new_dir,
    is_finished,
    mark_done,
    new_run_name,
    run_dir_for,
    write_config,
    write_provenance,
)


def test_new_run_name_has_the_documented_shape() -> None:
    """A run name is `YYYYmmdd-HHMMSS-xxxx` and is itself a valid run directory name."""
    name = new_run_name(dt.datetime(2026, 11, 22, 10, 45, 12))
    assert re.fullmatch(r"20261122-104512-[0-9a-f]{4}", name)
    assert run_dir_for("/r", "sft", "tiny", name).name == name


def test_new_run_name_is_unique_across_calls() -> None:
    """Calls in the same second still give different names (the random suffix)."""
    now = dt.datetime(2026, 1, 1)
    assert len({new_run_name(now) for _ in range(4)}) == 4
    assert new_run_name() != new_run_name()


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        (dt.datetime(2026, 5, 5, 10, 0, 0), dt.datetime(2026, 5, 5, 10, 0, 1)),
        (dt.datetime(2026, 1, 2, 9, 0, 0), dt.datetime(2026, 1, 10, 8, 0, 0)),
        (dt.datetime(2026, 9, 30, 23, 59, 59), dt.datetime(2026, 10, 1, 0, 0, 0)),
        (dt.datetime(2026, 12, 31, 23, 59, 59), dt.datetime(2027, 1, 1, 0, 0, 0)),
    ],
)
def test_new_run_names_sort_by_time(earlier: dt.datetime, later: dt.datetime) -> None:
    """A later run's name sorts after an earlier one's, whatever the random suffixes are."""
    for _ in range(5):
        assert new_run_name(earlier) < new_run_name(later)


def test_run_dir_for_is_root_stage_group_name(tmp_path: Path) -> None:
    """The run directory is <root>/<stage>/<group>/<name>, made absolute."""
    assert run_dir_for(tmp_path, "sft", "tiny", "r1") == tmp_path / "sft" / "tiny" / "r1"
    assert run_dir_for("runs", "sft", "tiny", "r1") == Path.cwd() / "runs" / "sft" / "tiny" / "r1"
    assert run_dir_for("~/runs", "sft", "tiny", "r1") == Path.home() / "runs" / "sft" / "tiny" / "r1"


@pytest.mark.parametrize(
    ("stage", "group", "name", "label"),
    [
        ("sft", "tiny", "a/b", "name"),
        ("sft", "tiny", "a b", "name"),
        ("sft", "tiny", "../escape", "name"),
        ("sft", "tiny", "..", "name"),
        ("sft", "tiny", ".hidden", "name"),
        ("sft", "tiny", "", "name"),
        ("sft", "tiny", "a\\b", "name"),
        ("sft", "ti ny", "ok", "recipe or dataset"),
        ("s/ft", "tiny", "ok", "stage"),
    ],
)
def test_run_dir_for_rejects_unsafe_names(stage: str, group: str, name: str, label: str) -> None:
    """Slashes, spaces, leading dots and empty names are refused, naming which part is bad."""
    with pytest.raises(RunDirError, match=f"{label} .* is not a valid directory name"):
        run_dir_for("/r", stage, group, name)


def claimed(run_dir: Path, resume: bool) -> int:
    """Claim `run_dir` and let go of its lock at once, as a finished attempt does; the attempt number."""
    claim = claim_run_dir(run_dir, resume)
    claim.lock.release()
    return claim.attempt


def test_claim_numbers_attempts_zero_then_one_two_on_resume(tmp_path: Path) -> None:
    """A new run is attempt 0; each resume is the next attempt, each with its own directory."""
    run_dir = tmp_path / "sft" / "tiny" / "r1"
    assert [claimed(run_dir, False), claimed(run_dir, True), claimed(run_dir, True)] == [0, 1, 2]
    assert sorted(p.name for p in (run_dir / "attempts").iterdir()) == ["0", "1", "2"]


def test_resume_after_a_gap_continues_from_the_highest_attempt(tmp_path: Path) -> None:
    """Attempt numbers follow the highest existing one, numerically (10 after 9, not after 1)."""
    run_dir = tmp_path / "r"
    for attempt in ("0", "1", "9"):
        (run_dir / "attempts" / attempt).mkdir(parents=True)
    (run_dir / "attempts" / "notes").mkdir()
    assert claimed(run_dir, True) == 10
    assert claimed(run_dir, True) == 11


@pytest.mark.parametrize(
    ("state", "resume", "message"),
    [
        ("exists", False, "already exists.*resume=true"),
        ("missing", True, "no run to resume"),
        ("done", True, "already finished"),
    ],
)
def test_claim_refuses_what_it_must_not_touch(tmp_path: Path, state: str, resume: bool, message: str) -> None:
    """An existing dir is never reused without resume; a missing or finished run cannot be resumed."""
    run_dir = tmp_path / "r"
    if state in ("exists", "done"):
        (run_dir / "attempts" / "0").mkdir(parents=True)
        (run_dir / "keep.txt").write_text("old")
    if state == "done":
        (run_dir / DONE_MARKER).write_text("outputs: {}\n")
    with pytest.raises(RunDirError, match=message):
        claimed(run_dir, resume)
    # Nothing was created or changed by the refusal.
    if state == "missing":
        assert not run_dir.exists()
    else:
        assert [p.name for p in (run_dir / "attempts").iterdir()] == ["0"]
        assert (run_dir / "keep.txt").read_text() == "old"


def test_create_new_dir_makes_parents_and_refuses_an_existing_dir(tmp_path: Path) -> None:
    """create_new_dir makes missing parents, and refuses a directory that already exists."""
    path = tmp_path / "sft" / "tiny" / "sweep"
    create_new_dir(path)
    assert path.is_dir()
    with pytest.raises(RunDirError, match="already exists.*resume=true"):
        create_new_dir(path)


@pytest.mark.parametrize(
    ("old", "new", "changes"),
    [
        ({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 2}}, []),
        ({"a": 1}, {"a": 2}, ["a: 1 -> 2"]),
        ({"sft": {"lora": {"rank": 8}}}, {"sft": {"lora": {"rank": 16}}}, ["sft.lora.rank: 8 -> 16"]),
        ({"a": 1}, {"a": 1, "b": "x"}, ["b: '<absent>' -> 'x'"]),
        ({"a": 1, "b": {"c": 1}}, {"a": 1}, ["b: {'c': 1} -> '<absent>'"]),
        ({"x": [1, 2]}, {"x": [1, 3]}, ["x: [1, 2] -> [1, 3]"]),
        ({"b": 1, "a": {"z": 1, "y": 1}}, {"b": 2, "a": {"z": 2, "y": 2}}, ["a.y: 1 -> 2", "a.z: 1 -> 2", "b: 1 -> 2"]),
    ],
)
def test_config_changes_lists_differing_dotted_keys(old: dict, new: dict, changes: list[str]) -> None:
    """Every key whose value differs is listed once, dotted, sorted, with old and new values."""
    assert config_changes(old, new) == changes


@pytest.mark.parametrize(("attempt", "path"), [(0, "config.yaml"), (2, "attempts/2/config.yaml")])
def test_write_config_redacts_and_keeps_each_attempt(tmp_path: Path, attempt: int, path: str) -> None:
    """The first attempt writes config.yaml; a resume writes its own copy; secrets never land on disk."""
    (tmp_path / "attempts" / str(attempt)).mkdir(parents=True)
    written = write_config(tmp_path, {"seed": 1, "hub_token": "s3cr3t"}, attempt)
    assert written == tmp_path / path
    assert yaml.safe_load(written.read_text()) == {"seed": 1, "hub_token": "<redacted:hub_token>"}
    assert "s3cr3t" not in written.read_text()


def test_mark_done_writes_done_with_outputs(tmp_path: Path) -> None:
    """DONE holds the outputs and a timestamp, and no temporary file is left behind."""
    assert not is_finished(tmp_path)
    mark_done(tmp_path, {"model": "/runs/x/model"})
    body = yaml.safe_load((tmp_path / DONE_MARKER).read_text())
    assert body["outputs"] == {"model": "/runs/x/model"}
    assert dt.datetime.fromisoformat(body["finished_at"])
    assert is_finished(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [DONE_MARKER]


def test_mark_done_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DONE appears only by a rename: if the rename fails there is no (partial) DONE."""

    def fail(self: Path, target: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", fail)
    with pytest.raises(OSError):
        mark_done(tmp_path, {"model": "m"})
    assert not (tmp_path / DONE_MARKER).exists()
    assert not is_finished(tmp_path)


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    """A git repository with one commit, one modified file and one untracked file."""
    repo = tmp_path / "src"
    repo.mkdir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                              capture_output=True, text=True).stdout

    git("init", "-q")
    (repo / "train.py").write_text("lr = 1\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "first")
    (repo / "train.py").write_text("lr = 2\n")
    (repo / "new.py").write_text("x\n")
    return repo


@pytest.fixture
def fake_pip(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Answer `python -m pip freeze` with a canned list (the real one takes seconds); run git for real."""
    calls: list[list[str]] = []
    real_run = subprocess.run

    def run(argv: list[str], *args, **kwargs):
        calls.append(list(argv))
        if argv[1:3] == ["-m", "pip"]:
            return subprocess.CompletedProcess(argv, 0, "fakepkg==1.0\n", "")
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(rundir.subprocess, "run", run)
    return calls


def test_write_provenance_records_commit_diff_freeze_and_seed(tmp_path: Path, git_repo: Path,
                                                             fake_pip: list[list[str]]) -> None:
    """Provenance has the HEAD commit, the uncommitted diff and status, pip freeze, the seed and the host."""
    run_dir = tmp_path / "run"
    out = write_provenance(run_dir, 1, 1234, git_repo)
    assert out == run_dir / "attempts" / "1" / "provenance"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=git_repo, capture_output=True, text=True).stdout
    assert (out / "git_commit.txt").read_text() == head
    diff = (out / "git_diff.patch").read_text()
    assert "-lr = 1" in diff and "+lr = 2" in diff
    assert "?? new.py" in diff
    assert (out / "pip_freeze.txt").read_text() == "fakepkg==1.0\n"
    assert any(argv[1:4] == ["-m", "pip", "freeze"] for argv in fake_pip)
    assert (out / "seed.txt").read_text() == "1234\n"
    assert (out / "host.txt").read_text().strip()
    assert (out / "command.txt").read_text().endswith("\n")


def test_write_provenance_outside_git_records_the_reason(tmp_path: Path, fake_pip: list[list[str]]) -> None:
    """Outside a git checkout the commit file says why there is no commit instead of failing."""
    plain = tmp_path / "plain"
    plain.mkdir()
    out = write_provenance(tmp_path / "run", 0, None, plain)
    assert (out / "git_commit.txt").read_text().startswith("<git rev-parse HEAD exited")
    assert (out / "seed.txt").read_text() == "None\n"


def test_write_provenance_records_a_failing_pip(tmp_path: Path, git_repo: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A provenance command that fails leaves its exit code and stderr in the file."""
    real_run = subprocess.run

    def run(argv: list[str], *args, **kwargs):
        if argv[1:3] == ["-m", "pip"]:
            return subprocess.CompletedProcess(argv, 3, "", "no pip here")
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(rundir.subprocess, "run", run)
    out = write_provenance(tmp_path / "run", 0, 7, git_repo)
    text = (out / "pip_freeze.txt").read_text()
    assert "exited 3" in text and "no pip here" in text


# A process that claims a run and holds its lock until it is killed: "claimed <attempt>" once it holds it.
HOLDER = """
import sys, time
from pathlib import Path
from launch.rundir import claim_run_dir
claim = claim_run_dir(Path(sys.argv[1]), sys.argv[2] == "resume")
print("claimed", claim.attempt, flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Callable[[Path, bool], subprocess.Popen]]:
    """Start HOLDER processes on a run; each is killed at teardown."""
    started: list[subprocess.Popen] = []

    def start(run_dir: Path, resume: bool) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir), "resume" if resume else "new"],
                                   cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().startswith("claimed"), "the holder did not claim the run"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_a_live_attempt_refuses_a_resume_naming_itself(tmp_path: Path, holder) -> None:
    """While attempt 0 lives, a resume is refused with its pid and host, and no attempts/1 appears."""
    run_dir = tmp_path / "r"
    process = holder(run_dir, False)
    with pytest.raises(RunDirError, match=rf"in use by attempt 0 \(launch, pid {process.pid} on host "
                                          rf"{os.uname().nodename}.*wait for it to end or stop it"):
        claim_run_dir(run_dir, True)
    assert [p.name for p in (run_dir / "attempts").iterdir()] == ["0"]


def test_a_killed_attempt_releases_the_run(tmp_path: Path, holder) -> None:
    """kill -9 of the holder frees the lock (the kernel drops it), so the next resume is attempt 1."""
    run_dir = tmp_path / "r"
    process = holder(run_dir, False)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert claimed(run_dir, True) == 1


def test_the_plans_processes_do_not_inherit_the_lock(tmp_path: Path) -> None:
    """A child started while the lock is held does not keep it once the launcher lets go."""
    run_dir = tmp_path / "r"
    claim = claim_run_dir(run_dir, False)
    # close_fds=False: only the lock's own close-on-exec flag keeps it from the child.
    child = subprocess.Popen([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                             close_fds=False, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "up\n"
    try:
        claim.lock.release()
        assert claimed(run_dir, True) == 1
    finally:
        child.kill()
        child.wait()


def test_a_busy_check_refuses_the_resume_without_a_trace(tmp_path: Path) -> None:
    """A resume refused by `check_busy` (a queued Slurm job) adds no attempt and frees the lock."""
    run_dir = tmp_path / "r"
    claimed(run_dir, False)

    def busy(path: Path) -> None:
        raise RunDirError(f"{path.name} has a job")

    with pytest.raises(RunDirError, match="r has a job"):
        claim_run_dir(run_dir, True, check_busy=busy)
    assert [p.name for p in (run_dir / "attempts").iterdir()] == ["0"]
    assert claimed(run_dir, True) == 1


@pytest.mark.parametrize("config", [None, "", "\n"])
def test_resume_of_an_interrupted_claim_recovers(tmp_path: Path, config: str | None) -> None:
    """A run whose config.yaml is missing or empty (claim interrupted) resumes, with no original config."""
    run_dir = tmp_path / "r"
    (run_dir / "attempts" / "0").mkdir(parents=True)
    if config is not None:
        (run_dir / "config.yaml").write_text(config)
    claim = claim_run_dir(run_dir, True)
    claim.lock.release()
    assert (claim.attempt, claim.original) == (1, None)


@pytest.mark.parametrize(("text", "message"), [("a: [1\n", r": cannot read the run's config \(while parsing"),
                                               ("- 1\n", ": top level is a list")])
def test_resume_of_a_foreign_config_is_refused_naming_it(tmp_path: Path, text: str, message: str) -> None:
    """A config.yaml that is not a mapping is named, with what to do; the refusal adds no attempt."""
    run_dir = tmp_path / "r"
    (run_dir / "attempts" / "0").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(text)
    with pytest.raises(RunDirError, match=rf"{run_dir / 'config.yaml'}{message}.*move it away"):
        claim_run_dir(run_dir, True)
    assert [p.name for p in (run_dir / "attempts").iterdir()] == ["0"]


def test_write_config_never_leaves_a_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """config.yaml appears only by a rename: if writing fails, there is none, not an empty one."""

    def fail(self: Path, target: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", fail)
    with pytest.raises(OSError):
        write_config(tmp_path, {"seed": 1}, 0)
    assert not (tmp_path / "config.yaml").exists()


def test_run_root_that_is_a_file_is_named(tmp_path: Path) -> None:
    """A run_root that is a file, or lies below one, is refused naming it; a missing one is fine."""
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match=rf"run_root={tmp_path / 'file'} is a file; expected a directory"):
        check_run_root(tmp_path / "file")
    with pytest.raises(RunDirError, match=rf"\({tmp_path / 'file'} is a file\); expected a directory"):
        check_run_root(tmp_path / "file" / "runs")
    check_run_root(tmp_path / "missing" / "runs")
    with pytest.raises(RunDirError, match=rf"{tmp_path / 'file'} is a file; expected a directory"):
        create_new_dir(tmp_path / "file" / "sft" / "r")


def test_provenance_command_line_holds_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """command.txt records the command with a secret override's value replaced."""
    from launch.rundir import write_provenance

    monkeypatch.setattr(sys, "argv", ["launch", "trajectories", "+trajectories.extra_body.api_key=MARKER-42"])
    out = write_provenance(tmp_path, 0, 1, tmp_path)
    command = (out / "command.txt").read_text()
    assert "MARKER-42" not in command
    assert "+trajectories.extra_body.api_key=<redacted:trajectories.extra_body.api_key>" in command
