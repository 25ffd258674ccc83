"""The documentation stays true: its launch commands compose, its links resolve, README stays a front page.

Every `*.md` file of the repository is read (tracked, or new and not ignored by git):
- every `python -m launch ...` line of a shell code block (a fence tagged bash, sh, shell, console or
  nothing; continuation lines joined, comments dropped, `&&` chains split) runs through the CLI's `main`
  in this process with `--dry-run` and a private run root, and must exit 0. Utilities (`status`,
  `compare`, `merge`) take their own arguments and are not dry-run. `resume=true` needs the run it
  resumes, so the line is composed without it. A path the command names that does not exist here (a
  dataset, a model folder) is replaced by an empty file or folder of the same name in a temporary
  directory, since a dry run checks that its inputs exist;
- every relative link points to a file of the repository, and an anchor to a heading of that file;
- every path under a project folder (`tools/...`, `launch/...`) and every `python -m` module of the
  project that the docs name exists (a placeholder such as `recipes/NAME.yaml` excepted);
- README.md is a front page, under 250 lines;
- no file of the repository names the project's outside folder, except CI's install of the vendored
  verl-tool archive in `.ci/run`.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from unittest import mock

import pytest

from launch.cli import UTILITIES, main

PROJECT_ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
# The folder outside the repository that only CI may name (spelled in two parts so this file does not).
OUTSIDE = "shared" + "/"
OUTSIDE_ALLOWED = {".ci/run"}
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)")
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
PROJECT_PATH = re.compile(r"(?<![\w/.-])((?:tools|rewards|launch|configs|recipes|tests|\.ci)/[\w./-]*[\w/])")
PROJECT_MODULE = re.compile(r"python -m ((?:tools|rewards|launch|tests)(?:\.\w+)*)")
PLACEHOLDER = re.compile(r"\b(?:NAME|PRESET|RUN_DIR|DIR|PATH|N)\b")


def repo_files() -> list[str]:
    """Every file of the repository: tracked, or untracked and not ignored."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout
    return sorted(p for p in set(listed.split("\0")) if p and (PROJECT_ROOT / p).is_file())


DOCS = [p for p in repo_files() if p.endswith(".md")]


def shell_lines(text: str) -> list[tuple[int, str]]:
    """(line number, logical line) of every shell code block; backslash continuations joined."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match.group(2).lower()
            continue
        if match and not match.group(2):
            fence = None
            continue
        if fence not in SHELL_FENCES:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    return lines


def launch_commands(line: str) -> list[list[str]]:
    """The arguments after `python -m launch` of each command in a shell line (`&&`, `;`, `|` split)."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError:
        return []
    commands, current = [], []
    for token in [*tokens, "&&"]:
        if token in ("&&", "||", ";", "|"):
            commands.append(current)
            current = []
        else:
            current.append(token)
    found = []
    for command in commands:
        for i in range(len(command) - 2):
            if (command[i] == "python" or command[i].endswith("/python")) and command[i + 1:i + 3] == ["-m", "launch"]:
                found.append(command[i + 3:])
                break
    return found


def doc_commands() -> list[tuple[str, list[str]]]:
    """(where, arguments) of every distinct launch command of the docs, utilities left out."""
    found: dict[tuple[str, ...], list[str]] = {}
    for doc in DOCS:
        for number, line in shell_lines((PROJECT_ROOT / doc).read_text()):
            for args in launch_commands(line):
                if args and args[0] not in UTILITIES:
                    found.setdefault(tuple(args), []).append(f"{doc}:{number}")
    return [(", ".join(places), list(args)) for args, places in found.items()]


def looks_like_path(value: str) -> bool:
    """A value that names a file or folder: has a slash or a file suffix, and is no URL, list or interpolation."""
    if "://" in value or value.startswith(("[", "{", "$", "'")):
        return False
    return "/" in value or re.search(r"\.[A-Za-z]\w*$", value) is not None


def with_stand_ins(args: list[str], scratch: Path) -> list[str]:
    """`args` with every missing path replaced by an empty file (a name with a suffix) or folder in `scratch`."""
    out = []
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and not key.startswith(("+", "~")) and looks_like_path(value):
            path = Path(value).expanduser()
            if not (path if path.is_absolute() else PROJECT_ROOT / path).exists():
                stand_in = scratch / value.lstrip("/")
                if stand_in.suffix:
                    stand_in.parent.mkdir(parents=True, exist_ok=True)
                    stand_in.touch()
                else:
                    stand_in.mkdir(parents=True, exist_ok=True)
                arg = f"{key}={stand_in}"
        out.append(arg)
    return out


COMMANDS = doc_commands()


def test_the_docs_hold_launch_commands():
    """The extraction finds the README's quick start, so an empty parametrization cannot pass silently."""
    assert any(args == ["sft", "recipe=tiny"] and any(p.startswith("README.md:") for p in where.split(", "))
               for where, args in COMMANDS)


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[" ".join(a) for _, a in COMMANDS])
def test_every_documented_launch_command_composes_with_dry_run(where: str, args: list[str], tmp_path: Path):
    """`python -m launch ARGS --dry-run` exits 0 for every documented command."""
    argv = with_stand_ins([a for a in args if a != "resume=true"], tmp_path / "data")
    if argv != ["--help"]:
        argv = [a for a in argv if a != "--dry-run"] + ["--dry-run", f"run_root={tmp_path / 'runs'}"]
    out, err = io.StringIO(), io.StringIO()
    env = {"WANDB_API_KEY": "", "LONGVIDEO_R1_CACHE": str(tmp_path / "cache")}
    with mock.patch.dict(os.environ, env), redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    assert code == 0, f"{where}: python -m launch {' '.join(argv)}\n{err.getvalue()[-2000:]}{out.getvalue()[-1000:]}"


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    """Every heading anchor of a markdown file (repeated headings get -1, -2, ...), outside code blocks."""
    seen: dict[str, int] = {}
    found = set()
    fence = False
    for line in doc.read_text().splitlines():
        if FENCE.match(line):
            fence = not fence
            continue
        match = HEADING.match(line)
        if match and not fence:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(doc: str) -> list[str]:
    """The link targets of a doc, outside code blocks and inline code."""
    targets, fence = [], False
    for line in (PROJECT_ROOT / doc).read_text().splitlines():
        if FENCE.match(line):
            fence = not fence
            continue
        if not fence:
            targets += LINK.findall(re.sub(r"`[^`]*`", "", line))
    return targets


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_resolves(doc: str):
    """Each relative link names an existing file or folder, and its anchor a heading of the target."""
    broken = []
    for target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (PROJECT_ROOT / doc).parent / path if path else PROJECT_ROOT / doc
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(PROJECT_ROOT)}")
    assert not broken, f"{doc}: " + "; ".join(broken)


@pytest.mark.parametrize("doc", DOCS)
def test_every_named_path_and_module_exists(doc: str):
    """Paths such as `tools/environment/geometry.py` and modules such as `python -m tools.demo.world` are real."""
    text = (PROJECT_ROOT / doc).read_text()
    missing = [path for path in PROJECT_PATH.findall(text)
               if not PLACEHOLDER.search(path) and not (PROJECT_ROOT / path.rstrip("/")).exists()]
    for module in PROJECT_MODULE.findall(text):
        base = PROJECT_ROOT / module.replace(".", "/")
        if not (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()):
            missing.append(f"python -m {module}")
    assert not missing, f"{doc} names what does not exist: {', '.join(sorted(set(missing)))}"


def test_readme_is_a_front_page():
    """README.md stays short; the depth lives in the folders' own README files."""
    lines = len((PROJECT_ROOT / "README.md").read_text().splitlines())
    assert lines < README_MAX_LINES, f"README.md has {lines} lines; move detail into a folder's README.md"


def test_no_file_points_outside_the_repository():
    """Only CI's install of the vendored archive names the folder outside the repository."""
    offenders = []
    for name in repo_files():
        if name in OUTSIDE_ALLOWED:
            continue
        try:
            text = (PROJECT_ROOT / name).read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}:{n}" for n, line in enumerate(text.splitlines(), 1) if OUTSIDE in line]
    assert not offenders, "these lines name a folder outside the repository: " + ", ".join(offenders)
