"""The Slurm executor: renders a Plan into an sbatch script and submits it with the real `sbatch`.

At submission the run directory gets the composed config, the Plan (with every file's content),
a snapshot of the project's source and the script; the job runs the snapshot through
`python -m launch.node`, so a queued job runs exactly what was submitted.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from launch.compose import ConfigError, group_options
from launch.plan import Plan, placeholders_in
from launch.schema import check_positive, check_range, described, typed_section
from tools.environment.secrets import SECRETS_ENV, encode_secrets

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).with_name("templates") / "slurm.sbatch.j2"
# What a job needs of the project: the snapshot holds these (the tests and docs stay behind).
SOURCE_PARTS = ("launch", "rewards", "tools", "configs", "recipes", "pyproject.toml")
JOB_DIR = "slurm"
PLAN_FILE = f"{JOB_DIR}/plan.yaml"
JOBS_FILE = f"{JOB_DIR}/jobs.tsv"
# Slurm job states of a job that has not ended yet.
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                 "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}


class SlurmError(ConfigError):
    """The Slurm settings are invalid, or `sbatch` refused the job."""


@dataclass
class ContainerSettings:
    """pyxis/enroot flags for every srun step."""

    image: str | None = described("the pyxis/enroot image every srun step runs in; null: no container")
    mounts: list[str] = described("host:container mount pairs; the run directory's file system must be among them")
    extra_args: list[str] = described("further srun flags for the container")


@dataclass
class RaySettings:
    """The Ray cluster an RL job starts over its nodes."""

    port: int = described("the Ray head's port on the first node")
    join_timeout_s: int = described("seconds to wait for every node's GPUs to join the Ray cluster")


@dataclass
class SlurmSettings:
    """`configs/launcher/slurm.yaml`, typed (the values are the YAML's)."""

    name: str = described(
        "the launcher: local runs on this node, slurm submits an sbatch job "
        "(launcher=NAME)", partial(group_options, "launcher"))
    nodes: int = described("nodes the run uses (launcher=local: 1)")
    gpus_per_node: int = described("GPUs of each node the run uses")
    gpu_type: str | None = described("the GPU type of --gpus-per-node=TYPE:N; null: any")
    request_gpus: bool = described("ask for the GPUs with --gpus-per-node (false where whole nodes are handed out)")
    partition: str | None = described("the Slurm partition; null: the cluster's default")
    account: str | None = described("the Slurm account; null: the cluster's default")
    qos: str | None = described("the Slurm QOS; null: the cluster's default")
    time: str | None = described("the wall-clock limit (D-HH:MM:SS); a job near it requeues itself")
    cpus_per_task: int | None = described("--cpus-per-task of the one task on each node; null: Slurm's default")
    mem: str | None = described("memory per node (--mem, e.g. 500G; 0: all of it); null: Slurm's default")
    constraint: str | None = described("--constraint; null: none")
    exclusive: bool = described("ask for whole nodes (--exclusive)")
    job_name: str | None = described("the job name; null: lvr1-<stage>-<recipe>-<name>")
    extra_sbatch: list[str] = described("more #SBATCH options, one per entry, e.g. --mail-type=END")
    setup: list[str] = described("shell lines run on every node first: module load, environment activation")
    python: str | None = described("the Python the job runs; null: the interpreter that submitted")
    container: ContainerSettings = described("pyxis/enroot: the container every srun step runs in")
    requeue: bool = described("requeue the job (it resumes) when Slurm preempts it or its time limit nears")
    signal_before_end_s: int = described("seconds before the time limit at which SIGUSR1 requeues the job")
    ray: RaySettings = described("the Ray cluster an RL job starts over its nodes")


def slurm_settings(config: DictConfig) -> SlurmSettings:
    """The `launcher` section as SlurmSettings; a wrong key or type names it."""
    settings: SlurmSettings = typed_section(SlurmSettings, config.launcher, "launcher", SlurmError)
    check_positive("launcher", "nodes", settings.nodes, error=SlurmError)
    check_range("launcher", "gpus_per_node", settings.gpus_per_node, 0, error=SlurmError)
    for line in settings.extra_sbatch:
        if not line.startswith("-") or "\n" in line:
            raise SlurmError(f"launcher.extra_sbatch entry {line!r} must be one sbatch option, e.g. '--mail-type=END'")
    return settings


def sbatch_options(settings: SlurmSettings, job_name: str, log_path: Path) -> list[str]:
    """Every `#SBATCH` option of the job, in order."""
    options = [f"--job-name={job_name}", f"--nodes={settings.nodes}", "--ntasks-per-node=1",
               f"--output={log_path}", "--open-mode=append"]
    if settings.gpus_per_node and settings.request_gpus:
        gpus = f"{settings.gpu_type}:{settings.gpus_per_node}" if settings.gpu_type else str(settings.gpus_per_node)
        options.append(f"--gpus-per-node={gpus}")
    for key in ("partition", "account", "qos", "time", "constraint", "mem", "cpus_per_task"):
        value = getattr(settings, key)
        if value is not None:
            options.append(f"--{key.replace('_', '-')}={value}")
    if settings.exclusive:
        options.append("--exclusive")
    if settings.requeue:
        # B: the signal goes to the batch shell, whose trap requeues the job.
        options += ["--requeue", f"--signal=B:USR1@{settings.signal_before_end_s}"]
    return options + [str(line) for line in settings.extra_sbatch]


def container_flags(container: ContainerSettings) -> list[str]:
    """The srun flags that run a step in the pyxis container; none without an image."""
    if not container.image:
        return []
    flags = [f"--container-image={container.image}"]
    if container.mounts:
        flags.append(f"--container-mounts={','.join(container.mounts)}")
    return flags + list(container.extra_args)


def render_script(plan: Plan, settings: SlurmSettings, job_name: str, source: Path, python: str,
                  attempt: int) -> str:
    """The sbatch script of `plan`, rendered from the template a reader can open."""
    import jinja2

    if plan.resources.nodes > 1 and plan.services and plan.resources.multi_node != "ray":
        raise SlurmError(f"the {plan.stage} Plan has services, which run on the first node only; over "
                         f"{plan.resources.nodes} nodes it needs a Ray cluster (Resources.multi_node='ray')")
    run_dir = Path(plan.run_dir)
    ports = sorted({key for text in _plan_texts(plan) for name, key in placeholders_in(text) if name == "free_port"})
    main_gpus = plan.resources.main_gpus
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                                     trim_blocks=True, lstrip_blocks=True)
    environment.filters["q"] = lambda value: shlex.quote(str(value))
    template = environment.from_string(TEMPLATE.read_text())
    return template.render(
        stage=plan.stage,
        run_dir=run_dir,
        source=source,
        python=python,
        attempt=attempt,
        nodes=plan.resources.nodes,
        sbatch=sbatch_options(settings, job_name, run_dir / "logs" / "slurm-%j.out"),
        setup=settings.setup,
        srun=["srun", *container_flags(settings.container)],
        ports=ports,
        mode="ray" if plan.resources.nodes > 1 and plan.resources.multi_node == "ray" else
             "per_node" if plan.resources.nodes > 1 else "single",
        ray=settings.ray,
        ray_gpus=len(main_gpus) if main_gpus is not None else plan.resources.gpus_per_node,
        ray_visible=",".join(map(str, main_gpus)) if main_gpus is not None else None,
    )


def _plan_texts(plan: Plan) -> list[str]:
    """Every string of the Plan that may hold a placeholder."""
    texts = [f.content for f in plan.files if f.resolve]
    for command in [*plan.steps(), *plan.services]:
        texts += [*command.argv, *map(str, command.env.values())]
    texts += [s.ready.http_url or "" for s in plan.services] + [s.ready.tcp_port or "" for s in plan.services]
    return texts


def snapshot_source(destination: Path, root: Path = PROJECT_ROOT) -> Path:
    """Copy the project's code and configs (what git tracks or would, else everything) to `destination`."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                             *SOURCE_PARTS], cwd=root, capture_output=True)
    if listed.returncode == 0 and listed.stdout:
        files = [Path(name) for name in listed.stdout.decode().split("\0") if name]
    else:
        # Not a git checkout (an installed copy): take the parts as they are, without caches.
        files = [p.relative_to(root) for part in SOURCE_PARTS for p in sorted((root / part).rglob("*"))
                 if p.is_file() and "__pycache__" not in p.parts] + \
                [Path(p) for p in SOURCE_PARTS if (root / p).is_file()]
    for relative in files:
        if (root / relative).is_file():
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / relative, target)
    return destination


def relocate(plan: Plan, source: Path, root: Path = PROJECT_ROOT) -> Plan:
    """The Plan with every path into the project's code (a reward file, a DeepSpeed config) moved into `source`."""
    text = json.dumps(plan.to_dict())
    for part in SOURCE_PARTS:
        old, new = json.dumps(str(root / part))[1:-1], json.dumps(str(source / part))[1:-1]
        text = text.replace(old + "/", new + "/").replace(f'"{old}"', f'"{new}"')
    return Plan.from_dict(json.loads(text))


def submit(script_path: Path, env: dict[str, str] | None = None) -> str:
    """Submit a script with `sbatch --parsable`; returns the job id."""
    try:
        done = subprocess.run(["sbatch", "--parsable", str(script_path)], capture_output=True, text=True,
                              env=env, timeout=120)
    except FileNotFoundError:
        raise SlurmError("launcher=slurm but `sbatch` is not on PATH; run on a Slurm login node "
                         "(or start a local cluster: bash launch/slurm_local.sh start)") from None
    if done.returncode != 0:
        raise SlurmError(f"sbatch refused {script_path}: {done.stderr.strip() or done.stdout.strip()}")
    # --parsable prints "JOBID" or "JOBID;CLUSTER".
    return done.stdout.strip().split(";")[0]


def record_job(run_dir: Path, attempt: int, job_id: str, script: Path) -> None:
    """Append the job of a submission to the run's job list (attempt, job id, script)."""
    with open(run_dir / JOBS_FILE, "a") as jobs:
        jobs.write(f"{attempt}\t{job_id}\t{script}\n")


def recorded_jobs(run_dir: Path) -> list[tuple[int, str, str]]:
    """The (attempt, job id, script) of every submission of a run, oldest first."""
    path = Path(run_dir) / JOBS_FILE
    if not path.is_file():
        return []
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return [(int(attempt), job_id, script) for attempt, job_id, script in rows]


def job_state(job_id: str) -> str | None:
    """The job's state as `squeue` shows it (PENDING, RUNNING, ...), or None once Slurm no longer lists it."""
    try:
        done = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise SlurmError(f"cannot tell whether Slurm job {job_id} still runs: `squeue` is not on PATH; resume "
                         "from a Slurm login node") from None
    except subprocess.TimeoutExpired:
        raise SlurmError(f"cannot tell whether Slurm job {job_id} still runs: `squeue` did not answer in 60s") from None
    if done.returncode != 0:
        # Once a job has ended and been purged, squeue refuses its id.
        if "Invalid job id" in done.stderr:
            return None
        raise SlurmError(f"cannot tell whether Slurm job {job_id} still runs: squeue exited {done.returncode}: "
                         f"{done.stderr.strip()}")
    states = done.stdout.split()
    return states[0] if states else None


def refuse_if_job_active(run_dir: Path) -> None:
    """Refuse to resume a run while a job submitted for it is still pending or running."""
    for attempt, job_id, _script in recorded_jobs(run_dir):
        state = job_state(job_id)
        if state in ACTIVE_STATES:
            raise SlurmError(f"run {run_dir} is in use by attempt {attempt} (Slurm job {job_id}, {state}); wait for "
                             f"it to end or `scancel {job_id}`, then resume with resume=true name={run_dir.name}")


def job_name_for(settings: SlurmSettings, stage: str, run_name: str) -> str:
    """The job's name: launcher.job_name, or lvr1-<stage>-<recipe>-<name>."""
    return settings.job_name or f"lvr1-{stage}-{run_name.replace('/', '-')}"


def dry_run_script(plan: Plan, config: DictConfig, run_name: str, python: str, attempt: int = 0) -> str:
    """The sbatch script a submission of `plan` would write, for `--dry-run` (nothing is copied or submitted)."""
    settings = slurm_settings(config)
    source = Path(plan.run_dir) / JOB_DIR / str(attempt) / "source"
    return render_script(relocate(plan, source), settings, job_name_for(settings, plan.stage, run_name),
                         source, python, attempt)


def submit_plan(plan: Plan, config: DictConfig, run_name: str, python: str, attempt: int,
                secrets: dict[str, Any] | None = None) -> tuple[str, Path, Path]:
    """Snapshot the source, write the Plan and the script into the run directory, and submit.

    `secrets` reach the job in sbatch's environment, which the job inherits, and no file.
    Returns the job id, the script's path and the job's log path.
    """
    settings = slurm_settings(config)
    run_dir = Path(plan.run_dir)
    submission = run_dir / JOB_DIR / str(attempt)
    submission.mkdir(parents=True, exist_ok=False)
    source = snapshot_source(submission / "source")
    plan = relocate(plan, source)
    (submission / "plan.yaml").write_text(plan.to_yaml())
    script = render_script(plan, settings, job_name_for(settings, plan.stage, run_name), source, python, attempt)
    script_path = submission / "job.sbatch"
    script_path.write_text(script)
    (run_dir / "logs").mkdir(exist_ok=True)
    try:
        job_id = submit(script_path, {**os.environ, SECRETS_ENV: encode_secrets(secrets)} if secrets else None)
    except SlurmError as error:
        again = ("submit the sweep again under another name=" if (run_dir.parent / "sweep.yaml").exists() else
                 f"submit it again with resume=true name={run_dir.name}")
        raise SlurmError(f"{error}\nThe run directory {run_dir} stays as it is; fix the cause and {again}") from None
    record_job(run_dir, attempt, job_id, script_path)
    return job_id, script_path, run_dir / "logs" / f"slurm-{job_id}.out"
