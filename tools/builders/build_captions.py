"""`python -m tools.builders.build_captions --settings FILE`: a caption tree for every video of a folder, through a VLM.

As in the paper's code, every segment of every level is captioned from its own frames (`frames_per_level`
at the bin centres of its `tools.environment.geometry` time range) plus the subtitle lines that overlap it; segments of
all videos run in parallel. A tree is written whole (temporary file, then rename), so a `<video_uid>.json`
that loads is finished and skipped next time; a failed video is not written, and the exit code is then 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from tqdm import tqdm

from tools.builders.caption_settings import CaptionSettingsError, check_settings
from tools.environment import frames, geometry
from tools.environment.caption_tree import CaptionTreeError, caption_path, load_caption_tree
from tools.environment.geometry import Segment
from tools.environment.vlm_client import VLMClient, VLMEndpoint, VLMError

TEMP_SUFFIX = ".partial"
CAPTION_TAG = re.compile(r"<caption>(.*?)(?:</caption>|$)", re.DOTALL | re.IGNORECASE)
THINKING = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
# Tags that the agent's action parser and chat template give meaning to: a caption never carries them.
RESERVED_TAG = re.compile(r"</?\s*(think|tool|answer|information|caption)\s*>", re.IGNORECASE)
# An SRT cue time, `HH:MM:SS,mmm` (some files write a dot or fewer millisecond digits).
SRT_TIME = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?")
SRT_MARKUP = re.compile(r"<[^>]*>|\{\\[^}]*\}")


class CaptionError(ValueError):
    """The VLM's reply holds no caption text."""


class SubtitleError(ValueError):
    """A subtitle file that cannot be read as SRT; the message names the file and the cue."""


class SubtitleLine(NamedTuple):
    """One subtitle cue: its time range in seconds and its text without markup."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class CaptionSettings:
    """The checked contents of a settings file (the resolved `captions` config)."""

    video_dir: Path
    output_dir: Path
    subtitle_dir: Path | None
    video_extensions: tuple[str, ...]
    frames_per_level: dict[str, int]
    max_side: dict[str, int]
    words_per_level: dict[str, int]
    min_width: int
    max_width: int
    workers: int
    jpeg_quality: int
    vlm: VLMEndpoint

    @classmethod
    def from_file(cls, path: Path) -> CaptionSettings:
        """Read and check a settings file; CaptionSettingsError names the file and the key."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise CaptionSettingsError(f"{path}: cannot read the captions settings: {error}") from None
        check_settings(data, str(path))
        try:
            vlm = VLMEndpoint.from_dict(data["vlm"], f"{path}: vlm")
        except (TypeError, ValueError) as error:
            raise CaptionSettingsError(str(error)) from None
        return cls(Path(data["video_dir"]), Path(data["output_dir"]),
                   Path(data["subtitle_dir"]) if data["subtitle_dir"] else None,
                   tuple(e.lower() for e in data["video_extensions"]), dict(data["frames_per_level"]),
                   dict(data["max_side"]), dict(data["words_per_level"]), data["min_width"], data["max_width"],
                   data["workers"], data["jpeg_quality"], vlm)


@dataclass
class VideoJob:
    """One video being captioned: its tree geometry, its subtitles and the nodes captioned so far."""

    uid: str
    path: Path
    duration: float
    width: int
    subtitles: list[SubtitleLine]
    nodes: list[list[dict[str, Any] | None]] = field(default_factory=list)
    left: int = 0
    failure: str | None = None

    def segments(self) -> list[Segment]:
        """Every segment of the tree, high level first, each level in order."""
        return list(geometry.segments(self.width, self.duration))


def _srt_seconds(text: str, where: str) -> float:
    match = SRT_TIME.fullmatch(text.strip())
    if match is None:
        raise SubtitleError(f"{where}: {text.strip()!r} is not an SRT time; expected HH:MM:SS,mmm")
    hours, minutes, seconds, millis = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int((millis or "0").ljust(3, "0")) / 1000


def read_srt(path: Path) -> list[SubtitleLine]:
    """The cues of an SRT file in file order; SubtitleError names the file and cue that cannot be read."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise SubtitleError(f"{path}: cannot read the subtitle file as UTF-8 text: {error}") from None
    text, cues = text.replace("\r\n", "\n").strip(), []
    for number, block in enumerate(re.split(r"\n\s*\n", text) if text else [], start=1):
        lines = [line.strip() for line in block.split("\n")]
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            raise SubtitleError(f"{path}: cue {number} has no 'start --> end' line: {block[:60]!r}")
        where = f"{path}: cue {number}"
        start_text, end_text = lines[timing].split("-->", 1)
        # Position hints may follow the end time on the same line (`X1:... Y1:...`).
        start, end = _srt_seconds(start_text, where), _srt_seconds((end_text.split() or [""])[0], where)
        if end < start:
            raise SubtitleError(f"{where}: ends at {end:.3f}s before it starts at {start:.3f}s")
        words = SRT_MARKUP.sub("", " ".join(lines[timing + 1:])).split()
        if words:
            cues.append(SubtitleLine(start, end, " ".join(words)))
    return cues


def lines_between(subtitles: list[SubtitleLine], start: float, end: float) -> list[SubtitleLine]:
    """The cues that overlap [start, end)."""
    return [line for line in subtitles if line.start < end and line.end > start]


def caption_prompt(segment: Segment, times: list[float], words: int, subtitles: list[SubtitleLine]) -> str:
    """The captioning question for one segment: its frames' times, what to describe, and its subtitles."""
    lines = [
        f"These {len(times)} images are frames of one part of a longer video, in order, sampled evenly from "
        f"{segment.start:.1f}s to {segment.end:.1f}s. Their times in the whole video, in seconds: "
        f"{', '.join(f'{t:.1f}' for t in times)}.",
        f"Describe this part in at most {words} words for a reader who cannot see it and will use your "
        "description to decide where in the video to look: the people, objects and setting; what happens, "
        "in order; any text on screen; how the scene changes. Give times (e.g. 'at 12.5s') where something "
        "changes. Describe only what the frames and subtitles show; do not guess.",
    ]
    if segment.level == geometry.LEAF_LEVEL:
        lines.append("Include the fine details that set this moment apart: clothing, colours, objects, "
                     "positions, lighting, weather.")
    if subtitles:
        lines.append("Subtitles of this part (time range in seconds, then the line):")
        lines.extend(f"[{line.start:.1f}-{line.end:.1f}] {line.text}" for line in subtitles)
        lines.append("Keep the spoken lines that matter, in their order; do not invent dialogue.")
    lines.append("Write the description between <caption> and </caption>, and nothing else.")
    return "\n".join(lines)


def clean_caption(reply: str) -> str:
    """The caption inside the VLM's reply: thinking removed, the <caption> tags' content, no reserved tags."""
    reply = THINKING.sub("", reply)
    match = CAPTION_TAG.search(reply)
    caption = RESERVED_TAG.sub("", match.group(1) if match else reply).strip()
    if not caption:
        raise CaptionError(f"the VLM's reply holds no caption text: {reply[:80]!r}")
    return caption


def find_videos(settings: CaptionSettings) -> dict[str, list[Path]]:
    """The video files of `video_dir` by video_uid (the file name without its extension), in name order."""
    found: dict[str, list[Path]] = {}
    for path in sorted(settings.video_dir.iterdir()):
        if path.is_file() and path.suffix.lower() in settings.video_extensions and not path.name.startswith("."):
            found.setdefault(path.stem, []).append(path)
    return found


def prepare(uid: str, path: Path, settings: CaptionSettings) -> VideoJob:
    """A VideoJob for one video: its duration, width and subtitles (FrameError, SubtitleError)."""
    duration = frames.probe_duration(path)
    width = geometry.width_for_duration(duration, settings.min_width, settings.max_width)
    srt = settings.subtitle_dir / f"{uid}.srt" if settings.subtitle_dir else None
    job = VideoJob(uid, path, duration, width, read_srt(srt) if srt is not None and srt.is_file() else [])
    job.nodes = [[None] * geometry.level_size(width, level) for level in (1, 2, 3)]
    job.left = sum(len(level) for level in job.nodes)
    return job


def caption_segment(job: VideoJob, segment: Segment, settings: CaptionSettings, client: VLMClient) -> dict:
    """One node `{"caption", "frame_time"}`: the segment's frames shown to the VLM with its prompt."""
    level = geometry.LEVEL_NAMES[segment.level - 1]
    times = frames.leaf_timestamps(segment.start, segment.end, settings.frames_per_level[level])
    decoded = frames.read_frames(job.path, times, settings.max_side[level])
    urls = [frames.to_jpeg_data_url(frame.image, settings.jpeg_quality) for frame in decoded]
    frame_times = [round(frame.time, 3) for frame in decoded]
    subtitles = lines_between(job.subtitles, segment.start, segment.end)
    reply = client.ask(caption_prompt(segment, frame_times, settings.words_per_level[level], subtitles), urls)
    return {"caption": clean_caption(reply), "frame_time": frame_times}


def write_tree(job: VideoJob, output: Path, model: str) -> None:
    """Write the finished tree to a temporary file beside `output`, then rename it into place."""
    tree = {"video": job.path.name, "duration": job.duration, "width": job.width, "caption_model": model,
            "captions": job.nodes}
    temp = output.with_name(f".{output.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        temp.write_text(json.dumps(tree, ensure_ascii=False), encoding="utf-8")
        os.replace(temp, output)
    finally:
        temp.unlink(missing_ok=True)


def build_all(settings: CaptionSettings) -> tuple[list[str], int, dict[str, str]]:
    """Caption every unfinished video: the uids captioned, how many were finished already, and the failures."""
    videos = find_videos(settings)
    if not videos:
        raise CaptionSettingsError(f"no video files ({', '.join(settings.video_extensions)}) in {settings.video_dir}")
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    jobs, skipped, failures = [], 0, {}
    for uid, paths in videos.items():
        if len(paths) > 1:
            failures[uid] = f"one video_uid names several files: {', '.join(path.name for path in paths)}"
            continue
        output = caption_path(settings.output_dir, uid)
        if output.is_file():
            try:
                load_caption_tree(output)
                skipped += 1
                continue
            except CaptionTreeError as error:
                print(f"[captions] {error}; captioning {uid} again", flush=True)
        # Temporary files of an interrupted run never count as finished; they are deleted.
        for leftover in output.parent.glob(f".{output.name}.*{TEMP_SUFFIX}"):
            leftover.unlink()
        try:
            jobs.append(prepare(uid, paths[0], settings))
        except (frames.FrameError, SubtitleError, geometry.GeometryError) as error:
            failures[uid] = str(error)
    captioned = run_jobs(jobs, settings, failures)
    return captioned, skipped, failures


def run_jobs(jobs: list[VideoJob], settings: CaptionSettings, failures: dict[str, str]) -> list[str]:
    """Caption the segments of `jobs` on `settings.workers` threads; returns the uids written."""
    work = iter([(job, segment) for job in jobs for segment in job.segments()])
    client = VLMClient(settings.vlm)
    pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="caption")
    pending: dict[Future, tuple[VideoJob, Segment]] = {}
    captioned = []
    bar = tqdm(total=sum(job.left for job in jobs), unit="segment", desc="captions", mininterval=1.0)
    try:
        while True:
            # Two queued segments per worker keep every worker busy without queueing a whole dataset.
            while len(pending) < settings.workers * 2 and (item := next(work, None)) is not None:
                if item[0].failure is None:
                    pending[pool.submit(caption_segment, *item, settings, client)] = item
                else:
                    bar.update(1)
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                job, segment = pending.pop(future)
                bar.update(1)
                try:
                    job.nodes[segment.level - 1][segment.index] = future.result()
                except (VLMError, frames.FrameError, CaptionError) as error:
                    if job.failure is None:
                        level = geometry.LEVEL_NAMES[segment.level - 1]
                        job.failure = f"{level} segment {geometry.format_ids(segment.ids)}: {error}"
                        failures[job.uid] = job.failure
                        tqdm.write(f"[captions] FAILED {job.uid}: {job.failure}")
                job.left -= 1
                if job.left == 0 and job.failure is None:
                    try:
                        write_tree(job, caption_path(settings.output_dir, job.uid), settings.vlm.model)
                    except OSError as error:
                        failures[job.uid] = f"cannot write its caption file: {error}"
                        continue
                    captioned.append(job.uid)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        client.close()
    return captioned


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 when every video has a tree, 1 when some failed, 2 for bad settings."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", type=Path, required=True, help="captions settings JSON (see launch captions)")
    args = parser.parse_args(argv)
    try:
        settings = CaptionSettings.from_file(args.settings)
        captioned, skipped, failures = build_all(settings)
    except CaptionSettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"[captions] {len(captioned) + skipped + len(failures)} videos: {len(captioned)} captioned, {skipped} "
          f"already finished, {len(failures)} failed; trees in {settings.output_dir}")
    for uid, reason in sorted(failures.items()):
        print(f"[captions] FAILED {uid}: {reason}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
