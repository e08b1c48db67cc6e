"""The dashboard's HTML: the runs list, and a run's page (the run viewer's, with actions).

Pages are whole documents with their CSS and script inline (no CDN): the
dashboard works on a machine with no network. Every value from the store is
escaped. Element ids the tests (and users' own scripts) rely on: ``#runs``
(the table; a row is ``tr.run[data-run-id][data-status]``), ``#filters``,
``#older``, ``#actions`` with ``#cancel``, ``#resume``, ``#retry``
(``#retry-from``) and ``#send-event`` (``#event-name``, ``#event-data``),
``#message`` (what the last action said), ``#status`` (the run's status).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any, Final
from urllib.parse import quote

__all__ = ["list_page", "run_page"]

_STATUSES: Final = ("queued", "running", "waiting", "completed", "failed", "cancelled")

STYLE: Final = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:baseline}
header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:16px 20px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e3e6eb;white-space:nowrap}
th{background:#eef0f4;font-weight:600}
td.id a{font-family:ui-monospace,Menlo,monospace;color:#1d4ed8}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;color:#fff}
.s-queued{background:#6b7280}.s-running{background:#2563eb}.s-waiting{background:#a855f7}
.s-completed{background:#16a34a}.s-failed{background:#dc2626}.s-cancelled{background:#92400e}
form#filters{display:flex;gap:10px;align-items:end;margin-bottom:12px}
form#filters label{display:flex;flex-direction:column;font-size:12px;color:#4b5563}
input,select,button,textarea{font:inherit;padding:4px 8px}
button{cursor:pointer;border:1px solid #9ca3af;border-radius:4px;background:#fff}
button.danger{border-color:#dc2626;color:#dc2626}
#actions{display:flex;gap:10px;align-items:center;flex-wrap:wrap;background:#fff;padding:10px;
border:1px solid #e3e6eb;margin-bottom:14px}
#message{color:#374151}
iframe#viewer{width:100%;border:1px solid #e3e6eb;background:#fff;min-height:400px}
.muted{color:#6b7280}
"""

_SCRIPT_COMMON: Final = """
const TOKEN = document.querySelector('meta[name="flowdsl-token"]').content;
async function post(path, body) {
  const response = await fetch(path, {method: 'POST', headers: {
    'X-Flowdsl-Token': TOKEN, 'Content-Type': 'application/json'}, body: JSON.stringify(body || {})});
  const data = await response.json();
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}
function runUrl(id) { return '/runs/' + encodeURIComponent(id); }
"""

_LIST_SCRIPT: Final = """
function cell(text, cls) { const td = document.createElement('td'); if (cls) td.className = cls;
  td.textContent = text; return td; }
function when(seconds) { return new Date(seconds * 1000).toLocaleString(); }
function duration(s) { return s == null ? '' : (s < 1 ? (s * 1000).toFixed(1) + ' ms' : s.toFixed(2) + ' s'); }
async function refresh() {
  const response = await fetch('/api/runs' + location.search);
  if (!response.ok) return;
  const data = await response.json();
  const body = document.querySelector('#runs tbody');
  const rows = data.runs.map(run => {
    const tr = document.createElement('tr');
    tr.className = 'run'; tr.dataset.runId = run.run_id; tr.dataset.status = run.status;
    const id = cell('', 'id'); const a = document.createElement('a');
    a.href = runUrl(run.run_id); a.textContent = run.run_id; id.appendChild(a); tr.appendChild(id);
    tr.appendChild(cell(run.workflow));
    const st = cell(''); const badge = document.createElement('span');
    badge.className = 'badge s-' + run.status; badge.textContent = run.status; st.appendChild(badge);
    tr.appendChild(st);
    tr.appendChild(cell(when(run.started))); tr.appendChild(cell(duration(run.duration)));
    tr.appendChild(cell(run.failed_step || '')); tr.appendChild(cell(run.parent_id || ''));
    return tr;
  });
  body.replaceChildren(...rows);
}
setInterval(refresh, 1000);
"""

_RUN_SCRIPT: Final = """
const RUN_ID = document.querySelector('meta[name="flowdsl-run"]').content;
let seen = document.querySelector('meta[name="flowdsl-seen"]').content;
function say(text) { document.getElementById('message').textContent = text; }
async function act(action, body) {
  try { const data = await post('/api/runs/' + encodeURIComponent(RUN_ID) + '/' + action, body);
        if (action === 'retry') { say('retry queued as ' + data.run_id); }
        else { say(action + ': done'); } await refresh(); }
  catch (e) { say(action + ' refused: ' + e.message); }
}
async function refresh() {
  const response = await fetch('/api/runs/' + encodeURIComponent(RUN_ID));
  if (!response.ok) return;
  const run = await response.json();
  const now = run.status + '/' + run.steps.length + '/' + run.compensations.length;
  if (now !== seen) { seen = now; location.reload(); }
}
document.getElementById('cancel')?.addEventListener('click', () => act('cancel'));
document.getElementById('resume')?.addEventListener('click', () => act('resume'));
document.getElementById('retry')?.addEventListener('click', () =>
  act('retry', {from_step: document.getElementById('retry-from').value}));
document.getElementById('send-event')?.addEventListener('submit', (e) => {
  e.preventDefault();
  let data = null; const text = document.getElementById('event-data').value.trim();
  try { data = text ? JSON.parse(text) : null; } catch (err) { say('the payload is not JSON: ' + err.message); return; }
  act('events', {event: document.getElementById('event-name').value, data});
});
setInterval(refresh, 1000);
const frame = document.getElementById('viewer');
function fit() { try { frame.style.height = (frame.contentDocument.documentElement.scrollHeight + 20) + 'px'; } catch (e) {} }
frame?.addEventListener('load', fit);
"""


def _document(title: str, token: str, body: str, script: str, head: str = "") -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title>"
        f'<meta name="flowdsl-token" content="{escape(token)}">{head}'
        f"<style>{STYLE}</style></head><body>"
        '<header><a href="/">flowdsl</a><span class=muted>dashboard</span></header>'
        f"<main>{body}</main><script>{_SCRIPT_COMMON}{script}</script></body></html>"
    )


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _row(run: Any) -> str:
    run_id = escape(run.run_id)
    return (
        f'<tr class=run data-run-id="{run_id}" data-status="{escape(run.status)}">'
        f'<td class=id><a href="/runs/{escape(quote(run.run_id, safe=""))}">{run_id}</a></td>'
        f"<td>{escape(run.workflow)}</td>"
        f'<td><span class="badge s-{escape(run.status)}">{escape(run.status)}</span></td>'
        f"<td>{_when(run.started)}</td><td>{_duration(run.duration)}</td>"
        f"<td>{escape(run.failed_step or '')}</td><td>{escape(run.parent_id or '')}</td></tr>"
    )


def list_page(
    runs: Sequence[Any], filters: Mapping[str, str], older: str | None, token: str
) -> str:
    """The runs list: the filter form, the table (newest first), a link to older runs."""
    chosen = filters.get("status", "")
    options = "".join(
        f'<option value="{s}"{" selected" if s == chosen else ""}>{s}</option>'
        for s in ("", *_STATUSES)
    )
    form = (
        "<form id=filters method=get>"
        f"<label>status<select name=status id=filter-status>{options}</select></label>"
        f'<label>workflow<input name=workflow id=filter-workflow value="{escape(filters.get("workflow", ""))}"></label>'
        f'<label>since<input name=since id=filter-since type=datetime-local value="{escape(filters.get("since", ""))}"></label>'
        "<button type=submit id=apply>Filter</button></form>"
    )
    rows = "".join(_row(run) for run in runs)
    table = (
        "<table id=runs><thead><tr><th>run</th><th>workflow</th><th>status</th><th>started</th>"
        f"<th>duration</th><th>failed step</th><th>parent</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    more = "" if older is None else f'<p><a id=older href="{escape(older)}">older runs</a></p>'
    empty = "" if runs else "<p class=muted id=empty>No runs match.</p>"
    return _document("flowdsl runs", token, form + table + empty + more, _LIST_SCRIPT)


def _actions(run: Any, steps: Sequence[str], resumable: bool) -> str:
    status = run.status
    parts = []
    if status in ("queued", "running", "waiting"):
        parts.append("<button id=cancel class=danger>Cancel</button>")
    if status == "cancelled" and resumable:  # stopped by its caller, not by cancel_run
        parts.append("<button id=resume>Resume</button>")
    if status in ("failed", "cancelled", "completed"):
        choices = "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in steps)
        parts.append(
            "<span><button id=retry>Retry</button> from "
            f'<select id=retry-from><option value="">the first unfinished step</option>{choices}</select></span>'
        )
    if status == "waiting":
        events: tuple[str, ...] = () if run.waiting is None else tuple(run.waiting.events)
        name = escape(events[0]) if len(events) == 1 else ""
        parts.append(
            "<form id=send-event>"
            f'<input id=event-name placeholder="event" value="{name}" required> '
            "<input id=event-data placeholder='payload (JSON)'> "
            "<button type=submit>Send event</button></form>"
        )
    return f"<div id=actions>{''.join(parts)}<span id=message></span></div>"


def run_page(
    run: Any, steps: Sequence[str], viewer: str, token: str, *, resumable: bool = True
) -> str:
    """A run's page: its actions above the run viewer's page (`viewer`, a whole document).

    The viewer's page is shown as it is, in a frame of its own (``#viewer``): its
    content policy, which forbids every load and every script, stays in force
    there. Its links open in the whole window.
    """
    seen = f"{run.status}/{len(run.steps)}/{len(run.compensations)}"
    head = (
        f'<meta name="flowdsl-run" content="{escape(run.run_id)}">'
        f'<meta name="flowdsl-seen" content="{escape(seen)}">'
    )
    title = (
        f"<h2>{escape(run.workflow)} <code>{escape(run.run_id)}</code> "
        f'<span id=status class="badge s-{escape(run.status)}">{escape(run.status)}</span></h2>'
    )
    framed = viewer.replace("<head>", '<head><base target="_top">', 1)
    frame = (
        '<iframe id=viewer title="run viewer" sandbox="allow-same-origin allow-top-navigation" '
        f'srcdoc="{escape(framed, quote=True)}"></iframe>'
    )
    body = title + _actions(run, steps, resumable) + frame
    return _document(f"run {run.run_id}", token, body, _RUN_SCRIPT, head)
