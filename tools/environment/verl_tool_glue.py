"""Our navigation tool as a verl-tool tool, and its registration with verl-tool's tool registry.

verl-tool's server (`verl_tool.servers.tool_server`) builds each tool as `cls(num_workers=N)` and calls
`parse_action`, `get_observations(trajectory_ids, actions, extra_fields)`, `has_env` and `delete_env`
(the latter two from its `finish` tool). It finds tools by module name inside its own package, so
`register()` puts this module into that package's registry and `sys.modules` without editing any
installed file; `tools.environment.serve_tool` calls it before starting verl-tool's server code in the same
process. Without verl-tool installed (the launcher alone) this class derives from `object`, so the
module still imports; every environment launch/install.sh builds has verl-tool.
"""

from __future__ import annotations

import logging
import sys
from concurrent.futures import ThreadPoolExecutor

from tools.environment import prompts
from tools.environment.navigation import NavigationEnv
from tools.environment.tool_settings import ToolSettings, load_settings

TOOL_TYPE = "longvideo_nav"
MODULE_IN_VERL_TOOL = f"verl_tool.servers.tools.{TOOL_TYPE}"
logger = logging.getLogger(__name__)


def _verl_tool_base() -> type:
    """verl-tool's BaseTool when verl-tool is installed, else `object` (the interface is all ours)."""
    try:
        from verl_tool.servers.tools.base import BaseTool
    except ImportError:
        return object
    return BaseTool


def _question_info(extra_field: object) -> tuple[object, str | None]:
    """The per-question `extra_info` and `data_source` from one request's extra field.

    verl-tool's agent loop sends the parquet row's `extra_info` flattened into the extra field (and
    not `data_source`, which our RL data therefore also writes inside `extra_info`). Anything but a
    mapping is passed on as is, so the environment's field check names what is wrong with it.
    """
    if not isinstance(extra_field, dict):
        return extra_field, None
    info = extra_field.get("extra_info", extra_field)
    source = extra_field.get("data_source")
    if source is None and isinstance(info, dict):
        source = info.get("data_source")
    return info, source if isinstance(source, str) else None


def _flag(extra_field: object, key: str) -> bool:
    """Whether the request flag `key` (is_last_step, finish) is set in an extra field."""
    return isinstance(extra_field, dict) and bool(extra_field.get(key))


class LongVideoNavTool(_verl_tool_base()):
    """get_caption and video_qa for verl-tool: one NavigationEnv, its per-trajectory state freed on the last step."""

    tool_type = TOOL_TYPE

    def __init__(self, num_workers: int = 1, settings: ToolSettings | None = None):
        # verl-tool passes only num_workers; the settings file comes from $LONGVIDEO_R1_TOOL_CONFIG.
        self.num_workers = max(1, int(num_workers))
        self.env = NavigationEnv(settings if settings is not None else load_settings())
        # verl-tool's finish tool lists `env_cache` keys in debug logs; the state itself lives in self.env.
        self.env_cache: dict = {}

    def get_usage_inst(self) -> str:
        """One line for verl-tool's usage listing."""
        return 'get_caption((h, m)), get_caption((h, m, l)) and video_qa((h, m, l), "question") in a tool block'

    def parse_action(self, action: str) -> tuple[str, bool]:
        """Claim every turn: verl-tool sends only turns that ended on an action stop token, and a turn no
        tool claims gets an empty observation from verl-tool, where ours explains what was wrong."""
        return action, True

    def conduct_action(self, trajectory_id: str, action: str, extra_field: dict) -> tuple[str, bool, bool]:
        """Serve one turn: (observation text, done, valid); never raises, a turn that is not text is explained."""
        if not isinstance(action, str):
            # verl-tool's request model sends text; anything else is a caller's bug, told to the model as invalid.
            logger.error("trajectory %s: the action is a %s, not the model's turn text", trajectory_id,
                         type(action).__name__)
            reason = (f"the turn arrived as {type(action).__name__}, not text: expected the model's turn, "
                      "a thought then one tool block or one answer block")
            return prompts.error_observation(reason), False, False
        info, source = _question_info(extra_field if extra_field is not None else {})
        try:
            observation = self.env.step(trajectory_id, action, info, source)
        # verl-tool would turn an exception into an empty observation that ends the trajectory; a bug of
        # ours is logged with its traceback and explained to the model instead.
        except Exception as error:
            logger.exception("trajectory %s: the navigation tool failed on %r", trajectory_id, action[-200:])
            text = prompts.tool_failure_observation(f"internal error in the navigation tool ({type(error).__name__})")
            return text, False, False
        return observation.text, observation.done, observation.valid

    def get_observations(self, trajectory_ids: list[str], actions: list[str],
                         extra_fields: list[dict]) -> tuple[list[str], list[bool], list[bool]]:
        """verl-tool's batch call: observations, dones and valids in request order; frees finished trajectories.

        ValueError when the three lists differ in length: verl-tool's request model refuses such a request
        before it reaches a tool, so only a caller's bug gets here, and pairing would drop turns silently.
        """
        batch = {"trajectory_ids": trajectory_ids, "actions": actions, "extra_fields": extra_fields}
        for name, value in batch.items():
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"get_observations takes {name} as a list, got {type(value).__name__}")
        lengths = (len(trajectory_ids), len(actions), len(extra_fields))
        if len(set(lengths)) != 1:
            raise ValueError(f"get_observations takes one action and one extra field per trajectory id, got "
                             f"{lengths[0]} trajectory ids, {lengths[1]} actions and {lengths[2]} extra fields")
        if len(trajectory_ids) <= 1 or self.num_workers == 1:
            results = list(map(self.conduct_action, trajectory_ids, actions, extra_fields))
        else:
            with ThreadPoolExecutor(max_workers=min(self.num_workers, len(trajectory_ids))) as pool:
                results = list(pool.map(self.conduct_action, trajectory_ids, actions, extra_fields))
        self.maybe_cleanup_env(trajectory_ids, actions, extra_fields)
        if not results:
            return [], [], []
        observations, dones, valids = (list(column) for column in zip(*results, strict=True))
        return observations, dones, valids

    def maybe_cleanup_env(self, trajectory_ids: list[str], actions: list[str], extra_fields: list[dict]) -> None:
        """Free the state of trajectories whose request marks their last step or finish."""
        for trajectory_id, extra_field in zip(trajectory_ids, extra_fields, strict=True):
            if _flag(extra_field, "is_last_step") or _flag(extra_field, "finish"):
                self.env.end(trajectory_id)

    def has_env(self, trajectory_id: str) -> bool:
        """Whether the trajectory holds state (called by verl-tool's finish tool)."""
        return self.env.has_state(trajectory_id)

    def delete_env(self, trajectory_id: str) -> None:
        """Free the trajectory's state (called by verl-tool's finish tool)."""
        self.env.end(trajectory_id)

    def get_env_cache_keys(self) -> list[str]:
        """The trajectories that hold state."""
        return self.env.active_trajectories()

    def close(self) -> None:
        """Stop the environment's frame workers (serve_tool calls this when verl-tool's server stops)."""
        self.env.close()


def register() -> type:
    """Make `tool_type=longvideo_nav` resolvable by verl-tool's `get_tool_cls`; idempotent, refuses a clash."""
    from verl_tool.servers.tools import base

    existing = base.registered_tools.get(TOOL_TYPE)
    if existing is not None and existing is not LongVideoNavTool:
        raise RuntimeError(f"verl-tool already has a tool {TOOL_TYPE!r} ({existing.__module__}); "
                           "refusing to replace it")
    if TOOL_TYPE not in base.ALL_TOOLS:
        base.ALL_TOOLS.append(TOOL_TYPE)
    # get_tool_cls imports verl_tool.servers.tools.<tool_type>: this module answers that import.
    sys.modules[MODULE_IN_VERL_TOOL] = sys.modules[__name__]
    base.registered_tools[TOOL_TYPE] = LongVideoNavTool
    logger.info("registered %s with verl-tool as %s", LongVideoNavTool.__name__, TOOL_TYPE)
    return LongVideoNavTool
