"""The report of an agent run: strict accuracy, accuracy per category, turns, tool calls, location F1 and time.

Read from the run's folder (`tools.agent.run` writes it): every question of the benchmark counts,
and one without a correct answer counts as wrong, whether the model gave no answer, its endpoint
failed (`errors.jsonl`) or the question could not be built (`rejected.jsonl`). Location F1 is the
reward's own location component on the transcript, for questions with clue intervals. Writes
`results.json`, `results.md` and `results.png` (accuracy and questions against tool calls).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from rewards.components import location_reward
from rewards.question import answer_key
from rewards.rollout import decoded_rollout, judge_rollout
from tools.environment.prompts import tool_failure_reason
from tools.environment.trajectory import Trajectory, TrajectoryError, read_trajectories

# The files of an agent run's folder: tools.agent.run writes them, this report and the viewer read them.
TRAJECTORIES, ERRORS, QUESTIONS, REJECTED = "trajectories.jsonl", "errors.jsonl", "questions.jsonl", "rejected.jsonl"
RESULTS_JSON, RESULTS_MD, RESULTS_PNG = "results.json", "results.md", "results.png"


def _jsonl(path: Path) -> list[dict]:
    """The objects of a JSONL file (none when it does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def location_f1(trajectory: Trajectory) -> float | None:
    """The reward's location F1 of the transcript as RL would decode it; None without clue intervals."""
    if not trajectory.clue_intervals:
        return None
    steps = [(turn.model, turn.observation) for turn in trajectory.turns]
    question = answer_key(trajectory.ground_truth, trajectory.options, trajectory.width, trajectory.duration,
                          trajectory.clue_intervals)
    return location_reward(judge_rollout(decoded_rollout(steps), trajectory.width), question)


# The fields of a per-question row that measure time: two runs of one script may differ only in these.
TIMING_FIELDS = ("seconds", "model_seconds", "tool_seconds", "get_caption_seconds", "video_qa_seconds")


def question_metrics(trajectory: Trajectory) -> dict:
    """What one question cost and found: turns, calls the tool served, visited segments, location F1, time."""
    served = [turn.action for turn in trajectory.turns if turn.valid and turn.action.get("name") != "answer"]
    timings = trajectory.timings
    f1 = location_f1(trajectory)
    return {"id": trajectory.id, "correct": trajectory.correct, "answer": trajectory.answer,
            "ground_truth": trajectory.ground_truth, "turns": len(trajectory.turns),
            "tool_calls": trajectory.tool_calls(),
            "get_caption_calls": sum(action["name"] == "get_caption" for action in served),
            "video_qa_calls": sum(action["name"] == "video_qa" for action in served),
            # Refused turns, as the reward counts them: a call the tool failed to carry out is no mistake.
            "invalid_turns": sum(not turn.valid and tool_failure_reason(turn.observation) is None
                                 for turn in trajectory.turns),
            "visited": [action["ids"] for action in served],
            "location_f1": None if f1 is None else round(f1, 6),
            "seconds": timings.get("total_s", 0.0), "model_seconds": timings.get("model_s", 0.0),
            "tool_seconds": timings.get("get_caption_s", 0.0) + timings.get("video_qa_s", 0.0),
            "get_caption_seconds": timings.get("get_caption_s", 0.0),
            "video_qa_seconds": timings.get("video_qa_s", 0.0),
            "prompt_tokens": trajectory.tokens.get("prompt", 0),
            "completion_tokens": trajectory.tokens.get("completion", 0)}


# How two runs did on a question both finished, in the order `compare` and the viewer list them.
AGREEMENTS = ("both right", "only A right", "only B right", "both wrong")


def agreement(correct_a: bool, correct_b: bool) -> str:
    """Which of AGREEMENTS two runs' results on one question make."""
    if correct_a:
        return AGREEMENTS[0] if correct_b else AGREEMENTS[1]
    return AGREEMENTS[2] if correct_b else AGREEMENTS[3]


def paired_questions(a: list[dict], b: list[dict]) -> dict[str, str]:
    """Each question both runs' `per_question` rows hold, with its agreement, in A's order."""
    right_b = {row["id"]: row["correct"] for row in b}
    return {row["id"]: agreement(row["correct"], right_b[row["id"]]) for row in a if row["id"] in right_b}


def _ms_per_call(per_question: list[dict], kind: str) -> float | None:
    """Milliseconds the tool took per served call of `kind` (get_caption or video_qa); None without such calls."""
    calls = sum(row.get(f"{kind}_calls", 0) for row in per_question)
    seconds = sum(row.get(f"{kind}_seconds", 0.0) for row in per_question)
    return round(1000 * seconds / calls, 3) if calls else None


def _stats(values: list[float]) -> dict:
    """Mean, median and 90th percentile of `values` (zeros when there are none)."""
    if not values:
        return {"mean": 0.0, "median": 0.0, "p90": 0.0}
    ordered = sorted(values)
    return {"mean": round(statistics.fmean(ordered), 4), "median": round(statistics.median(ordered), 4),
            "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 4)}


def summarize(questions: list[dict], trajectories: list[Trajectory], errors: list[dict], rejected: list[dict]) -> dict:
    """Every metric of the run from its questions, their trajectories, endpoint errors and rejected rows."""
    # Only the question set counts: a resumed run with a narrower set keeps older lines in its file.
    asked = {question["id"] for question in questions}
    per_question = [question_metrics(trajectory) for trajectory in trajectories if trajectory.id in asked]
    by_id = {row["id"]: row for row in per_question}
    total = len(questions) + len(rejected)
    correct = sum(row["correct"] for row in per_question)
    # A question counts once: its latest error, unless a later run finished it.
    last_error = {error["id"]: error for error in errors if error["id"] not in by_id}
    categories: dict[str, Counter] = {}
    for question in questions:
        for category in question["categories"]:
            counts = categories.setdefault(category, Counter())
            counts["questions"] += 1
            counts["correct"] += bool(by_id.get(question["id"], {}).get("correct"))
    calls = Counter(row["tool_calls"] for row in per_question)
    f1s = [row["location_f1"] for row in per_question if row["location_f1"] is not None]
    return {
        "questions": total, "evaluated": len(per_question), "correct": correct,
        "accuracy": round(correct / total, 6) if total else 0.0,
        "accuracy_of_evaluated": round(correct / len(per_question), 6) if per_question else 0.0,
        "answered": sum(row["answer"] is not None for row in per_question),
        "failed": len(questions) - len(per_question), "rejected": len(rejected),
        "errors_by_kind": dict(Counter(error["kind"] for error in last_error.values())),
        "per_category": {name: {"questions": c["questions"], "correct": c["correct"],
                                "accuracy": round(c["correct"] / c["questions"], 6)}
                         for name, c in sorted(categories.items())},
        "turns": {**_stats([row["turns"] for row in per_question]),
                  "histogram": dict(sorted(Counter(row["turns"] for row in per_question).items()))},
        "tool_calls": {**_stats([row["tool_calls"] for row in per_question]), "histogram": dict(sorted(calls.items()))},
        "get_caption_calls": _stats([row["get_caption_calls"] for row in per_question]),
        "video_qa_calls": _stats([row["video_qa_calls"] for row in per_question]),
        "invalid_turns": _stats([row["invalid_turns"] for row in per_question]),
        "location_f1": {"mean": round(statistics.fmean(f1s), 6) if f1s else None, "questions": len(f1s)},
        "seconds_per_question": _stats([row["seconds"] for row in per_question]),
        "model_seconds_per_question": _stats([row["model_seconds"] for row in per_question]),
        "tool_seconds_per_question": _stats([row["tool_seconds"] for row in per_question]),
        "tool_ms_per_call": {kind: _ms_per_call(per_question, kind) for kind in ("get_caption", "video_qa")},
        "tokens_per_question": {"prompt": _stats([row["prompt_tokens"] for row in per_question])["mean"],
                                "completion": _stats([row["completion_tokens"] for row in per_question])["mean"]},
        "accuracy_by_tool_calls": {
            count: {"questions": n, "accuracy": round(sum(row["correct"] for row in per_question
                                                          if row["tool_calls"] == count) / n, 6)}
            for count, n in sorted(calls.items())},
        "per_question": per_question,
    }


def markdown(report: dict) -> str:
    """The report as markdown: the headline table, then accuracy per category."""
    f1 = report["location_f1"]
    rows = [
        ("accuracy (strict)", f"{100 * report['accuracy']:.2f}% ({report['correct']}/{report['questions']})"),
        ("accuracy of evaluated", f"{100 * report['accuracy_of_evaluated']:.2f}% of {report['evaluated']}"),
        ("answered", str(report["answered"])),
        ("failed / rejected", f"{report['failed']} / {report['rejected']}"),
        ("turns (mean, median)", f"{report['turns']['mean']:.2f}, {report['turns']['median']:g}"),
        ("tool calls (mean, p90)", f"{report['tool_calls']['mean']:.2f}, {report['tool_calls']['p90']:g}"),
        ("get_caption / video_qa calls (mean)",
         f"{report['get_caption_calls']['mean']:.2f} / {report['video_qa_calls']['mean']:.2f}"),
        ("location F1 (mean)", "n/a (no clue intervals)" if f1["mean"] is None else
         f"{f1['mean']:.4f} over {f1['questions']}"),
        ("tool ms per call: get_caption / video_qa", " / ".join(
            "n/a" if ms is None else f"{ms:.1f}" for ms in report["tool_ms_per_call"].values())),
        ("seconds per question (mean, p90)",
         f"{report['seconds_per_question']['mean']:.1f}, {report['seconds_per_question']['p90']:.1f}"),
    ]
    lines = [f"# {report.get('mode', 'eval')} on {report.get('benchmark', '?')}", "", "| metric | value |",
             "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    if report["errors_by_kind"]:
        lines += ["", "Failed questions by kind: " + ", ".join(f"{k} {v}" for k, v in report["errors_by_kind"].items())]
    if report["per_category"]:
        lines += ["", "| category | questions | accuracy |", "|---|---|---|"]
        lines += [f"| {name} | {c['questions']} | {100 * c['accuracy']:.2f}% |"
                  for name, c in report["per_category"].items()]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> Path:
    """Accuracy (line) and number of questions (bars) against tool calls, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_calls = report["accuracy_by_tool_calls"]
    counts = [int(count) for count in by_calls]
    figure, questions_axis = plt.subplots(figsize=(6.4, 4.0))
    questions_axis.bar(counts, [by_calls[c]["questions"] for c in by_calls], color="#c7d7ea", label="questions")
    questions_axis.set_xlabel("tool calls")
    questions_axis.set_ylabel("questions")
    accuracy_axis = questions_axis.twinx()
    accuracy_axis.plot(counts, [by_calls[c]["accuracy"] for c in by_calls], "o-", color="#1f4e8c", label="accuracy")
    accuracy_axis.set_ylim(0, 1)
    accuracy_axis.set_ylabel("accuracy")
    questions_axis.set_title(f"{report.get('benchmark', '')}: accuracy {100 * report['accuracy']:.1f}% (strict)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(folder: Path, benchmark: str, mode: str) -> dict:
    """Compute the report of the run in `folder` and write results.json, results.md and results.png there."""
    trajectories = []
    for _, item in read_trajectories(folder / TRAJECTORIES) if (folder / TRAJECTORIES).exists() else []:
        if isinstance(item, TrajectoryError):
            raise item
        trajectories.append(item)
    report = {"benchmark": benchmark, "mode": mode,
              **summarize(_jsonl(folder / QUESTIONS), trajectories, _jsonl(folder / ERRORS), _jsonl(folder / REJECTED)),
              "trajectories": str((folder / TRAJECTORIES).absolute())}
    (folder / RESULTS_JSON).write_text(json.dumps(report, indent=1) + "\n")
    (folder / RESULTS_MD).write_text(markdown(report))
    plot(report, folder / RESULTS_PNG)
    return report


def summary_lines(report: dict) -> list[str]:
    """A few lines for the log: accuracy, turns, calls, location F1 and time."""
    f1 = report["location_f1"]["mean"]
    return [f"[agent] accuracy {100 * report['accuracy']:.2f}% ({report['correct']}/{report['questions']}, strict); "
            f"{report['failed']} failed, {report['rejected']} rejected",
            f"[agent] turns {report['turns']['mean']:.2f}, tool calls {report['tool_calls']['mean']:.2f}, "
            f"location F1 {'n/a' if f1 is None else f'{f1:.4f}'}, "
            f"{report['seconds_per_question']['mean']:.1f} s per question"]
