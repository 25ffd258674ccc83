// The viewer's script, inlined into every page by tools/viewer/page.py. It reads the page's JSON
// (tools/viewer/model.py) and writes the DOM with textContent and setAttribute only: no text from
// the data is ever parsed as HTML.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const ROW_HEIGHT = 26;
  const EXTRA_ROWS = 12;
  const INDEX = JSON.parse(document.getElementById("index-data").textContent);
  const state = { sortKey: null, sortDir: 1, values: {}, visible: [] };
  // The question column is wide; every other column shares the rest.
  const COLUMNS = "minmax(200px, 2.5fr) repeat(" + (INDEX.columns.length - 1) + ", minmax(64px, 1fr))";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function shown(value, kind) {
    if (value === null || value === undefined || value === "") return "";
    if (Array.isArray(value)) return value.join("; ");
    if (kind === "bool") return value ? "yes" : "no";
    if (kind === "pct") return (100 * value).toFixed(0) + "%";
    if (kind === "num") return Number.isInteger(value) ? String(value) : Number(value).toFixed(3);
    return String(value);
  }

  function passes(row) {
    for (const filter of INDEX.filters) {
      const value = state.values[filter.key + ":" + filter.kind];
      const cell = row[filter.key];
      if (filter.kind === "check" && value) {
        if (filter.test === "not_all" && (cell === true || cell >= 1)) return false;
        if (filter.test === "positive" && !(cell > 0)) return false;
        if (filter.test === "true" && cell !== true) return false;
        if (filter.test === "in" && !filter.values.includes(cell)) return false;
      } else if (filter.kind === "below" && value !== undefined && value !== "") {
        if (cell === null || cell === undefined || !(cell < Number(value))) return false;
      } else if (filter.kind === "select" && value) {
        if (Array.isArray(cell) ? !cell.includes(value) : cell !== value) return false;
      }
    }
    return true;
  }

  function compare(a, b) {
    const x = a[state.sortKey], y = b[state.sortKey];
    if (x === y) return a.i - b.i;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * state.sortDir;
  }

  function refilter() {
    state.visible = INDEX.rows.filter(passes);
    if (state.sortKey !== null) state.visible.sort(compare);
    document.getElementById("row-count").textContent = state.visible.length + " of " + INDEX.rows.length + " rows";
    document.getElementById("spacer").style.height = state.visible.length * ROW_HEIGHT + "px";
    renderWindow(true);
  }

  let shownFrom = -1;
  function renderWindow(force) {
    const viewport = document.getElementById("viewport");
    const first = Math.max(0, Math.floor(viewport.scrollTop / ROW_HEIGHT) - EXTRA_ROWS);
    if (!force && first === shownFrom) return;
    shownFrom = first;
    const count = Math.ceil(viewport.clientHeight / ROW_HEIGHT) + 2 * EXTRA_ROWS;
    const rows = document.getElementById("rows");
    rows.replaceChildren();
    rows.style.top = first * ROW_HEIGHT + "px";
    for (const row of state.visible.slice(first, first + count)) {
      const line = el("div", { class: "grid-row index-row", "data-i": row.i, "data-id": row.id });
      line.style.gridTemplateColumns = COLUMNS;
      for (const column of INDEX.columns) {
        const value = row[column.key];
        const span = el("span", { title: shown(value, column.kind), "data-key": column.key }, shown(value, column.kind));
        if (column.kind === "bool" && value !== null) span.className = value ? "yes" : "no";
        line.appendChild(span);
      }
      line.addEventListener("click", () => { location.hash = "#q/" + row.i; });
      rows.appendChild(line);
    }
  }

  function buildFilters() {
    const box = document.getElementById("filters");
    for (const filter of INDEX.filters) {
      const id = filter.key + ":" + filter.kind;
      const label = el("label", { "data-filter": id });
      let input;
      if (filter.kind === "check") {
        input = el("input", { type: "checkbox" });
        input.addEventListener("change", () => { state.values[id] = input.checked; refilter(); });
        label.append(input, document.createTextNode(filter.label));
      } else if (filter.kind === "below") {
        input = el("input", { type: "number", step: "any" });
        input.addEventListener("input", () => { state.values[id] = input.value; refilter(); });
        label.append(document.createTextNode(filter.label), input);
      } else {
        const options = new Set();
        for (const row of INDEX.rows) {
          const cell = row[filter.key];
          for (const value of Array.isArray(cell) ? cell : [cell]) if (value) options.add(value);
        }
        if (options.size === 0) continue;
        input = el("select");
        input.appendChild(el("option", { value: "" }, "all"));
        for (const value of [...options].sort()) input.appendChild(el("option", { value: value }, value));
        input.addEventListener("change", () => { state.values[id] = input.value; refilter(); });
        label.append(document.createTextNode(filter.label), input);
      }
      box.appendChild(label);
    }
    box.appendChild(el("span", { id: "row-count" }));
  }

  function buildHead() {
    const head = document.getElementById("table-head");
    head.style.gridTemplateColumns = COLUMNS;
    for (const column of INDEX.columns) {
      const span = el("span", { "data-key": column.key }, column.label);
      span.addEventListener("click", () => {
        state.sortDir = state.sortKey === column.key ? -state.sortDir : 1;
        state.sortKey = column.key;
        for (const other of head.children) other.className = "";
        span.className = state.sortDir > 0 ? "sorted-up" : "sorted-down";
        refilter();
      });
      head.appendChild(span);
    }
  }

  function clock(seconds) {
    const s = Math.round(seconds);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return (h ? h + ":" + pad(m) : String(m)) + ":" + pad(r);
  }

  // The video from 0 to its duration: clue intervals, the tree's three levels (w, w², w³ segments) and a
  // row for video_qa; each visited segment highlighted and numbered in visit order on its kind's row.
  function timeline(episode) {
    const W = 1000, LEFT = 64, BAND = 22, TOP = 4;
    const bands = ["clues", "high", "medium", "low", "video_qa"];
    const rowOf = { medium: 2, low: 3, video_qa: 4 };
    const height = TOP + bands.length * (BAND + 4) + 18;
    const x = (t) => LEFT + (W - LEFT - 4) * t / episode.duration;
    const root = svg("svg", { class: "timeline", viewBox: "0 0 " + W + " " + height, "data-width": episode.width,
                              "data-duration": episode.duration });
    const bandY = (b) => TOP + b * (BAND + 4);
    bands.forEach((name, b) => root.appendChild(svg("text", { class: "band-label", x: 4, y: bandY(b) + 15 }, name)));
    root.appendChild(svg("rect", { class: "qa-row", x: x(0), y: bandY(4), width: x(episode.duration) - x(0),
                                   height: BAND }));
    for (let level = 1; level <= 3; level++) {
      const count = Math.pow(episode.width, level);
      const group = svg("g", { class: "level level-" + level, "data-segments": count });
      for (let k = 0; k < count; k++) {
        const start = episode.duration * k / count, end = episode.duration * (k + 1) / count;
        group.appendChild(svg("rect", { class: "seg", x: x(start), y: bandY(level), width: x(end) - x(start),
                                        height: BAND }));
      }
      root.appendChild(group);
    }
    for (const [start, end] of episode.clues) {
      root.appendChild(svg("rect", { class: "clue", x: x(start), y: bandY(0), width: Math.max(1, x(end) - x(start)),
                                     height: bandY(bands.length) - bandY(0) - 4, "data-start": start,
                                     "data-end": end }));
    }
    for (const visit of episode.visits) {
      const y = bandY(rowOf[visit.kind]);
      const rect = svg("rect", { class: "visit visit-" + visit.kind, x: x(visit.start), y: y,
                                 width: Math.max(2, x(visit.end) - x(visit.start)), height: BAND,
                                 "data-n": visit.n, "data-kind": visit.kind, "data-ids": visit.ids.join(","),
                                 "data-start": visit.start,
                                 "data-end": visit.end });
      rect.appendChild(svg("title", {}, "#" + visit.n + " " + visit.kind + " (" + visit.ids.join(", ") + ") " +
                                        clock(visit.start) + "-" + clock(visit.end)));
      root.appendChild(rect);
      root.appendChild(svg("text", { class: "visit-number", x: (x(visit.start) + x(visit.end)) / 2, y: y + 15 },
                           visit.n));
    }
    for (let k = 0; k <= 10; k++) {
      const t = episode.duration * k / 10;
      root.appendChild(svg("text", { class: "axis-tick", x: x(t) - (k === 10 ? 24 : 0), y: height - 4 }, clock(t)));
    }
    return root;
  }

  function legend() {
    const box = el("div", { class: "legend" });
    for (const [name, color] of [["medium caption", "var(--medium)"], ["low caption", "var(--low)"],
                                 ["video_qa", "var(--qa)"], ["clue interval", "var(--clue)"]]) {
      const item = el("span");
      item.append(el("span", { class: "swatch", style: "background:" + color }), document.createTextNode(name));
      box.appendChild(item);
    }
    return box;
  }

  function turns(episode) {
    const list = el("ol", { class: "turns" });
    episode.steps.forEach((step, k) => {
      const item = el("li", { class: "turn status-" + step.status, "data-status": step.status });
      const head = "turn " + (k + 1) + " · " + step.status + (step.visit ? " · visit #" + step.visit : "");
      item.appendChild(el("div", { class: "turn-head" }, head));
      if (step.think !== null) {
        const fold = el("details", { class: "think" });
        fold.append(el("summary", {}, "thinking (" + step.think.length + " characters)"), el("pre", {}, step.think));
        item.appendChild(fold);
      }
      item.appendChild(el("code", { class: "action" }, step.action));
      if (step.reason) item.appendChild(el("div", { class: "reason" }, step.status + ": " + step.reason));
      for (const problem of step.problems) item.appendChild(el("div", { class: "reason" }, "format: " + problem));
      if (step.observation) item.appendChild(el("pre", { class: "observation" }, step.observation));
      list.appendChild(item);
    });
    return list;
  }

  function episodeHead(episode) {
    const head = el("div", { class: "episode-head" });
    head.appendChild(el("strong", {}, episode.label));
    head.appendChild(el("span", { class: episode.correct ? "yes" : "no" }, episode.correct ? "correct" : "wrong"));
    head.appendChild(el("span", {}, "answer " + (episode.answer || "none")));
    for (const [name, value] of Object.entries(episode.reward)) {
      if (value !== null) head.appendChild(el("span", { "data-reward": name }, name + " " + shown(value, "num")));
    }
    if (episode.advantage !== null) head.appendChild(el("span", { class: "advantage" },
                                                        "advantage " + shown(episode.advantage, "num")));
    if (episode.location_f1 !== null) head.appendChild(el("span", {}, "location F1 " + shown(episode.location_f1, "num")));
    if (episode.stop_reason) head.appendChild(el("span", {}, "stop: " + episode.stop_reason));
    return head;
  }

  function showDetail(i) {
    const data = JSON.parse(document.getElementById("d-" + i).textContent);
    const view = document.getElementById("detail-view");
    view.replaceChildren();
    view.appendChild(el("a", { class: "back", href: "#" }, "← all rows"));
    view.appendChild(el("h2", {}, data.id + (data.step !== null ? " (step " + data.step + ")" : "")));
    view.appendChild(el("div", { class: "question-text" }, data.question));
    const options = el("ol", { class: "options", type: "A" });
    data.options.forEach((text, k) => {
      const letter = String.fromCharCode(65 + k);
      options.appendChild(el("li", { class: letter === data.ground_truth ? "truth" : "" }, text));
    });
    view.appendChild(options);
    const scores = data.episodes.map((e) => e.reward.score).filter((s) => s !== null && s !== undefined);
    if (INDEX.kind === "groups" && scores.length > 1 && new Set(scores).size === 1) {
      view.appendChild(el("div", { class: "banner zero-variance" }, "All " + scores.length +
        " rewards of this group are equal: every advantage is 0 and the group teaches nothing."));
    }
    view.appendChild(legend());
    // The timelines stacked at full width (one per rollout: a GRPO group's, or two runs'), to compare at a
    // glance, each under its rollout's outcome and reward; then the turns side by side.
    const stack = el("div", { class: "timelines" });
    for (const episode of data.episodes) {
      const row = el("div", { class: "timeline-row", "data-label": episode.label });
      row.append(episodeHead(episode), timeline(episode));
      stack.appendChild(row);
    }
    view.appendChild(stack);
    const grid = el("div", { class: "episodes" });
    grid.style.gridTemplateColumns = "repeat(" + data.episodes.length + ", minmax(340px, 1fr))";
    for (const episode of data.episodes) {
      const box = el("div", { class: "episode", "data-label": episode.label });
      box.append(el("div", { class: "episode-head" }, episode.label), turns(episode));
      grid.appendChild(box);
    }
    view.appendChild(grid);
  }

  function route() {
    const match = /^#q\/(\d+)$/.exec(location.hash);
    const index = document.getElementById("index-view"), detail = document.getElementById("detail-view");
    if (match && document.getElementById("d-" + match[1])) {
      index.hidden = true;
      detail.hidden = false;
      showDetail(Number(match[1]));
      window.scrollTo(0, 0);
    } else {
      detail.hidden = true;
      index.hidden = false;
      renderWindow(true);
    }
  }

  buildFilters();
  buildHead();
  document.getElementById("viewport").addEventListener("scroll", () => renderWindow(false));
  window.addEventListener("hashchange", route);
  refilter();
  route();
  document.body.setAttribute("data-ready", "1");
})();
