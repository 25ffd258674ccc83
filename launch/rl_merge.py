"""Merge an RL run's FSDP checkpoint into a Hugging Face model with verl's own model merger.

verl saves `<run>/checkpoints/global_step_N/actor/` (one shard per rank, `fsdp_config.json` and a
`huggingface/` folder with the config and tokenizer) and records the newest step in
`latest_checkpointed_iteration.txt`. The RL Plan ends by merging the last step into `<run>/model`;
any other step is merged on demand:

    python -m launch merge runs/rl/qwen3_8b/NAME --step 200     # -> runs/rl/qwen3_8b/NAME/model-step200

It runs `python -m verl.model_merger merge --backend fsdp` in a subprocess, so the launcher itself
never imports verl; the target folder must not exist (a merge never overwrites a model).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

CHECKPOINT_DIR = "checkpoints"
LATEST_FILE = "latest_checkpointed_iteration.txt"
STEP_PREFIX = "global_step_"
MERGED_DIR = "model"


class MergeError(RuntimeError):
    """The checkpoint to merge is missing or incomplete, or the target exists."""


def checkpoint_steps(checkpoints: Path) -> list[int]:
    """The steps saved under `checkpoints`, ascending."""
    steps = []
    for path in checkpoints.glob(f"{STEP_PREFIX}*"):
        suffix = path.name[len(STEP_PREFIX):]
        if path.is_dir() and suffix.isdigit():
            steps.append(int(suffix))
    return sorted(steps)


def latest_step(checkpoints: Path) -> int:
    """The step verl recorded as its newest checkpoint (else the highest saved); MergeError when there is none."""
    record = checkpoints / LATEST_FILE
    if record.is_file():
        text = record.read_text().strip()
        if not text.isdigit():
            raise MergeError(f"{record}: expected a step number, found {text!r}")
        return int(text)
    steps = checkpoint_steps(checkpoints)
    if not steps:
        raise MergeError(f"no checkpoint under {checkpoints} (no {STEP_PREFIX}N folders); did the run save any? "
                         "(rl.save_freq)")
    return steps[-1]


def actor_dir(checkpoints: Path, step: int) -> Path:
    """The actor shards of `step`, checked to hold what the merger reads."""
    actor = checkpoints / f"{STEP_PREFIX}{step}" / "actor"
    if not actor.is_dir():
        saved = ", ".join(map(str, checkpoint_steps(checkpoints))) or "none"
        raise MergeError(f"no checkpoint of step {step} at {actor} (saved steps: {saved})")
    for needed in ("fsdp_config.json", "huggingface"):
        if not (actor / needed).exists():
            raise MergeError(f"{actor} has no {needed}: not a complete verl FSDP checkpoint")
    return actor


def merge_command(python: str, actor: Path, target: Path) -> list[str]:
    """verl's model merger command for one FSDP actor checkpoint."""
    return [python, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
            "--local_dir", str(actor), "--target_dir", str(target)]


def merge(run_dir: Path, step: int | None = None, target: Path | None = None, python: str = sys.executable) -> Path:
    """Merge `step` (default: the latest) of the run into `target` (default `model` or `model-stepN`); returns it."""
    checkpoints = run_dir / CHECKPOINT_DIR
    chosen = latest_step(checkpoints) if step is None else step
    actor = actor_dir(checkpoints, chosen)
    if target is None:
        target = run_dir / (MERGED_DIR if step is None else f"{MERGED_DIR}-step{chosen}")
    if target.exists():
        raise MergeError(f"{target} exists; a merge never overwrites a model (choose --output)")
    print(f"[merge] step {chosen}: {actor} -> {target}", flush=True)
    # verl creates its target before reading a shard: merge into a staging folder, renamed only on success,
    # so a failed or interrupted merge never leaves a folder that looks like a model (or blocks a retry).
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    done = subprocess.run(merge_command(python, actor, staging))
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise MergeError(f"verl's model merger failed with exit code {done.returncode} on {actor}")
    staging.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """CLI: `python -m launch merge RUN_DIR [--step N] [--output DIR]`."""
    parser = argparse.ArgumentParser(prog="python -m launch merge", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="an RL run directory (runs/rl/RECIPE/NAME)")
    parser.add_argument("--step", type=int, help="the checkpoint step (default: the latest)")
    parser.add_argument("--output", type=Path, help="target folder (default: RUN_DIR/model or RUN_DIR/model-stepN)")
    args = parser.parse_args(argv)
    try:
        target = merge(args.run_dir.expanduser().absolute(), args.step, args.output)
    except MergeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"[merge] Hugging Face model at {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
