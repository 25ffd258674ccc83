"""Benchmark annotation files (CG-Bench, Video-MME, LVBench) read into one validated form for the RL data builder.

A file is a JSON list (`.json`), one JSON object per line (`.jsonl`) or a parquet table (`.parquet`).
A file that cannot be read at all raises AnnotationError; a row that cannot be read becomes a
RejectedRow whose `reason` is one of: bad_json, missing_field, bad_field, bad_options, bad_answer,
bad_clue_intervals, bad_duration, bad_fps. LVBench rows are videos with several questions each.
Each format is one row reader registered under its name with its parquet columns (`register_format`);
`FORMAT_NAMES` lists them for the CLI, the config checks and error messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tools.builders.annotation_files import AnnotationError, RejectedRow, RowError, read_records
from tools.environment.answers import LETTERS, ground_truth_letter
from tools.environment.registry import add_entry, find_entry

# An option with its letter prefix: `A. text`, `A.text`, `A) text` or `(A) text`.
_LETTERED_OPTION = re.compile(r"^\s*(?:\(([A-Z])\)|([A-Z])[.)])\s*(.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class AnnotationFormat:
    """One benchmark's annotation format: how a row becomes questions, and the columns a parquet file needs."""

    name: str
    # (record, row) -> the row's questions, and a RowError for each question that cannot be read; a row that
    # cannot be read at all raises RowError.
    read_row: Callable[[dict, int], list]
    # Each entry is a column, or a tuple of columns of which one must be present (the first is named when none is).
    required_columns: tuple[str | tuple[str, ...], ...]


_FORMATS: dict[str, AnnotationFormat] = {}


def register_format(name: str, required_columns: tuple[str | tuple[str, ...], ...]) -> Callable:
    """Register the decorated row reader as annotation format `name`; a second format of that name is refused."""
    def decorator(read_row: Callable[[dict, int], list]) -> Callable[[dict, int], list]:
        """Add `read_row` to the registry under `name`."""
        add_entry(_FORMATS, "annotation format", name, AnnotationFormat(name, read_row, required_columns),
                  lambda taken: taken.read_row.__name__)
        return read_row
    return decorator


def annotation_format(name: str) -> AnnotationFormat:
    """The registered format `name`; AnnotationError listing the formats when there is none of that name."""
    return find_entry(_FORMATS, "annotation format", name, AnnotationError)


@dataclass(frozen=True)
class BenchmarkQuestion:
    """One multiple-choice question about one video, in the common form the RL data builder reads."""

    # 1-based row of the file (LVBench: line of the video), for reports.
    row: int
    # The annotation's own id, else f"{video_uid}-{row}" (LVBench: f"{key}-{qa position}").
    question_id: str
    # The video file stem: the caption file is <caption_dir>/<video_uid>.json.
    video_uid: str
    question: str
    # Option texts without letter prefixes, 2 to 26 of them.
    options: tuple[str, ...]
    # The ground-truth option letter, in range of the options.
    answer: str
    # [start, end] seconds; empty when the benchmark has none.
    clue_intervals: tuple[tuple[float, float], ...]
    # Seconds when the annotation gives them exactly, else None.
    duration: float | None
    fps: float | None
    # The benchmark's categories of this question (CG-Bench sub_category, Video-MME task_type, LVBench
    # question_type, which may list several); the evaluation reports accuracy per category.
    categories: tuple[str, ...] = ()
    # Video-MME's video length class (short, medium, long); None elsewhere.
    length: str | None = None


def _is_number(value: object) -> bool:
    """Whether `value` is a finite int or float (bool excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(record: dict, field: str, shown: str | None = None) -> str:
    """The non-empty string in `record[field]`, stripped; `shown` is the field's name in messages."""
    value = record.get(field)
    if value is None or value == "":
        raise RowError("missing_field", shown or field, value, "a non-empty string")
    if not isinstance(value, str) or not value.strip():
        raise RowError("bad_field", shown or field, value, "a non-empty string")
    return value.strip()


def _video_uid(record: dict, field: str) -> str:
    """The video file stem in `record[field]`."""
    uid = _text(record, field)
    if "/" in uid or "\\" in uid:
        raise RowError("bad_field", field, uid, "a video file stem without '/'")
    return uid


def _question_id(record: dict, field: str, fallback: str) -> str:
    """The annotation's own id in `record[field]` as a string, or `fallback` when it has none."""
    value = record.get(field)
    if isinstance(value, float) and value.is_integer():
        # A parquet integer column with gaps arrives as floats.
        value = int(value)
    if value is None or value == "":
        return fallback
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RowError("bad_field", field, value, "an int or string id")
    return str(value).strip()


def _options(value: object, field: str, lettered: bool) -> tuple[str, ...]:
    """2..26 non-empty option texts; `lettered` options carry prefixes `A. `, `B. `... which are stripped."""
    if not isinstance(value, list) or not 2 <= len(value) <= len(LETTERS) \
            or not all(isinstance(option, str) and option.strip() for option in value):
        raise RowError("bad_options", field, value, f"a list of 2 to {len(LETTERS)} non-empty option texts")
    if not lettered:
        return tuple(option.strip() for option in value)
    texts = []
    for index, option in enumerate(value):
        match = _LETTERED_OPTION.match(option)
        if match is None or (match.group(1) or match.group(2)) != LETTERS[index] or not match.group(3):
            raise RowError("bad_options", field, value, f"options lettered A, B, C... in order, option "
                            f"{index + 1} as '{LETTERS[index]}. text'")
        texts.append(match.group(3))
    return tuple(texts)


def _answer(value: object, field: str, options: tuple[str, ...]) -> str:
    """The option letter named by `value`: a letter such as `C`, `(C)` or `C.`, or exactly one option's text."""
    expected = f"a letter of the {len(options)} options A-{LETTERS[len(options) - 1]} or one option's text"
    if value is None:
        raise RowError("missing_field", field, value, expected)
    letters = set()
    letter = ground_truth_letter(value)
    if letter is not None and LETTERS.index(letter) < len(options):
        letters.add(letter)
    if isinstance(value, str):
        same_text = [LETTERS[index] for index, option in enumerate(options) if option == value.strip()]
        letters.update(same_text if len(same_text) == 1 else ())
    if len(letters) != 1:
        raise RowError("bad_answer", field, value, expected + (" (ambiguous)" if letters else ""))
    return letters.pop()


def _clue_intervals(value: object, field: str) -> tuple[tuple[float, float], ...]:
    """[start, end] pairs in seconds with 0 <= start < end; none when absent or empty."""
    if value is None:
        return ()
    expected = "a list of [start, end] seconds with 0 <= start < end"
    if not isinstance(value, list):
        raise RowError("bad_clue_intervals", field, value, expected)
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2 or not all(map(_is_number, pair)) \
                or not 0 <= pair[0] < pair[1]:
            raise RowError("bad_clue_intervals", field, value, expected)
    return tuple((float(start), float(end)) for start, end in value)


def _positive(value: object, field: str, reason: str) -> float | None:
    """A positive number of `field`, None when absent; RowError with `reason` when present but not positive."""
    if value is None:
        return None
    if not _is_number(value) or value <= 0:
        raise RowError(reason, field, value, "a positive number")
    return float(value)


def _categories(value: object, field: str) -> tuple[str, ...]:
    """A category string, or a list of them, as a tuple; none when absent."""
    if value is None or value == "":
        return ()
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) and item.strip() for item in values):
        raise RowError("bad_field", field, value, "a category name or a list of them")
    return tuple(item.strip() for item in values)


@register_format("cgbench", ("video_uid", "question", "choices", "right_answer"))
def _cgbench(record: dict, row: int) -> list[BenchmarkQuestion]:
    """The one CG-Bench question of `record`."""
    uid = _video_uid(record, "video_uid")
    options = _options(record.get("choices"), "choices", lettered=False)
    return [BenchmarkQuestion(
        row=row, question_id=_question_id(record, "qid", f"{uid}-{row}"), video_uid=uid,
        question=_text(record, "question"), options=options,
        answer=_answer(record.get("right_answer"), "right_answer", options),
        clue_intervals=_clue_intervals(record.get("clue_intervals"), "clue_intervals"),
        duration=_positive(record.get("duration"), "duration", "bad_duration"),
        fps=_positive(record.get("fps"), "fps", "bad_fps"),
        categories=_categories(record.get("sub_category", record.get("domain")), "sub_category"))]


@register_format("videomme", ("question", "options", "answer", ("videoID", "video_id")))
def _videomme(record: dict, row: int) -> list[BenchmarkQuestion]:
    """The one Video-MME question of `record`; its `duration` is a category, so duration is None."""
    uid = _video_uid(record, "videoID" if record.get("videoID") is not None else "video_id")
    options = _options(record.get("options"), "options", lettered=True)
    return [BenchmarkQuestion(
        row=row, question_id=_question_id(record, "question_id", f"{uid}-{row}"), video_uid=uid,
        question=_text(record, "question"), options=options, answer=_answer(record.get("answer"), "answer", options),
        clue_intervals=(), duration=None, fps=None, categories=_categories(record.get("task_type"), "task_type"),
        length=_length(record.get("duration")))]


def _length(value: object) -> str | None:
    """Video-MME's length class from its `duration` column (short, medium or long); None when it is absent."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in LENGTH_CLASSES:
        raise RowError("bad_field", "duration", value, "Video-MME's length class: short, medium or long")
    return value.strip().lower()


def _lvbench_question(qa: object, key: str, position: int, fps: float | None, row: int) -> BenchmarkQuestion:
    """Question `position` (1-based) of LVBench video `key`; its options are lines `(A) text` of the question."""
    name = f"qa[{position}]"
    if not isinstance(qa, dict):
        raise RowError("bad_field", name, qa, "an object with question and answer")
    text = _text(qa, "question", f"{name}.question")
    lines = text.splitlines()
    first = next((index for index, line in enumerate(lines) if line.lstrip().startswith("(A)")), None)
    if first is None or not "\n".join(lines[:first]).strip():
        raise RowError("bad_options", f"{name}.question", text, "the question, then option lines '(A) text'")
    option_lines = [line for line in lines[first:] if line.strip()]
    options = _options(option_lines, f"{name}.question", lettered=True)
    if any(not line.lstrip().startswith("(") for line in option_lines):
        raise RowError("bad_options", f"{name}.question", text, "option lines written '(A) text'")
    return BenchmarkQuestion(
        row=row, question_id=_question_id(qa, "uid", f"{key}-{position}"), video_uid=key,
        question="\n".join(lines[:first]).strip(), options=options,
        answer=_answer(qa.get("answer"), f"{name}.answer", options), clue_intervals=(), duration=None, fps=fps,
        categories=_categories(qa.get("question_type"), f"{name}.question_type"))


@register_format("lvbench", ("key", "qa"))
def _lvbench(record: dict, row: int) -> list[BenchmarkQuestion | RowError]:
    """The questions of one LVBench video, with a RowError in place of each question that cannot be read."""
    key = _video_uid(record, "key")
    qas = record.get("qa")
    if not isinstance(qas, list) or not qas:
        raise RowError("missing_field" if qas is None else "bad_field", "qa", qas, "a non-empty list")
    info = record.get("video_info")
    fps = info.get("fps") if isinstance(info, dict) else None
    fps = float(fps) if _is_number(fps) and fps > 0 else None
    questions: list[BenchmarkQuestion | RowError] = []
    for position, qa in enumerate(qas, start=1):
        try:
            questions.append(_lvbench_question(qa, key, position, fps, row))
        except RowError as error:
            questions.append(error)
    return questions


# The registered formats' names, for CLI choices, config checks and error messages.
FORMAT_NAMES = tuple(_FORMATS)
# Video-MME's video length classes, the values of `BenchmarkQuestion.length`.
LENGTH_CLASSES = ("short", "medium", "long")


def read_annotations(path: str | Path, fmt: str) -> tuple[list[BenchmarkQuestion], list[RejectedRow]]:
    """Every question of an annotation file in format `fmt`, and each row that could not be read (never dropped)."""
    try:
        reader = annotation_format(fmt)
    except AnnotationError as error:
        raise AnnotationError(f"{path}: {error}") from None
    path = Path(path)
    questions: list[BenchmarkQuestion] = []
    rejected: list[RejectedRow] = []
    for row, record in read_records(path, reader.name, reader.required_columns):
        try:
            if isinstance(record, RowError):
                raise record
            items = reader.read_row(record, row)
        except RowError as error:
            rejected.append(error.rejected(path.name, row))
            continue
        for item in items:
            if isinstance(item, RowError):
                rejected.append(item.rejected(path.name, row))
            else:
                questions.append(item)
    return questions, rejected
