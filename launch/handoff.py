"""Hand-offs between stages: the newest finished run of a stage and recipe, and the outputs it recorded.

A run is finished when its `DONE` marker exists; the marker holds the run's named outputs (SFT's
and RL's `model`). `rl` starts from the newest finished SFT run of its recipe this way, and `eval`
from the newest finished RL run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from launch.compose import ConfigError
from launch.rundir import DONE_MARKER, is_finished


class HandoffError(ConfigError):
    """No finished run to hand off from, or one without the output asked for."""


@dataclass(frozen=True)
class Handoff:
    """An output of a finished run: the run directory, the output's name and its value."""

    run_dir: Path
    output: str
    value: str


def finished_runs(run_root: str | Path, stage: str, group: str) -> list[Path]:
    """The finished runs under `<run_root>/<stage>/<group>/`, newest first (by the time `DONE` was written).

    A sweep's points, one level deeper (`<sweep>/<index>/`), count as runs too.
    """
    base = Path(run_root).expanduser().absolute() / stage / group
    if not base.is_dir():
        return []
    candidates = [*base.glob(f"*/{DONE_MARKER}"), *base.glob(f"*/*/{DONE_MARKER}")]
    runs = [marker.parent for marker in candidates if marker.is_file()]
    return sorted(runs, key=lambda run: ((run / DONE_MARKER).stat().st_mtime_ns, str(run)), reverse=True)


def run_output(run_dir: Path, output: str) -> Handoff:
    """Output `output` recorded in the `DONE` marker of the finished run `run_dir`."""
    if not is_finished(run_dir):
        raise HandoffError(f"{run_dir} is not a finished run (no {DONE_MARKER} marker)")
    marker = yaml.safe_load((run_dir / DONE_MARKER).read_text()) or {}
    outputs = marker.get("outputs") or {}
    if output not in outputs:
        raise HandoffError(f"{run_dir}/{DONE_MARKER} records no `{output}` output (it has: "
                           f"{', '.join(outputs) or 'none'})")
    return Handoff(run_dir, output, str(outputs[output]))


def newest_output(run_root: str | Path, stage: str, group: str, output: str) -> Handoff:
    """Output `output` of the newest finished `stage` run of `group`; HandoffError naming where it looked."""
    runs = finished_runs(run_root, stage, group)
    if not runs:
        where = Path(run_root).expanduser().absolute() / stage / group
        raise HandoffError(f"no finished {stage} run of {group} under {where}")
    return run_output(runs[0], output)


def resolve_model(choice: str | None, run_root: str | Path, stage: str, group: str) -> Handoff | str:
    """The model a stage starts from: the newest finished `stage` run's (choice None), a run's, or `choice` itself."""
    if choice is None:
        return newest_output(run_root, stage, group, "model")
    path = Path(choice).expanduser()
    if path.is_dir() and ((path / DONE_MARKER).exists() or (path / "attempts").is_dir()):
        # A run directory: its recorded model, which needs the run to have finished.
        return run_output(path.absolute(), "model")
    if path.is_dir():
        return str(path.absolute())
    # A hub id is `name` or `org/name`; anything else that does not exist is a mistyped path.
    if choice.startswith(("/", ".", "~")) or choice.count("/") > 1:
        raise HandoffError(f"model {choice}: no such folder")
    return choice
