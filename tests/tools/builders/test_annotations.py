"""Benchmark annotation readers: CG-Bench, Video-MME and LVBench rows from JSON, JSONL and parquet files.

Table-driven like open-r1's tests/rewards/test_rewards.py: each test writes its own small annotation files
under `tmp_path` and checks the questions read and the rows rejected, with their reasons and details.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas
import pytest

from tools.builders.annotations import (
    FORMAT_NAMES,
    AnnotationError,
    BenchmarkQuestion,
    RejectedRow,
    read_annotations,
    register_format,
)

CHOICES = ["apples", "candles", "a cat", "a dog"]
LVBENCH_QUESTION = "What year appears on the sign?\n(A) 1636\n(B) 1366\n(C) 1363\n(D) 1633"
# Marks a field that a row removes.
MISSING = object()


def cgbench_row(**overrides: object) -> dict:
    """A good CG-Bench row (answer C, two clues, 600 s at 30 fps), with `overrides`."""
    fields = {"qid": 42, "video_uid": "vid-1", "question": "What is on the table?", "choices": list(CHOICES),
              "right_answer": "C", "clue_intervals": [[1.5, 4.0], [10.0, 12.0]], "duration": 600.0, "fps": 30.0}
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not MISSING}


def videomme_row(**overrides: object) -> dict:
    """A good Video-MME row (answer B, a medium video), with `overrides`."""
    fields = {"video_id": "001", "duration": "medium", "domain": "Knowledge", "videoID": "fFjv93ACGo8",
              "question_id": "001-1", "question": "What is lit?",
              "options": ["A. Apples.", "B. Candles.", "C. Berries.", "D. The three kinds are equal."], "answer": "B"}
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not MISSING}


def lvbench_video(key: str = "vid-9", *qas: dict, **overrides: object) -> dict:
    """A good LVBench video `key` at 25 fps with `qas` (default: one question, uid 1, answer D), with `overrides`."""
    fields = {"key": key, "type": "documentary", "qa": list(qas) or [lvbench_qa()],
              "video_info": {"duration_minutes": 63.4, "fps": 25.0, "resolution": {"width": 640, "height": 360}}}
    fields.update(overrides)
    return {name: value for name, value in fields.items() if value is not MISSING}


def lvbench_qa(**overrides: object) -> dict:
    """A good LVBench question (uid 1, answer D), with `overrides`."""
    fields = {"uid": "1", "question": LVBENCH_QUESTION, "answer": "D", "question_type": ["key information retrieval"],
              "time_reference": "00:15-00:19"}
    fields.update(overrides)
    return {key: value for key, value in fields.items() if value is not MISSING}


def write(directory: Path, name: str, rows: list) -> Path:
    """`rows` written to directory/name as a JSON list, JSON lines (str rows verbatim) or parquet, by its suffix."""
    path = directory / name
    if path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".jsonl":
        path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows))
    else:
        pandas.DataFrame(rows).to_parquet(path)
    return path


CGBENCH_QUESTION = BenchmarkQuestion(
    row=1, question_id="42", video_uid="vid-1", question="What is on the table?", options=tuple(CHOICES), answer="C",
    clue_intervals=((1.5, 4.0), (10.0, 12.0)), duration=600.0, fps=30.0)


@pytest.mark.parametrize("name", ["cgbench.json", "cgbench.jsonl", "cgbench.parquet"])
def test_cgbench_reads_every_field_from_each_container(tmp_path: Path, name: str) -> None:
    """A CG-Bench row reads the same from JSON, JSONL and parquet, its numpy values made plain Python."""
    questions, rejected = read_annotations(write(tmp_path, name, [cgbench_row()]), "cgbench")
    assert (questions, rejected) == ([CGBENCH_QUESTION], [])
    question = questions[0]
    # Parquet hands numpy arrays and scalars: they must come out as plain tuples, floats and strings.
    assert type(question.clue_intervals) is tuple and type(question.clue_intervals[0]) is tuple
    assert {type(value) for value in (*question.clue_intervals[0], question.duration, question.fps)} == {float}
    assert type(question.options) is tuple and type(question.question_id) is str


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"right_answer": "(C)"}, {"answer": "C"}),
    ({"right_answer": "C."}, {"answer": "C"}),
    ({"right_answer": " A "}, {"answer": "A"}),
    ({"right_answer": "a dog"}, {"answer": "D"}),
    ({"right_answer": "candles"}, {"answer": "B"}),
    ({"clue_intervals": MISSING}, {"clue_intervals": ()}),
    ({"clue_intervals": None}, {"clue_intervals": ()}),
    ({"clue_intervals": []}, {"clue_intervals": ()}),
    ({"clue_intervals": [[0, 3]]}, {"clue_intervals": ((0.0, 3.0),)}),
    ({"duration": MISSING, "fps": None}, {"duration": None, "fps": None}),
    ({"qid": MISSING}, {"question_id": "vid-1-1"}),
    ({"qid": "q-7"}, {"question_id": "q-7"}),
    ({"choices": ["A. apples", "B. candles"], "right_answer": "B"},
     {"options": ("A. apples", "B. candles"), "answer": "B"}),
], ids=["bracketed", "period", "spaces", "text-d", "text-b", "no-clues", "none-clues", "empty-clues", "int-clues",
        "no-duration", "no-qid", "str-qid", "lettered-choices-kept"])
def test_cgbench_field_forms(tmp_path: Path, overrides: dict, expected: dict) -> None:
    """Answers as letters or option text, absent optional fields and lettered choices read as documented."""
    questions, rejected = read_annotations(write(tmp_path, "cg.json", [cgbench_row(**overrides)]), "cgbench")
    assert rejected == []
    assert {field: getattr(questions[0], field) for field in expected} == expected


@pytest.mark.parametrize("options", [
    ["A. Apples.", "B. Candles.", "C. Berries."],
    ["A.Apples.", "B.Candles.", "C.Berries."],
    ["(A) Apples.", "(B) Candles.", "(C) Berries."],
    ["A) Apples.", "B) Candles.", "C) Berries."],
])
def test_videomme_strips_letter_prefixes(tmp_path: Path, options: list) -> None:
    """Video-MME options lose their letter prefix in each written form; the answer letter is kept."""
    path = write(tmp_path, "videomme.json", [videomme_row(options=options)])
    [question], rejected = read_annotations(path, "videomme")
    assert rejected == []
    assert (question.options, question.answer) == (("Apples.", "Candles.", "Berries."), "B")


@pytest.mark.parametrize("name", ["videomme.json", "videomme.jsonl", "videomme.parquet"])
def test_videomme_reads_every_field(tmp_path: Path, name: str) -> None:
    """videoID is the stem, the length class is kept apart from duration (None), and a row without videoID falls
    back to video_id."""
    rows = [videomme_row(), videomme_row(videoID=None, question_id="002-1", answer="D")]
    questions, rejected = read_annotations(write(tmp_path, name, rows), "videomme")
    assert rejected == []
    options = ("Apples.", "Candles.", "Berries.", "The three kinds are equal.")
    assert questions == [
        BenchmarkQuestion(row=1, question_id="001-1", video_uid="fFjv93ACGo8", question="What is lit?",
                          options=options, answer="B", clue_intervals=(), duration=None, fps=None, length="medium"),
        BenchmarkQuestion(row=2, question_id="002-1", video_uid="001", question="What is lit?",
                          options=options, answer="D", clue_intervals=(), duration=None, fps=None, length="medium")]


@pytest.mark.parametrize("name", ["video_info.meta.jsonl", "lvbench.json", "lvbench.parquet"])
def test_lvbench_reads_several_questions_per_video(tmp_path: Path, name: str) -> None:
    """Each qa of an LVBench video is a question; options come from the question text; ids fall back to key-position."""
    second = lvbench_qa(uid=MISSING, question="Who speaks first?\n(A) the host\n(B) a guest", answer="(B)")
    rows = [lvbench_video("vid-9", lvbench_qa(), second),
            lvbench_video("vid-10", video_info={"duration_minutes": 12.0, "fps": 0, "resolution": {"width": 1}})]
    questions, rejected = read_annotations(write(tmp_path, name, rows), "lvbench")
    assert rejected == []
    years = ("1636", "1366", "1363", "1633")
    # LVBench's question_type is a list: each of its entries is a category of the question.
    kinds = ("key information retrieval",)
    assert questions == [
        BenchmarkQuestion(row=1, question_id="1", video_uid="vid-9", question="What year appears on the sign?",
                          options=years, answer="D", clue_intervals=(), duration=None, fps=25.0, categories=kinds),
        BenchmarkQuestion(row=1, question_id="vid-9-2", video_uid="vid-9", question="Who speaks first?",
                          options=("the host", "a guest"), answer="B", clue_intervals=(), duration=None, fps=25.0,
                          categories=kinds),
        BenchmarkQuestion(row=2, question_id="1", video_uid="vid-10", question="What year appears on the sign?",
                          options=years, answer="D", clue_intervals=(), duration=None, fps=None, categories=kinds)]


def test_parquet_missing_values_read_as_absent(tmp_path: Path) -> None:
    """Parquet nulls (NaN in float columns, integer ids turned float) read like absent fields, not as bad values."""
    rows = [cgbench_row(), cgbench_row(qid=None, duration=None, fps=None, clue_intervals=None)]
    questions, rejected = read_annotations(write(tmp_path, "cg.parquet", rows), "cgbench")
    assert rejected == []
    assert [(q.question_id, q.duration, q.fps, q.clue_intervals) for q in questions] == [
        ("42", 600.0, 30.0, ((1.5, 4.0), (10.0, 12.0))), ("vid-1-2", None, None, ())]


TWENTY_SEVEN = [f"option {index}" for index in range(27)]


@pytest.mark.parametrize(("fmt", "bad_row", "reason", "field", "expected"), [
    ("cgbench", cgbench_row(video_uid=MISSING), "missing_field", "video_uid", "a non-empty string"),
    ("cgbench", cgbench_row(video_uid="videos/vid-1"), "bad_field", "video_uid", "without '/'"),
    ("cgbench", cgbench_row(question=""), "missing_field", "question", "a non-empty string"),
    ("cgbench", cgbench_row(question=7), "bad_field", "question", "a non-empty string"),
    ("cgbench", cgbench_row(qid=[1]), "bad_field", "qid", "an int or string id"),
    ("cgbench", cgbench_row(choices=["only one"]), "bad_options", "choices", "2 to 26"),
    ("cgbench", cgbench_row(choices=TWENTY_SEVEN), "bad_options", "choices", "2 to 26"),
    ("cgbench", cgbench_row(choices=["apples", " "]), "bad_options", "choices", "non-empty option texts"),
    ("cgbench", cgbench_row(right_answer="E"), "bad_answer", "right_answer",
     "a letter of the 4 options A-D or one option's text"),
    ("cgbench", cgbench_row(right_answer="a horse"), "bad_answer", "right_answer", "options A-D"),
    ("cgbench", cgbench_row(right_answer=2), "bad_answer", "right_answer", "options A-D"),
    ("cgbench", cgbench_row(right_answer=MISSING), "missing_field", "right_answer", "options A-D"),
    ("cgbench", cgbench_row(choices=["B", "A"], right_answer="A"), "bad_answer", "right_answer", "ambiguous"),
    ("cgbench", cgbench_row(clue_intervals=[[5.0, 3.0]]), "bad_clue_intervals", "clue_intervals", "start < end"),
    ("cgbench", cgbench_row(clue_intervals=[[-1.0, 3.0]]), "bad_clue_intervals", "clue_intervals", "0 <= start"),
    ("cgbench", cgbench_row(clue_intervals=[[0.0, math.inf]]), "bad_clue_intervals", "clue_intervals", "[start, end]"),
    ("cgbench", cgbench_row(clue_intervals=[1.0, 3.0]), "bad_clue_intervals", "clue_intervals", "[start, end]"),
    ("cgbench", cgbench_row(clue_intervals=[[1.0, "3"]]), "bad_clue_intervals", "clue_intervals", "[start, end]"),
    ("cgbench", cgbench_row(duration=0), "bad_duration", "duration", "a positive number"),
    ("cgbench", cgbench_row(duration="long"), "bad_duration", "duration", "a positive number"),
    ("cgbench", cgbench_row(fps=-1), "bad_fps", "fps", "a positive number"),
    ("videomme", videomme_row(videoID=MISSING, video_id=MISSING), "missing_field", "video_id", "a non-empty string"),
    ("videomme", videomme_row(options=["B. Candles.", "A. Apples."]), "bad_options", "options", "in order"),
    ("videomme", videomme_row(options=["Apples.", "Candles."]), "bad_options", "options", "'A. text'"),
    ("videomme", videomme_row(options=["A. Apples.", "B."]), "bad_options", "options", "'B. text'"),
    ("videomme", videomme_row(answer="E"), "bad_answer", "answer", "a letter of the 4 options A-D"),
    ("lvbench", lvbench_video(key=MISSING), "missing_field", "key", "a non-empty string"),
    ("lvbench", lvbench_video(qa=MISSING), "missing_field", "qa", "a non-empty list"),
    ("lvbench", lvbench_video(qa=[]), "bad_field", "qa", "a non-empty list"),
    ("lvbench", lvbench_video("v", lvbench_qa(question="Which year?")), "bad_options", "qa[1].question",
     "option lines '(A) text'"),
    ("lvbench", lvbench_video("v", lvbench_qa(question="Which?\n(A) 1\n(C) 2")), "bad_options", "qa[1].question",
     "in order"),
    ("lvbench", lvbench_video("v", lvbench_qa(question="(A) 1\n(B) 2")), "bad_options", "qa[1].question",
     "the question, then option lines"),
    ("lvbench", lvbench_video("v", lvbench_qa(answer="E")), "bad_answer", "qa[1].answer", "options A-D"),
    ("lvbench", lvbench_video("v", lvbench_qa(question=MISSING)), "missing_field", "qa[1].question", "non-empty"),
    ("lvbench", lvbench_video("v", "not a qa"), "bad_field", "qa[1]", "an object"),
])
def test_bad_row_is_rejected_and_good_rows_kept(tmp_path: Path, fmt: str, bad_row: dict, reason: str, field: str,
                                                expected: str) -> None:
    """A bad row between two good ones is a RejectedRow naming file, row 2, the field and what was expected."""
    good = {"cgbench": cgbench_row, "videomme": videomme_row, "lvbench": lvbench_video}[fmt]()
    questions, rejected = read_annotations(write(tmp_path, f"{fmt}.jsonl", [good, bad_row, good]), fmt)
    assert [question.row for question in questions] == [1, 3]
    assert [(row.row, row.reason) for row in rejected] == [(2, reason)]
    assert rejected[0].detail.startswith(f"{fmt}.jsonl row 2: field {field}=")
    assert expected in rejected[0].detail


def test_lvbench_bad_question_keeps_the_others_of_its_video(tmp_path: Path) -> None:
    """One bad qa of a video is rejected at the video's line; the video's other questions are still read."""
    video = lvbench_video("vid-9", lvbench_qa(uid="1"), lvbench_qa(uid="2", answer="F"), lvbench_qa(uid="3"))
    questions, rejected = read_annotations(write(tmp_path, "lv.jsonl", [lvbench_video("vid-1"), video]), "lvbench")
    assert [(question.row, question.video_uid, question.question_id) for question in questions] == [
        (1, "vid-1", "1"), (2, "vid-9", "1"), (2, "vid-9", "3")]
    assert [(row.row, row.reason) for row in rejected] == [(2, "bad_answer")]
    assert rejected[0].detail.startswith("lv.jsonl row 2: field qa[2].answer='F': expected")


def test_jsonl_rows_are_line_numbers_and_bad_lines_rejected(tmp_path: Path) -> None:
    """Blank lines are skipped but counted; a line that is not JSON, or not an object, is rejected as bad_json."""
    lines = [cgbench_row(qid=1), "", "{not json", "[1, 2]", "   ", cgbench_row(qid=6)]
    questions, rejected = read_annotations(write(tmp_path, "cg.jsonl", lines), "cgbench")
    assert [(question.row, question.question_id) for question in questions] == [(1, "1"), (6, "6")]
    assert [(row.row, row.reason) for row in rejected] == [(3, "bad_json"), (4, "bad_json")]
    assert rejected[0].detail == "cg.jsonl row 3: field line='{not json': expected one JSON object per line"
    assert rejected[1].detail == "cg.jsonl row 4: field row=[1, 2]: expected a JSON object"


def test_json_list_item_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    """An item of a JSON list that is not an object is rejected at its 1-based position; the others are read."""
    questions, rejected = read_annotations(write(tmp_path, "cg.json", ["oops", cgbench_row()]), "cgbench")
    assert [question.row for question in questions] == [2]
    assert rejected == [RejectedRow(1, "bad_json", "cg.json row 1: field row='oops': expected a JSON object")]


def test_long_bad_value_is_truncated_in_detail(tmp_path: Path) -> None:
    """A long bad value is cut to about 80 characters in the detail, ending in an ellipsis."""
    path = write(tmp_path, "cg.json", [cgbench_row(video_uid="x/" + "y" * 500)])
    [rejected] = read_annotations(path, "cgbench")[1]
    shown = rejected.detail.split("field video_uid=", 1)[1].split(": expected", 1)[0]
    assert len(shown) == 80 and shown.endswith("...")


@pytest.mark.parametrize(("name", "content", "fmt", "phrases"), [
    ("absent.json", None, "cgbench", ["absent.json", "cannot read"]),
    ("cg.json", "[]", "cgbench-v2", ["cg.json", "'cgbench-v2'", "registered: cgbench, lvbench, videomme"]),
    ("cg.json", '{"rows": []}', "cgbench", ["cg.json", "top level is a dict", "JSON list"]),
    ("cg.json", "[{]", "cgbench", ["cg.json", "not JSON"]),
    ("cg.parquet", "not parquet", "cgbench", ["cg.parquet", "cannot read"]),
    ("cg.csv", "a,b", "cgbench", ["cg.csv", ".json, .jsonl or .parquet"]),
])
def test_unreadable_file_raises(tmp_path: Path, name: str, content: str | None, fmt: str, phrases: list) -> None:
    """A file that cannot be read at all raises AnnotationError naming the file and what was expected."""
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(AnnotationError) as raised:
        read_annotations(path, fmt)
    assert all(phrase in str(raised.value) for phrase in phrases), str(raised.value)


@pytest.mark.parametrize(("fmt", "rows", "missing"), [
    ("cgbench", [{"video_uid": "v", "question": "q", "right_answer": "A"}], "['choices']"),
    ("videomme", [{"question": "q", "options": ["A. a", "B. b"], "answer": "A"}], "['videoID']"),
    ("lvbench", [{"key": "v"}], "['qa']"),
])
def test_parquet_without_required_columns_raises(tmp_path: Path, fmt: str, rows: list, missing: str) -> None:
    """A parquet file without a format's required columns raises AnnotationError naming the missing ones."""
    with pytest.raises(AnnotationError, match=r"without the \w+ columns (.*)") as raised:
        read_annotations(write(tmp_path, f"{fmt}.parquet", rows), fmt)
    assert missing in str(raised.value) and f"{fmt}.parquet" in str(raised.value)


@pytest.mark.parametrize("fmt", FORMAT_NAMES)
def test_every_format_reads_an_empty_file(tmp_path: Path, fmt: str) -> None:
    """Each listed format is accepted and an empty JSON list reads to no questions and no rejects."""
    assert read_annotations(write(tmp_path, "empty.json", []), fmt) == ([], [])


def test_formats_are_one_registry() -> None:
    """FORMAT_NAMES lists the registered formats; a second format of a name is refused, an unknown one listed."""
    assert FORMAT_NAMES == ("cgbench", "videomme", "lvbench")
    with pytest.raises(ValueError, match="'cgbench' is already registered .by _cgbench"):
        register_format("cgbench", ("question",))(lambda record, row: [])
    with pytest.raises(AnnotationError, match="x.json: unknown annotation format 'mvbench'; registered: cgbench, "
                                              "lvbench, videomme"):
        read_annotations("x.json", "mvbench")
