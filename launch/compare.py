"""`python -m launch compare A.json B.json`: two evaluation results side by side.

Reads the `results.json` of two eval (or trajectories) runs and prints markdown: the headline
metrics with B minus A, accuracy per category, and, over the questions both runs finished, how
many each got right alone (from the per-question results).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from tools.agent.eval_report import AGREEMENTS, paired_questions

# (label, path into results.json, format): the headline rows.
METRICS = (
    ("accuracy (strict)", ("accuracy",), "pct"),
    ("accuracy of evaluated", ("accuracy_of_evaluated",), "pct"),
    ("questions", ("questions",), "int"),
    ("failed", ("failed",), "int"),
    ("turns (mean)", ("turns", "mean"), "num"),
    ("tool calls (mean)", ("tool_calls", "mean"), "num"),
    ("get_caption calls (mean)", ("get_caption_calls", "mean"), "num"),
    ("video_qa calls (mean)", ("video_qa_calls", "mean"), "num"),
    ("invalid turns (mean)", ("invalid_turns", "mean"), "num"),
    ("location F1 (mean)", ("location_f1", "mean"), "num"),
    ("seconds per question (mean)", ("seconds_per_question", "mean"), "num"),
    ("prompt tokens per question", ("tokens_per_question", "prompt"), "num"),
    ("completion tokens per question", ("tokens_per_question", "completion"), "num"),
)
REQUIRED = ("accuracy", "questions", "per_question", "per_category")


class ResultsError(ValueError):
    """A file that is not an evaluation's results.json; the message names it and what is missing."""


def load_results(path: Path) -> dict:
    """A results.json, checked for the fields compare reads."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ResultsError(f"{path}: cannot read it as JSON ({error})") from None
    missing = [key for key in REQUIRED if not isinstance(data, dict) or key not in data]
    if missing:
        raise ResultsError(f"{path}: not an evaluation results.json (missing {', '.join(missing)}); "
                           "pass the results.json of an eval run")
    return data


def _value(results: dict, path: tuple[str, ...]) -> float | None:
    """The number at `path`, or None where the run has none (e.g. location F1 without clue intervals)."""
    value = results
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _show(value: float | None, kind: str, signed: bool = False) -> str:
    """A cell: a percentage, an integer or a number; n/a when absent."""
    if value is None:
        return "n/a"
    sign = "+" if signed else ""
    if kind == "pct":
        return f"{100 * value:{sign}.2f}%"
    if kind == "int":
        return f"{value:{sign}d}" if isinstance(value, int) else f"{value:{sign}g}"
    return f"{value:{sign}.3f}"


def paired(a: dict, b: dict) -> dict[str, int]:
    """Over questions both runs finished: both right, only A right, only B right, both wrong."""
    labels = Counter(paired_questions(a["per_question"], b["per_question"]).values())
    return {"shared": sum(labels.values()), **{label: labels[label] for label in AGREEMENTS}}


def render(a: dict, b: dict, name_a: str, name_b: str) -> str:
    """The comparison as markdown."""
    lines = [f"A: {name_a} ({a.get('benchmark', '?')})", f"B: {name_b} ({b.get('benchmark', '?')})", "",
             "| metric | A | B | B - A |", "|---|---|---|---|"]
    for label, path, kind in METRICS:
        first, second = _value(a, path), _value(b, path)
        delta = None if first is None or second is None else second - first
        lines.append(f"| {label} | {_show(first, kind)} | {_show(second, kind)} | {_show(delta, kind, True)} |")
    categories = sorted(a["per_category"].keys() | b["per_category"].keys())
    if categories:
        lines += ["", "| category | A | B | B - A |", "|---|---|---|---|"]
        for name in categories:
            first = a["per_category"].get(name, {}).get("accuracy")
            second = b["per_category"].get(name, {}).get("accuracy")
            delta = None if first is None or second is None else second - first
            lines.append(f"| {name} | {_show(first, 'pct')} | {_show(second, 'pct')} | {_show(delta, 'pct', True)} |")
    pairs = paired(a, b)
    lines += ["", f"Questions both finished: {pairs.pop('shared')}; "
              + ", ".join(f"{label} {count}" for label, count in pairs.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """CLI: print the comparison; 2 when a file is not a results.json."""
    parser = argparse.ArgumentParser(prog="python -m launch compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="results.json of the first run")
    parser.add_argument("b", type=Path, help="results.json of the second run")
    args = parser.parse_args(argv)
    try:
        a, b = load_results(args.a), load_results(args.b)
    except ResultsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(render(a, b, str(args.a), str(args.b)), end="")
    return 0
