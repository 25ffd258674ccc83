"""The frames video_qa shows the VLM, prepared once per leaf: a byte-bounded, single-flight cache.

In RL the rollouts of one question mostly visit the same few leaves, so the tool server would decode
the same 16 frames again and again, in the one process that also serves every get_caption.
`LeafFrameCache` keeps the JPEG data URLs of prepared leaves, keyed by the video file's identity
(resolved path, size, mtime, ctime, inode, device) and the exact request (timestamps, max_side,
jpeg_quality), so a rewritten video or another frame count, size or quality is never served stale.
It is bounded in bytes (the URLs' lengths) with least-recently-used eviction, and it is
single-flight: concurrent requests of one leaf wait for ONE preparation and all get its result or
its error (an error is not cached). What prepares a cold leaf is given to it: in the tool server,
the worker processes of `tools.environment.frame_workers`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import NamedTuple

from tools.environment import frames

MB = 1 << 20

# (video path, timestamps, max_side, jpeg_quality) -> the JPEG data URLs, in the order of the timestamps.
Prepare = Callable[[str, tuple[float, ...], int, int], Sequence[str]]


class LeafKey(NamedTuple):
    """What identifies one prepared leaf: the video file as it is on disk now, and the exact request."""

    path: str
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    device: int
    timestamps: tuple[float, ...]
    max_side: int
    jpeg_quality: int


def leaf_key(video_path: str | Path, timestamps: Sequence[float], max_side: int, jpeg_quality: int) -> LeafKey:
    """The key of a leaf request from the file's current identity; FrameError if the file cannot be read."""
    path = Path(video_path)
    try:
        resolved = path.resolve(strict=True)
        status = resolved.stat()
    except FileNotFoundError:
        raise frames.FrameError(f"{path}: no such video file") from None
    except OSError as error:
        raise frames.FrameError(f"{path}: cannot read the video file: {error}") from None
    return LeafKey(str(resolved), status.st_size, status.st_mtime_ns, status.st_ctime_ns, status.st_ino,
                   status.st_dev, tuple(float(t) for t in timestamps), max_side, jpeg_quality)


class LeafFrameCache:
    """Prepared leaves by LeafKey, at most `max_bytes` of URL text (0: nothing kept), single-flight per key."""

    def __init__(self, max_bytes: int, prepare: Prepare) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes={max_bytes}: expected 0 (no caching) or a positive number of bytes")
        self.max_bytes = max_bytes
        self._prepare = prepare
        self._lock = threading.Lock()
        self._entries: OrderedDict[LeafKey, tuple[str, ...]] = OrderedDict()
        self._sizes: dict[LeafKey, int] = {}
        self._flights: dict[LeafKey, Future] = {}
        self._bytes = 0
        self._counts = dict.fromkeys(("hits", "misses", "waits", "failures", "evictions", "uncached"), 0)
        self._decode_s = 0.0

    def get(self, video_path: str | Path, timestamps: Sequence[float], max_side: int,
            jpeg_quality: int) -> tuple[str, ...]:
        """The leaf's data URLs: from memory, from a preparation already under way, or prepared now."""
        key = leaf_key(video_path, timestamps, max_side, jpeg_quality)
        with self._lock:
            urls = self._entries.get(key)
            if urls is not None:
                self._entries.move_to_end(key)
                self._counts["hits"] += 1
                return urls
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = Future()
                self._counts["misses"] += 1
            else:
                self._counts["waits"] += 1
        if not leader:
            # Another trajectory is preparing this leaf: its result, or its error, is ours too.
            return flight.result()
        began = time.monotonic()
        try:
            urls = tuple(self._prepare(key.path, key.timestamps, key.max_side, key.jpeg_quality))
        except BaseException as error:
            with self._lock:
                del self._flights[key]
                self._counts["failures"] += 1
                self._decode_s += time.monotonic() - began
            flight.set_exception(error)
            raise
        with self._lock:
            del self._flights[key]
            self._decode_s += time.monotonic() - began
            self._store(key, urls)
        flight.set_result(urls)
        return urls

    def _store(self, key: LeafKey, urls: tuple[str, ...]) -> None:
        """Keep `urls` under `key` and drop the least recently used leaves past the bound (lock held)."""
        size = sum(len(url) for url in urls)
        if size > self.max_bytes:
            self._counts["uncached"] += 1
            return
        self._entries[key] = urls
        self._sizes[key] = size
        self._bytes += size
        while self._bytes > self.max_bytes:
            dropped, _ = self._entries.popitem(last=False)
            self._bytes -= self._sizes.pop(dropped)
            self._counts["evictions"] += 1

    def clear(self) -> None:
        """Forget every prepared leaf (counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._sizes.clear()
            self._bytes = 0

    def stats(self) -> dict:
        """Counters: hits, misses (preparations started), waits (on one in flight), failures, evictions,
        uncached (leaves larger than the bound), entries, bytes held, max_bytes, in_flight, and decode_s:
        the wall-clock seconds preparations took as their callers saw them (queueing for a worker included)."""
        with self._lock:
            return {**self._counts, "entries": len(self._entries), "bytes": self._bytes,
                    "max_bytes": self.max_bytes, "in_flight": len(self._flights),
                    "decode_s": round(self._decode_s, 3)}


def summary(stats: dict, video_qa_calls: int, pool: dict | None = None) -> str:
    """One log line of the frame cache's counters (`stats()`), and of the worker pool's (`FramePool.stats()`)."""
    line = (f"video_qa frames after {video_qa_calls} call(s): {stats['hits']} hit(s), {stats['misses']} "
            f"decode(s), {stats['waits']} wait(s) on a decode in flight, {stats['failures']} failure(s), "
            f"{stats['evictions']} eviction(s); {stats['entries']} leaves held, {stats['bytes'] / MB:.1f} of "
            f"{stats['max_bytes'] / MB:.0f} MB; {stats['decode_s']:.1f} s waiting for decodes")
    if pool is not None:
        line += (f"; {pool['workers']} frame worker(s) decoded {pool['prepared']} leaves in {pool['decode_s']:.1f} s, "
                 f"{pool['restarts']} restart(s)")
    return line
