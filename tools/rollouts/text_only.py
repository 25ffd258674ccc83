"""verl-tool's agent loop imported for a text policy, on machines whose torchvision does not load.

Three modules of verl-tool and its verl serve only image and audio inputs, and the agent loop imports
them at module level: `verl.utils.dataset.vision_utils` (through qwen-vl-utils, torchvision),
`verl_tool.agent_loop.vision_process` (torchvision) and `verl_tool.utils.dataset.audio_utils`
(qwen-omni-utils, librosa). Where one's dependencies do not import (the CPU environment: PyPI's
torchvision is a CUDA build), it is replaced before the import by a module whose functions raise,
naming what is missing; a text policy never calls them. Where they import (the GPU environment,
which installs them), the real modules are used and nothing is replaced.
"""

from __future__ import annotations

import importlib
import sys
import types

# Each multimodal module: the packages it imports that a text policy does not need, and the names the
# agent loop imports from it.
MULTIMODAL_MODULES = {
    "verl.utils.dataset.vision_utils": (("torchvision", "qwen_vl_utils"),
                                        ("process_image", "process_video", "process_multi_modal_inputs_for_minicpmo")),
    "verl_tool.agent_loop.vision_process": (("torchvision",), ("fetch_image", "fetch_video")),
    "verl_tool.utils.dataset.audio_utils": (("qwen_omni_utils", "librosa", "soundfile"), ("encode_audio_data",)),
}
# Constants the agent loop reads from a stood-in module at import: its help text for video inputs.
STAND_IN_CONSTANTS = {"verl.utils.dataset.vision_utils": {"VIDEO_FORMAT_HELP": "video inputs are unavailable here"}}
AGENT_LOOP_PACKAGE = "verl_tool.agent_loop"


def _refusing(module: str, name: str, reason: str):
    """A function that raises: `module.name` is unavailable for `reason`."""

    def refuse(*args, **kwargs):
        raise RuntimeError(f"{module}.{name} is unavailable in this environment ({reason}): image and audio "
                           "inputs need it; a text policy never calls it")

    refuse.__name__ = name
    return refuse


def missing_dependency(packages: tuple[str, ...]) -> str | None:
    """Why the first of `packages` that does not import fails; None when all import."""
    for package in packages:
        try:
            importlib.import_module(package)
        except Exception as error:
            return f"{package}: {type(error).__name__}: {error}"
    return None


def stand_in_multimodal_modules() -> dict[str, str]:
    """Replace each multimodal module whose dependencies do not import; return `module -> why` for those."""
    replaced = {}
    for module, (packages, names) in MULTIMODAL_MODULES.items():
        reason = None if module in sys.modules else missing_dependency(packages)
        if reason is None:
            continue
        stand_in = types.ModuleType(module, f"text-only stand-in ({reason})")
        for name in names:
            setattr(stand_in, name, _refusing(module, name, reason))
        for name, value in STAND_IN_CONSTANTS.get(module, {}).items():
            setattr(stand_in, name, value)
        sys.modules[module] = stand_in
        replaced[module] = reason
    return replaced


def import_agent_loop() -> types.ModuleType:
    """`verl_tool.agent_loop`, its multimodal helpers stood in for where their dependencies do not import."""
    stand_in_multimodal_modules()
    return importlib.import_module(AGENT_LOOP_PACKAGE)
