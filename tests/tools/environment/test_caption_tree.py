"""Caption files: parsing, validation errors that name file, level and index, the LRU cache, safe file names."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tools.environment import geometry
from tools.environment.caption_tree import CaptionTree, CaptionTreeError, TreeCache, caption_path, load_caption_tree
from tools.environment.geometry import GeometryError

LEVELS = ("high", "medium", "low")


def tree_dict(width: int, summary: bool = False, tag: str = "") -> dict:
    """A valid caption-file dict of width `width`: captions name their level and ids, e.g. 'medium (2, 3)'."""
    levels = []
    for level, name in enumerate(LEVELS, start=1):
        count = geometry.level_size(width, level)
        levels.append([
            {"caption": f"{tag}{name} {geometry.format_ids(geometry.ids_of(i, level, width))}",
             "frame_time": [float(i), i + 0.5, i + 0.5]}
            for i in range(count)
        ])
    if summary:
        levels.insert(0, [{"caption": f"{tag}summary", "frame_time": [0.0, 1.0]}])
    return {"width": width, "captions": levels}


def write_tree(path: Path, data: object) -> Path:
    """Write `data` as JSON to `path` and return the path."""
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("width", [1, 3, 4, 5])
@pytest.mark.parametrize("summary", [False, True], ids=["3-levels", "4-levels"])
def test_load_valid_tree(tmp_path: Path, width: int, summary: bool) -> None:
    """A valid file loads; every id's caption is the node at its tools/environment/README.md index."""
    path = write_tree(tmp_path / "video.json", tree_dict(width, summary=summary))
    tree = load_caption_tree(path)
    assert tree.width == width
    assert tree.source == str(path)
    assert tree.summary == (("summary",) if summary else ())
    assert [len(level) for level in tree.levels] == [width, width**2, width**3]
    assert tree.high_captions() == tuple(f"high ({h})" for h in range(1, width + 1))
    for h in range(1, width + 1):
        for m in range(1, width + 1):
            assert tree.caption((h, m)) == f"medium ({h}, {m})"
            for low in range(1, width + 1):
                assert tree.caption((h, m, low)) == f"low ({h}, {m}, {low})"
    assert tree.frame_times[2][width**3 - 1] == (width**3 - 1.0, width**3 - 0.5, width**3 - 0.5)


@pytest.mark.parametrize("ids", [(0, 1), (1, 5), (1, 2, 5), (), (1, 1, 1, 1)],
                         ids=["h-zero", "m-over", "l-over", "empty", "four-ids"])
def test_caption_rejects_bad_ids_with_geometry_error(ids: tuple[int, ...]) -> None:
    """Out-of-range ids and ids of the wrong length raise GeometryError, never IndexError."""
    tree = CaptionTree("mem", 4, (("h",) * 4, ("m",) * 16, ("l",) * 64), ((), (), ()))
    with pytest.raises(GeometryError):
        tree.caption(ids)


def _set(level: int, index: int, key: str, value: object) -> Callable[[dict], None]:
    """A mutation that sets `captions[level][index][key] = value`."""
    def mutate(data: dict) -> None:
        """Set `captions[level][index][key]` to `value` in `data`."""
        data["captions"][level][index][key] = value
    return mutate


def _delete_key(level: int, index: int, key: str) -> Callable[[dict], None]:
    """A mutation that deletes `captions[level][index][key]`."""
    def mutate(data: dict) -> None:
        """Delete `captions[level][index][key]` from `data`."""
        del data["captions"][level][index][key]
    return mutate


def _replace_node(level: int, index: int, node: object) -> Callable[[dict], None]:
    """A mutation that replaces node `captions[level][index]`."""
    def mutate(data: dict) -> None:
        """Replace node `captions[level][index]` of `data` with `node`."""
        data["captions"][level][index] = node
    return mutate


def _drop_node(level: int) -> Callable[[dict], None]:
    """A mutation that removes the last node of `captions[level]`."""
    def mutate(data: dict) -> None:
        """Remove the last node of `captions[level]` in `data`."""
        data["captions"][level].pop()
    return mutate


def _set_top(key: str, value: object) -> Callable[[dict], None]:
    """A mutation that sets a top-level key."""
    def mutate(data: dict) -> None:
        """Set the top-level `key` of `data` to `value`."""
        data[key] = value
    return mutate


def _levels(count: int) -> Callable[[dict], None]:
    """A mutation that leaves `count` caption levels."""
    def mutate(data: dict) -> None:
        """Give `data` exactly `count` caption levels, repeating the existing ones where needed."""
        data["captions"] = (data["captions"] * 2)[:count]
    return mutate


MALFORMED = [
    ("medium-too-short", False, _drop_node(1), ("'medium'", "captions[1]", "expected 16 nodes", "got 15")),
    ("low-too-short", False, _drop_node(2), ("'low'", "captions[2]", "expected 64 nodes", "got 63")),
    ("width-mismatch", False, _set_top("width", 3), ("'high'", "captions[0]", "expected 3 nodes", "got 4")),
    ("missing-caption", False, _delete_key(2, 5, "caption"), ("'low'", "captions[2]", "index 5", "'caption'")),
    ("empty-caption", False, _set(1, 3, "caption", "  "), ("'medium'", "captions[1]", "index 3", "non-empty")),
    ("caption-not-str", False, _set(0, 1, "caption", 7), ("'high'", "captions[0]", "index 1", "'caption'")),
    ("frame-time-not-list", False, _set(0, 2, "frame_time", "0-5"), ("'high'", "index 2", "'frame_time'")),
    ("frame-time-has-str", False, _set(1, 4, "frame_time", [1.0, "2"]), ("'medium'", "index 4", "'frame_time'")),
    ("frame-time-has-bool", False, _set(1, 4, "frame_time", [True]), ("'medium'", "index 4", "'frame_time'")),
    ("frame-time-decreasing", False, _set(2, 7, "frame_time", [3.0, 2.0]), ("'low'", "index 7", "non-decreasing")),
    ("node-not-object", False, _replace_node(1, 0, "text"), ("'medium'", "index 0", "got str")),
    ("width-str", False, _set_top("width", "4"), ("'width'", "positive integer", "'4'")),
    ("width-float", False, _set_top("width", 4.0), ("'width'", "positive integer", "4.0")),
    ("width-bool", False, _set_top("width", True), ("'width'", "positive integer", "True")),
    ("width-zero", False, _set_top("width", 0), ("'width'", "positive integer")),
    ("width-missing", False, lambda data: data.pop("width"), ("'width'", "None")),
    ("two-levels", False, _levels(2), ("'captions'", "got 2")),
    ("five-levels", False, _levels(5), ("'captions'", "got 5")),
    ("captions-missing", False, lambda data: data.pop("captions"), ("'captions'", "got NoneType")),
    ("summary-empty-caption", True, _set(0, 0, "caption", ""), ("'summary'", "captions[0]", "index 0")),
    ("summary-level-empty", True, lambda data: data["captions"].__setitem__(0, []), ("'summary'", "captions[0]")),
    ("4-levels-medium-bad", True, _set(2, 9, "caption", ""), ("'medium'", "captions[2]", "index 9")),
    ("4-levels-low-too-short", True, _drop_node(3), ("'low'", "captions[3]", "got 63")),
]


@pytest.mark.parametrize(("summary", "mutate", "phrases"), [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_malformed_tree_error_names_file_level_and_index(tmp_path: Path, summary: bool,
                                                         mutate: Callable[[dict], None],
                                                         phrases: tuple[str, ...]) -> None:
    """Each malformed file raises CaptionTreeError naming the file path and, where relevant, level and index."""
    data = tree_dict(4, summary=summary)
    mutate(data)
    path = write_tree(tmp_path / "bad_video.json", data)
    with pytest.raises(CaptionTreeError) as info:
        load_caption_tree(path)
    message = str(info.value)
    assert str(path) in message
    for phrase in phrases:
        assert phrase in message


@pytest.mark.parametrize(("content", "phrase"), [
    ("{not json", "not valid JSON"),
    ("", "not valid JSON"),
    (None, "not found"),
    ("[1, 2, 3]", "expected a JSON object"),
    ('"a string"', "expected a JSON object"),
    (b'{"width": 4, "captions": "\xff\xfe"}', "not valid UTF-8 (byte 26); expected a UTF-8 JSON object"),
    ("[" * 100_000 + "]" * 100_000, "nested too deep to read; expected a UTF-8 JSON object"),
], ids=["not-json", "empty-file", "missing-file", "top-level-list", "top-level-string", "latin-1-bytes",
        "nested-too-deep"])
def test_unreadable_file_error_names_the_path(tmp_path: Path, content: str | bytes | None, phrase: str) -> None:
    """Missing, non-UTF-8, invalid, too deeply nested and non-object JSON raise CaptionTreeError naming the path."""
    path = tmp_path / "video.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(CaptionTreeError) as info:
        load_caption_tree(path)
    assert str(path) in str(info.value)
    assert phrase in str(info.value)


def test_directory_instead_of_file_is_a_caption_tree_error(tmp_path: Path) -> None:
    """A path that is a directory raises CaptionTreeError naming it, not a bare OSError."""
    with pytest.raises(CaptionTreeError, match="cannot read caption file") as info:
        load_caption_tree(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_cache_returns_the_same_object_without_rereading(tmp_path: Path) -> None:
    """The second get returns the identical tree even after the file was deleted."""
    path = write_tree(tmp_path / "a.json", tree_dict(4))
    cache = TreeCache()
    first = cache.get(path)
    path.unlink()
    assert cache.get(path) is first
    assert cache.get(str(path)) is first
    assert len(cache) == 1


def test_cache_does_not_see_file_changes_after_first_get(tmp_path: Path) -> None:
    """A file rewritten after the first get is not re-read while its tree is cached."""
    path = write_tree(tmp_path / "a.json", tree_dict(4, tag="old "))
    cache = TreeCache()
    first = cache.get(path)
    write_tree(path, tree_dict(4, tag="new "))
    assert cache.get(path) is first
    assert cache.get(path).caption((1, 1)) == "old medium (1, 1)"


def test_cache_is_bounded_and_evicts_the_least_recently_used(tmp_path: Path) -> None:
    """With max_trees=2 the least recently used of three trees is evicted and re-read on its next get."""
    paths = {name: write_tree(tmp_path / f"{name}.json", tree_dict(3, tag=f"{name} old ")) for name in "abc"}
    cache = TreeCache(max_trees=2)
    tree_a = cache.get(paths["a"])
    tree_b = cache.get(paths["b"])
    assert cache.get(paths["a"]) is tree_a  # a is now more recent than b
    cache.get(paths["c"])  # evicts b
    assert len(cache) == 2
    for name in "abc":
        write_tree(paths[name], tree_dict(3, tag=f"{name} new "))
    assert cache.get(paths["a"]) is tree_a
    reread = cache.get(paths["b"])  # evicts c
    assert reread is not tree_b
    assert reread.caption((1, 1)) == "b new medium (1, 1)"
    assert len(cache) == 2
    assert cache.get(paths["c"]).caption((1, 1)) == "c new medium (1, 1)"


@pytest.mark.parametrize("max_trees", [0, -1])
def test_cache_rejects_non_positive_size(max_trees: int) -> None:
    """A cache must hold at least one tree."""
    with pytest.raises(ValueError, match="max_trees"):
        TreeCache(max_trees=max_trees)


def test_cache_errors_are_not_cached(tmp_path: Path) -> None:
    """A missing file raises each time, and loads once it appears."""
    path = tmp_path / "late.json"
    cache = TreeCache()
    with pytest.raises(CaptionTreeError, match="not found"):
        cache.get(path)
    assert len(cache) == 0
    write_tree(path, tree_dict(3))
    assert cache.get(path).width == 3


@pytest.mark.parametrize("max_trees", [2, 8], ids=["evicting", "roomy"])
def test_cache_is_thread_safe(tmp_path: Path, max_trees: int) -> None:
    """16 threads hammering 4 files always get the right tree, the cache stays bounded and nothing raises."""
    paths = [write_tree(tmp_path / f"v{i}.json", tree_dict(3, tag=f"v{i} ")) for i in range(4)]
    cache = TreeCache(max_trees=max_trees)
    start = threading.Barrier(16)

    def hammer(seed: int) -> int:
        rng = random.Random(seed)
        start.wait()
        for _ in range(300):
            i = rng.randrange(4)
            tree = cache.get(paths[i])
            assert tree.source == str(paths[i])
            assert tree.caption((2, 3, 1)) == f"v{i} low (2, 3, 1)"
            assert len(cache) <= max_trees
        return seed

    with ThreadPoolExecutor(max_workers=16) as pool:
        assert sorted(pool.map(hammer, range(16))) == list(range(16))
    assert len(cache) == min(4, max_trees)


@pytest.mark.parametrize("video_uid", ["../x", "a/b", "/etc/passwd", "..", ".", ""],
                         ids=["parent", "subdir", "absolute", "dotdot", "dot", "empty"])
def test_caption_path_rejects_unsafe_video_uids(tmp_path: Path, video_uid: str) -> None:
    """A video_uid that could leave the caption directory raises CaptionTreeError naming it."""
    with pytest.raises(CaptionTreeError, match="cannot name a caption file"):
        caption_path(tmp_path, video_uid)


@pytest.mark.parametrize("video_uid", ["vid_01", "yt-AbC.123", "..hidden"])
def test_caption_path_for_plain_uids(tmp_path: Path, video_uid: str) -> None:
    """A plain video_uid maps to <caption_dir>/<video_uid>.json inside the directory."""
    path = caption_path(tmp_path, video_uid)
    assert path == tmp_path / f"{video_uid}.json"
    assert path.parent == tmp_path


@pytest.mark.parametrize(("content", "phrase"), [
    (b'{"width": 4, "captions": "caf\xe9"}', "not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deep"),
], ids=["latin-1-bytes", "nested-too-deep"])
def test_the_tool_explains_an_unreadable_caption_file(tmp_path: Path, content: bytes, phrase: str) -> None:
    """The navigation tool answers a call on an unreadable tree with a tool error naming the file, not a crash."""
    from tools.environment.navigation import NavigationEnv
    from tools.environment.tool_settings import settings_from_dict

    (tmp_path / "video.json").write_bytes(content)
    env = NavigationEnv(settings_from_dict({"default": {"caption_dir": str(tmp_path), "video_dir": str(tmp_path),
                                                        "vlm": {"base_url": "http://127.0.0.1:9/v1", "model": "m"}}}))
    observation = env.step("t", "<think>look</think><tool>get_caption((1, 1))</tool>",
                           {"video_uid": "video", "duration": 600.0, "width": 4})
    assert not observation.valid and observation.kind == "tool_error"
    assert f"{tmp_path / 'video.json'}: " in observation.text and phrase in observation.text
    assert "internal error" not in observation.text
