"""Benchmark: the SFT data builder, in tokens trained per epoch and in trajectories converted per second.

Input is generated deterministically and is not timed: a few dozen videos of 1-2.5 hours (caption trees
of width 6-8 written with `tools.environment.caption_tree.tree_data`, captions of 50-100 words) and trajectories
of the paper's length (`--turns` tool calls, 10 by default, then an answer turn): a question with 4-5
options, model turns of 80-150 words of thought then one action (medium and low get_caption calls,
video_qa on a leaf already read), observations as the tool serves them (the caption, or an
`<information>` reply of 20-50 words). Videos are shared between trajectories, as in real data.
Every trajectory is a real `Trajectory` that passes `tools.builders.sft_checks` and goes through
`tools.builders.sft_data.build`. Measured in the same run:
- tokens per epoch: our file holds one sample per trajectory, so an epoch reads each trajectory's
  tokens once; the baseline splits per turn (one sample per model turn, sample k holding the whole
  prefix up to and including model turn k, as one-sample-per-turn pipelines do), so an epoch reads
  the sum of the prefix lengths. Counted with the tiny model's tokenizer (the real Qwen vocabulary,
  built locally by `tools.demo.tiny_model`) and the `qwen3_nothink` template, exactly as the builder's
  report counts them, on `--token-sample` trajectories each for 3, 5 and `--turns` tool calls, and
  extrapolated to `--trajectories`;
- conversion: `build` without a tokenizer (parse + check + render + write, report included) on
  `--trajectories` trajectories (33,000 by default, the size of the paper's SFT set), after a small
  warm-up build; the baseline is the floor of any converter: `json.loads` of every input line and
  `json.dumps` + write of every sample the builder wrote. The ratio is converter/baseline.
No timed assertions; the numbers and ratios are printed.

    python -m tests.benchmarks.bench_sft_data [--trajectories 33000] [--turns 10] [--token-sample 300] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tools.builders.sft_checks import Checks
from tools.builders.sft_data import SAMPLES_FILE, SFTDataSettings, build
from tools.builders.sft_report import Report, TokenCounter
from tools.demo import tiny_model
from tools.environment import geometry
from tools.environment.actions import Answer, GetCaption, VideoQA
from tools.environment.caption_tree import tree_data
from tools.environment.prompts import LETTERS, caption_observation, video_qa_observation
from tools.environment.trajectory import Trajectory, TrajectoryTurn

PAPER_SFT_SIZE = 33_000
TEMPLATE = "qwen3_nothink"
OBSERVATION_ROLE = "user"
DATA_SOURCE = "bench"
VIDEOS = 40
# Words per caption by level (high, medium, low).
CAPTION_WORDS = {1: (50, 70), 2: (60, 100), 3: (50, 90)}
TOKEN_BATCH = 256
WORDS = ("the man in a grey coat walks along the river then stops near a red car while a woman with a dog talks on "
         "the phone and two children play on the grass beside the bench as the camera pans slowly across a busy "
         "market where vendors sell fruit under striped awnings and a cyclist rings his bell").split()
THOUGHT = ("the question asks when the person picks up the bag so I should look at the segment where the caption "
           "mentions the kitchen because the clue is probably near the middle of the video and the earlier captions "
           "only describe the street outside which does not match any option yet I still need to check whether the "
           "woman appears again later before I decide").split()
QUERIES = ("What is the person holding?", "What color is the car?", "Who enters the room first?",
           "How many people are at the table?", "What is written on the sign?", "What does the man pick up?")
OPTIONS = ("the red car", "a blue bicycle", "the woman with the dog", "two children on the grass", "a grey coat",
           "the kitchen table", "a street sign", "the river bank", "a striped awning", "a basket of fruit")


def sentence_pool(vocabulary: tuple[str, ...] | list[str], seed: str, size: int = 4096) -> tuple[str, ...]:
    """`size` distinct-looking sentences of 8 to 16 words drawn from `vocabulary` (prose is sampled from them)."""
    rng = random.Random(seed)
    return tuple(" ".join(rng.choices(vocabulary, k=rng.randint(8, 16))).capitalize() + "." for _ in range(size))


SCENE = sentence_pool(WORDS, "scene")
REASONING = sentence_pool(THOUGHT, "thought")


def prose(rng: random.Random, sentences: tuple[str, ...], low: int, high: int) -> str:
    """About `low` to `high` words: sentences (12 words on average) drawn from `sentences`."""
    return " ".join(rng.choices(sentences, k=max(1, round(rng.randint(low, high) / 12))))


def write_videos(caption_dir: Path, count: int) -> list[dict]:
    """Write `count` caption trees (width 6-8) into `caption_dir`; return each video's uid, width, duration, tree."""
    caption_dir.mkdir(parents=True, exist_ok=True)
    videos = []
    for index in range(count):
        rng = random.Random(f"video{index}")
        duration = round(rng.uniform(3600.0, 9000.0), 1)
        width = geometry.width_for_duration(duration)
        tree = tree_data(width, duration, lambda segment, rng=rng: prose(rng, SCENE, *CAPTION_WORDS[segment.level]))
        uid = f"bench_video_{index}"
        (caption_dir / f"{uid}.json").write_text(json.dumps({"duration": duration, **tree}))
        videos.append({"uid": uid, "width": width, "duration": duration, "tree": tree})
    return videos


def make_trajectory(rng: random.Random, index: int, video: dict, tool_calls: int) -> Trajectory:
    """One correct trajectory on `video`: `tool_calls` calls served from its tree, then the answer turn."""
    width, duration, levels = video["width"], video["duration"], video["tree"]["captions"]
    options = rng.sample(OPTIONS, rng.choice((4, 5)))
    letter = rng.choice(LETTERS[:len(options)])
    turns, leaves, seen, medium = [], [], set(), None
    for _ in range(tool_calls):
        for _attempt in range(8):
            roll = rng.random()
            if leaves and roll < 0.2:
                action = VideoQA(rng.choice(leaves), rng.choice(QUERIES))
            elif medium is None or roll < 0.5:
                action = GetCaption((rng.randint(1, width), rng.randint(1, width)))
            else:
                action = GetCaption((*medium, rng.randint(1, width)))
            if action not in seen:
                break
        seen.add(action)
        if isinstance(action, VideoQA):
            observation = video_qa_observation(prose(rng, SCENE, 20, 50))
        else:
            caption = levels[len(action.ids) - 1][geometry.index_of(action.ids, width)]["caption"]
            observation = caption_observation(action.ids, width, duration, caption)
            if len(action.ids) == 2:
                medium = action.ids
            else:
                leaves.append(action.ids)
        model = f"<think>{prose(rng, REASONING, 80, 150)}</think><tool>{action.render()}</tool>"
        turns.append(TrajectoryTurn(model, action.to_dict(), observation, True))
    answer = Answer(letter, letter)
    thought = f"{prose(rng, REASONING, 80, 150)} So the answer is option {letter}."
    model = f"<think>{thought}</think><answer>{letter}</answer>"
    turns.append(TrajectoryTurn(model, answer.to_dict(), "", True))
    start = rng.uniform(0.0, duration - 60.0)
    return Trajectory(id=f"traj{index}", data_source=DATA_SOURCE, video_uid=video["uid"],
                      question=prose(rng, SCENE, 15, 25)[:-1] + "?", options=tuple(options), ground_truth=letter,
                      width=width, duration=duration, clue_intervals=((round(start, 1), round(start + 30.0, 1)),),
                      turns=tuple(turns), answer=letter, correct=True,
                      timings={"total_s": round(rng.uniform(20.0, 200.0), 2)},
                      tokens={"prompt": rng.randint(2000, 6000), "completion": rng.randint(1500, 3000)})


def line_of(trajectory: Trajectory, check: bool) -> dict:
    """`trajectory.to_dict()` without dataclasses.asdict's deep copies (the generator's hot spot); `check`: compare."""
    data = dict(vars(trajectory), options=list(trajectory.options),
                clue_intervals=[list(interval) for interval in trajectory.clue_intervals],
                turns=[dict(vars(turn)) for turn in trajectory.turns])
    if check and data != trajectory.to_dict():
        raise RuntimeError("the generator's JSON differs from Trajectory.to_dict()")
    return data


def write_trajectories(path: Path, videos: list[dict], count: int, tool_calls: int, seed: int) -> Path:
    """Stream `count` trajectories with `tool_calls` calls each as JSONL to `path` (as the trajectory module writes)."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for index in range(count):
            trajectory = make_trajectory(rng, index, videos[index % len(videos)], tool_calls)
            handle.write(json.dumps(line_of(trajectory, check=index == 0), ensure_ascii=False) + "\n")
    return path


def settings(input_path: Path, caption_dir: Path, tool_calls: int, tokenizer: str | None) -> SFTDataSettings:
    """Builder settings for the bench world: user-role observations, the qwen3_nothink template."""
    return SFTDataSettings("trajectories", str(input_path), OBSERVATION_ROLE, Checks(max(15, tool_calls)),
                           {"default": str(caption_dir)}, tokenizer, TEMPLATE)


def checked_build(config: SFTDataSettings, output: Path, expected: int) -> Report:
    """`build`, raising if it did not keep every one of the `expected` generated trajectories."""
    report = build(config, output)
    if len(report.turns) != expected or report.dropped:
        raise RuntimeError(f"the builder kept {len(report.turns)} of {expected} generated trajectories and "
                           f"dropped {dict(report.dropped)}: the generator is wrong")
    return report


def samples_of(sft_file: Path) -> Iterator[dict]:
    """The samples of a builder's sft.json, read one line at a time (the builder writes one sample per line)."""
    with sft_file.open(encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip().rstrip(",")
            if line not in ("[", "]", ""):
                yield json.loads(line)


def per_turn_tokens(counter: TokenCounter, samples: list[dict]) -> tuple[list[int], int]:
    """Per sample, the summed token counts of its per-turn split (each prefix ending at a model turn); and samples."""
    prefixes, owners = [], []
    for position, sample in enumerate(samples):
        messages = sample["messages"]
        for end, message in enumerate(messages, start=1):
            if message["from"] == "gpt":
                prefixes.append({"messages": messages[:end]})
                owners.append(position)
    totals = [0] * len(samples)
    for start in range(0, len(prefixes), TOKEN_BATCH):
        counts = counter.count(prefixes[start:start + TOKEN_BATCH])
        for owner, count in zip(owners[start:start + TOKEN_BATCH], counts, strict=True):
            totals[owner] += count
    return totals, len(prefixes)


def bench_tokens(root: Path, videos: list[dict], tokenizer: Path, turns: int, sample: int, epoch: int) -> None:
    """Tokens per epoch, one sample per trajectory against per-turn splitting, for 3, 5 and `turns` tool calls."""
    counter = TokenCounter(str(tokenizer), TEMPLATE)
    print(f"tokens per epoch: counted on {sample:,} trajectories per turn count with the tiny model's tokenizer (real "
          f"Qwen vocabulary) and the {TEMPLATE} template, extrapolated to {epoch:,} trajectories")
    print(f"  {'tool calls':>10} {'tokens/traj':>11} {'ours/epoch':>15} {'per-turn samples':>16} "
          f"{'per-turn/epoch':>16} {'ratio':>7}")
    lines, start = [], time.perf_counter()
    for tool_calls in sorted({3, 5, turns}):
        folder = root / f"tokens-{tool_calls}"
        folder.mkdir()
        source = write_trajectories(folder / "trajectories.jsonl", videos, sample, tool_calls, seed=tool_calls)
        report = checked_build(settings(source, root / "captions", tool_calls, str(tokenizer)), folder / "sft", sample)
        samples = list(samples_of(folder / "sft" / SAMPLES_FILE))
        split, split_samples = per_turn_tokens(counter, samples)
        # The last prefix of a trajectory is the whole sample: the two counts must agree on it.
        last = counter.count(samples[:1])[0]
        if last != report.tokens[0]:
            raise RuntimeError(f"the builder counted {report.tokens[0]} tokens, the full prefix {last}")
        ours = sum(report.tokens) / sample * epoch
        baseline = sum(split) / sample * epoch
        ratio = baseline / ours
        print(f"  {tool_calls:>10} {sum(report.tokens) / sample:>11,.0f} {ours:>15,.0f} "
              f"{split_samples / sample * epoch:>16,.0f} {baseline:>16,.0f} {ratio:>6.1f}x")
        lines.append(f"tokens per epoch ({tool_calls} tool calls): one sample per trajectory {ours:,.0f} vs per-turn "
                     f"{baseline:,.0f}: {ratio:.1f}x fewer" + (" (goal >= 3x)" if tool_calls == turns else ""))
    print("\n".join(lines))
    print(f"  (generated, built and counted in {time.perf_counter() - start:.0f} s)")


def json_floor(source: Path, sft_file: Path, output: Path) -> float:
    """Seconds to json.loads every input line and json.dumps + write every sample the builder wrote."""
    elapsed = 0.0
    samples = samples_of(sft_file)
    with source.open(encoding="utf-8") as lines, output.open("w", encoding="utf-8") as out:
        out.write("[")
        for line in lines:
            # Reading the builder's sample back is not timed: only what any converter must do is.
            sample = next(samples)
            start = time.perf_counter()
            json.loads(line)
            out.write("\n" + json.dumps(sample, ensure_ascii=False) + ",")
            elapsed += time.perf_counter() - start
        out.write("\n]\n")
    return elapsed


def bench_conversion(root: Path, videos: list[dict], count: int, turns: int, profile: bool) -> None:
    """Trajectories converted per second by `build` without a tokenizer, against the json round-trip floor."""
    folder = root / "conversion"
    folder.mkdir()
    start = time.perf_counter()
    source = write_trajectories(folder / "trajectories.jsonl", videos, count, turns, seed=1)
    generated = time.perf_counter() - start
    warmup = write_trajectories(folder / "warmup.jsonl", videos, 50, turns, seed=2)
    print(f"conversion: {count:,} trajectories of {turns} tool calls over {len(videos)} videos, "
          f"{source.stat().st_size / 2**20:,.0f} MiB of JSONL (generated in {generated:.1f} s, not timed)")
    # Imports and first-use costs (matplotlib for the report plot) are paid by a small build first.
    checked_build(settings(warmup, root / "captions", turns, None), folder / "warmup", 50)
    start = time.perf_counter()
    checked_build(settings(source, root / "captions", turns, None), folder / "sft", count)
    converted = time.perf_counter() - start
    sft_file = folder / "sft" / SAMPLES_FILE
    floor = json_floor(source, sft_file, folder / "floor.json")
    print(f"  wrote sft.json of {sft_file.stat().st_size / 2**20:,.0f} MiB (the converter's time includes "
          "dropped.jsonl, report.json and report.png)")
    print(f"converted {count:,} trajectories in {converted:.1f} s ({count / converted:,.0f}/s); json round-trip floor "
          f"{floor:.1f} s; ratio {converted / floor:.1f}x")
    if count != PAPER_SFT_SIZE:
        print(f"extrapolated to {PAPER_SFT_SIZE:,} trajectories: {converted / count * PAPER_SFT_SIZE:.1f} s "
              f"(floor {floor / count * PAPER_SFT_SIZE:.1f} s)")
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        checked_build(settings(source, root / "captions", turns, None), folder / "profiled", count)
        profiler.disable()
        for order in ("tottime", "cumulative"):
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats(order).print_stats(15)
            print(f"profile of one build, by {order}:")
            print("\n".join(line for line in text.getvalue().splitlines() if line.strip()))


def main() -> None:
    """Generate the bench world, then print tokens per epoch and conversion throughput with their baselines."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=int, default=PAPER_SFT_SIZE)
    parser.add_argument("--turns", type=int, default=10, help="tool calls per trajectory (plus the answer turn)")
    parser.add_argument("--token-sample", type=int, default=300, help="trajectories whose tokens are counted")
    parser.add_argument("--videos", type=int, default=VIDEOS)
    parser.add_argument("--profile", action="store_true", help="also profile one conversion with cProfile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        videos = write_videos(root / "captions", args.videos)
        tokenizer = tiny_model.build(root / "tiny", TEMPLATE)
        sample = min(args.token_sample, args.trajectories)
        bench_tokens(root, videos, tokenizer, args.turns, sample, args.trajectories)
        bench_conversion(root, videos, args.trajectories, args.turns, args.profile)


if __name__ == "__main__":
    main()
