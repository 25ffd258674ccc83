"""Benchmark: get_caption through our tool against re-reading the caption file on every call.

The paper's tool reads and parses a video's caption JSON on each call (1.4 ms at width 4, 14.5 ms at
width 8). Ours parses a file once into a bounded in-memory cache. Measured in the same run:
- lookup: `TreeCache.get` + `caption(ids)` against `load_caption_tree` + `caption(ids)` per call;
- tool: a whole `LongVideoNavTool.get_observations` call (turn parsing, lookup, observation text)
  with the cache, against the same call when the tree is re-read and re-parsed each time;
- concurrency: 256 trajectories at once (caption, leaf caption, video_qa on a real video through a
  loopback VLM, finish), four rounds: errors, live state after each round, and memory: Python's
  heap of live objects (which must not grow from round to round) and the resident size.
No timed assertions; the numbers and ratios are printed.

    python -m tests.benchmarks.bench_get_caption [--width 6] [--calls 20000]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import random
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.tool_world import build_world, extra_info, turn
from tools.environment import geometry
from tools.environment.caption_tree import TreeCache, load_caption_tree
from tools.environment.frames import leaf_timestamps
from tools.environment.verl_tool_glue import LongVideoNavTool

# Caption lengths of the order the paper's trees have: a few sentences per node.
WORDS = "a person walks into the kitchen and opens the fridge while a dog watches from the door".split()


def realistic_tree(width: int, duration: float, rng: random.Random) -> dict:
    """A caption file with paragraph-long captions and per-node frame times, like a real one."""
    # Words per caption and frames per node, by level.
    sizes = {1: (120, 32), 2: (80, 16), 3: (50, 8)}
    levels: list[list[dict]] = [[], [], []]
    for segment in geometry.segments(width, duration):
        words, count = sizes[segment.level]
        caption = " ".join(rng.choice(WORDS) for _ in range(words))
        times = leaf_timestamps(segment.start, segment.end, count)
        levels[segment.level - 1].append({"caption": caption, "frame_time": times})
    return {"width": width, "captions": levels}


def per_call(function, calls: int) -> float:
    """Seconds per call of `function()`, over `calls` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls


def resident_mib() -> float:
    """This process's resident memory in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


def bench_lookups(root: Path, width: int, calls: int) -> None:
    """Cached lookup and whole tool call, each against a re-read-and-re-parse baseline."""
    duration = 16.0 * width**3
    rng = random.Random(0)
    path = root / "captions" / "long.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(realistic_tree(width, duration, rng)))
    ids = [geometry.ids_of(rng.randrange(width**3), 3, width) for _ in range(64)]
    cache = TreeCache()
    cycle = itertools.cycle(ids)
    cached = per_call(lambda: cache.get(path).caption(next(cycle)), calls)
    baseline_calls = max(50, calls // 100)
    reparsed = per_call(lambda: load_caption_tree(path).caption(next(cycle)), baseline_calls)
    print(f"width {width}: caption file {path.stat().st_size / 1024:.0f} KiB, {width ** 3} leaves")
    print(f"  lookup   cached {cached * 1e6:8.2f} us/call   re-read+re-parse {reparsed * 1e6:9.1f} us/call   "
          f"ratio {reparsed / cached:,.0f}x  (goal >= 1,000x)")

    with FakeVLM() as vlm:
        world = build_world(root / "tool", vlm, with_video=False)
    tool = LongVideoNavTool(num_workers=1, settings=world.settings)
    source = world.settings.default
    info = extra_info(video_uid="long", duration=duration, width=width)
    source_dir = Path(source.caption_dir)
    (source_dir / "long.json").write_text(path.read_text())
    actions = [turn(f"get_caption({geometry.format_ids(i)})") for i in ids]
    cycle = itertools.cycle(actions)
    through_tool = per_call(lambda: tool.get_observations(["t"], [next(cycle)], [info]), calls)

    def reparse_every_call() -> None:
        """Make one get_caption call through the tool with a fresh tree cache, so the file is re-read and re-parsed."""
        tool.env.trees = TreeCache()
        tool.get_observations(["t"], [next(cycle)], [info])

    tool_baseline = per_call(reparse_every_call, baseline_calls)
    print(f"  tool     cached {through_tool * 1e6:8.2f} us/call   "
          f"re-read+re-parse {tool_baseline * 1e6:9.1f} us/call   ratio {tool_baseline / through_tool:,.0f}x  "
          f"({1 / through_tool:,.0f} get_caption calls/s)")


def bench_concurrency(root: Path, trajectories: int, rounds: int) -> None:
    """`trajectories` at once through the tool, `rounds` times: errors, live state, resident memory."""
    with FakeVLM(answer="a dog barks") as vlm:
        # The VLM settings of configs/tool/default.yaml: queueing for a slot counts against the timeout.
        world = build_world(root / "concurrent", vlm, vlm={"timeout_s": 120.0, "max_concurrency": 16})
        tool = LongVideoNavTool(num_workers=1, settings=world.settings)

        def trajectory(index: int) -> int:
            """Run one trajectory's three tool calls, then delete its env; return how many calls were invalid."""
            name = f"round-traj-{index}"
            leaf = geometry.ids_of(index % 64, 3, 4)
            calls = [f"get_caption({geometry.format_ids(leaf[:2])})", f"get_caption({geometry.format_ids(leaf)})",
                     f'video_qa({geometry.format_ids(leaf)}, "what happens?")']
            errors = 0
            for call in calls:
                _, _, valids = tool.get_observations([name], [turn(call)], [extra_info()])
                errors += not valids[0]
            # verl-tool's finish tool, at the end of every trajectory.
            tool.delete_env(name)
            return errors

        print(f"concurrency: {trajectories} trajectories at once, 3 tool calls each (video_qa decodes 16 frames)")
        # Python's own heap (live objects after a collection) shows a leak plainly; resident memory
        # also moves with the native allocator's arenas for 256 threads and PyAV's frame buffers.
        tracemalloc.start()
        for round_index in range(rounds):
            # The loopback VLM keeps every request it got; drop them so only the tool's memory is measured.
            vlm.reset()
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=trajectories) as pool:
                errors = sum(pool.map(trajectory, range(trajectories)))
            elapsed = time.perf_counter() - start
            gc.collect()
            heap = tracemalloc.get_traced_memory()[0] / 2**20
            print(f"  round {round_index + 1}: {errors} errors, {len(tool.get_env_cache_keys())} live trajectories "
                  f"after, {elapsed:5.1f} s (traced), {len(vlm.chat_requests())} VLM requests, "
                  f"python heap {heap:5.1f} MiB, resident {resident_mib():6.1f} MiB")
        tracemalloc.stop()


def main() -> None:
    """Run both benchmarks and print their numbers and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=6)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--trajectories", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for width in sorted({4, args.width, 8}):
            bench_lookups(root / f"w{width}", width, args.calls)
        bench_concurrency(root, args.trajectories, args.rounds)


if __name__ == "__main__":
    main()
