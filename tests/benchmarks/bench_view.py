"""Benchmark: the viewer's page for a large evaluation against one a tenth its size, in headless chromium.

Questions are the demo world's trajectories with thoughts and captions padded to the lengths of a
real model's (about 400 characters of thought and 600 of caption per turn). For each size, measured
in the same run: the time `python -m launch view` takes to build the page, the file's size, the
time until the page's script has run (load), the rows in the DOM, and, timed inside the page, a
filter, a scroll to the last row and opening a question. The ratios show what ten times the
questions costs; the rows in the DOM stay flat because only the visible rows are rendered.
No timed assertions; the numbers and ratios are printed.

    python -m tests.benchmarks.bench_view [--questions 10000]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

from tests.fixtures.browser import Browser, require_browser
from tools.demo import world as demo_world
from tools.viewer.build import build_page
from tools.viewer.page import write_page

THOUGHT = " I weigh what the caption says against the question before choosing the next segment." * 5
CAPTION = " A person walks into the kitchen, opens the fridge and looks at the shelves while a dog waits." * 6


def padded(records: list[dict], count: int) -> list[dict]:
    """`count` questions cycled from the demo's, each turn's thought and caption padded to real lengths."""
    questions = []
    for position in range(count):
        record = copy.deepcopy(records[position % len(records)])
        record["id"] = f"q{position:06d}"
        record["correct"] = position % 3 != 0
        for turn in record["turns"]:
            turn["model"] = turn["model"].replace("</think>", THOUGHT + "</think>", 1)
            if turn["observation"] and not turn["observation"].startswith("<information>"):
                turn["observation"] += CAPTION
        questions.append(record)
    return questions


# Timed inside the page: a filter, a scroll to the last row, a question opened (milliseconds each).
IN_PAGE = """() => {
  const time = (action) => { const start = performance.now(); action(); return performance.now() - start; };
  const box = document.querySelector("label[data-filter='correct:check'] input");
  const viewport = document.getElementById("viewport");
  const filter = time(() => { box.checked = true; box.dispatchEvent(new Event("change")); });
  const unfilter = time(() => { box.checked = false; box.dispatchEvent(new Event("change")); });
  const scroll = time(() => {
    viewport.scrollTop = viewport.scrollHeight;
    viewport.dispatchEvent(new Event("scroll"));
  });
  const last = document.querySelector("#rows .index-row:last-child").dataset.i;
  const open = time(() => { location.hash = "#q/" + last; window.dispatchEvent(new HashChangeEvent("hashchange")); });
  return {filter, unfilter, scroll, open, rows: document.querySelectorAll("#rows .index-row").length};
}"""


def measure(browser: Browser, records: list[dict], count: int, folder: Path) -> dict:
    """Build and open the page of `count` questions; every number of one size."""
    source = folder / f"n{count}" / "eval" / "trajectories.jsonl"
    source.parent.mkdir(parents=True)
    source.write_text("".join(json.dumps(record) + "\n" for record in padded(records, count)))
    started = time.perf_counter()
    page, _ = build_page([source])
    output = write_page(page, source.with_name("view.html"))
    built = time.perf_counter() - started
    with browser.open(output) as opened:
        loaded = opened.page.evaluate("performance.now()") / 1000
        timings = opened.page.evaluate(IN_PAGE)
        assert opened.network_requests() == []
    return {"questions": count, "build_s": built, "megabytes": output.stat().st_size / 1e6, "load_s": loaded,
            **timings}


def main() -> None:
    """Print each size's numbers and the large page's ratios to the small one's."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=10_000)
    args = parser.parse_args()
    browser = Browser(require_browser())
    try:
        with tempfile.TemporaryDirectory() as scratch:
            world = demo_world.ensure(Path(scratch) / "world")
            records = [json.loads(line) for line in (world / "trajectories.jsonl").read_text().splitlines()]
            small = measure(browser, records, max(args.questions // 10, 1), Path(scratch))
            large = measure(browser, records, args.questions, Path(scratch))
    finally:
        browser.close()
    keys = ("build_s", "megabytes", "load_s", "filter", "unfilter", "scroll", "open", "rows")
    print(f"{'':12}" + "".join(f"{key:>10}" for key in keys))
    for result in (small, large):
        print(f"{result['questions']:>8} q  " + "".join(f"{result[key]:>10.2f}" for key in keys))
    print("ratio       " + "".join(f"{large[key] / max(small[key], 1e-9):>10.2f}" for key in keys))
    print("(seconds for build and load, milliseconds in the page; rows: index rows in the DOM)")


if __name__ == "__main__":
    main()
