"""Benchmark: `python -m launch sft|rl --dry-run` wall time against importing LLaMA-Factory and verl.

The CLI must stay light: printing a Plan imports neither torch, LLaMA-Factory nor verl. The RL dry
run also checks every trainer override against verl-tool's key set; the baseline is how long verl's
own trainer module takes just to import (PyPI verl, before it could parse a config, start Ray or
touch a GPU). All are timed in the same run, each as a fresh interpreter, and the ratio is printed
(no timed assertions).

    python -m tests.benchmarks.bench_dry_run [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def wall_time(argv: list[str], repeats: int) -> float:
    """Median wall time of running `argv` in a fresh process, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, cwd=PROJECT_ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Time the dry run and the baselines, and print their ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as run_root:
        cases = {
            "dry run (python -m launch sft recipe=qwen3_8b --dry-run)":
                [sys.executable, "-m", "launch", "sft", "recipe=qwen3_8b", f"run_root={run_root}", "--dry-run"],
            "dry run (python -m launch rl recipe=qwen3_8b --dry-run), every trainer override checked":
                [sys.executable, "-m", "launch", "rl", "recipe=qwen3_8b", f"run_root={run_root}", "--dry-run"],
            "baseline: python -c 'import llamafactory'": [sys.executable, "-c", "import llamafactory"],
            "baseline: python -c 'from llamafactory.hparams import get_train_args'":
                [sys.executable, "-c", "from llamafactory.hparams import get_train_args"],
            "baseline: python -c 'import verl.trainer.main_ppo'":
                [sys.executable, "-c", "import verl.trainer.main_ppo"],
        }
        # One untimed run each, so the file cache is warm for all of them alike.
        for argv in cases.values():
            subprocess.run(argv, cwd=PROJECT_ROOT, check=True, capture_output=True)
        results = {label: wall_time(argv, args.repeats) for label, argv in cases.items()}
    dry_run = next(iter(results.values()))
    print(f"median of {args.repeats} runs each, fresh interpreters")
    for label, seconds in results.items():
        print(f"{seconds:8.3f} s  ratio to dry run {seconds / dry_run:6.2f}x  {label}")


if __name__ == "__main__":
    main()
