"""Benchmark: video_qa at production resolution, against decoding every call (the tool before its leaf cache).

Real 1080p H.264 videos with a 250-frame keyframe interval (tests/benchmarks/video_qa_world.py)
and RL's access pattern: Q questions x R rollouts, each rollout reading a leaf's caption and then
asking video_qa about it, 2 to 3 times, mostly on its group's 2 to 4 hot leaves. The pattern
runs through the real tool server over HTTP (python -m tools.environment.serve_tool) with a
loopback VLM, all rollouts concurrently. The baseline is the same server whose video_qa decodes
every call with the frame reader of BASELINE_REVISION (read from git history, so it is exactly
the code that ran before). Printed, each against the baseline measured in the same run:
- warm leaf (cache hit) and cold leaf frame cost per call (in process);
- the whole access pattern's wall time through the server, and the cache's hit rate;
- cold leaves prepared by 1 and 2 frame workers (scaling);
- p99 get_caption latency while the pattern's video_qa load runs, against idle;
- peak resident memory of the server and its workers, against the cache bound.
No timed assertions; the numbers are printed.

    python -m tests.benchmarks.bench_video_qa [--questions 4] [--rollouts 16] [--videos 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from launch.local import free_port
from tests.benchmarks.video_qa_world import (
    DURATION_S,
    WIDTH,
    Rollout,
    World,
    access_pattern,
    build_world,
    cached_videos,
    git_file,
    leaves,
)
from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.http_json import post
from tests.fixtures.tool_world import extra_info, settings_dict, turn
from tools.environment import frames, geometry
from tools.environment.frame_workers import FramePool

# The last commit whose video_qa decoded every call: the baseline's frame reader.
BASELINE_REVISION = "843434a"
ROOT = Path(__file__).resolve().parents[2]
FRAMES_PER_QUERY, MAX_SIDE, JPEG_QUALITY = 16, 1024, 90
# A baseline video_qa waits behind every decode queued before it.
REQUEST_TIMEOUT_S = 1800


def load_baseline_frames(scratch: Path):
    """tools/environment/frames.py as of BASELINE_REVISION, imported as its own module."""
    path = git_file(BASELINE_REVISION, "tools/environment/frames.py", scratch / "frames_baseline.py")
    spec = importlib.util.spec_from_file_location("frames_baseline", path)
    module = importlib.util.module_from_spec(spec)
    # Its dataclasses look their module up by name while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def baseline_leaf(baseline, video: Path, times: list[float]) -> list[str]:
    """One leaf's data URLs the way the baseline tool made them, on every call."""
    return [baseline.to_jpeg_data_url(frame.image, JPEG_QUALITY)
            for frame in baseline.read_frames(video, times, MAX_SIDE)]


def leaf_times(ids: tuple[int, ...]) -> list[float]:
    """The 16 times video_qa samples in leaf `ids`."""
    start, end = geometry.time_range(ids, WIDTH, DURATION_S)
    return frames.leaf_timestamps(start, end, FRAMES_PER_QUERY)


def timed(function) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call of `function()`."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_frame_cost(world: World, baseline, cold_leaves: int) -> None:
    """Per-call frame cost in process: cold (new reader, both thread settings) and warm (cache hit), each
    against the baseline reader."""
    from tools.environment.leaf_frames import LeafFrameCache

    video = world.video_dir / f"{world.uids[0]}.mp4"
    # Every reader meets the file in the page cache, as a tool server's repeated reads do.
    video.read_bytes()
    sample = [leaf_times(ids) for ids in leaves()[1:1 + cold_leaves]]
    old = [timed(lambda t=t: baseline_leaf(baseline, video, t)) for t in sample]
    new_auto = [timed(lambda t=t: frames.prepare_leaf_images(video, t, MAX_SIDE, JPEG_QUALITY)) for t in sample]
    new_one = [timed(lambda t=t: frames.prepare_leaf_images(video, t, MAX_SIDE, JPEG_QUALITY, threads=1))
               for t in sample]
    cache = LeafFrameCache(1 << 30, lambda path, times, side, quality: frames.prepare_leaf_images(
        path, list(times), side, quality))
    cache.get(video, sample[0], MAX_SIDE, JPEG_QUALITY)
    warm = [timed(lambda: cache.get(video, sample[0], MAX_SIDE, JPEG_QUALITY))[0] for _ in range(200)]
    base_wall = statistics.median(w for w, _ in old)
    print(f"frame cost per call over {cold_leaves} cold 16 s leaves (median wall / CPU s):")
    print(f"  baseline (decode every call)      {base_wall:6.3f} s / {statistics.median(c for _, c in old):6.3f} s")
    for label, runs in (("new reader, codec threads", new_auto), ("new reader, 1 thread (a worker)", new_one)):
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        print(f"  {label:33s} {wall:6.3f} s / {cpu:6.3f} s   cold ratio {base_wall / wall:4.2f}x wall, "
              f"{statistics.median(c for _, c in old) / cpu:4.2f}x CPU  (goal >= 2x)")
    hit = statistics.median(warm)
    print(f"  warm leaf (cache hit)             {hit * 1e6:6.1f} us   ratio {base_wall / hit:,.0f}x  (goal >= 50x)")


def bench_scaling(world: World, cold_leaves: int) -> None:
    """Cold leaves prepared concurrently by one frame worker, then by two."""
    video = str(world.video_dir / f"{world.uids[1 % len(world.uids)]}.mp4")
    sample = [tuple(leaf_times(ids)) for ids in leaves()[-cold_leaves:]]
    walls = {}
    for workers in (1, 2):
        pool = FramePool(workers)
        pool.start_all()
        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(cold_leaves) as threads:
                list(threads.map(pool.prepare, [video] * len(sample), sample, [MAX_SIDE] * len(sample),
                                 [JPEG_QUALITY] * len(sample)))
            walls[workers] = time.perf_counter() - started
        finally:
            pool.close()
    print(f"scaling: {cold_leaves} cold leaves at once, 1 worker {walls[1]:.2f} s, 2 workers {walls[2]:.2f} s: "
          f"{walls[1] / walls[2]:.2f}x  (goal >= 1.7x on 2 cores)")


# ---------------------------------------------------------------------------------------------------------------
# Through the real tool server.


class Server:
    """A tool server subprocess (ours, or the baseline's) on a free port, with its log and memory sampler."""

    def __init__(self, root: Path, settings: dict, baseline: bool) -> None:
        self.settings_path = root / ("baseline.json" if baseline else "tool.json")
        self.settings_path.write_text(json.dumps(settings))
        self.log_path = root / ("baseline.log" if baseline else "server.log")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "tests.benchmarks.bench_video_qa", "--serve-baseline", str(root)] if baseline \
            else [sys.executable, "-m", "tools.environment.serve_tool"]
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen([*argv, "--port", str(self.port), "--settings", str(self.settings_path),
                                         "--log-level", "info"], cwd=ROOT, stdout=self.log,
                                        stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.peak_mib = 0.0
        self._sampling = threading.Event()
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"tool server exited with {self.process.returncode}:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"tool server did not answer within 120 s:\n{self.log_path.read_text()}")

    def resident_mib(self) -> float:
        """Resident memory of the server and its child processes (the frame workers), in MiB."""
        pids = [self.process.pid, *child_pids(self.process.pid)]
        total = 0
        for pid in pids:
            try:
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * 4096
            except OSError:
                continue
        return total / 2**20

    def sample_memory(self) -> None:
        """Sample resident memory every 0.2 s until `stop_sampling`, keeping the peak."""
        def sample() -> None:
            while not self._sampling.wait(0.2):
                self.peak_mib = max(self.peak_mib, self.resident_mib())
        threading.Thread(target=sample, daemon=True).start()

    def stop(self) -> str:
        """SIGTERM the server, wait, and return its log (our server logs its frame cache summary at close)."""
        self._sampling.set()
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()
        return self.log_path.read_text()


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is `parent` (whichever of its threads started them)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def call(url: str, trajectory: str, uid: str, action: str) -> float:
    """One tool request to the server at `url`; its latency in seconds (SystemExit if the tool did not serve it)."""
    started = time.perf_counter()
    reply = post(f"{url}/get_observation", {
        "trajectory_ids": [trajectory], "actions": [turn(action)], "finish": [False], "is_last_step": [False],
        "extra_fields": [extra_info(video_uid=uid, duration=DURATION_S, width=WIDTH)]}, timeout=REQUEST_TIMEOUT_S)
    if not reply["valids"][0]:
        raise SystemExit(f"the tool did not serve {action!r}: {reply['observations'][0][:300]}")
    return time.perf_counter() - started


def play(server: Server, rollout: Rollout) -> None:
    """One rollout: for each of its leaves, read the caption, then ask video_qa; then finish."""
    for ids in rollout.leaves:
        call(server.url, rollout.trajectory_id, rollout.video_uid, f"get_caption({geometry.format_ids(ids)})")
        call(server.url, rollout.trajectory_id, rollout.video_uid, f'video_qa({geometry.format_ids(ids)}, "what?")')
    post(f"{server.url}/get_observation", {"trajectory_ids": [rollout.trajectory_id], "actions": [""],
                                           "finish": [True], "is_last_step": [True], "extra_fields": [{}]},
         timeout=REQUEST_TIMEOUT_S)


def caption_latencies(url: str, uid: str, stop, count: int, results=None) -> list[float]:
    """get_caption latencies of one probing trajectory: `count` calls, or until `stop` (an Event) is set.

    Run in its own process during the load (`results` is then a queue that gets them), so that what it
    measures is the server, not this process's own threads and loopback VLM."""
    every = leaves()
    latencies = []
    while (stop is None and len(latencies) < count) or (stop is not None and not stop.is_set()):
        ids = every[len(latencies) % len(every)]
        latencies.append(call(url, "probe", uid, f"get_caption({geometry.format_ids(ids[:2])})"))
    if results is not None:
        results.put(latencies)
    return latencies


def p99(values: list[float]) -> float:
    """The 99th percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def run_pattern(server: Server, pattern: list[Rollout], concurrency: int, uid: str) -> tuple[float, list[float]]:
    """Play every rollout at once (up to `concurrency`) while a probe asks get_caption; wall s, probe latencies."""
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    probe = context.Process(target=caption_latencies, args=(server.url, uid, stop, 0, results))
    probe.start()
    server.sample_memory()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda rollout: play(server, rollout), pattern))
    wall = time.perf_counter() - started
    stop.set()
    latencies = results.get(timeout=REQUEST_TIMEOUT_S)
    probe.join()
    return wall, latencies


def bench_server(world: World, root: Path, vlm: FakeVLM, pattern: list[Rollout], concurrency: int,
                 cache_mb: int) -> None:
    """The access pattern through our server and through the baseline's, with the probe and the memory peak."""
    calls = sum(len(rollout.leaves) for rollout in pattern)
    distinct = len({(rollout.video_uid, ids) for rollout in pattern for ids in rollout.leaves})
    print(f"access pattern: {len(pattern)} rollouts, {calls} video_qa calls on {distinct} distinct leaves, "
          f"{concurrency} rollouts at once, through the tool server over HTTP")
    base = settings_dict(root, vlm.base_url, vlm={"timeout_s": 600.0, "max_concurrency": 64})
    base["default"].update(caption_dir=str(world.caption_dir), video_dir=str(world.video_dir))
    results = {}
    for label, baseline in (("baseline", True), ("ours", False)):
        server = Server(root, {**base, "frame_cache_mb": cache_mb}, baseline)
        try:
            idle = caption_latencies(server.url, world.uids[0], None, 300)
            wall, loaded = run_pattern(server, pattern, concurrency, world.uids[0])
        finally:
            log = server.stop()
        results[label] = (wall, idle, loaded, server.peak_mib, log)
        print(f"  {label:8s} wall {wall:7.1f} s; get_caption p99 idle {p99(idle) * 1e3:6.1f} ms, under load "
              f"{p99(loaded) * 1e3:7.1f} ms ({p99(loaded) / p99(idle):5.1f}x; goal within 2x), {len(loaded)} probes; "
              f"peak resident {server.peak_mib:7.0f} MiB")
    print(f"  whole pattern: {results['baseline'][0] / results['ours'][0]:.2f}x faster  (goal >= 5x)")
    summary = [line for line in results["ours"][4].splitlines() if "video_qa frames after" in line]
    if summary:
        counts = re.search(r"(\d+) hit\(s\), (\d+) decode\(s\), (\d+) wait\(s\)", summary[-1])
        hits, decodes, waits = (int(n) for n in counts.groups())
        print(f"  our cache: {hits} hits, {decodes} decodes, {waits} waits on a decode in flight: hit rate "
              f"{(hits + waits) / max(hits + decodes + waits, 1):.1%}; peak resident {results['ours'][3]:.0f} MiB "
              f"with a {cache_mb} MiB cache bound")
    else:
        print(f"  our server logged no frame cache summary; its log: {results['ours'][4][-2000:]}")


def forget_requests(vlm: FakeVLM, done: threading.Event) -> None:
    """Drop the loopback VLM's recorded requests (16 images each) every second until `done`."""
    while not done.wait(1.0):
        vlm.reset()


def serve_baseline(argv: list[str]) -> int:
    """Run our tool server with the baseline's video_qa: every call decodes with BASELINE_REVISION's reader."""
    from tools.environment import navigation, serve_tool

    scratch = Path(argv[0])
    baseline = load_baseline_frames(scratch)
    navigation.NavigationEnv.leaf_images = lambda self, video, times: tuple(baseline_leaf(baseline, video, times))
    return serve_tool.main(argv[1:])


def main() -> None:
    """Build the world, run each measurement, print the ratios."""
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-baseline":
        sys.exit(serve_baseline(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=4, help="GRPO groups (the paper's step: 12)")
    parser.add_argument("--rollouts", type=int, default=16, help="rollouts per question")
    parser.add_argument("--videos", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64, help="rollouts in flight at once")
    parser.add_argument("--cache-mb", type=int, default=1024, help="the server's frame_cache_mb")
    parser.add_argument("--cold-leaves", type=int, default=6)
    args = parser.parse_args()
    videos = cached_videos(args.videos)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        world = build_world(root, videos)
        print(f"{len(videos)} videos: 1920x1080 H.264, 30 fps, keyframe every 250 frames, {DURATION_S:.0f} s; "
              f"width {WIDTH}, 16 s leaves; {os.cpu_count()} cores")
        bench_frame_cost(world, load_baseline_frames(root), args.cold_leaves)
        bench_scaling(world, args.cold_leaves)
        pattern = access_pattern(world.uids, args.questions, args.rollouts)
        with FakeVLM(answer="a person walks by") as vlm:
            done = threading.Event()
            threading.Thread(target=forget_requests, args=(vlm, done), daemon=True).start()
            bench_server(world, root, vlm, pattern, args.concurrency, args.cache_mb)
            done.set()


if __name__ == "__main__":
    main()
