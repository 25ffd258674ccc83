"""verl's reward manager, loaded as verl-tool's RL trainer loads it, with a spy on what it decodes.

verl-tool's `main_ppo` builds its reward function with `verl_tool.trainer.ppo.reward.load_reward_manager`
from the trainer config: the top-level `custom_reward_function` (path, name, reward_kwargs, as the RL
Plan renders them), `reward_model.reward_manager` and `data.reward_fn_key`. The tests that score
rollouts through verl use this, so they run the code path and the verl version RL runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.conftest import PROJECT_ROOT

REWARD_FILE = PROJECT_ROOT / "rewards" / "verl_entry.py"


@dataclass
class SpiedManager:
    """A reward manager and the `solution_str` of every rollout it scored, in order."""

    manager: object
    decoded: list[str] = field(default_factory=list)


def trainer_reward_manager(tokenizer, reward_kwargs: dict, manager: str = "naive") -> SpiedManager:
    """The trainer's reward manager over our compute_score with `reward_kwargs`, recording decoded texts."""
    from omegaconf import OmegaConf
    from verl_tool.trainer.ppo.reward import load_reward_manager

    config = OmegaConf.create({
        "custom_reward_function": {"path": str(REWARD_FILE), "name": "compute_score", "reward_kwargs": reward_kwargs},
        "reward_model": {"reward_manager": manager},
        "data": {"reward_fn_key": "data_source"},
    })
    loaded = load_reward_manager(config, tokenizer, num_examine=0)
    spied = SpiedManager(loaded)
    scored = loaded.compute_score

    def spy(**kwargs):
        """The trainer's wrapped reward function, recording the solution_str verl decoded."""
        spied.decoded.append(kwargs["solution_str"])
        return scored(**kwargs)

    loaded.compute_score = spy
    return spied
