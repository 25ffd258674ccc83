"""The processes that prepare video_qa's frames for cold leaves, off the tool server's GIL.

`FramePool` runs `frame_workers` processes, started with 'spawn' (the server is threaded and must
not fork), each decoding with one thread, so N workers use N cores. It starts at the first call,
is rebuilt after a worker crash (the calls in flight get FramePoolError naming how the worker
died), and stops at `close()`. A worker whose server died without closing it (SIGKILL, or a
SIGTERM nothing handles) notices that its parent changed and exits.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from tools.environment import frames

logger = logging.getLogger(__name__)

# Workers `frame_workers: 0` starts: one per core this process may run on, at most this many.
MAX_AUTO_WORKERS = 16
# How often a worker checks that the process that started it is still its parent.
PARENT_POLL_S = 0.25
# How much lower than the server the workers' scheduling priority is (nice(2) increment).
WORKER_NICENESS = 10
# How long close() waits for a worker to finish its current leaf before killing it.
CLOSE_GRACE_S = 5.0


class FramePoolError(RuntimeError):
    """The frame worker pool could not prepare a leaf: a worker died, or the pool is shut down."""


def prepare_leaf(video_path: str, timestamps: Sequence[float], max_side: int, jpeg_quality: int) -> list[str]:
    """The JPEG data URLs of one leaf, exactly as video_qa sends them, decoded with one thread."""
    return frames.prepare_leaf_images(video_path, list(timestamps), max_side, jpeg_quality, threads=1)


def auto_workers() -> int:
    """The worker count `frame_workers: 0` means: the cores this process may use, at most MAX_AUTO_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_WORKERS))


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker as soon as the process that started it is gone (it was re-parented)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _worker_init(parent_pid: int) -> None:
    """Run in each worker: leave Ctrl-C to the server, and die with it whatever way it dies.

    A watcher thread rather than PR_SET_PDEATHSIG: that signal follows the death of the parent's
    *thread* that started the worker, and the pool starts workers from whichever request thread
    submits, some of which end after their batch.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Decoding is background work: the server's get_caption replies come first when cores are short.
    os.nice(WORKER_NICENESS)
    if os.getppid() != parent_pid:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _timed(prepare: Callable[..., Sequence[str]], *args: object) -> tuple[Sequence[str], float]:
    """Run `prepare(*args)` in a worker: its result and the seconds it took there."""
    began = time.perf_counter()
    result = prepare(*args)
    return result, time.perf_counter() - began


def _worker_pid(hold_s: float) -> int:
    """This worker's pid, after holding the worker `hold_s` seconds (so the next task needs another worker)."""
    time.sleep(hold_s)
    return os.getpid()


class FramePool:
    """`workers` spawned processes that prepare leaves; started at the first call, rebuilt after a crash."""

    def __init__(self, workers: int, prepare: Callable[..., Sequence[str]] = prepare_leaf) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers}: expected at least 1 worker process")
        self.workers = workers
        self._prepare = prepare
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._closed = False
        self.restarts = 0
        self.prepared = 0
        self.decode_s = 0.0

    def prepare(self, video_path: str, timestamps: tuple[float, ...], max_side: int,
                jpeg_quality: int) -> list[str]:
        """The leaf's data URLs, prepared in a worker; FramePoolError if the worker died or the pool is shut."""
        executor = self._running()
        try:
            urls, seconds = executor.submit(_timed, self._prepare, video_path, timestamps, max_side,
                                            jpeg_quality).result()
        except BrokenProcessPool as error:
            cause = self._discard_broken(executor)
            raise FramePoolError(f"the frame worker preparing {video_path} died ({cause}); the worker pool is "
                                 "restarted for later calls") from error
        except RuntimeError as error:
            if self._closed:
                raise FramePoolError("the frame workers are shut down: the tool server is closing") from error
            raise
        with self._lock:
            self.prepared += 1
            self.decode_s += seconds
        return list(urls)

    def stats(self) -> dict:
        """Workers, restarts after a crash, leaves prepared and the seconds the workers spent preparing them."""
        with self._lock:
            return {"workers": self.workers, "restarts": self.restarts, "prepared": self.prepared,
                    "decode_s": round(self.decode_s, 3)}

    def _running(self) -> ProcessPoolExecutor:
        """The pool's executor, started now if it is not running."""
        with self._lock:
            if self._closed:
                raise FramePoolError("the frame workers are shut down: the tool server is closing")
            if self._executor is None:
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_worker_init,
                                                     initargs=(os.getpid(),))
                logger.info("started the frame worker pool (%d process(es), spawn)", self.workers)
            return self._executor

    def _discard_broken(self, executor: ProcessPoolExecutor) -> str:
        """Drop a broken executor so the next call starts a fresh one; what killed its worker, in words."""
        processes = list((getattr(executor, "_processes", None) or {}).values())
        with self._lock:
            if self._executor is executor:
                self._executor = None
                self.restarts += 1
                logger.error("a frame worker process died; restarting the frame worker pool (restart %d)",
                             self.restarts)
        executor.shutdown(wait=False, cancel_futures=True)
        return describe_break(processes)

    def pids(self) -> list[int]:
        """The pids of the running worker processes (none before the first call or after close)."""
        with self._lock:
            executor = self._executor
        processes = getattr(executor, "_processes", None) or {}
        return sorted(process.pid for process in list(processes.values()) if process.pid is not None)

    def start_all(self) -> list[int]:
        """Start every worker now (otherwise they start as calls need them); their pids."""
        executor = self._running()
        # The executor starts a worker for a task only when none is idle: keep them all busy for a moment.
        for _ in range(10):
            for future in [executor.submit(_worker_pid, 0.2) for _ in range(self.workers)]:
                future.result()
            if len(self.pids()) >= self.workers:
                break
        return self.pids()

    def close(self) -> None:
        """Stop the workers: each finishes its current leaf (up to CLOSE_GRACE_S) or is terminated. Idempotent."""
        with self._lock:
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is None:
            return
        processes = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + CLOSE_GRACE_S
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                logger.warning("frame worker %s did not stop within %.0f s; killing it", process.pid, CLOSE_GRACE_S)
                process.kill()
                process.join(1.0)
        logger.info("stopped the frame worker pool")


def describe_break(processes: Sequence[multiprocessing.process.BaseProcess]) -> str:
    """What ended the workers of a broken pool, from their exit codes."""
    codes = []
    deadline = time.monotonic() + 2.0
    for process in processes:
        # The pool sees a worker's pipe close a moment before the worker can be reaped, and the pool's own
        # thread may be reaping it as we ask: wait a little for its exit code.
        code = process.exitcode
        while code is None and time.monotonic() < deadline:
            process.join(0.05)
            code = process.exitcode
        pid = process.pid
        if code is None or code == -signal.SIGTERM:  # still running, or terminated by the pool after the crash
            continue
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            codes.append(f"worker {pid} was killed by {name}")
        else:
            codes.append(f"worker {pid} exited with status {code}")
    return "; ".join(codes) or "a worker process terminated abruptly"
