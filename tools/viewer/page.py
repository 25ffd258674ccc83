"""One self-contained HTML file: styles, script, plots and data inline; no request leaves the page.

The data travels as JSON in `<script type="application/json">` blocks, with `<`, `>` and `&`
written as JSON escapes so no text of a caption or a model can close the block; the script builds
the DOM from it with textContent only, and the page's Content-Security-Policy refuses every load.
"""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path

from tools.viewer.model import PageData
from tools.viewer.plots import summary_plots

ASSETS = Path(__file__).with_name("assets")
# Nothing may load: no network, no file, no frame; only the page's own inline style and script run.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                               "\u2029": "\\u2029"})


def script_json(data: object) -> str:
    """`data` as JSON that is safe inside a script block (no `</script>`, no HTML comment, no line separator)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.translate(_JSON_ESCAPES)


def _episode_points(page: PageData) -> list[tuple[int, bool, float | None, int]]:
    """(tool calls, correct, reward, turns) of every episode of the page, for its plots."""
    points = []
    for detail in page.details:
        for episode in detail["episodes"]:
            points.append((episode["tool_calls"], episode["correct"], episode["reward"].get("score"),
                           len(episode["steps"])))
    return points


def render(page: PageData) -> str:
    """The whole HTML document of `page`."""
    summary = "".join(f"<div><dt>{escape(label)}</dt><dd>{escape(value)}</dd></div>" for label, value in page.summary)
    sources = " · ".join(escape(source) for source in page.sources)
    details = "\n".join(f'<script type="application/json" id="d-{position}">{script_json(detail)}</script>'
                        for position, detail in enumerate(page.details))
    plots = "" if page.kind == "compare" else "".join(summary_plots(_episode_points(page)))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(page.title)}</title>
<style>{(ASSETS / "viewer.css").read_text(encoding="utf-8")}</style>
</head>
<body data-kind="{escape(page.kind)}">
<header><h1>{escape(page.title)}</h1><p class="sources">{sources}</p><dl class="summary">{summary}</dl></header>
<section id="index-view">
<div id="plots">{plots}</div>
<div id="filters"></div>
<div id="table"><div id="table-head" class="grid-row"></div>
<div id="viewport"><div id="spacer"><div id="rows"></div></div></div></div>
</section>
<section id="detail-view" hidden></section>
<script type="application/json" id="index-data">{script_json(page.index())}</script>
{details}
<script>{(ASSETS / "viewer.js").read_text(encoding="utf-8")}</script>
</body>
</html>
"""


def write_page(page: PageData, output: Path) -> Path:
    """Write `page` to `output` whole (a temporary file renamed into place), so a reader never sees half a page."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    partial.write_text(render(page), encoding="utf-8")
    partial.replace(output)
    return output
