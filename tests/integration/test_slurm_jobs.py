"""`launcher=slurm` against a real slurmctld and two slurmd (nodes n1, n2) of `launch/slurm_local.sh`.

Every job here is submitted by the real `python -m launch ... launcher=slurm` with the real `sbatch`,
and runs the real tiny SFT (LLaMA-Factory, torchrun over two nodes) or the RL template's Ray bootstrap.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from tests.conftest import launch
from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.slurm_cluster import wait_for_job
from tests.integration.conftest import Demo
from tests.integration.test_agent_stages import PLANTED_SECRETS, Policy, PolicyServer, files_holding, trajectories_argv

pytestmark = pytest.mark.slow

# Seconds a tiny job may take on 2 loaded cores before a test gives up on it.
JOB_TIMEOUT_S = 600


def submit(slurm, *args: str) -> tuple[list[str], subprocess.CompletedProcess]:
    """Run `python -m launch ARGS launcher=slurm`; the job ids it printed, and its output."""
    done = launch(*args, "launcher=slurm", env=slurm.env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return re.findall(r"as Slurm job (\d+)", done.stdout), done


def status(slurm, directory: Path) -> subprocess.CompletedProcess:
    """`python -m launch status DIRECTORY`."""
    return launch("status", str(directory), env=slurm.env, timeout=120)


def job_processes(job_id: str) -> list[int]:
    """Live (non-zombie) processes that belong to Slurm job `job_id`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or (proc / "stat").read_text().split(")")[-1].split()[0] == "Z":
                continue
            if f"SLURM_JOB_ID={job_id}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_tiny_sft_job_runs_the_snapshot_to_a_checkpoint(slurm, tiny_cache: Path, run_root: Path) -> None:
    """A held job runs the source snapshot taken at submission, not the checkout, to a checkpoint."""
    (job_id,), done = submit(slurm, "sft", "recipe=tiny", f"run_root={run_root}", "name=one", "sft.max_steps=2",
                             "sft.save_steps=2", "launcher.extra_sbatch=[--hold]")
    run_dir = run_root / "sft" / "tiny" / "one"
    submission = run_dir / "slurm" / "0"
    assert f"script: {submission / 'job.sbatch'}" in done.stdout and f"log:    {run_dir}/logs/slurm-" in done.stdout
    for path in ("config.yaml", "attempts/0/provenance/git_commit.txt", "slurm/0/plan.yaml", "slurm/0/job.sbatch",
                 "slurm/0/source/launch/node.py", "slurm/0/source/recipes/tiny.yaml"):
        assert (run_dir / path).is_file(), path
    assert not (submission / "source" / "tests").exists()
    # Changing the snapshot while the job is held changes what runs: the job imports the snapshot.
    with open(submission / "source" / "launch" / "__init__.py", "a") as package:
        package.write('\nprint("[snapshot] this copy runs", flush=True)\n')
    subprocess.run(["scontrol", "release", job_id], env=slurm.env, check=True)
    job = wait_for_job(job_id, slurm.env, JOB_TIMEOUT_S)
    log = (run_dir / "logs" / f"slurm-{job_id}.out").read_text()
    assert job["JobState"] == "COMPLETED", log[-3000:]
    assert "[snapshot] this copy runs" in log and f"source={submission / 'source'}" in log
    assert (run_dir / "DONE").is_file() and (run_dir / "checkpoints" / "checkpoint-2").is_dir()
    reported = status(slurm, run_dir)
    assert reported.returncode == 0 and re.search(rf"one\s+COMPLETED\s+0\s+{job_id}\s+model: ", reported.stdout)


def test_two_node_sft_gives_each_node_its_rank_and_one_master(slurm, tiny_cache: Path, run_root: Path) -> None:
    """torchrun over n1 and n2: NODE_RANK 0 and 1 read on each node, one MASTER_ADDR and port, world size 2."""
    (job_id,), _ = submit(slurm, "sft", "recipe=tiny", f"run_root={run_root}", "name=two", "launcher.nodes=2",
                          "sft.max_steps=2", "sft.save_steps=2")
    job = wait_for_job(job_id, slurm.env, JOB_TIMEOUT_S)
    run_dir = run_root / "sft" / "tiny" / "two"
    log = (run_dir / "logs" / f"slurm-{job_id}.out").read_text()
    assert job["JobState"] == "COMPLETED" and job["NodeList"] == "n[1-2]", log[-3000:]
    ranks = dict(re.findall(r"\[launch\] node (n\d): main with node_rank=(\d) nnodes=2 head_addr=n1", log))
    assert ranks == {"n1": "0", "n2": "1"}
    masters = set()
    for rank, name in ((0, "train.0.log"), (1, "train.0.node1.log")):
        train_log = (run_dir / "logs" / name).read_text()
        assert f"num nodes: 2, node rank: {rank}" in train_log and "world size: 2" in train_log
        masters |= set(re.findall(r"distributed tasks at: (\S+)", train_log))
    assert len(masters) == 1 and masters.pop().startswith("n1:")
    assert (run_dir / "DONE").is_file() and (run_dir / "checkpoints" / "checkpoint-2").is_dir()


def test_requeued_sft_job_resumes_from_its_checkpoint(slurm, tiny_cache: Path, run_root: Path) -> None:
    """SIGUSR1 (the time limit's warning) requeues the job; attempt 1 resumes from the last checkpoint."""
    (job_id,), _ = submit(slurm, "sft", "recipe=tiny", f"run_root={run_root}", "name=requeued", "sft.max_steps=12",
                          "sft.save_steps=4")
    run_dir = run_root / "sft" / "tiny" / "requeued"
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not (run_dir / "checkpoints" / "checkpoint-4" / "trainer_state.json").is_file():
        assert time.monotonic() < deadline and not (run_dir / "DONE").exists(), "no checkpoint-4 before the end"
        time.sleep(0.5)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job_id], env=slurm.env, check=True)
    job = wait_for_job(job_id, slurm.env, JOB_TIMEOUT_S)
    log = (run_dir / "logs" / f"slurm-{job_id}.out").read_text()
    assert job["JobState"] == "COMPLETED" and job["Restarts"] == "1", log[-3000:]
    assert "time limit near, requeueing" in log and "attempt 1 of" in log
    resumed = (run_dir / "logs" / "train.1.log").read_text()
    assert re.search(r"Resuming training from \S+/checkpoint-(4|8)", resumed)
    assert (run_dir / "attempts" / "1" / "exit_code").read_text().strip() == "0"
    assert (run_dir / "DONE").is_file() and (run_dir / "checkpoints" / "checkpoint-12").is_dir()
    assert "COMPLETED" in status(slurm, run_dir).stdout


@pytest.mark.parametrize("user_token", [False, True], ids=["no_ray_token", "user_ray_token"])
def test_rl_job_starts_ray_on_both_nodes_and_stops_it(slurm, tiny_cache: Path, run_root: Path, tmp_path: Path,
                                                      user_token: bool) -> None:
    """The RL template's Ray head (n1) sees the worker (n2) join; the trap stops Ray when the run ends.

    Whether or not the user's HOME holds the token an earlier Ray use wrote (`~/.ray/auth_token`), which
    without an explicit auth mode turns token auth on in the head only and gets every worker refused.
    """
    from launch.local import free_port

    home = tmp_path / "home"
    token_file = home / ".ray" / "auth_token"
    if user_token:
        token_file.parent.mkdir(parents=True)
        token_file.write_text("0123456789abcdef" * 4)
    else:
        home.mkdir()
    # The job inherits the submitter's environment, HOME included.
    cluster = dataclasses.replace(slurm, env={**slurm.env, "HOME": str(home)})
    model = tiny_cache / "models" / "tiny-qwen3"
    (job_id,), _ = submit(cluster, "rl", "recipe=tiny", f"run_root={run_root}", "name=ray", f"rl.model={model}",
                          "launcher.nodes=2", "launcher.request_gpus=false", f"launcher.ray.port={free_port()}",
                          "launcher.ray.join_timeout_s=240")
    job = wait_for_job(job_id, cluster.env, JOB_TIMEOUT_S)
    log = (run_root / "rl" / "tiny" / "ray" / "logs" / f"slurm-{job_id}.out").read_text()
    assert "InvalidAuthToken" not in log, log[-3000:]
    assert re.search(r"Ray cluster at n1:\d+ is complete: 2 of 2 nodes and 2 of 2 GPUs joined", log), log[-3000:]
    assert "[launch] node n1: run with node_rank=0 nnodes=2 head_addr=n1" in log
    # Without a GPU the trainer cannot run: the job fails after the services started, and Ray still stops.
    assert job["JobState"] == "FAILED", log[-3000:]
    assert "stopping Ray on every node" in log
    deadline = time.monotonic() + 30
    while job_processes(job_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert job_processes(job_id) == []


def test_reward_sweep_submits_one_job_per_preset_and_returns(slurm, tiny_cache: Path, run_root: Path) -> None:
    """`-m reward=paper,default,no_location`: three held jobs, three run dirs, one W&B group, and `status`."""
    model = tiny_cache / "models" / "tiny-qwen3"
    presets = ("paper", "default", "no_location")
    job_ids, done = submit(slurm, "rl", "recipe=tiny", "-m", f"reward={','.join(presets)}", f"run_root={run_root}",
                           "name=ablation", f"rl.model={model}", "rl.report_to=offline", "launcher.request_gpus=false",
                           "launcher.extra_sbatch=[--hold]")
    sweep_dir = run_root / "rl" / "tiny" / "ablation"
    try:
        assert len(set(job_ids)) == 3 and f"python -m launch status {sweep_dir}" in done.stdout
        for index, preset in enumerate(presets):
            run_dir = sweep_dir / str(index)
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            assert config["reward"]["preset"] == preset and config["wandb"]["group"] == "ablation"
            plan = yaml.safe_load((run_dir / "slurm" / "0" / "plan.yaml").read_text())
            assert f"+custom_reward_function.reward_kwargs={{preset:'{preset}'," in " ".join(plan["main"]["argv"])
            assert plan["main"]["env"]["WANDB_RUN_GROUP"] == "ablation"
        # The submitting command returned while every job still waits (held): nothing blocked on them.
        reported = status(slurm, sweep_dir)
        assert reported.returncode == 1 and reported.stdout.count("PENDING") == 3, reported.stdout
        for job_id in job_ids:
            assert job_id in reported.stdout
    finally:
        subprocess.run(["scancel", *job_ids], env=slurm.env, check=False)
    for job_id in job_ids:
        assert wait_for_job(job_id, slurm.env, 60)["JobState"] == "CANCELLED"
    assert status(slurm, sweep_dir).stdout.count("CANCELLED") == 3


def test_failing_job_exit_code_reaches_status(slurm, tiny_cache: Path, run_root: Path) -> None:
    """A job whose validation fails ends FAILED with the step's exit code (2: bad input), in Slurm and in `status`."""
    (job_id,), _ = submit(slurm, "sft", "recipe=tiny", f"run_root={run_root}", "name=bad",
                          "+sft.extra_args.not_a_training_argument=1")
    job = wait_for_job(job_id, slurm.env, JOB_TIMEOUT_S)
    run_dir = run_root / "sft" / "tiny" / "bad"
    assert job["JobState"] == "FAILED" and job["ExitCode"] == "2:0"
    assert (run_dir / "attempts" / "0" / "exit_code").read_text().strip() == "2" and not (run_dir / "DONE").exists()
    assert "step validate failed with exit code 2" in (run_dir / "logs" / f"slurm-{job_id}.out").read_text()
    reported = status(slurm, run_dir)
    assert reported.returncode == 1 and re.search(rf"bad\s+FAILED\s+2\s+{job_id}\s", reported.stdout)


def test_secrets_reach_the_job_through_sbatch_and_no_file(slurm, demo: Demo, demo_vlm: FakeVLM,
                                                          run_root: Path) -> None:
    """On Slurm, planted secrets reach the job's step through sbatch's environment, and neither the script, the
    snapshot's Plan nor any other file of the run directory holds them."""
    markers = {key: f"{value}-{uuid.uuid4().hex}" for key, value in PLANTED_SECRETS.items()}
    policy = Policy(demo.records)
    with PolicyServer(policy) as server:
        (job_id,), done = submit(slurm, *trajectories_argv(run_root, "planted", server.base_url, demo_vlm.base_url,
                                                           "benchmark.limit=1",
                                                           *(f"+{key}={value}" for key, value in markers.items())))
        job = wait_for_job(job_id, slurm.env, JOB_TIMEOUT_S)
        requests = server.chat_requests()
    run_dir = run_root / "trajectories" / "demo" / "planted"
    assert job["JobState"] == "COMPLETED", (run_dir / "logs" / f"slurm-{job_id}.out").read_text()[-3000:]
    assert requests and all(r.body["api_key"] == markers["trajectories.extra_body.api_key"] for r in requests)
    assert "<redacted:trajectories.extra_body.api_key>" in (run_dir / "slurm" / "0" / "plan.yaml").read_text()
    for key, value in markers.items():
        assert files_holding(run_dir, value) == [], key
        assert value not in done.stdout + done.stderr, key
