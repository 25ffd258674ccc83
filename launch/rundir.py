"""Run directories: `runs/<stage>/<recipe or dataset>/<name>/`, never overwritten.

A run directory holds the composed config (secrets removed), the rendered Plan and files, logs,
provenance (git commit and diff, pip freeze, seed) and, on success only, a `DONE` marker.

A live attempt holds the run's lock (`fcntl.flock` on `<run>/.lock`, which names the holder): a second
launch or resume of the run is refused while it lives, and the kernel releases the lock when the
holder dies, however it dies, so a later resume proceeds.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from tools.environment.secrets import redact_argv, split_secrets
from tools.environment.settings_file import read_mapping

DONE_MARKER = "DONE"
CONFIG_FILE = "config.yaml"
LOCK_FILE = ".lock"
# Test hook: the launcher pauses at this phase (FAULT_PHASES) so a test can signal it there.
FAULT_VAR = "LONGVIDEO_R1_FAULT_AT"
# claim: right after the directory and its lock are taken, before config.yaml is written; the
# others: at the start of that phase of the run.
FAULT_PHASES = ("claim", "provenance", "files", "services", "main", "after")
FAULT_PAUSE_S = 60.0
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class RunDirError(RuntimeError):
    """A run directory cannot be created or resumed as asked."""


def new_run_name(now: _dt.datetime | None = None) -> str:
    """A fresh run name: a timestamp plus a short random suffix, e.g. `20261122-104512-3fa9`."""
    now = now or _dt.datetime.now()
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def run_dir_for(root: str | Path, stage: str, group: str, name: str) -> Path:
    """The directory of run `name` of `stage` for `group` (a recipe or a dataset)."""
    for label, value in (("stage", stage), ("recipe or dataset", group), ("name", name)):
        if not NAME_PATTERN.fullmatch(value):
            raise RunDirError(f"{label} {value!r} is not a valid directory name (letters, digits, . _ -)")
    return Path(root).expanduser().absolute() / stage / group / name


def is_finished(run_dir: str | Path) -> bool:
    """Whether the run finished: its `DONE` marker exists."""
    return (Path(run_dir) / DONE_MARKER).is_file()


def check_run_root(root: str | Path) -> None:
    """Refuse a `run_root` that is, or lies below, something other than a directory."""
    path = Path(root).expanduser().absolute()
    for ancestor in [path, *path.parents]:
        if ancestor.exists():
            if not ancestor.is_dir():
                where = "" if ancestor == path else f" ({ancestor} is a file)"
                raise RunDirError(f"run_root={root} is a file{where}; expected a directory")
            return


def create_new_dir(path: Path) -> None:
    """Create `path`, which must not exist yet (a run's or a sweep's directory)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        blocking = next(p for p in path.parents if p.exists() and not p.is_dir())
        raise RunDirError(f"cannot create {path}: {blocking} is a file; expected a directory") from None
    try:
        # mkdir without exist_ok is atomic: two launches racing for one name cannot both win.
        path.mkdir()
    except FileExistsError:
        raise RunDirError(
            f"run directory {path} already exists; choose another name=, or add resume=true to continue that run"
        ) from None


class RunLock:
    """The run's lock, held through an open file: released by `release()` or by the holder's death."""

    def __init__(self, run_dir: Path, fd: int):
        self.run_dir = run_dir
        self.fd: int | None = fd

    def release(self) -> None:
        """Release the lock (closing its file); a second call does nothing."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *_exc) -> None:
        self.release()


def lock_fields(run_dir: Path) -> dict[str, str]:
    """What the run's lock file records of its last holder (pid, host, attempt, role, since); empty if nothing."""
    try:
        lines = (run_dir / LOCK_FILE).read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line)


def describe_holder(fields: dict[str, str]) -> str:
    """The holder a lock file records, in words."""
    if "pid" not in fields:
        return "an attempt that has not recorded itself yet"
    attempt = fields.get("attempt", "")
    # A resume records its attempt number once it holds the lock and has read the attempts.
    who = f"attempt {attempt}" if attempt.isdigit() else "a resume still numbering its attempt"
    return (f"{who} ({fields.get('role', 'launch')}, pid {fields['pid']} on host {fields.get('host', '?')}, "
            f"since {fields.get('since', '?')})")


def acquire_run_lock(run_dir: Path, attempt: int | str, role: str = "launch", wait_s: float = 0.0,
                     wait_for: str | None = None) -> RunLock:
    """Take the run's lock for `attempt`, or RunDirError naming its holder.

    With `wait_s`, wait that long for a holder whose role is `wait_for` (a submitter about to exit).
    The file is opened close-on-exec, so the Plan's processes never hold the lock.
    """
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline and lock_fields(run_dir).get("role") == wait_for:
                time.sleep(0.2)
                continue
            holder = describe_holder(lock_fields(run_dir))
            os.close(fd)
            raise RunDirError(f"run {run_dir} is in use by {holder}; wait for it to end or stop it, "
                              f"then resume with resume=true name={run_dir.name}") from None
    _record_holder(fd, attempt, role)
    return RunLock(run_dir, fd)


def _record_holder(fd: int, attempt: int | str, role: str) -> None:
    """Write who holds the lock into its file: pid, host, attempt, role and since when."""
    since = _dt.datetime.now().isoformat(timespec="seconds")
    record = f"pid={os.getpid()}\nhost={os.uname().nodename}\nattempt={attempt}\nrole={role}\nsince={since}\n"
    os.ftruncate(fd, 0)
    os.pwrite(fd, record.encode(), 0)


def read_run_config(run_dir: Path) -> dict | None:
    """The run's `config.yaml`, or None when its claim was interrupted before it was written (missing or empty)."""
    path = run_dir / CONFIG_FILE
    if not path.is_file() or not path.read_text().strip():
        return None
    return read_mapping(path, "run's config", "the mapping this launcher writes; move it away to resume with the "
                        "new config, or choose another name=", RunDirError)


@dataclass
class RunClaim:
    """A claimed attempt of a run: its number, the lock it holds, and the run's original config on resume."""

    attempt: int
    lock: RunLock
    # On resume: the run's config.yaml; None when an interrupted claim left none.
    original: dict | None = None


def claim_run_dir(run_dir: Path, resume: bool, role: str = "launch",
                  check_busy: Callable[[Path], None] | None = None) -> RunClaim:
    """Create `run_dir` for a new run, or reopen it for `resume`, holding its lock; returns the claim.

    `check_busy(run_dir)` raises RunDirError when something else (a queued Slurm job) still runs the run;
    a refused resume leaves the directory as it was.
    """
    if resume:
        if not run_dir.is_dir():
            raise RunDirError(f"resume=true but there is no run to resume at {run_dir}")
        lock = acquire_run_lock(run_dir, "", role)
        try:
            if is_finished(run_dir):
                raise RunDirError(f"run {run_dir} already finished ({DONE_MARKER} exists); nothing to resume")
            if check_busy is not None:
                check_busy(run_dir)
            original = read_run_config(run_dir)
            attempts = sorted(int(p.name) for p in (run_dir / "attempts").glob("*") if p.name.isdigit())
            attempt = (attempts[-1] + 1) if attempts else 1
            (run_dir / "attempts" / str(attempt)).mkdir(parents=True, exist_ok=False)
        except BaseException:
            lock.release()
            raise
        _record_holder(lock.fd, attempt, role)
        return RunClaim(attempt, lock, original)
    create_new_dir(run_dir)
    lock = acquire_run_lock(run_dir, 0, role)
    (run_dir / "attempts" / "0").mkdir(parents=True, exist_ok=False)
    return RunClaim(0, lock)


def fault_point(phase: str, stopped: Callable[[], bool] = lambda: False) -> None:
    """Test hook: when $LONGVIDEO_R1_FAULT_AT names `phase`, print a marker and pause until `stopped()` or a while."""
    if os.environ.get(FAULT_VAR) != phase:
        return
    print(f"[launch] fault point {phase}: pausing (pid {os.getpid()})", flush=True)
    deadline = time.monotonic() + FAULT_PAUSE_S
    while time.monotonic() < deadline and not stopped():
        time.sleep(0.05)


def write_config(run_dir: Path, config: dict, attempt: int) -> Path:
    """Write the composed config (secrets removed); a resumed attempt gets its own file."""
    name = CONFIG_FILE if attempt == 0 else f"attempts/{attempt}/{CONFIG_FILE}"
    path = run_dir / name
    write_atomic(path, yaml.safe_dump(split_secrets(config)[0], sort_keys=False))
    return path


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file and a rename: an interruption leaves the old file or none."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def config_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config trees."""
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        dotted = f"{prefix}{key}"
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            changes.extend(config_changes(a, b, dotted + "."))
        elif a != b:
            changes.append(f"{dotted}: {a!r} -> {b!r}")
    return changes


def _run_quiet(argv: list[str], cwd: Path) -> str:
    """Output of a provenance command, or the reason it could not run."""
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"<could not run {' '.join(argv)}: {error}>\n"
    if done.returncode != 0:
        return f"<{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}>\n"
    return done.stdout


def write_provenance(run_dir: Path, attempt: int, seed: int | None, source_dir: Path) -> Path:
    """Record git commit and diff, `pip freeze`, the command line and the seed of this attempt."""
    out = run_dir / "attempts" / str(attempt) / "provenance"
    out.mkdir(parents=True, exist_ok=True)
    (out / "git_commit.txt").write_text(_run_quiet(["git", "rev-parse", "HEAD"], source_dir))
    status = _run_quiet(["git", "status", "--porcelain"], source_dir)
    diff = _run_quiet(["git", "diff", "HEAD"], source_dir)
    (out / "git_diff.patch").write_text(f"# git status --porcelain\n{status}\n{diff}")
    (out / "pip_freeze.txt").write_text(_run_quiet([sys.executable, "-m", "pip", "freeze"], source_dir))
    (out / "command.txt").write_text(" ".join(redact_argv(sys.argv)) + "\n")
    (out / "seed.txt").write_text(f"{seed}\n")
    host = os.uname().nodename
    (out / "host.txt").write_text(f"{host}\n")
    return out


def mark_done(run_dir: Path, outputs: dict[str, str]) -> None:
    """Write the `DONE` marker with the run's outputs; only a successful run calls this."""
    body = {"finished_at": _dt.datetime.now().isoformat(timespec="seconds"), "outputs": outputs}
    write_atomic(run_dir / DONE_MARKER, yaml.safe_dump(body, sort_keys=False))
