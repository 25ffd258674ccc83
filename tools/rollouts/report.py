"""The preflight's report: what a researcher checks before spending an RL budget, as JSON, Markdown and a plot.

Every number is computed from the rollout records (`records.py`) and the sampler's timings:
whether actions are valid and answered, how often a rollout is cut by the response budget or the
turn limit, turns, tool calls and tokens per turn, each reward component's mean and spread, the
share of GRPO groups whose rewards are all equal (no learning signal), and where the time went.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from tools.environment.actions import Answer, GetCaption, VideoQA, parse_turn


def _mean(values: list[float]) -> float:
    """The mean, 0 for no values."""
    return float(statistics.fmean(values)) if values else 0.0


def _spread(values: list[float]) -> dict[str, float]:
    """Mean, population standard deviation, minimum and maximum."""
    if not values:
        return {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
    return {"mean": _mean(values), "std": float(statistics.pstdev(values)), "min": float(min(values)),
            "max": float(max(values))}


def call_kind(action: object) -> str:
    """What a tool request asked for: get_caption, video_qa, answer, or invalid (the tool's own reading)."""
    parsed = parse_turn(action) if isinstance(action, str) else None
    if parsed is None or parsed.error is not None:
        return "invalid"
    kinds = {GetCaption: "get_caption", VideoQA: "video_qa", Answer: "answer"}
    return kinds[type(parsed.action)]


def tool_time_by_kind(calls: list[dict]) -> dict[str, dict[str, float]]:
    """Per request kind: how many, and the tool server's own milliseconds per request (mean, max)."""
    kinds = [call_kind(call.get("action")) for call in calls]
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for kind, call in zip(kinds, calls, strict=True):
        milliseconds = call.get("processing_time_ms")
        if isinstance(milliseconds, (int, float)) and not isinstance(milliseconds, bool):
            times[kind].append(float(milliseconds))
    counts = Counter(kinds)
    return {kind: {"calls": counts[kind], "ms_mean": _mean(ms), "ms_max": max(ms, default=0.0)}
            for kind, ms in sorted(times.items())}


def reward_components(records: list[dict]) -> dict[str, dict[str, float]]:
    """Each numeric reward field's spread over the rollouts, the total score first."""
    components = {"score": _spread([record["score"] for record in records])}
    keys = sorted({key for record in records for key, value in record["reward"].items()
                   if isinstance(value, (int, float)) and not isinstance(value, bool)})
    for key in keys:
        components[key] = _spread([float(record["reward"][key]) for record in records if key in record["reward"]])
    return components


def flat_groups(records: list[dict]) -> tuple[int, int]:
    """GRPO groups whose scores are all equal (advantage 0 for every rollout), and the number of groups."""
    scores: dict[int, set[float]] = {}
    for record in records:
        scores.setdefault(record["group"], set()).add(round(record["score"], 9))
    return sum(len(values) == 1 for values in scores.values()), len(scores)


def summarize(records: list[dict], sampled, config, settings: dict) -> dict[str, Any]:
    """The report's numbers for the rollouts of one preflight."""
    calls = [call for record in records for call in record["tool_calls"]]
    generated = [sum(record["response_mask"]) for record in records]
    observed = [len(record["response_mask"]) - sum(record["response_mask"]) for record in records]
    turns = [record["num_turns"] for record in records]
    flat, groups = flat_groups(records)
    timing = dict(sampled.timing_s)
    side = timing.get("tool", 0.0) + timing.get("reward", 0.0)
    agent = config.actor_rollout_ref.agent
    return {
        "rollouts": len(records), "groups": groups, "n": int(config.actor_rollout_ref.rollout.n),
        "policy_model": settings["policy"]["path"], "reward_preset": settings.get("reward_preset"),
        "split": settings["split"],
        "limits": {"max_turns": int(agent.max_turns), "max_response_length": int(agent.max_response_length),
                   "max_action_length": int(agent.max_action_length), "max_obs_length": int(agent.max_obs_length)},
        "valid_action_rate": _mean([float(call["valid_action"]) for call in calls]),
        "answer_rate": _mean([float(record["reward"].get("answered", 0)) for record in records]),
        "cut_at_length_rate": _mean([float(record["cut_at_length"]) for record in records]),
        "cut_at_turn_limit_rate": _mean([float(record["cut_at_turn_limit"]) for record in records]),
        "turns": _spread([float(t) for t in turns]),
        "tool_requests": _spread([float(len(record["tool_calls"])) for record in records]),
        "stop_reasons": dict(Counter(record["stop_reason"] for record in records).most_common()),
        "reward": reward_components(records),
        "flat_group_rate": flat / groups if groups else 0.0,
        "advantage": _spread([record["advantage"] for record in records]),
        "tokens": {"generated_per_turn": sum(generated) / max(sum(turns), 1),
                   "observation_per_call": sum(observed) / max(len(calls), 1),
                   "response": _spread([float(len(record["response_mask"])) for record in records])},
        "time_s": timing, "policy_requests": sampled.policy_requests,
        "tool_time_by_kind": tool_time_by_kind(calls),
        "rollouts_per_s": len(records) / timing["generation_wall"] if timing.get("generation_wall") else 0.0,
        "tool_plus_reward_over_policy": side / timing["policy"] if timing.get("policy") else 0.0,
    }


def markdown(summary: dict[str, Any]) -> str:
    """The report as a Markdown page."""
    time_s = summary["time_s"]
    lines = [
        f"# RL preflight: {summary['rollouts']} rollouts ({summary['groups']} questions x {summary['n']})",
        "", f"Policy `{summary['policy_model']}`, reward preset `{summary['reward_preset']}`, "
        f"{summary['split']} split; limits {summary['limits']}.", "",
        "| check | value |", "|---|---|",
        f"| valid actions (of requests to the tool server) | {summary['valid_action_rate']:.1%} |",
        f"| rollouts that answered | {summary['answer_rate']:.1%} |",
        f"| cut at max_response_length | {summary['cut_at_length_rate']:.1%} |",
        f"| cut at the turn limit | {summary['cut_at_turn_limit_rate']:.1%} |",
        f"| GRPO groups with all rewards equal (no signal) | {summary['flat_group_rate']:.1%} |",
        f"| turns per rollout (mean, max) | {summary['turns']['mean']:.2f}, {summary['turns']['max']:.0f} |",
        f"| requests to the tool server per rollout (calls and answers, mean) | "
        f"{summary['tool_requests']['mean']:.2f} |",
        f"| generated tokens per turn | {summary['tokens']['generated_per_turn']:.1f} |",
        f"| observation tokens per call | {summary['tokens']['observation_per_call']:.1f} |",
        f"| rollouts per second | {summary['rollouts_per_s']:.3f} |",
        f"| time: policy / tool / reward (s, summed per call) | {time_s.get('policy', 0):.2f} / "
        f"{time_s.get('tool', 0):.2f} / {time_s.get('reward', 0):.3f} |",
        f"| (tool + reward) / policy | {summary['tool_plus_reward_over_policy']:.3f} |",
        "", "## Tool time per request kind (the tool server's own time)", "",
        "| kind | requests | ms per request (mean) | ms (max) |", "|---|---|---|---|",
        *(f"| {kind} | {row['calls']} | {row['ms_mean']:.1f} | {row['ms_max']:.1f} |"
          for kind, row in summary["tool_time_by_kind"].items()),
        "", "## Reward components", "", "| component | mean | std | min | max |", "|---|---|---|---|---|",
    ]
    for name, spread in summary["reward"].items():
        lines.append(f"| {name} | {spread['mean']:.4f} | {spread['std']:.4f} | {spread['min']:.4f} | "
                     f"{spread['max']:.4f} |")
    lines += ["", "## Stop reasons", "", "| reason | rollouts |", "|---|---|"]
    lines += [f"| {reason} | {count} |" for reason, count in summary["stop_reasons"].items()]
    return "\n".join(lines) + "\n"


def plot(records: list[dict], path: Path) -> None:
    """Scores by group (one column per GRPO group) and the turns histogram, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (groups_axis, turns_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for record in records:
        groups_axis.scatter(record["group"], record["score"], color="tab:blue", alpha=0.6)
    groups_axis.set(xlabel="GRPO group (question)", ylabel="reward", title="Rewards within each group")
    turns_axis.hist([record["num_turns"] for record in records], bins=range(0, max(
        [record["num_turns"] for record in records] + [1]) + 2), color="tab:orange", rwidth=0.9)
    turns_axis.set(xlabel="turns", ylabel="rollouts", title="Turns per rollout")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(summary: dict[str, Any], records: list[dict], output: Path) -> None:
    """report.json, report.md and report.png in `output`."""
    (output / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    (output / "report.md").write_text(markdown(summary))
    plot(records, output / "report.png")
