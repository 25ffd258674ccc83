"""Build verl's RL parquet from benchmark annotations and caption trees, split into train and validation by video.

Each row holds `data_source`, `prompt` (the system prompt and the first user turn, from the same
builder SFT and evaluation use), `ability`, `reward_model` (`style: rule`, the ground-truth
letter) and `extra_info` with everything the tools and rewards read (tools/environment/README.md), `data_source`
included because verl-tool sends only `extra_info` to the tool server. A question whose caption
tree is missing or malformed, whose duration is unknown or disagrees with the tree's, whose id an
earlier row has, or whose row the reward would refuse (`tools.builders.row_checks`), is reported in
`rejected.jsonl` and skipped; files are written whole or not at all. An input that cannot be built
at all is one line on stderr and exit code 2.

    python -m tools.builders.rl_data --settings rl_data/settings.json --output rl_data
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.builders.annotation_files import AnnotationError
from tools.builders.annotations import BenchmarkQuestion, read_annotations
from tools.builders.builder_io import BuilderInputError, exit_on_input_error, publish, settings_and_output
from tools.builders.row_checks import RowRejected, UniqueIds, check_reward_reads, check_tree_duration
from tools.environment import prompts
from tools.environment.caption_tree import CaptionTree, CaptionTreeError, TreeCache, caption_path
from tools.environment.frames import FrameError, find_video, probe_duration
from tools.environment.tool_settings import VIDEO_EXTENSIONS

ABILITY = "video_navigation"
SPLITS = ("train", "val")
# What main() reports as one line and exit code 2: inputs that cannot be built, not bugs.
INPUT_ERRORS = (BuilderInputError, AnnotationError, FileExistsError, FileNotFoundError)


@dataclass(frozen=True)
class RLDataSettings:
    """One annotation file, where its trees (and videos) are, and how to split it."""

    annotations: str
    format: str
    data_source: str
    caption_dir: str
    video_dir: str | None
    max_turns: int
    val_fraction: float
    seed: int

    @classmethod
    def from_dict(cls, data: dict) -> RLDataSettings:
        """Settings from the JSON the rl_data stage renders; BuilderInputError naming a missing key."""
        missing = [key for key in cls.__dataclass_fields__ if key not in data]
        if missing:
            raise BuilderInputError(f"rl_data settings without {missing}; expected {list(cls.__dataclass_fields__)}")
        return cls(**{key: data[key] for key in cls.__dataclass_fields__})


def duration_of(question: BenchmarkQuestion, tree: CaptionTree, settings: RLDataSettings) -> float:
    """The video's duration: the annotation's, else the caption file's, else the video's; checked against the tree's."""
    duration = question.duration if question.duration is not None else tree.duration
    if duration is None and settings.video_dir is not None:
        try:
            duration = probe_duration(find_video(settings.video_dir, question.video_uid, VIDEO_EXTENSIONS))
        except FileNotFoundError:
            duration = None
        except FrameError as error:
            raise RowRejected("no_duration", str(error)) from None
    if duration is None:
        raise RowRejected("no_duration", f"video {question.video_uid!r}: the annotation and the caption file give no "
                                        "duration and no video was found (set rl_data.video_dir)")
    check_tree_duration(tree, duration)
    return float(duration)


def rl_row(question: BenchmarkQuestion, tree: CaptionTree, settings: RLDataSettings) -> dict:
    """One parquet row for `question` over its caption tree (split and index are set when the row is placed).

    RowRejected when the row cannot be built or the reward would refuse it.
    """
    duration = duration_of(question, tree, settings)
    first_user = prompts.first_user_turn(question.question, question.options, duration, tree)
    extra_info = {"index": -1, "split": "", "data_source": settings.data_source, "question_id": question.question_id,
                  "video_uid": question.video_uid, "question": question.question, "options": list(question.options),
                  "clue_intervals": [list(interval) for interval in question.clue_intervals], "width": tree.width,
                  "duration": duration, "fps": question.fps}
    check_reward_reads(question.answer, extra_info)
    return {"data_source": settings.data_source,
            "prompt": [{"role": "system", "content": prompts.system_prompt(settings.max_turns)},
                       {"role": "user", "content": first_user}],
            "ability": ABILITY, "reward_model": {"style": "rule", "ground_truth": question.answer},
            "extra_info": extra_info}


def question_rows(questions: list[BenchmarkQuestion],
                  settings: RLDataSettings) -> Iterator[tuple[BenchmarkQuestion, dict | RowRejected]]:
    """(question, its row) for each question, or (question, why not) for a duplicate id or a row not built."""
    trees, ids = TreeCache(), UniqueIds("row")
    for question in questions:
        try:
            ids.check(question.question_id, question.row)
            tree = trees.get(caption_path(settings.caption_dir, question.video_uid))
            yield question, rl_row(question, tree, settings)
        except CaptionTreeError as error:
            yield question, RowRejected("caption_tree", str(error))
        except RowRejected as error:
            yield question, error


def split_videos(video_uids: list[str], val_fraction: float, seed: int) -> set[str]:
    """The validation videos: a seeded `val_fraction` of them, at least one and not all when both splits are asked."""
    videos = sorted(set(video_uids))
    random.Random(seed).shuffle(videos)
    count = round(val_fraction * len(videos))
    if 0 < val_fraction and count == 0:
        count = 1
    if val_fraction < 1 and count == len(videos) and len(videos) > 1:
        count -= 1
    return set(videos[:count])


def _write_parquet(rows: list[dict], path: Path) -> None:
    """Write rows to `path` through a temporary file, so a reader never sees half a file."""
    import pandas as pd

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        publish(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def build(settings: RLDataSettings, output: Path) -> dict:
    """Write train.parquet and val.parquet (those not empty), rejected.jsonl and report.json into `output`."""
    output.mkdir(parents=True, exist_ok=True)
    existing = [name for name in (*(f"{split}.parquet" for split in SPLITS), "report.json") if (output / name).exists()]
    if existing:
        raise FileExistsError(f"{output} already holds {existing}; every build writes a new folder")
    questions, rejected_rows = read_annotations(settings.annotations, settings.format)
    rejected = [{"row": r.row, "question_id": None, "reason": r.reason, "detail": r.detail} for r in rejected_rows]
    rows = []
    for question, row in question_rows(questions, settings):
        if isinstance(row, RowRejected):
            rejected.append({"row": question.row, "question_id": question.question_id, "reason": row.reason,
                             "detail": f"{settings.annotations} row {question.row}: {row}"})
        else:
            rows.append(row)
    if not rows:
        raise BuilderInputError(f"{settings.annotations}: no question could be built; expected at least one "
                                f"usable row; first problems: {[r['detail'] for r in rejected[:3]]}")
    val_videos = split_videos([row["extra_info"]["video_uid"] for row in rows], settings.val_fraction, settings.seed)
    splits: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for row in rows:
        split = "val" if row["extra_info"]["video_uid"] in val_videos else "train"
        row["extra_info"].update(split=split, index=len(splits[split]))
        splits[split].append(row)
    with (output / "rejected.jsonl").open("w") as handle:
        handle.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in rejected)
    for split, split_rows in splits.items():
        if split_rows:
            _write_parquet(split_rows, output / f"{split}.parquet")
    report = {"annotations": settings.annotations, "format": settings.format, "data_source": settings.data_source,
              "rows": {split: len(split_rows) for split, split_rows in splits.items()},
              "videos": {split: len({r["extra_info"]["video_uid"] for r in split_rows})
                         for split, split_rows in splits.items()},
              "with_clue_intervals": sum(1 for row in rows if row["extra_info"]["clue_intervals"]),
              "rejected": len(rejected), "rejected_by_reason": dict(Counter(item["reason"] for item in rejected))}
    (output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main() -> None:
    """CLI: build the RL parquet files from `--settings` into `--output`."""
    with exit_on_input_error(INPUT_ERRORS):
        settings, output = settings_and_output(__doc__)
        report = build(RLDataSettings.from_dict(settings), output)
    print(f"{report['annotations']} ({report['format']} as data_source {report['data_source']}): "
          f"train {report['rows']['train']} rows / {report['videos']['train']} videos, "
          f"val {report['rows']['val']} rows / {report['videos']['val']} videos, "
          f"{report['with_clue_intervals']} with clue intervals; rejected {report['rejected']} "
          f"{report['rejected_by_reason']}")
    for split in SPLITS:
        if report["rows"][split]:
            print(f"wrote {output / f'{split}.parquet'}")


if __name__ == "__main__":
    main()
