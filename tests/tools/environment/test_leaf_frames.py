"""Prepared leaves for video_qa: the byte-bounded, single-flight cache (leaf_frames) and the frame workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.frame_worker_tasks import crash_on_request
from tests.fixtures.tool_world import extra_info, settings_dict, turn
from tools.demo.synthetic_video import decode_frame_index, encode_test_video, frame_index_at
from tools.environment import frames, leaf_frames
from tools.environment.frame_workers import FramePool, FramePoolError, prepare_leaf
from tools.environment.leaf_frames import LeafFrameCache
from tools.environment.navigation import NavigationEnv
from tools.environment.tool_settings import ToolSettingsError, settings_from_dict, write_settings

FPS = 8
PROJECT_ROOT = Path(__file__).resolve().parents[3]
TIMES = tuple(frames.leaf_timestamps(4.0, 8.0, 16))


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 s, 8 fps test video whose frames show their own index."""
    return encode_test_video(tmp_path_factory.mktemp("leaf") / "clip.mp4", duration_s=20, fps=FPS)


class Counting:
    """A leaf preparer that counts its calls: the real decode, after an optional delay or instead a failure."""

    def __init__(self, delay_s: float = 0.0, fail: Exception | None = None) -> None:
        self.calls = 0
        self.delay_s = delay_s
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, path: str, timestamps: tuple[float, ...], max_side: int, quality: int) -> list[str]:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return prepare_leaf(path, timestamps, max_side, quality)


def indices(urls) -> list[int]:
    """The frame numbers drawn in JPEG data URLs."""
    import base64
    import io

    from PIL import Image

    return [decode_frame_index(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))) for url in urls]


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie awaiting its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], within_s: float = 10.0) -> list[int]:
    """The pids still alive after waiting up to `within_s` seconds for them to go."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not any(alive(pid) for pid in pids):
            return []
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


# The cache.


def test_a_hit_returns_byte_for_byte_what_a_cold_decode_returns(video: Path) -> None:
    """The second request of a leaf is served from memory with exactly the cold decode's URLs."""
    prepare = Counting()
    cache = LeafFrameCache(64 * leaf_frames.MB, prepare)
    cold = prepare_leaf(str(video), TIMES, 1024, 90)
    # One decoding thread (as the workers decode) or the codec's choice: the same bytes.
    assert cold == frames.prepare_leaf_images(video, list(TIMES), 1024, 90)
    first = cache.get(video, TIMES, 1024, 90)
    second = cache.get(video, list(TIMES), 1024, 90)
    assert first == second == tuple(cold) and prepare.calls == 1
    assert indices(second) == [frame_index_at(t, FPS) for t in TIMES]
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (1, 1, 1)
    assert stats["bytes"] == sum(map(len, cold)) and stats["decode_s"] > 0


def test_the_pool_prepares_byte_for_byte_what_this_process_does(video: Path) -> None:
    """A worker process's URLs equal an in-process decode's, and its pids go at close()."""
    pool = FramePool(1)
    try:
        assert pool.pids() == []
        assert pool.prepare(str(video), TIMES, 64, 75) == prepare_leaf(str(video), TIMES, 64, 75)
        pids = pool.pids()
        assert len(pids) == 1 and alive(pids[0])
        stats = pool.stats()
        assert (stats["workers"], stats["prepared"], stats["restarts"]) == (1, 1, 0) and stats["decode_s"] > 0
    finally:
        pool.close()
    assert wait_gone(pids, 5) == []
    with pytest.raises(FramePoolError, match="shut down"):
        pool.prepare(str(video), TIMES, 64, 75)


def _rewrite_in_place(path: Path, tmp_path: Path) -> None:
    """Same path and inode, new content: frames that show other numbers (4 fps instead of 8)."""
    path.write_bytes(encode_test_video(tmp_path / "new.mp4", duration_s=20, fps=4).read_bytes())


def _replace(path: Path, tmp_path: Path) -> None:
    """Same path, a new file moved over it (as an atomic writer does)."""
    os.replace(encode_test_video(tmp_path / "new.mp4", duration_s=20, fps=4), path)


def _touch(path: Path, tmp_path: Path) -> None:
    """Same content, a new modification time."""
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))


@pytest.mark.parametrize(("change", "request_after"), [
    ("max_side", {"max_side": 64}),
    ("jpeg_quality", {"jpeg_quality": 40}),
    ("timestamps", {"times": tuple(frames.leaf_timestamps(8.0, 12.0, 16))}),
    ("frame count", {"times": tuple(frames.leaf_timestamps(4.0, 8.0, 4))}),
    ("rewritten in place", {"edit": _rewrite_in_place}),
    ("replaced", {"edit": _replace}),
    ("touched", {"edit": _touch}),
], ids=lambda value: value if isinstance(value, str) else "")
def test_a_changed_file_or_request_is_never_served_stale(tmp_path: Path, change: str, request_after: dict) -> None:
    """Another size, quality, timestamps or frame count, or a rewritten video file, is decoded afresh."""
    path = encode_test_video(tmp_path / "clip.mp4", duration_s=20, fps=FPS)
    prepare = Counting()
    cache = LeafFrameCache(64 * leaf_frames.MB, prepare)
    before = cache.get(path, TIMES, 1024, 90)
    if "edit" in request_after:
        request_after["edit"](path, tmp_path)
    times = request_after.get("times", TIMES)
    max_side, quality = request_after.get("max_side", 1024), request_after.get("jpeg_quality", 90)
    after = cache.get(path, times, max_side, quality)
    assert prepare.calls == 2, change
    assert after == tuple(prepare_leaf(str(path), times, max_side, quality))
    if change in ("rewritten in place", "replaced"):
        assert indices(after) == [frame_index_at(t, 4) for t in TIMES] != indices(before)
    # The new request is now the one held, and served from memory.
    assert cache.get(path, times, max_side, quality) == after and prepare.calls == 2


def sized(size: int):
    """A fake preparer whose leaf of timestamps (t,) is one URL of `size` characters; it records what it prepared."""
    prepared: list[float] = []

    def prepare(path: str, timestamps: tuple[float, ...], max_side: int, quality: int) -> list[str]:
        prepared.append(timestamps[0])
        return [f"{timestamps[0]}:".ljust(size, "x")]

    return prepare, prepared


@pytest.mark.parametrize(("max_bytes", "accesses", "prepared", "held", "evictions"), [
    # Room for three 100-byte leaves: touching 1 makes 2 the least recently used, so 4 evicts 2.
    (350, [1, 2, 3, 1, 4, 1, 2], [1, 2, 3, 4, 2], [4, 1, 2], 2),
    # Room for one: every new leaf evicts the previous.
    (150, [1, 2, 1, 1], [1, 2, 1], [1], 2),
    # Exactly full is within the bound.
    (300, [1, 2, 3, 1, 2, 3], [1, 2, 3], [1, 2, 3], 0),
    # 0 disables caching; a leaf larger than the bound is not kept either.
    (0, [1, 1, 2], [1, 1, 2], [], 0),
    (99, [1, 1], [1, 1], [], 0),
], ids=["lru", "room-for-one", "exactly-full", "disabled", "larger-than-bound"])
def test_eviction_keeps_bytes_under_the_bound_and_drops_the_least_recently_used(
        video: Path, max_bytes: int, accesses: list[int], prepared: list[int], held: list[int], evictions: int) -> None:
    """The URL text held never exceeds max_bytes; the least recently used leaf goes first."""
    prepare, seen = sized(100)
    cache = LeafFrameCache(max_bytes, prepare)
    for t in accesses:
        url, = cache.get(video, (float(t),), 1024, 90)
        assert url.startswith(f"{float(t)}:")
        assert cache.stats()["bytes"] <= max_bytes
    assert seen == [float(t) for t in prepared]
    assert [key.timestamps[0] for key in cache._entries] == [float(t) for t in held]
    stats = cache.stats()
    assert (stats["evictions"], stats["entries"], stats["bytes"]) == (evictions, len(held), 100 * len(held))
    assert stats["hits"] + stats["misses"] == len(accesses) and stats["misses"] == len(prepared)


@pytest.mark.parametrize("max_bytes", [64 * leaf_frames.MB, 0], ids=["caching", "caching-disabled"])
def test_sixteen_threads_asking_one_leaf_cause_one_decode(video: Path, max_bytes: int) -> None:
    """Concurrent requests of a leaf wait for the one decode in flight and all get its URLs."""
    prepare = Counting(delay_s=0.5)
    cache = LeafFrameCache(max_bytes, prepare)
    barrier = threading.Barrier(16)
    results: list[tuple[str, ...]] = []

    def ask() -> None:
        barrier.wait()
        results.append(cache.get(video, TIMES, 1024, 90))

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert prepare.calls == 1 and len(results) == 16 and len(set(results)) == 1
    assert results[0] == tuple(prepare_leaf(str(video), TIMES, 1024, 90))
    stats = cache.stats()
    assert (stats["misses"], stats["waits"], stats["hits"], stats["in_flight"]) == (1, 15, 0, 0)


def test_a_failed_decode_reaches_every_waiter_and_is_not_cached(video: Path) -> None:
    """All concurrent askers get the one decode's error; the next request decodes again."""
    prepare = Counting(delay_s=0.5, fail=frames.FrameError("clip.mp4: decoding failed: bad packet"))
    cache = LeafFrameCache(64 * leaf_frames.MB, prepare)
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def ask() -> None:
        barrier.wait()
        try:
            cache.get(video, TIMES, 1024, 90)
        except frames.FrameError as error:
            errors.append(error)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert prepare.calls == 1 and len(errors) == 16
    assert all("decoding failed: bad packet" in str(error) for error in errors)
    assert cache.stats()["failures"] == 1 and cache.stats()["entries"] == 0
    prepare.fail, prepare.delay_s = None, 0.0
    assert cache.get(video, TIMES, 1024, 90) == tuple(prepare_leaf(str(video), TIMES, 1024, 90))
    assert prepare.calls == 2


def test_a_missing_video_is_a_frame_error_naming_it(tmp_path: Path) -> None:
    """The cache's look at the file names a missing video, as the decoder would."""
    cache = LeafFrameCache(leaf_frames.MB, Counting())
    with pytest.raises(frames.FrameError, match="gone.mp4: no such video file"):
        cache.get(tmp_path / "gone.mp4", TIMES, 1024, 90)


# The worker pool.


@pytest.mark.parametrize(("how", "cause"), [("kill", "killed by SIGKILL"), ("exit", "exited with status 3")])
def test_a_worker_crash_is_named_and_the_pool_is_rebuilt(how: str, cause: str) -> None:
    """BrokenProcessPool becomes FramePoolError naming the cause; the next call gets a fresh pool."""
    pool = FramePool(1, prepare=crash_on_request)
    try:
        assert pool.prepare("before", TIMES, 64, 90) == ["before"]
        first = pool.pids()
        with pytest.raises(FramePoolError) as caught:
            pool.prepare(how, TIMES, 64, 90)
        assert cause in str(caught.value) and "restarted" in str(caught.value)
        assert pool.prepare("after", TIMES, 64, 90) == ["after"]
        assert pool.restarts == 1 and pool.pids() != first
    finally:
        pool.close()


# Workers never outlive the process that started them.

KILLED_SERVER = """
import json, sys, time
from tests.fixtures.tool_world import extra_info, turn
from tools.environment.navigation import NavigationEnv
from tools.environment.tool_settings import load_settings

env = NavigationEnv(load_settings(sys.argv[1]))
env.step("t", turn("get_caption((1, 1, 1))"), extra_info())
observation = env.step("t", turn('video_qa((1, 1, 1), "what?")'), extra_info())
print(json.dumps({"valid": observation.valid, "text": observation.text, "pids": env.frame_pool.start_all()}),
      flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_die_with_a_killed_server(world, tmp_path: Path, sig: signal.Signals) -> None:
    """A process that served video_qa with two frame workers is killed: its workers are gone within seconds."""
    from dataclasses import replace

    settings = write_settings(replace(world.settings, frame_workers=2), tmp_path / "tool.json")
    process = subprocess.Popen([sys.executable, "-c", KILLED_SERVER, str(settings)], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        served = json.loads(line)
        assert served["valid"], served["text"]
        pids = served["pids"]
        assert len(pids) == 2 and all(alive(pid) for pid in pids)
        process.send_signal(sig)
        process.wait(30)
        assert wait_gone(pids, 10) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_tool_server_closes_the_tool_when_it_shuts_down() -> None:
    """serve_tool hooks our close into verl-tool's shutdown cleanup, which runs before uvicorn re-raises SIGTERM."""
    from types import SimpleNamespace

    from tools.environment.serve_tool import close_with_server
    from tools.environment.verl_tool_glue import TOOL_TYPE

    calls: list[str] = []
    tool = SimpleNamespace(close=lambda: calls.append("tool closed"))
    manager = SimpleNamespace(tools={TOOL_TYPE: tool}, cleanup=lambda: calls.append("threads stopped"))
    close_with_server(SimpleNamespace(tool_manager=manager))
    manager.cleanup()
    assert calls == ["threads stopped", "tool closed"]


# Settings.


@pytest.mark.parametrize(("overrides", "message"), [
    ({"frame_cache_mb": -1}, "frame_cache_mb: expected 0 (no caching) or a positive integer, got -1"),
    ({"frame_cache_mb": "4096"}, "frame_cache_mb: expected 0 (no caching) or a positive integer, got '4096'"),
    ({"frame_cache_mb": 1.5}, "frame_cache_mb: expected 0 (no caching) or a positive integer, got 1.5"),
    ({"frame_workers": -2}, "frame_workers: expected 0 (one per usable core, at most 16) or a positive integer"),
    ({"frame_workers": True}, "frame_workers: expected 0 (one per usable core, at most 16) or a positive integer"),
    ({"frame_workers": None}, "frame_workers: expected 0 (one per usable core, at most 16) or a positive integer"),
], ids=["negative-cache", "string-cache", "float-cache", "negative-workers", "bool-workers", "null-workers"])
def test_bad_frame_settings_name_the_key_and_what_is_expected(tmp_path: Path, overrides: dict, message: str) -> None:
    """frame_cache_mb and frame_workers are integers >= 0; anything else is refused, naming the key."""
    with pytest.raises(ToolSettingsError) as caught:
        settings_from_dict(settings_dict(tmp_path, "http://127.0.0.1:1/v1", **overrides), "tool")
    assert message in str(caught.value) and str(caught.value).startswith("tool.")


@pytest.mark.parametrize(("overrides", "cache_mb", "workers"), [
    ({}, 4096, 0),
    ({"frame_cache_mb": 0, "frame_workers": 3}, 0, 3),
    ({"frame_cache_mb": 512, "frame_workers": 1}, 512, 1),
], ids=["defaults", "disabled-three-workers", "explicit"])
def test_frame_settings_defaults_and_round_trip(tmp_path: Path, overrides: dict, cache_mb: int, workers: int) -> None:
    """The defaults are 4096 MiB and automatic workers; the values survive to_dict and back."""
    settings = settings_from_dict(settings_dict(tmp_path, "http://127.0.0.1:1/v1", **overrides))
    assert (settings.frame_cache_mb, settings.frame_workers) == (cache_mb, workers)
    assert settings_from_dict(settings.to_dict()) == settings


@pytest.mark.parametrize(("cores", "setting", "expected"), [
    (64, 0, 16), (2, 0, 2), (1, 0, 1), (64, 3, 3), (2, 5, 5),
])
def test_worker_count_is_the_setting_or_the_usable_cores_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                cores: int, setting: int, expected: int) -> None:
    """frame_workers: 0 takes one worker per core of this process's affinity, at most 16; N takes N."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    settings = settings_from_dict(settings_dict(tmp_path, "http://127.0.0.1:1/v1", frame_workers=setting))
    env = NavigationEnv(settings)
    assert env.frame_pool.workers == expected and env.frame_pool.pids() == []
    env.close()


def test_the_environment_starts_no_workers_without_video_qa(world) -> None:
    """get_caption alone never starts the pool; close() without a pool is fine."""
    with NavigationEnv(world.settings) as env:
        assert env.step("t", turn("get_caption((1, 1, 1))"), extra_info()).valid
        assert env.frame_pool.pids() == []
