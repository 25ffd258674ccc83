"""The audit's report: a markdown table per spec (policies by score, components and counts) and a bar chart."""

from __future__ import annotations

import math
from pathlib import Path

from rewards.registry import COMPONENTS

# The counts shown next to the components; the rest stay in results.json.
SHOWN_COUNTS = ("tool_calls", "repeats", "ill_formed_turns")


def _cell(value: float) -> str:
    """A table cell: three decimals, or a dash for NaN (a component that does not apply)."""
    return "-" if math.isnan(value) else f"{value:.3f}"


def write_table(results: dict, path: Path) -> str:
    """Write the markdown tables of mean score and components per policy, one per spec; returns the text."""
    blocks = []
    for label, block in results["specs"].items():
        policies = block["policies"]
        first = next(iter(policies.values()))
        components = [key for key in first if key in COMPONENTS]
        columns = ["score", *components, *SHOWN_COUNTS]
        low, high = block["bounds"]
        lines = [f"### {label} (score range [{low:g}, {high:g}])", "",
                 "| policy | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        ranked = sorted(policies.items(), key=lambda item: -item[1]["score"])
        for name, means in ranked:
            lines.append(f"| {name} | " + " | ".join(_cell(means[column]) for column in columns) + " |")
        blocks.append("\n".join(lines))
    text = f"Reward audit over {results['questions']} questions, at most {results['max_turns']} tool calls.\n\n"
    text += "\n\n".join(blocks) + "\n"
    path.write_text(text)
    return text


def plot_scores(results: dict, path: Path) -> Path:
    """A grouped bar chart of mean score per policy (x) and spec (bars), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    labels = list(results["specs"])
    policies = list(next(iter(results["specs"].values()))["policies"])
    figure, axes = pyplot.subplots(figsize=(max(8.0, 1.3 * len(policies)), 4.5))
    width = 0.8 / len(labels)
    for offset, label in enumerate(labels):
        means = [results["specs"][label]["policies"][policy]["score"] for policy in policies]
        positions = [i + (offset - (len(labels) - 1) / 2) * width for i in range(len(policies))]
        axes.bar(positions, means, width=width, label=label)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(policies)))
    axes.set_xticklabels(policies, rotation=25, ha="right")
    axes.set_ylabel("mean score")
    axes.set_title(f"What each reward pays: scripted policies over {results['questions']} questions")
    axes.legend(fontsize=8, ncol=min(3, len(labels)))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
    return path
