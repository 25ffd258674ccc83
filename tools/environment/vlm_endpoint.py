"""Where a VLM is served and how patiently to ask it: settings only, importable without openai.

The launcher checks these settings while it plans a run (which must stay light); the client that
uses them is `tools.environment.vlm_client.VLMClient`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class VLMEndpoint:
    """Where the VLM is served and how patiently to ask it."""

    base_url: str
    model: str
    # The NAME of the environment variable that holds the API key, never the key itself.
    api_key_env: str = "VLM_API_KEY"
    # Total deadline of one `ask`, retries and waiting for a slot included.
    timeout_s: float = 120.0
    max_retries: int = 3
    # Backoff before retry k (0-based) is backoff_s * 2**k, cut to the time left.
    backoff_s: float = 1.0
    max_concurrency: int = 16
    max_tokens: int = 512
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"VLMEndpoint.base_url={self.base_url!r}: expected an http:// or https:// URL")
        if not self.model:
            raise ValueError("VLMEndpoint.model is empty: expected the served model name")
        for name in ("timeout_s", "max_concurrency", "max_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"VLMEndpoint.{name}={getattr(self, name)}: expected a positive number")
        for name in ("max_retries", "backoff_s", "temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"VLMEndpoint.{name}={getattr(self, name)}: expected a number >= 0")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> VLMEndpoint:
        """Build from a config mapping; unknown keys, missing keys and wrong types name `where` and the key."""
        if not isinstance(d, Mapping):
            raise TypeError(f"{where}: expected a mapping of VLM endpoint settings, got {type(d).__name__}")
        known = {field.name: field for field in fields(cls)}
        for key in d:
            if key == "api_key":
                raise ValueError(f"{where}.api_key: the key must not be in a config; put it in an environment "
                                 "variable and name that variable in api_key_env")
            if key not in known:
                raise ValueError(f"{where}.{key}: unknown key; expected one of {', '.join(known)}")
        for name in ("base_url", "model"):
            if name not in d:
                raise ValueError(f"{where}.{name}: missing; it is required")
        for key, value in d.items():
            _check_type(f"{where}.{key}", value, known[key].type)
        try:
            return cls(**dict(d))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None


def _check_type(name: str, value: Any, annotation: Any) -> None:
    """Raise TypeError unless `value` suits the field annotation `annotation` (str, int or float)."""
    expected = {"str": str, "int": int, "float": (int, float)}[str(annotation)]
    if isinstance(value, bool) or not isinstance(value, expected):
        raise TypeError(f"{name}={value!r}: expected {annotation}, got {type(value).__name__}")
