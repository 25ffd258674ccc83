"""`python -m launch view PATH [B] [--output FILE]`: one self-contained HTML page to read rollouts in.

PATH is an eval or trajectories run (or its trajectories.jsonl), a rollouts preflight run (or its
rollouts.jsonl), or an RL run's dumps (`rollouts/`, `validation/`, or one `<step>.jsonl`; the RL
data comes from the run's config.yaml, or --data). A second run B puts two eval runs side by
side. The page needs no server and makes no request: open it in any browser.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from launch.plan import Step
from tools.viewer.build import VIEW_FILE, build_page
from tools.viewer.page import write_page
from tools.viewer.sources import ViewError


def view_step(python: str, folder: str) -> Step:
    """The Plan step that writes `folder/view.html` once a stage's rollouts are in `folder` (relative to the run)."""
    return Step("view", [python, "-m", "launch", "view", folder, "--output", f"{folder}/{VIEW_FILE}"])


def default_output(first: Path, second: Path | None, source_output: Path) -> Path:
    """Beside the source for one run; for two, `compare_<A>_vs_<B>.html` in the working directory."""
    if second is None:
        return source_output
    return Path(f"compare_{first.resolve().name}_vs_{second.resolve().name}.html")


def main(argv: list[str] | None = None) -> int:
    """CLI: write the page and print where it is; 2 when a source cannot be read."""
    parser = argparse.ArgumentParser(prog="python -m launch view", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a run folder or its rollouts file")
    parser.add_argument("other", type=Path, nargs="?", help="a second eval run, to compare with the first")
    parser.add_argument("--output", type=Path, help="the HTML file to write (default: view.html beside the source)")
    parser.add_argument("--data", type=Path, action="append",
                        help="an RL parquet file an RL dump was sampled from (repeatable; default: the run's config)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        page, source = build_page([args.path] if args.other is None else [args.path, args.other], args.data)
    except ViewError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    output = args.output or default_output(args.path, args.other, source.default_output())
    write_page(page, output)
    size = output.stat().st_size
    print(f"[view] {len(page.rows)} rows, {size / 1e6:.2f} MB, {time.perf_counter() - started:.1f} s: {output}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
