"""The audit stage: see what a reward teaches before spending GPU hours.

`python -m launch audit reward=PRESET [reward.components.location.weight=...]` writes
`audit/settings.json` (the chosen spec, fully resolved, and each preset in `audit.compare`) and runs
`python -m rewards.audit.run`, which plays scripted policies through the navigation environment and
writes a table, a plot and the scored rollouts into the run directory.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from launch.compose import ConfigError, compose_config, to_container
from launch.plan import FileSpec, Plan, Resources, Step
from launch.schema import check_choice, check_positive, described, typed_section
from rewards.spec import RewardSpecError, preset_names, spec_from_dict

SETTINGS_FILE = "audit/settings.json"


class AuditConfigError(ConfigError):
    """The `audit` or `reward` settings are wrong; the message names the key."""


def _spec(data: object, where: str) -> dict:
    """A reward spec checked and fully resolved, or AuditConfigError naming the key."""
    try:
        return spec_from_dict(data, where).to_dict()
    except RewardSpecError as error:
        raise AuditConfigError(str(error)) from None


@dataclass
class AuditConfig:
    """The `audit` section (configs/audit/default.yaml); `compare` null: every preset of configs/reward/."""

    questions: int = described("synthetic questions the scripted policies play")
    seed: int = described("the seed of the synthetic questions and the policies")
    max_turns: int = described("tool calls per rollout")
    compare: list[str] | None = described(
        "presets scored next to the chosen one; null: every preset, []: the chosen spec alone", preset_names)
    parquet: str | None = described("a real RL parquet whose rows replace the synthetic questions (with caption_dir)")
    caption_dir: str | None = described("the folder of that parquet's caption trees")
    limit: int = described("at most this many parquet rows with clue intervals are played")


def audit_specs(config: DictConfig, compare: list[str]) -> dict[str, dict]:
    """The chosen spec and every preset in `compare`, keyed by label; an overridden preset is `NAME*`."""
    chosen = _spec(to_container(config)["reward"], "reward")
    specs: dict[str, dict] = {}
    for name in compare:
        check_choice("audit", "compare", name, tuple(preset_names()), AuditConfigError)
        specs[name] = _spec(to_container(compose_config("audit", [f"reward={name}"], False).config)["reward"],
                            f"audit.compare: reward={name}")
    label = chosen["preset"]
    if specs.get(label) != chosen:
        label = f"{label}*" if label in specs else label
        specs = {label: chosen, **specs}
    return specs


def audit_settings(config: DictConfig) -> dict:
    """The resolved, checked settings the audit reads."""
    section: AuditConfig = typed_section(AuditConfig, config.audit, "audit", AuditConfigError)
    for key in ("questions", "max_turns", "limit"):
        check_positive("audit", key, getattr(section, key), error=AuditConfigError)
    if (section.parquet is None) != (section.caption_dir is None):
        raise AuditConfigError("audit.parquet and audit.caption_dir go together: set both or neither")
    if section.parquet is not None:
        for key, check in (("parquet", Path.is_file), ("caption_dir", Path.is_dir)):
            path = Path(getattr(section, key)).expanduser().absolute()
            if not check(path):
                kind = "file" if key == "parquet" else "folder"
                raise AuditConfigError(f"audit.{key}={getattr(section, key)}: no such {kind}")
            setattr(section, key, str(path))
    settings = dataclasses.asdict(section)
    del settings["compare"]
    settings["specs"] = audit_specs(config, preset_names() if section.compare is None else section.compare)
    return settings


def build_plan(config: DictConfig, run_dir: Path, run_name: str, python: str) -> Plan:
    """The audit Plan for a composed config, to run in `run_dir`."""
    settings = audit_settings(config)
    files = [FileSpec(SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")]
    main = Step("audit", [python, "-m", "rewards.audit.run", "--settings", SETTINGS_FILE, "--output", "audit"])
    return Plan(stage="audit", run_dir=str(run_dir), main=main, files=files,
                resources=Resources(nodes=1, gpus_per_node=0), outputs={"audit": str(run_dir / "audit")})
