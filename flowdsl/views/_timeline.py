"""A run's attempts on a time axis: rows of bars, as HTML and CSS (no script).

Every attempt of `Run.steps` is one bar, placed by its start and duration
(percentages of the run's span, so the page needs no layout code). Rows:

* a top-level step, wait or call has a row of its own: its retries and goto
  visits follow each other on it, a retry's backoff drawn as a gap;
* parallel branches are different steps, so different rows, side by side in
  time;
* a foreach block's items are grouped (``<details>``, closed when there are
  many): one row per item (``[3]``, nested ``[0][1]``) holding the bars of
  every body step of that item;
* bars that overlap on one row (parallel branches inside an item) take
  lanes of the row, one under the other;
* compensations come last: a run records how long each took, not when it
  started, so they are drawn one after the other from the end of the last
  attempt, in the order they ran;
* a parked run's waits end in an open "waiting" bar.

Element ids and classes (stable): ``#timeline`` holds ``.axis`` and
``.rows``; a ``.row`` (``id="row-N"``, ``data-kind``: step, wait, sleep,
call, item or compensation; ``data-failed`` when one of its bars failed) has
``.name`` and ``.track``; an ``.attempt`` bar (``data-status``: succeeded,
failed, or waiting for a parked run's open wait) carries ``data-step``,
``data-attempt``, ``data-visit`` and a ``title``; a failed one links to its
error (``href="#err-N"``); ``.backoff`` is a retry's wait; a
``.compensation`` bar (``data-status`` succeeded or failed) is one
compensation; a ``details.group`` (``data-kind="foreach"``) holds a foreach
block's item rows, its ``summary`` a ``.span`` over all of them.
"""

from __future__ import annotations

import datetime as _dt
import html
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import attrs

from .._engine._calls import child_run_id
from .._engine._run import Run, StepRecord
from ._graph import Graph

__all__ = ["Failure", "Timeline", "build_timeline", "duration_text", "error_text", "split_index"]

_INDEX: Final = re.compile(r"((?:\[\d+\])+)$")
_OPEN_GROUP: Final = 25
"""A foreach group with more item rows than this starts closed."""
_LANE_EPSILON: Final = 1e-9
_NAMED: Final = frozenset({"step", "wait", "sleep", "call"})
"""The kinds of graph node that attempts are recorded for, by name."""


def split_index(name: str) -> tuple[str, tuple[int, ...]]:
    """A step name and its foreach indices: ``load[0][3]`` -> ``("load", (0, 3))``."""
    found = _INDEX.search(name)
    if found is None:
        return name, ()
    indices = tuple(int(i) for i in found.group(1)[1:-1].split("]["))
    return name[: found.start()], indices


def duration_text(seconds: float) -> str:
    """``840 µs``, ``12.3 ms``, ``4.56 s``, ``3 min 05 s``, ``2 h 03 min``."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} \u00b5s"
    if seconds < 1:
        return f"{seconds * 1e3:.3g} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    hours, rest = divmod(round(seconds) // 60, 60)
    return f"{hours} h {rest:02d} min"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


@attrs.frozen
class Failure:
    """A failed attempt or compensation, listed with its error (``id``: its anchor)."""

    id: str
    where: str
    error: object


@attrs.define
class _Bar:
    step: str
    attempt: int
    visit: int
    status: str
    start: float
    """Seconds from the run's start."""
    duration: float
    title: str
    href: str | None = None
    """Where clicking the bar goes: a failure's entry (``#err-N``), a child run's page."""
    lane: int = 0
    cls: str = "attempt"
    """``attempt``, or ``compensation`` for a compensation's bar."""

    @property
    def end(self) -> float:
        return self.start + self.duration


@attrs.define
class _Row:
    id: str
    label: str
    kind: str
    bars: list[_Bar] = attrs.field(factory=list)
    names: list[str] = attrs.field(factory=list)
    lanes: int = 1

    @property
    def first(self) -> float:
        return min((b.start for b in self.bars), default=math.inf)

    @property
    def failed(self) -> bool:
        return any(b.status == "failed" for b in self.bars)


@attrs.define
class _Group:
    id: str
    label: str
    rows: dict[tuple[int, ...], _Row] = attrs.field(factory=dict)

    @property
    def first(self) -> float:
        return min((r.first for r in self.rows.values()), default=math.inf)


@attrs.frozen
class Timeline:
    """The laid-out timeline of one run: its HTML, its failures, each step's first row."""

    html: str
    failures: tuple[Failure, ...]
    rows: Mapping[str, str]
    """A step's name without indices -> the id of its first row (for the graph's links)."""
    attempts: int


def _kinds(graph: Graph | None) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """From the graph: each name's node kind, and the foreach block (id, label) holding it."""
    kinds: dict[str, str] = {}
    groups: dict[str, tuple[str, str]] = {}
    if graph is None:
        return kinds, groups
    blocks = {b.id: b for b in graph.blocks}
    for node in graph.nodes:
        name = node.info.get("step", node.info.get("wait", node.info.get("call")))
        if node.kind not in _NAMED or not isinstance(name, str):
            continue
        kinds[name] = node.kind
        outer = None
        at = node.block
        seen: set[str] = set()
        while at is not None and at in blocks and at not in seen:
            seen.add(at)
            if blocks[at].kind == "foreach":
                outer = blocks[at]
            at = blocks[at].parent
        if outer is not None:
            groups[name] = (outer.id, outer.name)
    return kinds, groups


def _lanes(row: _Row) -> None:
    """Give overlapping bars of a row lanes of their own (greedy, by start)."""
    ends: list[float] = []
    for bar in sorted(row.bars, key=lambda b: (b.start, b.end)):
        for lane, end in enumerate(ends):
            if end <= bar.start + _LANE_EPSILON:
                bar.lane = lane
                ends[lane] = bar.end
                break
        else:
            bar.lane = len(ends)
            ends.append(bar.end)
    row.lanes = max(1, len(ends))


def _tick_step(span: float) -> float:
    raw = span / 8
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 5.0):
        if factor * magnitude >= raw:
            return factor * magnitude
    return 10.0 * magnitude


def _iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).isoformat(sep=" ", timespec="milliseconds")


class _Builder:
    def __init__(
        self, run: Run, graph: Graph | None, link: Callable[[str], str] | None, max_errors: int
    ) -> None:
        self.run = run
        self.link = link
        self.max_errors = max_errors
        self.kinds, self.groups_of = _kinds(graph)
        self.rows: dict[str, _Row] = {}
        self.groups: dict[str, _Group] = {}
        self.failures: list[Failure] = []
        self.first_row: dict[str, str] = {}
        self.count = 0
        starts = [s.started for s in run.steps]
        self.t0 = min([run.started, *starts]) if run.started else min(starts, default=0.0)

    def row_id(self) -> str:
        self.count += 1
        return f"row-{self.count}"

    def failure(self, where: str, error: object) -> str | None:
        if len(self.failures) >= self.max_errors:
            self.failures.append(Failure("", where, error))
            return None
        anchor = f"err-{len(self.failures) + 1}"
        self.failures.append(Failure(anchor, where, error))
        return anchor

    def row_for(self, name: str) -> _Row:
        base, indices = split_index(name)
        kind = self.kinds.get(base, "step")
        if not indices:
            row = self.rows.get(name)
            if row is None:
                row = self.rows[name] = _Row(self.row_id(), name, kind)
                self.first_row.setdefault(base, row.id)
            if name not in row.names:
                row.names.append(name)
            return row
        group_id, label = self.groups_of.get(base, (f"foreach:{base}", base))
        group = self.groups.get(group_id)
        if group is None:
            group = self.groups[group_id] = _Group(f"group-{len(self.groups) + 1}", label)
        row = group.rows.get(indices)
        if row is None:
            label = "".join(f"[{i}]" for i in indices)
            row = group.rows[indices] = _Row(self.row_id(), label, "item")
        self.first_row.setdefault(base, row.id)
        if name not in row.names:
            row.names.append(name)
        return row

    def attempts(self, records: Sequence[StepRecord]) -> None:
        for record in sorted(records, key=lambda r: (r.started, r.name, r.visit, r.attempt)):
            row = self.row_for(record.name)
            start = record.started - self.t0
            kind = self.kinds.get(split_index(record.name)[0], "step")
            what = {"wait": "wait ", "sleep": "wait ", "call": "call "}.get(kind, "")
            visit = f" \u00b7 visit {record.visit}" if record.visit > 1 else ""
            title = (
                f"{what}{record.name}{visit} \u00b7 attempt {record.attempt} \u00b7 "
                f"{record.status}\n+{duration_text(start)}, took {duration_text(record.duration)}"
            )
            href = None
            if kind == "call":
                child = child_run_id(self.run.run_id, record.name, record.visit, record.attempt)
                title += f"\nchild run {child}"
                if self.link is not None:
                    href = self.link(child)
            if record.status != "succeeded":
                title += f"\n{_error_line(record.error)}"
                anchor = self.failure(
                    f"{record.name} \u00b7 visit {record.visit} \u00b7 attempt {record.attempt}",
                    record.error,
                )
                href = href if anchor is None else f"#{anchor}"
            row.bars.append(
                _Bar(
                    record.name,
                    record.attempt,
                    record.visit,
                    record.status,
                    start,
                    record.duration,
                    title,
                    href,
                )
            )

    def compensations(self) -> list[_Row]:
        at = max((b.end for r in self.all_rows() for b in r.bars), default=0.0)
        rows: list[_Row] = []
        for number, comp in enumerate(self.run.compensations, 1):
            row = _Row(self.row_id(), f"undo {comp.step}", "compensation")
            title = (
                f"compensation of {comp.step} \u00b7 {comp.status}\ntook "
                f"{duration_text(comp.duration)} (compensation #{number}; its start is not "
                f"recorded: drawn after the last attempt, in the order they ran)"
            )
            href = None
            if comp.status != "succeeded":
                title += f"\n{_error_line(comp.error)}"
                anchor = self.failure(f"compensation of {comp.step}", comp.error)
                href = None if anchor is None else f"#{anchor}"
            bar = _Bar(comp.step, 1, 1, comp.status, at, comp.duration, title, href)
            bar.cls = "compensation"
            row.bars.append(bar)
            row.names.append(comp.step)
            at += comp.duration
            rows.append(row)
        return rows

    def waiting(self, end: float) -> float:
        """Open bars for the waits a parked run is in; returns the axis' end."""
        waiting = self.run.waiting
        if waiting is None:
            return end
        open_end = end + max(end * 0.15, 0.001)
        what = []
        if waiting.events:
            what.append("events " + ", ".join(waiting.events))
        if waiting.until is not None:
            what.append(f"until {_iso(waiting.until)}")
        for name in waiting.waits:
            row = self.row_for(name)
            last = max((b.end for b in row.bars), default=end)
            title = f"wait {name} \u00b7 waiting" + (f" for {'; '.join(what)}" if what else "")
            row.bars.append(_Bar(name, 1, 0, "waiting", last, open_end - last, title))
        return open_end

    def all_rows(self) -> Iterable[_Row]:
        yield from self.rows.values()
        for group in self.groups.values():
            yield from group.rows.values()


def _error_line(error: object) -> str:
    text = error_text(error)
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= 300 else first[:299] + "\u2026"


def error_text(error: object) -> str:
    """How an attempt's error reads: ``ValueError: bad card`` (a recorded one, an exception)."""
    if error is None:
        return "failed (no reason recorded)"
    if isinstance(error, BaseException) and not hasattr(error, "traceback"):
        message = str(error)
        name = type(error).__qualname__
        return f"{name}: {message}" if message else name
    return str(error)


def _bar_html(bar: _Bar, span: float) -> str:
    left = bar.start / span * 100
    width = bar.duration / span * 100
    style = f"left:{left:.3f}%;width:{width:.3f}%"
    if bar.lane:
        style += f";--lane:{bar.lane}"
    tag = []
    if bar.visit > 1:
        tag.append(f"v{bar.visit}")
    if bar.attempt > 1:
        tag.append(f"a{bar.attempt}")
    tags = f' data-tag="{" ".join(tag)}"' if tag else ""
    element = "a" if bar.href else "span"
    href = f' href="{_e(bar.href)}"' if bar.href else ""
    return (
        f'<{element} class="{bar.cls}" data-status="{_e(bar.status)}" data-step="{_e(bar.step)}" '
        f'data-attempt="{bar.attempt}" data-visit="{bar.visit}"{tags}{href} '
        f'style="{style}" title="{_e(bar.title)}"></{element}>'
    )


def _gaps_html(row: _Row, span: float) -> str:
    """A retry's backoff: from one failed attempt's end to the next attempt's start."""
    parts: list[str] = []
    by_visit: dict[tuple[str, int], list[_Bar]] = {}
    for bar in row.bars:
        if bar.status != "waiting":
            by_visit.setdefault((bar.step, bar.visit), []).append(bar)
    for (step, _), bars in by_visit.items():
        bars.sort(key=lambda b: b.attempt)
        for before, after in itertools.pairwise(bars):
            gap = after.start - before.end
            if gap <= 0:
                continue
            style = f"left:{before.end / span * 100:.3f}%;width:{gap / span * 100:.3f}%"
            if after.lane:
                style += f";--lane:{after.lane}"
            title = f"{step}: waited {duration_text(gap)} before attempt {after.attempt} (backoff)"
            parts.append(f'<span class="backoff" style="{style}" title="{_e(title)}"></span>')
    return "".join(parts)


def _row_html(row: _Row, span: float, element: str = "div") -> str:
    _lanes(row)
    failed = " data-failed" if row.failed else ""
    lanes = f' style="--lanes:{row.lanes}"' if row.lanes > 1 else ""
    names = ", ".join(row.names)
    bars = _gaps_html(row, span) + "".join(_bar_html(bar, span) for bar in row.bars)
    return (
        f'<{element} class="row" id="{row.id}" data-kind="{_e(row.kind)}"{failed}>'
        f'<span class="name" title="{_e(names)}">{_e(row.label)}</span>'
        f'<span class="track"{lanes}>{bars}</span></{element}>'
    )


def _group_html(group: _Group, span: float) -> str:
    rows = [group.rows[key] for key in sorted(group.rows)]
    bars = [b for r in rows for b in r.bars if b.status != "waiting"]
    failed = sum(1 for b in bars if b.status == "failed")
    first = min((b.start for b in bars), default=0.0)
    last = max((b.end for b in bars), default=0.0)
    style = f"left:{first / span * 100:.3f}%;width:{(last - first) / span * 100:.3f}%"
    counts = f"{len(rows)} items, {len(bars)} attempts" + (f", {failed} failed" if failed else "")
    title = (
        f"foreach {group.label}: {counts}, from +{duration_text(first)} to +{duration_text(last)}"
    )
    status = "failed" if failed else "succeeded"
    opened = " open" if len(rows) <= _OPEN_GROUP else ""
    marked = " data-failed" if failed else ""
    summary = (
        f'<summary class="row" data-kind="foreach"><span class="name" title="{_e(title)}">'
        f'{_e(group.label)} <small>{_e(counts)}</small></span><span class="track">'
        f'<span class="span" data-status="{status}" style="{style}" title="{_e(title)}">'
        f"</span></span></summary>"
    )
    body = "".join(_row_html(row, span) for row in rows)
    return (
        f'<details class="group" id="{group.id}" data-kind="foreach"{marked}{opened}>'
        f"{summary}{body}</details>"
    )


def _axis_html(span: float) -> str:
    step = _tick_step(span)
    ticks: list[str] = []
    at = 0.0
    while at <= span * 1.0001:
        ticks.append(
            f'<span class="tick" style="left:{at / span * 100:.3f}%">+{_e(duration_text(at) if at else "0")}</span>'
        )
        at += step
    return (
        f'<div class="axis" aria-hidden="true"><span class="name">time from start</span>'
        f'<span class="track">{"".join(ticks)}</span></div>'
    )


def build_timeline(
    run: Run,
    graph: Graph | None,
    *,
    link: Callable[[str], str] | None = None,
    max_errors: int = 200,
) -> Timeline:
    """Lay out every attempt of `run` (and its compensations, its open waits) as rows of bars.

    At most `max_errors` failures get an entry of their own (with their
    traceback); the rest are counted.
    """
    builder = _Builder(run, graph, link, max_errors)
    builder.attempts(run.steps)
    comps = builder.compensations()
    end = max(
        [run.duration if run.status in ("completed", "failed", "cancelled") else 0.0]
        + [b.end for r in (*builder.all_rows(), *comps) for b in r.bars]
    )
    end = builder.waiting(end)
    span = max(end, 1e-6)
    entries: list[tuple[float, int, str]] = []
    for order, row in enumerate(builder.rows.values()):
        entries.append((row.first, order, _row_html(row, span)))
    for order, group in enumerate(builder.groups.values(), len(builder.rows)):
        entries.append((group.first, order, _group_html(group, span)))
    entries.sort(key=lambda e: (e[0], e[1]))
    body = "".join(text for _, _, text in entries) + "".join(_row_html(row, span) for row in comps)
    attempts = len(run.steps)
    if not entries and not comps:
        body = '<p class="empty">No attempt is recorded yet.</p>'
    filters = (
        '<input type="checkbox" id="only-failed" class="filter">'
        '<label for="only-failed">only rows with a failed attempt</label>'
    )
    page = (
        f'<section id="timeline" data-span="{span:.6f}"><h2>Timeline</h2>'
        f'<p class="note">{attempts} attempt{"" if attempts == 1 else "s"} over '
        f"{_e(duration_text(span))}; hover a bar for its details, click a failed one for its "
        f'error.</p>{filters}{_axis_html(span)}<div class="rows">{body}</div></section>'
    )
    return Timeline(page, tuple(builder.failures), dict(builder.first_row), attempts)
