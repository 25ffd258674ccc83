"""A video's hierarchical caption tree: loaded from its JSON file, validated, cached in memory.

File format (tools/environment/README.md): `{"width": w, "captions": [high, medium, low]}`, optionally with a fourth,
most-coarse level first; each level is a flat list of `{"caption": str, "frame_time": [t0, ...]}`
of sizes w, w², w³ (ids map to positions through `tools.environment.geometry`).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.environment import geometry

DEFAULT_CACHE_SIZE = 512


class CaptionTreeError(ValueError):
    """A caption file that is missing or does not hold a valid tree; the message names file, level and index."""


@dataclass(frozen=True)
class CaptionTree:
    """The captions of one video: `levels[0]` high, `[1]` medium, `[2]` low, plus an optional summary level."""

    source: str
    width: int
    levels: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]
    frame_times: tuple[tuple[tuple[float, ...], ...], ...]
    summary: tuple[str, ...] = ()
    # The video's duration in seconds when the file records it (files built by the captions stage do).
    duration: float | None = None

    def caption(self, ids: tuple[int, ...]) -> str:
        """The caption of segment `ids` (1 to 3 numbers); GeometryError if they are out of range."""
        index = geometry.index_of(ids, self.width)  # first, so 0 or 4+ numbers raise GeometryError too
        return self.levels[geometry.level_of(ids) - 1][index]

    def high_captions(self) -> tuple[str, ...]:
        """The `width` high-level captions, in order."""
        return self.levels[0]


def _where(source: str, level: int | None = None, index: int | None = None, levels: int = 3) -> str:
    """A location inside a caption file for error messages."""
    text = source
    if level is not None:
        name = geometry.LEVEL_NAMES[level] if level >= 0 else "summary"
        text += f": level {name!r} (captions[{level + levels - 3}])"
    if index is not None:
        text += f" index {index}"
    return text


def _node(source: str, level: int, index: int, node: object, levels: int) -> tuple[str, tuple[float, ...]]:
    """Validate one `{"caption", "frame_time"}` node and return its caption and frame times."""
    where = _where(source, level, index, levels)
    if not isinstance(node, dict):
        raise CaptionTreeError(f"{where}: expected an object with 'caption' and 'frame_time', "
                               f"got {type(node).__name__}")
    caption = node.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise CaptionTreeError(f"{where}: 'caption' must be a non-empty string, got {caption!r:.60}")
    times = node.get("frame_time")
    if not isinstance(times, list) or not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
        raise CaptionTreeError(f"{where}: 'frame_time' must be a list of seconds, got {times!r:.60}")
    if any(later < earlier for earlier, later in zip(times, times[1:], strict=False)):
        raise CaptionTreeError(f"{where}: 'frame_time' must be non-decreasing, got {times!r:.60}")
    return caption, tuple(float(t) for t in times)


def parse_caption_tree(data: object, source: str) -> CaptionTree:
    """Validate decoded caption JSON `data` (from `source`, named in errors) into a CaptionTree."""
    if not isinstance(data, dict):
        raise CaptionTreeError(f"{source}: expected a JSON object with 'width' and 'captions', "
                               f"got {type(data).__name__}")
    width = data.get("width")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise CaptionTreeError(f"{source}: 'width' must be a positive integer, got {width!r}")
    captions = data.get("captions")
    if not isinstance(captions, list) or len(captions) not in (3, 4):
        count = len(captions) if isinstance(captions, list) else type(captions).__name__
        raise CaptionTreeError(f"{source}: 'captions' must be a list of 3 levels (high, medium, low) "
                               f"or 4 (a summary level first), got {count}")
    levels = len(captions)
    summary: tuple[str, ...] = ()
    if levels == 4:
        if not isinstance(captions[0], list) or not captions[0]:
            raise CaptionTreeError(f"{_where(source, -1, levels=4)}: expected a non-empty list of nodes")
        summary = tuple(_node(source, -1, i, node, 4)[0] for i, node in enumerate(captions[0]))
    texts, times = [], []
    for level, nodes in enumerate(captions[levels - 3:]):
        expected = geometry.level_size(width, level + 1)
        if not isinstance(nodes, list) or len(nodes) != expected:
            got = len(nodes) if isinstance(nodes, list) else type(nodes).__name__
            raise CaptionTreeError(f"{_where(source, level, levels=levels)}: expected {expected} nodes "
                                   f"(width {width} ** {level + 1}), got {got}")
        parsed = [_node(source, level, i, node, levels) for i, node in enumerate(nodes)]
        texts.append(tuple(caption for caption, _ in parsed))
        times.append(tuple(frame_time for _, frame_time in parsed))
    duration = data.get("duration")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                 or not duration > 0):
        raise CaptionTreeError(f"{source}: 'duration' must be a positive number of seconds, got {duration!r}")
    return CaptionTree(source, width, tuple(texts), tuple(times), summary,
                       None if duration is None else float(duration))


def load_caption_tree(path: str | Path) -> CaptionTree:
    """Read and validate one caption file (uncached; tools go through `TreeCache`)."""
    path = Path(path)
    expected = "expected a UTF-8 JSON object with 'width' and 'captions'"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaptionTreeError(f"{path}: caption file not found") from None
    except OSError as error:
        raise CaptionTreeError(f"{path}: cannot read caption file: {error}") from None
    except UnicodeDecodeError as error:
        raise CaptionTreeError(f"{path}: not valid UTF-8 (byte {error.start}); {expected}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CaptionTreeError(f"{path}: not valid JSON: {error}; {expected}") from None
    except RecursionError:
        raise CaptionTreeError(f"{path}: JSON nested too deep to read; {expected}") from None
    return parse_caption_tree(data, str(path))


def tree_data(width: int, duration: float, caption_for: Callable[[geometry.Segment], str]) -> dict:
    """A caption file's JSON for a video of `duration` seconds: every segment captioned by `caption_for`."""
    levels: list[list[dict]] = [[], [], []]
    for segment in geometry.segments(width, duration):
        levels[segment.level - 1].append({"caption": caption_for(segment), "frame_time": [segment.start, segment.end]})
    return {"width": width, "captions": levels}


def caption_path(caption_dir: str | Path, video_uid: str) -> Path:
    """Where the caption file of `video_uid` lives: `<caption_dir>/<video_uid>.json`."""
    if not video_uid or "/" in video_uid or video_uid in (".", ".."):
        raise CaptionTreeError(f"video_uid {video_uid!r} cannot name a caption file in {caption_dir}")
    return Path(caption_dir) / f"{video_uid}.json"


class TreeCache:
    """A bounded, thread-safe LRU of parsed trees keyed by path: a file is read and parsed once."""

    def __init__(self, max_trees: int = DEFAULT_CACHE_SIZE):
        if max_trees < 1:
            raise ValueError(f"max_trees must be at least 1, got {max_trees}")
        self.max_trees = max_trees
        self._trees: OrderedDict[str, CaptionTree] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str | Path) -> CaptionTree:
        """The tree stored at `path`, parsed on first use; CaptionTreeError if it is missing or invalid."""
        key = str(path)
        with self._lock:
            tree = self._trees.get(key)
            if tree is not None:
                self._trees.move_to_end(key)
                return tree
        # Parse outside the lock so one slow file does not stall every other trajectory.
        tree = load_caption_tree(key)
        with self._lock:
            self._trees[key] = tree
            self._trees.move_to_end(key)
            while len(self._trees) > self.max_trees:
                self._trees.popitem(last=False)
        return tree

    def __len__(self) -> int:
        """How many trees are cached."""
        return len(self._trees)
