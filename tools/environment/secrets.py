"""Secrets: kept out of every file a run writes, handed to its steps through the environment.

A config value whose key looks like a secret (`api_key`, `hf_token`, `client_secret`, ...) is pulled
out of the config before a stage sees it and replaced with a marker that names its key,
`<redacted:trajectories.extra_body.api_key>`. Everything the run writes (config, settings, the
Plan, an sbatch script, logs) therefore holds only markers. The launcher hands the real values to
every command it starts in one environment variable, $LONGVIDEO_R1_SECRETS (a JSON object from
dotted key to value), which is never written to a file; a step's settings reader restores them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

# Keys whose values are secrets, at any depth of a config or settings tree...
SECRET_KEY = re.compile(r"(api_key|apikey|token|secret|password)$", re.IGNORECASE)
# ...except a tokenizer's special tokens (verl's `actor_rollout_ref.agent.turn_end_token`, an `eos_token`).
SPECIAL_TOKEN_KEY = re.compile(r"(eos|bos|pad|unk|sep|cls|mask|stop|end|image|video|audio)_token$", re.IGNORECASE)
SECRETS_ENV = "LONGVIDEO_R1_SECRETS"
MARKER = re.compile(r"^<redacted:([^<>]+)>$")


class SecretsError(ValueError):
    """A redacted value whose secret the environment does not carry, or a malformed $LONGVIDEO_R1_SECRETS."""


def is_secret_key(key: object) -> bool:
    """Whether a config key names a secret."""
    return bool(SECRET_KEY.search(str(key))) and not SPECIAL_TOKEN_KEY.search(str(key))


def marker(dotted_key: str) -> str:
    """The text written in place of the secret at `dotted_key`."""
    return f"<redacted:{dotted_key}>"


def split_secrets(tree: Any, prefix: str = "") -> tuple[Any, dict[str, Any]]:
    """A copy of a config tree with every non-empty secret replaced by its marker, and the secrets by dotted key."""
    found: dict[str, Any] = {}
    if isinstance(tree, Mapping):
        copy = {}
        for key, value in tree.items():
            dotted = f"{prefix}{key}"
            # An empty value (null, "") hides nothing; a marker is already redacted.
            if is_secret_key(key) and value not in (None, "") and not _is_marker(value):
                copy[key] = marker(dotted)
                found[dotted] = value
            else:
                copy[key], inner = split_secrets(value, dotted + ".")
                found.update(inner)
        return copy, found
    if isinstance(tree, list):
        items = [split_secrets(value, f"{prefix}{index}.") for index, value in enumerate(tree)]
        for _, inner in items:
            found.update(inner)
        return [value for value, _ in items], found
    return tree, found


def redact_argv(argv: list[str]) -> list[str]:
    """A copy of a command line whose secret-looking `KEY=VALUE` overrides carry the key's marker instead."""
    redacted = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        # An override's key may carry Hydra's +, ++ or ~ prefix and is dotted: its last part names it.
        dotted = key.lstrip("+~")
        secret = sep and value and is_secret_key(dotted.rsplit(".", 1)[-1])
        redacted.append(f"{key}={marker(dotted)}" if secret else arg)
    return redacted


def encode_secrets(secrets: Mapping[str, Any]) -> str:
    """The value of $LONGVIDEO_R1_SECRETS that carries `secrets`."""
    return json.dumps(dict(secrets), sort_keys=True)


def secrets_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The secrets the launcher handed this process; empty when it handed none."""
    text = (os.environ if environ is None else environ).get(SECRETS_ENV, "")
    if not text:
        return {}
    try:
        secrets = json.loads(text)
    except json.JSONDecodeError as error:
        raise SecretsError(f"${SECRETS_ENV} is not valid JSON ({error}); expected the object the launcher "
                           "sets") from None
    if not isinstance(secrets, dict):
        raise SecretsError(f"${SECRETS_ENV} holds a {type(secrets).__name__}; expected a JSON object from "
                           "dotted key to value")
    return secrets


def restore_secrets(tree: Any, where: str, environ: Mapping[str, str] | None = None) -> Any:
    """A copy of `tree` (read from `where`) with every marker replaced by its secret from the environment."""
    secrets = secrets_from_environment(environ)

    def restore(value: Any, path: str) -> Any:
        if isinstance(value, Mapping):
            return {key: restore(inner, f"{path}.{key}" if path else str(key)) for key, inner in value.items()}
        if isinstance(value, list):
            return [restore(inner, f"{path}.{index}") for index, inner in enumerate(value)]
        match = MARKER.match(value) if isinstance(value, str) else None
        if match is None:
            return value
        if match.group(1) not in secrets:
            raise SecretsError(f"{where}: {path} holds {value}, whose secret ${SECRETS_ENV} does not carry; run the "
                               f"stage with `python -m launch` and pass {match.group(1)}=... again (a resume "
                               "needs it too: secrets are never written to the run directory)")
        return secrets[match.group(1)]

    return restore(tree, "")


def _is_marker(value: Any) -> bool:
    return isinstance(value, str) and MARKER.match(value) is not None
