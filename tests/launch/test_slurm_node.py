"""The Slurm launcher's node side and bookkeeping without a cluster: the node resolver, the Plan's parts on a node,
the source snapshot and relocation, the Ray wait, and `python -m launch status`. RAY_STATUS_ONE_NODE is what
`ray status` printed for a real one-node head (Ray 2.60).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from launch import node
from launch.cli import main as cli_main
from launch.compose import compose_config
from launch.local import LocalExecutor
from launch.node import NodeError, SlurmNodeResolver, ray_cluster_size, wait_for_ray
from launch.plan import FileSpec, Plan, Step
from launch.rundir import mark_done
from launch.slurm import SOURCE_PARTS, record_job, relocate, snapshot_source
from launch.stages import STAGES
from launch.status import parse_scontrol, run_status
from tests.conftest import PROJECT_ROOT

RAY_STATUS_ONE_NODE = (
    "======== Autoscaler status: 2026-11-22 17:08:52.988770 ========\nNode status\n"
    "---------------------------------------------------------------\nActive:\n"
    " 1 node_b74d24c58e53e40058208e4771a6b402ee9b89420a6a3b33b3de6d3c\nPending:\n (no pending nodes)\n"
    "Recent failures:\n (no failures)\n\nResources\n---------------------------------------------------------------\n"
    "Total Usage:\n 0.0/1.0 CPU\n 0B/16.13GiB memory\n 0B/6.91GiB object_store_memory\n\n"
    "From request_resources:\n (none)\nPending Demands:\n (no resource demands)\n")
# The same cluster once a second node joined, each node offering 6 GPUs.
RAY_STATUS_TWO_NODES = RAY_STATUS_ONE_NODE.replace(
    "6d3c\n", "6d3c\n 1 node_0c1f5e2a9d7b4e3f8a6c5b4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b\n").replace(
    " 0.0/1.0 CPU\n", " 0.0/2.0 CPU\n 0.0/12.0 GPU\n")
SCONTROL_FAILED = (
    "JobId=12 JobName=x UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=1 Nice=0 Account=(null) QOS=normal "
    "JobState=FAILED Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=1 BatchFlag=1 Reboot=0 ExitCode=3:0 "
    "RunTime=00:00:05 TimeLimit=2-00:00:00 NodeList=n[1-2] BatchHost=n1 NumNodes=2 ReqB:S:C:T=0:0:*:* "
    "TRES=cpu=2,node=2,billing=2 Command=/r/slurm/0/job.sbatch WorkDir=/data/my runs StdErr=/a/b.out StdOut=/a/b.out "
    "Power=")
SCONTROL_RUNNING = "JobId=42 JobName=x JobState=RUNNING Reason=None Restarts=0 ExitCode=0:0 StdOut=/r/logs/slurm-42.out"
SCONTROL_CANCELLED = "JobId=43 JobName=x JobState=CANCELLED Reason=None Restarts=0 ExitCode=0:15 StdOut=/a/b.out"
SCONTROL = {"none": None, "fails": "exit 1", "running": f"echo '{SCONTROL_RUNNING}'",
            "failed": f"echo '{SCONTROL_FAILED}'", "cancelled": f"echo '{SCONTROL_CANCELLED}'"}
FULL_ENV = {"SLURM_NODEID": "1", "SLURM_JOB_NUM_NODES": "2", "SLURM_NNODES": "1", "LONGVIDEO_R1_HEAD_ADDR": "n1",
            "LONGVIDEO_R1_PORT_MASTER": "29500"}


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tmp cache and no W&B key, so dry runs do not depend on the machine."""
    monkeypatch.setenv("LONGVIDEO_R1_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_API_KEY", "")


@pytest.mark.parametrize(
    ("environ", "name", "key", "expected"),
    [(FULL_ENV, "node_rank", None, "1"), ({"SLURM_NODEID": "0"}, "node_rank", None, "0"),
     (FULL_ENV, "nnodes", None, "2"), ({"SLURM_NNODES": "3"}, "nnodes", None, "3"),
     (FULL_ENV, "head_addr", None, "n1"), (FULL_ENV, "free_port", "master", "29500"),
     ({"LONGVIDEO_R1_PORT_TOOL": "1234"}, "free_port", "tool", "1234"),
     # Missing (or empty): NodeError naming the variable.
     ({}, "node_rank", None, "$SLURM_NODEID"), ({"SLURM_NODEID": ""}, "node_rank", None, "$SLURM_NODEID"),
     ({}, "nnodes", None, "$SLURM_NNODES"), ({}, "head_addr", None, "$LONGVIDEO_R1_HEAD_ADDR"),
     (FULL_ENV, "free_port", "vlm", "$LONGVIDEO_R1_PORT_VLM")],
)
def test_node_resolver_reads_the_slurm_environment(environ: dict, name: str, key: str | None, expected: str) -> None:
    """Rank, node count (the job's before the step's), head and shared ports come from the environment, or NodeError."""
    resolver = SlurmNodeResolver(environ)
    if not expected.startswith("$"):
        assert resolver(name, key) == expected
        return
    with pytest.raises(NodeError, match=re.escape(f"{expected} is not set")):
        resolver(name, key)


def sh(name: str, then: str = "") -> Step:
    """A step that appends its name to order.txt, then runs the shell code `then`."""
    return Step(name, ["sh", "-c", f"echo {name} >> order.txt{then}"])


def parts_plan(tmp_path: Path, main: Step | None = None) -> Plan:
    """A Plan with a file, a before, a main and an after step, its attempts/0 made (what the node does)."""
    run_dir = tmp_path / "run"
    (run_dir / "attempts" / "0").mkdir(parents=True)
    return Plan(stage="test", run_dir=str(run_dir), main=main or sh("main"), files=[FileSpec("conf/a.txt", "a\n")],
                before=[sh("before")], after=[sh("after")], outputs={"model": "/m"})


def test_the_parts_of_a_plan_run_one_after_another(tmp_path: Path) -> None:
    """prepare writes files and runs before; main only main; finish runs after, writes DONE and exit_code 0."""
    plan = parts_plan(tmp_path)
    run_dir = Path(plan.run_dir)
    for part, order in [("prepare", "before\n"), ("main", "before\nmain\n"), ("finish", "before\nmain\nafter\n")]:
        assert LocalExecutor(plan, 0, io.StringIO()).run(**{f: f == part for f in ("prepare", "main", "finish")}) == 0
        assert (run_dir / "order.txt").read_text() == order, part
        assert (run_dir / "conf" / "a.txt").exists() is (part == "prepare"), part
        (run_dir / "conf" / "a.txt").unlink(missing_ok=True)
        finished = ((run_dir / "DONE").exists(), (run_dir / "attempts" / "0" / "exit_code").exists())
        assert finished == (part == "finish",) * 2, part
    assert yaml.safe_load((run_dir / "DONE").read_text())["outputs"] == {"model": "/m"}
    assert (run_dir / "attempts" / "0" / "exit_code").read_text() == "0\n"


@pytest.mark.parametrize(("suffix", "code"), [("", 0), ("", 5), (".node1", 0), (".node1", 5)])
def test_a_main_part_logs_per_node_and_records_a_failure(suffix: str, code: int, tmp_path: Path) -> None:
    """main logs to main.<attempt><suffix>.log; a failure's code lands in exit_code<suffix>; no DONE either way."""
    plan = parts_plan(tmp_path, sh("main", f"; echo hello-from-main; exit {code}"))
    run_dir = Path(plan.run_dir)
    assert LocalExecutor(plan, 0, io.StringIO()).run(main=False, finish=False) == 0
    assert LocalExecutor(plan, 0, io.StringIO(), log_suffix=suffix).run(prepare=False, finish=False) == code
    assert "hello-from-main" in (run_dir / "logs" / f"main.0{suffix}.log").read_text()
    recorded = run_dir / "attempts" / "0" / f"exit_code{suffix}"
    assert (recorded.read_text() if recorded.exists() else None) == (f"{code}\n" if code else None)
    assert not (run_dir / "DONE").exists()


def test_node_parts_take_rank_count_and_head_from_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    """`launch.node prepare|main` on two nodes: each main resolves its own rank; node 1 logs with a .node1 suffix."""
    main = Step("main", ["sh", "-c", 'echo "$RANK-$N-$HEAD" > "rank.$RANK"'],
                env={"RANK": "{{node_rank}}", "N": "{{nnodes}}", "HEAD": "{{head_addr}}"})
    plan = Plan(stage="test", run_dir=str(tmp_path / "run"), main=main, before=[sh("before")])
    (tmp_path / "plan.yaml").write_text(plan.to_yaml())
    for variable, value in {"SLURM_JOB_NUM_NODES": "2", "LONGVIDEO_R1_HEAD_ADDR": "n1", "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(variable, value)
    assert node.main(["prepare", str(tmp_path / "plan.yaml"), "--attempt", "0"]) == 0
    for rank in ("0", "1"):
        monkeypatch.setenv("SLURM_NODEID", rank)
        assert node.main(["main", str(tmp_path / "plan.yaml"), "--attempt", "0"]) == 0
    run_dir = Path(plan.run_dir)
    assert [(run_dir / f"rank.{r}").read_text() for r in "01"] == ["0-2-n1\n", "1-2-n1\n"]
    assert (run_dir / "logs" / "main.0.log").is_file() and (run_dir / "logs" / "main.0.node1.log").is_file()
    assert "node_rank=1 nnodes=2 head_addr=n1" in capsys.readouterr().out


def test_snapshot_of_the_checkout_holds_code_and_configs_only(tmp_path: Path) -> None:
    """The snapshot has exactly the source parts (no tests/, README.md, caches), each file as in the checkout."""
    dest = snapshot_source(tmp_path / "source", PROJECT_ROOT)
    parts = ["configs", "launch", "pyproject.toml", "recipes", "rewards", "tools"]
    assert dest == tmp_path / "source" and sorted(p.name for p in dest.iterdir()) == parts == sorted(SOURCE_PARTS)
    for relative in ("launch/slurm.py", "launch/templates/slurm.sbatch.j2", "configs/launcher/slurm.yaml",
                     "rewards/verl_entry.py", "recipes/qwen3_8b.yaml", "tools/builders/chat_template.py",
                     "pyproject.toml"):
        assert (dest / relative).read_bytes() == (PROJECT_ROOT / relative).read_bytes(), relative
    assert list(dest.rglob("__pycache__")) == []


def test_snapshot_of_a_copy_without_git_takes_the_parts_without_caches(tmp_path: Path) -> None:
    """Outside a git checkout every file of the source parts is copied, caches, tests and docs left behind."""
    files = {"launch/__init__.py": "", "launch/templates/t.j2": "{{ x }}\n", "launch/__pycache__/m.pyc": "x",
             "rewards/r.py": "R = 1\n", "configs/c.yaml": "a: 1\n", "tests/test_x.py": "", "README.md": "# x\n",
             "pyproject.toml": "[project]\n"}
    for relative, content in files.items():
        (tmp_path / "project" / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "project" / relative).write_text(content)
    dest = snapshot_source(tmp_path / "source", tmp_path / "project")
    copied = {p.relative_to(dest).as_posix(): p.read_text() for p in dest.rglob("*") if p.is_file()}
    kept = ("launch/__init__.py", "launch/templates/t.j2", "rewards/r.py", "configs/c.yaml", "pyproject.toml")
    assert copied == {relative: files[relative] for relative in kept}


def test_relocate_moves_code_paths_and_leaves_run_paths(tmp_path: Path) -> None:
    """Paths into rewards/, configs/, tools/ move into the snapshot (argv, env, files); runs/ and look-alikes stay."""
    root, snap = PROJECT_ROOT, tmp_path / "snap"
    reward, z3, run = f"{root}/rewards/verl_entry.py", f"{root}/configs/deepspeed/z3.json", f"{root}/runs/sft/x/1"
    plan = Plan(stage="t", run_dir=run, main=Step("main", ["python", reward, f"--ds={z3}", f"--out={run}/ckpt"],
                                                  env={"DS": z3, "TOOLS": f"{root}/tools", "OUT": run}),
                files=[FileSpec("a.yaml", f"deepspeed: {z3}\nreward: '{reward}'\nother: {root}/rewardsX/r.py\n")])
    moved = relocate(plan, snap, root)
    assert moved.main.argv == ["python", f"{snap}/rewards/verl_entry.py", f"--ds={snap}/configs/deepspeed/z3.json",
                               f"--out={run}/ckpt"]
    assert moved.main.env == {"DS": f"{snap}/configs/deepspeed/z3.json", "TOOLS": f"{snap}/tools", "OUT": run}
    assert moved.files[0].content == (f"deepspeed: {snap}/configs/deepspeed/z3.json\n"
                                      f"reward: '{snap}/rewards/verl_entry.py'\nother: {root}/rewardsX/r.py\n")
    assert moved.run_dir == run


def test_relocate_points_the_rl_reward_at_the_snapshot(tmp_path: Path) -> None:
    """The qwen3_8b RL Plan's reward file moves into the snapshot; its run directory and data paths do not."""
    (tmp_path / "model").mkdir()
    config = compose_config("rl", ["recipe=qwen3_8b", "dry_run=true", f"rl.model={tmp_path / 'model'}",
                                   f"run_root={tmp_path / 'runs'}", "launcher=slurm", "launcher.nodes=2"]).config
    run_dir = tmp_path / "runs" / "rl" / "qwen3_8b" / "x"
    plan = STAGES["rl"].build_plan(config, run_dir, "qwen3_8b/x", sys.executable)
    snap = run_dir / "slurm" / "0" / "source"
    moved = relocate(plan, snap)
    (reward,) = [a for a in moved.main.argv if a.startswith("custom_reward_function.path=")]
    assert reward.partition("=")[2].strip("'") == f"{snap}/rewards/verl_entry.py"
    data = [a for a in moved.main.argv if a.startswith("data.train_files=")]
    assert data and data == [a for a in plan.main.argv if a.startswith("data.train_files=")]
    assert moved.run_dir == str(run_dir) and str(PROJECT_ROOT / "rewards") not in moved.to_yaml()


@pytest.mark.parametrize(
    ("text", "expected"),
    [(RAY_STATUS_ONE_NODE, (1, 0.0)), (RAY_STATUS_TWO_NODES, (2, 12.0)), ("", (0, 0.0)),
     ("ConnectionError: could not find any running Ray instance\n", (0, 0.0)),
     ("Active:\n (no active nodes)\nPending:\n (no pending nodes)\n", (0, 0.0))],
    ids=["real-one-node", "two-nodes-12-gpus", "empty", "error", "no-nodes"],
)
def test_ray_cluster_size_reads_ray_status(text: str, expected: tuple[int, float]) -> None:
    """(active nodes, total GPUs) from `ray status` text; anything else is (0, 0.0)."""
    assert ray_cluster_size(text) == expected


def fake_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, body: str | None, alone: bool) -> None:
    """Put a shell script `name` (none when body is None) first on PATH, or alone on it."""
    (tmp_path / "bin").mkdir(exist_ok=True)
    if body is not None:
        (tmp_path / "bin" / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / "bin" / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin") if alone else f"{tmp_path / 'bin'}:{os.environ['PATH']}")


@pytest.mark.parametrize(
    ("status_text", "starter", "error"),
    [(RAY_STATUS_TWO_NODES, "alive", None),
     (RAY_STATUS_ONE_NODE, "alive", r"after 0\.3s: 1 of 2 nodes .*\(launcher\.ray\.join_timeout_s\)"),
     (RAY_STATUS_ONE_NODE, "ended", r"`ray start` step \(pid \d+\) ended before")],
)
def test_wait_for_ray_returns_once_complete_or_names_why_not(status_text: str, starter: str, error: str | None,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """wait_for_ray polls `ray status`: returns for 2 nodes and 12 GPUs, else fails at the timeout or a dead starter."""
    (tmp_path / "status.txt").write_text(status_text)
    fake_program(tmp_path, monkeypatch, "ray", f'cat "{tmp_path / "status.txt"}"', alone=False)
    ended = subprocess.Popen(["true"])
    ended.wait()
    starters = (os.getpid(),) if starter == "alive" else (ended.pid,)
    if error is None:
        assert wait_for_ray("n1:6379", nodes=2, gpus=12, timeout_s=5, poll_s=0.05, starters=starters) is None
        return
    with pytest.raises(NodeError, match=error):
        wait_for_ray("n1:6379", nodes=2, gpus=12, timeout_s=0.3, poll_s=0.05, starters=starters)


def test_parse_scontrol_reads_every_field() -> None:
    """Key=Value fields of a real-looking line: state, reason, exit code, restarts, values holding '=', ':' or ' '."""
    fields = parse_scontrol(SCONTROL_FAILED)
    assert (fields["JobId"], fields["JobState"], fields["Reason"]) == ("12", "FAILED", "NonZeroExitCode")
    assert (fields["ExitCode"], fields["Restarts"], fields["StdOut"]) == ("3:0", "1", "/a/b.out")
    assert (fields["TRES"], fields["ReqB:S:C:T"], fields["Power"]) == ("cpu=2,node=2,billing=2", "0:0:*:*", "")
    assert fields["WorkDir"] == "/data/my runs"


def make_run(run_dir: Path, done: bool = False, exit_code: int | None = None, job: str | None = None) -> Path:
    """A hand-made run directory: config.yaml, and optionally DONE, attempts/0/exit_code and a recorded job."""
    (run_dir / "attempts" / "0").mkdir(parents=True)
    (run_dir / "slurm").mkdir()
    (run_dir / "config.yaml").write_text("stage: sft\n")
    if done:
        mark_done(run_dir, {"model": str(run_dir / "checkpoints")})
    if exit_code is not None:
        (run_dir / "attempts" / "0" / "exit_code").write_text(f"{exit_code}\n")
    if job:
        record_job(run_dir, 0, job, run_dir / "slurm" / "0" / "job.sbatch")
    return run_dir


@pytest.mark.parametrize(
    ("run", "scontrol", "state", "code", "job"),
    [
        ({"done": True, "job": "12"}, "running", "COMPLETED", 0, "12"),
        ({"exit_code": 3}, "none", "FAILED", 3, None),
        ({"exit_code": 3, "job": "12"}, "fails", "FAILED", 3, "12"),
        ({"job": "12"}, "none", "UNKNOWN (Slurm no longer knows the job)", None, "12"),
        ({"job": "42", "exit_code": 143}, "running", "RUNNING", None, "42"),
        ({"job": "12"}, "failed", "FAILED (requeued 1x)", 3, "12"),
        ({"exit_code": 7, "job": "12"}, "failed", "FAILED (requeued 1x)", 7, "12"),
        ({}, "none", "NOT FINISHED", None, None),
        # Killed by signal 15 (ExitCode=0:15): 128 + 15, as a shell reports it.
        ({"job": "43"}, "cancelled", "CANCELLED", 143, "43"),
    ],
)
def test_run_status_combines_the_run_dir_and_slurm(run: dict, scontrol: str, state: str, code: int | None,
                                                   job: str | None, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """DONE wins; a job Slurm knows gives its state (no exit code while it runs); else the recorded exit code."""
    fake_program(tmp_path, monkeypatch, "scontrol", SCONTROL[scontrol], alone=True)
    found = run_status(make_run(tmp_path / "run", **run))
    assert (found.state, found.exit_code, found.job_id) == (state, code, job)
    where = {"COMPLETED": f"model: {tmp_path}/run/checkpoints", "RUNNING": "/r/logs/slurm-42.out"}
    slurm_log = scontrol in ("failed", "cancelled")
    assert found.where == where.get(state, "/a/b.out" if slurm_log else f"{tmp_path}/run/logs")


@pytest.mark.parametrize(("failing", "exit_code"), [(True, 1), (False, 0)])
def test_status_of_a_sweep_prints_a_row_per_point(failing: bool, exit_code: int, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    """`python -m launch status SWEEP` prints one row per point and exits 0 only when every point is DONE."""
    fake_program(tmp_path, monkeypatch, "scontrol", None, alone=True)
    rewards = ["paper", "default", "no_location"]
    for index, reward in enumerate(rewards):
        fails = failing and index == 1
        make_run(tmp_path / "sweep" / str(index), done=not fails, exit_code=3 if fails else None)
        with open(tmp_path / "sweep" / "sweep.yaml", "a") as record:
            record.write(yaml.safe_dump([{"index": index, "overrides": [f"reward={reward}"]}]))
    assert cli_main(["status", str(tmp_path / "sweep")]) == exit_code
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["run", "state", "exit"]
    assert [row.split()[:3] for row in rows] == [
        [f"{i}:", f"reward={r}", "FAILED" if failing and i == 1 else "COMPLETED"] for i, r in enumerate(rewards)]


def test_status_of_a_directory_that_is_no_run_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A directory without config.yaml or sweep.yaml exits 2 with a message."""
    assert cli_main(["status", str(tmp_path)]) == 2
    assert "neither a run directory" in capsys.readouterr().err
