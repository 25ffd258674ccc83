"""What the dataset builders share: their command line, and publishing a finished file or folder in one step."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def settings_and_output(description: str) -> tuple[dict, Path]:
    """Parse `--settings FILE --output DIR` (the dataset stages' command line); the settings as a mapping."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", type=Path, required=True, help="the JSON the stage rendered")
    parser.add_argument("--output", type=Path, required=True, help="the folder to write into")
    args = parser.parse_args()
    return json.loads(args.settings.read_text()), args.output


def publish(staged: str | Path, target: str | Path) -> None:
    """Give a staged file or folder the permissions the user's umask gives new ones, then rename it to `target`."""
    # mkstemp and mkdtemp make private files and folders; the published data is the user's, as usual.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staged, (0o777 if Path(staged).is_dir() else 0o666) & ~umask)
    os.replace(staged, target)
