"""`python -m tools.rollouts --settings FILE --output DIR`: sample, score and report one preflight.

The settings file is the one the rollouts stage renders (`rollouts/settings.json`); DIR receives
`rollouts.jsonl`, `report.json`, `report.md` and `report.png`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from tools.environment import settings_file
from tools.rollouts import RECORDS_FILE
from tools.rollouts.records import rollout_records
from tools.rollouts.report import summarize, write_report
from tools.rollouts.sample import SamplingError, compose_trainer_config, sample, stop_ray


def read_settings(path: Path) -> dict:
    """The stage's settings, with a clear error for a missing or broken file."""
    settings = settings_file.read_settings(path, "rollouts settings",
                                           "the JSON object `python -m launch rollouts` renders", SystemExit)
    for key in ("overrides_file", "split", "prompts", "extra_body", "policy"):
        if key not in settings:
            raise SystemExit(f"rollouts: {path} has no `{key}`; render it with `python -m launch rollouts`")
    return settings


def main(argv: list[str] | None = None) -> int:
    """Run the preflight of one settings file into an output folder."""
    parser = argparse.ArgumentParser(prog="python -m tools.rollouts", description=__doc__.splitlines()[0])
    parser.add_argument("--settings", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    settings = read_settings(args.settings)
    overrides = [line for line in Path(settings["overrides_file"]).read_text().splitlines() if line.strip()]
    config = compose_trainer_config(overrides)
    from verl.utils import hf_tokenizer

    tokenizer = hf_tokenizer(config.actor_rollout_ref.model.path, trust_remote_code=True)
    policy = settings["policy"]
    started = time.monotonic()
    # SIGTERM (the launcher stopping the run) unwinds like an exception, so Ray's processes are stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        sampled = sample(config, tokenizer, policy["base_url"], policy["model"], int(policy["max_model_len"]),
                         settings["split"], int(settings["prompts"]), settings["extra_body"],
                         float(policy["timeout_s"]))
    except SamplingError as error:
        print(f"rollouts: error: {error}", file=sys.stderr)
        return 1
    finally:
        stop_ray()
    sampled.timing_s["total_wall"] = time.monotonic() - started
    reward_keys = list(sampled.batch.meta_info.get("reward_extra_keys") or [])
    records = rollout_records(sampled.batch, tokenizer, reward_keys)
    args.output.mkdir(parents=True, exist_ok=True)
    with open(args.output / RECORDS_FILE, "w") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    summary = summarize(records, sampled, config, settings)
    write_report(summary, records, args.output)
    print(f"rollouts: {len(records)} rollouts of {summary['groups']} questions in "
          f"{sampled.timing_s['total_wall']:.1f} s; report {args.output / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
