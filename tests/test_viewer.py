"""The run viewer: the page of a run made from a store alone, and the graphs stores keep for it.

The page is parsed with `html.parser` (what a browser builds from it, minus
layout): its attempts, statuses and errors are read off the elements and
attributes the viewer documents (``#graph``, ``#timeline``,
``.attempt[data-status]``...), never off the raw text, so escaping is tested
as a browser would see it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from polling import until
from stores import StoreKit

from flowdsl import (
    Graph,
    Ok,
    Retry,
    Run,
    SQLiteStore,
    Store,
    Worker,
    astart_workflow,
    call_workflow,
    foreach,
    goto,
    ok,
    parallel,
    run_workflow,
    sleep_for,
    start_workflow,
    step,
    wait_for_event,
    workflow,
)
from flowdsl.errors import InvalidArgument, RunNotFound
from flowdsl.stores._codec import dumps, encode
from flowdsl.stores._journal import run_header
from flowdsl.stores._protocol import Attempt
from flowdsl.stores._rows import keep_graph
from flowdsl.testing import strategies as fst
from flowdsl.views import graph_from_shape, recorded_graph, render_run, run_page
from flowdsl.views._timeline import split_index

pytestmark = pytest.mark.usefixtures("flowdsl_registry")

ROOT = Path(__file__).resolve().parents[1]
INJECTED = "<script>alert('x')</script>"


# -- reading a page back --------------------------------------------------------------------


@attrs.define
class Element:
    tag: str
    attrs: dict[str, str]
    parents: tuple[str, ...]
    """The ids and classes of the elements around it, innermost last (``#graph``, ``.row``)."""
    text: list[str] = attrs.field(factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def inside(self, marker: str) -> bool:
        return marker in self.parents

    def joined(self) -> str:
        return "".join(self.text)


_VOID = {"meta", "input", "br", "img", "link", "hr"}
_SVG_EMPTY = {"rect", "polygon", "path"}


class Page(HTMLParser):
    """Every element of a page, with its attributes, what holds it, and its text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.stack: list[Element] = []
        self.styles: list[str] = []
        self.feed(text)
        self.close()

    def markers(self) -> tuple[str, ...]:
        found: list[str] = []
        for element in self.stack:
            if "id" in element.attrs:
                found.append("#" + element.attrs["id"])
            found.extend("." + c for c in element.classes)
        return tuple(found)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs}, self.markers())
        self.elements.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}, self.markers()))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index].tag == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text.append(data)
        if self.stack and self.stack[-1].tag == "style":
            self.styles.append(data)

    def select(
        self, tag: str | None = None, cls: str | None = None, **attrs_: str
    ) -> list[Element]:
        return [
            e
            for e in self.elements
            if (tag is None or e.tag == tag)
            and (cls is None or cls in e.classes)
            and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs_.items())
        ]

    def by_id(self, element_id: str) -> Element:
        found = [e for e in self.elements if e.attrs.get("id") == element_id]
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]

    def nodes(self) -> dict[str, str]:
        """Graph node id -> its status."""
        return {e.attrs["data-node"]: e.attrs["data-status"] for e in self.select("g", "node")}

    def bars(self) -> Counter[tuple[str, int, int, str]]:
        """Every attempt bar of the timeline: (step, attempt, visit, status)."""
        return Counter(
            (
                e.attrs["data-step"],
                int(e.attrs["data-attempt"]),
                int(e.attrs["data-visit"]),
                e.attrs["data-status"],
            )
            for e in self.select(cls="attempt")
            if e.inside("#timeline")
        )


def recorded(run: Run) -> Counter[tuple[str, int, int, str]]:
    return Counter((s.name, s.attempt, s.visit, s.status) for s in run.steps)


def assert_loads_nothing(text: str) -> None:
    """No element, attribute or style of the page reaches outside it (no network at all)."""
    page = Page(text)
    fetching = {"script", "link", "iframe", "img", "object", "embed", "audio", "video", "source"}
    assert set() == {e.tag for e in page.elements} & fetching
    for element in page.elements:
        for name, value in element.attrs.items():
            assert not name.startswith("on"), f"an event handler: <{element.tag} {name}>"
            if name in ("src", "href", "xlink:href", "action", "formaction", "poster", "srcset"):
                assert "//" not in value, f"<{element.tag} {name}={value!r}>"
                assert ":" not in value.split("#")[0], f"<{element.tag} {name}={value!r}>"
            if name == "style" or element.tag == "style":
                assert "@import" not in value
                assert value.count("url(") == value.count("url(#")
    for style in page.styles:
        assert "@import" not in style
        assert "url(" not in style, "no url() in the style sheet"
        assert "http" not in style
    csp = page.select("meta", http_equiv="Content-Security-Policy")
    assert 1 == len(csp)
    assert csp[0].attrs["content"].startswith("default-src 'none'")


# -- the workflow every part of the page shows ------------------------------------------------


def kitchen_sink() -> Any:
    """Parallel branches, a retry, a goto loop, a foreach, a wait, a child run, a
    compensation, and a failure with a traceback; a step after it never runs."""

    @workflow(name="viewer_child")
    def child() -> None:
        @step
        async def inner(ctx: Any) -> Any:
            return ok({"inner": True})

    def undo_reserve(ctx: Any) -> None:
        return None

    @workflow(name="viewer_sink")
    def sink() -> None:
        @step(compensate=undo_reserve)
        async def reserve(ctx: Any) -> Any:
            return ok({"reserved": True})

        with parallel():

            @step
            async def fetch_a(ctx: Any) -> Any:
                return ok({"a": 1})

            @step
            async def fetch_b(ctx: Any) -> Any:
                return ok({"b": 2})

        @step(retry=Retry(max_attempts=3, backoff="constant", base=0.01))
        async def flaky(ctx: Any) -> Any:
            if ctx.attempt < 3:
                raise ConnectionError(INJECTED)
            return ok({"flaky": ctx.attempt})

        @step(routes=("loop",))
        async def loop(ctx: Any) -> Any:
            n = ctx.get("n", 0) + 1
            return goto("loop", {"n": n}) if n < 3 else ok({"n": n})

        with foreach("items"):

            @step
            async def load(ctx: Any) -> Any:
                return ok({"loaded": ctx.item})

        sleep_for(0.001, name="pause")
        call_workflow("viewer_child", name="sub")

        @step
        async def explode(ctx: Any) -> Any:
            raise ValueError("boom <b>bold</b> & more")

        @step
        async def never(ctx: Any) -> Any:
            return ok({"never": True})

    return sink


@pytest.fixture
def sink_page(store: Store) -> tuple[Run, str]:
    sink = kitchen_sink()
    run = run_workflow(sink, {"items": [10, 11, 12]}, store=store, run_id="sink-1")
    assert "failed" == run.status
    stored = store.get_run("sink-1")
    assert stored is not None
    return stored, run_page(store, "sink-1")


def test_the_page_shows_every_attempt_of_the_run(sink_page: tuple[Run, str]) -> None:
    """One bar per attempt, with its step, attempt, visit and status: retries, goto
    visits, foreach items, the wait and the child run's call included."""
    run, text = sink_page
    page = Page(text)
    assert recorded(run) == page.bars()
    names = {name for name, *_ in page.bars()}
    assert {"fetch_a", "fetch_b", "pause", "sub", "load[0]", "load[1]", "load[2]"} <= names
    assert [1, 2, 3] == sorted(a for (n, a, _, _) in page.bars() if n == "flaky")
    assert [1, 2, 3] == sorted(v for (n, _, v, _) in page.bars() if n == "loop")
    assert 3 == len([e for e in page.select(cls="attempt") if e.attrs["data-step"] == "flaky"])


def test_the_timeline_draws_retries_items_waits_and_compensations(
    sink_page: tuple[Run, str],
) -> None:
    """Backoff gaps between retries; a group of item rows; a wait row; the compensation."""
    run, text = sink_page
    page = Page(text)
    backoffs = [e for e in page.select(cls="backoff") if "flaky" in e.attrs["title"]]
    assert 2 == len(backoffs), "a gap before attempts 2 and 3"
    groups = page.select("details", "group", data_kind="foreach")
    assert 1 == len(groups)
    items = [e.joined() for e in page.select("div", "row") if e.inside(".group")]
    assert ["[0]", "[1]", "[2]"] == items
    assert "open" in groups[0].attrs, "a small group starts open"
    waits = page.select("div", "row", data_kind="sleep")
    assert ["pause"] == [Element.joined(e).strip() for e in waits]
    undo = page.select("div", "row", data_kind="compensation")
    assert ["undo reserve"] == [e.joined() for e in undo]
    assert ["succeeded"] == [e.attrs["data-status"] for e in page.select(cls="compensation")]
    calls = page.select("div", "row", data_kind="call")
    assert 1 == len(calls)
    assert [run.run_id + "/sub#1"] == [
        e.attrs["title"].split("child run ")[1]
        for e in page.select(cls="attempt")
        if e.attrs["data-step"] == "sub"
    ]


def test_the_graph_colours_each_node_by_what_the_run_did(sink_page: tuple[Run, str]) -> None:
    """Compensated, succeeded, failed, not run; the structure's nodes as reached."""
    _, text = sink_page
    nodes = Page(text).nodes()
    assert "compensated" == nodes["step:reserve"]
    assert "succeeded" == nodes["undo:reserve"]
    for name in ("fetch_a", "fetch_b", "flaky", "loop", "load"):
        assert "succeeded" == nodes[f"step:{name}"], name
    assert "succeeded" == nodes["sleep:pause"]
    assert "succeeded" == nodes["call:sub"]
    assert "failed" == nodes["step:explode"]
    assert "not-run" == nodes["step:never"]
    assert "succeeded" == nodes["start"]
    assert "failed" == nodes["end"]
    assert {"succeeded"} == {s for n, s in nodes.items() if n.startswith(("fork:", "join:"))}


def test_the_header_names_the_run_and_its_failure(sink_page: tuple[Run, str], store: Store) -> None:
    """Workflow, run id, status, failed step, the error with its traceback, the child run."""
    _run, text = sink_page
    page = Page(text)
    header = page.by_id("run-header")
    assert "failed" == header.attrs["data-status"]
    assert "sink-1" == page.by_id("run-id").joined()
    assert "explode" == page.by_id("failed-step").joined()
    assert page.select("span", "workflow")[0].joined() == "viewer_sink"
    error = page.by_id("run-error")
    assert "ValueError: boom <b>bold</b> & more" in error.joined()
    trace = [e.joined() for e in page.select("pre", "traceback") if e.inside("#run-error")]
    assert 1 == len(trace)
    assert "Traceback (most recent call last)" in trace[0]
    assert 'raise ValueError("boom <b>bold</b> & more")' in trace[0]
    children = page.by_id("children").joined()
    assert "sink-1/sub#1" in children
    assert "completed" in children


def test_every_failure_is_listed_with_its_traceback(sink_page: tuple[Run, str]) -> None:
    """Each failed attempt: an entry its bar links to, the escaped error and traceback."""
    run, text = sink_page
    page = Page(text)
    entries = page.select("details", "error")
    listed = [e for e in entries if e.inside("#errors")]
    failed = [s for s in run.steps if s.status == "failed"]
    assert len(failed) == len(listed) == 3
    links = [e.attrs["href"] for e in page.select("a", "attempt")]
    assert [f"#{e.attrs['id']}" for e in listed] == links
    flaky = [e for e in listed if "flaky" in e.joined()]
    assert 2 == len(flaky)
    for entry in flaky:
        assert f"ConnectionError: {INJECTED}" in entry.joined()
        assert "raise ConnectionError(INJECTED)" in entry.joined()
    assert INJECTED not in text, "the error text is escaped"
    assert "&lt;script&gt;" in text


def test_the_page_loads_nothing(sink_page: tuple[Run, str]) -> None:
    """No script, no link, no remote src or href, no @import or url(): it opens offline."""
    _, text = sink_page
    assert_loads_nothing(text)
    assert "http://" not in text
    assert "https://" not in text


def test_the_element_ids_and_classes_are_there(sink_page: tuple[Run, str]) -> None:
    """What the dashboard and browser checks rely on."""
    _, text = sink_page
    page = Page(text)
    for element_id in ("run-header", "graph", "timeline", "errors", "only-failed", "run-id"):
        page.by_id(element_id)
    assert page.select("svg", "graph")
    assert page.select(cls="legend")
    assert page.select(cls="axis")
    assert page.select(cls="rows")
    assert all("data-status" in e.attrs for e in page.select(cls="attempt"))


# -- escaping -------------------------------------------------------------------------------------


def test_names_errors_and_ids_cannot_inject_markup(store: Store) -> None:
    """A workflow, step, run id and error made of markup are text on the page, nothing else."""
    evil = '"><img src=x onerror=alert(1)><script>alert(2)</script>'

    @workflow(name=f"wf{evil}")
    def evil_wf() -> None:
        @step(name=f"s{evil}")
        async def first(ctx: Any) -> Any:
            raise RuntimeError(evil)

    run_id = f"id{evil}"
    run = run_workflow(evil_wf, {}, store=store, run_id=run_id)
    assert "failed" == run.status
    text = run_page(store, run_id)
    page = Page(text)
    allowed = {
        "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "span", "dl",
        "dt", "dd", "code", "details", "summary", "pre", "p", "section", "ul", "li", "div",
        "svg", "defs", "marker", "path", "g", "rect", "text", "a", "input", "label", "small",
        "polygon",
    }  # fmt: skip
    assert set() == {e.tag for e in page.elements} - allowed
    assert_loads_nothing(text)
    assert evil not in text
    assert f"wf{evil}" == page.select("span", "workflow")[0].joined()
    assert run_id == page.by_id("run-id").joined()
    assert {f"s{evil}"} == {e.attrs["data-step"] for e in page.select(cls="attempt")}
    assert f"RuntimeError: {evil}" in page.by_id("run-error").joined()


# -- graphs kept by the stores ---------------------------------------------------------------------


def two_workflows() -> tuple[Any, Any]:
    @workflow(name="kept_one")
    def one() -> None:
        @step
        async def a(ctx: Any) -> Any:
            return ok({"a": 1})

    @workflow(name="kept_two")
    def two() -> None:
        with parallel():

            @step
            async def b(ctx: Any) -> Any:
                return ok({"b": 1})

            @step
            async def c(ctx: Any) -> Any:
                return ok({"c": 1})

    return one, two


def test_a_graph_is_kept_once_per_definition(store_kit: StoreKit) -> None:
    """Many runs, started or queued, from several store objects: one row per fingerprint,
    the graph the workflow draws."""
    one, two = two_workflows()
    store = store_kit.open()
    for n in range(3):
        run_workflow(one, {}, store=store, run_id=f"one-{n}")
    start_workflow(one, {}, store=store, run_id="one-queued")
    other = store_kit.open()
    run_workflow(one, {}, store=other, run_id="one-other")
    start_workflow(two, {}, store=other, run_id="two-queued")
    assert sorted([(one.plan.fingerprint, "kept_one"), (two.plan.fingerprint, "kept_two")]) == (
        store_kit.graph_rows()
    )
    for run_id, wf in (("one-2", one), ("two-queued", two), ("one-queued", one)):
        definition = store.get_definition(run_id)
        assert definition is not None
        assert (wf.name, wf.plan.fingerprint, wf.plan.shape) == (
            definition.workflow,
            definition.fingerprint,
            definition.shape,
        )
        assert definition.graph is not None
        assert json.loads(wf.graph().to_json()) == json.loads(definition.graph)
    assert store.get_definition("nope") is None


def test_a_store_writes_a_definitions_graph_only_for_its_first_run(store_kit: StoreKit) -> None:
    """Once a store object committed a fingerprint's graph, later run starts write nothing:
    a row deleted behind its back stays deleted; a new store object writes it again."""
    one, _ = two_workflows()
    store = store_kit.open()
    run_workflow(one, {}, store=store, run_id="first")
    store_kit.delete_graphs()
    run_workflow(one, {}, store=store, run_id="second")
    start_workflow(one, {}, store=store, run_id="queued")
    assert [] == store_kit.graph_rows()
    fresh = store_kit.open()
    run_workflow(one, {}, store=fresh, run_id="third")
    assert [(one.plan.fingerprint, "kept_one")] == store_kit.graph_rows()


def test_keep_graph_is_nothing_for_a_kept_fingerprint_or_a_header_without_a_graph() -> None:
    """The rule both stores follow: the statement only for a graph not yet kept."""
    one, _ = two_workflows()
    header = run_header(one.plan, {}, "r")
    assert header.graph is not None
    statement = keep_graph(header, set(), "?")
    assert statement is not None
    assert (one.plan.fingerprint, "kept_one", header.graph) == statement[1]
    assert keep_graph(header, {one.plan.fingerprint}, "?") is None
    assert keep_graph(attrs.evolve(header, graph=None), set(), "?") is None


def test_a_run_header_draws_its_plans_graph_once() -> None:
    """The graph is drawn when the plan's first run starts, then reused."""
    one, _ = two_workflows()
    first = run_header(one.plan, {}, "a")
    second = run_header(one.plan, {}, "b")
    assert first.graph is second.graph


# -- the migration ---------------------------------------------------------------------------


def test_a_store_from_before_graphs_is_migrated_and_its_old_runs_still_have_a_page(
    store_kit: StoreKit,
) -> None:
    """The table is added; old runs have no graph (their page draws one from the shape)
    until a run of the same definition starts and keeps it."""
    one, two = two_workflows()
    store = store_kit.open()
    run_workflow(one, {}, store=store, run_id="old-one")
    run_workflow(two, {}, store=store, run_id="old-two")
    before = store.list_runs()
    store.close()
    store_kit.before_graphs()
    assert 5 == store_kit.schema_version(), "the schema before graphs"

    migrated = store_kit.open()
    assert store_kit.release_schema == store_kit.schema_version()
    assert before == migrated.list_runs()
    assert [] == store_kit.graph_rows()
    definition = migrated.get_definition("old-two")
    assert definition is not None
    assert (None, two.plan.shape) == (definition.graph, definition.shape)
    page = Page(run_page(migrated, "old-two"))
    assert "rebuilt from the definition's shape" in page.by_id("graph-note").joined()
    assert {"step:b": "succeeded", "step:c": "succeeded"}.items() <= page.nodes().items()
    run_workflow(two, {}, store=migrated, run_id="new-two")
    assert [(two.plan.fingerprint, "kept_two")] == store_kit.graph_rows()
    kept = migrated.get_definition("old-two")
    assert kept is not None
    assert kept.graph is not None, "the same definition's graph"
    assert not Page(run_page(migrated, "old-two")).select(id="graph-note")


# -- the fallback graph ----------------------------------------------------------------------------


def structure(graph: Graph) -> tuple[Counter[tuple[str, str]], Counter[str], int]:
    """What a shape can tell of a graph: the named nodes, the blocks' kinds, the next edges."""
    named = Counter(
        (node.kind, str(node.info.get("step", node.info.get("wait", node.info.get("call")))))
        for node in graph.nodes
        if node.kind in ("step", "wait", "sleep", "call")
    )
    blocks = Counter(block.kind for block in graph.blocks)
    nexts = sum(1 for edge in graph.edges if edge.kind == "next")
    return named, blocks, nexts


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fst.workflows(max_steps=8))
def test_the_graph_from_a_shape_has_the_plans_structure(case: Any) -> None:
    """Every generated workflow: the same steps, waits, calls, blocks and next edges,
    and reducers, as the graph drawn from its plan (routes and compensations aside)."""
    plan = case.workflow.plan
    drawn = Graph.from_plan(plan)
    rebuilt = graph_from_shape(plan.name, plan.shape)
    assert structure(drawn) == structure(rebuilt)
    assert Counter(n.kind for n in drawn.nodes if n.kind != "compensation") == Counter(
        n.kind for n in rebuilt.nodes
    )


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fst.workflows(max_steps=8))
def test_every_generated_run_has_a_page_with_every_attempt(case: Any) -> None:
    """Any workflow, any outcome: every attempt is a bar, every node has a status, the
    page loads nothing."""
    run = case.run()
    text = render_run(run, case.workflow.graph())
    page = Page(text)
    assert recorded(run) == page.bars()
    nodes = page.nodes()
    assert {n.id for n in case.workflow.graph().nodes} == set(nodes)
    assert set(nodes.values()) <= {
        "succeeded", "failed", "running", "waiting", "not-run", "cancelled", "compensated",
    }  # fmt: skip
    if run.status == "completed":
        assert "succeeded" == nodes["end"]
        assert "failed" not in nodes.values() or run.steps
    assert_loads_nothing(text)


def test_a_graph_read_back_is_the_graph_written() -> None:
    """Graph.from_json(g.to_json()) draws the same graph; anything else is refused, saying so."""
    sink = kitchen_sink()
    graph = sink.graph()
    assert json.loads(graph.to_json()) == json.loads(Graph.from_json(graph.to_json()).to_json())
    for bad, why in (
        ("{", "not JSON"),
        ("[]", "a list"),
        ('{"format": "other"}', "its format is 'other'"),
        (json.dumps({**graph.to_dict(), "edges": [{"source": "x", "target": "end"}]}), "'x'"),
        (json.dumps({**graph.to_dict(), "nodes": [{"id": "a"}]}), "lacks its 'kind'"),
    ):
        with pytest.raises(InvalidArgument, match="not a flowdsl graph") as raised:
            Graph.from_json(bad)
        assert why in str(raised.value)


def test_a_page_without_a_usable_graph_says_so() -> None:
    """A shape this release cannot read: no graph, a note; the timeline is still there."""
    run = run_workflow(two_workflows()[0], {})
    graph, note = recorded_graph(None, "kept_one", ("step a -> a", "teleport x"))
    assert graph is None
    assert note is not None
    assert "'teleport x'" in note
    page = Page(render_run(run, graph, graph_note=note))
    assert not page.select("svg")
    assert "no graph is shown" in page.by_id("graph-note").joined()
    assert recorded(run) == page.bars()
    broken, note = recorded_graph('{"format": 1}', "kept_one", ("step a -> a",))
    assert broken is not None
    assert note is not None
    assert "cannot be read" in note
    assert "rebuilt" in note


def test_a_run_in_memory_has_a_page_with_its_exceptions_tracebacks() -> None:
    """render_run needs no store: a live exception's traceback is formatted."""

    @workflow(name="in_memory")
    def in_memory() -> None:
        @step
        async def bad(ctx: Any) -> Any:
            raise KeyError("lost")

    run = run_workflow(in_memory, {})
    page = Page(render_run(run, in_memory.graph()))
    trace = page.select("pre", "traceback")[0].joined()
    assert 'raise KeyError("lost")' in trace
    assert "failed" == page.nodes()["step:bad"]


# -- unfinished runs -----------------------------------------------------------------------------


def test_a_running_run_shows_where_it_stands(store: Store) -> None:
    """Journaled attempts so far; the next node (both branches) is running, the rest not run."""

    @workflow(name="halfway")
    def halfway() -> None:
        @step
        async def first(ctx: Any) -> Any:
            return ok({})

        with parallel():

            @step
            async def left(ctx: Any) -> Any:
                return ok({})

            @step
            async def right(ctx: Any) -> Any:
                return ok({})

        @step
        async def last(ctx: Any) -> Any:
            return ok({})

    async def main() -> None:
        opened = await store.open_run(run_header(halfway.plan, {}, "half-1"))
        assert opened.claim is not None
        outcome = dumps(encode(Ok({})))
        entry = Attempt("first", 1, 1, True, True, outcome, opened.started, 0.01)
        await store.append(opened.claim, entry)
        text = run_page(store, "half-1")
        store.release(opened.claim)
        page = Page(text)
        nodes = page.nodes()
        assert "running" == page.by_id("run-header").attrs["data-status"]
        assert "succeeded" == nodes["step:first"]
        assert "succeeded" == nodes["fork:parallel#1"]
        assert ("running", "running") == (nodes["step:left"], nodes["step:right"])
        assert ("not-run", "not-run", "not-run") == (
            nodes["join:parallel#1"],
            nodes["step:last"],
            nodes["end"],
        )

    asyncio.run(main())


def test_a_parked_run_shows_what_it_waits_for(store: Store) -> None:
    """Its wait node is waiting; the header says for what; an open waiting bar ends its row."""

    @workflow(name="parks")
    def parks() -> None:
        @step
        async def before(ctx: Any) -> Any:
            return ok({})

        wait_for_event("approved", name="approval")

    async def main() -> None:
        worker = Worker(store, concurrency=1, park_after=0, poll=0.02)
        serving = asyncio.create_task(worker.arun())
        await astart_workflow(parks, {}, store=store, run_id="parked-1")
        await until(lambda: store.get_run("parked-1").status == "waiting", "parked")  # type: ignore[union-attr]
        worker.stop()
        await serving

    asyncio.run(main())
    page = Page(run_page(store, "parked-1"))
    assert "waiting" == page.nodes()["wait:approval"]
    assert "succeeded" == page.nodes()["step:before"]
    assert "approved" in page.by_id("waiting").joined()
    open_bars = [e for e in page.select(cls="attempt") if e.attrs["data-status"] == "waiting"]
    assert ["approval"] == [e.attrs["data-step"] for e in open_bars]


def test_a_cancelled_run_marks_the_steps_it_was_in(store: Store) -> None:
    """Cancelled while a branch ran: that branch is cancelled, what follows not run."""
    entered = asyncio.Event()

    @workflow(name="cut")
    def cut() -> None:
        with parallel():

            @step
            async def quick(ctx: Any) -> Any:
                return ok({})

            @step
            async def slow(ctx: Any) -> Any:
                entered.set()
                await asyncio.Event().wait()

        @step
        async def after(ctx: Any) -> Any:
            return ok({})

    async def main() -> None:
        from flowdsl import arun_workflow

        task = asyncio.create_task(arun_workflow(cut, {}, store=store, run_id="cut-1"))
        await entered.wait()
        await until(lambda: any(s.name == "quick" for s in store.get_run("cut-1").steps), "quick")  # type: ignore[union-attr]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(main())
    assert "cancelled" == store.get_run("cut-1").status  # type: ignore[union-attr]
    nodes = Page(run_page(store, "cut-1")).nodes()
    assert ("succeeded", "cancelled") == (nodes["step:quick"], nodes["step:slow"])
    assert ("not-run", "cancelled") == (nodes["step:after"], nodes["end"])


def test_a_queued_run_has_a_page_with_nothing_run_yet(store: Store) -> None:
    """Queued, no worker: every node not run, a timeline saying no attempt is recorded."""
    one, _ = two_workflows()
    start_workflow(one, {}, store=store, run_id="waiting-room")
    page = Page(run_page(store, "waiting-room"))
    assert "queued" == page.by_id("run-header").attrs["data-status"]
    assert {"not-run"} == set(page.nodes().values())
    assert not page.bars()
    assert "No attempt is recorded yet." in page.by_id("timeline").joined()


def test_split_index_reads_foreach_indices_off_a_name() -> None:
    """Trailing [n] suffixes only, nested ones in order; other brackets are the name's."""
    assert ("load", (3,)) == split_index("load[3]")
    assert ("load", (0, 12)) == split_index("load[0][12]")
    assert ("a[x]", ()) == split_index("a[x]")
    assert ("a[1]b", ()) == split_index("a[1]b")
    assert ("plain", ()) == split_index("plain")


# -- a thousand items -------------------------------------------------------------------------------


def test_a_thousand_items_fit_in_a_closed_group_of_sane_size(store: Store) -> None:
    """Every attempt is on the page, in one closed group of 1,000 rows; under 600 KB.

    complete_all: every item is attempted, however the failure of item 500 and the
    start of later items interleave (fail-fast would cancel a varying number of them).
    """

    @workflow(name="many")
    def many() -> None:
        with foreach("items", name="each", on_error="complete_all"):

            @step
            async def load(ctx: Any) -> Any:
                if ctx.index == 500:
                    raise ValueError("item 500")
                return ok({"v": ctx.item})

    run = run_workflow(many, {"items": list(range(1000))}, store=store, run_id="many-1")
    stored = store.get_run("many-1")
    assert stored is not None
    assert 1000 == len(stored.steps)
    assert "completed" == run.status  # complete_all without into: the failure is a result
    text = run_page(store, "many-1")
    assert len(text.encode()) < 600_000, len(text.encode())
    page = Page(text)
    assert recorded(stored) == page.bars()
    group = page.select("details", "group")
    assert 1 == len(group)
    assert "open" not in group[0].attrs
    assert "data-failed" in group[0].attrs
    assert 1000 == len([e for e in page.select("div", "row") if e.inside(".group")])
    assert "1000 items, 1000 attempts, 1 failed" in group[0].joined()


# -- the command line ------------------------------------------------------------------------------


def flowdsl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m flowdsl ARGS`` running this checkout's code (PYTHONPATH: its root)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FORCE_COLOR")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "flowdsl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_runs_view_writes_the_page_to_a_file_or_stdout(store_kit: StoreKit, tmp_path: Path) -> None:
    """-o FILE: the page, the same as run_page's, and a line on stderr; without -o, stdout."""
    store = store_kit.open()
    run_workflow(kitchen_sink(), {"items": [1]}, store=store, run_id="cli-1")
    expected = run_page(store, "cli-1")
    done = flowdsl(
        "runs", "view", "cli-1", "--store", store_kit.url, "-o", "run.html", cwd=tmp_path
    )
    assert 0 == done.returncode, done.stderr
    assert "" == done.stdout
    assert expected == (tmp_path / "run.html").read_text(encoding="utf-8")
    assert "run.html" in done.stderr
    done = flowdsl("runs", "view", "cli-1", "--store", store_kit.url, cwd=tmp_path)
    assert 0 == done.returncode, done.stderr
    assert expected == done.stdout


def test_runs_view_of_an_unknown_run_or_store_exits_2(tmp_path: Path) -> None:
    """A clean message, nothing on stdout, no file written."""
    with SQLiteStore(tmp_path / "runs.db") as store:
        run_workflow(two_workflows()[0], {}, store=store, run_id="there")
    for args, message in (
        (("nope", "--store", "runs.db", "-o", "out.html"), "no run 'nope' in 'runs.db'"),
        (("there", "--store", "missing.db", "-o", "out.html"), "the file does not exist"),
        (("there", "--store", "runs.db", "-o", "no/dir.html"), "cannot write the page"),
    ):
        done = flowdsl("runs", "view", *args, cwd=tmp_path)
        assert 2 == done.returncode, done.stderr
        assert "" == done.stdout
        assert message in done.stderr
        assert "Traceback" not in done.stderr
        assert not (tmp_path / "out.html").exists()
        assert not (tmp_path / "missing.db").exists(), "viewing never creates a store"


def test_run_page_of_an_unknown_run_is_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound, match="no run 'ghost'"):
        run_page(store, "ghost")
