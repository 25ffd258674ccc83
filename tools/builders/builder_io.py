"""What the dataset builders share: their command line, how an input error ends it, and publishing in one step."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tools.environment.settings_file import read_settings

# The exit code of a builder whose input cannot be built (the launcher's code for a bad config, too).
INPUT_ERROR_EXIT = 2


class BuilderInputError(ValueError):
    """An input a builder cannot build from; the message names the file and what was expected."""


@contextmanager
def exit_on_input_error(kinds: tuple[type[BaseException], ...]) -> Iterator[None]:
    """Turn an error of `kinds` raised inside into one line `error: ...` on stderr and exit code 2."""
    try:
        yield
    except kinds as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(INPUT_ERROR_EXIT) from None


def settings_and_output(description: str) -> tuple[dict, Path]:
    """Parse `--settings FILE --output DIR` (the dataset stages' command line); the settings as a mapping."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", type=Path, required=True, help="the JSON the stage rendered")
    parser.add_argument("--output", type=Path, required=True, help="the folder to write into")
    args = parser.parse_args()
    settings = read_settings(args.settings, "settings file", "the JSON object the stage rendered", BuilderInputError)
    return settings, args.output


def publish(staged: str | Path, target: str | Path) -> None:
    """Give a staged file or folder the permissions the user's umask gives new ones, then rename it to `target`."""
    # mkstemp and mkdtemp make private files and folders; the published data is the user's, as usual.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staged, (0o777 if Path(staged).is_dir() else 0o666) & ~umask)
    os.replace(staged, target)
