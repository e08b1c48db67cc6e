"""Graph export: the static graph of a compiled plan, and its Mermaid, DOT and JSON forms."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any

import attrs
import pytest
from hypothesis import given, settings

from flowdsl import (
    END,
    Graph,
    GraphEdge,
    Retry,
    Workflow,
    call_workflow,
    foreach,
    goto,
    ok,
    parallel,
    sequence,
    step,
    to_dot,
    to_json,
    to_mermaid,
    workflow,
)
from flowdsl.testing import strategies as fst

pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


def undo_charge(ctx: Any) -> None:
    """A compensation."""


def best_quote(ctx: Any, results: Any) -> Any:
    return ok()


def shop() -> Workflow:
    """A workflow with every kind of node: sequence, nested blocks, reducer, routes, undo."""

    @workflow("shop")
    def shop_flow() -> None:
        @step(compensate=undo_charge)
        async def charge(ctx: Any) -> Any:
            return ok()

        with parallel(into=best_quote, name="quotes", max_concurrency=2):

            @step(retry=Retry(max_attempts=3, backoff="linear"), timeout=2)
            async def quote_a(ctx: Any) -> Any:
                return 1

            with sequence("quote_b"):

                @step(returns="raw_b")
                async def fetch_b(ctx: Any) -> Any:
                    return 2

                with parallel():

                    @step(blocking=True)
                    def parse_b(ctx: Any) -> Any:
                        return 3

                    @step
                    async def check_b(ctx: Any) -> Any:
                        return 4

        @step(routes=("charge", END))
        async def decide(ctx: Any) -> Any:
            return goto(END)

    return shop_flow


def summarise(ctx: Any, results: Any) -> Any:
    return ok()


def rows_of(ctx: Any) -> Any:
    return ctx.item


def imports() -> Workflow:
    """foreach (by key, with into=) holding a call; parallel and foreach nested either way."""

    @workflow("validate_rows")
    def validate_rows() -> None:
        step(lambda ctx: ok(), name="check_rows")

    @workflow("imports")
    def imports_flow() -> None:
        @step(routes=("archive",))
        async def list_files(ctx: Any) -> Any:
            return ok({"files": ["a.csv"]})

        with foreach("files", max_concurrency=8, on_error="complete_all", into=summarise):

            @step
            async def load(ctx: Any) -> Any:
                return ok({"rows": [[1]]})

            call_workflow(
                "validate_rows",
                input=lambda ctx: {"rows": ctx["rows"]},
                returns="report",
                queue="checks",
                retry=Retry(max_attempts=2, backoff="constant"),
            )
            with parallel(name="per_file"):
                step(lambda ctx: ok(), name="index")
                with foreach(rows_of, name="cells"):
                    step(lambda ctx: ok(), name="cell")

        with foreach("files", name="plain"):
            step(lambda ctx: ok(), name="touch")

        call_workflow(validate_rows, name="archive")

    return imports_flow


def edges_of(graph: Graph, kind: str = "next") -> set[tuple[str, str]]:
    return {(e.source, e.target) for e in graph.edges if e.kind == kind}


# -- the graph -------------------------------------------------------------------------------


def test_a_sequence_is_a_chain_from_start_to_end() -> None:
    """Top-level steps are linked in declaration order between start and end."""

    @workflow
    def chain() -> None:
        @step
        def a(ctx: Any) -> Any:
            return ok()

        @step
        def b(ctx: Any) -> Any:
            return ok()

        @step
        def c(ctx: Any) -> Any:
            return ok()

    graph = chain.graph()
    assert ["start", "step:a", "step:b", "step:c", "end"] == [n.id for n in graph.nodes]
    assert ["start", "step", "step", "step", "end"] == [n.kind for n in graph.nodes]
    assert [
        GraphEdge("start", "step:a"),
        GraphEdge("step:a", "step:b"),
        GraphEdge("step:b", "step:c"),
        GraphEdge("step:c", "end"),
    ] == list(graph.edges)
    assert () == graph.blocks


def test_a_parallel_block_forks_to_every_branch_and_joins_them() -> None:
    """fork -> each branch's first node; each branch's last node -> join; the block is a cluster."""
    graph = shop().graph()
    nxt = edges_of(graph)
    assert {
        ("step:charge", "fork:quotes"),
        ("fork:quotes", "step:quote_a"),
        ("fork:quotes", "step:fetch_b"),
        ("step:quote_a", "join:quotes"),
    } <= nxt
    inner = next(b for b in graph.blocks if b.kind == "parallel" and b.name != "quotes")
    inner_key = inner.id.removeprefix("parallel:")
    assert {
        ("step:fetch_b", f"fork:{inner_key}"),
        (f"fork:{inner_key}", "step:parse_b"),
        (f"fork:{inner_key}", "step:check_b"),
        ("step:parse_b", f"join:{inner_key}"),
        ("step:check_b", f"join:{inner_key}"),
        (f"join:{inner_key}", "join:quotes"),
    } <= nxt
    blocks = {b.id: b for b in graph.blocks}
    assert "parallel:quotes" == blocks["sequence:quote_b"].parent
    assert "sequence:quote_b" == inner.parent
    assert "parallel:quotes" == graph.node("step:quote_a").block
    assert "sequence:quote_b" == graph.node("step:fetch_b").block
    assert inner.id == graph.node("step:parse_b").block
    info = blocks["parallel:quotes"].info
    assert ("complete_all", 2, "best_quote") == (
        info["on_error"],
        info["max_concurrency"],
        info["into"],
    )
    assert ["quote_a", "quote_b"] == info["branches"]
    assert "fail_fast" == inner.info["on_error"]
    assert "parallel quotes (complete_all, max 2 at once)" == blocks["parallel:quotes"].label


def test_an_into_reducer_follows_the_join_and_leads_on() -> None:
    """With into=, join -> reducer -> the next step; without, join -> the next step."""
    graph = shop().graph()
    nxt = edges_of(graph)
    assert {("join:quotes", "into:quotes"), ("into:quotes", "step:decide")} <= nxt
    assert ("join:quotes", "step:decide") not in nxt
    reducer = graph.node("into:quotes")
    assert ("reducer", "into best_quote", "parallel:quotes") == (
        reducer.kind,
        reducer.label,
        reducer.block,
    )


def test_a_foreach_block_is_a_cluster_holding_its_body_once() -> None:
    """The body's nodes are in the foreach cluster, chained; the label names the items and policy."""
    graph = imports().graph()
    blocks = {b.id: b for b in graph.blocks}
    each = blocks["foreach:foreach#1"]
    assert ("foreach", "foreach#1", None) == (each.kind, each.name, each.parent)
    assert "foreach over files (complete_all, max 8 at once)" == each.label
    assert {
        "name": "foreach#1",
        "items": "files",
        "items_from": "key",
        "on_error": "complete_all",
        "max_concurrency": 8,
        "into": "summarise",
    } == dict(each.info)
    body = [n.id for n in graph.nodes if n.block == each.id]
    assert ["step:load", "call:validate_rows"] == body
    assert {
        ("step:list_files", "step:load"),
        ("step:load", "call:validate_rows"),
        ("call:validate_rows", "fork:per_file"),
    } <= edges_of(graph)
    plain = blocks["foreach:plain"]
    assert "foreach plain over files (fail_fast)" == plain.label
    assert ("fail_fast", None, None) == (
        plain.info["on_error"],
        plain.info["max_concurrency"],
        plain.info["into"],
    )


def test_a_foreach_reducer_follows_the_cluster_outside_it() -> None:
    """With into=, the body's last exit -> reducer (in the enclosing block) -> what follows."""
    graph = imports().graph()
    nxt = edges_of(graph)
    reducer = graph.node("into:foreach#1")
    assert ("reducer", "into summarise", None) == (reducer.kind, reducer.label, reducer.block)
    assert {"function": "summarise", "reduces": "foreach:foreach#1"} == dict(reducer.info)
    assert {("join:per_file", "into:foreach#1"), ("into:foreach#1", "step:touch")} <= nxt
    assert ("join:per_file", "step:touch") not in nxt
    assert ("step:touch", "call:archive") in nxt  # no into=: the body leads straight on
    assert "parallel:quotes" == shop().graph().node("into:quotes").info["reduces"]


def test_parallel_and_foreach_blocks_nest_either_way() -> None:
    """A foreach inside a parallel inside a foreach: parents, membership and edges line up."""
    graph = imports().graph()
    blocks = {b.id: b for b in graph.blocks}
    assert "foreach:foreach#1" == blocks["parallel:per_file"].parent
    cells = blocks["foreach:cells"]
    assert "parallel:per_file" == cells.parent
    assert "foreach cells over rows_of(ctx) (fail_fast)" == cells.label
    assert ("rows_of", "function") == (cells.info["items"], cells.info["items_from"])
    assert "foreach:cells" == graph.node("step:cell").block
    assert "parallel:per_file" == graph.node("step:index").block
    assert {
        ("fork:per_file", "step:index"),
        ("fork:per_file", "step:cell"),
        ("step:index", "join:per_file"),
        ("step:cell", "join:per_file"),
    } <= edges_of(graph)


def test_a_call_node_names_the_child_workflow() -> None:
    """call_workflow is a node of kind "call": id call:NAME; label and info name the child."""
    graph = imports().graph()
    call = graph.node("call:validate_rows")
    assert ("call", "foreach:foreach#1") == (call.kind, call.block)
    assert (
        "validate_rows\ncalls validate_rows, returns report, queue checks, retry 2x constant"
        == call.label
    )
    info = dict(call.info)
    retry = info.pop("retry")
    assert {
        "call": "validate_rows",
        "workflow": "validate_rows",
        "returns": "report",
        "queue": "checks",
    } == info
    assert 2 == retry["max_attempts"]  # type: ignore[index]
    archive = graph.node("call:archive")
    assert "archive\ncalls validate_rows" == archive.label
    assert ("validate_rows", "archive", None, None) == (
        archive.info["workflow"],
        archive.info["returns"],
        archive.info["queue"],
        archive.info["retry"],
    )
    assert re.fullmatch(r".*test_graph\.py:\d+", call.where or "")


def test_a_declared_route_to_a_top_level_call_is_drawn() -> None:
    """A top-level call is a goto target: the route edge goes to the call node."""
    graph = imports().graph()
    assert [GraphEdge("step:list_files", "call:archive", "route", "goto")] == [
        e for e in graph.edges if e.kind == "route"
    ]


def test_declared_routes_are_goto_edges_including_end() -> None:
    """@step(routes=...) draws a 'route' edge to each target; END goes to the end node."""
    graph = shop().graph()
    routes = [e for e in graph.edges if e.kind == "route"]
    assert [
        GraphEdge("step:decide", "step:charge", "route", "goto"),
        GraphEdge("step:decide", "end", "route", "goto"),
    ] == routes
    assert ["charge", "END"] == graph.node("step:decide").info["routes"]


def test_compensations_hang_off_the_step_they_undo() -> None:
    """compensate= adds an undo node linked from its step by a 'compensate' edge."""
    graph = shop().graph()
    undo = graph.node("undo:charge")
    assert ("compensation", "undo charge\nundo_charge") == (undo.kind, undo.label)
    assert "undo_charge" == undo.info["function"]
    assert [GraphEdge("step:charge", "undo:charge", "compensate", "on failure")] == [
        e for e in graph.edges if e.kind == "compensate"
    ]


def test_step_labels_and_info_show_their_options() -> None:
    """Retry, timeout, returns= and where a step runs appear in its label and info."""
    graph = shop().graph()
    assert "quote_a\nretry 3x linear, timeout 2s" == graph.node("step:quote_a").label
    assert "fetch_b\nreturns raw_b" == graph.node("step:fetch_b").label
    assert "parse_b\nthread" == graph.node("step:parse_b").label
    info = graph.node("step:quote_a").info
    assert 3 == info["retry"]["max_attempts"]  # type: ignore[index]
    assert ["Exception"] == info["retry"]["retry_on"]  # type: ignore[index]
    assert (2.0, "quote_a", "quote_a") == (info["timeout"], info["step"], info["key"])
    where = graph.node("step:charge").where
    assert where is not None
    assert re.fullmatch(r".*test_graph\.py:\d+", where)


def test_building_the_graph_runs_nothing() -> None:
    """No step, reducer or compensation is called to draw a workflow."""
    calls: list[str] = []

    def spy(name: str) -> Any:
        def fn(*args: Any) -> Any:
            calls.append(name)
            return ok()

        return fn

    @workflow
    def quiet() -> None:
        step(spy("a"), name="a", compensate=spy("undo"))
        with parallel(into=spy("into")):
            step(spy("b"), name="b")
            step(spy("c"), name="c")

    for render in (to_mermaid, to_dot, to_json):
        render(quiet)
    assert [] == calls


def test_drawing_foreach_and_calls_runs_nothing() -> None:
    """Neither items(ctx), a call's input(ctx), the reducer nor the child workflow is called."""
    calls: list[str] = []

    def spy(name: str) -> Any:
        def fn(*args: Any) -> Any:
            calls.append(name)
            return ok()

        return fn

    @workflow("quiet_child")
    def child() -> None:
        step(spy("child"), name="inside")

    @workflow
    def quiet() -> None:
        with foreach(spy("items"), into=spy("into")):
            call_workflow("quiet_child", input=spy("input"))

    for render in (to_mermaid, to_dot, to_json):
        render(quiet)
    assert [] == calls


def test_graph_is_frozen_and_the_entry_points_agree() -> None:
    """Graph is read-only; a Workflow, its Plan or its name give the same graph."""
    wf = shop()
    graph = Graph.from_plan(wf.plan)
    assert graph == wf.graph()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        graph.workflow = "other"  # type: ignore[misc]
    assert to_mermaid(wf) == to_mermaid("shop") == to_mermaid(wf.plan) == graph.to_mermaid()
    assert to_dot(wf) == to_dot(graph) == graph.to_dot()
    assert to_json(wf) == to_json("shop") == graph.to_json()


def test_node_lookup_names_the_workflow_when_missing() -> None:
    """graph.node(id) finds a node; an unknown id raises KeyError naming the workflow."""
    graph = shop().graph()
    assert "step" == graph.node("step:decide").kind
    with pytest.raises(KeyError, match="no node 'step:nope' in the graph of workflow 'shop'"):
        graph.node("step:nope")


def test_ids_stay_unique_when_blocks_share_a_line() -> None:
    """Unnamed blocks made in a loop (one source line) still get distinct node ids."""

    @workflow
    def looped() -> None:
        for index in range(2):
            with parallel():
                step(lambda ctx: 1, name=f"a{index}")
                step(lambda ctx: 2, name=f"b{index}")

    graph = looped.graph()
    ids = [n.id for n in graph.nodes]
    assert len(set(ids)) == len(ids)
    forks = [n.id for n in graph.nodes if n.kind == "fork"]
    assert ["fork:parallel#1", "fork:parallel#2"] == forks  # named by kind and order
    assert [] == mermaid_problems(graph.to_mermaid())


# -- Mermaid ---------------------------------------------------------------------------------

_MERMAID_NODE = re.compile(
    r'^(n\d+)(?:\(\["(?P<a>[^"]*)"\]\)|\["(?P<b>[^"]*)"\]|\{\{"(?P<c>[^"]*)"\}\}'
    r'|\[/"(?P<d>[^"]*)"/\]|\[\["(?P<e>[^"]*)"\]\]|\("(?P<f>[^"]*)"\))$'
)
_MERMAID_EDGE = re.compile(r'^(n\d+) (-->|-\.->)(?:\|"[^"|]*"\|)? (n\d+)$')
_MERMAID_SUBGRAPH = re.compile(r'^subgraph (b\d+) \["[^"]*"\]$')
_MERMAID_CLASS = re.compile(
    r"^(classDef \w+ [\w:#,. -]+|class (n\d+,)*n\d+ \w+|style b\d+ [\w:#,. -]+)$"
)


def mermaid_problems(text: str) -> list[str]:
    """Why `text` is not a Mermaid flowchart of the shape our renderer promises."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    problems: list[str] = []
    body = [line for line in lines if not line.startswith("%%")]
    if not body or body[0] != "flowchart TD":
        problems.append("does not start with 'flowchart TD'")
    nodes: set[str] = set()
    depth = 0
    for line in body[1:]:
        if (found := _MERMAID_NODE.match(line)) is not None:
            if found[1] in nodes:
                problems.append(f"node declared twice: {line}")
            nodes.add(found[1])
            label = next(g for g in found.groups()[1:] if g is not None)
            if re.search(r"[<>`]", label.replace("<br/>", "")):
                problems.append(f"unescaped HTML or backtick in label: {line}")
        elif (found := _MERMAID_EDGE.match(line)) is not None:
            missing = {found[1], found[3]} - nodes
            if missing:
                problems.append(f"edge to undeclared node {missing}: {line}")
        elif _MERMAID_SUBGRAPH.match(line):
            depth += 1
        elif line == "end":
            depth -= 1
            if depth < 0:
                problems.append("'end' without a subgraph")
        elif not _MERMAID_CLASS.match(line):
            problems.append(f"unexpected line: {line}")
    if depth:
        problems.append("unclosed subgraph")
    return problems


def test_mermaid_is_a_flowchart_with_quoted_labels_and_clusters() -> None:
    """Every node is declared once with a quoted label; blocks are subgraphs; edges follow."""
    text = shop().graph().to_mermaid()
    assert [] == mermaid_problems(text)
    assert text.startswith("%% flowdsl workflow shop\nflowchart TD\n")
    assert 'subgraph b0 ["parallel quotes (complete_all, max 2 at once)"]' in text
    assert 'subgraph b1 ["sequence quote_b"]' in text
    assert '["quote_a<br/>retry 3x linear, timeout 2s"]' in text
    assert '[/"into best_quote"/]' in text
    assert '[["undo charge<br/>undo_charge"]]' in text
    assert '-.->|"goto"|' in text
    assert '-.->|"on failure"|' in text


def test_mermaid_draws_foreach_clusters_and_call_nodes_apart() -> None:
    """A foreach is a styled subgraph; a call is a rounded node of class "child"."""
    graph = imports().graph()
    text = graph.to_mermaid()
    assert [] == mermaid_problems(text)
    ids = {n.id: f"n{i}" for i, n in enumerate(graph.nodes)}
    blocks = {b.id: f"b{i}" for i, b in enumerate(graph.blocks)}
    each = blocks["foreach:foreach#1"]
    assert f'subgraph {each} ["foreach over files (complete_all, max 8 at once)"]' in text
    assert (
        f'subgraph {blocks["foreach:cells"]} ["foreach cells over rows_of(ctx) (fail_fast)"]'
        in text
    )
    call = ids["call:validate_rows"]
    assert (
        f'{call}("validate_rows<br/>calls validate_rows, returns report, queue checks, '
        f'retry 2x constant")'
    ) in text
    assert f"class {call},{ids['call:archive']} child" in text
    assert "classDef child fill:#fbefff" in text
    assert "classDef call" not in text  # "call" is a Mermaid keyword
    styled = [line.split()[1] for line in text.splitlines() if line.strip().startswith("style ")]
    assert sorted(b for i, b in blocks.items() if i.startswith("foreach:")) == sorted(styled)
    assert f"{ids['call:validate_rows']} --> {ids['fork:per_file']}" in text


def test_mermaid_escapes_names_that_would_break_it() -> None:
    """Quotes, HTML, '#', backticks and the keyword 'end' in names are made harmless."""
    names = ['say "hi"', "<b>x</b> & y", "issue #3", "`code`", "end", "a\nb"]

    @workflow('we "quote" end')
    def weird() -> None:
        for index, name in enumerate(names):
            step(lambda ctx: None, name=name, returns=f"k{index}")

    text = weird.graph().to_mermaid()
    assert [] == mermaid_problems(text)
    assert '["say #quot;hi#quot;<br/>returns k0"]' in text
    assert '["#lt;b#gt;x#lt;/b#gt; #amp; y<br/>returns k1"]' in text
    assert '["issue #35;3<br/>returns k2"]' in text
    assert '["#96;code#96;<br/>returns k3"]' in text
    assert '["a<br/>b<br/>returns k5"]' in text
    assert text.startswith('%% flowdsl workflow we "quote" end\n')


# -- DOT -------------------------------------------------------------------------------------

_DOT_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<id>[A-Za-z_][\w]*|-?\d+(?:\.\d+)?)'
    r"|(?P<op>->|[{}\[\];=,]))"
)


def dot_tokens(text: str) -> list[str]:
    tokens: list[str] = []
    at = 0
    text = text.rstrip()
    while at < len(text):
        found = _DOT_TOKEN.match(text, at)
        if found is None or found.end() == at:
            msg = f"bad DOT at {at}: {text[at : at + 30]!r}"
            raise AssertionError(msg)
        tokens.append(found.group().strip())
        at = found.end()
    return tokens


class DotChecker:
    """A recursive-descent check of the DOT subset our renderer writes.

    digraph ID { stmt* } with stmt: (graph|node|edge) [attrs];  subgraph ID { stmt* }
    ID = ID;  ID [attrs];  ID -> ID [attrs];  Edge ends must be declared nodes.
    """

    def __init__(self, text: str) -> None:
        self.tokens = dot_tokens(text)
        self.at = 0
        self.nodes: set[str] = set()
        self.edges: list[tuple[str, str]] = []
        self.clusters = 0

    def take(self, expected: str | None = None) -> str:
        token = self.tokens[self.at]
        if expected is not None and token != expected:
            msg = f"expected {expected!r}, got {token!r} at token {self.at}"
            raise AssertionError(msg)
        self.at += 1
        return token

    def ident(self) -> str:
        token = self.take()
        if token in "{}[];=,->" or token == "->":
            msg = f"expected an id, got {token!r}"
            raise AssertionError(msg)
        return token

    def check(self) -> None:
        self.take("digraph")
        self.ident()
        self.block()
        assert self.at == len(self.tokens), "text after the graph"
        missing = {end for edge in self.edges for end in edge} - self.nodes
        assert not missing, f"edges to undeclared nodes: {missing}"

    def block(self) -> None:
        self.take("{")
        while self.tokens[self.at] != "}":
            self.statement()
        self.take("}")

    def attrs(self) -> None:
        self.take("[")
        while self.tokens[self.at] != "]":
            self.ident()
            self.take("=")
            self.ident()
            if self.tokens[self.at] == ",":
                self.take(",")
        self.take("]")

    def statement(self) -> None:
        head = self.ident()
        if head == "subgraph":
            name = self.ident()
            assert name.startswith("cluster_"), name
            self.clusters += 1
            self.block()
            return
        if head in ("graph", "node", "edge"):
            self.attrs()
        elif self.tokens[self.at] == "=":
            self.take("=")
            self.ident()
        elif self.tokens[self.at] == "->":
            self.take("->")
            self.edges.append((head, self.ident()))
            if self.tokens[self.at] == "[":
                self.attrs()
        else:
            self.nodes.add(head)
            self.attrs()
        self.take(";")


def test_dot_is_a_well_formed_digraph_with_clusters() -> None:
    """The DOT parses (our subset of the grammar): clusters nest, every edge end is declared."""
    graph = shop().graph()
    checker = DotChecker(graph.to_dot())
    checker.check()
    assert len(graph.nodes) == len(checker.nodes)
    assert len(graph.edges) == len(checker.edges)
    assert len(graph.blocks) == checker.clusters
    text = graph.to_dot()
    assert 'label="parallel quotes (complete_all, max 2 at once)";' in text
    assert 'label="quote_a\\nretry 3x linear, timeout 2s"' in text
    assert "constraint=false" in text  # goto edges do not bend the layout


def test_dot_draws_foreach_clusters_and_call_nodes_apart() -> None:
    """Foreach clusters are filled green; call nodes are components with a tooltip."""
    graph = imports().graph()
    text = graph.to_dot()
    checker = DotChecker(text)
    checker.check()
    assert (len(graph.nodes), len(graph.edges), len(graph.blocks)) == (
        len(checker.nodes),
        len(checker.edges),
        checker.clusters,
    )
    assert 'label="foreach over files (complete_all, max 8 at once)";' in text
    assert 1 == text.count('style="rounded,dashed"; color="#8c959f"')  # the parallel block
    assert 3 == text.count('style="rounded,filled"; fillcolor="#f6fff8"; color="#1a7f37"')
    call = next(line for line in text.splitlines() if "calls validate_rows, returns" in line)
    assert "shape=component" in call
    assert 'tooltip="runs workflow validate_rows"' in call
    assert 2 == text.count("shape=component")


def test_dot_escapes_quotes_and_backslashes() -> None:
    """Names with quotes, backslashes and newlines stay inside their DOT strings."""

    @workflow('d "q" \\')
    def quoted() -> None:
        step(lambda ctx: None, name='say "hi" \\o/', returns="a")
        step(lambda ctx: None, name="two\nlines", returns="b")

    text = quoted.graph().to_dot()
    DotChecker(text).check()
    assert r'label="say \"hi\" \\o/\nreturns a"' in text
    assert r'label="two\nlines\nreturns b"' in text
    assert text.startswith(r'digraph "d \"q\" \\" {')


@pytest.mark.skipif(
    shutil.which("dot") is None and not os.environ.get("CI"),
    reason="Graphviz 'dot' is not installed (make test installs it where it can; CI always runs this)",
)
def test_dot_renders_with_graphviz() -> None:
    """`dot -Tsvg` accepts the output (run where Graphviz is installed)."""
    for wf in (shop(), imports()):
        done = subprocess.run(
            ["dot", "-Tsvg"], input=wf.graph().to_dot(), capture_output=True, text=True, check=False
        )
        assert ("", 0) == (done.stderr, done.returncode)
        assert "<svg" in done.stdout


# -- JSON ------------------------------------------------------------------------------------


def test_json_lists_nodes_edges_and_blocks() -> None:
    """to_json is to_dict as JSON: a format tag, nodes, edges and blocks with their details."""
    graph = shop().graph()
    data = json.loads(graph.to_json())
    assert graph.to_dict() == data
    assert ("flowdsl.graph/1", "shop") == (data["format"], data["workflow"])
    assert [n.id for n in graph.nodes] == [n["id"] for n in data["nodes"]]
    ids = {n["id"] for n in data["nodes"]}
    assert all(e["source"] in ids and e["target"] in ids for e in data["edges"])
    blocks = {b["id"] for b in data["blocks"]}
    assert all(b["parent"] is None or b["parent"] in blocks for b in data["blocks"])
    assert all(n["block"] is None or n["block"] in blocks for n in data["nodes"])
    decide = next(n for n in data["nodes"] if n["id"] == "step:decide")
    assert ["charge", "END"] == decide["info"]["routes"]
    assert json.loads(graph.to_json(indent=None)) == data


def test_json_carries_foreach_blocks_and_call_nodes() -> None:
    """Kinds "foreach" and "call" and their info come through JSON unchanged."""
    data = json.loads(to_json(imports()))
    kinds = {b["id"]: b["kind"] for b in data["blocks"]}
    assert "foreach" == kinds["foreach:cells"]
    call = next(n for n in data["nodes"] if n["id"] == "call:archive")
    assert ("call", "validate_rows", "archive") == (
        call["kind"],
        call["info"]["workflow"],
        call["info"]["returns"],
    )


# -- every workflow --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(fst.workflows(max_steps=8, max_depth=2))
def test_every_workflow_draws_a_connected_valid_graph(case: fst.WorkflowCase) -> None:
    """Any workflow: one node per step, one fork and join per block, all reachable, all formats valid."""
    plan = case.workflow.plan
    graph = case.workflow.graph()
    kinds = [n.kind for n in graph.nodes]
    assert list(plan.steps) == [n.info["step"] for n in graph.nodes if n.kind == "step"]
    assert list(plan.calls) == [n.info["call"] for n in graph.nodes if n.kind == "call"]
    parallel_blocks = [b for b in graph.blocks if b.kind == "parallel"]
    assert len(parallel_blocks) == kinds.count("fork") == kinds.count("join")
    foreach_blocks = [b for b in graph.blocks if b.kind == "foreach"]
    assert sum(1 for line in plan.shape if line.startswith("foreach ")) == len(foreach_blocks)
    reducers = sum(1 for b in graph.blocks if b.info.get("into") is not None)
    assert reducers == kinds.count("reducer")
    following: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.kind == "next":
            following.setdefault(edge.source, []).append(edge.target)
    seen, todo = {"start"}, ["start"]
    while todo:
        for target in following.get(todo.pop(), []):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    assert {n.id for n in graph.nodes if n.kind != "compensation"} == seen
    assert [] == mermaid_problems(graph.to_mermaid())
    DotChecker(graph.to_dot()).check()
    assert graph.to_dict() == json.loads(graph.to_json())
