"""Extract the system prompt from the paper's released RL parquet, to evaluate its checkpoint as it was trained.

Each released row's `prompt` starts with a system message formatted with that video's tree width.
The width (as a whole number) is replaced by `{width}`, which `eval.system_prompt_file` fills in per
question; every row must then give the same text, or nothing is written.

    python -m tools.builders.released_prompt --parquet rl_data.parquet --output released_system_prompt.txt
    python -m launch eval recipe=qwen3_8b benchmark=lvbench eval.system_prompt_file=released_system_prompt.txt
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

from tools.environment.plain_data import plain_data


class ReleasedPromptError(ValueError):
    """The parquet has no usable system prompt; the message names the file, row and field."""


def template_of(system: str, width: int) -> str:
    """`system` with its width written as `{width}` wherever it stands as a whole number (not in 13, 0.3 or 3.5)."""
    return re.sub(rf"(?<![\d.]){width}(?!\.?\d)", "{width}", system)


def system_template(path: Path) -> tuple[str, int]:
    """The one system prompt template of every row, and how many rows agree on it."""
    import pandas as pd

    try:
        table = pd.read_parquet(path, columns=["prompt", "extra_info"])
    except (OSError, ValueError, KeyError) as error:
        raise ReleasedPromptError(f"{path}: cannot read the prompt and extra_info columns ({error})") from None
    templates: Counter[str] = Counter()
    first_row: dict[str, int] = {}
    for row, (prompt, info) in enumerate(zip(table["prompt"], table["extra_info"], strict=True)):
        prompt, info = plain_data(prompt), plain_data(info)
        if not isinstance(prompt, list) or not prompt or not isinstance(prompt[0], dict) \
                or prompt[0].get("role") != "system" or not isinstance(prompt[0].get("content"), str):
            raise ReleasedPromptError(f"{path} row {row}: field prompt: expected a list starting with a system "
                                      "message")
        width = info.get("width") if isinstance(info, dict) else None
        if isinstance(width, float) and width.is_integer():
            width = int(width)
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ReleasedPromptError(f"{path} row {row}: field extra_info.width={width!r}: expected a positive "
                                      "integer")
        template = template_of(prompt[0]["content"], width)
        templates[template] += 1
        first_row.setdefault(template, row)
    if not templates:
        raise ReleasedPromptError(f"{path}: no rows")
    if len(templates) > 1:
        rows = ", ".join(str(first_row[t]) for t in templates)
        raise ReleasedPromptError(f"{path}: {len(templates)} different system prompts (first seen at rows {rows}) "
                                  "even with the width as {width}; one file cannot stand for them all")
    [(template, count)] = templates.items()
    return template, count


def main(argv: list[str] | None = None) -> int:
    """CLI: write the released system prompt template to --output (never over an existing file)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parquet", type=Path, required=True, help="the released RL parquet")
    parser.add_argument("--output", type=Path, required=True, help="the text file to write")
    args = parser.parse_args(argv)
    if args.output.exists():
        print(f"error: {args.output} exists; choose another --output", file=sys.stderr)
        return 2
    try:
        template, rows = system_template(args.parquet)
    except ReleasedPromptError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.output.write_text(template, encoding="utf-8")
    print(f"wrote the system prompt of {rows} rows to {args.output} ({template.count('{width}')} width fields)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
