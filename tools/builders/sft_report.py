"""The SFT data report: counts kept and dropped by reason, turns per trajectory, tokens per sample.

Tokens are counted as LLaMA-Factory will see them: each sample rendered with the chat template of
`chat.template` (`tools.builders.chat_template`) and encoded by the given tokenizer. Samples longer than
`cutoff_len` are counted, because LLaMA-Factory would truncate them. The report is printed,
written as JSON, and drawn as a histogram PNG.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools.builders.sft_checks import REASONS, Drop

# sharegpt `from` -> the chat role the Jinja template renders.
CHAT_ROLES = {"system": "system", "human": "user", "gpt": "assistant", "observation": "tool"}


class TokenCounter:
    """Counts the tokens of sharegpt samples rendered with a LLaMA-Factory template's Jinja equivalent."""

    def __init__(self, tokenizer_path: str, template: str):
        from transformers import AutoTokenizer

        from tools.builders.chat_template import jinja_template

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self.template = jinja_template(template)

    def count(self, samples: Sequence[dict]) -> list[int]:
        """The token count of each sample, encoded in one batch."""
        texts = [self.tokenizer.apply_chat_template(
            [{"role": CHAT_ROLES[m["from"]], "content": m["value"]} for m in sample["messages"]],
            chat_template=self.template, tokenize=False) for sample in samples]
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _stats(values: Sequence[int]) -> dict:
    """min, median, mean, 95th percentile and max of `values` (empty: {})."""
    if not values:
        return {}
    ordered = sorted(values)
    return {"min": ordered[0], "median": statistics.median(ordered), "mean": round(statistics.fmean(ordered), 2),
            "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], "max": ordered[-1]}


@dataclass
class Report:
    """What one build kept and dropped."""

    source: str
    input: str
    cutoff_len: int | None = None
    turns: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def keep(self, tool_calls: int) -> None:
        """Count one kept sample with its number of tool calls."""
        self.turns.append(tool_calls)

    def drop(self, drop: Drop) -> None:
        """Count one dropped line by its reason."""
        self.dropped[drop.reason] += 1

    def to_dict(self) -> dict:
        """The report as JSON."""
        data = {"source": self.source, "input": self.input, "kept": len(self.turns),
                "dropped": sum(self.dropped.values()),
                "dropped_by_reason": {reason: self.dropped[reason] for reason in REASONS if self.dropped[reason]},
                "tool_calls_per_trajectory": _stats(self.turns),
                "tool_calls_histogram": dict(sorted(Counter(self.turns).items())), "notes": self.notes}
        if self.tokens:
            data["tokens_per_sample"] = _stats(self.tokens)
            data["tokens_total"] = sum(self.tokens)
            if self.cutoff_len:
                data["cutoff_len"] = self.cutoff_len
                data["over_cutoff_len"] = sum(1 for count in self.tokens if count > self.cutoff_len)
        return data

    def lines(self) -> list[str]:
        """The report as printed lines."""
        data = self.to_dict()
        lines = [f"{data['source']} {data['input']}: kept {data['kept']}, dropped {data['dropped']}"]
        lines += [f"  dropped {count:>6}  {reason}: {REASONS[reason]}"
                  for reason, count in data["dropped_by_reason"].items()]
        if self.turns:
            lines.append(f"  tool calls per trajectory: {data['tool_calls_per_trajectory']}")
        if self.tokens:
            lines.append(f"  tokens per sample: {data['tokens_per_sample']} (total {data['tokens_total']})")
            if self.cutoff_len:
                lines.append(f"  {data['over_cutoff_len']} samples are longer than cutoff_len={self.cutoff_len} "
                             "and would be truncated")
        lines += [f"  note: {note}" for note in self.notes]
        return lines

    def write(self, folder: Path) -> list[Path]:
        """Write report.json and report.png into `folder`; return the paths."""
        json_path = folder / "report.json"
        json_path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return [json_path, self.plot(folder / "report.png")]

    def plot(self, path: Path) -> Path:
        """Histograms of tool calls per trajectory and, when counted, tokens per sample."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        panels = 2 if self.tokens else 1
        figure, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.6), squeeze=False)
        turns = axes[0][0]
        bins = range(0, max(self.turns, default=0) + 2)
        turns.hist(self.turns, bins=bins, align="left", rwidth=0.85, color="#4C72B0")
        turns.set(title=f"{len(self.turns)} kept trajectories", xlabel="tool calls", ylabel="trajectories")
        if self.tokens:
            tokens = axes[0][1]
            tokens.hist(self.tokens, bins=40, color="#55A868")
            if self.cutoff_len:
                tokens.axvline(self.cutoff_len, color="#C44E52", linestyle="--", label=f"cutoff_len {self.cutoff_len}")
                tokens.legend()
            tokens.set(title="tokens per sample", xlabel="tokens", ylabel="samples")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path
