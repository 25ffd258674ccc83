"""The evaluation report (`tools.agent.eval_report`): every metric of a run, checked by hand on a small run folder.

The geometry used throughout: width 2 and 80 s, so a high segment lasts 40 s, a medium one 20 s and a
low one (leaf) 10 s: (1, 2) is [20, 40] s, (1, 2, 1) is [20, 30] s, (2, 1) is [40, 60] s. Turns are
written as the model writes them, with the action the parser gives (`parse_turn(text).action.to_dict()`)
and an observation without turn tags, as `tools.agent.loop` stores them. Tables are open-r1 style: one
row per case, named by what it checks.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tools.agent import eval_report
from tools.agent.eval_report import location_f1, markdown, question_metrics, summarize, summary_lines, write_report
from tools.environment.actions import parse_turn
from tools.environment.prompts import tool_failure_observation
from tools.environment.trajectory import Trajectory, TrajectoryError, TrajectoryTurn, write_trajectories

WIDTH, DURATION = 2, 80.0
OPTIONS = ("a cup", "a plate", "a knife", "a spoon")


def step(tool: str | None = None, *, answer: str | None = None, valid: bool = True,
         observation: str = "Caption: a person walks into the kitchen.") -> TrajectoryTurn:
    """One stored turn: `<think>..</think><tool>{tool}</tool>` (or an answer), its parsed action and observation."""
    text = f"<think>look closer</think><tool>{tool}</tool>" if answer is None else \
        f"<think>I know it</think><answer>{answer}</answer>"
    parsed = parse_turn(text)
    action = parsed.action.to_dict() if parsed.action is not None else parsed.error.to_dict()
    # The agent loop stores no observation after the answer turn.
    return TrajectoryTurn(text, action, "" if answer is not None else observation, valid)


def trajectory(qid: str, turns: list[TrajectoryTurn], *, ground_truth: str = "A", answer: str | None = None,
               clues: tuple = (), timings: dict | None = None, tokens: dict | None = None) -> Trajectory:
    """A trajectory of question `qid` at width 2 and 80 s; correct exactly when `answer` is the ground truth."""
    return Trajectory(id=qid, data_source="lvbench", video_uid=f"video-{qid}", question="What is on the table?",
                      options=OPTIONS, ground_truth=ground_truth, width=WIDTH, duration=DURATION,
                      clue_intervals=tuple(tuple(map(float, c)) for c in clues), turns=tuple(turns), answer=answer,
                      correct=answer == ground_truth, timings=timings or {}, tokens=tokens or {})


# ---------------------------------------------------------------------------------------------------------------
# The hand-checked run: 7 questions + 2 rejected rows = 9; q1..q5 finished, q6 and q7 failed.
# ---------------------------------------------------------------------------------------------------------------

def hand_run() -> tuple[list[dict], list[Trajectory], list[dict], list[dict]]:
    """(questions, trajectories, errors, rejected) of the hand-checked run."""
    questions = [{"id": "q1", "categories": ["counting", "temporal"]}, {"id": "q2", "categories": ["counting"]},
                 {"id": "q3", "categories": ["temporal"]}, {"id": "q4", "categories": ["action"]},
                 {"id": "q5", "categories": ["action", "counting"]},
                 {"id": "q6", "categories": ["temporal", "counting"]}, {"id": "q7", "categories": ["action"]}]
    trajectories = [
        # q1, correct: medium (1, 2) = [20, 40], then its leaf (1, 2, 1) = [20, 30]; 2 calls, 3 turns.
        trajectory("q1", [step("get_caption((1, 2))"), step("get_caption((1, 2, 1))"), step(answer="B")],
                   ground_truth="B", answer="B", clues=[(22, 28)],
                   timings={"total_s": 10.0, "model_s": 6.0, "get_caption_s": 3.0},
                   tokens={"prompt": 1000, "completion": 100}),
        # q2, wrong: leaf (1, 1, 1) = [0, 10], video_qa on it (served: its caption was read), an out-of-range
        # call (3, 1) the tool refused; 3 calls, 4 turns.
        trajectory("q2", [step("get_caption((1, 1, 1))"), step('video_qa((1, 1, 1), "what is on the table?")'),
                          step("get_caption((3, 1))", valid=False, observation="h=3 is out of range"),
                          step(answer="A")],
                   ground_truth="C", answer="A", clues=[(0, 4), (7, 10), (50, 60)],
                   timings={"total_s": 20.0, "model_s": 12.0, "get_caption_s": 4.0, "video_qa_s": 2.0},
                   tokens={"prompt": 2000, "completion": 200}),
        # q3, correct, no clue intervals: (2, 2), (2, 2, 2), video_qa (2, 2, 2); 3 calls, 4 turns.
        trajectory("q3", [step("get_caption((2, 2))"), step("get_caption((2, 2, 2))"),
                          step('video_qa((2, 2, 2), "who is there?")'), step(answer="D")],
                   ground_truth="D", answer="D",
                   timings={"total_s": 30.0, "model_s": 18.0, "get_caption_s": 5.0, "video_qa_s": 5.0},
                   tokens={"prompt": 1500, "completion": 300}),
        # q4, no answer (the turn budget ran out): (2, 1) twice, then video_qa on an unread leaf (refused).
        trajectory("q4", [step("get_caption((2, 1))"), step("get_caption((2, 1))"),
                          step('video_qa((2, 2, 1), "who?")', valid=False, observation="read its caption first")],
                   ground_truth="A", answer=None, clues=[(55, 70)],
                   timings={"total_s": 40.0, "model_s": 24.0, "get_caption_s": 6.0},
                   tokens={"prompt": 2500, "completion": 400}),
        # q5, correct at once: no tool call, 1 turn; no model_s timing and no tokens recorded (count as 0).
        trajectory("q5", [step(answer="C")], ground_truth="C", answer="C", clues=[(10, 20)],
                   timings={"total_s": 100.0}),
    ]
    errors = [
        # q2 failed once, then a rerun finished it: not counted.
        {"id": "q2", "kind": "timeout", "message": "deadline", "turns": 1, "time": "2025-01-01T00:00:00"},
        {"id": "q6", "kind": "connection", "message": "refused", "turns": 0, "time": "2025-01-01T00:00:01"},
        {"id": "q7", "kind": "timeout", "message": "deadline", "turns": 2, "time": "2025-01-01T00:00:02"},
        # q6's latest error: the one that counts.
        {"id": "q6", "kind": "http", "message": "500", "turns": 3, "time": "2025-01-01T00:01:00"},
    ]
    rejected = [{"row": 8, "reason": "caption_tree", "detail": "no caption tree"},
                {"row": 9, "id": "q9", "reason": "duplicate_id", "detail": "question id 'q9' appears earlier"}]
    return questions, trajectories, errors, rejected


# Location F1 by hand (coverage = shared / clue time, precision = shared / visited time, F1 = 2cp / (c + p)):
# q1: visited (1, 2) ∪ (1, 2, 1) = [20, 40] ∪ [20, 30] = [20, 40] (20 s); clue [22, 28] (6 s); shared 6 s;
#     coverage 6/6 = 1, precision 6/20 = 0.3; F1 = 2 * 0.3 / 1.3 = 0.461538...
# q2: visited (1, 1, 1) ∪ video_qa (1, 1, 1) = [0, 10] (the refused (3, 1) is no visit); clues [0, 4] and [7, 10]
#     are 3 s apart (< 5 s) so merge into [0, 10]; [50, 60] stays alone: clue time 20 s; shared 10 s;
#     coverage 10/20 = 0.5, precision 10/10 = 1; F1 = 2 * 0.5 / 1.5 = 0.666667.
# q3: no clue intervals: None, left out of the mean.
# q4: visited (2, 1) = [40, 60] (twice, counted once; the refused video_qa is no visit); clue [55, 70] (15 s);
#     shared [55, 60] = 5 s; coverage 5/15 = 1/3, precision 5/20 = 1/4; F1 = (2/12) / (7/12) = 2/7 = 0.285714.
# q5: nothing visited; clue [10, 20]; F1 = 0.
# mean over the 4 questions with clues: (0.461538 + 0.666667 + 0.285714 + 0) / 4 = 1.413919 / 4 = 0.353480
F1_BY_ID = {"q1": 0.461538, "q2": 0.666667, "q3": None, "q4": 0.285714, "q5": 0.0}


def test_hand_checked_summary() -> None:
    """Every headline number of the hand-checked run, computed by hand."""
    report = summarize(*hand_run())
    assert report["questions"] == 9  # 7 questions + 2 rejected rows
    assert report["evaluated"] == 5
    assert report["correct"] == 3  # q1, q3, q5
    assert report["accuracy"] == 0.333333  # 3 / 9: failed and rejected questions count as wrong
    assert report["accuracy_of_evaluated"] == 0.6  # 3 / 5
    assert report["answered"] == 4  # q4 gave no answer
    assert report["failed"] == 2  # q6, q7
    assert report["rejected"] == 2
    # Latest error per unfinished id: q6 http (its earlier connection error is replaced), q7 timeout; q2 finished.
    assert report["errors_by_kind"] == {"http": 1, "timeout": 1}
    assert report["per_category"] == {
        # q4 wrong, q5 right, q7 failed
        "action": {"questions": 3, "correct": 1, "accuracy": 0.333333},
        # q1 right, q2 wrong, q5 right, q6 failed
        "counting": {"questions": 4, "correct": 2, "accuracy": 0.5},
        # q1 right, q3 right, q6 failed
        "temporal": {"questions": 3, "correct": 2, "accuracy": 0.666667},
    }
    assert list(report["per_category"]) == ["action", "counting", "temporal"]
    # turns: q1 3, q2 4, q3 4, q4 3, q5 1 -> [1, 3, 3, 4, 4]
    assert report["turns"] == {"mean": 3.0, "median": 3, "p90": 4, "histogram": {1: 1, 3: 2, 4: 2}}
    # tool calls (the answer turn is not one): q1 2, q2 3, q3 3, q4 3, q5 0 -> [0, 2, 3, 3, 3]
    assert report["tool_calls"] == {"mean": 2.2, "median": 3, "p90": 3, "histogram": {0: 1, 2: 1, 3: 3}}
    # served get_caption: q1 2, q2 1 (the refused (3, 1) is not one), q3 2, q4 2, q5 0
    assert report["get_caption_calls"] == {"mean": 1.4, "median": 2, "p90": 2}
    # served video_qa: q2 1, q3 1 (q4's refused one is not served)
    assert report["video_qa_calls"] == {"mean": 0.4, "median": 0, "p90": 1}
    assert report["invalid_turns"] == {"mean": 0.4, "median": 0, "p90": 1}
    assert report["location_f1"] == {"mean": 0.35348, "questions": 4}
    # seconds [10, 20, 30, 40, 100]; model [6, 12, 18, 24, 0]; tool (caption + video_qa) [3, 6, 10, 6, 0]
    assert report["seconds_per_question"] == {"mean": 40.0, "median": 30.0, "p90": 100.0}
    assert report["model_seconds_per_question"] == {"mean": 12.0, "median": 12.0, "p90": 24.0}
    assert report["tool_seconds_per_question"] == {"mean": 5.0, "median": 6.0, "p90": 10.0}
    # Per served call: get_caption 3 + 4 + 5 + 6 s over 2 + 1 + 2 + 2 calls; video_qa 2 + 5 s over 1 + 1 calls.
    assert report["tool_ms_per_call"] == {"get_caption": 2571.429, "video_qa": 3500.0}
    # prompt [1000, 2000, 1500, 2500, 0], completion [100, 200, 300, 400, 0]
    assert report["tokens_per_question"] == {"prompt": 1400.0, "completion": 200.0}
    # 0 calls: q5 right; 2 calls: q1 right; 3 calls: q2 wrong, q3 right, q4 wrong
    assert report["accuracy_by_tool_calls"] == {0: {"questions": 1, "accuracy": 1.0},
                                                2: {"questions": 1, "accuracy": 1.0},
                                                3: {"questions": 3, "accuracy": 0.333333}}
    assert [row["id"] for row in report["per_question"]] == ["q1", "q2", "q3", "q4", "q5"]
    assert {row["id"]: row["location_f1"] for row in report["per_question"]} == F1_BY_ID


def test_hand_checked_question_row() -> None:
    """One per-question row in full: q2, whose refused call is a tool call and an invalid turn but no visit."""
    _, trajectories, _, _ = hand_run()
    assert question_metrics(trajectories[1]) == {
        "id": "q2", "correct": False, "answer": "A", "ground_truth": "C", "turns": 4, "tool_calls": 3,
        "get_caption_calls": 1, "video_qa_calls": 1, "invalid_turns": 1, "visited": [[1, 1, 1], [1, 1, 1]],
        "location_f1": 0.666667, "seconds": 20.0, "model_seconds": 12.0, "tool_seconds": 6.0,
        "get_caption_seconds": 4.0, "video_qa_seconds": 2.0,
        "prompt_tokens": 2000, "completion_tokens": 200}
    row = question_metrics(trajectories[4])
    assert (row["turns"], row["tool_calls"], row["visited"], row["model_seconds"], row["tool_seconds"],
            row["prompt_tokens"], row["completion_tokens"]) == (1, 0, [], 0.0, 0.0, 0, 0)


def test_error_of_a_finished_question_is_never_counted() -> None:
    """An id that later finished has no error, however many it had; the latest of the others counts once."""
    questions, trajectories, _, rejected = hand_run()
    errors = [{"id": "q1", "kind": "timeout"}, {"id": "q1", "kind": "http"}, {"id": "q6", "kind": "http"},
              {"id": "q6", "kind": "empty_reply"}, {"id": "q7", "kind": "empty_reply"}]
    assert summarize(questions, trajectories, errors, rejected)["errors_by_kind"] == {"empty_reply": 2}
    assert summarize(questions, trajectories, [], rejected)["errors_by_kind"] == {}


def test_trajectories_of_questions_outside_the_question_set() -> None:
    """Whatever else the folder holds, strict accuracy stays in [0, 1] and no count of failures is negative."""
    questions = [{"id": "q1", "categories": ["counting"]}]
    extra = [trajectory("q1", [step(answer="A")], answer="A"), trajectory("q2", [step(answer="A")], answer="A")]
    report = summarize(questions, extra, [], [])
    assert report["correct"] <= report["questions"]
    assert 0.0 <= report["accuracy"] <= 1.0
    assert report["failed"] >= 0


@pytest.mark.parametrize("count", range(1, 42))
def test_stats_p90_is_the_higher_order_statistic(count: int) -> None:
    """p90 is the sample at or above the 90th percentile (numpy's method='higher'); mean and median as statistics."""
    values = [float(3 * v % 17 + v) for v in range(count)]  # not sorted, with repeats for some counts
    stats = eval_report._stats(values)
    assert stats["p90"] == pytest.approx(float(np.percentile(values, 90, method="higher")))
    assert stats["median"] == pytest.approx(float(np.median(values)))
    assert stats["mean"] == pytest.approx(round(float(np.mean(values)), 4))


def test_stats_p90_of_ten_and_of_eleven() -> None:
    """Concretely: of 1..10 the p90 is 10 (rank 0.9 * 10 = 9, 0-based), of 1..11 it is 10, of 1..20 it is 19."""
    assert eval_report._stats([float(v) for v in range(10, 0, -1)]) == {"mean": 5.5, "median": 5.5, "p90": 10.0}
    assert eval_report._stats([float(v) for v in range(1, 12)])["p90"] == 10.0
    assert eval_report._stats([float(v) for v in range(1, 21)])["p90"] == 19.0
    assert eval_report._stats([]) == {"mean": 0.0, "median": 0.0, "p90": 0.0}


# ---------------------------------------------------------------------------------------------------------------
# location_f1, table-driven
# ---------------------------------------------------------------------------------------------------------------

# name: (turns, clue intervals, expected F1). (1, 1) is [0, 20], (1, 1, 2) is [10, 20].
LOCATION_ROWS = {
    "no_visit": ([step(answer="A")], [(10, 20)], 0.0),
    "exact_leaf_visit": ([step("get_caption((1, 1, 2))"), step(answer="A")], [(10, 20)], 1.0),
    # coverage 10/10 = 1, precision 10/20 = 0.5: F1 = 2 * 0.5 / 1.5
    "medium_covers_the_clue": ([step("get_caption((1, 1))"), step(answer="A")], [(10, 20)], 2 / 3),
    # [10, 13] and [16, 20] are 3 s apart: merged into [10, 20], which the leaf covers exactly.
    "clues_closer_than_5s_merge": ([step("get_caption((1, 1, 2))"), step(answer="A")], [(10, 13), (16, 20)], 1.0),
    # [10, 12] and [17, 20] are exactly 5 s apart: not merged; clue time 5 s, visited 10 s: F1 = 2 * 0.5 / 1.5
    "clues_5s_apart_stay_apart": ([step("get_caption((1, 1, 2))"), step(answer="A")], [(10, 12), (17, 20)], 2 / 3),
    "clue_elsewhere": ([step("get_caption((2, 2, 2))"), step(answer="A")], [(10, 20)], 0.0),
    # The transcript is judged again by the tool's rules: a stored valid=False on a call the rules serve still
    # counts as a visit ...
    "stored_invalid_but_served_by_the_rules": ([step("get_caption((1, 1, 2))", valid=False), step(answer="A")],
                                               [(10, 20)], 1.0),
    # ... and a stored valid=True on a call the rules refuse (video_qa before its caption) does not.
    "stored_valid_but_refused_by_the_rules": ([step('video_qa((1, 1, 2), "what?")', valid=True), step(answer="A")],
                                              [(10, 20)], 0.0),
    "video_qa_after_its_caption": ([step("get_caption((1, 1, 1))"), step('video_qa((1, 1, 1), "what?")'),
                                    step(answer="A")], [(0, 10)], 1.0),
    "out_of_range_id": ([step("get_caption((3, 1))", valid=False), step(answer="A")], [(0, 10)], 0.0),
    "turn_after_the_answer": ([step(answer="A"), step("get_caption((1, 1, 2))")], [(10, 20)], 0.0),
    # Clues are clipped to the video: [70, 95] is [70, 80], the leaf (2, 2, 2) exactly.
    "clue_clipped_to_the_video": ([step("get_caption((2, 2, 2))"), step(answer="A")], [(70, 95)], 1.0),
}


@pytest.mark.parametrize("name", LOCATION_ROWS)
def test_location_f1(name: str) -> None:
    """location_f1 re-judges the transcript (`judge_rollout`) by the rules: ids in range at the width, video_qa
    only on a leaf read earlier, nothing after the answer. It ignores the stored `valid` flags, unlike the
    per-question call counts, which trust them."""
    turns, clues, expected = LOCATION_ROWS[name]
    assert location_f1(trajectory("q", turns, clues=clues)) == pytest.approx(expected, abs=1e-12)


def test_location_f1_without_clues_is_none() -> None:
    """No clue intervals: None (no location term), whatever was visited."""
    assert location_f1(trajectory("q", [step("get_caption((1, 1, 2))"), step(answer="A")])) is None


def test_stored_valid_flag_drives_the_call_counts() -> None:
    """The counts trust the stored flag: a call stored as refused is not a get_caption call, nor visited."""
    row = question_metrics(trajectory("q", [step("get_caption((1, 1, 2))", valid=False), step(answer="A")],
                                      clues=[(10, 20)]))
    assert (row["tool_calls"], row["get_caption_calls"], row["invalid_turns"], row["visited"]) == (1, 0, 1, [])
    assert row["location_f1"] == 1.0


def test_a_failed_call_is_neither_visited_nor_invalid() -> None:
    """A video_qa the tool failed to carry out counts as the reward counts it: a tool call, no visit, no mistake."""
    failure = tool_failure_observation("the VLM at http://vlm:8000/v1 answered HTTP 500")
    row = question_metrics(trajectory("q", [step("get_caption((1, 1, 2))"),
                                            step('video_qa((1, 1, 2), "what?")', valid=False, observation=failure),
                                            step(answer="A")], clues=[(10, 20)]))
    assert (row["tool_calls"], row["video_qa_calls"], row["invalid_turns"], row["visited"]) == (2, 0, 0, [[1, 1, 2]])
    assert row["location_f1"] == 1.0


# ---------------------------------------------------------------------------------------------------------------
# markdown, summary_lines, write_report
# ---------------------------------------------------------------------------------------------------------------

def test_markdown_of_the_hand_checked_run() -> None:
    """The headline table, the failures by kind and the category table, cell by cell."""
    text = markdown({"benchmark": "lvbench", "mode": "eval", **summarize(*hand_run())})
    lines = text.splitlines()
    assert lines[0] == "# eval on lvbench"
    for line in ("| accuracy (strict) | 33.33% (3/9) |", "| accuracy of evaluated | 60.00% of 5 |",
                 "| answered | 4 |", "| failed / rejected | 2 / 2 |", "| turns (mean, median) | 3.00, 3 |",
                 "| tool calls (mean, p90) | 2.20, 3 |", "| get_caption / video_qa calls (mean) | 1.40 / 0.40 |",
                 "| location F1 (mean) | 0.3535 over 4 |", "| seconds per question (mean, p90) | 40.0, 100.0 |",
                 "| tool ms per call: get_caption / video_qa | 2571.4 / 3500.0 |",
                 "Failed questions by kind: http 1, timeout 1",
                 "| category | questions | accuracy |", "| action | 3 | 33.33% |", "| counting | 4 | 50.00% |",
                 "| temporal | 3 | 66.67% |"):
        assert line in lines, line
    assert text.endswith("\n")


def test_markdown_without_clue_intervals() -> None:
    """No question has clues: location F1 is n/a, and neither a failure line nor a category table is shown."""
    run = trajectory("q1", [step("get_caption((1, 1))"), step(answer="A")], answer="A")
    report = summarize([{"id": "q1", "categories": []}], [run], [], [])
    assert report["location_f1"] == {"mean": None, "questions": 0}
    text = markdown(report)
    assert "| location F1 (mean) | n/a (no clue intervals) |" in text.splitlines()
    assert "Failed questions" not in text and "| category |" not in text
    assert "location F1 n/a" in summary_lines(report)[1]


def test_summary_lines() -> None:
    """The two log lines of the hand-checked run."""
    assert summary_lines(summarize(*hand_run())) == [
        "[agent] accuracy 33.33% (3/9, strict); 2 failed, 2 rejected",
        "[agent] turns 3.00, tool calls 2.20, location F1 0.3535, 40.0 s per question"]


def write_run(folder, questions, trajectories, errors, rejected, *, trajectories_file: bool = True) -> None:
    """A run folder as `tools.agent.run` leaves it."""
    folder.mkdir(parents=True, exist_ok=True)
    if trajectories_file:
        write_trajectories(folder / "trajectories.jsonl", trajectories)
    for name, records in (("questions", questions), ("errors", errors), ("rejected", rejected)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))


def png_size(data: bytes) -> tuple[int, int]:
    """The width and height of a PNG from its IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_write_report(tmp_path) -> None:
    """results.json round-trips with every key, results.md holds the headline and the categories, results.png is
    a real 768x480 PNG (6.4 x 4 in at 120 dpi)."""
    write_run(tmp_path, *hand_run())
    report = write_report(tmp_path, "lvbench", "eval")
    saved = json.loads((tmp_path / "results.json").read_text())
    expected_keys = {"benchmark", "mode", "questions", "evaluated", "correct", "accuracy", "accuracy_of_evaluated",
                     "answered", "failed", "rejected", "errors_by_kind", "per_category", "turns", "tool_calls",
                     "get_caption_calls", "video_qa_calls", "invalid_turns", "location_f1", "seconds_per_question",
                     "model_seconds_per_question", "tool_seconds_per_question", "tool_ms_per_call",
                     "tokens_per_question",
                     "accuracy_by_tool_calls", "per_question", "trajectories"}
    assert set(saved) == expected_keys
    assert (saved["benchmark"], saved["mode"], saved["accuracy"], saved["questions"]) == ("lvbench", "eval",
                                                                                           0.333333, 9)
    assert saved["trajectories"] == str((tmp_path / "trajectories.jsonl").absolute())
    # JSON keys are strings: the histogram and by-calls keys come back as "0", "2", "3".
    assert saved["accuracy_by_tool_calls"] == {"0": {"questions": 1, "accuracy": 1.0},
                                               "2": {"questions": 1, "accuracy": 1.0},
                                               "3": {"questions": 3, "accuracy": 0.333333}}
    assert saved["per_question"] == report["per_question"]
    assert saved["location_f1"] == {"mean": 0.35348, "questions": 4}
    assert saved == json.loads(json.dumps(report))
    text = (tmp_path / "results.md").read_text()
    assert text == markdown(report)
    assert "| accuracy (strict) | 33.33% (3/9) |" in text and "| counting | 4 | 50.00% |" in text
    data = (tmp_path / "results.png").read_bytes()
    assert len(data) > 5000 and png_size(data) == (768, 480)


@pytest.mark.parametrize("trajectories_file", [True, False], ids=["empty_file", "no_file"])
def test_write_report_when_every_question_failed(tmp_path, trajectories_file: bool) -> None:
    """No trajectory at all (an empty file, or none): accuracy 0, every question failed, location F1 n/a."""
    questions = [{"id": f"q{i}", "categories": ["counting"]} for i in range(3)]
    errors = [{"id": f"q{i}", "kind": "connection", "message": "refused", "turns": 0, "time": "t"} for i in range(3)]
    write_run(tmp_path, questions, [], errors, [{"row": 4, "reason": "bad", "detail": "x"}],
              trajectories_file=trajectories_file)
    report = write_report(tmp_path, "lvbench", "eval")
    assert (report["questions"], report["evaluated"], report["correct"], report["failed"], report["rejected"]) == \
        (4, 0, 0, 3, 1)
    assert (report["accuracy"], report["accuracy_of_evaluated"], report["answered"]) == (0.0, 0.0, 0)
    assert report["errors_by_kind"] == {"connection": 3}
    assert report["per_category"] == {"counting": {"questions": 3, "correct": 0, "accuracy": 0.0}}
    assert report["location_f1"] == {"mean": None, "questions": 0}
    assert report["turns"] == {"mean": 0.0, "median": 0.0, "p90": 0.0, "histogram": {}}
    assert report["accuracy_by_tool_calls"] == {} and report["per_question"] == []
    text = (tmp_path / "results.md").read_text()
    assert "| accuracy (strict) | 0.00% (0/4) |" in text
    assert "| location F1 (mean) | n/a (no clue intervals) |" in text
    assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_write_report_of_an_empty_question_set(tmp_path) -> None:
    """No question at all: zeros, not a division by zero."""
    write_run(tmp_path, [], [], [], [])
    report = write_report(tmp_path, "lvbench", "eval")
    assert (report["questions"], report["accuracy"], report["per_category"]) == (0, 0.0, {})


def test_write_report_refuses_a_bad_trajectory_line(tmp_path) -> None:
    """A trajectories file that breaks the schema stops the report with the file and line."""
    write_run(tmp_path, [{"id": "q1", "categories": []}], [], [], [])
    (tmp_path / "trajectories.jsonl").write_text('{"id": "q1"}\n')
    with pytest.raises(TrajectoryError, match=r"trajectories\.jsonl:1"):
        write_report(tmp_path, "lvbench", "eval")
    assert not (tmp_path / "results.json").exists()
