"""The two environment locks, resolved from one source of versions (`launch/env/stack.in`).

    python -m launch.locks compile    regenerate launch/env/gpu.lock, then cpu.lock constrained by it
    python -m launch.locks check      resolve both again against the registry and compare; writes nothing

The GPU lock is the whole pipeline on a CUDA node (torch 2.8.0 with the registry's CUDA 12.8 wheels,
vLLM 0.11.0). The CPU lock is the same stack less CUDA, for CI: it is resolved with every pin of the
GPU lock as a constraint, except the packages built against one torch (`TORCH_BUILDS`), so a shared
package cannot take another version. Both are resolved for Linux x86_64 and Python 3.11 by uv from
package metadata alone: no wheel is downloaded, so the check needs no GPU and fetches no CUDA wheel.
Needs `uv` (in the CPU environment; elsewhere `pip install uv`) and the package registry.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ENV_DIR = Path(__file__).with_name("env")
GPU_IN, GPU_LOCK = ENV_DIR / "gpu.in", ENV_DIR / "gpu.lock"
CPU_IN, CPU_LOCK = ENV_DIR / "cpu.in", ENV_DIR / "cpu.lock"
# CUDA runtime wheels that the registry's Linux torch 2.13.0 names; the CPU build needs none of them.
CPU_EXCLUDES = ENV_DIR / "cpu.excludes"
PYTHON_VERSION = "3.11"
PLATFORM = "x86_64-manylinux_2_28"
# Built against one torch, so their versions follow torch's build and differ between the locks.
TORCH_BUILDS = ("torch", "torchvision", "torchaudio")
COMPILE_COMMAND = "python -m launch.locks compile"
# The verl-tool commit the project installs (by launch/install.sh, which reads it as shell).
VERL_TOOL_PIN = ENV_DIR / "verl_tool.pin"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


class LockError(RuntimeError):
    """A lock that does not resolve, or no longer matches what its input resolves to."""


def normalize(name: str) -> str:
    """A package name as the registry compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """`name -> version` of every `name==version` line of a lock file."""
    pins = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[normalize(match.group(1))] = match.group(2)
    return pins


def verl_tool_pin() -> tuple[str, str]:
    """The verl-tool repository URL and full commit that `launch/env/verl_tool.pin` names."""
    values = dict(line.split("=", 1) for line in VERL_TOOL_PIN.read_text().splitlines()
                  if line.strip() and not line.startswith("#"))
    commit = values.get("VERL_TOOL_COMMIT", "")
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise LockError(f"{VERL_TOOL_PIN}: VERL_TOOL_COMMIT must be a full 40-digit commit, got {commit!r}")
    return values["VERL_TOOL_REPOSITORY"], commit


def shared_disagreements(gpu: dict[str, str], cpu: dict[str, str]) -> list[str]:
    """Each package in both locks at two versions, other than the torch builds."""
    return [f"{name}: gpu.lock {gpu[name]}, cpu.lock {cpu[name]}" for name in sorted(gpu.keys() & cpu.keys())
            if gpu[name] != cpu[name] and name not in TORCH_BUILDS]


def uv_binary() -> str:
    """The uv executable: the `uv` package of this interpreter, else `uv` on PATH."""
    try:
        from uv import find_uv_bin
    except ImportError:
        found = shutil.which("uv")
        if found is None:
            raise LockError("uv is not installed: `pip install uv` (the CPU environment has it)") from None
        return found
    return find_uv_bin()


def _compile(source: Path, output: Path, *extra: str) -> None:
    """`uv pip compile source -o output` for the locks' platform and Python, with `extra` arguments."""
    command = [uv_binary(), "pip", "compile", str(source), "--python-version", PYTHON_VERSION,
               "--python-platform", PLATFORM, "--custom-compile-command", COMPILE_COMMAND,
               "--quiet", "-o", str(output), *extra]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise LockError(f"resolving {source.name} failed ({' '.join(command)}):\n{done.stderr.strip()}")


def _gpu_constraints(folder: Path) -> Path:
    """The GPU lock's pins less the torch builds, as a constraints file for the CPU resolution."""
    path = folder / "gpu.lock"
    kept = [line for line in GPU_LOCK.read_text().splitlines()
            if not ((match := PIN.match(line)) and normalize(match.group(1)) in TORCH_BUILDS)]
    path.write_text("\n".join(kept) + "\n")
    return path


def _resolve_cpu(output: Path, folder: Path, *extra: str) -> None:
    """Resolve the CPU lock into `output`, every shared package held at the GPU lock's version."""
    _compile(CPU_IN, output, "-c", str(_gpu_constraints(folder)), "--excludes", str(CPU_EXCLUDES), *extra)
    # The constraints file is a temporary copy: name the committed lock in the annotations instead.
    output.write_text(output.read_text().replace(str(folder / "gpu.lock"), "launch/env/gpu.lock (less torch builds)"))


def compile_locks() -> None:
    """Regenerate gpu.lock from gpu.in, then cpu.lock from cpu.in constrained by it."""
    _compile(GPU_IN, GPU_LOCK)
    with tempfile.TemporaryDirectory() as folder:
        _resolve_cpu(CPU_LOCK, Path(folder))
    disagreeing = shared_disagreements(read_pins(GPU_LOCK), read_pins(CPU_LOCK))
    if disagreeing:
        raise LockError("the locks disagree on shared packages:\n  " + "\n  ".join(disagreeing))


def _diff(lock: Path, resolved: Path) -> list[str]:
    """What changed between a committed lock and a fresh resolution of its input."""
    old, new = read_pins(lock), read_pins(resolved)
    changed = [name for name in sorted(old.keys() & new.keys()) if old[name] != new[name]]
    return ([f"{name}: {old[name]} -> {new[name]}" for name in changed]
            + [f"{name}: only in {lock.name}" for name in sorted(old.keys() - new.keys())]
            + [f"{name}: new, not in {lock.name}" for name in sorted(new.keys() - old.keys())])


def check_locks() -> None:
    """Resolve both inputs again, held to their locks, against the registry; raise on any difference."""
    problems = []
    with tempfile.TemporaryDirectory() as folder:
        gpu, cpu = Path(folder) / "gpu.resolved", Path(folder) / "cpu.resolved"
        _compile(GPU_IN, gpu, "-c", str(GPU_LOCK))
        _resolve_cpu(cpu, Path(folder), "-c", str(CPU_LOCK))
        problems += [f"gpu.lock: {d}" for d in _diff(GPU_LOCK, gpu)]
        problems += [f"cpu.lock: {d}" for d in _diff(CPU_LOCK, cpu)]
    if problems:
        raise LockError("the locks no longer match their inputs (regenerate with "
                        f"`{COMPILE_COMMAND}`):\n  " + "\n  ".join(problems))


def main(argv: list[str] | None = None) -> int:
    """The command line: compile or check."""
    parser = argparse.ArgumentParser(prog="python -m launch.locks", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=["compile", "check"])
    args = parser.parse_args(argv)
    try:
        compile_locks() if args.action == "compile" else check_locks()
    except LockError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    outcome = "written" if args.action == "compile" else "resolve"
    print(f"{args.action}: {GPU_LOCK.name} ({len(read_pins(GPU_LOCK))} packages) and "
          f"{CPU_LOCK.name} ({len(read_pins(CPU_LOCK))} packages) {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
