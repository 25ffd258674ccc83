"""`python -m launch compare A.json B.json`: two results.json side by side, cell by cell.

Both runs are real run folders turned into results.json by `tools.agent.eval_report.write_report`, at width 2
and 80 s ((1, 1) is [0, 20] s, (1, 1, 1) is [0, 10] s). Eight questions each:

    id   A            B            A category  B category
    q1-4 right        right        counting    counting
    q5   wrong        right        counting    counting
    q6   wrong        wrong        ocr         temporal
    q7   wrong        wrong        ocr         temporal
    q8   failed       right        ocr         temporal

A: 4/8 = 50% strict, 4/7 = 57.14% of evaluated. B: 6/8 = 75%, 6/8 of evaluated.
Paired over the 7 questions both finished (q1-q7): both right 4 (q1-q4), only A right 0, only B right 1
(q5), both wrong 2 (q6, q7).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from launch import cli, compare
from tools.agent.eval_report import write_report
from tools.environment.actions import parse_turn
from tools.environment.trajectory import Trajectory, TrajectoryTurn, write_trajectories

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OPTIONS = ("a cup", "a plate", "a knife", "a spoon")


def turn(text: str, observation: str = "Caption: a kitchen.") -> TrajectoryTurn:
    """A served turn with the parser's action."""
    return TrajectoryTurn(text, parse_turn(text).action.to_dict(), observation, True)


def run_trajectory(qid: str, right: bool, calls: list[str], clues: list, seconds: float, tokens: dict) -> Trajectory:
    """One finished question: `calls` then the answer (ground truth A; a wrong answer is B)."""
    turns = [turn(f"<think>look</think><tool>{call}</tool>") for call in calls]
    answer = "A" if right else "B"
    turns.append(TrajectoryTurn(f"<think>done</think><answer>{answer}</answer>",
                                parse_turn(f"<think>d</think><answer>{answer}</answer>").action.to_dict(), "", True))
    return Trajectory(id=qid, data_source="lvbench", video_uid="v", question="What is on the table?",
                      options=OPTIONS, ground_truth="A", width=2, duration=80.0,
                      clue_intervals=tuple(tuple(c) for c in clues), turns=tuple(turns), answer=answer,
                      correct=right, timings={"total_s": seconds, "model_s": seconds / 2}, tokens=tokens)


def make_results(folder: Path, outcomes: dict[str, bool | None], categories: dict[str, str], calls: list[str],
                 clues: list, seconds: float, tokens: dict) -> Path:
    """A run folder (None: the question failed) and its results.json."""
    folder.mkdir(parents=True)
    write_trajectories(folder / "trajectories.jsonl",
                       [run_trajectory(qid, right, calls, clues, seconds, tokens)
                        for qid, right in outcomes.items() if right is not None])
    (folder / "questions.jsonl").write_text("".join(json.dumps({"id": qid, "categories": [categories[qid]]}) + "\n"
                                                    for qid in outcomes))
    (folder / "errors.jsonl").write_text("".join(json.dumps({"id": qid, "kind": "timeout", "message": "m",
                                                             "turns": 0, "time": "t"}) + "\n"
                                                 for qid, right in outcomes.items() if right is None))
    write_report(folder, "lvbench", "eval")
    return folder / "results.json"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, Path]:
    """(A, B) results.json of the runs in the module docstring."""
    root = tmp_path_factory.mktemp("compare")
    a = make_results(root / "a", {"q1": True, "q2": True, "q3": True, "q4": True, "q5": False, "q6": False,
                                  "q7": False, "q8": None},
                     {**dict.fromkeys(["q1", "q2", "q3", "q4", "q5"], "counting"),
                      **dict.fromkeys(["q6", "q7", "q8"], "ocr")},
                     ["get_caption((1, 1))"], [], 10.0, {"prompt": 1000, "completion": 50})
    b = make_results(root / "b", {"q1": True, "q2": True, "q3": True, "q4": True, "q5": True, "q6": False,
                                  "q7": False, "q8": True},
                     {**dict.fromkeys(["q1", "q2", "q3", "q4", "q5"], "counting"),
                      **dict.fromkeys(["q6", "q7", "q8"], "temporal")},
                     ["get_caption((1, 1))", "get_caption((1, 1, 1))"], [[0.0, 10.0]], 12.5,
                     {"prompt": 1200, "completion": 80})
    return a, b


def expected_lines(a: Path, b: Path) -> list[str]:
    """The whole rendered comparison, by hand."""
    return [
        f"A: {a} (lvbench)", f"B: {b} (lvbench)", "",
        "| metric | A | B | B - A |", "|---|---|---|---|",
        "| accuracy (strict) | 50.00% | 75.00% | +25.00% |",
        # 4/7 = 0.571429; 0.75 - 0.571429 = 0.178571
        "| accuracy of evaluated | 57.14% | 75.00% | +17.86% |",
        "| questions | 8 | 8 | +0 |",
        "| failed | 1 | 0 | -1 |",
        # A: one call and the answer; B: two calls and the answer.
        "| turns (mean) | 2.000 | 3.000 | +1.000 |",
        "| tool calls (mean) | 1.000 | 2.000 | +1.000 |",
        "| get_caption calls (mean) | 1.000 | 2.000 | +1.000 |",
        "| video_qa calls (mean) | 0.000 | 0.000 | +0.000 |",
        "| invalid turns (mean) | 0.000 | 0.000 | +0.000 |",
        # A has no clue intervals; B visits [0, 20] for the clue [0, 10]: coverage 1, precision 0.5, F1 2/3.
        "| location F1 (mean) | n/a | 0.667 | n/a |",
        "| seconds per question (mean) | 10.000 | 12.500 | +2.500 |",
        "| prompt tokens per question | 1000.000 | 1200.000 | +200.000 |",
        "| completion tokens per question | 50.000 | 80.000 | +30.000 |",
        "",
        "| category | A | B | B - A |", "|---|---|---|---|",
        # A counting: q1-q4 right, q5 wrong = 80%; B counting 5/5.
        "| counting | 80.00% | 100.00% | +20.00% |",
        # ocr only in A (q8 failed counts wrong: 0/3); temporal only in B (q8 right: 1/3).
        "| ocr | 0.00% | n/a | n/a |",
        "| temporal | n/a | 33.33% | n/a |",
        "",
        "Questions both finished: 7; both right 4, only A right 0, only B right 1, both wrong 2",
    ]


def test_compare_in_process(results, capsys) -> None:
    """`launch.cli.main(["compare", A, B])` prints exactly the hand-made table."""
    a, b = results
    assert cli.main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == expected_lines(a, b)
    assert out.out.endswith("\n") and out.err == ""


def test_compare_swapped(results, capsys) -> None:
    """B against A: every delta flips sign, and only-A and only-B swap."""
    a, b = results
    assert cli.main(["compare", str(b), str(a)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| accuracy (strict) | 75.00% | 50.00% | -25.00% |" in lines
    assert "| failed | 0 | 1 | +1 |" in lines
    assert "| ocr | n/a | 0.00% | n/a |" in lines
    assert lines[-1] == "Questions both finished: 7; both right 4, only A right 1, only B right 0, both wrong 2"


def test_compare_as_a_subprocess(results) -> None:
    """The real entry point: `python -m launch compare A B` from the project root."""
    a, b = results
    done = subprocess.run([sys.executable, "-m", "launch", "compare", str(a), str(b)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected_lines(a, b)


def test_absent_or_non_numeric_metrics_show_na(results) -> None:
    """A metric a results.json lacks (an older writer), or holds as a non-number (a bool, a string), is n/a."""
    a, b = (json.loads(path.read_text()) for path in results)
    del a["tokens_per_question"]
    a["failed"], a["turns"]["mean"], a["questions"] = True, "2", 8.0
    lines = compare.render(a, b, "a", "b").splitlines()
    assert "| failed | n/a | 0 | n/a |" in lines
    assert "| turns (mean) | n/a | 3.000 | n/a |" in lines
    assert "| prompt tokens per question | n/a | 1200.000 | n/a |" in lines
    # An integer metric written as a float is shown with %g.
    assert "| questions | 8 | 8 | +0 |" in lines


def test_compare_is_a_listed_utility() -> None:
    """`compare` is in the utilities the launcher dispatches and lists in its help."""
    assert cli.UTILITIES["compare"][0] == "launch.compare"
    assert "compare" in cli.usage()


# name: (what each per_question row holds in A and B, expected paired counts)
PAIRED_ROWS = {
    "disjoint_ids": ({"x": True}, {"y": True}, {"shared": 0, "both right": 0, "only A right": 0,
                                                "only B right": 0, "both wrong": 0}),
    "one_of_each": ({"p": True, "q": True, "r": False, "s": False, "a_only": True},
                    {"p": True, "q": False, "r": True, "s": False, "b_only": False},
                    {"shared": 4, "both right": 1, "only A right": 1, "only B right": 1, "both wrong": 1}),
    "only_a_twice": ({"p": True, "q": True, "r": False}, {"p": False, "q": False, "r": True},
                     {"shared": 3, "both right": 0, "only A right": 2, "only B right": 1, "both wrong": 0}),
}


@pytest.mark.parametrize("name", PAIRED_ROWS)
def test_paired(name: str) -> None:
    """The paired counts are over the ids both runs finished."""
    first, second, expected = PAIRED_ROWS[name]
    rows = lambda outcomes: {"per_question": [{"id": k, "correct": v} for k, v in outcomes.items()]}  # noqa: E731
    assert compare.paired(rows(first), rows(second)) == expected


# ---------------------------------------------------------------------------------------------------------------
# Bad input: exit code 2, and stderr names the file and what is wrong.
# ---------------------------------------------------------------------------------------------------------------

def bad_file(tmp_path: Path, kind: str, results: tuple[Path, Path]) -> tuple[Path, str]:
    """A file that is not a results.json, and what the error must say about it."""
    path = tmp_path / f"{kind}.json"
    if kind == "missing":
        return path, "cannot read it as JSON"
    if kind == "not_json":
        path.write_text("accuracy: 0.5\n")
        return path, "cannot read it as JSON"
    if kind == "a_list":
        path.write_text("[1, 2]\n")
        return path, "missing accuracy, questions, per_question, per_category"
    data = json.loads(results[0].read_text())
    del data["per_question"]
    path.write_text(json.dumps(data))
    return path, "missing per_question)"


@pytest.mark.parametrize("kind", ["missing", "not_json", "a_list", "no_per_question"])
@pytest.mark.parametrize("position", ["A", "B"])
def test_bad_input(tmp_path, results, capsys, kind: str, position: str) -> None:
    """A missing file, text that is not JSON, JSON that is not an object, a results.json without per_question."""
    path, message = bad_file(tmp_path, kind, results)
    argv = [str(path), str(results[1])] if position == "A" else [str(results[0]), str(path)]
    assert cli.main(["compare", *argv]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith(f"error: {path}: ") and message in out.err


def test_bad_input_as_a_subprocess(tmp_path, results) -> None:
    """The exit code of the real entry point is 2 too."""
    path, message = bad_file(tmp_path, "no_per_question", results)
    done = subprocess.run([sys.executable, "-m", "launch", "compare", str(results[0]), str(path)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and str(path) in done.stderr and message in done.stderr


def test_binary_file(tmp_path, results, capsys) -> None:
    """A binary file (results.png passed by mistake) is bad input like any other: exit 2, the file named."""
    path = results[0].parent / "results.png"
    assert cli.main(["compare", str(path), str(results[1])]) == 2
    assert f"error: {path}: " in capsys.readouterr().err
