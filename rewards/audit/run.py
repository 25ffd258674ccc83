"""The reward audit: scripted policies played through the navigation environment and scored by reward specs.

    python -m rewards.audit.run --settings audit/settings.json

(`python -m launch audit reward=PRESET` writes the settings and runs this.) For every spec and
policy it reports the mean score and each component, checks what a reward must never teach (a
wrong answer beating a right one at equal navigation, repeats raising the score, a score outside
the spec's documented range, the exhaustive scan locating better than the oracle), and writes
`table.md`, `results.json`, `rollouts.jsonl` and `scores.png` into the output folder. It exits 1
when a check fails, and 2 with one line naming the file when its input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from rewards.audit.questions import parquet_questions, synthetic_questions
from rewards.audit.report import plot_scores, write_table
from rewards.policies import POLICIES, AuditCase
from rewards.question import AnswerKey, RewardInputError, read_question
from rewards.rollout import decoded_rollout
from rewards.score import score_rollout
from rewards.spec import RewardSpec, RewardSpecError, spec_from_dict
from tools.environment import settings_file
from tools.environment.navigation import NavigationEnv
from tools.environment.tool_settings import settings_from_dict

# The audit plays no video_qa, so the VLM endpoint is never called; the tool still needs one named.
UNUSED_VLM = {"base_url": "http://127.0.0.1:9/v1", "model": "unused"}
# The settings keys the audit reads (the audit stage writes them all).
SETTING_KEYS = ("specs", "questions", "seed", "max_turns", "parquet", "caption_dir", "limit")
# The exit code of an audit whose input cannot be read (the launcher's code for a bad config, too).
INPUT_ERROR_EXIT = 2


class AuditInputError(ValueError):
    """Audit settings or questions that cannot be read; the message names the file and what was expected."""


@dataclass(frozen=True)
class Played:
    """One policy's rollout on one question: its (turn, observation) steps and the decoded text."""

    policy: str
    question: int
    steps: tuple[tuple[str, str], ...]

    @property
    def text(self) -> str:
        """The rollout as verl decodes it."""
        return decoded_rollout(list(self.steps))


@dataclass(frozen=True)
class Check:
    """One audit check of one spec: its name, whether it held, and what was seen."""

    name: str
    spec: str
    passed: bool
    detail: str


def play_all(questions: list[AuditCase], caption_dir: Path, max_turns: int, seed: int) -> list[Played]:
    """Every policy on every question, each turn served by the navigation environment."""
    env = NavigationEnv(settings_from_dict({"default": {"caption_dir": str(caption_dir), "video_dir": str(caption_dir),
                                                        "vlm": UNUSED_VLM}}))
    played = []
    for index, question in enumerate(questions):
        for name, policy in POLICIES.items():
            rng = random.Random(f"{seed}/{index}/{name}")
            trajectory = f"{name}/{index}"
            steps = []
            for turn in policy(question, rng, max_turns):
                observation = env.step(trajectory, turn, question.extra_info(index), question.data_source)
                steps.append((turn, observation.text))
                if observation.done:
                    break
            env.end(trajectory)
            played.append(Played(name, index, tuple(steps)))
    return played


def without_repeats(played: Played) -> Played:
    """The same rollout with every repeated step removed (the first of each kept)."""
    seen, steps = set(), []
    for turn, observation in played.steps:
        if turn not in seen:
            seen.add(turn)
            steps.append((turn, observation))
    return Played(played.policy, played.question, tuple(steps))


def score_all(played: list[Played], facts: list[AnswerKey], spec: RewardSpec) -> list[dict]:
    """The score dict of every played rollout under `spec`."""
    return [score_rollout(spec, p.text, facts[p.question]) for p in played]


def run_checks(label: str, spec: RewardSpec, played: list[Played], scores: list[dict],
               facts: list[AnswerKey]) -> list[Check]:
    """What `spec` must never teach, checked on the played rollouts."""
    by = {(p.policy, p.question): s for p, s in zip(played, scores, strict=True)}
    indices = range(len(facts))
    low, high = spec.bounds()
    checks = []
    pairs = (("oracle", "perfect_nav_wrong"), ("guess_right", "guess_wrong"))
    losers = [f"q{i}: {right} {by[right, i]['score']:.3f} <= {wrong} {by[wrong, i]['score']:.3f}"
              for right, wrong in pairs for i in indices if by[right, i]["score"] <= by[wrong, i]["score"]]
    checks.append(Check("right answer beats wrong at equal navigation", label, not losers, "; ".join(losers[:3])))
    raised = []
    for p, s in zip(played, scores, strict=True):
        if p.policy == "repeat_spammer":
            plain = score_rollout(spec, without_repeats(p).text, facts[p.question])["score"]
            if s["score"] > plain + 1e-9:
                raised.append(f"q{p.question}: {s['score']:.3f} with repeats > {plain:.3f} without")
    checks.append(Check("repeats never raise the score", label, not raised, "; ".join(raised[:3])))
    outside = [f"{p.policy} q{p.question}: {s['score']:.3f}" for p, s in zip(played, scores, strict=True)
               if not low - 1e-9 <= s["score"] <= high + 1e-9]
    checks.append(Check(f"scores inside the documented range [{low:g}, {high:g}]", label, not outside,
                        "; ".join(outside[:3])))
    if "location" in scores[0]:
        oracle = _mean([by["oracle", i]["location"] for i in indices])
        scan = _mean([by["exhaustive", i]["location"] for i in indices])
        checks.append(Check("oracle locates at least as well as the exhaustive scan", label, oracle >= scan,
                            f"location {oracle:.3f} vs {scan:.3f}"))
    return checks


def _mean(values: list[float]) -> float:
    """The mean of the values that are not NaN (NaN when there are none)."""
    kept = [value for value in values if not math.isnan(value)]
    return sum(kept) / len(kept) if kept else math.nan


def summarise(played: list[Played], scores: list[dict]) -> dict[str, dict[str, float]]:
    """Per policy, the mean of the score, every component and every count."""
    summary: dict[str, dict[str, float]] = {}
    for name in POLICIES:
        rows = [s for p, s in zip(played, scores, strict=True) if p.policy == name]
        summary[name] = {key: _mean([float(row[key]) for row in rows]) for key in rows[0]}
    return summary


def audit(settings: dict, output: Path) -> tuple[dict, list[Check]]:
    """Play, score, check and report; returns the results and the checks."""
    output.mkdir(parents=True, exist_ok=True)
    caption_dir = output / "captions"
    if settings.get("parquet"):
        questions, skipped = parquet_questions(Path(settings["parquet"]), int(settings["limit"]))
        caption_dir = Path(settings["caption_dir"])
        print(f"[audit] {len(questions)} questions from {settings['parquet']} ({skipped} without clue intervals "
              "skipped)")
    else:
        questions = synthetic_questions(int(settings["questions"]), int(settings["seed"]), caption_dir)
        print(f"[audit] {len(questions)} synthetic questions, caption trees in {caption_dir}")
    if not questions:
        raise AuditInputError(f"{settings.get('parquet') or 'the synthetic set'}: no question with clue intervals "
                              "to play; expected at least one")
    played = play_all(questions, caption_dir, int(settings["max_turns"]), int(settings["seed"]))
    # What the reward reads of each question, read once for every spec.
    facts = [read_question(q.letter, q.extra_info(i)) for i, q in enumerate(questions)]
    results: dict = {"questions": len(questions), "max_turns": settings["max_turns"], "specs": {}}
    checks: list[Check] = []
    with open(output / "rollouts.jsonl", "w") as rollouts:
        for label, spec_data in settings["specs"].items():
            spec = spec_from_dict(spec_data, f"specs.{label}")
            scores = score_all(played, facts, spec)
            checks += run_checks(label, spec, played, scores, facts)
            results["specs"][label] = {"spec": spec.to_dict(), "bounds": list(spec.bounds()),
                                       "policies": summarise(played, scores)}
            for p, s in zip(played, scores, strict=True):
                rollouts.write(json.dumps({"spec": label, "policy": p.policy, "question": p.question,
                                           "scores": s, "text": p.text}) + "\n")
    results["checks"] = [asdict(check) for check in checks]
    (output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(write_table(results, output / "table.md"))
    plot_scores(results, output / "scores.png")
    for check in checks:
        print(f"[audit] {'ok    ' if check.passed else 'FAILED'} {check.spec}: {check.name}"
              + (f" ({check.detail})" if check.detail else ""))
    print(f"[audit] wrote {output / 'table.md'}, {output / 'scores.png'}, {output / 'results.json'}")
    return results, checks


def main(argv: list[str] | None = None) -> int:
    """Run the audit from a settings file; exit 1 when a check fails."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", required=True, type=Path, help="the settings JSON the audit stage wrote")
    parser.add_argument("--output", type=Path, default=Path("audit"), help="folder for the table, plot and results")
    args = parser.parse_args(argv)
    try:
        _, checks = audit(read_settings(args.settings), args.output)
    except (AuditInputError, RewardInputError, RewardSpecError) as error:
        print(f"error: {error}", file=sys.stderr)
        return INPUT_ERROR_EXIT
    return 0 if all(check.passed for check in checks) else 1


def read_settings(path: Path) -> dict:
    """The settings JSON the audit stage wrote; AuditInputError naming the file when it cannot be read."""
    settings = settings_file.read_settings(path, "audit settings", "the JSON object the audit stage wrote",
                                           AuditInputError)
    missing = [key for key in SETTING_KEYS if key not in settings]
    if missing:
        raise AuditInputError(f"{path}: audit settings without {missing}; expected {list(SETTING_KEYS)}")
    return settings


if __name__ == "__main__":
    sys.exit(main())
