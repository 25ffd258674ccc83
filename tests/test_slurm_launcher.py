"""The Slurm launcher without a cluster: every recipe's sbatch script, its options, modes, container and ports,
the node resolver, the source snapshot, relocation, the Ray wait, `python -m launch status` and the local
executor's parts. RAY_STATUS_ONE_NODE is what `ray status` printed for a real one-node head (Ray 2.60).
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
from launch.compose import compose_config, recipe_names
from launch.local import LocalExecutor
from launch.node import NodeError, SlurmNodeResolver, ray_cluster_size, wait_for_ray
from launch.plan import FileSpec, Plan, Resources, Service, Step
from launch.rundir import mark_done
from launch.slurm import SOURCE_PARTS, SlurmError, SlurmSettings, record_job, relocate, render_script, snapshot_source
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
SECTIONS = {"composed config": "config", "Plan": "plan", "sbatch script": "script"}
CONTAINER = ["launcher.container.image=nvcr.io/x:1", "launcher.container.mounts=[/data:/data,/runs:/runs]"]
MODES = {"single": ["sft", "recipe=tiny"], "per_node": ["sft", "recipe=qwen3_8b", "launcher.nodes=2"],
         "ray": ["rl", "recipe=qwen3_8b", "launcher.nodes=2"]}
# The `launch.node` parts a script runs, by stage and node count (shared ports aside).
NODE_PARTS = {("sft", 1): ["run"], ("rl", 1): ["run"], ("sft", 2): ["prepare", "main", "finish"],
              ("rl", 2): ["wait-ray", "run"]}
FULL_ENV = {"SLURM_NODEID": "1", "SLURM_JOB_NUM_NODES": "2", "SLURM_NNODES": "1", "LONGVIDEO_R1_HEAD_ADDR": "n1",
            "LONGVIDEO_R1_PORT_MASTER": "29500"}


@pytest.fixture(autouse=True)
def private_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tmp cache and no W&B key, so dry runs do not depend on the machine."""
    monkeypatch.setenv("LONGVIDEO_R1_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_API_KEY", "")


def dry_run(capsys: pytest.CaptureFixture, tmp_path: Path, *argv: str) -> tuple[int, list[dict[str, str]], str, str]:
    """`python -m launch ARGV launcher=slurm --dry-run` in-process (tmp run_root): exit code, points, stdout, stderr."""
    code = cli_main([*argv, "launcher=slurm", "--dry-run", f"run_root={tmp_path / 'runs'}"])
    out, err = capsys.readouterr()
    # Each point prints "# composed config ...", "# Plan ..." and "# sbatch script ..." headers, each before its text.
    body = "\n".join(line for line in out.splitlines() if not line.startswith("[launch]")) + "\n"
    chunks = re.split(r"^# (composed config|Plan|sbatch script) \(.*\n", body, flags=re.M)[1:]
    sections = [(SECTIONS[name], text) for name, text in zip(chunks[::2], chunks[1::2], strict=True)]
    points = [dict(sections[i:i + 3]) for i in range(0, len(sections), 3)]
    return code, points, out, err


def script_of(capsys: pytest.CaptureFixture, tmp_path: Path, *argv: str) -> str:
    """The one sbatch script a successful dry run printed."""
    code, points, _, err = dry_run(capsys, tmp_path, *argv)
    assert code == 0, err
    (point,) = points
    return point["script"]


def options(script: str) -> list[str]:
    """The script's #SBATCH options, in order."""
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


def commands(script: str) -> list[str]:
    """The script's lines with backslash continuations joined and runs of blanks made one space."""
    return [" ".join(line.split()) for line in script.replace("\\\n", " ").splitlines()]


def line_with(script: str, needle: str) -> str:
    """The one (joined) line of the script that contains `needle`."""
    (line,) = [c for c in commands(script) if needle in c]
    return line


@pytest.mark.parametrize("nodes", [1, 2])
@pytest.mark.parametrize("stage", ["sft", "rl"])
@pytest.mark.parametrize("recipe", recipe_names())
def test_every_recipe_renders_a_valid_script(recipe: str, stage: str, nodes: int, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    """Each recipe x stage x 1-2 nodes dry-runs to a script that passes `bash -n`, runs its mode, creates nothing."""
    code, (point,), _, err = dry_run(capsys, tmp_path, stage, f"recipe={recipe}", f"launcher.nodes={nodes}")
    assert code == 0, err
    assert Plan.from_yaml(point["plan"]).resources.nodes == nodes
    script = point["script"]
    assert script.startswith("#!/bin/bash\n") and f"--nodes={nodes}" in options(script)
    (tmp_path / "job.sbatch").write_text(script)
    syntax = subprocess.run(["bash", "-n", str(tmp_path / "job.sbatch")], capture_output=True, text=True)
    assert (syntax.returncode, syntax.stderr) == (0, "")
    assert [p for p in re.findall(r"launch\.node ([a-z-]+)", script) if p != "ports"] == NODE_PARTS[stage, nodes]
    assert ("ray start" in script) is ((stage, nodes) == ("rl", 2))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("recipe", "overrides", "present", "absent"),
    [
        ("qwen3_8b", [], ["--gpus-per-node=8", "--time=2-00:00:00", "--requeue", "--signal=B:USR1@300"],
         ["--partition", "--account", "--qos", "--constraint", "--mem", "--cpus-per-task", "--exclusive"]),
        ("qwen3_8b", ["launcher.partition=gpu", "launcher.account=proj", "launcher.qos=high", "launcher.constraint=ib",
                      "launcher.mem=0", "launcher.cpus_per_task=32", "launcher.exclusive=true"],
         ["--partition=gpu", "--account=proj", "--qos=high", "--constraint=ib", "--mem=0", "--cpus-per-task=32",
          "--exclusive"], []),
        ("qwen3_8b", ["launcher.gpu_type=h100"], ["--gpus-per-node=h100:8"], ["--gpus-per-node=8"]),
        ("qwen3_8b", ["launcher.request_gpus=false"], ["--nodes=1"], ["--gpus-per-node"]),
        ("qwen2_5_7b", [], ["--gpus-per-node=4"], []),
        ("tiny", [], ["--nodes=1"], ["--gpus-per-node"]),
        ("qwen3_8b", ["launcher.time=null"], [], ["--time"]),
        ("qwen3_8b", ["launcher.requeue=false"], [], ["--requeue", "--signal"]),
        ("qwen3_8b", ["launcher.signal_before_end_s=120"], ["--signal=B:USR1@120"], ["--signal=B:USR1@300"]),
        # extra_sbatch entries come last, in order.
        ("tiny", ["launcher.extra_sbatch=['--mail-type=END','--reservation=paper']"],
         ["--signal=B:USR1@300", "--mail-type=END", "--reservation=paper"], []),
    ],
)
def test_sbatch_options_appear_only_when_set(recipe: str, overrides: list[str], present: list[str], absent: list[str],
                                             tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Each setting becomes its #SBATCH option when set and is left out when not (0 GPUs: no --gpus-per-node)."""
    found = options(script_of(capsys, tmp_path, "sft", f"recipe={recipe}", *overrides))
    assert [option for option in found if option in present] == present
    assert [option for option in found if option.split("=")[0] in absent or option in absent] == []
    assert len(found) == len(set(found))


@pytest.mark.parametrize(
    ("override", "key"),
    [("launcher.extra_sbatch=['mail-type=END']", "launcher.extra_sbatch"), ("launcher.nodes=0", "launcher.nodes"),
     ("launcher.nodes=abc", "launcher.nodes"), ("launcher.cpus_per_task=many", "launcher.cpus_per_task"),
     ("launcher.exclusive=maybe", "launcher.exclusive")],
)
def test_bad_settings_exit_2_naming_the_key(override: str, key: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """A wrong launcher value exits 2 with an error line that names its key, and creates nothing."""
    code, _, _, err = dry_run(capsys, tmp_path, "sft", "recipe=tiny", override)
    assert code == 2
    assert err.startswith("error: ") and key in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("overrides", "setup", "python"),
    [([], [], sys.executable),
     (["launcher.python=python", "launcher.setup=['module load cuda/12','source /opt/env/bin/activate']"],
      ["module load cuda/12", "source /opt/env/bin/activate"], "python")],
    ids=["default", "setup-and-python"],
)
def test_setup_and_python(overrides: list[str], setup: list[str], python: str, tmp_path: Path,
                          capsys: pytest.CaptureFixture) -> None:
    """Setup lines appear verbatim, in order, before `cd "$SOURCE"`; launcher.python is the script's and the Plan's."""
    code, (point,), _, err = dry_run(capsys, tmp_path, "sft", "recipe=qwen3_8b", *overrides)
    assert code == 0, err
    lines = point["script"].splitlines()
    found = [lines.index(line) for line in setup]
    assert found == sorted(found) and all(0 < index < lines.index('cd "$SOURCE"') for index in found)
    assert f"PYTHON={python}" in lines
    assert [s.argv[0] for s in Plan.from_yaml(point["plan"]).steps()] == [python, "llamafactory-cli", python]
    assert python == sys.executable or sys.executable not in point["plan"] + point["script"]


@pytest.mark.parametrize("image", [True, False], ids=["image", "no-image"])
@pytest.mark.parametrize("mode", MODES)
def test_srun_steps_and_the_container(mode: str, image: bool, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """With an image SRUN carries the pyxis flags, without one no --container flag; srun runs only via SRUN."""
    script = script_of(capsys, tmp_path, *MODES[mode], *(CONTAINER if image else CONTAINER[1:]))
    srun = "SRUN=(srun --container-image=nvcr.io/x:1 --container-mounts=/data:/data,/runs:/runs)" if image else \
        "SRUN=(srun)"
    assert srun in script.splitlines() and "--container" not in script.replace(srun, "")
    assert [c for c in commands(script) if re.search(r"\bsrun\b", c) and c != srun] == []
    step = re.compile(r'launch\.node (run|prepare|main|finish)\b|"\$\{RAY_START\[@\]\}"')
    steps = [c for c in commands(script) if step.search(c)]
    starts = ('"${SRUN[@]}"', 'step "${SRUN[@]}"', '"${ON_HEAD[@]}"', 'step "${ON_HEAD[@]}"')
    assert steps and all(c.startswith(starts) for c in steps), steps
    assert 'ON_HEAD=("${SRUN[@]}" --overlap --nodes=1 --ntasks=1 -w "$HEAD_NODE")' in commands(script)


def test_sft_over_two_nodes_prepares_and_finishes_on_the_head(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """SFT on 2 nodes: ports, then prepare and finish pinned to the head, main once per node, in that order."""
    script = script_of(capsys, tmp_path, *MODES["per_node"])
    prepare, main = line_with(script, "launch.node prepare"), line_with(script, "launch.node main")
    finish, ports = line_with(script, "launch.node finish"), line_with(script, "launch.node ports")
    assert prepare.startswith('step "${ON_HEAD[@]}"') and finish.startswith('step "${ON_HEAD[@]}"')
    assert "--nodes=2 --ntasks-per-node=1" in main and "-w " not in main
    assert ports == 'ports=$("${ON_HEAD[@]}" "$PYTHON" -m launch.node ports master)'
    assert commands(script)[commands(script).index(ports) + 1] == 'eval "$ports"'
    order = [commands(script).index(line) for line in (ports, prepare, main, finish)]
    assert order == sorted(order)


def test_rl_over_two_nodes_starts_a_ray_cluster(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """RL qwen3_8b on 2 nodes: Ray head and worker on 6 trainer GPUs each, a 12-GPU wait, Ray stopped on EXIT."""
    code, (point,), _, err = dry_run(capsys, tmp_path, *MODES["ray"])
    assert code == 0, err
    script, lines = point["script"], commands(point["script"])
    start = line_with(script, "RAY_START=(")
    assert re.search(r"CUDA_VISIBLE_DEVICES=0,1,2,3,4,5 ray start\b.* --num-gpus=6\b", start), start
    head, worker = line_with(script, '"${RAY_START[@]}" --head'), line_with(script, '"${RAY_START[@]}" --address=')
    assert head.startswith('"${ON_HEAD[@]}"') and "--port=6379" in head
    assert worker.startswith('"${SRUN[@]}"') and '--exclude="$HEAD_NODE"' in worker and "--nodes=1 --ntasks=1" in worker
    assert "-w " not in worker
    wait, trainer = line_with(script, "launch.node wait-ray"), line_with(script, "launch.node run")
    assert all(part in wait for part in ("--nodes 2 ", "--gpus 12 ", "--timeout 600", '--starters "${ray_pids[@]}"'))
    order = [lines.index(line) for line in (start, head, worker, wait, 'export RAY_ADDRESS="$RAY_HEAD"', trainer)]
    assert order == sorted(order)
    assert trainer.startswith('step "${ON_HEAD[@]}"') and wait.startswith('step "${ON_HEAD[@]}"')
    assert "trap stop_ray EXIT" in lines and 'kill "${ray_pids[@]}" 2>/dev/null || true' in lines
    plan = Plan.from_yaml(point["plan"])
    assert "trainer.nnodes=2" in plan.main.argv and "trainer.n_gpus_per_node=6" in plan.main.argv
    assert f"SOURCE={plan.run_dir}/slurm/0/source" in lines


@pytest.mark.parametrize(("nodes", "multi_node", "refused"), [(2, "per_node", True), (2, "ray", False),
                                                              (1, "per_node", False)])
def test_services_over_several_nodes_need_ray(nodes: int, multi_node: str, refused: bool) -> None:
    """A Plan with a service over 2 nodes without Ray is refused; with Ray, or on 1 node, it renders."""
    plan = Plan(stage="t", run_dir="/r", main=Step("main", ["true"]), services=[Service("svc", ["sleep", "9"])],
                resources=Resources(nodes=nodes, multi_node=multi_node, main_gpus=[0]))
    try:
        script = render_script(plan, SlurmSettings(nodes=nodes), "job", Path("/src"), "python", 0)
    except SlurmError as error:
        assert refused and "multi_node='ray'" in str(error)
    else:
        assert not refused and "launch.node run" in script


def test_node_ports_prints_distinct_free_ports() -> None:
    """`python -m launch.node ports a b` prints one export per key, each a distinct port number."""
    done = subprocess.run([sys.executable, "-m", "launch.node", "ports", "a", "b"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    found = [re.fullmatch(r"export LONGVIDEO_R1_PORT_([AB])=(\d+)", line) for line in done.stdout.splitlines()]
    assert all(found) and [m.group(1) for m in found] == ["A", "B"]
    ports = {int(m.group(2)) for m in found}
    assert len(ports) == 2 and all(0 < p < 65536 for p in ports)


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
                     "rewards/verl_entry.py", "recipes/qwen3_8b.yaml", "tools/chat_template.py", "pyproject.toml"):
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


def test_a_slurm_sweep_dry_run_prints_a_script_per_point_in_one_wandb_group(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    """Three points, three scripts, each point's config in W&B group `ablation` (the sweep's name); nothing created."""
    code, points, _, err = dry_run(capsys, tmp_path, "audit", "-m", "reward=paper,default,no_location", "name=ablation")
    assert code == 0, err
    assert [sorted(point) for point in points] == [["config", "plan", "script"]] * 3
    configs = [yaml.safe_load(point["config"]) for point in points]
    assert [(c["wandb"]["group"], c["reward"]["preset"]) for c in configs] == [
        ("ablation", "paper"), ("ablation", "default"), ("ablation", "no_location")]
    assert all(point["script"].startswith("#!/bin/bash\n") for point in points)
    assert not (tmp_path / "runs").exists()


def test_a_slurm_sweep_dry_run_does_not_claim_a_submission(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A dry run submits nothing, so the sweep's summary line must not say its points were submitted."""
    code, _, out, err = dry_run(capsys, tmp_path, "sft", "recipe=tiny", "-m", "sft.learning_rate=1e-4,2e-4", "name=lr")
    assert code == 0, err
    (summary,) = [line for line in out.splitlines() if line.startswith("[launch] sweep lr:")]
    assert "2 of 2 points" in summary and "submitted" not in summary


def test_sweep_points_are_named_after_the_sweep(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Each point's job and W&B run is named <sweep>-<index>, matching its directory <sweep>/<index>."""
    code, points, _, err = dry_run(capsys, tmp_path, "sft", "recipe=tiny", "-m", "sft.learning_rate=1e-4,2e-4",
                                   "name=lr")
    assert code == 0, err
    names = [re.search(r"--job-name=(\S+)", point["script"]).group(1) for point in points]
    assert names == ["lvr1-sft-tiny-lr-0", "lvr1-sft-tiny-lr-1"]
    assert [Plan.from_yaml(point["plan"]).run_dir.endswith(f"/lr/{i}") for i, point in enumerate(points)] == [True] * 2
