"""Run the agent loop over a question set: teacher trajectories or an evaluation, resumable and concurrent.

Questions are built from benchmark annotations and caption trees by the RL data builder's own row
function, so the model reads exactly what RL shows it. Each finished question is appended to
`trajectories.jsonl` (the schema of `tools.environment.trajectory`) and flushed; a failed one to `errors.jsonl`
with its kind. A rerun in the same folder skips every question already in `trajectories.jsonl`,
retries the failed ones and counts each question once. At the end the report is written
(`tools.agent.eval_report`).

    python -m tools.agent.run --settings eval/settings.json --output eval
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tools.agent.eval_report import ERRORS, QUESTIONS, REJECTED, TRAJECTORIES
from tools.agent.loop import AgentLoop, Generation, PromptRow, QuestionFailed
from tools.builders.annotations import AnnotationError, read_annotations
from tools.builders.rl_data import RLDataSettings, question_rows
from tools.builders.row_checks import RowRejected
from tools.environment.navigation import NavigationEnv
from tools.environment.settings_file import read_settings
from tools.environment.tool_settings import settings_from_dict
from tools.environment.trajectory import Trajectory, TrajectoryError, read_trajectories
from tools.environment.vlm_client import VLMClient, VLMEndpoint

MODES = ("eval", "trajectories")
# How many rejected questions the run names on stderr (all of them are in rejected.jsonl).
SHOWN_REJECTIONS = 5


@dataclass(frozen=True)
class RunSettings:
    """What one run plays: the question set, the model and how to ask it, and how many questions at once."""

    mode: str
    benchmark: str
    questions: dict
    generation: Generation
    model: VLMEndpoint
    tool: dict
    concurrency: int = 8
    system_prompt_file: str | None = None
    hints: bool = False
    attempts: int = 1
    max_failed_questions: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> RunSettings:
        """Settings from the JSON the eval and trajectories stages render (checked there)."""
        if data.get("mode") not in MODES:
            raise ValueError(f"mode={data.get('mode')!r}: expected one of {', '.join(MODES)}")
        return cls(mode=data["mode"], benchmark=data["benchmark"], questions=data["questions"],
                   generation=Generation(**data["generation"]),
                   model=VLMEndpoint.from_dict(data["model"], "model"), tool=data["tool"],
                   concurrency=int(data["concurrency"]), system_prompt_file=data.get("system_prompt_file"),
                   hints=bool(data.get("hints", False)), attempts=int(data.get("attempts", 1)),
                   max_failed_questions=int(data.get("max_failed_questions", 0)))


def load_questions(spec: dict, max_turns: int) -> tuple[list[PromptRow], list[dict]]:
    """The questions of an annotation file as RL rows, and a record for each one that could not be built."""
    questions, bad_rows = read_annotations(spec["annotations"], spec["format"])
    rejected = [{"row": row.row, "reason": row.reason, "detail": row.detail} for row in bad_rows]
    if spec.get("length"):
        questions = [question for question in questions if question.length == spec["length"]]
    if spec.get("limit"):
        questions = questions[:int(spec["limit"])]
    row_settings = RLDataSettings(annotations=spec["annotations"], format=spec["format"],
                                  data_source=spec["data_source"], caption_dir=spec["caption_dir"],
                                  video_dir=spec.get("video_dir"), max_turns=max_turns, val_fraction=1.0, seed=0)
    played = []
    for question, row in question_rows(questions, row_settings):
        if isinstance(row, RowRejected):
            rejected.append({"row": question.row, "id": question.question_id, "reason": row.reason,
                             "detail": f"{spec['annotations']} row {question.row}: {row}"})
            continue
        played.append(PromptRow(id=question.question_id, data_source=row["data_source"],
                                    messages=tuple(row["prompt"]), ground_truth=row["reward_model"]["ground_truth"],
                                    extra_info=row["extra_info"], categories=question.categories))
    return played, rejected


def system_prompt_from_file(path: str, max_turns: int):
    """A system prompt builder from a user's file: `{width}` and `{max_turns}` are filled in per question."""
    text = Path(path).read_text(encoding="utf-8")
    if not text.strip():
        raise ValueError(f"{path}: the system prompt file is empty")
    return lambda extra_info: text.replace("{width}", str(extra_info["width"])).replace("{max_turns}", str(max_turns))


def finished_questions(path: Path) -> dict[str, bool]:
    """Whether each question already in `path` was answered correctly; a line cut off by an interruption goes first."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        print(f"[agent] {path}: removing a partial last line left by an interruption ({len(data) - keep} bytes)",
              file=sys.stderr)
        with path.open("r+b") as handle:
            handle.truncate(keep)
    lines: dict[str, int] = {}
    correct: dict[str, bool] = {}
    for line, item in read_trajectories(path):
        if isinstance(item, TrajectoryError):
            raise item
        if item.id in lines:
            raise TrajectoryError(f"{path}:{line}: question {item.id!r} is already on line {lines[item.id]}; "
                                  "a results file holds each question once")
        lines[item.id], correct[item.id] = line, item.correct
    return correct


def _append(path: Path, record: dict) -> None:
    """Append one JSON line and push it to disk, so an interruption loses at most the line being written."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _play(loop: AgentLoop, question: PromptRow, settings: RunSettings) -> Trajectory:
    """One question: up to `attempts` episodes until one is correct; costs add up over the attempts."""
    timings: dict[str, float] = {}
    tokens: dict[str, int] = {}
    for _ in range(settings.attempts):
        trajectory = loop.play(question, hinted=settings.hints)
        for key, value in trajectory.timings.items():
            timings[key] = round(timings.get(key, 0.0) + value, 4)
        for key, value in trajectory.tokens.items():
            tokens[key] = tokens.get(key, 0) + value
        if trajectory.correct:
            break
    return replace(trajectory, timings=timings, tokens=tokens)


def _progress(total: int, initial: int):
    """A progress bar on stderr (less chatty when stderr is a log file)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="q", file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 10.0)


def run(settings: RunSettings, output: Path) -> int:
    """Play every unfinished question, append the results, write the report; 0 when few enough failed."""
    from tools.agent import eval_report

    output.mkdir(parents=True, exist_ok=True)
    max_turns = settings.generation.max_turns
    questions, rejected = load_questions(settings.questions, max_turns)
    with (output / QUESTIONS).open("w", encoding="utf-8") as handle:
        for question in questions:
            handle.write(json.dumps({"id": question.id, "categories": list(question.categories)}) + "\n")
    with (output / REJECTED).open("w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(record) + "\n" for record in rejected)
    done = finished_questions(output / TRAJECTORIES)
    todo = [question for question in questions if question.id not in done]
    prompt = system_prompt_from_file(settings.system_prompt_file, max_turns) if settings.system_prompt_file else None
    env = NavigationEnv(settings_from_dict(settings.tool, "tool"))
    client = VLMClient(replace(settings.model, max_concurrency=max(settings.concurrency, 1)), label="model")
    loop = AgentLoop(env, client, settings.generation, prompt)
    print(f"[agent] {settings.mode} on {settings.benchmark}: {len(questions)} questions, {len(done)} already done, "
          f"{len(todo)} to play, {len(rejected)} rejected ({output / REJECTED})", file=sys.stderr)
    for record in rejected[:SHOWN_REJECTIONS]:
        print(f"[agent] rejected ({record['reason']}): {record['detail']}", file=sys.stderr)
    correct = sum(done.values())
    finished, failed = len(done), 0
    bar = _progress(len(questions), len(done))
    pool = concurrent.futures.ThreadPoolExecutor(max(settings.concurrency, 1), thread_name_prefix="question")
    try:
        futures = {pool.submit(_play, loop, question, settings): question for question in todo}
        for future in concurrent.futures.as_completed(futures):
            question = futures[future]
            try:
                trajectory = future.result()
            except QuestionFailed as error:
                failed += 1
                _append(output / ERRORS, {"id": question.id, "kind": error.kind, "message": str(error),
                                          "turns": error.turns, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
                print(f"[agent] question {question.id}: {error.kind}: {error}", file=sys.stderr)
            else:
                _append(output / TRAJECTORIES, trajectory.to_dict())
                finished += 1
                correct += trajectory.correct
            bar.update(1)
            bar.set_postfix(acc=f"{correct / max(finished, 1):.3f}", failed=failed, refresh=False)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
        client.close()
        # Stops the frame workers and logs the leaf cache's summary.
        env.close()
    report = eval_report.write_report(output, settings.benchmark, settings.mode)
    print("\n".join(eval_report.summary_lines(report)), file=sys.stderr)
    missing = report["failed"]
    if missing > settings.max_failed_questions:
        print(f"[agent] {missing} questions have no result (errors.jsonl); rerun with resume=true to retry them",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI: play the questions of `--settings` into `--output`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        settings = RunSettings.from_dict(read_settings(args.settings, "settings", "the JSON object the stage rendered"))
        return run(settings, args.output)
    except (AnnotationError, TrajectoryError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
