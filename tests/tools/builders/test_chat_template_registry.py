"""The chat templates are one registry: its names are what the CLI offers and what an unknown name is told."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools.builders.chat_template import TEMPLATE_NAMES, jinja_template, register_template


def test_templates_are_one_registry() -> None:
    """TEMPLATE_NAMES lists the registered templates and a second template of a name is refused."""
    assert TEMPLATE_NAMES == ("qwen3_nothink", "qwen")
    with pytest.raises(ValueError, match="'qwen' is already registered"):
        register_template("qwen", None)
    with pytest.raises(ValueError, match="chat.template='qwen3' .* supported: qwen3_nothink, qwen"):
        jinja_template("qwen3")


def test_cli_offers_the_registered_templates() -> None:
    """`--template` takes its choices from the registry."""
    result = subprocess.run([sys.executable, "-m", "tools.builders.chat_template", "--model", ".", "--template",
                             "qwen3"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "{qwen3_nothink,qwen}" in result.stderr, result.stderr
