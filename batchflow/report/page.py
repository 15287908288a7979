"""The run report: one self-contained HTML page (inline CSS, SVG and script; no network).

The page shows the header (what ran where, and how long each step took), a
timeline with one row per node and one bar per task run and start task, a
histogram of task durations, a sortable and filterable task table, the
failures with their stderr, and the inputs and outputs.

It stays usable at 100,000 tasks: the timeline draws one bar per task up to
:data:`MAX_BARS` and beyond that shows, per node and time slice, how busy the
node was; the table is drawn by the page's script from compact JSON, a page
of rows at a time; the output list is cut at :data:`MAX_FILES` entries.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from batchflow.model.spec import Workflow
from batchflow.report.summary import (
    DOWNLOADS_FILE,
    FAILURES_FILE,
    Summary,
    Times,
    outcome,
    parse_time,
    read_json,
    seconds_between,
    seconds_text,
    short_node,
    size_text,
    task_times,
)
from batchflow.state import RunState
from batchflow.state.redact import redact_secrets

MAX_BARS = 20_000
MAX_FILES = 1_000
SLICES = 400
HISTOGRAM_BINS = 30

#: The codes the page's script knows task outcomes by.
OUTCOMES = ("succeeded", "failed", "cached", "unfinished")

WIDTH = 1000
ROW = 16
LABEL = 150


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")


def _timeline(workflow: Workflow, state: RunState, since: Any, times: Times) -> tuple[str, int]:
    """The timeline as SVG, and how many task bars it draws (0 when aggregated).

    ``since`` is when the run started: a reused pool's start tasks ran before
    it, for another run, and are left out.
    """
    runs = []
    for task in workflow.tasks:
        record = state.tasks.get(task.id)
        if record is None or record.cached_from or not record.node_id:
            continue
        start, end = times[task.id]
        if start and end:
            runs.append((record.node_id, start, end, task.id, outcome(record), record.exit_code))
    start_tasks = []
    for node, info in (state.resources.get("pool", {}).get("start_tasks") or {}).items():
        start, end = parse_time(info.get("start")), parse_time(info.get("end"))
        if start and end and (since is None or end >= since):
            start_tasks.append((node, start, end, info.get("exit_code")))
    if not runs and not start_tasks:
        return '<p class="muted">No task ran on a node in this run (every task was cached, or none finished).</p>', 0
    nodes = sorted({r[0] for r in runs} | {s[0] for s in start_tasks})
    row_of = {node: index for index, node in enumerate(nodes)}
    begin = min([r[1] for r in runs] + [s[1] for s in start_tasks])
    finish = max([r[2] for r in runs] + [s[2] for s in start_tasks])
    span = max((finish - begin).total_seconds(), 0.001)
    scale = (WIDTH - LABEL - 10) / span

    def x(moment: Any) -> float:
        return LABEL + (moment - begin).total_seconds() * scale

    height = len(nodes) * ROW + 24
    parts = [f'<svg id="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" aria-label="task timeline">']
    for node, index in row_of.items():
        y = index * ROW
        label = node if len(node) <= 20 else node[:8] + "…" + node[-8:]
        parts.append(
            f'<text class="node" x="{LABEL - 6}" y="{y + 12}" text-anchor="end"><title>{_e(node)}</title>{_e(label)}</text>'
        )
        parts.append(f'<line class="lane" x1="{LABEL}" x2="{WIDTH - 10}" y1="{y + ROW - 1}" y2="{y + ROW - 1}"/>')
    for node, start, end, code in start_tasks:
        y, width = row_of[node] * ROW + 2, max((end - start).total_seconds() * scale, 1.5)
        tip = f"start task on {node}: {seconds_text((end - start).total_seconds())}, exit code {code}"
        parts.append(
            f'<rect class="bar start" x="{x(start):.1f}" y="{y}" width="{width:.1f}" height="{ROW - 4}">'
            f"<title>{_e(tip)}</title></rect>"
        )
    drawn = 0
    if len(runs) <= MAX_BARS:
        for node, start, end, task_id, result, code in runs:
            y, width = row_of[node] * ROW + 2, max((end - start).total_seconds() * scale, 1.5)
            tip = f"{task_id}: {result}, {seconds_text((end - start).total_seconds())}, exit code {code}, on {node}"
            parts.append(
                f'<rect class="bar {result}" data-task="{_e(task_id)}" x="{x(start):.1f}" y="{y}" '
                f'width="{width:.1f}" height="{ROW - 4}"><title>{_e(tip)}</title></rect>'
            )
            drawn += 1
    else:
        # Per node and time slice: the share of the slice the node spent on tasks, and whether any failed.
        slice_seconds = span / SLICES
        busy: dict[tuple[int, int], float] = {}
        failed: set[tuple[int, int]] = set()
        for node, start, end, _, result, _ in runs:
            first = int((start - begin).total_seconds() / slice_seconds)
            last = min(int((end - begin).total_seconds() / slice_seconds), SLICES - 1)
            for piece in range(first, last + 1):
                key = (row_of[node], piece)
                low = max((start - begin).total_seconds(), piece * slice_seconds)
                high = min((end - begin).total_seconds(), (piece + 1) * slice_seconds)
                busy[key] = busy.get(key, 0.0) + max(high - low, 0.0)
                if result == "failed":
                    failed.add(key)
        width = (WIDTH - LABEL - 10) / SLICES
        for (row, piece), seconds in sorted(busy.items()):
            share = min(seconds / slice_seconds, 1.0)
            kind = "failed" if (row, piece) in failed else "succeeded"
            parts.append(
                f'<rect class="slice {kind}" x="{LABEL + piece * width:.1f}" y="{row * ROW + 2}" width="{width:.2f}" '
                f'height="{ROW - 4}" fill-opacity="{0.15 + 0.85 * share:.2f}"/>'
            )
    axis_y = len(nodes) * ROW + 16
    for step in range(0, 6):
        seconds = span * step / 5
        anchor = "end" if step == 5 else "middle"
        parts.append(
            f'<text class="axis" x="{LABEL + seconds * scale:.1f}" y="{axis_y}" text-anchor="{anchor}">'
            f"{_e(seconds_text(seconds))}</text>"
        )
    parts.append("</svg>")
    if drawn == 0 and runs:
        parts.append(
            f'<p class="muted">{len(runs):,} task runs on {len(nodes)} node(s), shown per time slice '
            f"({seconds_text(span / SLICES)} each): the darker, the busier; red where a task failed.</p>"
        )
    return "\n".join(parts), drawn


def _histogram(workflow: Workflow, state: RunState, times: Times) -> str:
    durations = []
    for task in workflow.tasks:
        record = state.tasks.get(task.id)
        if record is not None and not record.cached_from:
            seconds = seconds_between(*times[task.id])
            if seconds is not None:
                durations.append(seconds)
    if not durations:
        return '<p class="muted">No task durations to show.</p>'
    low, high = min(durations), max(durations)
    width_s = (high - low) / HISTOGRAM_BINS or 1.0
    counts = [0] * HISTOGRAM_BINS
    for seconds in durations:
        counts[min(int((seconds - low) / width_s), HISTOGRAM_BINS - 1)] += 1
    tallest = max(counts)
    bar_w, chart_h = 560 / HISTOGRAM_BINS, 120
    parts = ['<svg id="histogram" viewBox="0 0 620 160" width="620" role="img" aria-label="task durations">']
    for index, count in enumerate(counts):
        h = chart_h * count / tallest
        lo, hi = low + index * width_s, low + (index + 1) * width_s
        parts.append(
            f'<rect class="hbar" x="{40 + index * bar_w:.1f}" y="{10 + chart_h - h:.1f}" width="{bar_w - 1:.1f}" height="{h:.1f}">'
            f"<title>{count:,} task(s) of {_e(seconds_text(lo))} to {_e(seconds_text(hi))}</title></rect>"
        )
    parts.append(f'<text class="axis" x="40" y="150">{_e(seconds_text(low))}</text>')
    parts.append(f'<text class="axis" x="600" y="150" text-anchor="end">{_e(seconds_text(high))}</text>')
    parts.append(f'<text class="axis" x="34" y="18" text-anchor="end">{tallest:,}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _task_data(workflow: Workflow, state: RunState, times: Times) -> dict[str, Any]:
    """Compact rows for the page's table: node names and source runs by index, times as offsets."""
    nodes: dict[str, int] = {}
    sources: dict[str, int] = {}
    starts = [start for start, _ in times.values() if start]
    origin = min(starts) if starts else None
    rows = []
    for task in workflow.tasks:
        record = state.tasks.get(task.id)
        if record is None:
            rows.append([task.id, -1, None, None, 3, None, 0, 0, -1])
            continue
        start, end = times[task.id]
        seconds = seconds_between(start, end)
        rows.append(
            [
                task.id,
                nodes.setdefault(record.node_id, len(nodes)) if record.node_id else -1,
                round((start - origin).total_seconds() * 1000) if start and origin else None,
                round(seconds * 1000) if seconds is not None else None,
                OUTCOMES.index(outcome(record)),
                record.exit_code,
                record.retry_count,
                record.requeue_count,
                sources.setdefault(record.cached_from, len(sources)) if record.cached_from else -1,
            ]
        )
    return {
        "origin": origin.isoformat() if origin else None,
        "nodes": list(nodes),
        "sources": list(sources),
        "outcomes": list(OUTCOMES),
        "rows": rows,
    }


def _failures(run_dir: Path) -> str:
    failures = read_json(run_dir / FAILURES_FILE, [])
    if not failures:
        return '<p class="muted">No task failed.</p>'
    parts = ['<ol id="failures">']
    for failure in failures:
        info = failure.get("failure") or {}
        head = f"{failure.get('task')}: exit code {failure.get('exit_code')}"
        detail = " ".join(str(info.get(k) or "") for k in ("category", "code")).strip()
        parts.append(f'<li class="failure"><strong>{_e(head)}</strong> <span class="muted">{_e(detail)}</span>')
        if info.get("message"):
            parts.append(f"<div>{_e(redact_secrets(info['message']))}</div>")
        if failure.get("stderr_tail"):
            parts.append(f"<pre>{_e(redact_secrets(failure['stderr_tail']))}</pre>")
        parts.append("</li>")
    parts.append("</ol>")
    return "\n".join(parts)


def _files(workflow: Workflow, run_dir: Path) -> str:
    parts = ["<h3>Inputs</h3>", '<table class="files"><tr><th>file</th><th>blob</th><th>size</th></tr>']
    for upload in workflow.uploads[:MAX_FILES]:
        parts.append(
            f"<tr><td>{_e(upload.local_path)}</td><td>{_e(upload.container + '/' + upload.blob_name)}</td>"
            f'<td class="num">{_e(size_text(upload.size))}</td></tr>'
        )
    parts.append("</table>")
    if len(workflow.uploads) > MAX_FILES:
        parts.append(f'<p class="muted">… and {len(workflow.uploads) - MAX_FILES:,} more.</p>')
    listing = read_json(run_dir / DOWNLOADS_FILE, [])
    parts.append("<h3>Outputs</h3>")
    if not listing or workflow.download is None:
        parts.append('<p class="muted">Nothing was downloaded.</p>')
        return "\n".join(parts)
    folder = workflow.download.destination
    parts.append(f'<p>In <a href="{_e(folder.as_uri())}">{_e(folder)}</a></p>')
    parts.append('<table class="files" id="outputs"><tr><th>file</th><th>size</th></tr>')
    for item in listing[:MAX_FILES]:
        path = folder / item["name"]
        parts.append(
            f'<tr><td><a href="{_e(path.as_uri())}">{_e(item["name"])}</a></td>'
            f'<td class="num">{_e(size_text(item.get("size", 0)))}</td></tr>'
        )
    parts.append("</table>")
    if len(listing) > MAX_FILES:
        parts.append(f'<p class="muted">… and {len(listing) - MAX_FILES:,} more in the folder.</p>')
    return "\n".join(parts)


def render(summary: Summary, workflow: Workflow, state: RunState, run_dir: Path, times: Times | None = None) -> str:
    """The whole report page; ``times`` are :func:`~batchflow.report.summary.task_times` of ``state``."""
    times = task_times(state) if times is None else times
    timeline, _ = _timeline(workflow, state, parse_time(summary.start), times)
    tasks = summary.tasks
    steps = "".join(
        f"<tr><td>{_e(s['title'])}</td><td>{_e(s['status'])}</td><td class='num'>{_e(seconds_text(s['seconds']))}</td></tr>"
        for s in summary.steps
    )
    slowest = "".join(
        f"<li>{_e(item['task'])}: {_e(seconds_text(item['seconds']))}"
        + (f" on <span title='{_e(item['node'])}'>{_e(short_node(item['node']))}</span>" if item["node"] else "")
        + "</li>"
        for item in summary.slowest
    )
    verdict = "failed" if tasks.get("failed") else ("unfinished" if tasks.get("unfinished") else "succeeded")
    header = [
        ("workflow", summary.workflow),
        ("run", summary.run),
        ("target", summary.target),
        ("pool", summary.pool),
        ("job", summary.job),
        ("image", summary.image),
        ("VM size", summary.vm_size),
        ("start", _moment(summary.start)),
        ("end", _moment(summary.end)),
        ("elapsed", seconds_text(summary.elapsed)),
    ]
    facts = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in header)
    return PAGE.format(
        title=_e(f"{summary.run}: {verdict}"),
        run=_e(summary.run),
        verdict=verdict,
        facts=facts,
        steps=steps,
        counts=_e(
            f"{tasks.get('total', 0):,} tasks: {tasks.get('succeeded', 0):,} succeeded, {tasks.get('failed', 0):,} failed, "
            f"{tasks.get('cached', 0):,} cached, {tasks.get('unfinished', 0):,} unfinished"
        ),
        slowest=slowest or "<li class='muted'>none</li>",
        timeline=timeline,
        histogram=_histogram(workflow, state, times),
        failures=_failures(run_dir),
        files=_files(workflow, run_dir),
        data=_script_json(_task_data(workflow, state, times)),
    )


def _moment(text: str | None) -> str:
    moment = parse_time(text)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def write_report(
    summary: Summary, workflow: Workflow, state: RunState, run_dir: Path, times: Times | None = None
) -> Path:
    """Write ``report.html`` into the run folder (atomically) and return its path."""
    path = run_dir / "report.html"
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(render(summary, workflow, state, run_dir, times), encoding="utf-8")
    temporary.replace(path)
    return path


PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px; padding: 16px 24px; color: #1d2329; }}
h1 {{ font-size: 20px; margin: 8px 0; }} h2 {{ font-size: 16px; margin: 28px 0 8px; border-bottom: 1px solid #d8dde3; padding-bottom: 4px; }}
h3 {{ font-size: 14px; margin: 16px 0 6px; }}
.badge {{ display: inline-block; padding: 2px 10px; border-radius: 10px; color: #fff; font-size: 13px; vertical-align: middle; }}
.badge.succeeded {{ background: #2e7d32; }} .badge.failed {{ background: #c62828; }} .badge.unfinished {{ background: #8a6d00; }}
.cols {{ display: flex; gap: 32px; flex-wrap: wrap; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }}
table.facts th {{ color: #5b6670; font-weight: normal; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
.muted {{ color: #6b7680; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #38424c; }}
.lane {{ stroke: #eef1f4; }}
.bar.succeeded, .slice.succeeded {{ fill: #2e7d32; }} .bar.failed, .slice.failed {{ fill: #c62828; }}
.bar.start {{ fill: #6a4c93; }} .bar:hover {{ stroke: #000; }}
.hbar {{ fill: #3b6ea5; }}
.legend span {{ display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 12px; }}
#tasks {{ width: 100%; }} #tasks th {{ cursor: pointer; user-select: none; border-bottom: 1px solid #c9d0d6; }}
#tasks th.sorted::after {{ content: " \\2195"; }}
#tasks tr.failed td {{ color: #c62828; }} #tasks tr.cached td {{ color: #5b6670; }}
pre {{ background: #f5f6f8; padding: 8px; overflow-x: auto; max-height: 240px; }}
.controls {{ margin: 6px 0; }} .controls button {{ margin-left: 6px; }}
</style>
</head>
<body>
<h1>Run {run} <span class="badge {verdict}">{verdict}</span></h1>
<div class="cols">
<table class="facts">{facts}</table>
<div><table class="steps"><tr><th>step</th><th>status</th><th>time</th></tr>{steps}</table></div>
</div>
<p id="counts">{counts}</p>
<h2>Timeline</h2>
<p class="legend muted">one row per node, one bar per task run<span style="background:#2e7d32"></span>succeeded<span style="background:#c62828"></span>failed<span style="background:#6a4c93"></span>start task</p>
{timeline}
<h2>Task durations</h2>
<div class="cols">{histogram}<div><h3>Slowest tasks</h3><ol>{slowest}</ol></div></div>
<h2>Failures</h2>
{failures}
<h2>Tasks</h2>
<div class="controls">show <select id="filter"><option value="">all</option><option>succeeded</option><option>failed</option><option>cached</option><option>unfinished</option></select>
<span id="page-info" class="muted"></span><button id="prev">previous</button><button id="next">next</button></div>
<table id="tasks"><thead><tr>
<th data-col="0">id</th><th data-col="1">node</th><th data-col="4">state</th><th data-col="5">exit code</th>
<th data-col="2">start</th><th data-col="9">end</th><th data-col="3">duration</th><th data-col="6">retries</th><th data-col="7">requeues</th><th data-col="8">cached from</th>
</tr></thead><tbody></tbody></table>
<h2>Inputs and outputs</h2>
{files}
<script type="application/json" id="task-data">{data}</script>
<script>
(function () {{
  var data = JSON.parse(document.getElementById("task-data").textContent);
  var origin = data.origin ? Date.parse(data.origin) : null;
  var PAGE = 500, page = 0, sortCol = null, sortDir = 1, filter = "";
  var rows = data.rows.map(function (r) {{
    return r.concat([r[2] !== null && r[3] !== null ? r[2] + r[3] : null]);
  }});
  function when(ms) {{ return ms === null || origin === null ? "" : new Date(origin + ms).toISOString().slice(11, 23); }}
  function secs(ms) {{ return ms === null ? "" : (ms / 1000).toFixed(ms < 10000 ? 2 : 0) + " s"; }}
  function cell(text) {{ var td = document.createElement("td"); td.textContent = text; return td; }}
  function short(name) {{ return name.length > 24 ? name.slice(0, 10) + "\u2026" + name.slice(-10) : name; }}
  function view() {{
    var shown = filter === "" ? rows : rows.filter(function (r) {{ return data.outcomes[r[4]] === filter; }});
    if (sortCol !== null) {{
      shown = shown.slice().sort(function (a, b) {{
        var x = a[sortCol], y = b[sortCol];
        if (x === y) return 0; if (x === null) return 1; if (y === null) return -1;
        return (x < y ? -1 : 1) * sortDir;
      }});
    }}
    return shown;
  }}
  function draw() {{
    var shown = view(), pages = Math.max(1, Math.ceil(shown.length / PAGE));
    page = Math.min(page, pages - 1);
    var body = document.querySelector("#tasks tbody"), frag = document.createDocumentFragment();
    shown.slice(page * PAGE, (page + 1) * PAGE).forEach(function (r) {{
      var tr = document.createElement("tr"), state = data.outcomes[r[4]];
      tr.className = "task " + state; tr.dataset.task = r[0];
      [r[0], r[1] < 0 ? "" : short(data.nodes[r[1]]), state, r[5] === null ? "" : r[5], when(r[2]), when(r[9]), secs(r[3]),
       r[6], r[7], r[8] < 0 ? "" : data.sources[r[8]]].forEach(function (v) {{ tr.appendChild(cell(v)); }});
      if (r[1] >= 0) tr.children[1].title = data.nodes[r[1]];
      frag.appendChild(tr);
    }});
    body.replaceChildren(frag);
    document.getElementById("page-info").textContent = shown.length.toLocaleString() + " task(s), page " + (page + 1) + " of " + pages;
  }}
  document.querySelectorAll("#tasks th").forEach(function (th) {{
    th.addEventListener("click", function () {{
      var col = Number(th.dataset.col);
      sortDir = sortCol === col ? -sortDir : 1; sortCol = col; page = 0;
      document.querySelectorAll("#tasks th").forEach(function (h) {{ h.classList.toggle("sorted", h === th); }});
      draw();
    }});
  }});
  document.getElementById("filter").addEventListener("change", function (e) {{ filter = e.target.value; page = 0; draw(); }});
  document.getElementById("prev").addEventListener("click", function () {{ page = Math.max(0, page - 1); draw(); }});
  document.getElementById("next").addEventListener("click", function () {{ page += 1; draw(); }});
  draw();
}})();
</script>
</body>
</html>
"""
