"""From a path to a page: which source a file or run folder is, where its view goes, and the page itself.

A path may be a run folder (eval, trajectories, rollouts or rl), a stage's output folder, or the
file itself: `trajectories.jsonl`, the preflight's `rollouts.jsonl`, or an RL dump `<step>.jsonl`
(in `rollouts/` or `validation/`; a folder of them shows its newest step). Two paths compare two
question runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tools.agent.eval_report import TRAJECTORIES
from tools.environment.settings_file import read_mapping
from tools.rollouts import RECORDS_FILE
from tools.viewer.model import PageData, compare_page, group_page, question_page
from tools.viewer.sources import (
    ViewError,
    dump_items,
    record_items,
    rl_questions,
    trajectory_items,
)

VIEW_FILE = "view.html"
# The folders of a run that hold its rollouts, by stage: eval and trajectories, the preflight, RL's dumps.
QUESTION_FOLDERS = ("eval", "trajectories")
RECORDS_FOLDER = "rollouts"
DUMP_FOLDERS = ("rollouts", "validation")
_STEP_FILE = re.compile(r"^(\d+)\.jsonl$")


@dataclass(frozen=True)
class Source:
    """One file to show: its kind (questions, records or dump) and path."""

    kind: str
    path: Path

    def default_output(self) -> Path:
        """Where its view goes by default: beside it, `view.html` (`view-step<N>.html` for an RL dump)."""
        if self.kind == "dump":
            return self.path.with_name(f"view-step{self.path.stem}.html")
        return self.path.with_name(VIEW_FILE)


def _newest_dump(folder: Path) -> Path | None:
    """The dump of the highest step in `folder`, or None without one."""
    steps = [(int(match.group(1)), path) for path in folder.glob("*.jsonl") if (match := _STEP_FILE.match(path.name))]
    return max(steps)[1] if steps else None


def find_source(path: Path) -> Source:
    """The source at `path` (a file, a stage's output folder or a run folder); ViewError saying what was looked for."""
    path = Path(path).absolute()
    if path.is_file():
        if path.name == RECORDS_FILE:
            return Source("records", path)
        if _STEP_FILE.match(path.name):
            return Source("dump", path)
        return Source("questions", path)
    if not path.is_dir():
        raise ViewError(f"{path}: no such file or folder; pass a run folder, a trajectories.jsonl, a preflight's "
                        "rollouts.jsonl or an RL dump <step>.jsonl")
    for folder in (path, *(path / name for name in QUESTION_FOLDERS)):
        if (folder / TRAJECTORIES).is_file():
            return Source("questions", folder / TRAJECTORIES)
    for folder in (path, path / RECORDS_FOLDER):
        if (folder / RECORDS_FILE).is_file():
            return Source("records", folder / RECORDS_FILE)
    for folder in (path, *(path / name for name in DUMP_FOLDERS)):
        newest = _newest_dump(folder) if folder.is_dir() else None
        if newest is not None:
            return Source("dump", newest)
    raise ViewError(f"{path}: holds no rollouts to show: looked for {TRAJECTORIES} (in it, "
                    f"{', '.join(f'{name}/' for name in QUESTION_FOLDERS)}), {RECORDS_FILE} (in it, {RECORDS_FOLDER}/) "
                    f"and RL dumps <step>.jsonl (in it, {', '.join(f'{name}/' for name in DUMP_FOLDERS)})")


def _as_list(value: object) -> list[str]:
    """A data-files setting (one path or a list of them) as a list."""
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value] if isinstance(value, list) else []


def rl_run_settings(dump: Path) -> tuple[list[Path], str | None]:
    """The RL data files and algorithm of the run a dump belongs to (its folder's parent's config.yaml)."""
    config_file = dump.parent.parent / "config.yaml"
    if not config_file.is_file():
        raise ViewError(f"{dump}: no config.yaml in {dump.parent.parent} names the RL data this dump was sampled "
                        "from; pass it with --data FILE.parquet")
    config = read_mapping(config_file, "run's config", "the mapping the launcher writes", ViewError)
    rl = config.get("rl") or {}
    data = rl.get("data") or {}
    files = [Path(name) for key in ("train_files", "val_files") for name in _as_list(data.get(key))]
    return files, rl.get("algorithm")


def _title(source: Source) -> str:
    """The page title: the source's kind and the run folder it belongs to."""
    run = source.path.parent.parent if source.path.parent.name in (*QUESTION_FOLDERS, *DUMP_FOLDERS) \
        else source.path.parent
    label = {"questions": source.path.parent.name, "records": "rollouts preflight",
             "dump": f"RL {source.path.parent.name}, step {source.path.stem}"}[source.kind]
    return f"{label} · {run}"


def _items(source: Source, data: list[Path] | None):
    """The items of one source."""
    if source.kind == "questions":
        return trajectory_items(source.path)
    if source.kind == "records":
        return record_items(source.path)
    files, algorithm = (data, "grpo") if data else rl_run_settings(source.path)
    missing = [str(path) for path in files if not path.is_file()]
    if not files or missing:
        raise ViewError(f"{source.path}: the RL data {', '.join(missing) or '(none named)'} is not there; pass the "
                        "parquet files this run trained on with --data")
    return dump_items(source.path, rl_questions(files), algorithm)


def build_page(paths: list[Path], data: list[Path] | None = None) -> tuple[PageData, Source]:
    """The page for one source, or the comparison of two question runs; with the first source."""
    sources = [find_source(path) for path in paths]
    first = sources[0]
    if len(sources) == 1:
        items = _items(first, data)
        build = question_page if first.kind == "questions" else group_page
        return build(_title(first), [str(first.path)], items), first
    if len(sources) != 2 or any(source.kind != "questions" for source in sources):
        raise ViewError("two runs compare only as eval or trajectories runs: pass two run folders or two "
                        f"{TRAJECTORIES} files (got {', '.join(f'{s.kind} {s.path}' for s in sources)})")
    title = f"A {_title(first)} vs B {_title(sources[1])}"
    return compare_page(title, [f"A: {first.path}", f"B: {sources[1].path}"], trajectory_items(first.path),
                        trajectory_items(sources[1].path)), first
