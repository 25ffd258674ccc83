"""The RL parquet builder and the rl_data stage: rows, the split by video, rejections, formats.

Every parquet file is read back with pandas, as verl reads it: lists come back as numpy arrays and
`extra_info` as a dict. Inputs are built under tmp_path: the demo world (4 videos x 8 CG-Bench
questions with caption trees), and small annotation files and caption trees written per test.
"""

from __future__ import annotations

import copy
import io
import json
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from launch.cli import main as cli_main
from launch.compose import compose_config
from launch.stages.datasets import DatasetConfigError, rl_data_settings
from tests.conftest import dry_run_in_fresh_interpreter, launch
from tests.fixtures.tool_world import caption_tree_data
from tools.builders import rl_data
from tools.builders.annotations import AnnotationError
from tools.builders.rl_data import RLDataSettings, build, split_videos
from tools.demo import world as demo_world
from tools.demo.synthetic_video import encode_test_video
from tools.environment import prompts
from tools.environment.caption_tree import load_caption_tree
from tools.environment.plain_data import plain_data

EXTRA_INFO_KEYS = {"index", "split", "data_source", "question_id", "video_uid", "question", "options",
                   "clue_intervals", "width", "duration", "fps"}
CHOICES = ["a dog", "a red car", "a kite", "a lamp"]
# The small videos of the hand-written cases: width 3 (27 leaves of about 3 s) over 80 s.
WIDTH, DURATION = 3, 80.0
# The recipe=tiny turn budget, stated in the system prompt the stage writes.
TINY_MAX_TURNS = 15


def settings(annotations: Path, caption_dir: Path, **overrides: object) -> RLDataSettings:
    """Builder settings over `annotations` and `caption_dir` (CG-Bench, all rows to train unless overridden)."""
    values = {"annotations": str(annotations), "format": "cgbench", "data_source": "demo",
              "caption_dir": str(caption_dir), "video_dir": None, "max_turns": 7, "val_fraction": 0.0, "seed": 0}
    values.update(overrides)
    return RLDataSettings.from_dict(values)


def read_split(output: Path, split: str) -> pd.DataFrame:
    """One written split, read as verl reads it."""
    return pd.read_parquet(output / f"{split}.parquet")


def rows_by_question(output: Path) -> dict[str, tuple[str, dict]]:
    """Every written row by question id, with the file (split) it was read from."""
    found = {}
    for split in rl_data.SPLITS:
        if (output / f"{split}.parquet").exists():
            for row in read_split(output, split).to_dict(orient="records"):
                found[row["extra_info"]["question_id"]] = (split, row)
    return found


def rejected(output: Path) -> list[dict]:
    """The entries of rejected.jsonl."""
    return [json.loads(line) for line in (output / "rejected.jsonl").read_text().splitlines()]


def write_json(path: Path, data: object) -> Path:
    """Write `data` as JSON to `path` and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_caption(caption_dir: Path, uid: str, width: int = WIDTH, duration: float = DURATION,
                  recorded: float | None = None) -> Path:
    """A valid caption file for `uid`; `recorded` is the duration the file records (none when None)."""
    data = caption_tree_data(width, duration, lambda ids: f"{uid} segment {ids}")
    return write_json(caption_dir / f"{uid}.json", data if recorded is None else {"duration": recorded, **data})


def cg_record(uid: str, qid: str, **overrides: object) -> dict:
    """One CG-Bench annotation row about video `uid`."""
    record = {"qid": qid, "video_uid": uid, "question": f"What is picked up in {uid}?", "choices": list(CHOICES),
              "right_answer": "B", "clue_intervals": [[10.0, 20.0]], "duration": DURATION, "fps": 30.0}
    record.update(overrides)
    return {key: value for key, value in record.items() if value is not None}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo world: captions/, videos/, annotations.json (CG-Bench style)."""
    return demo_world.ensure(tmp_path_factory.mktemp("w") / "world")


@pytest.fixture(scope="module")
def demo_built(demo: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The demo world's parquet (a quarter of the videos in val) and its report."""
    output = tmp_path_factory.mktemp("demo_rl") / "out"
    report = build(settings(demo / "annotations.json", demo / "captions", val_fraction=0.25), output)
    return output, report


@pytest.fixture(scope="module")
def many_videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """20 videos with caption trees, two questions each: (annotations file, caption folder)."""
    root = tmp_path_factory.mktemp("many")
    records = []
    for index in range(20):
        uid = f"video_{index:02d}"
        write_caption(root / "captions", uid)
        records += [cg_record(uid, f"{uid}-a"), cg_record(uid, f"{uid}-b", right_answer="D")]
    return write_json(root / "annotations.json", records), root / "captions"


# Rows.


@pytest.mark.parametrize("position", [0, 13, 31])
def test_demo_row_holds_the_prompt_reward_model_and_extra_info(demo: Path, demo_built: tuple[Path, dict],
                                                               position: int) -> None:
    """A demo question's row, read back with pandas, holds the prompt builder's texts and the contract's fields."""
    output, _ = demo_built
    question = json.loads((demo / "annotations.json").read_text())[position]
    split, row = rows_by_question(output)[question["qid"]]
    caption_file = demo / "captions" / f"{question['video_uid']}.json"
    tree = load_caption_tree(caption_file)
    assert row["data_source"] == "demo" and row["ability"] == rl_data.ABILITY
    assert isinstance(row["prompt"], np.ndarray)
    first_user = prompts.first_user_turn(question["question"], question["choices"], question["duration"], tree)
    assert list(row["prompt"]) == [{"role": "system", "content": prompts.system_prompt(7)},
                                   {"role": "user", "content": first_user}]
    assert row["reward_model"] == {"style": "rule", "ground_truth": question["right_answer"]}
    info = row["extra_info"]
    assert set(info) == EXTRA_INFO_KEYS
    assert isinstance(info["options"], np.ndarray) and isinstance(info["clue_intervals"], np.ndarray)
    assert list(info["options"]) == question["choices"]
    assert [list(interval) for interval in info["clue_intervals"]] == question["clue_intervals"]
    assert info["width"] == json.loads(caption_file.read_text())["width"] == tree.width
    expected = {"split": split, "data_source": "demo", "question_id": question["qid"],
                "video_uid": question["video_uid"], "question": question["question"],
                "duration": question["duration"], "fps": question["fps"]}
    assert {key: info[key] for key in expected} == expected


def test_demo_report_counts_every_question(demo_built: tuple[Path, dict]) -> None:
    """32 questions, none rejected: the report, rejected.jsonl and the files agree."""
    output, report = demo_built
    assert report["rows"] == {"train": len(read_split(output, "train")), "val": len(read_split(output, "val"))}
    assert sum(report["rows"].values()) == report["with_clue_intervals"] == 32
    assert report["videos"] == {"train": 3, "val": 1}
    assert report["rejected"] == 0 and rejected(output) == []
    assert json.loads((output / "report.json").read_text()) == report


# The split by video.


@pytest.mark.parametrize(("val_fraction", "seed", "val_videos"), [(0.25, 0, 5), (0.5, 1, 10), (0.1, 7, 2),
                                                                  (0.01, 3, 1), (0.99, 3, 19)])
def test_split_keeps_each_video_on_one_side(many_videos: tuple[Path, Path], tmp_path: Path, val_fraction: float,
                                            seed: int, val_videos: int) -> None:
    """No video in both files; the val share is rounded, at least one and never all; index runs 0..n-1 per file."""
    annotations, captions = many_videos
    report = build(settings(annotations, captions, val_fraction=val_fraction, seed=seed), tmp_path)
    videos = {}
    for split in rl_data.SPLITS:
        frame = read_split(tmp_path, split)
        infos = list(frame["extra_info"])
        assert [info["index"] for info in infos] == list(range(len(frame)))
        assert {info["split"] for info in infos} == {split}
        videos[split] = {info["video_uid"] for info in infos}
        assert report["rows"][split] == len(frame) == 2 * len(videos[split])
    assert not videos["train"] & videos["val"]
    assert len(videos["train"] | videos["val"]) == 20 and len(videos["val"]) == val_videos


@pytest.mark.parametrize(("seed_a", "seed_b", "same"), [(5, 5, True), (5, 6, False), (0, 1, False)])
def test_split_is_seeded(many_videos: tuple[Path, Path], tmp_path: Path, seed_a: int, seed_b: int,
                         same: bool) -> None:
    """The same seed gives the same validation videos; another seed another set."""
    annotations, captions = many_videos

    def val_videos(seed: int, folder: str) -> set[str]:
        """The validation videos of a build with `seed`."""
        build(settings(annotations, captions, val_fraction=0.25, seed=seed), tmp_path / folder)
        return {info["video_uid"] for info in read_split(tmp_path / folder, "val")["extra_info"]}

    assert (val_videos(seed_a, "a") == val_videos(seed_b, "b")) is same


@pytest.mark.parametrize(("val_fraction", "written"), [(0.0, {"train"}), (1.0, {"val"})])
def test_all_train_or_all_val_writes_one_file(many_videos: tuple[Path, Path], tmp_path: Path, val_fraction: float,
                                              written: set[str]) -> None:
    """val_fraction 0 writes only train.parquet, 1 only val.parquet (a benchmark), with every row."""
    annotations, captions = many_videos
    report = build(settings(annotations, captions, val_fraction=val_fraction), tmp_path)
    assert {path.stem for path in tmp_path.glob("*.parquet")} == written
    (split,) = written
    assert len(read_split(tmp_path, split)) == report["rows"][split] == 40


@pytest.mark.parametrize(
    ("uids", "val_fraction", "count"),
    [
        ([f"v{i}" for i in range(10)], 0.1, 1),
        ([f"v{i}" for i in range(10)], 0.26, 3),
        ([f"v{i}" for i in range(10)], 0.01, 1),
        (["a", "b"], 0.9, 1),
        ([f"v{i}" for i in range(10)], 0.0, 0),
        ([f"v{i}" for i in range(10)], 1.0, 10),
        (["a", "a", "a", "b", "c", "d"], 0.5, 2),
    ],
)
def test_split_videos_counts(uids: list[str], val_fraction: float, count: int) -> None:
    """split_videos picks round(fraction x videos) distinct videos, at least one and not all unless 0 or 1."""
    chosen = split_videos(uids, val_fraction, seed=3)
    assert len(chosen) == count and chosen <= set(uids)
    assert split_videos(list(reversed(uids)), val_fraction, seed=3) == chosen


# Rejections: the bad question is reported and skipped, the others are written.


def _missing(captions: Path, uid: str) -> None:
    """No caption file."""


def _low_node_missing(captions: Path, uid: str) -> None:
    """A caption file with one low node too few."""
    data = caption_tree_data(WIDTH, DURATION)
    data["captions"][2].pop()
    write_json(captions / f"{uid}.json", data)


def _not_json(captions: Path, uid: str) -> None:
    """A caption file that is not JSON."""
    (captions / f"{uid}.json").write_text("{")


def _not_utf8(captions: Path, uid: str) -> None:
    """A caption file in Latin-1, not UTF-8."""
    (captions / f"{uid}.json").write_bytes('{"width": 3, "captions": "caf\u00e9"}'.encode("latin-1"))


def _nested_too_deep(captions: Path, uid: str) -> None:
    """A caption file whose JSON nests deeper than the parser goes."""
    (captions / f"{uid}.json").write_text("[" * 100_000 + "]" * 100_000)


def _recorded(duration: float | None):
    """A valid caption file that records `duration` (none when None)."""
    return lambda captions, uid: write_caption(captions, uid, recorded=duration)


def _garbage_video(videos: Path, uid: str) -> None:
    """A file named like the video that is not one."""
    (videos / f"{uid}.mp4").write_bytes(b"not a video at all")


REJECTIONS = {
    # name: (caption writer, overrides of the bad row, video writer or None for no video_dir, reason, detail parts)
    "missing_caption": (_missing, {}, None, "caption_tree", ["{captions}/bad.json", "caption file not found"]),
    "low_node_missing": (_low_node_missing, {}, None, "caption_tree",
                         ["{captions}/bad.json", "level 'low'", "expected 27 nodes (width 3 ** 3), got 26"]),
    "caption_not_json": (_not_json, {}, None, "caption_tree", ["{captions}/bad.json", "not valid JSON"]),
    "caption_not_utf8": (_not_utf8, {}, None, "caption_tree", ["{captions}/bad.json", "not valid UTF-8"]),
    "caption_nested_too_deep": (_nested_too_deep, {}, None, "caption_tree",
                                ["{captions}/bad.json", "nested too deep"]),
    # The reward's own reading of the row refuses it (compute_score would raise mid-training).
    "clues_after_the_video": (_recorded(None), {"clue_intervals": [[900.0, 950.0]]}, None, "reward_input",
                              ["{annotations} row 2", "the reward would refuse", "clue_intervals",
                               "no interval overlaps the video [0, 80.0]s"]),
    "duration_mismatch": (_recorded(85.0), {}, None, "duration_mismatch",
                          ["{annotations} row 2", "{captions}/bad.json", "85 s", "80 s"]),
    "no_duration": (_recorded(None), {"duration": None}, None, "no_duration",
                    ["{annotations} row 2", "'bad'", "set rl_data.video_dir"]),
    "no_video_in_video_dir": (_recorded(None), {"duration": None}, _missing, "no_duration",
                              ["{annotations} row 2", "set rl_data.video_dir"]),
    "unreadable_video": (_recorded(None), {"duration": None}, _garbage_video, "no_duration",
                         ["{annotations} row 2", "{videos}/bad.mp4"]),
    "bad_answer": (_recorded(None), {"right_answer": "Z"}, None, "bad_answer",
                   ["annotations.json row 2", "right_answer='Z'"]),
    "bad_clue_intervals": (_recorded(None), {"clue_intervals": [[20.0, 10.0]]}, None, "bad_clue_intervals",
                           ["annotations.json row 2", "clue_intervals"]),
    "one_option": (_recorded(None), {"choices": ["a dog"]}, None, "bad_options", ["annotations.json row 2", "choices"]),
    "bad_duration": (_recorded(None), {"duration": -3}, None, "bad_duration", ["annotations.json row 2", "duration"]),
}
# Rejected while reading the annotation file, before any caption file is opened: no question id.
ANNOTATION_REASONS = {"bad_answer", "bad_clue_intervals", "bad_options", "bad_duration"}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_a_bad_question_is_reported_and_skipped(tmp_path: Path, case: str) -> None:
    """rejected.jsonl names the row, the reason and the file; the report counts it; the good rows are written."""
    caption_writer, overrides, video_writer, reason, parts = REJECTIONS[case]
    captions, videos, output = tmp_path / "captions", tmp_path / "videos", tmp_path / "out"
    captions.mkdir()
    write_caption(captions, "good")
    caption_writer(captions, "bad")
    if video_writer is not None:
        videos.mkdir()
        video_writer(videos, "bad")
    annotations = write_json(tmp_path / "annotations.json", [
        cg_record("good", "q1"), cg_record("bad", "q2", **overrides), cg_record("good", "q3")])
    report = build(settings(annotations, captions, video_dir=str(videos) if video_writer else None), output)
    (entry,) = rejected(output)
    assert entry["row"] == 2 and entry["reason"] == reason
    assert entry["question_id"] == (None if reason in ANNOTATION_REASONS else "q2")
    for part in parts:
        assert part.format(captions=captions, annotations=annotations, videos=videos) in entry["detail"], entry
    assert report["rejected"] == 1 and report["rejected_by_reason"] == {reason: 1}
    assert report["rows"] == {"train": 2, "val": 0}
    assert sorted(rows_by_question(output)) == ["q1", "q3"]


def test_rejections_of_every_kind_in_one_file(tmp_path: Path) -> None:
    """Several bad rows of different kinds are each reported once, in file order, next to the good ones."""
    captions = tmp_path / "captions"
    write_caption(captions, "good")
    write_caption(captions, "long", recorded=120.0)
    records = [cg_record("good", "q1"), cg_record("gone", "q2"), cg_record("good", "q3", right_answer="E"),
               cg_record("long", "q4"), cg_record("good", "q5")]
    report = build(settings(write_json(tmp_path / "a.json", records), captions), tmp_path / "out")
    # Annotation-level rejects come first (found while reading), then the per-question ones.
    assert [(e["row"], e["reason"]) for e in rejected(tmp_path / "out")] == [
        (3, "bad_answer"), (2, "caption_tree"), (4, "duration_mismatch")]
    assert report["rejected_by_reason"] == {"bad_answer": 1, "caption_tree": 1, "duration_mismatch": 1}
    assert sorted(rows_by_question(tmp_path / "out")) == ["q1", "q5"]


def test_every_written_row_is_one_the_reward_scores(tmp_path: Path) -> None:
    """Rows with clues partly outside the video are written (clipped by the reward); compute_score reads each one."""
    from rewards.score import compute_score

    write_caption(tmp_path / "captions", "good")
    records = [cg_record("good", "q1", clue_intervals=[[70.0, 95.0]]), cg_record("good", "q2", clue_intervals=None),
               cg_record("good", "q3", clue_intervals=[[81.0, 90.0]])]
    build(settings(write_json(tmp_path / "a.json", records), tmp_path / "captions"), tmp_path / "out")
    rows = rows_by_question(tmp_path / "out")
    assert sorted(rows) == ["q1", "q2"] and [e["reason"] for e in rejected(tmp_path / "out")] == ["reward_input"]
    for _, row in rows.values():
        score = compute_score(row["data_source"], "<answer>B</answer>", row["reward_model"]["ground_truth"],
                              row["extra_info"])
        assert score["score"] > 0


def test_duplicate_question_ids_are_rejected_after_the_first(tmp_path: Path) -> None:
    """26 rows with 24 question ids give 24 rows; each later copy is rejected as duplicate_id naming the first row."""
    write_caption(tmp_path / "captions", "good")
    records = [cg_record("good", f"q{index}") for index in range(24)]
    records[5:5] = [cg_record("good", "q1")]
    records.append(cg_record("good", "q20"))
    report = build(settings(write_json(tmp_path / "a.json", records), tmp_path / "captions"), tmp_path / "out")
    assert report["rows"]["train"] == 24 and sorted(rows_by_question(tmp_path / "out")) == sorted(
        f"q{index}" for index in range(24))
    assert [(e["row"], e["question_id"], e["reason"]) for e in rejected(tmp_path / "out")] == [
        (6, "q1", "duplicate_id"), (26, "q20", "duplicate_id")]
    assert "appears earlier, on row 2" in rejected(tmp_path / "out")[0]["detail"]


# Where the duration comes from.

DURATION_SOURCES = {
    # name: (annotation duration, duration the caption file records, seconds of the MP4 in video_dir, expected)
    "annotation": (DURATION, None, None, DURATION),
    "caption_file": (None, DURATION, None, DURATION),
    "annotation_within_tolerance": (DURATION, 80.5, None, DURATION),
    "annotation_before_video": (DURATION, None, 40.0, DURATION),
    "caption_file_before_video": (None, DURATION, 40.0, DURATION),
    "probed_from_video": (None, None, DURATION, DURATION),
}


@pytest.mark.parametrize("case", list(DURATION_SOURCES))
def test_duration_source(tmp_path: Path, case: str) -> None:
    """The annotation's duration, else the caption file's, else the video's (probed from the real MP4)."""
    annotated, recorded, video_seconds, expected = DURATION_SOURCES[case]
    captions, videos = tmp_path / "captions", tmp_path / "videos"
    write_caption(captions, "clip", recorded=recorded)
    if video_seconds is not None:
        encode_test_video(videos / "clip.mp4", video_seconds, fps=2, size=(64, 48))
    annotations = write_json(tmp_path / "a.json", [cg_record("clip", "q1", duration=annotated)])
    build(settings(annotations, captions, video_dir=str(videos) if video_seconds else None), tmp_path / "out")
    _, row = rows_by_question(tmp_path / "out")["q1"]
    assert row["extra_info"]["duration"] == pytest.approx(expected, abs=0.5)
    tree = load_caption_tree(captions / "clip.json")
    user = prompts.first_user_turn(row["extra_info"]["question"], CHOICES, row["extra_info"]["duration"], tree)
    assert row["prompt"][1]["content"] == user and "The video lasts 80.0s." in user


# Video-MME and LVBench annotations.

VIDEOMME = [{"videoID": "mme1", "question_id": "001-1", "duration": "short", "question": "Which animal appears?",
             "options": ["A. a cat", "B. a dog", "C. a horse", "D. a bird"], "answer": "C"},
            {"videoID": "mme2", "question_id": "002-1", "duration": "short", "question": "What colour is the car?",
             "options": ["A. red", "B. blue", "C. green", "D. white"], "answer": "A"}]
LVBENCH = [{"key": "lv1", "video_info": {"fps": 25.0, "duration_minutes": 1.3},
            "qa": [{"uid": 11, "question": "Who speaks first?\n(A) the chef\n(B) the child\n(C) the driver\n(D) no one",
                    "answer": "D"},
                   {"uid": 12, "question": "Where is it?\n(A) a kitchen\n(B) a park", "answer": "(B)"}]}]
FORMATS = {
    # format: (file name, content, expected (question_id, video_uid, question, options, answer, fps) per row)
    "videomme": ("mme.json", json.dumps(VIDEOMME), [
        ("001-1", "mme1", "Which animal appears?", ["a cat", "a dog", "a horse", "a bird"], "C", None),
        ("002-1", "mme2", "What colour is the car?", ["red", "blue", "green", "white"], "A", None)]),
    "lvbench": ("lv.jsonl", "\n".join(json.dumps(record) for record in LVBENCH), [
        ("11", "lv1", "Who speaks first?", ["the chef", "the child", "the driver", "no one"], "D", 25.0),
        ("12", "lv1", "Where is it?", ["a kitchen", "a park"], "B", 25.0)]),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_benchmark_formats_give_rows_without_clue_intervals(tmp_path: Path, fmt: str) -> None:
    """Video-MME and LVBench rows: their options and answer letter, no clue intervals, the caption file's duration."""
    name, content, expected = FORMATS[fmt]
    (tmp_path / name).write_text(content)
    for _, uid, *_ in expected:
        write_caption(tmp_path / "captions", uid, recorded=DURATION)
    report = build(settings(tmp_path / name, tmp_path / "captions", format=fmt, data_source=fmt), tmp_path / "out")
    assert report["with_clue_intervals"] == 0 and report["rejected"] == 0
    rows = rows_by_question(tmp_path / "out")
    assert sorted(rows) == sorted(item[0] for item in expected)
    for question_id, uid, question, options, answer, fps in expected:
        _, row = rows[question_id]
        info = row["extra_info"]
        assert row["data_source"] == info["data_source"] == fmt
        assert row["reward_model"] == {"style": "rule", "ground_truth": answer}
        assert (info["video_uid"], info["question"], list(info["options"])) == (uid, question, options)
        assert len(info["clue_intervals"]) == 0 and info["fps"] == fps and info["duration"] == DURATION
        assert prompts.options_block(options) in row["prompt"][1]["content"]


# Nothing half-built.


@pytest.mark.parametrize("existing", ["train.parquet", "val.parquet", "report.json"])
def test_refuses_a_folder_that_holds_a_build(many_videos: tuple[Path, Path], tmp_path: Path, existing: str) -> None:
    """An output folder with any result file is refused before anything is read or written."""
    annotations, captions = many_videos
    (tmp_path / existing).write_text("old")
    with pytest.raises(FileExistsError, match=existing):
        build(settings(annotations, captions, val_fraction=0.5), tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == [existing]
    assert (tmp_path / existing).read_text() == "old"


UNBUILDABLE = {
    # name: (annotation file name, its text, error type, message)
    "every_caption_missing": ("a.json", json.dumps([cg_record("gone", "q1"), cg_record("lost", "q2")]), ValueError,
                              "no question could be built"),
    "every_row_rejected": ("a.json", json.dumps([cg_record("good", "q1", right_answer="Q")]), ValueError,
                           "no question could be built"),
    "empty_file": ("a.jsonl", "", ValueError, "no question could be built"),
    "not_a_list": ("a.json", json.dumps({"rows": []}), AnnotationError, "expected a JSON list of cgbench rows"),
    "unknown_file_type": ("a.csv", "qid,video_uid", AnnotationError, "unknown file type '.csv'"),
}


@pytest.mark.parametrize("case", list(UNBUILDABLE))
def test_no_buildable_row_raises_and_writes_no_parquet(tmp_path: Path, case: str) -> None:
    """When no row can be built the build raises a ValueError naming why, and writes no parquet and no report."""
    name, text, error, message = UNBUILDABLE[case]
    (tmp_path / name).write_text(text)
    write_caption(tmp_path / "captions", "good")
    with pytest.raises(error, match=message):
        build(settings(tmp_path / name, tmp_path / "captions"), tmp_path / "out")
    assert issubclass(error, ValueError)
    assert not list((tmp_path / "out").glob("*.parquet")) and not (tmp_path / "out" / "report.json").exists()


def test_main_builds_from_a_settings_file(demo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m tools.builders.rl_data --settings S --output O` writes both files and prints the counts."""
    values = {"annotations": str(demo / "annotations.json"), "format": "cgbench", "data_source": "demo",
              "caption_dir": str(demo / "captions"), "video_dir": None, "max_turns": 9, "val_fraction": 0.5,
              "seed": 1}
    settings_file = write_json(tmp_path / "settings.json", values)
    monkeypatch.setattr(sys, "argv", ["rl_data", "--settings", str(settings_file), "--output", str(tmp_path / "o")])
    rl_data.main()
    out = capsys.readouterr().out
    assert "train 16 rows / 2 videos, val 16 rows / 2 videos, 32 with clue intervals; rejected 0" in out
    assert f"wrote {tmp_path / 'o' / 'train.parquet'}" in out and f"wrote {tmp_path / 'o' / 'val.parquet'}" in out
    assert read_split(tmp_path / "o", "val")["prompt"][0][0]["content"] == prompts.system_prompt(9)


def _settings_file(tmp_path: Path, annotations: object) -> Path:
    """A settings file over `annotations` (a list of records) and one good caption tree."""
    write_caption(tmp_path / "captions", "good")
    values = {"annotations": str(write_json(tmp_path / "a.json", annotations)), "format": "cgbench",
              "data_source": "demo", "caption_dir": str(tmp_path / "captions"), "video_dir": None, "max_turns": 9,
              "val_fraction": 0.0, "seed": 1}
    return write_json(tmp_path / "settings.json", values)


MAIN_INPUT_ERRORS = {
    # name: (what to do to the settings file, what the one line names)
    "nothing_buildable": (lambda path, tmp: None, ["a.json: no question could be built", "expected at least one"]),
    "settings_not_json": (lambda path, tmp: path.write_text("{"), ["settings.json: cannot read the settings",
                                                                   "expected the JSON object"]),
    "settings_missing_key": (lambda path, tmp: path.write_text("{}"), ["rl_data settings without", "annotations"]),
    "output_holds_a_build": (lambda path, tmp: (tmp / "o").mkdir() or (tmp / "o" / "report.json").write_text("{}"),
                             ["already holds ['report.json']"]),
    "annotations_not_a_list": (lambda path, tmp: write_json(tmp / "a.json", {"rows": []}),
                               ["a.json: top level is a dict; expected a JSON list"]),
}


@pytest.mark.parametrize("case", list(MAIN_INPUT_ERRORS))
def test_main_reports_an_input_error_in_one_line_and_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str], case: str) -> None:
    """An input that cannot be built is one `error:` line on stderr naming the file, and exit code 2."""
    change, parts = MAIN_INPUT_ERRORS[case]
    settings_file = _settings_file(tmp_path, [cg_record("gone", "q1")])
    change(settings_file, tmp_path)
    monkeypatch.setattr(sys, "argv", ["rl_data", "--settings", str(settings_file), "--output", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as exit_info:
        rl_data.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    for part in parts:
        assert part in err


# The rl_data stage.


def test_stage_runs_end_to_end(demo: Path, run_root: Path) -> None:
    """`python -m launch rl_data recipe=tiny ...` writes the parquet files under the run and marks it DONE."""
    result = launch("rl_data", "recipe=tiny", f"rl_data.annotations={demo / 'annotations.json'}",
                    f"rl_data.caption_dir={demo / 'captions'}", "rl_data.dataset=demo", f"run_root={run_root}",
                    "name=first", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = run_root / "rl_data" / "demo" / "first"
    output = run_dir / "rl_data"
    done = yaml.safe_load((run_dir / "DONE").read_text())
    assert done["outputs"] == {"train": str(output / "train.parquet"), "val": str(output / "val.parquet")}
    assert {path.name for path in output.iterdir()} == {"settings.json", "train.parquet", "val.parquet",
                                                        "rejected.jsonl", "report.json"}
    written = json.loads((output / "settings.json").read_text())
    assert written["max_turns"] == TINY_MAX_TURNS and written["caption_dir"] == str(demo / "captions")
    report = json.loads((output / "report.json").read_text())
    assert sum(report["rows"].values()) == 32 and report["data_source"] == "demo"
    row = read_split(output, "train").iloc[0]
    assert row["data_source"] == "demo" and row["prompt"][0]["content"] == prompts.system_prompt(TINY_MAX_TURNS)


@pytest.fixture(scope="module")
def stage_config(demo: Path) -> DictConfig:
    """The composed rl_data config of recipe=tiny over the demo world, rl_data.annotations and caption_dir unset."""
    return compose_config("rl_data", ["recipe=tiny", "rl_data.dataset=demo"], True).config


def stage_settings(config: DictConfig, values: dict[str, object]) -> dict:
    """rl_data_settings of a copy of `config` with each key of `values` set (added where new)."""
    config = copy.deepcopy(config)
    with open_dict(config):
        for key, value in values.items():
            OmegaConf.update(config, key, value, force_add=True)
    return rl_data_settings(config)


@pytest.mark.parametrize(
    ("values", "caption_dir"),
    [
        ({"tool.default.caption_dir": "{captions}"}, "{captions}"),
        ({"tool.default.caption_dir": "{elsewhere}", "tool.sources.demo.caption_dir": "{captions}"}, "{captions}"),
        ({"tool.default.caption_dir": "{captions}", "tool.sources.other.caption_dir": "{elsewhere}"}, "{captions}"),
        ({"tool.default.caption_dir": "{captions}", "rl_data.caption_dir": "{elsewhere}"}, "{elsewhere}"),
    ],
)
def test_caption_dir_defaults_to_the_tool_folder(demo: Path, tmp_path: Path, stage_config: DictConfig,
                                                 values: dict[str, str], caption_dir: str) -> None:
    """rl_data.caption_dir unset: the tool's folder for this data_source, else tool.default.caption_dir."""
    (tmp_path / "elsewhere").mkdir()
    paths = {"captions": demo / "captions", "elsewhere": tmp_path / "elsewhere"}
    settings_values = stage_settings(stage_config, {"rl_data.annotations": str(demo / "annotations.json"),
                                                    **{key: value.format(**paths) for key, value in values.items()}})
    assert settings_values["caption_dir"] == caption_dir.format(**paths)
    assert settings_values["data_source"] == "demo" and settings_values["max_turns"] == TINY_MAX_TURNS
    assert settings_values["annotations"] == str(demo / "annotations.json")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "rl_data.annotations: missing; set rl_data.annotations=..."),
        ({"rl_data.annotations": "{missing}"}, "rl_data.annotations={missing}: no such file"),
        ({"rl_data.format": "bogus"}, "rl_data.format='bogus' is not one of: cgbench, videomme, lvbench"),
        ({"rl_data.val_fraction": 1.5}, "rl_data.val_fraction=1.5 must be in [0, 1]"),
        ({"rl_data.val_fraction": -0.1}, "rl_data.val_fraction=-0.1 must be in [0, 1]"),
        ({"rl_data.val_fraction": True}, "rl_data.val_fraction=True: expected a number"),
        ({"rl_data.caption_dir": "{missing}"}, "rl_data.caption_dir={missing}: no such folder"),
        ({"rl_data.caption_dir": None, "tool.default.caption_dir": "{missing}"},
         "or tool.default.caption_dir)={missing}: no such folder"),
        ({"rl_data.video_dir": "{missing}"}, "rl_data.video_dir={missing}: no such folder"),
        ({"rl_data.data_source": "a b"}, "rl_data.data_source='a b': expected a name"),
        ({"agent.max_turns": 0}, "agent.max_turns=0 must be > 0"),
    ],
)
def test_bad_stage_settings_name_the_key(demo: Path, tmp_path: Path, stage_config: DictConfig,
                                         values: dict[str, object], message: str) -> None:
    """Each wrong or missing value raises a DatasetConfigError naming its key and value."""
    paths = {"missing": tmp_path / "missing"}
    base = {} if not values else {"rl_data.annotations": str(demo / "annotations.json"),
                                  "rl_data.caption_dir": str(demo / "captions")}
    values = {key: value.format(**paths) if isinstance(value, str) else value for key, value in values.items()}
    with pytest.raises(DatasetConfigError) as error:
        stage_settings(stage_config, {**base, **values})
    assert message.format(**paths) in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "rl_data.annotations: missing; set rl_data.annotations=..."),
        (["rl_data.annotations={annotations}", "rl_data.format=bogus"],
         "rl_data.format='bogus' is not one of: cgbench, videomme, lvbench"),
        (["rl_data.annotations={annotations}", "rl_data.dataset=a/b"], "dataset 'a/b' is not a valid directory name"),
    ],
)
def test_bad_stage_command_lines_exit_2(demo: Path, tmp_path: Path, overrides: list[str], message: str) -> None:
    """`python -m launch rl_data` with a bad value exits 2 with the message and creates no run directory."""
    paths = {"annotations": demo / "annotations.json"}
    argv = ["rl_data", "recipe=tiny", f"rl_data.caption_dir={demo / 'captions'}", f"run_root={tmp_path / 'runs'}",
            *(item.format(**paths) for item in overrides)]
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, {"WANDB_API_KEY": ""}), redirect_stdout(out), redirect_stderr(err):
        code = cli_main(argv)
    assert code == 2 and err.getvalue().startswith("error: ")
    assert message.format(**paths) in err.getvalue()
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_the_plan_and_imports_no_heavy_module(demo: Path, run_root: Path) -> None:
    """`rl_data --dry-run` (fresh interpreter) prints the builder's command and settings and imports nothing heavy."""
    stdout, heavy = dry_run_in_fresh_interpreter(
        ["rl_data", "recipe=tiny", f"rl_data.annotations={demo / 'annotations.json'}",
         f"rl_data.caption_dir={demo / 'captions'}", "rl_data.dataset=demo", f"run_root={run_root}", "--dry-run"])
    assert heavy == []
    assert "tools.builders.rl_data" in stdout and "rl_data/settings.json" in stdout
    assert f"run directory would be {run_root / 'rl_data' / 'demo'}" in stdout
    assert not run_root.exists()


def test_extra_info_reads_back_as_the_tools_and_rewards_read_it(demo_built: tuple[Path, dict]) -> None:
    """Every written row's extra_info, made plain, is JSON-ready and names its own split and data_source."""
    output, _ = demo_built
    for split, row in rows_by_question(output).values():
        info = plain_data(row["extra_info"])
        assert json.loads(json.dumps(info)) == info
        assert info["split"] == split and info["data_source"] == row["data_source"]
