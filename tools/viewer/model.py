"""The page's data: index rows and their columns and filters, each row's detail, and the run's summary.

Three kinds of page: `questions` (an eval's or teacher's trajectories, one row a question),
`groups` (the preflight's or RL's rollouts, one row a GRPO group) and `compare` (two question runs,
one row a question both finished, with `compare`'s agreement). The page's script reads only this.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from tools.agent.eval_report import AGREEMENTS, agreement
from tools.viewer.episodes import NOT_COMPONENTS, Episode, finite_or_none
from tools.viewer.sources import Item

KINDS = ("questions", "groups", "compare")


@dataclass
class PageData:
    """Everything one page shows: its index (rows, columns, filters, summary) and each row's detail."""

    kind: str
    title: str
    sources: list[str]
    columns: list[dict]
    filters: list[dict]
    rows: list[dict]
    details: list[dict]
    summary: list[tuple[str, str]]

    def index(self) -> dict:
        """The index as the page's script reads it (details travel separately, one per row)."""
        return {"kind": self.kind, "title": self.title, "sources": self.sources, "columns": self.columns,
                "filters": self.filters, "rows": self.rows, "summary": self.summary}


def _column(key: str, label: str, kind: str) -> dict:
    """One index column: its row key, header and how a cell is shown (text, bool, int, num, pct)."""
    return {"key": key, "label": label, "kind": kind}


def components(items: list[Item]) -> list[str]:
    """The reward components the episodes were scored with, in first-seen order."""
    names: dict[str, None] = {}
    for item in items:
        for episode in item.episodes:
            names.update((key, None) for key in episode.reward if key != "score" and key not in NOT_COMPONENTS)
    return list(names)


def component_key(name: str) -> str:
    """A reward component's row key and header, apart from the row's own fields (`answer` is both)."""
    return f"r.{name}"


def _mean(values: list[float | None]) -> float | None:
    """The mean of the numbers among `values`; None without any."""
    numbers = [value for value in values if value is not None]
    return round(statistics.fmean(numbers), 6) if numbers else None


def _detail(item: Item, episodes: list[Episode]) -> dict:
    """A row's detail: the question and its episodes."""
    return {"id": item.id, "data_source": item.data_source, "question": item.question, "options": item.options,
            "ground_truth": item.ground_truth, "categories": item.categories, "step": item.step,
            "episodes": [episode.to_dict() for episode in episodes]}


def _question_row(position: int, item: Item, names: list[str]) -> dict:
    """The index row of one question (one episode)."""
    episode = item.episodes[0]
    return {"i": position, "id": item.id, "data_source": item.data_source, "categories": item.categories,
            "correct": episode.correct, "answer": episode.answer, "ground_truth": item.ground_truth,
            "reward": finite_or_none(episode.reward.get("score")),
            **{component_key(name): finite_or_none(episode.reward.get(name)) for name in names},
            "turns": len(episode.steps), "calls": episode.tool_calls, "invalid": episode.invalid_turns,
            "f1": episode.location_f1, "seconds": item.seconds}


def _group_row(position: int, item: Item, names: list[str]) -> dict:
    """The index row of one GRPO group: shares and means over its rollouts, and whether all rewards are equal."""
    episodes = item.episodes
    scores = [finite_or_none(episode.reward.get("score")) for episode in episodes]
    answers = Counter(episode.answer or "none" for episode in episodes)
    return {"i": position, "id": item.id, "data_source": item.data_source, "categories": item.categories,
            "n": len(episodes), "correct": round(sum(e.correct for e in episodes) / len(episodes), 6),
            "answer": ", ".join(f"{letter}×{count}" for letter, count in answers.most_common()),
            "ground_truth": item.ground_truth, "reward": _mean(scores),
            "reward_std": round(statistics.pstdev([s for s in scores if s is not None]), 6)
            if any(s is not None for s in scores) else None,
            "zero_variance": len({s for s in scores if s is not None}) <= 1,
            **{component_key(name): _mean([finite_or_none(e.reward.get(name)) for e in episodes])
               for name in names},
            "turns": _mean([len(e.steps) for e in episodes]), "calls": _mean([e.tool_calls for e in episodes]),
            "invalid": sum(e.invalid_turns for e in episodes), "f1": _mean([e.location_f1 for e in episodes]),
            "step": item.step}


def _shared_columns(names: list[str]) -> list[dict]:
    """The reward, its components and the navigation counts, as every single-run page shows them."""
    return [_column("reward", "reward", "num"),
            *(_column(component_key(name), component_key(name), "num") for name in names),
            _column("turns", "turns", "num"), _column("calls", "tool calls", "num"),
            _column("invalid", "invalid turns", "int"), _column("f1", "location F1", "num")]


def _filters(correct_label: str) -> list[dict]:
    """The filters every page has: wrong answers, invalid turns, reward below a value, category, data source."""
    return [{"kind": "check", "key": "correct", "test": "not_all", "label": correct_label},
            {"kind": "check", "key": "invalid", "test": "positive", "label": "with invalid turns"},
            {"kind": "below", "key": "reward", "label": "reward below"},
            {"kind": "select", "key": "categories", "label": "category"},
            {"kind": "select", "key": "data_source", "label": "data source"}]


def question_page(title: str, sources: list[str], items: list[Item]) -> PageData:
    """The page of an eval's or teacher's trajectories (rewards by the default preset)."""
    names = components(items)
    rows = [_question_row(position, item, names) for position, item in enumerate(items)]
    columns = [_column("id", "question", "text"), _column("correct", "correct", "bool"),
               _column("answer", "answer", "text"), _column("ground_truth", "truth", "text"),
               *_shared_columns(names), _column("seconds", "seconds", "num"),
               _column("categories", "category", "text"), _column("data_source", "data source", "text")]
    correct = sum(row["correct"] for row in rows)
    summary = [("questions", str(len(rows))),
               ("accuracy", f"{100 * correct / len(rows):.1f}% ({correct})" if rows else "n/a"),
               ("tool calls (mean)", _shown(_mean([row["calls"] for row in rows]))),
               ("location F1 (mean)", _shown(_mean([row["f1"] for row in rows]))),
               ("reward", "the default preset's, on each transcript")]
    return PageData("questions", title, sources, columns, _filters("wrong only"), rows,
                    [_detail(item, item.episodes) for item in items], summary)


def group_page(title: str, sources: list[str], items: list[Item]) -> PageData:
    """The page of GRPO groups (the preflight's records or an RL dump), rewards as the run scored them."""
    names = components(items)
    rows = [_group_row(position, item, names) for position, item in enumerate(items)]
    columns = [_column("id", "question", "text"), _column("n", "rollouts", "int"),
               _column("correct", "correct", "pct"), _column("answer", "answers", "text"),
               _column("ground_truth", "truth", "text"), *_shared_columns(names),
               _column("reward_std", "reward std", "num"), _column("zero_variance", "all equal", "bool"),
               _column("data_source", "data source", "text")]
    filters = [*_filters("some rollout wrong"),
               {"kind": "check", "key": "zero_variance", "test": "true", "label": "all rewards equal"}]
    rollouts = sum(row["n"] for row in rows)
    flat = sum(row["zero_variance"] for row in rows)
    summary = [("groups", str(len(rows))), ("rollouts", str(rollouts)),
               ("groups with all rewards equal", f"{flat} of {len(rows)} (no learning signal)"),
               ("reward (mean)", _shown(_mean([row["reward"] for row in rows])))]
    return PageData("groups", title, sources, columns, filters, rows,
                    [_detail(item, item.episodes) for item in items], summary)


def compare_page(title: str, sources: list[str], first: list[Item], second: list[Item]) -> PageData:
    """Two question runs over the questions both finished: agreement per question, both episodes in the detail."""
    by_id = {item.id: item for item in second}
    rows, details = [], []
    for item in first:
        other = by_id.get(item.id)
        if other is None:
            continue
        a, b = item.episodes[0], other.episodes[0]
        rows.append({"i": len(rows), "id": item.id, "data_source": item.data_source, "categories": item.categories,
                     "agreement": agreement(a.correct, b.correct), "a_correct": a.correct, "b_correct": b.correct,
                     "correct": a.correct and b.correct, "a_answer": a.answer, "b_answer": b.answer,
                     "ground_truth": item.ground_truth, "a_calls": a.tool_calls, "b_calls": b.tool_calls,
                     "invalid": a.invalid_turns + b.invalid_turns, "a_f1": a.location_f1, "b_f1": b.location_f1,
                     "reward": finite_or_none(a.reward.get("score"))})
        a.label, b.label = "A", "B"
        details.append(_detail(item, [a, b]))
    columns = [_column("id", "question", "text"), _column("agreement", "agreement", "text"),
               _column("a_correct", "A correct", "bool"), _column("b_correct", "B correct", "bool"),
               _column("a_answer", "A answer", "text"), _column("b_answer", "B answer", "text"),
               _column("ground_truth", "truth", "text"), _column("a_calls", "A calls", "int"),
               _column("b_calls", "B calls", "int"), _column("a_f1", "A F1", "num"), _column("b_f1", "B F1", "num"),
               _column("categories", "category", "text")]
    filters = [{"kind": "check", "key": "agreement", "test": "in", "values": list(AGREEMENTS[1:3]),
                "label": "runs differ"},
               *_filters("wrong in either")]
    counts = Counter(row["agreement"] for row in rows)
    summary = [("questions both finished", str(len(rows))),
               *((label, str(counts[label])) for label in AGREEMENTS)]
    return PageData("compare", title, sources, columns, filters, rows, details, summary)


def _shown(value: float | None) -> str:
    """A summary number, n/a when absent."""
    return "n/a" if value is None else f"{value:.3f}"
