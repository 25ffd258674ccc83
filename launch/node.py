"""What a Slurm job runs on its nodes: `python -m launch.node PART ...` (see launch/templates/).

Parts: `ports KEY...` prints the shared ports as shell exports (batch step, first node);
`run`, `prepare`, `main`, `finish` run the submitted Plan or a part of it through the local
executor, with the node's rank, the node count and the head's address taken from Slurm on the
node itself; `wait-ray` polls `ray status` until every node and GPU has joined.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from launch.local import LocalExecutor, free_port
from launch.plan import Plan
from launch.rundir import RunDirError, acquire_run_lock

HEAD_ADDR_VAR = "LONGVIDEO_R1_HEAD_ADDR"
PORT_VAR = "LONGVIDEO_R1_PORT_{}"
PARTS = {"run": (True, True, True), "prepare": (True, False, False), "main": (False, True, False),
         "finish": (False, False, True)}
# Seconds a starting job waits for its submitter to let go of the run's lock.
SUBMITTER_WAIT_S = 120.0


class NodeError(RuntimeError):
    """The node's Slurm environment lacks what the Plan needs."""


def port_var(key: str) -> str:
    """The environment variable that carries free port `key` to every node."""
    return PORT_VAR.format(key.upper())


class SlurmNodeResolver:
    """Resolves Plan placeholders on one node of a Slurm job, from the job's environment."""

    def __init__(self, environ: dict[str, str] | None = None):
        self.environ = dict(os.environ if environ is None else environ)

    def _get(self, name: str, what: str) -> str:
        value = self.environ.get(name)
        if not value:
            raise NodeError(f"${name} is not set on this node; it carries {what} (set by the job's sbatch script)")
        return value

    def __call__(self, name: str, key: str | None) -> str:
        """The value of placeholder `name` (with `key` for free ports) on this node."""
        if name == "node_rank":
            # Read on each node inside its own srun task, never expanded once in the batch step.
            return self._get("SLURM_NODEID", "this node's rank in the job")
        if name == "nnodes":
            return self.environ.get("SLURM_JOB_NUM_NODES") or self._get("SLURM_NNODES", "the job's node count")
        if name == "head_addr":
            return self._get(HEAD_ADDR_VAR, "the first node's host name")
        return self._get(port_var(key), f"the port {key!r} that every node shares")


def print_ports(keys: list[str]) -> None:
    """Print `export VAR=PORT` for each key: ports free on this node, to be shared by every node."""
    taken: set[int] = set()
    for key in keys:
        port = free_port()
        # Each port is free now; two keys must not get the same one either.
        while port in taken:
            port = free_port()
        taken.add(port)
        print(f"export {port_var(key)}={port}")


def run_part(part: str, plan_path: Path, attempt: int) -> int:
    """Run a part of the submitted Plan on this node; returns its exit code.

    The part that starts the job (`run`, `prepare`) holds the run's lock while it runs, so the job fails
    here if another attempt of the run is live; it waits only for its submitter to let go of the lock.
    """
    plan = Plan.from_yaml(plan_path.read_text())
    prepare, _main, _finish = PARTS[part]
    if not prepare:
        return _run_part(plan, part, attempt)
    # The submitter created the run's directory; a Plan submitted by hand may name a new one.
    Path(plan.run_dir).mkdir(parents=True, exist_ok=True)
    with acquire_run_lock(Path(plan.run_dir), attempt, "job", wait_s=SUBMITTER_WAIT_S, wait_for="submit"):
        return _run_part(plan, part, attempt)


def _run_part(plan: Plan, part: str, attempt: int) -> int:
    """Run a part of `plan` through the local executor, with this node's rank and the job's head."""
    resolver = SlurmNodeResolver()
    rank = int(resolver("node_rank", None)) if part == "main" else 0
    prepare, main, finish = PARTS[part]
    if prepare or finish:
        (Path(plan.run_dir) / "attempts" / str(attempt)).mkdir(parents=True, exist_ok=True)
    if prepare and attempt > 0:
        print(f"[launch] attempt {attempt} of {plan.run_dir}: resuming from the last checkpoint", flush=True)
    print(f"[launch] node {os.environ.get('SLURMD_NODENAME', '?')}: {part} with node_rank={rank} "
          f"nnodes={resolver('nnodes', None)} head_addr={resolver('head_addr', None)} "
          f"source={Path(__file__).resolve().parents[1]}", flush=True)
    executor = LocalExecutor(plan, attempt, resolver=resolver, log_suffix=f".node{rank}" if rank else "")
    return executor.run(prepare=prepare, main=main, finish=finish)


def ray_cluster_size(status_text: str) -> tuple[int, float]:
    """(active nodes, total GPUs) from the text `ray status` prints."""
    active = re.search(r"^Active:\n(.*?)^(Pending|Recent failures):", status_text, re.S | re.M)
    nodes = len(re.findall(r"^\s+\d+\s+node_", active.group(1), re.M)) if active else 0
    gpus = re.search(r"^\s*[\d.]+/([\d.]+) GPU\b", status_text, re.M)
    return nodes, float(gpus.group(1)) if gpus else 0.0


def _ended(pid: int) -> bool:
    """Whether process `pid` is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def wait_for_ray(address: str, nodes: int, gpus: float, timeout_s: float, poll_s: float = 2.0,
                 starters: tuple[int, ...] = ()) -> None:
    """Poll `ray status` until `nodes` nodes with `gpus` GPUs in all have joined; NodeError after `timeout_s`.

    `starters` are the pids of the `ray start` steps: if one ends first, waiting longer is pointless.
    """
    deadline = time.monotonic() + timeout_s
    seen = "ray status has not answered yet"
    while True:
        ended = [pid for pid in starters if _ended(pid)]
        if ended:
            raise NodeError(f"a `ray start` step (pid {ended[0]}) ended before the Ray cluster at {address} was "
                            f"complete ({seen}); see its output in the job's log")
        done = subprocess.run(["ray", "status", "--address", address], capture_output=True, text=True)
        if done.returncode == 0:
            joined, joined_gpus = ray_cluster_size(done.stdout)
            seen = f"{joined} of {nodes} nodes and {joined_gpus:g} of {gpus:g} GPUs joined"
            if joined >= nodes and joined_gpus >= gpus:
                print(f"[launch] Ray cluster at {address} is complete: {seen}", flush=True)
                return
        if time.monotonic() > deadline:
            raise NodeError(f"the Ray cluster at {address} is not complete after {timeout_s:g}s: {seen}; see the "
                            "job's log for each node's `ray start` output (launcher.ray.join_timeout_s)")
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m launch.node`."""
    parser = argparse.ArgumentParser(prog="python -m launch.node", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    ports = sub.add_parser("ports", help="print shared free ports as shell exports")
    ports.add_argument("keys", nargs="*")
    for part in PARTS:
        command = sub.add_parser(part, help=f"run the Plan's {part} part on this node")
        command.add_argument("plan", type=Path, help="the submitted Plan (slurm/<attempt>/plan.yaml)")
        command.add_argument("--attempt", type=int, required=True)
    ray = sub.add_parser("wait-ray", help="wait until every node and GPU joined the Ray cluster")
    ray.add_argument("--address", required=True)
    ray.add_argument("--nodes", type=int, required=True)
    ray.add_argument("--gpus", type=float, default=0.0)
    ray.add_argument("--timeout", type=float, required=True)
    ray.add_argument("--starters", type=int, nargs="*", default=[], help="pids of the `ray start` steps")
    args = parser.parse_args(argv)
    try:
        if args.part == "ports":
            print_ports(args.keys)
            return 0
        if args.part == "wait-ray":
            wait_for_ray(args.address, args.nodes, args.gpus, args.timeout, starters=tuple(args.starters))
            return 0
        return run_part(args.part, args.plan, args.attempt)
    except (NodeError, RunDirError) as error:
        print(f"[launch] error: {error}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
