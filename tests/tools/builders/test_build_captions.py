"""Caption trees through a VLM: the caption builder against a fake OpenAI server, and `python -m launch captions`.

The videos are real MP4 files whose frames show their own index, the VLM is a real HTTP server on
loopback (tests/fixtures/fake_vlm.py) that answers with the time range its prompt names, and trees have width 3,
the smallest the width rule allows (3 + 9 + 27 segments per video), so that every run stays small.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from launch.cli import main
from launch.compose import compose_config
from launch.stages.captions import captions_settings
from tests.conftest import dry_run_in_fresh_interpreter, launch
from tests.fixtures.fake_vlm import FakeVLM
from tools.builders import build_captions
from tools.demo.synthetic_video import decode_frame_index, encode_test_video
from tools.environment import geometry
from tools.environment.caption_tree import load_caption_tree

FPS = 8
DURATIONS = {"a": 8.0, "b": 12.0}
FRAMES = {"high": 4, "medium": 3, "low": 2}
# Every tree here has geometry's smallest width, 3.
WIDTH = geometry.SMALLEST_MIN_WIDTH
SEGMENTS_PER_VIDEO = 3 + 9 + 27
RANGE = re.compile(r"sampled evenly from ([\d.]+)s to ([\d.]+)s")


def prompt_of(body: dict) -> str:
    """The text part of a captioning request."""
    return body["messages"][0]["content"][-1]["text"]


def images_of(body: dict) -> list[str]:
    """The image URLs of a captioning request."""
    return [part["image_url"]["url"] for part in body["messages"][0]["content"] if part["type"] == "image_url"]


def echo_range(body: dict) -> str:
    """A VLM answer naming the segment its prompt asks about, wrapped as asked, with tags a caption must lose."""
    start, end = RANGE.search(prompt_of(body)).groups()
    return f"<think>looking</think><caption>Segment {start}-{end}. <tool>get_caption((1, 1))</tool></caption>"


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a.mp4 (8 s) and b.mp4 (12 s) at 8 fps."""
    folder = tmp_path_factory.mktemp("videos")
    for uid, duration in DURATIONS.items():
        encode_test_video(folder / f"{uid}.mp4", duration, fps=FPS)
    return folder


@pytest.fixture
def vlm() -> FakeVLM:
    """A fake VLM that echoes each prompt's time range as its caption."""
    with FakeVLM(answer=echo_range) as server:
        yield server


def overrides(videos: Path, output: Path, vlm: FakeVLM, *extra: str) -> list[str]:
    """Command-line overrides for small trees of `videos` captioned by `vlm`."""
    return [f"captions.video_dir={videos}", f"captions.output_dir={output}", f"captions.min_width={WIDTH}",
            f"captions.max_width={WIDTH}", "captions.workers=4", f"captions.vlm.base_url={vlm.base_url}",
            "captions.vlm.max_retries=0", "captions.vlm.timeout_s=60",
            "captions.frames_per_level={high:4,medium:3,low:2}", "captions.max_side={high:64,medium:64,low:64}",
            *extra]


def build(tmp_path: Path, videos: Path, vlm: FakeVLM, *extra: str) -> int:
    """Compose the captions config as the launcher does, write its settings file and run the tool in-process."""
    config = compose_config("captions", overrides(videos, tmp_path / "captions", vlm, *extra), False).config
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(captions_settings(config)))
    return build_captions.main(["--settings", str(settings)])


def segments(duration: float) -> list[tuple[str, int, float, float]]:
    """(level name, index, start, end) of every segment of a width-3 tree over `duration` seconds."""
    found = []
    for level, name in enumerate(geometry.LEVEL_NAMES, start=1):
        count = geometry.level_size(WIDTH, level)
        found.extend((name, index, *geometry.index_range(index, count, duration)) for index in range(count))
    return found


def test_trees_of_two_videos_load_with_their_width_and_level_sizes(tmp_path: Path, video_dir: Path,
                                                                   vlm: FakeVLM) -> None:
    """Both trees load, have width 3 and 3/9/27 nodes, record video and duration, and hold each segment's caption."""
    assert build(tmp_path, video_dir, vlm) == 0
    for uid, duration in DURATIONS.items():
        path = tmp_path / "captions" / f"{uid}.json"
        tree = load_caption_tree(path)
        assert tree.width == WIDTH
        assert [len(level) for level in tree.levels] == [3, 9, 27]
        data = json.loads(path.read_text())
        assert (data["video"], data["duration"]) == (f"{uid}.mp4", pytest.approx(duration))
        for name, index, start, end in segments(duration):
            caption = tree.levels[geometry.LEVEL_NAMES.index(name)][index]
            # The node at each index is the caption of that index's segment, without thinking or action tags.
            assert caption == f"Segment {start:.1f}-{end:.1f}. get_caption((1, 1))"
    assert len(vlm.chat_requests()) == 2 * SEGMENTS_PER_VIDEO
    assert not list((tmp_path / "captions").glob(".*"))


def test_frames_lie_in_their_segment_and_each_request_carries_frames_per_level(tmp_path: Path, video_dir: Path,
                                                                               vlm: FakeVLM) -> None:
    """Every frame_time is a decoded frame inside its segment; each request shows that level's frame count."""
    assert build(tmp_path, video_dir, vlm) == 0
    for uid, duration in DURATIONS.items():
        tree = load_caption_tree(tmp_path / "captions" / f"{uid}.json")
        for name, index, start, end in segments(duration):
            times = tree.frame_times[geometry.LEVEL_NAMES.index(name)][index]
            assert len(times) == FRAMES[name]
            # A frame shown at time t began at most one frame duration before t.
            assert all(start - 1 / FPS < t < end for t in times), (uid, name, index, times)
            assert all(t * FPS == pytest.approx(round(t * FPS)) for t in times)
    counts = sorted(len(images_of(r.body)) for r in vlm.chat_requests())
    assert counts == sorted([4] * 3 * 2 + [3] * 9 * 2 + [2] * 27 * 2)
    # The images are the frames whose times the prompt names.
    for request in vlm.chat_requests():
        named = [float(t) for t in prompt_of(request.body).split("seconds: ")[1].split(".\n")[0].split(", ")]
        shown = [decode_frame_index(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
                 for url in images_of(request.body)]
        assert [round(t * FPS) for t in named] == shown


def test_segments_are_captioned_in_parallel_within_the_worker_limit(tmp_path: Path, video_dir: Path,
                                                                    vlm: FakeVLM) -> None:
    """With each answer held back, several requests are in flight at once, never more than `workers` (4)."""
    vlm.stall(0.2)
    assert build(tmp_path, video_dir, vlm) == 0
    assert 1 < vlm.max_in_flight <= 4


def test_subtitles_reach_the_prompts_of_the_segments_they_overlap(tmp_path: Path, video_dir: Path,
                                                                  vlm: FakeVLM) -> None:
    """A cue at 1.0-2.5 s reaches the prompts of the segments that overlap it, without markup, and no others."""
    subtitles = tmp_path / "subtitles"
    subtitles.mkdir()
    (subtitles / "b.srt").write_text("\ufeff1\r\n00:00:01,000 --> 00:00:02,500\r\n<i>Hello there,</i> captain\r\n\r\n"
                                     "2\r\n00:00:10.000 --> 00:00:11.000 X1:10\r\nGoodbye\r\n", encoding="utf-8")
    assert build(tmp_path, video_dir, vlm, f"captions.subtitle_dir={subtitles}") == 0
    hello = [r for r in vlm.chat_requests() if "[1.0-2.5] Hello there, captain" in prompt_of(r.body)]
    # b's high (0-4 s), medium (0-4/3 s, 4/3-8/3 s) and low (8/9-4/3 s up to 20/9-8/3 s, each 4/9 s) segments
    # overlap the cue, printed to one decimal; a.mp4 has no subtitles.
    assert sorted(RANGE.search(prompt_of(r.body)).groups() for r in hello) == sorted(
        [("0.0", "4.0"), ("0.0", "1.3"), ("1.3", "2.7"),
         ("0.9", "1.3"), ("1.3", "1.8"), ("1.8", "2.2"), ("2.2", "2.7")])
    # The 10-11 s cue overlaps one high (8-12 s), two medium (28/3-12 s) and three low (88/9-100/9 s) segments.
    assert sum("Goodbye" in prompt_of(r.body) for r in vlm.chat_requests()) == 6
    assert "<i>" not in json.dumps([r.body for r in vlm.chat_requests()])


def test_a_second_run_skips_every_finished_video(tmp_path: Path, video_dir: Path, vlm: FakeVLM,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Run again over the same output: no request reaches the VLM and the summary counts 2 finished."""
    assert build(tmp_path, video_dir, vlm) == 0
    before = len(vlm.chat_requests())
    capsys.readouterr()
    assert build(tmp_path, video_dir, vlm) == 0
    assert len(vlm.chat_requests()) == before
    assert "0 captioned, 2 already finished, 0 failed" in capsys.readouterr().out


def test_leftover_temporary_files_and_broken_trees_do_not_count_as_finished(
        tmp_path: Path, video_dir: Path, vlm: FakeVLM, capsys: pytest.CaptureFixture[str]) -> None:
    """A temporary file an interrupted run left behind and a truncated tree are both captioned again."""
    output = tmp_path / "captions"
    assert build(tmp_path, video_dir, vlm) == 0
    (output / "a.json").rename(output / f".a.json.4242{build_captions.TEMP_SUFFIX}")
    (output / "b.json").write_text((output / "b.json").read_text()[:100])
    before = len(vlm.chat_requests())
    capsys.readouterr()
    assert build(tmp_path, video_dir, vlm) == 0
    assert len(vlm.chat_requests()) - before == 2 * SEGMENTS_PER_VIDEO
    assert sorted(path.name for path in output.iterdir()) == ["a.json", "b.json"]
    assert load_caption_tree(output / "b.json").width == WIDTH
    assert "b.json: not valid JSON" in capsys.readouterr().out


@pytest.mark.parametrize(("broken", "reason"), [
    (b'{"width": 3, "captions": "caf\xe9"}', "b.json: not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "b.json: JSON nested too deep to read"),
], ids=["not-utf8", "nested-too-deep"])
def test_an_unreadable_finished_tree_is_named_and_captioned_again(
        tmp_path: Path, video_dir: Path, vlm: FakeVLM, capsys: pytest.CaptureFixture[str], broken: bytes,
        reason: str) -> None:
    """An existing output that is not UTF-8 or nests too deep is one named line, then captioned again: exit 0."""
    output = tmp_path / "captions"
    assert build(tmp_path, video_dir, vlm) == 0
    (output / "b.json").write_bytes(broken)
    before = len(vlm.chat_requests())
    capsys.readouterr()
    assert build(tmp_path, video_dir, vlm) == 0
    assert len(vlm.chat_requests()) - before == SEGMENTS_PER_VIDEO
    assert load_caption_tree(output / "b.json").width == WIDTH
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "captioning b again" in line]
    assert reason in line


def test_a_video_the_vlm_fails_on_is_not_written_and_named_while_the_other_finishes(
        tmp_path: Path, video_dir: Path, vlm: FakeVLM, capsys: pytest.CaptureFixture[str]) -> None:
    """The VLM gives no answer for segments ending at 12 s (only b has them): exit 1, b absent and named, a done."""
    vlm.answer = lambda body: "" if "to 12.0s" in prompt_of(body) else echo_range(body)
    assert build(tmp_path, video_dir, vlm) == 1
    output = tmp_path / "captions"
    assert not (output / "b.json").exists()
    assert not list(output.glob(".*"))
    assert load_caption_tree(output / "a.json").width == WIDTH
    out = capsys.readouterr().out
    assert "1 captioned, 0 already finished, 1 failed" in out
    assert re.search(r"FAILED b: (high|medium|low) segment \([\d, ]+\): VLM at .* gave no usable answer", out)


def test_unreadable_videos_and_subtitles_fail_only_their_own_video(tmp_path: Path, video_dir: Path, vlm: FakeVLM,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A file that is no video and a subtitle file that is no SRT each fail their video, named with the reason."""
    videos = tmp_path / "videos"
    videos.mkdir()
    for uid in DURATIONS:
        os.symlink(video_dir / f"{uid}.mp4", videos / f"{uid}.mp4")
    (videos / "c.mp4").write_bytes(b"not a video at all")
    subtitles = tmp_path / "subtitles"
    subtitles.mkdir()
    (subtitles / "a.srt").write_text("1\n00:00:01,000 --> soon\nHello\n")
    assert build(tmp_path, videos, vlm, f"captions.subtitle_dir={subtitles}") == 1
    out = capsys.readouterr().out
    assert f"FAILED a: {subtitles / 'a.srt'}: cue 1: 'soon' is not an SRT time" in out
    assert f"FAILED c: {videos / 'c.mp4'}: cannot open as a video" in out
    assert sorted(path.name for path in (tmp_path / "captions").iterdir()) == ["b.json"]
    assert len(vlm.chat_requests()) == SEGMENTS_PER_VIDEO


@pytest.mark.parametrize(
    ("reply", "caption"),
    [
        ("<caption>A dog runs.</caption>", "A dog runs."),
        ("<think>a dog?</think>\n<caption> A dog <answer>B</answer> runs. </caption> trailing", "A dog B runs."),
        ("A dog runs, no tags.", "A dog runs, no tags."),
        ("<caption>A dog runs, cut off by max_tokens", "A dog runs, cut off by max_tokens"),
    ],
)
def test_captions_are_the_tagged_text_without_thinking_or_reserved_tags(reply: str, caption: str) -> None:
    """The <caption> content (or the whole reply) is kept; <think> blocks and action tags are removed."""
    assert build_captions.clean_caption(reply) == caption


@pytest.mark.parametrize("reply", ["<caption>  </caption>", "<think>only thinking</think>", "<tool></tool>"])
def test_a_reply_without_caption_text_is_an_error(reply: str) -> None:
    """A reply that leaves no caption text raises CaptionError quoting the reply."""
    with pytest.raises(build_captions.CaptionError, match="no caption text"):
        build_captions.clean_caption(reply)


def test_a_bad_settings_file_exits_2_naming_the_file_and_key(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file, and a file with a wrong value, exit 2 naming the file (and the key)."""
    missing = tmp_path / "nope.json"
    assert build_captions.main(["--settings", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dataset": "videos"}))
    assert build_captions.main(["--settings", str(bad)]) == 2
    assert f"{bad}: missing keys ['video_dir'" in capsys.readouterr().err


@pytest.mark.parametrize(("key", "width"), [("min_width", 2), ("max_width", 9)])
def test_a_settings_file_with_a_width_outside_the_rule_exits_2_naming_key_and_range(
        tmp_path: Path, video_dir: Path, vlm: FakeVLM, capsys: pytest.CaptureFixture[str], key: str,
        width: int) -> None:
    """A settings file whose min_width or max_width no width rule allows exits 2 naming the key, value and 3..8."""
    config = compose_config("captions", overrides(video_dir, tmp_path / "captions", vlm), False).config
    settings = {**captions_settings(config), "min_width": 3, "max_width": 8, key: width}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    assert build_captions.main(["--settings", str(path)]) == 2
    assert f"{path}.{key}={width} is outside 3..8" in capsys.readouterr().err
    assert not (tmp_path / "captions").exists()


@pytest.mark.slow
def test_launch_captions_runs_end_to_end_and_marks_the_run_done(tmp_path: Path, video_dir: Path, vlm: FakeVLM,
                                                                run_root: Path) -> None:
    """`python -m launch captions` without a recipe writes both trees, DONE, and never the API key."""
    secret = "vlm-planted-secret-0123456789"
    output = tmp_path / "captions"
    result = launch("captions", *overrides(video_dir, output, vlm), "captions.dataset=clips", "name=first",
                    f"run_root={run_root}", env={"VLM_API_KEY": secret}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    run_dir = run_root / "captions" / "clips" / "first"
    assert (run_dir / "DONE").is_file()
    assert {load_caption_tree(output / f"{uid}.json").width for uid in DURATIONS} == {WIDTH}
    settings = json.loads((run_dir / "captions" / "settings.json").read_text())
    assert settings["vlm"]["api_key_env"] == "VLM_API_KEY"
    assert settings["video_dir"] == str(video_dir)
    # The key travels only in the request header.
    headers = [{key.lower(): value for key, value in r.headers.items()} for r in vlm.chat_requests()]
    assert {h.get("authorization") for h in headers} == {f"Bearer {secret}"}
    assert not [path for path in run_dir.rglob("*") if path.is_file() and secret in path.read_text(errors="replace")]


def test_dry_run_prints_the_plan_and_imports_no_heavy_module(tmp_path: Path, video_dir: Path, run_root: Path) -> None:
    """A dry run (fresh interpreter) exits 0, prints the settings file and command, and imports no heavy module."""
    argv = ["captions", f"captions.video_dir={video_dir}", f"captions.output_dir={tmp_path / 'out'}",
            f"run_root={run_root}", "--dry-run"]
    stdout, heavy = dry_run_in_fresh_interpreter(argv)
    assert heavy == []
    assert "tools.builders.build_captions" in stdout
    assert "captions/settings.json" in stdout
    assert f"run directory would be {run_root / 'captions' / 'videos'}" in stdout
    assert not run_root.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["captions.video_dir={missing}", "captions.output_dir={out}"], "captions.video_dir={missing}: no such folder"),
        (["captions.video_dir={videos}"], "captions.output_dir: missing; set captions.output_dir="),
        (["captions.video_dir={videos}", "captions.output_dir={out}", "captions.min_width=5", "captions.max_width=4"],
         "captions.min_width=5 is greater than captions.max_width=4"),
        (["captions.video_dir={videos}", "captions.output_dir={out}", "captions.min_width=2"],
         "captions.min_width=2 is outside 3..8"),
        (["captions.video_dir={videos}", "captions.output_dir={out}", "captions.max_width=9"],
         "captions.max_width=9 is outside 3..8"),
        (["captions.video_dir={videos}", "captions.output_dir={out}", "captions.frames_per_level.low=0"],
         "captions.frames_per_level.low=0: expected a positive integer"),
        (["captions.video_dir={videos}", "captions.output_dir={out}", "captions.subtitle_dir={missing}"],
         "captions.subtitle_dir={missing}: no such folder"),
    ],
)
def test_bad_captions_settings_exit_2_naming_the_key(args: list[str], message: str, tmp_path: Path, video_dir: Path,
                                                    run_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing folder or output_dir, widths out of order or range, or a zero frame count exit 2 before anything is
    created."""
    places = {"missing": tmp_path / "no-such-folder", "videos": video_dir, "out": tmp_path / "out"}
    assert main(["captions", *(arg.format(**places) for arg in args), f"run_root={run_root}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ")
    assert message.format(**places) in err
    assert not run_root.exists()
    assert not (tmp_path / "out").exists()
