"""Regenerate `launch/verl_tool_trainer_keys.json`: every key of verl-tool's composed trainer config, with its type.

The RL stage validates each override it renders against this file, so a typo or a wrong type is an
error before anything starts, on a machine without verl-tool or a GPU. The file is generated from a
verl-tool checkout at the commit of `launch/env/verl_tool.pin` (the one `launch/install.sh` installs;
tests/launch/test_environment.py regenerates it from the installed checkout); only Hydra is needed:

    python -m launch.gen_trainer_keys CHECKOUT    (install.sh's: VENV/src/verl-tool-<commit>)

verl-tool's trainer (`python -m verl_tool.trainer.main_ppo`) composes `ppo_trainer` from
`verl_tool/trainer/config` with `@hydra.main`; this script composes the same config the same way.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from launch.locks import verl_tool_pin
from launch.trainer_keys import KEYS_FILE, TRAINER_CONFIG_DIR, TRAINER_CONFIG_NAME, type_name
from tools.rollouts.sample import compose_trainer_config as compose_with_overrides

# verl's YAML writes some float defaults as integers (`entropy_coeff: 0`, `top_p: 1`, `temperature: 0`);
# the trainer's dataclasses read these keys as floats, so they are typed float.
FLOAT_NAMES = re.compile(r"(^|_)(coef|coeff|ratio|rate|temperature|top_p|lr)$")


def compose_trainer_config(checkout: Path) -> DictConfig:
    """verl-tool's trainer config, composed by Hydra exactly as its `main_ppo` composes it (no overrides)."""
    config_dir = checkout / TRAINER_CONFIG_DIR
    if not (config_dir / f"{TRAINER_CONFIG_NAME}.yaml").is_file():
        raise SystemExit(f"error: {config_dir}/{TRAINER_CONFIG_NAME}.yaml not found; "
                         f"is {checkout} a verl-tool checkout?")
    return compose_with_overrides([], config_dir)


def _resolved(config: DictConfig, key: str) -> Any:
    """The value at `key` with interpolations resolved; the raw node when it cannot resolve without a run."""
    try:
        value = OmegaConf.select(config, key, throw_on_missing=True)
    except Exception:
        return None
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def flatten(config: DictConfig, prefix: str = "") -> dict[str, dict]:
    """Every leaf of the config (an empty mapping is a leaf) as `dotted key -> {type, default}`."""
    keys: dict[str, dict] = {}
    for name in config.keys():
        dotted = f"{prefix}{name}"
        node = config._get_node(name)
        if isinstance(node, DictConfig) and len(node) > 0:
            keys.update(flatten(node, dotted + "."))
            continue
        default = _resolved(config, str(name))
        kind = type_name(default)
        if kind == "int" and FLOAT_NAMES.search(str(name)):
            kind = "float"
        keys[dotted] = {"type": kind, "default": default}
    return keys


def commit_of(checkout: Path) -> str:
    """The checkout's git commit, or 'unknown' when it is not the top of a git work tree (an archive)."""
    if not (checkout / ".git").exists():
        # An extracted archive inside another repository (a virtual environment's src/) is not that repository.
        return "unknown"
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def main(argv: list[str] | None = None) -> int:
    """CLI: compose the trainer config of the checkout and write the key file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a verl-tool checkout (at the pinned commit)")
    parser.add_argument("--commit", help="the checkout's commit, when it is not a git work tree "
                        "(an archive; default: the pinned commit)")
    parser.add_argument("--output", type=Path, default=KEYS_FILE)
    args = parser.parse_args(argv)
    config = compose_trainer_config(args.checkout)
    keys = flatten(config)
    repository, pinned = verl_tool_pin()
    commit = args.commit or commit_of(args.checkout)
    document = {
        "source": repository,
        "commit": pinned if commit == "unknown" else commit,
        "config": f"{TRAINER_CONFIG_DIR}/{TRAINER_CONFIG_NAME}.yaml",
        "generated_by": "python -m launch.gen_trainer_keys CHECKOUT",
        "keys": dict(sorted(keys.items())),
    }
    args.output.write_text(json.dumps(document, indent=1, sort_keys=False) + "\n")
    print(f"wrote {len(keys)} keys of {document['config']} at {document['commit']} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
