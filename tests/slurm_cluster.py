"""The one-machine Slurm cluster of `launch/slurm_local.sh` (nodes n1 and n2) for tests that submit real jobs.

Use it from a test module with `from tests.slurm_cluster import slurm, wait_for_job`: the `slurm` fixture skips the
test when no cluster answers, or fails it where LONGVIDEO_R1_REQUIRE_SLURM=1 (CI), so Slurm tests never vanish
silently there. There is no accounting daemon (no sacct): finished jobs are read with `scontrol -o show job`, which
keeps them for a day (MinJobAge=86400).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from launch.status import parse_scontrol

START_COMMAND = "bash launch/slurm_local.sh install && bash launch/slurm_local.sh start"
# Where `launch/slurm_local.sh start` writes slurm.conf unless LONGVIDEO_R1_SLURM_DIR says otherwise.
DEFAULT_STATE_DIR = Path("/tmp/longvideo-r1-slurm")
# Job states after which a job never runs again (a requeued job passes COMPLETING and PENDING, neither of these).
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
                          "BOOT_FAIL", "DEADLINE"})
# States in which `sinfo` shows a node that can take jobs.
USABLE_NODE_STATES = frozenset({"idle", "mix", "alloc", "comp"})
# Slurm clients wait up to a minute for a missing slurm.conf and retry an absent slurmctld; never that long here.
_CLIENT_TIMEOUT_S = 30


@dataclass(frozen=True)
class SlurmCluster:
    """A cluster that answered `sinfo`: its slurm.conf, the environment for Slurm commands, its usable nodes."""

    conf: Path
    env: dict[str, str]
    nodes: tuple[str, ...]


def _conf_path() -> Path:
    """SLURM_CONF from the environment, else the slurm.conf of launch/slurm_local.sh's state dir."""
    if os.environ.get("SLURM_CONF"):
        return Path(os.environ["SLURM_CONF"])
    state_dir = os.environ.get("LONGVIDEO_R1_SLURM_DIR") or DEFAULT_STATE_DIR
    return Path(state_dir) / "slurm.conf"


def _unavailable(reason: str) -> None:
    """Skip the test for a missing cluster, or fail it where LONGVIDEO_R1_REQUIRE_SLURM=1 (CI)."""
    message = f"no Slurm cluster: {reason}; to get one on this machine, as root: {START_COMMAND}"
    if os.environ.get("LONGVIDEO_R1_REQUIRE_SLURM") == "1":
        pytest.fail(f"{message} (LONGVIDEO_R1_REQUIRE_SLURM=1: Slurm tests may not be skipped)", pytrace=False)
    pytest.skip(message)


def slurm_cluster() -> SlurmCluster:
    """Check that a Slurm cluster answers and has usable nodes, and describe it; skip (or fail in CI) otherwise."""
    if shutil.which("sinfo") is None:
        _unavailable("the Slurm client commands are not installed (no sinfo on PATH)")
    conf = _conf_path()
    if not conf.is_file():
        _unavailable(f"no slurm.conf at {conf} (SLURM_CONF)")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    try:
        answer = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=env, capture_output=True, text=True,
                                timeout=_CLIENT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _unavailable(f"sinfo with SLURM_CONF={conf} did not answer within {_CLIENT_TIMEOUT_S}s")
    if answer.returncode != 0:
        _unavailable(f"slurmctld does not answer `sinfo` with SLURM_CONF={conf}: {answer.stderr.strip()}")
    states = dict(line.split() for line in answer.stdout.splitlines() if line.strip())
    # sinfo marks a state with a suffix: '*' not responding, '~' powered off, '#' powering up, ...
    nodes = tuple(sorted(node for node, state in states.items() if state in USABLE_NODE_STATES))
    if not nodes:
        _unavailable(f"no node of the cluster at {conf} can take jobs (sinfo -N: {states})")
    return SlurmCluster(conf=conf, env=env, nodes=nodes)


@pytest.fixture(scope="session")
def slurm() -> SlurmCluster:
    """The local Slurm cluster (see `slurm_cluster`), checked once per test session."""
    return slurm_cluster()


def _show_job(job_id: str | int, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["scontrol", "-o", "show", "job", str(job_id)], env=env, capture_output=True, text=True,
                          timeout=_CLIENT_TIMEOUT_S)


def job_field(job_id: str | int, env: dict[str, str]) -> dict[str, str]:
    """One look at a job: the fields `scontrol -o show job ID` prints (JobState, ExitCode, NodeList, Restarts,
    StdOut, ...). For an array or heterogeneous job, the first line's. AssertionError when scontrol fails."""
    shown = _show_job(job_id, env)
    assert shown.returncode == 0 and shown.stdout.strip(), (
        f"scontrol -o show job {job_id} failed ({shown.returncode}): {shown.stderr.strip()}")
    return parse_scontrol(shown.stdout.splitlines()[0])


def wait_for_job(job_id: str | int, env: dict[str, str], timeout_s: float) -> dict[str, str]:
    """Poll `scontrol -o show job ID` every 0.5 s until the job is in a final state (FINAL_STATES) and return its
    fields; AssertionError with the last answer after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    while True:
        try:
            shown = _show_job(job_id, env)
        except subprocess.TimeoutExpired:
            shown = subprocess.CompletedProcess([], returncode=-1, stdout="", stderr="no answer (timed out)")
        if shown.returncode == 0 and shown.stdout.strip():
            last = shown.stdout.splitlines()[0]
            fields = parse_scontrol(last)
            if fields.get("JobState") in FINAL_STATES:
                return fields
        else:
            last = f"scontrol failed ({shown.returncode}): {shown.stderr.strip()}"
        if time.monotonic() >= deadline:
            raise AssertionError(f"job {job_id} not finished after {timeout_s:g}s; last `scontrol -o show job`: "
                                 f"{last}")
        time.sleep(0.5)
