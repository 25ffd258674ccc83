"""`python -m launch STAGE [overrides] [--dry-run] [-m]`: compose, plan, and run or print."""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from launch import slurm
from launch.compose import Composed, ConfigError, compose_config, expand_sweep, recipe_names, to_container
from launch.local import LocalExecutor
from launch.plan import Plan
from launch.rundir import (
    CONFIG_FILE,
    RunClaim,
    RunDirError,
    check_run_root,
    claim_run_dir,
    config_changes,
    create_new_dir,
    fault_point,
    new_run_name,
    run_dir_for,
    write_config,
    write_provenance,
)
from launch.schema import check_range, typed_section
from launch.stage_help import stage_help
from launch.stages import STAGES
from launch.stages.agent_config import benchmark_names
from launch.stages.sft_config import SFTConfigError
from launch.summary import closing_lines
from rewards.spec import preset_names

PROJECT_ROOT = Path(__file__).resolve().parents[1]
USAGE = """usage: python -m launch STAGE [KEY=VALUE ...] [--dry-run] [-m|--multirun]
       python -m launch UTILITY [ARGS ...]

Stages:
{stages}

Utilities (their own arguments; --help on each):
{utilities}

Recipes (recipe=NAME): {recipes}
Benchmarks of eval and trajectories (benchmark=NAME): {benchmarks}
Reward presets (reward=NAME): {presets}

Options:
  --dry-run       print the composed config and the Plan; start nothing, create nothing
  -m, --multirun  Hydra multirun: comma-separated values sweep, e.g. -m sft.learning_rate=1e-5,2e-5
  -h, --help      this message; python -m launch STAGE --help [recipe=NAME]: that stage's keys, with their
                  types, defaults, choices and meanings

Common keys: name=NAME (run name), resume=true name=NAME (continue that run), run_root=DIR,
launcher.gpus_per_node=N, and every key of the recipe, e.g. sft.learning_rate=2e-5.
Example: python -m launch sft recipe=tiny
"""


@dataclass
class Invocation:
    """A parsed command line."""

    stage: str
    overrides: list[str] = field(default_factory=list)
    dry_run: bool = False
    multirun: bool = False


# Utility commands: not Hydra apps; each takes its own arguments. name -> (module, summary).
UTILITIES = {
    "compare": ("launch.compare", "two evaluation results.json side by side: metrics, categories, paired questions"),
    "merge": ("launch.rl_merge", "merge a checkpoint of an RL run into a Hugging Face model (verl's model merger)"),
    "status": ("launch.status", "each run of a run or sweep directory: state, exit code, Slurm job, results"),
    "view": ("launch.view", "one self-contained HTML page of an eval, trajectories, preflight or RL run's rollouts "
             "(or two eval runs side by side)"),
}


def usage() -> str:
    """The help text, listing every stage, utility and recipe."""
    stages = "\n".join(f"  {s.name:<14}{s.summary}" for s in STAGES.values())
    utilities = "\n".join(f"  {name:<14}{summary}" for name, (_, summary) in UTILITIES.items())
    return USAGE.format(stages=stages, utilities=utilities, recipes=", ".join(recipe_names()),
                        benchmarks=", ".join(benchmark_names()), presets=", ".join(preset_names()))


def run_utility(name: str, argv: list[str]) -> int:
    """Run utility `name` with its own arguments; returns its exit code."""
    module = importlib.import_module(UTILITIES[name][0])
    return module.main(argv)


def parse_argv(argv: list[str]) -> Invocation | None:
    """Split argv into stage, flags and Hydra overrides; None for the global help (a stage's help exits 0)."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        return None
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; valid stages: {', '.join(STAGES)}; utilities: "
                          f"{', '.join(UTILITIES)}")
    invocation = Invocation(stage=stage)
    wants_help = False
    for arg in rest:
        if arg == "--dry-run":
            invocation.dry_run = True
        elif arg in ("-m", "--multirun"):
            invocation.multirun = True
        elif arg in ("-h", "--help"):
            wants_help = True
        elif arg.startswith("-"):
            raise ConfigError(f"unknown option {arg!r}; options: --dry-run, -m/--multirun, -h/--help")
        else:
            invocation.overrides.append(arg)
    if wants_help:
        # As argparse does: the stage's help, its defaults composed from the overrides given, is the whole answer.
        print(stage_help(stage, invocation.overrides))
        raise SystemExit(0)
    return invocation


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived while the launcher itself (not the executor) was working.

    A BaseException, like KeyboardInterrupt, so that no `except Exception` on the way swallows it.
    """

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


def _interrupt(signum: int, _frame) -> None:
    raise Interrupted(signum)


@dataclass
class LocalLauncher:
    """`configs/launcher/local.yaml`, typed: this node only."""

    name: str
    nodes: int
    gpus_per_node: int


def check_launcher(config) -> None:
    """Check the `launcher` section before a stage reads it: all of slurm's settings, or local's node count."""
    if config.launcher.name == "slurm":
        slurm.slurm_settings(config)
        return
    launcher: LocalLauncher = typed_section(LocalLauncher, config.launcher, "launcher")
    check_range("launcher", "gpus_per_node", launcher.gpus_per_node, 0)
    if launcher.nodes != 1:
        raise ConfigError(f"launcher.nodes={launcher.nodes}: launcher=local runs on this node only; "
                          "use launcher=slurm for several nodes")


def run_point(stage: str, overrides: list[str], dry_run: bool, run_dir: Path | None = None,
              point_name: str | None = None, claim_sweep: Callable[[], None] | None = None) -> int:
    """Compose, plan and run (or print) one point; returns its exit code.

    A sweep point passes its directory, its name (`<sweep>-<index>`: the W&B run and the Slurm job) and
    `claim_sweep`, which creates and records the sweep's directory once the point's Plan is built.
    """
    # The stage may print a Plan whose inputs (an SFT checkpoint, a dataset) do not exist yet only in a dry run.
    composed = compose_config(stage, [*overrides, f"dry_run={str(dry_run).lower()}"], STAGES[stage].needs_recipe)
    config = composed.config
    group = STAGES[stage].run_group(config, composed.recipe)
    name = point_name or (str(config.name) if config.name is not None else new_run_name())
    resume = bool(config.resume)
    if resume and config.name is None:
        raise RunDirError("resume=true needs name=<the run to continue>")
    run_dir = run_dir or run_dir_for(config.run_root, stage, group, name)
    check_launcher(config)
    on_slurm = config.launcher.name == "slurm"
    # A Slurm job may run another interpreter than the one submitting (launcher.python).
    python = str(config.launcher.get("python") or sys.executable)
    plan = STAGES[stage].build_plan(config, run_dir, f"{group}/{name}", python)
    resolved = to_container(config)
    if dry_run:
        print("# composed config (secrets removed)")
        print(yaml.safe_dump(resolved, sort_keys=False))
        print(f"# Plan (dry run: nothing was created or started); run directory would be {run_dir}")
        print(plan.to_yaml())
        if on_slurm:
            print("# sbatch script (dry run: nothing was submitted)")
            print(slurm.dry_run_script(plan, config, f"{group}/{name}", python))
        return 0
    # The Plan is built (its needs checked) before any directory is created.
    if claim_sweep is not None:
        claim_sweep()
    if not resume and run_dir.exists():
        raise RunDirError(f"run directory {run_dir} already exists; choose another name=, "
                          "or add resume=true to continue that run")
    check_run_root(config.run_root)
    claim = claim_run_dir(run_dir, resume, "submit" if on_slurm else "launch",
                          # A resume of a run submitted to Slurm, with either launcher, waits for its jobs to end.
                          check_busy=slurm.refuse_if_job_active if resume else None)
    try:
        return _run_claimed(claim, stage, name, group, plan, composed, python)
    except Interrupted:
        print(f"[launch] interrupted before attempt {claim.attempt} of {run_dir} started its Plan; continue the run "
              f"with resume=true name={name}", file=sys.stderr)
        raise
    finally:
        claim.lock.release()


def _run_claimed(claim: RunClaim, stage: str, name: str, group: str, plan: Plan, composed: Composed,
                 python: str) -> int:
    """Write the claimed attempt's config and provenance, then run its Plan here or submit it to Slurm."""
    run_dir, attempt = Path(plan.run_dir), claim.attempt
    config, resolved = composed.config, to_container(composed.config)
    fault_point("claim")
    if attempt > 0 and claim.original is None:
        print(f"[launch] resume: {run_dir / CONFIG_FILE} is missing or empty (the first attempt was interrupted "
              "while claiming the run); this attempt's config becomes the run's config")
        write_config(run_dir, resolved, 0)
    elif attempt > 0:
        for change in config_changes(claim.original, resolved):
            print(f"[launch] resume: config differs from the original run: {change}")
    write_config(run_dir, resolved, attempt)
    fault_point("provenance")
    write_provenance(run_dir, attempt, int(config.seed), PROJECT_ROOT)
    if config.launcher.name == "slurm":
        job_id, script, log = slurm.submit_plan(plan, config, f"{group}/{name}", python, attempt,
                                                composed.secrets)
        # The job takes the run's lock when it starts, which it can only once this submitter let go.
        claim.lock.release()
        print(f"[launch] submitted {stage} run {name} (attempt {attempt}) as Slurm job {job_id}\n"
              f"[launch]   script: {script}\n[launch]   log:    {log}\n[launch]   run:    {run_dir}")
        return 0
    print(f"[launch] {stage} run {name} (attempt {attempt}) in {run_dir}")
    code = LocalExecutor(plan, attempt, secrets=composed.secrets).run()
    if code == 0:
        print("\n".join(closing_lines(plan.outputs, STAGES[stage].next_steps, composed.recipe, run_dir)))
    return code


def run_sweep(invocation: Invocation) -> int:
    """Run every point of a multirun one after another; non-zero if any point failed."""
    points = expand_sweep(invocation.overrides)
    stage = STAGES[invocation.stage]
    first = compose_config(invocation.stage, points[0], stage.needs_recipe).config
    sweep_name = str(first.name) if first.name is not None else new_run_name()
    codes = []
    # Usually one directory; a sweep over a key that picks the run group (audit's reward preset) has one per group.
    claimed: list[Path] = []
    for index, point in enumerate(points):
        print(f"[launch] sweep point {index}/{len(points)}: {' '.join(point)}")
        composed = compose_config(invocation.stage, point, stage.needs_recipe)
        group = stage.run_group(composed.config, composed.recipe)
        sweep_dir = run_dir_for(composed.config.run_root, invocation.stage, group, sweep_name)

        def claim_sweep(sweep_dir: Path = sweep_dir, index: int = index, point: list[str] = point,
                        config=composed.config) -> None:
            """Create the sweep's directory (at its first point) and record this point in it."""
            check_run_root(config.run_root)
            if sweep_dir not in claimed and not config.resume:
                # The sweep's directory is new, like a run's: an existing sweep is never overwritten.
                create_new_dir(sweep_dir)
                claimed.append(sweep_dir)
            with open(sweep_dir / "sweep.yaml", "a") as record:
                record.write(yaml.safe_dump([{"index": index, "overrides": point}], sort_keys=False))
        # The points of one sweep share a W&B group: the sweep's name, unless one was given.
        group_override = [] if any(o.startswith("wandb.group=") for o in point) else [f"wandb.group={sweep_name}"]
        codes.append(run_point(invocation.stage, [*point, *group_override], invocation.dry_run,
                               sweep_dir / str(index), f"{sweep_name}-{index}", claim_sweep))
    failed = [i for i, code in enumerate(codes) if code != 0]
    verb = ("were printed" if invocation.dry_run else
            "were submitted" if first.launcher.name == "slurm" else "succeeded")
    print(f"[launch] sweep {sweep_name}: {len(points) - len(failed)} of {len(points)} points {verb}"
          + (f"; failed: {failed}" if failed else ""))
    for directory in claimed:
        print(f"[launch] python -m launch status {directory}")
    return next((codes[i] for i in failed), 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m launch`; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in UTILITIES:
        return run_utility(argv[0], argv[1:])
    # Until the executor installs its own handlers, SIGINT and SIGTERM end the launch through `Interrupted`.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        invocation = parse_argv(argv)
        if invocation is None:
            print(usage())
            return 0
        if invocation.multirun:
            return run_sweep(invocation)
        return run_point(invocation.stage, invocation.overrides, invocation.dry_run)
    except (ConfigError, RunDirError, SFTConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Interrupted as interrupt:
        print(f"error: interrupted by signal {interrupt.signum}", file=sys.stderr)
        return 128 + interrupt.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
