"""The Slurm launcher's sbatch script without a cluster: every recipe and stage on 1 and 2 nodes, its options,
settings errors, setup lines, container flags, the head-node pinning of each part, the Ray section, shared ports
and sweeps in one W&B group.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from launch.cli import main as cli_main
from launch.compose import compose_config, recipe_names
from launch.plan import Plan, Resources, Service, Step
from launch.slurm import SlurmError, render_script, slurm_settings
from tests.conftest import PROJECT_ROOT

SECTIONS = {"composed config": "config", "Plan": "plan", "sbatch script": "script"}
CONTAINER = ["launcher.container.image=nvcr.io/x:1", "launcher.container.mounts=[/data:/data,/runs:/runs]"]
MODES = {"single": ["sft", "recipe=tiny"], "per_node": ["sft", "recipe=qwen3_8b", "launcher.nodes=2"],
         "ray": ["rl", "recipe=qwen3_8b", "launcher.nodes=2"]}
# The `launch.node` parts a script runs, by stage and node count (shared ports aside).
NODE_PARTS = {("sft", 1): ["run"], ("rl", 1): ["run"], ("sft", 2): ["prepare", "main", "finish"],
              ("rl", 2): ["wait-ray", "run"]}
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
    # Token auth set explicitly before any Ray command, with a per-job token that no file holds.
    auth = "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN"
    assert "token_hex(32)" in line_with(script, "RAY_AUTH_TOKEN=$(")
    order = [lines.index(line) for line in (auth, start, head, worker, wait, 'export RAY_ADDRESS="$RAY_HEAD"', trainer)]
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
    composed = compose_config("sft", ["recipe=tiny", "launcher=slurm", f"launcher.nodes={nodes}"])
    settings = slurm_settings(composed.config)
    try:
        script = render_script(plan, settings, "job", Path("/src"), "python", 0)
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
