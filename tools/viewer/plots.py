"""The index's summary plots as inline SVG: accuracy against tool calls, the reward distribution, turns.

Drawn here from the page's rows (`tools.viewer.model`), so the page needs no plotting library and
makes no request; every label is escaped.
"""

from __future__ import annotations

import math
from collections import Counter
from html import escape

WIDTH, HEIGHT = 360, 200
LEFT, RIGHT, TOP, BOTTOM = 40, 10, 28, 34


def bar_chart(title: str, bars: list[tuple[str, float, str]], y_max: float, y_label: str) -> str:
    """An SVG bar chart: (x label, height, label above the bar) per bar, heights against `y_max`."""
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{escape(title)}">',
             f'<text class="plot-title" x="{WIDTH / 2}" y="16">{escape(title)}</text>',
             f'<line class="axis" x1="{LEFT}" y1="{TOP + inner_h}" x2="{WIDTH - RIGHT}" y2="{TOP + inner_h}"/>',
             f'<text class="axis-label" x="4" y="{TOP + 8}">{escape(_tick(y_max))}</text>',
             f'<text class="axis-label" x="4" y="{TOP + inner_h}">0</text>',
             f'<text class="axis-label" x="{LEFT}" y="{HEIGHT - 2}">{escape(y_label)}</text>']
    if not bars or y_max <= 0:
        parts.append(f'<text class="plot-empty" x="{WIDTH / 2}" y="{HEIGHT / 2}">no data</text>')
    else:
        slot = inner_w / len(bars)
        for position, (x_label, value, above) in enumerate(bars):
            height = inner_h * min(value, y_max) / y_max
            x = LEFT + position * slot + slot * 0.1
            y = TOP + inner_h - height
            parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.8:.1f}" height="{height:.1f}">'
                         f'<title>{escape(f"{x_label}: {above}")}</title></rect>')
            if len(bars) <= 16:
                parts.append(f'<text class="bar-label" x="{x + slot * 0.4:.1f}" y="{y - 3:.1f}">{escape(above)}</text>')
            if len(bars) <= 16 or position % math.ceil(len(bars) / 16) == 0:
                parts.append(f'<text class="tick" x="{x + slot * 0.4:.1f}" y="{TOP + inner_h + 14}">'
                             f'{escape(x_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _tick(value: float) -> str:
    """An axis maximum, short."""
    return f"{value:g}" if value >= 1 or value == 0 else f"{value:.2f}"


def accuracy_by_calls(pairs: list[tuple[int, bool]]) -> str:
    """Accuracy per number of tool calls, each bar labelled with its count of episodes."""
    counts = Counter(calls for calls, _ in pairs)
    right = Counter(calls for calls, correct in pairs if correct)
    bars = [(str(calls), right[calls] / n, f"{100 * right[calls] / n:.0f}% of {n}")
            for calls, n in sorted(counts.items())]
    return bar_chart("accuracy against tool calls", bars, 1.0, "tool calls (x), accuracy (bar)")


def histogram(title: str, values: list[float], bins: int = 10) -> str:
    """A histogram of `values` in `bins` equal bins between their minimum and maximum."""
    if not values:
        return bar_chart(title, [], 0, "")
    low, high = min(values), max(values)
    if high == low:
        return bar_chart(title, [(f"{low:g}", len(values), str(len(values)))], len(values), "value (x), count (bar)")
    step = (high - low) / bins
    counts = Counter(min(int((value - low) / step), bins - 1) for value in values)
    bars = [(f"{low + b * step:.2g}", counts[b], str(counts[b])) for b in range(bins)]
    return bar_chart(title, bars, max(counts.values()), "value (x), count (bar)")


def counts_chart(title: str, values: list[int]) -> str:
    """How many episodes took each whole number of something (turns)."""
    counts = Counter(values)
    bars = [(str(value), n, str(n)) for value, n in sorted(counts.items())]
    return bar_chart(title, bars, max(counts.values(), default=0), "turns (x), episodes (bar)")


def summary_plots(episodes: list[tuple[int, bool, float | None, int]]) -> list[str]:
    """The three plots of a page from (tool calls, correct, reward, turns) per episode."""
    rewards = [reward for _, _, reward, _ in episodes if reward is not None]
    return [accuracy_by_calls([(calls, correct) for calls, correct, _, _ in episodes]),
            histogram("reward distribution", rewards), counts_chart("turns", [turns for *_, turns in episodes])]
