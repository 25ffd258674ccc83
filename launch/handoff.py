"""Hand-offs between stages: the newest finished run of a stage and recipe, and the outputs it recorded.

A run is finished when its `DONE` marker exists; the marker holds the run's named outputs (SFT's
and RL's `model`, sft_data's `dataset`, rl_data's `train` and `val`). `rl` starts from the newest
finished SFT run of its recipe this way, and `eval` from the newest finished RL run. An input file
left null (`sft.dataset.path`, `rl.data.*_files`, `sft_data.input`) is the newest finished run's
output of the stage that produces it, in any group (`resolve_input`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import DictConfig

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


def finished_runs(run_root: str | Path, stage: str, group: str | None) -> list[Path]:
    """The finished runs under `<run_root>/<stage>/<group>/` (group None: of every group), newest first.

    Newest is by the time `DONE` was written. A sweep's points, one level deeper (`<sweep>/<index>/`),
    count as runs too.
    """
    base = stage_folder(run_root, stage, group)
    if not base.is_dir():
        return []
    # Every group's runs are one level further down than one group's.
    depth = "*/" if group is None else ""
    candidates = [*base.glob(f"{depth}*/{DONE_MARKER}"), *base.glob(f"{depth}*/*/{DONE_MARKER}")]
    runs = [marker.parent for marker in candidates if marker.is_file()]
    return sorted(runs, key=lambda run: ((run / DONE_MARKER).stat().st_mtime_ns, str(run)), reverse=True)


def stage_folder(run_root: str | Path, stage: str, group: str | None) -> Path:
    """Where the runs of `stage` and `group` live (group None: the stage's folder of every group)."""
    base = Path(run_root).expanduser().absolute() / stage
    return base if group is None else base / group


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


def newest_output(run_root: str | Path, stage: str, group: str | None, output: str) -> Handoff:
    """Output `output` of the newest finished `stage` run of `group` (None: any); HandoffError says where it looked."""
    runs = finished_runs(run_root, stage, group)
    if not runs:
        of_group = "" if group is None else f" of {group}"
        raise HandoffError(f"no finished {stage} run{of_group} under {stage_folder(run_root, stage, group)}")
    return run_output(runs[0], output)


def newest_output_of_stage(run_root: str | Path, stage: str, output: str) -> Handoff:
    """Output `output` of the newest finished `stage` run in any group (a dataset stage's runs are grouped by name)."""
    return newest_output(run_root, stage, None, output)


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


@dataclass(frozen=True)
class InputSource:
    """The stage whose runs produce an input file: its name, the output it records, the command that runs it."""

    stage: str
    output: str
    command: str


@dataclass(frozen=True)
class ChosenInput:
    """The file a stage reads for one key; `demo`: the Plan builds it; `found` False: a dry run's placeholder."""

    path: str
    demo: bool = False
    found: bool = True


def resolve_input(config: DictConfig, consumer: str, key: str, choice: str | None, source: InputSource,
                  demo_path: str | None = None) -> ChosenInput:
    """The file `key` names, else the newest finished `source` run's output, else the demo file; says which it took.

    `demo_path` is set when the Plan builds the demo: it is taken only when no `source.stage` run finished. Without
    either, a real run stops with the command to run first; a dry run warns and goes on with a placeholder.
    """
    if choice is not None:
        path = str(Path(choice).expanduser().absolute())
        print(f"[launch] {consumer} reads {path} ({key})", file=sys.stderr)
        # With a demo build, a file named is where the Plan builds the demo.
        return ChosenInput(path, demo=demo_path is not None)
    try:
        handoff = newest_output_of_stage(config.run_root, source.stage, source.output)
    except HandoffError as error:
        if demo_path is not None and not finished_runs(config.run_root, source.stage, None):
            print(f"[launch] {consumer} reads {demo_path} (the demo file this Plan builds: {error})", file=sys.stderr)
            return ChosenInput(demo_path, demo=True)
        hint = f"run `{source.command}` first, or set {key}=PATH"
        if not config.dry_run:
            raise HandoffError(f"{consumer}: {error}; {hint}") from None
        print(f"[launch] warning: {error}; a real run stops here ({hint})", file=sys.stderr)
        return ChosenInput(f"<no finished {source.stage} run: set {key}>", found=False)
    print(f"[launch] {consumer} reads {handoff.value} (the {source.output} of {source.stage} run {handoff.run_dir})",
          file=sys.stderr)
    return ChosenInput(handoff.value)
