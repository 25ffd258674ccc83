"""Run directories: `runs/<stage>/<recipe or dataset>/<name>/`, never overwritten.

A run directory holds the composed config (secrets removed), the rendered Plan and files, logs,
provenance (git commit and diff, pip freeze, seed) and, on success only, a `DONE` marker.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

DONE_MARKER = "DONE"
# Config keys whose values are secrets: they are replaced before the config is written.
SECRET_KEY = re.compile(r"(api_key|apikey|token|secret|password)$", re.IGNORECASE)
REDACTED = "<redacted>"
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


def create_new_dir(path: Path) -> None:
    """Create `path`, which must not exist yet (a run's or a sweep's directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # mkdir without exist_ok is atomic: two launches racing for one name cannot both win.
        path.mkdir()
    except FileExistsError:
        raise RunDirError(
            f"run directory {path} already exists; choose another name=, or add resume=true to continue that run"
        ) from None


def claim_run_dir(run_dir: Path, resume: bool) -> int:
    """Create `run_dir` for a new run, or reopen it for `resume`; returns the attempt number."""
    if resume:
        if not run_dir.is_dir():
            raise RunDirError(f"resume=true but there is no run to resume at {run_dir}")
        if is_finished(run_dir):
            raise RunDirError(f"run {run_dir} already finished ({DONE_MARKER} exists); nothing to resume")
        attempts = sorted(int(p.name) for p in (run_dir / "attempts").glob("*") if p.name.isdigit())
        attempt = (attempts[-1] + 1) if attempts else 1
    else:
        create_new_dir(run_dir)
        attempt = 0
    (run_dir / "attempts" / str(attempt)).mkdir(parents=True, exist_ok=False)
    return attempt


def redact_secrets(value: Any) -> Any:
    """A copy of a config tree with the values of secret-looking keys replaced."""
    if isinstance(value, dict):
        return {k: (REDACTED if SECRET_KEY.search(str(k)) and v else redact_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_secrets(v) for v in value]
    return value


def write_config(run_dir: Path, config: dict, attempt: int) -> Path:
    """Write the composed config (secrets removed); a resumed attempt gets its own file."""
    name = "config.yaml" if attempt == 0 else f"attempts/{attempt}/config.yaml"
    path = run_dir / name
    path.write_text(yaml.safe_dump(redact_secrets(config), sort_keys=False))
    return path


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
    (out / "command.txt").write_text(" ".join(sys.argv) + "\n")
    (out / "seed.txt").write_text(f"{seed}\n")
    host = os.uname().nodename
    (out / "host.txt").write_text(f"{host}\n")
    return out


def mark_done(run_dir: Path, outputs: dict[str, str]) -> None:
    """Write the `DONE` marker with the run's outputs; only a successful run calls this."""
    body = {"finished_at": _dt.datetime.now().isoformat(timespec="seconds"), "outputs": outputs}
    tmp = run_dir / f".{DONE_MARKER}.tmp"
    tmp.write_text(yaml.safe_dump(body, sort_keys=False))
    tmp.replace(run_dir / DONE_MARKER)
