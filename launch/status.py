"""`python -m launch status DIR`: each run's state, exit code, job and results.

DIR is a run directory, a sweep's directory (each point), or a folder of runs such as runs/sft/tiny or
runs/sft (every run and sweep point below it, labelled by its path inside DIR).

A run's state comes from Slurm while it knows the job (`scontrol -o show job`, since there may be
no accounting database), and otherwise from the run directory: `DONE` means finished, an
attempt's `exit_code` file tells how it ended.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from launch.rundir import CONFIG_FILE, DONE_MARKER, is_finished
from launch.slurm import ACTIVE_STATES, recorded_jobs

SWEEP_FILE = "sweep.yaml"
# A field starts where a space is followed by `Key=`; Slurm's keys start with a capital letter and may hold
# ':' or '/' (AllocNode:Sid, CPUs/Task). A value runs until the next such key, so it may hold spaces.
FIELD_START = re.compile(r"(?:^| )([A-Z][A-Za-z0-9_:/]*)=")


@dataclass
class RunStatus:
    """One run as `status` reports it."""

    run_dir: Path
    state: str
    exit_code: int | None
    job_id: str | None
    where: str


def parse_scontrol(line: str) -> dict[str, str]:
    """The `Key=Value` fields of one `scontrol -o show job` line; values may hold spaces (JobName, Command)."""
    starts = list(FIELD_START.finditer(line))
    fields = {}
    for match, following in zip(starts, [*starts[1:], None], strict=True):
        end = following.start() if following is not None else len(line)
        fields[match.group(1)] = line[match.end():end].strip()
    return fields


def exit_code_of(slurm_exit: str) -> int:
    """A shell-style exit code from Slurm's "code:signal": the code, or 128 + the signal that killed the job."""
    code, _, signal_number = slurm_exit.partition(":")
    if int(code) == 0 and signal_number.isdigit() and int(signal_number) > 0:
        return 128 + int(signal_number)
    return int(code)


def slurm_job(job_id: str) -> dict[str, str] | None:
    """What Slurm says about a job, or None when it no longer knows it (or there is no Slurm here)."""
    try:
        done = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return parse_scontrol(done.stdout.strip().splitlines()[0])


def recorded_exit(run_dir: Path) -> int | None:
    """The exit code written by the newest attempt that wrote one on its first node."""
    attempts = sorted((p for p in (run_dir / "attempts").glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
    for attempt in reversed(attempts):
        path = attempt / "exit_code"
        if path.is_file():
            return int(path.read_text().strip())
    return None


def run_status(run_dir: Path) -> RunStatus:
    """The state of one run directory."""
    jobs = recorded_jobs(run_dir)
    job_id = jobs[-1][1] if jobs else None
    if is_finished(run_dir):
        outputs = (yaml.safe_load((run_dir / DONE_MARKER).read_text()) or {}).get("outputs") or {}
        where = ", ".join(f"{name}: {path}" for name, path in outputs.items()) or str(run_dir)
        return RunStatus(run_dir, "COMPLETED", 0, job_id, where)
    job = slurm_job(job_id) if job_id else None
    code = recorded_exit(run_dir)
    if job:
        slurm_code = exit_code_of(job.get("ExitCode", "0:0"))
        state = job.get("JobState", "UNKNOWN")
        restarts = job.get("Restarts", "0")
        if restarts != "0":
            state += f" (requeued {restarts}x)"
        ended = state.split()[0] not in ACTIVE_STATES
        exit_code = (slurm_code if code is None else code) if ended else None
        return RunStatus(run_dir, state, exit_code, job_id, job.get("StdOut", ""))
    if code is not None:
        return RunStatus(run_dir, "FAILED" if code else "ENDED", code, job_id, str(run_dir / "logs"))
    state = "UNKNOWN (Slurm no longer knows the job)" if job_id else "NOT FINISHED"
    return RunStatus(run_dir, state, None, job_id, str(run_dir / "logs"))


def sweep_points(sweep_dir: Path) -> list[tuple[str, Path]]:
    """(label, run directory) of every point of a sweep, in index order."""
    points = yaml.safe_load((sweep_dir / SWEEP_FILE).read_text()) or []
    return [(f"{p['index']}: {' '.join(p['overrides'])}", sweep_dir / str(p["index"])) for p in points]


def runs_in(directory: Path, folder: Path | None = None) -> list[tuple[str, Path]]:
    """(label, run directory) of a sweep's points, of a run, or of every run below a folder of runs, in name order.

    Below a folder (`folder`: the one `status` was given), labels are paths inside it; a run's or a sweep's
    own folders are never searched.
    """
    inside = "" if folder is None else f"{directory.relative_to(folder)}/"
    if (directory / SWEEP_FILE).is_file():
        return [(f"{inside}{label}", run_dir) for label, run_dir in sweep_points(directory)]
    if (directory / CONFIG_FILE).is_file():
        return [(inside.rstrip("/") or directory.name, directory)]
    children = sorted(child for child in directory.iterdir() if child.is_dir() and not child.name.startswith("."))
    return [row for child in children for row in runs_in(child, folder or directory)]


def format_table(rows: list[tuple[str, RunStatus]]) -> str:
    """A plain-text table of runs."""
    header = ("run", "state", "exit", "job", "results or log")
    cells = [header] + [(label, s.state, "" if s.exit_code is None else str(s.exit_code), s.job_id or "-", s.where)
                        for label, s in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    return "\n".join("  ".join([*(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)), row[-1]])
                     for row in cells)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m launch status`; 0 when every run finished, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m launch status", description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, help="a run directory, a sweep's directory (holds sweep.yaml), or "
                        "a folder of runs (e.g. runs/sft/tiny or runs/sft)")
    args = parser.parse_args(argv)
    directory = args.directory.expanduser().absolute()
    runs = runs_in(directory) if directory.is_dir() else []
    if not runs:
        print(f"error: {directory} is neither a run directory ({CONFIG_FILE}) nor a sweep directory ({SWEEP_FILE}), "
              "and no folder below it is one", file=sys.stderr)
        return 2
    rows = [(label, run_status(run_dir)) for label, run_dir in runs]
    print(format_table(rows))
    return 0 if all(status.state == "COMPLETED" for _, status in rows) else 1
