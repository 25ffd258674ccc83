"""What a step shows on the console: everything, or (for library-heavy steps) progress, loss and problems.

Every line a step prints goes to its log file, whole. A step whose Plan marks it `console="progress"`
(LLaMA-Factory's training, its argument check, the tiny model's and the chat template's builds)
shows on the console only its progress bars (live on a terminal, at each quarter otherwise) with the
latest loss, its own `[tag]` lines and `error:` lines, and each distinct warning once; when it
fails, the last lines of its log follow, so the reason is on screen without opening the file.
"""

from __future__ import annotations

import ast
import re
from typing import IO

CONSOLE_MODES = ("all", "progress")
# How many lines of a failed step's log the console shows.
FAILURE_TAIL_LINES = 25
# tqdm's bar: "  40%|████      | 4/10 [00:10<00:15,  2.5s/it]".
_BAR = re.compile(r"(\d+)%\|[^|]*\|\s*(\d+)/(\d+)")
# A trainer's logged metrics: "{'loss': 11.9, 'grad_norm': 3.2, 'learning_rate': 0.001, 'epoch': 0.06}".
_METRICS = re.compile(r"^\s*\{'(loss|eval_loss)': ")
# The project's own lines ("[launch] ...", "[agent] ...") and its tools' one-line errors and warnings.
_OWN = re.compile(r"^(\[[a-z][a-z_ -]*\] |error: |warning: )")
_PROBLEM = re.compile(r"\b(WARNING|WARN|ERROR|CRITICAL|FATAL)\b|Traceback|\b\w+Error: |^\s*warnings\.warn")
# A log line's time stamp and source position, so one warning repeated by several processes shows once.
_NOISE = re.compile(r"\d{4}-\d\d-\d\d[ T][\d:,.]+|\[[\w.]+:\d+(:\w+)?\]|\b\w+\.py:\d+")


class StepConsole:
    """Filters one step's output lines onto the console in its mode."""

    def __init__(self, mode: str, stream: IO[str]):
        if mode not in CONSOLE_MODES:
            raise ValueError(f"console mode {mode!r}: expected one of {', '.join(CONSOLE_MODES)}")
        self.mode, self.stream = mode, stream
        self.live = bool(getattr(stream, "isatty", lambda: False)())
        self.loss: float | None = None
        self.seen: set[str] = set()
        # The quarter each bar (by its label and total) was last shown at, off a terminal.
        self.quarters: dict[tuple[str, str], int] = {}
        self.bar_open = False

    def write(self, line: str) -> None:
        """One line of the step's output (without its newline)."""
        if self.mode == "all":
            self._line(line)
            return
        bar = _BAR.search(line)
        if bar is not None:
            self._bar(line.strip(), int(bar.group(1)), (line[:bar.start()].strip(), bar.group(3)))
        elif _METRICS.match(line):
            self._metrics(line)
        elif _OWN.match(line):
            self._line(line)
        elif _PROBLEM.search(line):
            key = _NOISE.sub("", line).strip()
            if key not in self.seen:
                self.seen.add(key)
                self._line(line)

    def close(self) -> None:
        """End a bar left open on a terminal."""
        if self.bar_open:
            self.stream.write("\n")
            self.bar_open = False
        self.stream.flush()

    def _line(self, line: str) -> None:
        """A whole line, after any live bar."""
        self.close()
        self.stream.write(line + "\n")
        self.stream.flush()

    def _bar(self, bar: str, percent: int, key: tuple[str, str]) -> None:
        """A bar update: redrawn in place on a terminal; otherwise at 0, 25, 50, 75 and 100 percent."""
        shown = bar if self.loss is None else f"{bar}  loss {self.loss:.4g}"
        if self.live:
            self.stream.write("\r" + shown)
            self.stream.flush()
            self.bar_open = True
            return
        quarter = percent // 25
        if self.quarters.get(key) != quarter:
            self.quarters[key] = quarter
            self._line(shown)

    def _metrics(self, line: str) -> None:
        """A trainer's metrics line: its loss goes onto the bar; an evaluation loss is shown."""
        try:
            metrics = ast.literal_eval(line.strip())
        except (ValueError, SyntaxError):
            return
        if isinstance(metrics, dict) and isinstance(metrics.get("loss"), (int, float)):
            self.loss = float(metrics["loss"])
        elif isinstance(metrics, dict) and "eval_loss" in metrics:
            self._line(f"  eval loss {metrics['eval_loss']:.4g}")


def log_tail(text: str, lines: int = FAILURE_TAIL_LINES) -> list[str]:
    """The last `lines` non-blank lines of a log."""
    return [line for line in text.splitlines() if line.strip()][-lines:]
