"""The navigation environment: one model turn in, one observation out, with per-trajectory state.

`NavigationEnv.step` parses the turn with `tools.environment.actions`, applies the serve rule
(`tools.environment.serve_rule`), serves get_caption from the cached caption tree and video_qa from
the real video through the VLM, and turns every refusal or failure into an observation that says
what was wrong. The verl-tool glue and the evaluation agent loop both drive this class.

video_qa's frames come from a byte-bounded cache of prepared leaves (`tool.frame_cache_mb`,
`tools.environment.leaf_frames`) over a pool of worker processes (`tool.frame_workers`,
`tools.environment.frame_workers`) that decode cold leaves off this process's GIL. Call `close()`
when done, to stop the workers.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.environment import frame_workers, frames, geometry, leaf_frames, prompts
from tools.environment.actions import Answer, GetCaption, VideoQA, parse_turn
from tools.environment.caption_tree import CaptionTree, CaptionTreeError, TreeCache, caption_path
from tools.environment.question_fields import VideoFields
from tools.environment.serve_rule import FAILED, REFUSED, ToolFailure, serve_call
from tools.environment.tool_settings import SourceSettings, ToolSettings
from tools.environment.vlm_client import VLMClient, VLMEndpoint, VLMError

logger = logging.getLogger(__name__)
# The frame cache's counters are logged at INFO every this many video_qa calls (and at close).
STATS_EVERY = 50


@dataclass(frozen=True)
class Observation:
    """A tool's reply to one turn: its text, whether it served a valid action, and the action's JSON form."""

    text: str
    valid: bool
    kind: str
    action: dict | None = None
    done: bool = False


class NavigationEnv:
    """get_caption and video_qa over cached caption trees, with the 'caption read first' rule per trajectory."""

    def __init__(self, settings: ToolSettings, client_factory: Callable[[VLMEndpoint], VLMClient] = VLMClient,
                 prepare_leaf: leaf_frames.Prepare | None = None):
        """`prepare_leaf` replaces the worker pool (frame_workers) as what prepares a cold leaf, e.g. in tests."""
        self.settings = settings
        self.trees = TreeCache(settings.max_trees)
        self._client_factory = client_factory
        self._clients: dict[VLMEndpoint, VLMClient] = {}
        self._read_leaves: OrderedDict[str, set[tuple[int, ...]]] = OrderedDict()
        self._lock = threading.Lock()
        workers = settings.frame_workers or frame_workers.auto_workers()
        # Workers start at the first cold leaf, not here: an environment that serves no video_qa starts none.
        self.frame_pool = frame_workers.FramePool(workers) if prepare_leaf is None else None
        self.leaf_frames = leaf_frames.LeafFrameCache(settings.frame_cache_mb * leaf_frames.MB,
                                                      prepare_leaf or self.frame_pool.prepare)
        self._video_qa_calls = 0
        self._closed = False

    def close(self) -> None:
        """Stop the frame workers and log the frame cache's counters; idempotent. Later video_qa calls fail."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            calls = self._video_qa_calls
        if self.frame_pool is not None:
            self.frame_pool.close()
        self._log_frame_stats(calls)

    def __enter__(self) -> NavigationEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def step(self, trajectory_id: str, turn: str, extra_info: object, data_source: str | None = None) -> Observation:
        """Serve one model turn of trajectory `trajectory_id`; never raises for bad input, always explains."""
        parsed = parse_turn(turn)
        if parsed.error is not None:
            return Observation(prompts.error_observation(parsed.error.reason), False, "invalid",
                               parsed.error.to_dict())
        action = parsed.action
        if isinstance(action, Answer):
            return Observation("", True, "answer", action.to_dict(), done=True)
        try:
            question = VideoFields.from_extra_info(extra_info)
        except ValueError as error:
            logger.error("trajectory %s: %s", trajectory_id, error)
            return self._failure(f"this question's data is broken ({error})", action)
        source = self.settings.for_source(data_source)
        with self._lock:
            read_leaves = frozenset(self._read_leaves.get(trajectory_id, ()))
        outcome = serve_call(action, question.width, read_leaves, lambda: self._perform(action, question, source))
        if outcome.outcome == REFUSED:
            return Observation(prompts.error_observation(outcome.reason, show_forms=False), False, "invalid",
                               action.to_dict())
        if outcome.outcome == FAILED:
            logger.error("trajectory %s: %s failed: %s", trajectory_id, action.render()[:200], outcome.reason)
            return self._failure(outcome.reason, action)
        if outcome.unlocks is not None:
            self._remember(trajectory_id, outcome.unlocks)
        return Observation(outcome.reply, True, "video_qa" if isinstance(action, VideoQA) else "caption",
                           action.to_dict())

    def end(self, trajectory_id: str) -> None:
        """Forget a finished trajectory's state."""
        with self._lock:
            self._read_leaves.pop(trajectory_id, None)

    def has_state(self, trajectory_id: str) -> bool:
        """Whether trajectory `trajectory_id` has state (it read at least one low caption)."""
        with self._lock:
            return trajectory_id in self._read_leaves

    def active_trajectories(self) -> list[str]:
        """The trajectories that hold state."""
        with self._lock:
            return list(self._read_leaves)

    def tree_for(self, source: SourceSettings, question: VideoFields) -> CaptionTree:
        """The cached caption tree of a question's video; CaptionTreeError if missing or of another width."""
        tree = self.trees.get(caption_path(source.caption_dir, question.video_uid))
        if tree.width != question.width:
            raise CaptionTreeError(f"{tree.source}: the file's width is {tree.width} but extra_info.width is "
                                   f"{question.width}; the caption file is authoritative, fix the dataset")
        return tree

    def _failure(self, reason: str, action: GetCaption | VideoQA) -> Observation:
        """A valid-looking action the tool could not serve."""
        return Observation(prompts.tool_failure_observation(reason), False, "tool_error", action.to_dict())

    def _remember(self, trajectory_id: str, leaf: tuple[int, ...]) -> None:
        """Remember that trajectory `trajectory_id` read the caption of `leaf`, so video_qa may ask about it."""
        with self._lock:
            self._read_leaves.setdefault(trajectory_id, set()).add(leaf)
            self._read_leaves.move_to_end(trajectory_id)
            # A trajectory that never ends must not grow the server without bound.
            while len(self._read_leaves) > self.settings.max_trajectories:
                dropped, _ = self._read_leaves.popitem(last=False)
                logger.warning("dropped the state of trajectory %s: over %d live trajectories",
                               dropped, self.settings.max_trajectories)

    def _perform(self, action: GetCaption | VideoQA, question: VideoFields, source: SourceSettings) -> str:
        """Carry out a call the serve rule lets through: its observation text, or ToolFailure saying why not."""
        try:
            tree = self.tree_for(source, question)
        except CaptionTreeError as error:
            raise ToolFailure(f"the caption tree of video {question.video_uid!r} is unavailable ({error})") from error
        if isinstance(action, GetCaption):
            return prompts.caption_observation(action.ids, tree.width, question.duration, tree.caption(action.ids))
        start, end = geometry.time_range(action.ids, tree.width, question.duration)
        try:
            video = self.video_path(source, question.video_uid)
            times = frames.leaf_timestamps(start, end, self.settings.frames_per_query)
            urls = self.leaf_images(video, times)
            answer = self.client_for(source.vlm).ask(prompts.vlm_question(action.query, start, end), list(urls))
        except (frames.FrameError, frame_workers.FramePoolError, VLMError, FileNotFoundError) as error:
            raise ToolFailure(str(error)) from error
        return prompts.video_qa_observation(answer)

    def leaf_images(self, video: Path, times: list[float]) -> tuple[str, ...]:
        """The JPEG data URLs of a leaf's frames, from the cache or prepared by a worker; logs the counters."""
        try:
            return self.leaf_frames.get(video, times, self.settings.max_side, self.settings.jpeg_quality)
        finally:
            with self._lock:
                self._video_qa_calls += 1
                calls = self._video_qa_calls
            if calls % STATS_EVERY == 0:
                self._log_frame_stats(calls)

    def _log_frame_stats(self, calls: int) -> None:
        """One INFO line of the frame cache's and the worker pool's counters."""
        pool = self.frame_pool.stats() if self.frame_pool is not None else None
        logger.info(leaf_frames.summary(self.leaf_frames.stats(), calls, pool))

    def video_path(self, source: SourceSettings, video_uid: str) -> Path:
        """The video file of `video_uid` in the source's video folder; FileNotFoundError naming what was tried."""
        return frames.find_video(source.video_dir, video_uid, self.settings.video_extensions)

    def client_for(self, endpoint: VLMEndpoint) -> VLMClient:
        """One shared client per VLM endpoint, so its concurrency cap holds across trajectories."""
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None:
                client = self._clients[endpoint] = self._client_factory(endpoint)
            return client
