"""The few lines a finished run ends with: what it produced (with counts) and the next command to run.

The products are the Plan's named outputs; each is described by what it is: a model folder by its
weights, a results.json by its accuracy, a JSON or JSONL dataset by its samples, a parquet by its
rows, a page by its size. The next commands are the stage's own (`Stage.next_steps`), filled in
with the recipe, the run directory and the outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def _size(path: Path) -> str:
    """A file's size, short."""
    size = path.stat().st_size
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def _folder(path: Path) -> str:
    """A folder: its weights if it is a model, else how many files it holds."""
    weights = [item for item in path.iterdir() if item.suffix in WEIGHT_SUFFIXES]
    if weights:
        total = sum(item.stat().st_size for item in weights)
        return f"a model, {len(weights)} weight file(s), {total / 1e6:.1f} MB"
    return f"{sum(1 for item in path.rglob('*') if item.is_file())} files"


def _json(path: Path) -> str:
    """A JSON file: an evaluation's accuracy, a dataset's samples, or its size."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return _size(path)
    if isinstance(data, dict) and "accuracy" in data and "questions" in data:
        return f"accuracy {100 * data['accuracy']:.2f}% of {data['questions']} questions"
    if isinstance(data, list):
        return f"{len(data)} samples"
    return _size(path)


def describe(path: Path) -> str:
    """What one output is, in a few words; `missing` when it is not there."""
    path = Path(path)
    if path.is_dir():
        return _folder(path)
    if not path.is_file():
        return "missing"
    if path.suffix == ".json":
        return _json(path)
    if path.suffix == ".jsonl":
        with path.open("rb") as handle:
            return f"{sum(1 for line in handle if line.strip())} lines"
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return f"{pq.ParquetFile(path).metadata.num_rows} rows"
    return _size(path)


def closing_lines(outputs: dict[str, str], next_steps: tuple[str, ...], recipe: str | None, run_dir: Path) -> list[str]:
    """The summary: one line per output, then the next commands."""
    lines = [f"[launch] {name}: {path} ({describe(Path(path))})" for name, path in outputs.items()]
    values = {"recipe": recipe or "NAME", "run_dir": str(run_dir), **{f"output_{k}": v for k, v in outputs.items()}}
    commands = [step.format(**values) for step in next_steps]
    if commands:
        lines.append("[launch] next: " + commands[0])
        lines += [f"[launch]   or: {command}" for command in commands[1:]]
    return lines
