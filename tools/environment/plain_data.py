"""Values as plain Python: the numpy arrays and scalars of a parquet row, and OmegaConf's containers, made lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def plain_data(value: Any) -> Any:
    """`value` as plain Python: numpy arrays and scalars, and mappings and sequences (OmegaConf's too), nested."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, Mapping):
        return {str(key): plain_data(item) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [plain_data(item) for item in value]
    return value
