"""Build LLaMA-Factory's SFT file from trajectories: ours (the trajectory JSONL) or the paper's released file.

Our trajectories are rendered by the navigation environment's own prompt builder: the system
prompt and the first user turn are rebuilt from the question fields and the caption tree, model
turns and observations are kept verbatim. Each trajectory is checked (`tools.builders.sft_checks`) and
becomes one sharegpt sample (`tools.builders.sft_format`); each dropped line is written with its line
number and reason; a trajectory is dropped, too, by the checks every builder shares
(`tools.builders.row_checks`: a repeated id, a duration other than its caption file's, a question the
reward would refuse). Output, in `--output`: `sft.json`, `dataset_info.json`, `dropped.jsonl`,
`report.json` and `report.png`. An input that cannot be built is one line on stderr and exit code 2.

    python -m tools.builders.sft_data --settings sft_data/settings.json --output sft_data
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools.builders.builder_io import BuilderInputError, exit_on_input_error, publish, settings_and_output
from tools.builders.released_sft import ReleasedRecordError, read_released
from tools.builders.row_checks import RowRejected, UniqueIds, check_reward_reads, check_tree_duration
from tools.builders.sft_checks import Checks, Drop, check_model_turns, check_observations, check_trajectory
from tools.builders.sft_format import dataset_info, sharegpt_sample
from tools.builders.sft_report import Report, TokenCounter
from tools.environment import prompts
from tools.environment.caption_tree import CaptionTreeError, TreeCache, caption_path
from tools.environment.trajectory import Trajectory, TrajectoryError, read_trajectories

SOURCES = ("trajectories", "released")
SAMPLES_FILE = "sft.json"
TOKEN_BATCH = 256
# What main() reports as one line and exit code 2: inputs that cannot be built, not bugs.
INPUT_ERRORS = (BuilderInputError, TrajectoryError, ReleasedRecordError, FileExistsError, FileNotFoundError)
# The keys of the settings JSON the sft_data stage renders that the builder cannot do without.
REQUIRED_SETTINGS = ("source", "input", "observation_role", "max_turns", "keep_wrong", "keep_hinted",
                     "keep_invalid_turns")


@dataclass(frozen=True)
class SFTDataSettings:
    """What the builder reads: the input and its kind, where caption trees are, and how to render and filter."""

    source: str
    input: str
    observation_role: str
    checks: Checks
    caption_dirs: dict
    tokenizer: str | None = None
    chat_template: str | None = None
    cutoff_len: int | None = None

    @classmethod
    def from_dict(cls, data: dict) -> SFTDataSettings:
        """Settings from the JSON the sft_data stage renders (checked there, re-checked here)."""
        missing = [key for key in REQUIRED_SETTINGS if key not in data]
        if missing:
            raise BuilderInputError(f"sft_data settings without {missing}; expected {list(REQUIRED_SETTINGS)}")
        if data.get("source") not in SOURCES:
            raise BuilderInputError(f"source={data.get('source')!r}: expected one of {', '.join(SOURCES)}")
        if not Path(data["input"]).is_file():
            raise FileNotFoundError(f"input={data['input']}: no such file")
        checks = Checks(int(data["max_turns"]), bool(data["keep_wrong"]), bool(data["keep_hinted"]),
                        bool(data["keep_invalid_turns"]))
        return cls(data["source"], data["input"], data["observation_role"], checks, data.get("caption_dirs") or {},
                   data.get("tokenizer"), data.get("chat_template"), data.get("cutoff_len"))

    def caption_dir(self, data_source: str) -> str:
        """The caption folder of a data source (its own, else the default one)."""
        return (self.caption_dirs.get("sources") or {}).get(data_source) or self.caption_dirs["default"]


def trajectory_sample(trajectory: Trajectory, settings: SFTDataSettings, trees: TreeCache) -> dict:
    """One trajectory as a sharegpt sample, its first user turn rebuilt from the caption tree.

    CaptionTreeError for a tree that is unreadable or of another width; RowRejected for a row no builder writes.
    """
    tree = trees.get(caption_path(settings.caption_dir(trajectory.data_source), trajectory.video_uid))
    if tree.width != trajectory.width:
        raise CaptionTreeError(f"{tree.source}: the file's width is {tree.width} but the trajectory's width is "
                               f"{trajectory.width}; the caption file is authoritative")
    check_tree_duration(tree, trajectory.duration)
    check_reward_reads(trajectory.ground_truth, {
        "video_uid": trajectory.video_uid, "duration": trajectory.duration, "width": trajectory.width,
        "options": list(trajectory.options), "clue_intervals": [list(clue) for clue in trajectory.clue_intervals]})
    first_user = prompts.first_user_turn(trajectory.question, trajectory.options, trajectory.duration, tree)
    turns = trajectory.turns
    exchanges = [(turn.model, turn.observation) for turn in turns[:-1]] + [(turns[-1].model, None)]
    return sharegpt_sample(prompts.system_prompt(settings.checks.max_turns), first_user, exchanges,
                           settings.observation_role)


def our_samples(settings: SFTDataSettings) -> Iterator[tuple[dict, int] | Drop]:
    """(sample, tool calls) for each kept trajectory of our JSONL, or the Drop of a line that is not kept."""
    trees, ids = TreeCache(), UniqueIds("line")
    for line, item in read_trajectories(settings.input):
        if isinstance(item, TrajectoryError):
            yield Drop(line, None, "schema", str(item))
            continue
        try:
            ids.check(item.id, line)
        except RowRejected as error:
            yield Drop(line, item.id, error.reason, str(error))
            continue
        problem = check_trajectory(item, settings.checks)
        if problem is not None:
            yield Drop(line, item.id, *problem)
            continue
        try:
            yield trajectory_sample(item, settings, trees), item.tool_calls()
        except CaptionTreeError as error:
            yield Drop(line, item.id, "caption_tree", str(error))
        except RowRejected as error:
            yield Drop(line, item.id, error.reason, f"{settings.input}:{line}: {error}")


def released_samples(settings: SFTDataSettings) -> Iterator[tuple[dict, int] | Drop]:
    """(sample, tool calls) for each usable record of the released file, prompts and observations verbatim."""
    for number, item in read_released(settings.input):
        if isinstance(item, ReleasedRecordError):
            yield Drop(number, None, "schema", str(item))
            continue
        reason, detail = check_model_turns(item.models, settings.checks.max_turns)
        problem = (reason, detail) if reason is not None else check_observations(item.observations)
        if problem is not None:
            yield Drop(number, None, *problem)
            continue
        exchanges = list(zip(item.models, [*item.observations, None], strict=True))
        yield sharegpt_sample(item.system, item.first_user, exchanges, settings.observation_role), len(item.models) - 1


def build(settings: SFTDataSettings, output: Path) -> Report:
    """Write sft.json, dataset_info.json, dropped.jsonl and the report into `output` (which must not hold them)."""
    output.mkdir(parents=True, exist_ok=True)
    target = output / SAMPLES_FILE
    if target.exists():
        raise FileExistsError(f"{target} exists; every build writes a new folder")
    report = Report(settings.source, settings.input, settings.cutoff_len)
    if settings.source == "released":
        report.notes.append("the released file has no ground truth: answers are not checked, every record with a "
                            "readable answer turn is kept")
    if settings.tokenizer and not settings.chat_template:
        raise ValueError(f"tokenizer={settings.tokenizer} needs chat_template, the template samples are counted in")
    counter = TokenCounter(settings.tokenizer, settings.chat_template) if settings.tokenizer else None
    items = released_samples(settings) if settings.source == "released" else our_samples(settings)
    fd, tmp = tempfile.mkstemp(prefix=f".{SAMPLES_FILE}.", dir=output)
    with os.fdopen(fd, "w", encoding="utf-8") as samples, (output / "dropped.jsonl").open("w") as dropped:
        samples.write("[")
        # Tokens are counted in batches, as the samples stream to disk.
        pending: list[dict] = []
        for item in items:
            if isinstance(item, Drop):
                report.drop(item)
                dropped.write(json.dumps(item.to_dict(), ensure_ascii=False) + "\n")
                continue
            sample, tool_calls = item
            samples.write((",\n" if report.turns else "\n") + json.dumps(sample, ensure_ascii=False))
            report.keep(tool_calls)
            if counter is not None:
                pending.append(sample)
            if len(pending) == TOKEN_BATCH:
                report.tokens.extend(counter.count(pending))
                pending.clear()
        if pending:
            report.tokens.extend(counter.count(pending))
        samples.write("\n]\n")
    if not report.turns:
        os.unlink(tmp)
        raise BuilderInputError(f"{settings.input}: no trajectory was kept; expected at least one usable line; "
                                f"see {output / 'dropped.jsonl'}")
    publish(tmp, target)
    (output / "dataset_info.json").write_text(json.dumps(dataset_info(str(target.absolute())), indent=2) + "\n")
    report.write(output)
    return report


def main() -> None:
    """CLI: build the SFT file from `--settings` into `--output`."""
    with exit_on_input_error(INPUT_ERRORS):
        settings, output = settings_and_output(__doc__)
        report = build(SFTDataSettings.from_dict(settings), output)
    print("\n".join(report.lines()))
    print(f"wrote {output / SAMPLES_FILE} and {output / 'dataset_info.json'}")


if __name__ == "__main__":
    main()
