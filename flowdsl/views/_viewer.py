"""The run viewer: one self-contained HTML page of a run, made from what a store keeps.

`render_run(run, graph)` makes the page from a `Run` and its workflow's
`Graph`; `run_page(store, run_id)` reads both from a store first (the graph
it kept when the definition's first run started, or, for a run an older
release recorded, one rebuilt from the definition's shape). The command line
(``flowdsl runs view``) writes the page to a file, the dashboard serves it.

The page loads nothing: its CSS is inline, the graph is inline SVG laid out
by `_svg`, the timeline plain HTML placed by percentages (`_timeline`), and
there is no script at all; a Content-Security-Policy forbids every load.
Everything taken from the run (names, errors, tracebacks) is escaped.

Element ids (stable, for the dashboard and for tests): ``#run-header``
(``data-status``) with ``.status[data-status]``, ``#run-id``, ``#parent``,
``#started``, ``#duration``, ``#failed-step``, ``#waiting``, ``#children``
and ``#run-error``; ``#graph`` (``svg.graph``, ``.legend``, ``#graph-note``
when the graph was rebuilt or is missing); ``#timeline`` (see `_timeline`);
``#errors`` with one ``details.error`` per failure (``id="err-N"``,
``pre.traceback``).
"""

from __future__ import annotations

import datetime as _dt
import html
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from .._engine._run import Run, StepRecord
from ..errors import InvalidArgument, RunNotFound
from ._graph import Graph, GraphNode
from ._shape import graph_from_shape
from ._svg import NodeState, graph_svg
from ._timeline import Failure, build_timeline, duration_text, error_text, split_index

if TYPE_CHECKING:
    from ..stores._protocol import Store

__all__ = ["VIEWER_CSS", "node_states", "recorded_graph", "render_run", "run_page"]

STATUSES: Final = (
    "succeeded",
    "failed",
    "running",
    "waiting",
    "not-run",
    "cancelled",
    "compensated",
)
"""The ``data-status`` values of graph nodes (attempt bars use succeeded, failed, waiting,
compensated)."""
_UNFINISHED: Final = frozenset({"queued", "running", "waiting"})
_REACHED: Final = frozenset({"succeeded", "failed", "running", "waiting", "compensated"})
_DONE: Final = frozenset({"succeeded", "compensated"})
_STRUCTURE: Final = frozenset({"fork", "join", "reducer"})
_END: Final = {"completed": "succeeded", "failed": "failed", "cancelled": "cancelled"}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _iso(epoch: float) -> str:
    when = _dt.datetime.fromtimestamp(epoch, _dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"


def _traceback(error: object) -> str | None:
    recorded = getattr(error, "traceback", None)
    if isinstance(recorded, str) and recorded:
        return recorded
    if isinstance(error, BaseException) and error.__traceback__ is not None:
        return "".join(traceback.format_exception(error))
    return None


# -- what the run says about each node --------------------------------------------------------


def _node_name(node: GraphNode) -> str | None:
    """The name attempts are recorded under, for a step, wait or call node."""
    if node.kind not in ("step", "wait", "sleep", "call"):
        return None
    for key in ("step", "wait", "call"):
        name = node.info.get(key)
        if isinstance(name, str):
            return name
    return None


def _summary(name: str, records: Sequence[StepRecord]) -> tuple[int, str]:
    """How many (item, visit)s ended failed, and a line saying what ran."""
    last: dict[tuple[str, int], StepRecord] = {}
    for record in records:
        key = (record.name, record.visit)
        found = last.get(key)
        if found is None or record.attempt >= found.attempt:
            last[key] = record
    failed = sum(1 for r in last.values() if r.status != "succeeded")
    items = {r.name for r in records}
    parts = []
    if len(items) > 1 or split_index(next(iter(items)))[1]:
        parts.append(f"{len(items)} items")
    visits = max(r.visit for r in records)
    if visits > 1:
        parts.append(f"{visits} visits")
    parts.append(f"{len(records)} attempt{'' if len(records) == 1 else 's'}")
    ended = f"{len(last) - failed} succeeded" + (f", {failed} failed" if failed else "")
    return failed, f"{name}: {', '.join(parts)}; {ended}"


def node_states(
    run: Run, graph: Graph, rows: Mapping[str, str] | None = None
) -> dict[str, NodeState]:
    """Each graph node's status, as far as the run's records tell (see the module docs).

    Steps, waits and calls: from their attempts (every item and visit);
    compensations and the steps they undid: from `Run.compensations`; forks,
    joins and reducers: reached when what follows them ran. Where an
    unfinished (or cancelled) run stands is inferred: the nodes with no
    attempt whose predecessors all succeeded are "running" (or "cancelled").
    `rows` maps a step's name to its first timeline row, linked from its node.
    """
    rows = rows or {}
    records: dict[str, list[StepRecord]] = {}
    for record in run.steps:
        records.setdefault(split_index(record.name)[0], []).append(record)
    undone: dict[str, list[str]] = {}
    for comp in run.compensations:
        undone.setdefault(split_index(comp.step)[0], []).append(comp.status)
    comp_of = {e.target: e.source for e in graph.edges if e.kind == "compensate"}
    nodes = {n.id: n for n in graph.nodes}
    waiting = set() if run.waiting is None else set(run.waiting.waits)
    waiting_bases = {split_index(w)[0] for w in waiting}
    states: dict[str, NodeState] = {}
    for node in graph.nodes:
        name = _node_name(node)
        row = rows.get(name) if name is not None else None
        if node.kind == "start":
            states[node.id] = NodeState("not-run" if run.status == "queued" else "succeeded")
        elif node.kind == "end":
            states[node.id] = NodeState(_END.get(run.status, "not-run"))
        elif node.kind == "compensation":
            step = nodes.get(comp_of.get(node.id, ""))
            done = undone.get(_node_name(step) or "", []) if step is not None else []
            status = "not-run" if not done else "failed" if "failed" in done else "succeeded"
            summary = f"{len(done)} compensation{'s' if len(done) != 1 else ''} ran" if done else ""
            states[node.id] = NodeState(status, summary)
        elif name is not None and name in waiting_bases:
            states[node.id] = NodeState("waiting", f"{name}: waiting", row)
        elif name is not None and name in records:
            failed, summary = _summary(name, records[name])
            if failed:
                status = "running" if run.status in _UNFINISHED else "failed"
            else:
                status = "succeeded"
            comps = undone.get(name, [])
            if comps:
                status = "compensated"
                summary += f"; undone ({len(comps)} compensation{'s' if len(comps) != 1 else ''})"
            states[node.id] = NodeState(status, summary, row)
        else:
            states[node.id] = NodeState("not-run", "", row)
    _infer(run, graph, states)
    return states


def _infer(run: Run, graph: Graph, states: dict[str, NodeState]) -> None:
    """Forks, joins and reducers from what follows them; where an unfinished run stands."""
    after: dict[str, list[str]] = {}
    before: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.kind == "next":
            after.setdefault(edge.source, []).append(edge.target)
            before.setdefault(edge.target, []).append(edge.source)
    kinds = {n.id: n.kind for n in graph.nodes}
    completed = run.status == "completed"

    def reached(node_id: str) -> bool:
        if kinds[node_id] == "end":
            return completed
        return states[node_id].status in _REACHED

    changed = True
    while changed:  # a fixpoint: a join is reached once its reducer is, and so on
        changed = False
        for node in reversed(graph.nodes):
            if (
                node.kind in _STRUCTURE
                and states[node.id].status == "not-run"
                and any(reached(t) for t in after.get(node.id, ()))
            ):
                states[node.id] = NodeState("succeeded")
                changed = True
    if run.status in ("completed", "waiting", "queued"):
        return
    blocks = {b.id: b for b in graph.blocks}
    failed_blocks: set[str] = set()
    for node in graph.nodes:
        if states[node.id].status == "failed":
            at = node.block
            while at is not None and at in blocks and at not in failed_blocks:
                failed_blocks.add(at)
                at = blocks[at].parent
    changed = True
    while changed:  # forks and joins are passed through: the run stands at what follows
        changed = False
        for node in graph.nodes:
            state = states[node.id]
            if state.status != "not-run" or node.kind in ("start", "end", "compensation"):
                continue
            sources = before.get(node.id, ())
            if not sources or not all(states[s].status in _DONE for s in sources):
                continue
            if run.status == "running":
                status = "running"
            elif run.status == "cancelled" or node.block in failed_blocks:
                status = "cancelled"
            else:
                continue
            if node.kind in ("fork", "join"):
                status, changed = "succeeded", True
            states[node.id] = NodeState(status, state.summary or f"{status} (inferred)", state.row)


# -- the page -----------------------------------------------------------------------------------


def recorded_graph(
    graph_json: str | None, workflow: str, shape: Sequence[str]
) -> tuple[Graph | None, str | None]:
    """The graph a store kept (JSON), or one rebuilt from `shape`; and a note when rebuilt.

    Never raises: a graph that cannot be read, and a shape that cannot be
    rebuilt, give None and a note saying so.
    """
    problem = ""
    if graph_json is not None:
        try:
            return Graph.from_json(graph_json), None
        except InvalidArgument as exc:
            problem = f"The graph the store kept cannot be read ({exc}). "
    try:
        graph = graph_from_shape(workflow, shape)
    except InvalidArgument as exc:
        note = (
            f"{problem}The store kept no graph of this run's definition, and its shape "
            f"cannot be drawn ({exc}): no graph is shown."
        )
        return None, note
    if not problem:
        problem = (
            "The store kept no graph of this run's definition (the run was recorded "
            "before flowdsl kept graphs). "
        )
    note = (
        f"{problem}This graph is rebuilt from the definition's shape: its steps, "
        f"blocks and calls, without goto routes, retries or compensations."
    )
    return graph, note


def _fact(key: str, label: str, value: str) -> str:
    return f'<dt>{_e(label)}</dt><dd id="{key}">{value}</dd>'


def _run_ref(run_id: str, link: Callable[[str], str] | None) -> str:
    code = f"<code>{_e(run_id)}</code>"
    return code if link is None else f'<a href="{_e(link(run_id))}">{code}</a>'


def _error_details(element_id: str, where: str, error: object, opened: bool = False) -> str:
    text = error_text(error)
    trace = _traceback(error)
    body = (
        f'<pre class="traceback">{_e(trace)}</pre>'
        if trace
        else '<p class="note">No traceback was recorded.</p>'
    )
    if "\n" in text:
        body = f'<pre class="message">{_e(text)}</pre>{body}'
    first = text.splitlines()[0] if text else ""
    return (
        f'<details class="error" id="{element_id}"{" open" if opened else ""}><summary>'
        f'<span class="where">{_e(where)}</span> <span class="message">{_e(first)}</span>'
        f"</summary>{body}</details>"
    )


def _header(run: Run, children: Sequence[Run], link: Callable[[str], str] | None) -> str:
    facts = [_fact("run-id", "run", f"<code>{_e(run.run_id)}</code>")]
    if run.parent_id is not None:
        facts.append(_fact("parent", "parent run", _run_ref(run.parent_id, link)))
    if run.started:
        facts.append(_fact("started", "started", _e(_iso(run.started))))
    if run.status in ("completed", "failed", "cancelled"):
        facts.append(_fact("duration", "duration", _e(duration_text(run.duration))))
    if run.failed_step is not None:
        facts.append(_fact("failed-step", "failed step", f"<code>{_e(run.failed_step)}</code>"))
    if run.waiting is not None:
        what = [f"<code>{_e(w)}</code>" for w in run.waiting.waits]
        text = ", ".join(what)
        if run.waiting.events:
            text += " for " + ", ".join(f"<code>{_e(e)}</code>" for e in run.waiting.events)
        if run.waiting.until is not None:
            text += f" until {_e(_iso(run.waiting.until))}"
        facts.append(_fact("waiting", "waiting in", text))
    if run.owner is not None:
        facts.append(_fact("owner", "owner", f"<code>{_e(run.owner)}</code>"))
    if run.fingerprint:
        facts.append(_fact("fingerprint", "definition", f"<code>{_e(run.fingerprint)}</code>"))
    if children:
        items = "".join(
            f'<li>{_run_ref(c.run_id, link)} <span class="status" data-status="{_e(c.status)}">'
            f"{_e(c.status)}</span> {_e(c.workflow)}</li>"
            for c in children
        )
        facts.append(_fact("children", "child runs", f"<ul>{items}</ul>"))
    error = ""
    if run.error is not None:
        where = f"error at {run.failed_step}" if run.failed_step else "error"
        error = _error_details("run-error", where, run.error, opened=True)
    return (
        f'<header id="run-header" data-status="{_e(run.status)}"><h1><span class="workflow">'
        f'{_e(run.workflow)}</span> <span class="status" data-status="{_e(run.status)}">'
        f'{_e(run.status)}</span></h1><dl class="facts">{"".join(facts)}</dl>{error}</header>'
    )


def _graph_section(run: Run, graph: Graph | None, note: str | None, rows: Mapping[str, str]) -> str:
    note_html = f'<p class="note" id="graph-note">{_e(note)}</p>' if note else ""
    if graph is None:
        return f'<section id="graph"><h2>Graph</h2>{note_html}</section>'
    legend = "".join(
        f'<li><span class="swatch" data-status="{s}"></span>{s.replace("-", " ")}</li>'
        for s in STATUSES
    )
    svg = graph_svg(graph, node_states(run, graph, rows))
    inferred = (
        '<p class="note">Statuses come from the journal; for an unfinished or cancelled run, '
        "where it stands is inferred from the attempts it recorded.</p>"
        if run.status != "completed"
        else ""
    )
    return (
        f'<section id="graph"><h2>Graph</h2>{note_html}<ul class="legend">{legend}</ul>'
        f'<div class="graph-box">{svg}</div>{inferred}</section>'
    )


def _errors_section(run: Run, failures: Iterable[Failure]) -> str:
    listed: list[str] = []
    more = 0
    for failure in failures:
        if not failure.id:
            more += 1
            continue
        listed.append(_error_details(failure.id, failure.where, failure.error))
    if not listed:
        return (
            '<section id="errors"><h2>Errors</h2><p class="note">No attempt failed.</p></section>'
        )
    rest = ""
    if more:
        rest = (
            f'<p class="note" id="more-errors">and {more} more failed attempts, not listed here: '
            f"their errors are in the run record (flowdsl runs show {_e(run.run_id)} --store ...)"
            f"</p>"
        )
    return f'<section id="errors"><h2>Errors</h2>{"".join(listed)}{rest}</section>'


def render_run(
    run: Run,
    graph: Graph | None,
    *,
    graph_note: str | None = None,
    children: Sequence[Run] = (),
    link: Callable[[str], str] | None = None,
    max_errors: int = 200,
) -> str:
    """The page of `run`, a complete HTML document that loads nothing.

    `graph` is the run's workflow graph (None: none is drawn; `graph_note`
    says why, or that it was rebuilt). `children` are the child runs it
    started, listed in the header. `link(run_id)` gives the URL of another
    run's page (its parent, its children); without it run ids are shown as
    text. At most `max_errors` failures are listed with their tracebacks.
    """
    timeline = build_timeline(run, graph, link=link, max_errors=max_errors)
    title = f"{run.workflow} \u00b7 run {run.run_id} \u00b7 {run.status}"
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{VIEWER_CSS}</style></head>"
        f'<body class="flowdsl-run">{_header(run, children, link)}'
        f"{_graph_section(run, graph, graph_note, timeline.rows)}{timeline.html}"
        f"{_errors_section(run, timeline.failures)}</body></html>\n"
    )


def run_page(store: Store, run_id: str, *, link: Callable[[str], str] | None = None) -> str:
    """`render_run` of the run `run_id` in `store`: its graph and child runs read there too.

    `RunNotFound` when the store has no such run; `StoreError` when it is damaged.
    """
    run = store.get_run(run_id)
    if run is None:
        msg = f"no run {run_id!r} in {store!r}; list the runs with: flowdsl runs list --store ..."
        raise RunNotFound(msg)
    definition = store.get_definition(run_id)
    graph: Graph | None = None
    note: str | None = "The run's definition is no longer in the store."
    if definition is not None:  # else deleted between the two reads
        graph, note = recorded_graph(definition.graph, definition.workflow, definition.shape)
    children = store.list_runs(parent=run_id)
    return render_run(run, graph, graph_note=note, children=children, link=link)


VIEWER_CSS: Final = """
:root{--ok:#1a7f37;--ok-bg:#dafbe1;--bad:#cf222e;--bad-bg:#ffebe9;--run:#0969da;
--run-bg:#ddf4ff;--wait:#9a6700;--wait-bg:#fff8c5;--off:#8c959f;--off-bg:#f6f8fa;
--cancel:#57606a;--cancel-bg:#eaeef2;--undo:#8250df;--undo-bg:#fbefff;--line:#d0d7de;
--text:#1f2328;--muted:#656d76;--row:18px}
*{box-sizing:border-box}
body.flowdsl-run{margin:0;padding:16px 24px 48px;font:14px/1.45 system-ui,-apple-system,
"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:var(--text);background:#fff}
h1{font-size:22px;margin:0 0 8px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
var(--line);padding-bottom:4px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
a{color:var(--run)}
.note{color:var(--muted);margin:4px 0 8px}
.status{display:inline-block;padding:1px 9px;border-radius:10px;font-size:13px;
font-weight:600;vertical-align:middle;border:1px solid var(--off);background:var(--off-bg)}
.status[data-status=completed]{color:var(--ok);border-color:var(--ok);background:var(--ok-bg)}
.status[data-status=failed]{color:var(--bad);border-color:var(--bad);background:var(--bad-bg)}
.status[data-status=running],.status[data-status=queued]{color:var(--run);
border-color:var(--run);background:var(--run-bg)}
.status[data-status=waiting]{color:var(--wait);border-color:var(--wait);background:var(--wait-bg)}
.status[data-status=cancelled]{color:var(--cancel);border-color:var(--cancel);
background:var(--cancel-bg)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}
dl.facts dt{color:var(--muted)}dl.facts dd{margin:0;overflow-wrap:anywhere}
dl.facts ul{margin:0;padding-left:18px}
details.error{border:1px solid var(--line);border-left:4px solid var(--bad);border-radius:6px;
margin:6px 0;background:#fff}
details.error>summary{cursor:pointer;padding:6px 10px;overflow-wrap:anywhere}
details.error .where{font-weight:600}details.error .message{color:var(--bad)}
details.error pre{margin:0;padding:8px 12px;overflow:auto;background:var(--off-bg);
border-top:1px solid var(--line);white-space:pre-wrap;overflow-wrap:anywhere}
details.error:target{outline:2px solid var(--run)}
.legend{list-style:none;padding:0;margin:4px 0 8px;display:flex;flex-wrap:wrap;gap:4px 14px;
font-size:12.5px;color:var(--muted)}
.swatch{display:inline-block;width:12px;height:12px;border-radius:3px;margin-right:5px;
vertical-align:-1px;border:1.5px solid var(--off);background:var(--off-bg)}
.graph-box{overflow:auto;border:1px solid var(--line);border-radius:6px;padding:4px;
max-height:80vh}
svg.graph{display:block;font:12px system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,
sans-serif}
svg.graph .cluster rect{fill:none;stroke:var(--off);stroke-dasharray:5 3}
svg.graph .cluster[data-kind=foreach] rect{fill:#f6fff8;stroke:var(--ok);stroke-dasharray:none}
svg.graph .cluster[data-kind=sequence] rect{stroke:var(--line);stroke-dasharray:none}
svg.graph .cluster text{fill:var(--muted);font-size:11px}
svg.graph .edge{fill:none;stroke:#6e7781;stroke-width:1.3}
svg.graph .edge[data-kind=route]{stroke:var(--run);stroke-dasharray:5 3}
svg.graph .edge[data-kind=compensate]{stroke:var(--bad);stroke-dasharray:2 3}
svg.graph marker path{fill:#6e7781}
svg.graph .edge-label{fill:var(--run);font-size:10px}
svg.graph .node .shape{stroke-width:1.5}
svg.graph .node text{text-anchor:middle;fill:var(--text)}
svg.graph .node .detail{font-size:10px;fill:var(--muted)}
svg.graph .node .inner{fill:none;stroke:var(--undo);stroke-width:1}
.swatch[data-status=succeeded],svg.graph .node[data-status=succeeded] .shape{fill:var(--ok-bg);
stroke:var(--ok);background:var(--ok-bg);border-color:var(--ok)}
.swatch[data-status=failed],svg.graph .node[data-status=failed] .shape{fill:var(--bad-bg);
stroke:var(--bad);background:var(--bad-bg);border-color:var(--bad)}
.swatch[data-status=running],svg.graph .node[data-status=running] .shape{fill:var(--run-bg);
stroke:var(--run);background:var(--run-bg);border-color:var(--run)}
.swatch[data-status=waiting],svg.graph .node[data-status=waiting] .shape{fill:var(--wait-bg);
stroke:var(--wait);background:var(--wait-bg);border-color:var(--wait)}
.swatch[data-status=not-run],svg.graph .node[data-status=not-run] .shape{fill:var(--off-bg);
stroke:var(--off);stroke-dasharray:4 3;background:var(--off-bg);border-color:var(--off)}
.swatch[data-status=cancelled],svg.graph .node[data-status=cancelled] .shape{
fill:var(--cancel-bg);stroke:var(--cancel);background:var(--cancel-bg);border-color:var(--cancel)}
.swatch[data-status=compensated],svg.graph .node[data-status=compensated] .shape{
fill:var(--undo-bg);stroke:var(--undo);background:var(--undo-bg);border-color:var(--undo)}
svg.graph .node[data-status=not-run] text{fill:var(--muted)}
svg.graph .node[data-kind=fork] .shape,svg.graph .node[data-kind=join] .shape{fill:#57606a;
stroke:#57606a;stroke-dasharray:none}
svg.graph .node[data-kind=fork][data-status=not-run] .shape,
svg.graph .node[data-kind=join][data-status=not-run] .shape{fill:#afb8c1;stroke:#afb8c1}
#timeline .rows{border:1px solid var(--line);border-radius:6px;max-height:85vh;overflow:auto}
.axis,.row{display:grid;grid-template-columns:minmax(8rem,15rem) 1fr;align-items:start}
.axis{position:sticky;top:0;z-index:2;background:#fff;border:1px solid var(--line);
border-bottom:0;border-radius:6px 6px 0 0;font-size:11px;color:var(--muted);height:22px}
.axis .track{position:relative;height:22px;margin:0 14px 0 4px}
.tick{position:absolute;top:3px;border-left:1px solid var(--line);padding-left:3px;
white-space:nowrap}
.row{border-top:1px solid #eaeef2;min-height:calc(var(--row) + 6px)}
.row>.name,summary>.name{padding:2px 8px;font:12px/18px ui-monospace,SFMono-Regular,Menlo,
Consolas,monospace;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.row>.name small,summary .name small{font-family:system-ui,sans-serif;color:var(--muted)}
.track{display:block;position:relative;height:calc(var(--lanes,1) * var(--row) + 6px);
margin:0 14px 0 4px}
.attempt,.backoff,.span{position:absolute;top:calc(3px + var(--lane,0) * var(--row));
height:calc(var(--row) - 4px);min-width:2px;border-radius:3px}
.attempt{background:var(--ok);opacity:.9;font-size:10px;line-height:14px;color:#fff;
overflow:hidden;white-space:nowrap;text-decoration:none}
.attempt::after{content:attr(data-tag);padding-left:3px}
.attempt[data-status=failed]{background:var(--bad)}
.attempt[data-status=waiting]{background:repeating-linear-gradient(45deg,var(--wait-bg),
var(--wait-bg) 4px,#f0d67a 4px,#f0d67a 8px);border:1px dashed var(--wait)}
.compensation{position:absolute;top:3px;height:calc(var(--row) - 4px);min-width:2px;
border-radius:3px;background:var(--undo)}
.compensation[data-status=failed]{background:var(--bad)}
.row[data-kind=wait] .attempt,.row[data-kind=sleep] .attempt{background:var(--wait)}
.row[data-kind=call] .attempt{background:#8250df}
.row[data-kind=call] .attempt[data-status=failed],.row[data-kind=wait] .attempt[data-status=failed]
{background:var(--bad)}
.backoff{border-bottom:2px dotted var(--bad);height:calc(var(--row) / 2);border-radius:0}
.span{background:var(--ok-bg);border:1px solid var(--ok)}
.span[data-status=failed]{background:var(--bad-bg);border-color:var(--bad)}
details.group>summary{display:grid;grid-template-columns:minmax(8rem,15rem) 1fr;
cursor:pointer;list-style:none;background:#f6f8fa;border-top:1px solid var(--line)}
details.group>summary::-webkit-details-marker{display:none}
details.group>summary>.name::before{content:"\\25b8  "}
details.group[open]>summary>.name::before{content:"\\25be  "}
details.group>.row>.name{padding-left:22px}
.filter{margin:0 6px 8px 0}
#only-failed:checked~.rows>.row:not([data-failed]),
#only-failed:checked~.rows>details.group:not([data-failed]),
#only-failed:checked~.rows details.group>.row:not([data-failed]){display:none}
.empty{padding:8px 12px;color:var(--muted)}
""".strip()
"""The page's style sheet (inline in every page; a dashboard embedding the page's parts
uses it too)."""
