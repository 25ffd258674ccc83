"""The file verl loads as the custom reward function: `custom_reward_function.path` names it, `name=compute_score`.

verl imports this file by path from any working directory, so it puts the project root on
`sys.path` first; then `rewards` and `tools` resolve to this checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

_PROJECT_ROOT = str(Path(__file__).resolve().parents[1])
if _PROJECT_ROOT not in sys.path:
    sys.path.insert(0, _PROJECT_ROOT)

from rewards.score import compute_score  # noqa: E402

__all__ = ["compute_score"]
