"""The paper's released RL parquet works as is: our tool serves its rows and our rewards score them.

The released preprocessing wrote rows of this shape (the texts here are our own):
`data_source` `videocaption_cgbench` or `videocaption_videomme`; `prompt` [their system prompt
formatted with the width, a user turn of question, lettered options, duration and high-level
captions]; `ability` `get_caption`; `reward_model` {style rule, ground_truth letter}; `extra_info`
{index, need_tools_kwargs, video_uid, split, clue_intervals (CG-Bench only), width, duration, fps,
data_source}; `metadata` None. No `options` anywhere. The rows are written with pandas and read
back with pandas, so lists arrive as numpy arrays, as verl hands them on. The world is real: caption
trees, encoded MP4s and a loopback OpenAI-protocol VLM (tests/fixtures/fake_vlm.py).
"""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rewards.rollout import decoded_rollout
from rewards.spec import PRESET_DIR, spec_from_dict
from rewards.verl_entry import compute_score
from tests.fixtures.fake_vlm import FakeVLM
from tests.fixtures.tool_world import ToolWorld, settings_dict, write_tree
from tools.demo.synthetic_video import encode_test_video
from tools.environment import geometry, prompts
from tools.environment.caption_tree import load_caption_tree
from tools.environment.tool_settings import ToolSettings, settings_from_dict
from tools.environment.verl_tool_glue import LongVideoNavTool

CGBENCH, VIDEOMME = "videocaption_cgbench", "videocaption_videomme"
# The Video-MME video: its own width, duration and folders (tool.sources routes its data_source there).
MME_UID, MME_WIDTH, MME_DURATION = "mme_clip", 3, 54.0
VLM_ANSWER = "a red car drives by"
RELEASED_SYSTEM = (
    "You are a careful video analyst. A long video has been summarised as a tree of captions with {width} "
    "high-level clips, each cut into {width} medium clips, each cut into {width} low clips. Call "
    "<tool>get_caption((h, m))</tool> or <tool>get_caption((h, m, l))</tool> to read a finer caption, and "
    '<tool>video_qa((h, m, l), "question")</tool> to ask about a low clip you have read. Think inside '
    "<think></think> before each call, and finish with <answer>LETTER</answer>."
)
# name: (data_source, video_uid, question, options, answer, clue intervals or None, medium and leaf to visit)
ROWS = {
    "cgbench": (CGBENCH, "clip", "What passes the window?", ["a bus", "a bike", "a red car", "a horse"], "C",
                [[18.0, 19.0]], (2, 1), (2, 1, 3)),
    "cgbench_two_clues": (CGBENCH, "clip", "What does the driver do?", ["waves", "honks", "stops"], "A",
                          [[18.0, 19.0], [40.0, 42.0]], (2, 1), (2, 1, 3)),
    "videomme": (VIDEOMME, MME_UID, "Which vehicle is shown?", ["a train", "a red car", "a boat", "a plane"], "B",
                 None, (3, 2), (3, 2, 1)),
}
# Each released file, and a file that mixes both data sources (Video-MME's clue_intervals then reads back None).
FILES = {"cgbench.parquet": ["cgbench", "cgbench_two_clues"], "videomme.parquet": ["videomme"],
         "mixed.parquet": ["cgbench", "videomme"]}
ROW_KEYS = ["cgbench", "cgbench_two_clues", "videomme", "videomme@mixed", "cgbench@mixed"]


def released_user_turn(question: str, options: list[str], duration: float, highs: list[str], width: int) -> str:
    """The released first user turn: question, lettered options, duration and every high-level caption."""
    lettered = "\n".join(f"{prompts.LETTERS[i]}. {option}" for i, option in enumerate(options))
    captions = "\n".join(f"High-level Caption {h} from {geometry.time_range((h,), width, duration)[0]} to "
                         f"{geometry.time_range((h,), width, duration)[1]}:{caption}"
                         for h, caption in enumerate(highs, start=1))
    return f"{question}\n{lettered}\n\n\nThe total duration of the video is {duration} seconds.\n\n{captions}"


def released_row(name: str, index: int, caption_dirs: dict[str, Path]) -> dict:
    """One row of the released parquet, in its exact shape, over the world's caption trees."""
    data_source, uid, question, options, answer, clues, _, _ = ROWS[name]
    tree = load_caption_tree(caption_dirs[data_source] / f"{uid}.json")
    duration = MME_DURATION if uid == MME_UID else 64.0
    extra_info = {"index": index, "need_tools_kwargs": True, "video_uid": uid,
                  "split": "cgbench_sample_800_video_rl_use" if clues else "videomme_video_rl_use"}
    if clues is not None:
        extra_info["clue_intervals"] = clues
    extra_info.update({"width": tree.width, "duration": duration, "fps": 30.0, "data_source": data_source})
    return {"data_source": data_source,
            "prompt": [{"role": "system", "content": RELEASED_SYSTEM.format(width=tree.width)},
                       {"role": "user", "content": released_user_turn(question, options, duration,
                                                                      list(tree.high_captions()), tree.width)}],
            "ability": "get_caption", "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": extra_info, "metadata": None}


@pytest.fixture(scope="module")
def released(world: ToolWorld, vlm: FakeVLM) -> tuple[dict[str, dict], ToolSettings]:
    """The released-shape rows read back with pandas (by ROW_KEYS), and tool settings that serve them."""
    root = world.root
    # The Video-MME video lives in its own folders, reached only through its data_source.
    write_tree(root / "mme_captions", MME_UID, MME_WIDTH, MME_DURATION, text=lambda ids: f"mme scene {ids}")
    encode_test_video(root / "mme_videos" / f"{MME_UID}.mp4", MME_DURATION, fps=8, size=(64, 48))
    caption_dirs = {CGBENCH: root / "captions", VIDEOMME: root / "mme_captions"}
    rows = {}
    for file_name, names in FILES.items():
        path = root / "parquet" / file_name
        path.parent.mkdir(exist_ok=True)
        pd.DataFrame([released_row(name, index, caption_dirs) for index, name in enumerate(names)]).to_parquet(path)
        suffix = "@mixed" if file_name == "mixed.parquet" else ""
        for name, row in zip(names, pd.read_parquet(path).to_dict(orient="records"), strict=True):
            rows[name + suffix] = row
    sources = {VIDEOMME: {"caption_dir": str(root / "mme_captions"), "video_dir": str(root / "mme_videos")}}
    settings = settings_from_dict(settings_dict(root, vlm.base_url, sources=sources, frames_per_query=4))
    return rows, settings


def spec_of(name: str) -> dict:
    """The reward_kwargs of preset `name` (the presets used here have no defaults list)."""
    return spec_from_dict(yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text())).to_dict()


def row_plan(key: str) -> tuple:
    """ROWS' entry of a row key (`name` or `name@mixed`)."""
    return ROWS[key.split("@")[0]]


def extra_field(info: dict, wire: str) -> dict:
    """A verl-tool request's extra field for a row's extra_info: flattened (as the agent loop sends it) or nested,
    with the numpy values pandas gave, or as they arrive after the request's JSON."""
    field = dict(info) if wire.startswith("flat") else {"extra_info": info}
    if wire.endswith("json"):
        field = json.loads(json.dumps(field, default=lambda value: value.tolist()))
    # verl-tool's server copies the request's flags into each extra field.
    return {**field, "finish": False, "is_last_step": False}


def play(tool: LongVideoNavTool, row: dict, key: str, letter: str, wire: str = "flat_numpy",
         repeat: bool = False) -> list[tuple[str, str, bool]]:
    """Drive the tool through one rollout of row `key`: medium caption (twice if `repeat`), leaf caption,
    video_qa, answer `letter`.

    Returns (model turn, observation, valid) per turn, each served by the glue's get_observations as
    verl-tool's server calls it, one request per turn."""
    *_, medium, leaf = row_plan(key)
    trajectory = uuid.uuid4().hex
    turns = [f"<think>The answer should be in {geometry.format_ids(medium)}.</think>"
             f"<tool>get_caption({geometry.format_ids(medium)})</tool>",
             f"<think>Now the leaf.</think><tool>get_caption({geometry.format_ids(leaf)})</tool>",
             f'<think>I ask the frames.</think><tool>video_qa({geometry.format_ids(leaf)}, "what passes?")</tool>',
             f"<think>I know it now.</think><answer>{letter}</answer>"]
    turns = turns[:1] * repeat + turns
    steps = []
    for turn in turns:
        observations, dones, valids = tool.get_observations([trajectory], [turn],
                                                            [extra_field(row["extra_info"], wire)])
        steps.append((turn, observations[0], valids[0]))
        assert dones == [turn.endswith("</answer>")]
    tool.delete_env(trajectory)
    return steps


@pytest.fixture(scope="module")
def tool(released: tuple[dict[str, dict], ToolSettings]) -> LongVideoNavTool:
    """Our verl-tool tool over the world (settings passed in; verl-tool passes them through the environment)."""
    return LongVideoNavTool(num_workers=2, settings=released[1])


@pytest.mark.parametrize("key", ROW_KEYS)
def test_rows_read_back_in_the_released_shape(released: tuple[dict[str, dict], ToolSettings], key: str) -> None:
    """The rows as verl reads them: released columns, numpy lists, no options, clue_intervals only on CG-Bench."""
    row = released[0][key]
    data_source, uid, question, options, answer, clues, _, _ = row_plan(key)
    assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info", "metadata"}
    assert row["metadata"] is None and row["ability"] == "get_caption"
    assert isinstance(row["prompt"], np.ndarray) and row["prompt"][1]["content"].startswith(f"{question}\nA. ")
    info = row["extra_info"]
    assert "options" not in info and row["data_source"] == info["data_source"] == data_source
    assert info["need_tools_kwargs"] is True and info["video_uid"] == uid
    if clues is not None:
        assert isinstance(info["clue_intervals"], np.ndarray)
        assert [list(interval) for interval in info["clue_intervals"]] == clues
    elif key.endswith("@mixed"):
        assert info["clue_intervals"] is None
    else:
        assert "clue_intervals" not in info


@pytest.mark.parametrize("wire", ["flat_numpy", "flat_json", "nested_json"])
@pytest.mark.parametrize("key", ROW_KEYS)
def test_the_tool_serves_released_rows(released: tuple[dict[str, dict], ToolSettings], tool: LongVideoNavTool,
                                       vlm: FakeVLM, key: str, wire: str) -> None:
    """get_caption of a medium and a low segment returns the tree's caption with its time range; video_qa the VLM's."""
    row = released[0][key]
    _, uid, _, _, _, _, medium, leaf = row_plan(key)
    info = row["extra_info"]
    tree = load_caption_tree(Path(released[1].for_source(info["data_source"]).caption_dir) / f"{uid}.json")
    vlm.answer = VLM_ANSWER
    before = len(vlm.chat_requests())
    steps = play(tool, row, key, "B", wire)
    assert [valid for _, _, valid in steps] == [True, True, True, True]
    for ids, (_, observation, _) in zip([medium, leaf], steps, strict=False):
        start, end = geometry.time_range(ids, info["width"], info["duration"])
        assert observation == prompts.caption_observation(ids, info["width"], info["duration"], tree.caption(ids))
        assert tree.caption(ids) in observation and prompts.format_range(start, end) in observation
    assert steps[2][1] == f"<information>{VLM_ANSWER}</information>"
    assert steps[3][1] == ""
    (request,) = vlm.chat_requests()[before:]
    content = request.body["messages"][0]["content"]
    assert sum(part["type"] == "image_url" for part in content) == 4
    assert prompts.format_seconds(geometry.time_range(leaf, info["width"], info["duration"])[0]) in content[-1]["text"]
    assert tool.get_env_cache_keys() == []


def test_data_source_in_extra_info_picks_the_source_folders(released: tuple[dict[str, dict], ToolSettings],
                                                            tool: LongVideoNavTool) -> None:
    """The Video-MME tree is only in its source's folder: extra_info's data_source is what finds it."""
    info = dict(released[0]["videomme"]["extra_info"])
    turn = "<think>t</think><tool>get_caption((3, 2))</tool>"
    served, _, valid = tool.get_observations(["a"], [turn], [info])
    assert valid == [True] and "mme scene (3, 2)" in served[0]
    del info["data_source"]
    refused, _, valid = tool.get_observations(["b"], [turn], [info])
    assert valid == [False] and "caption tree of video 'mme_clip' is unavailable" in refused[0]


# (row key, answer as written, expected answer component, expected location under the default preset).
SCORES = [
    ("cgbench", "C", 1.0, 1.0),
    ("cgbench", "(C)", 1.0, 1.0),
    ("cgbench", "C.", 1.0, 1.0),
    ("cgbench", "A", 0.0, 1.0),
    ("cgbench@mixed", "C", 1.0, 1.0),
    # Visited [18, 19] s of clues [18, 19] + [40, 42] s: coverage 1/3, precision 1, F1 0.5.
    ("cgbench_two_clues", "A", 1.0, 0.5),
    ("cgbench_two_clues", "B", 0.0, 0.5),
    ("videomme", "B", 1.0, math.nan),
    ("videomme", "D", 0.0, math.nan),
    ("videomme@mixed", "B", 1.0, math.nan),
]


@pytest.mark.parametrize(("key", "letter", "answer", "location"), SCORES)
def test_rewards_score_released_rows(released: tuple[dict[str, dict], ToolSettings], tool: LongVideoNavTool,
                                     key: str, letter: str, answer: float, location: float) -> None:
    """compute_score on the decoded rollout: answer and location as expected; without clues location is excluded."""
    row = released[0][key]
    steps = play(tool, row, key, letter)
    solution = decoded_rollout([(turn, observation) for turn, observation, _ in steps])
    args = (row["data_source"], solution, row["reward_model"]["ground_truth"], row["extra_info"])
    default = compute_score(*args)
    assert default["answer"] == answer and default["answered"] == 1 and default["invalid_turns"] == 0
    assert default["format"] == 0.0 and default["efficiency"] == pytest.approx(-0.02)
    assert default["has_clues"] == int(not math.isnan(location))
    if math.isnan(location):
        assert math.isnan(default["location"])
        # The default preset keeps every other component on data without clues.
        assert default["score"] == pytest.approx(answer - 0.02)
    else:
        assert default["location"] == pytest.approx(location) and location > 0
        assert default["score"] == pytest.approx(answer + 0.5 * location - 0.02)
    paper = compute_score(*args, **spec_of("paper"))
    assert paper["answer"] == answer and paper["repeat_ratio"] == 0.0
    if math.isnan(location):
        # The paper's reward is the answer alone on data without clue intervals.
        assert math.isnan(paper["location"]) and paper["score"] == answer
    else:
        # The paper counts the medium caption as visited too, so precision drops but stays above 0.
        assert 0 < paper["location"] < location
        assert paper["score"] == pytest.approx(answer + paper["location"])


@pytest.mark.parametrize(("key", "letter"), [("cgbench", "C"), ("cgbench", "B"), ("videomme", "B"), ("videomme", "A")])
def test_paper_reward_drops_the_repeat_term_without_clues(released: tuple[dict[str, dict], ToolSettings],
                                                          tool: LongVideoNavTool, key: str, letter: str) -> None:
    """A repeated call: the paper reward subtracts 0.2 x repeat ratio on CG-Bench, is the answer alone on Video-MME."""
    row = released[0][key]
    steps = play(tool, row, key, letter, repeat=True)
    assert all(valid for _, _, valid in steps)
    solution = decoded_rollout([(turn, observation) for turn, observation, _ in steps])
    paper = compute_score(row["data_source"], solution, row["reward_model"]["ground_truth"], row["extra_info"],
                          **spec_of("paper"))
    # Four served calls, three of them different.
    assert paper["repeats"] == 1 and paper["repeat_ratio"] == pytest.approx(1 / 3)
    if key == "videomme":
        assert math.isnan(paper["location"]) and paper["score"] == paper["answer"]
    else:
        assert paper["score"] == pytest.approx(paper["answer"] + paper["location"] - 0.2 / 3)


@pytest.mark.slow
def test_verl_reward_manager_scores_released_rows(released: tuple[dict[str, dict], ToolSettings],
                                                  tool: LongVideoNavTool) -> None:
    """verl-tool's trainer reward manager, fed tokenized rollouts of released rows, scores them with compute_score."""
    import torch
    from verl import DataProto

    from tests.fixtures.verl_reward import trainer_reward_manager
    from tools.builders.chat_template import jinja_template
    from tools.demo.tiny_model import build_tokenizer

    tokenizer = build_tokenizer(jinja_template("qwen3_nothink"))
    cases = [("cgbench", "C"), ("cgbench", "A"), ("videomme", "B")]
    rows, pairs, texts = [], [], []
    for key, letter in cases:
        row = released[0][key]
        steps = [(turn, observation) for turn, observation, _ in play(tool, row, key, letter)]
        texts.append(decoded_rollout(steps))
        prompt = tokenizer.apply_chat_template(list(row["prompt"]), add_generation_prompt=True, return_dict=False)
        response = []
        for turn, observation in steps:
            response += tokenizer.encode(turn, add_special_tokens=False)
            closing = (f"<|im_end|>\n<|im_start|>user\n{observation}<|im_end|>\n<|im_start|>assistant\n"
                       if observation else "<|im_end|>")
            response += tokenizer.encode(closing, add_special_tokens=False)
        rows.append(row)
        pairs.append((prompt, response))
    prompt_len, response_len = max(len(p) for p, _ in pairs), max(len(r) for _, r in pairs)
    pad = tokenizer.pad_token_id
    prompt_ids = torch.tensor([[pad] * (prompt_len - len(p)) + p for p, _ in pairs])
    responses = torch.tensor([r + [pad] * (response_len - len(r)) for _, r in pairs])
    mask = torch.tensor([[0] * (prompt_len - len(p)) + [1] * (len(p) + len(r)) + [0] * (response_len - len(r))
                         for p, r in pairs])
    non_tensors = {key: np.array([row[key] for row in rows], dtype=object)
                   for key in ("data_source", "reward_model", "extra_info")}
    data = DataProto.from_dict(tensors={"prompts": prompt_ids, "responses": responses, "attention_mask": mask,
                                        "input_ids": torch.cat([prompt_ids, responses], dim=1)},
                               non_tensors=non_tensors)
    spied = trainer_reward_manager(tokenizer, {})
    result = spied.manager(data, return_dict=True)
    assert spied.decoded == texts
    extra = result["reward_extra_info"]
    assert extra["answer"] == [1.0, 0.0, 1.0]
    assert extra["location"][0] == extra["location"][1] == 1.0 and math.isnan(extra["location"][2])
    for index, (row, text) in enumerate(zip(rows, texts, strict=True)):
        direct = compute_score(row["data_source"], text, row["reward_model"]["ground_truth"],
                               dict(row["extra_info"]))
        assert extra["score"][index] == direct["score"]
        valid = int(mask[index, prompt_len:].sum())
        assert result["reward_tensor"][index, valid - 1] == pytest.approx(direct["score"])
        assert result["reward_tensor"][index].count_nonzero() <= 1
