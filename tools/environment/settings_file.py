"""Reading the files a stage renders for its commands: one mapping, or an error naming the file.

Every command a Plan runs reads its settings through `read_settings`, which also restores the
secrets the launcher kept out of the file (tools/environment/secrets.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tools.environment.secrets import SecretsError, restore_secrets


def read_mapping(path: Path, what: str, expected: str, error: type[Exception] = ValueError) -> dict:
    """The mapping at the top of a JSON (or, by suffix, YAML) file; `error` naming the file when it is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as reason:
        # One line: a YAML parser's message spans several.
        reason_text = " ".join(str(reason).split())
        raise error(f"{path}: cannot read the {what} ({reason_text}); expected {expected}") from None
    if not isinstance(data, dict):
        raise error(f"{path}: top level is a {type(data).__name__}; expected {expected}")
    return data


def read_settings(path: Path, what: str, expected: str, error: type[Exception] = ValueError) -> dict:
    """`read_mapping`, with the secrets the launcher handed this process put back in place of their markers."""
    data = read_mapping(path, what, expected, error)
    try:
        return restore_secrets(data, str(path))
    except SecretsError as reason:
        raise error(str(reason)) from None
