"""The static graph of a compiled workflow, and its Mermaid, Graphviz DOT and JSON forms.

`Graph.from_plan` walks a `Plan` once and builds a frozen, read-only view:
nodes (start, steps, waits, child workflow calls, the fork and join of every
parallel block, `into` reducers, compensations, end), edges (the sequence,
branches, declared goto routes, compensations) and blocks (parallel blocks,
foreach blocks and sequence branches, for clusters). Nothing is run. The
renderers only read that view, so all three formats always agree::

    print(onboard_user.graph().to_mermaid())
    flowdsl.to_dot("onboard_user")
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, get_args

import attrs

from .._plan import (
    END,
    MODE_NAMES,
    CallNode,
    ForeachNode,
    ParallelNode,
    Plan,
    Retry,
    SequenceNode,
    StepNode,
    WaitNode,
)
from ..errors import InvalidArgument, KeyNotFound

if TYPE_CHECKING:
    from .._plan import BlockNode, Node
    from .._workflow import Workflow

__all__ = [
    "Graph",
    "GraphBlock",
    "GraphEdge",
    "GraphNode",
    "to_dot",
    "to_json",
    "to_mermaid",
]

NodeKind: TypeAlias = Literal[
    "start", "end", "step", "sleep", "wait", "call", "fork", "join", "reducer", "compensation"
]
EdgeKind: TypeAlias = Literal["next", "route", "compensate"]
BlockKind: TypeAlias = Literal["parallel", "sequence", "foreach"]

_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})
FORMAT: Final = "flowdsl.graph/1"
"""The ``format`` field of `Graph.to_dict()`; bumped if the JSON layout changes incompatibly."""


@attrs.frozen
class GraphNode:
    """A node of the graph.

    ``kind`` is one of "start", "end", "step", "sleep" (``sleep_for``,
    ``sleep_until``), "wait" (``wait_for_event``), "call" (``call_workflow``),
    "fork", "join", "reducer" (a parallel or foreach block's ``into=``) or
    "compensation" (a step's ``compensate=``). ``block`` is the id of the
    innermost block that holds it. ``info`` holds the kind's details: for a
    step ``step``, ``key``, ``mode``, ``retry``, ``timeout``, ``executor``,
    ``routes``; for a sleep or a wait ``wait`` (its name), ``how``,
    ``seconds``, ``until``, ``event``, ``key``, ``timeout``, ``on_timeout``;
    for a call ``call`` (its name), ``workflow`` (the child workflow's
    name), ``returns`` (the key the child's output is stored under),
    ``queue``, ``retry``; for a fork what its block's info holds; for a
    reducer ``function`` and ``reduces`` (the id of its block); for a
    compensation ``step`` and ``function``.
    """

    id: str
    kind: NodeKind
    label: str
    block: str | None = None
    where: str | None = None
    info: Mapping[str, object] = attrs.field(default=_EMPTY, hash=False)


@attrs.frozen
class GraphEdge:
    """An edge: ``kind`` "next" (the order steps run in, forks and joins
    included), "route" (a declared ``goto`` target) or "compensate" (a step to
    the compensation that undoes it)."""

    source: str
    target: str
    kind: EdgeKind = "next"
    label: str | None = None


@attrs.frozen
class GraphBlock:
    """A parallel block, a foreach block or a sequence branch: a cluster around its nodes.

    ``info`` holds, for a parallel block, ``name``, ``on_error``,
    ``max_concurrency``, ``into`` (the reducer's name, or None) and
    ``branches``; for a foreach block ``name``, ``items`` (the context key,
    or the function's name), ``items_from`` ("key" or "function"),
    ``on_error``, ``max_concurrency`` and ``into``. A foreach block's cluster
    holds its body (what runs once per item); its reducer, run once, follows
    the cluster.
    """

    id: str
    kind: BlockKind
    name: str
    label: str
    parent: str | None = None
    where: str | None = None
    info: Mapping[str, object] = attrs.field(default=_EMPTY, hash=False)


def _fn_name(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(name, str):
        return name.replace(".<locals>.", ".")
    return type(fn).__name__


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _retry_label(retry: Retry) -> str:
    return f"retry {retry.max_attempts}x {retry.backoff}"


def _policy(node: BlockNode) -> tuple[list[str], dict[str, object]]:
    """What parallel and foreach blocks share: the label's details and the info."""
    on_error = "fail_fast" if node.fail_fast else "complete_all"
    details = [on_error]
    if node.max_concurrency:
        details.append(f"max {node.max_concurrency} at once")
    info: dict[str, object] = {
        "name": node.name,
        "on_error": on_error,
        "max_concurrency": node.max_concurrency,
        "into": None if node.into is None else _fn_name(node.into),
    }
    return details, info


class _Builder:
    """Walks a plan once; every node and block gets a unique, readable id."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.nodes: list[GraphNode] = []
        self.edges: list[GraphEdge] = []
        self.blocks: list[GraphBlock] = []
        self.ids: set[str] = set()
        self.step_ids: dict[str, str] = {}

    def unique(self, wanted: str) -> str:
        found, n = wanted, 1
        while found in self.ids:
            n += 1
            found = f"{wanted}#{n}"
        self.ids.add(found)
        return found

    def add(
        self,
        kind: NodeKind,
        wanted: str,
        label: str,
        block: str | None,
        where: object = None,
        info: Mapping[str, object] = _EMPTY,
    ) -> str:
        node_id = self.unique(wanted)
        self.nodes.append(
            GraphNode(
                node_id,
                kind,
                label,
                block,
                None if where is None else str(where),
                MappingProxyType(dict(info)),
            )
        )
        return node_id

    def link(
        self, source: str, target: str, kind: EdgeKind = "next", label: str | None = None
    ) -> None:
        self.edges.append(GraphEdge(source, target, kind, label))

    def build(self) -> Graph:
        plan = self.plan
        start = self.add("start", "start", "start", None, plan.where)
        last = self.chain(plan.nodes, None, start)
        end = self.add("end", "end", "end", None)
        self.link(last, end)
        routes = [(step.name, step.routes, "goto") for step in plan.steps.values()]
        routes.extend(
            (wait.name, (wait.on_timeout,), "on timeout")
            for wait in plan.waits.values()
            if wait.on_timeout is not None
        )
        for name, targets, label in routes:
            for route in targets:
                if isinstance(route, str) and route in plan.targets:
                    target = self.step_ids[route]
                elif route is END:
                    target = end
                else:  # pragma: no cover - the compiler rejects unknown routes
                    continue
                self.link(self.step_ids[name], target, "route", label)
        return Graph(
            workflow=plan.name,
            qualname=plan.qualname,
            where=str(plan.where),
            nodes=tuple(self.nodes),
            edges=tuple(self.edges),
            blocks=tuple(self.blocks),
        )

    def chain(self, nodes: tuple[Node, ...], block: str | None, prev: str) -> str:
        """Lay out nodes that run one after the other, after `prev`; returns the last exit."""
        for node in nodes:
            prev = self.lower(node, block, prev)
        return prev

    def lower(self, node: Node, block: str | None, prev: str) -> str:
        """Add `node` after `prev` (linked to it); returns the id that what follows links from."""
        if isinstance(node, StepNode):
            node_id = self.step(node, block)
            self.link(prev, node_id)
            self.compensation(node, node_id, block)
            return node_id
        if isinstance(node, WaitNode):
            node_id = self.wait(node, block)
            self.link(prev, node_id)
            return node_id
        if isinstance(node, SequenceNode):
            seq = self.unique(f"sequence:{node.key}")
            self.blocks.append(
                GraphBlock(
                    seq, "sequence", node.name, f"sequence {node.name}", block, str(node.where)
                )
            )
            return self.chain(node.children, seq, prev)
        if isinstance(node, CallNode):
            node_id = self.call(node, block)
            self.link(prev, node_id)
            return node_id
        if isinstance(node, ForeachNode):
            return self.foreach(node, block, prev)
        return self.parallel(node, block, prev)

    def open_block(
        self,
        node: BlockNode,
        kind: BlockKind,
        title: str,
        details: list[str],
        info: Mapping[str, object],
        block: str | None,
    ) -> str:
        """Add the cluster of a parallel or foreach block, inside `block`; returns its id.

        Its label is the kind, the name (if given), `title`, then the policy `details`.
        """
        block_id = self.unique(f"{kind}:{node.key}")
        head = " ".join(part for part in (kind, node.name if node.named else "", title) if part)
        self.blocks.append(
            GraphBlock(
                block_id,
                kind,
                node.name,
                f"{head} ({', '.join(details)})",
                block,
                str(node.where),
                MappingProxyType(dict(info)),
            )
        )
        return block_id

    def reducer(self, node: BlockNode, reduces: str, block: str | None, prev: str) -> str:
        """The ``into=`` reducer of a block, after `prev` (in `block`); `prev` if it has none."""
        if node.into is None:
            return prev
        fn = _fn_name(node.into)
        reducer = self.add(
            "reducer",
            f"into:{node.key}",
            f"into {fn}",
            block,
            None,
            {"function": fn, "reduces": reduces},
        )
        self.link(prev, reducer)
        return reducer

    def foreach(self, node: ForeachNode, block: str | None, prev: str) -> str:
        """A foreach block: its body, drawn once in the block's cluster, then its reducer.

        The cluster holds what runs once per item; the reducer runs once, on
        every item's result, so it follows the cluster, outside it.
        """
        details, policy = _policy(node)
        if isinstance(node.items, str):
            items, items_from, source = node.items, "key", node.items
        else:
            items = _fn_name(node.items)
            items_from, source = "function", f"{items}(ctx)"
        info = {"name": node.name, "items": items, "items_from": items_from, **policy}
        each = self.open_block(node, "foreach", f"over {source}", details, info, block)
        last = self.chain(node.children, each, prev)
        return self.reducer(node, each, block, last)

    def call(self, node: CallNode, block: str | None) -> str:
        """A ``call_workflow`` node: its label and info name the child workflow."""
        details = [f"calls {node.workflow}"]
        if node.key != node.name:
            details.append(f"returns {node.key}")
        if node.queue is not None:
            details.append(f"queue {node.queue}")
        retry = node.retry
        if retry is not None:
            details.append(_retry_label(retry))
        info: dict[str, object] = {
            "call": node.name,
            "workflow": node.workflow,
            "returns": node.key,
            "queue": node.queue,
            "retry": None if retry is None else _retry_info(retry),
        }
        label = f"{node.name}\n{', '.join(details)}"
        node_id = self.add("call", f"call:{node.name}", label, block, node.where, info)
        self.step_ids[node.name] = node_id  # a top-level call is a goto target
        return node_id

    def step(self, node: StepNode, block: str | None) -> str:
        details: list[str] = []
        if node.key != node.name:
            details.append(f"returns {node.key}")
        mode = node.executor if node.executor is not None else MODE_NAMES.get(node.mode, "")
        if mode not in ("", "async", "sync"):
            details.append(mode)
        retry = node.retry
        if retry is not None:
            details.append(_retry_label(retry))
        if node.timeout is not None:
            details.append(f"timeout {_seconds(node.timeout)}")
        label = node.name if not details else f"{node.name}\n{', '.join(details)}"
        info: dict[str, object] = {
            "step": node.name,
            "key": node.key,
            "mode": mode,
            "retry": None if retry is None else _retry_info(retry),
            "timeout": node.timeout,
            "executor": node.executor,
            "routes": [r if isinstance(r, str) else "END" for r in node.routes],
        }
        node_id = self.add("step", f"step:{node.name}", label, block, node.where, info)
        self.step_ids[node.name] = node_id
        return node_id

    def wait(self, node: WaitNode, block: str | None) -> str:
        if node.how == "event":
            detail = f"event {node.event}"
            if node.timeout is not None:
                detail += f", timeout {_seconds(node.timeout)}"
        elif node.seconds is not None:
            detail = f"sleep {_seconds(node.seconds)}"
        elif node.until is not None:
            detail = "until " + _dt.datetime.fromtimestamp(node.until, _dt.UTC).isoformat()
        else:
            detail = f"{node.how}({_fn_name(node.fn)})"
        info: dict[str, object] = {
            "wait": node.name,
            "how": node.how,
            "seconds": node.seconds,
            "until": node.until,
            "event": node.event,
            "key": node.key,
            "timeout": node.timeout,
            "on_timeout": "END" if node.on_timeout is END else node.on_timeout,
        }
        label = f"{node.name}\n{detail}"
        node_id = self.add(node.kind, f"{node.kind}:{node.name}", label, block, node.where, info)  # type: ignore[arg-type]
        self.step_ids[node.name] = node_id
        return node_id

    def compensation(self, node: StepNode, node_id: str, block: str | None) -> None:
        if node.compensate is None:
            return
        undo = _fn_name(node.compensate)
        comp = self.add(
            "compensation",
            f"undo:{node.name}",
            f"undo {node.name}\n{undo}",
            block,
            None,
            {"step": node.name, "function": undo},
        )
        self.link(node_id, comp, "compensate", "on failure")

    def parallel(self, node: ParallelNode, block: str | None, prev: str) -> str:
        """A parallel block: fork, its branches side by side, join, then its reducer (all
        in the block's cluster: each runs once)."""
        details, info = _policy(node)
        info["branches"] = list(node.keys)
        par = self.open_block(node, "parallel", "", details, info, block)
        fork = self.add("fork", f"fork:{node.key}", "fork", par, node.where, info)
        self.link(prev, fork)
        exits = [self.lower(child, par, fork) for child in node.children]
        join = self.add("join", f"join:{node.key}", "join", par)
        for exit_ in exits:
            self.link(exit_, join)
        return self.reducer(node, par, par, join)


def _retry_info(retry: Retry) -> dict[str, object]:
    return {
        "max_attempts": retry.max_attempts,
        "backoff": retry.backoff,
        "base": retry.base,
        "max_delay": retry.max_delay,
        "jitter": retry.jitter,
        "retry_on": [getattr(t, "__name__", repr(t)) for t in retry.retry_on],
    }


@attrs.frozen
class Graph:
    """The static graph of one workflow (read-only); build it with `Graph.from_plan`
    or ``wf.graph()``. Nodes, edges and blocks are in declaration order."""

    workflow: str
    qualname: str
    where: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    blocks: tuple[GraphBlock, ...]

    @classmethod
    def from_plan(cls, plan: Plan) -> Graph:
        """The graph of a compiled plan; runs nothing."""
        return _Builder(plan).build()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Graph:
        """The graph `to_dict` made (read back from a store, a file); `InvalidArgument` if not one."""
        try:
            return _from_dict(data)
        except (KeyError, TypeError, AttributeError, InvalidArgument) as exc:
            why = f"a {type(data).__name__}" if not isinstance(data, Mapping) else _why(exc)
            msg = (
                f"not a flowdsl graph (the JSON of Graph.to_json, format {FORMAT!r}): {why}; "
                f"draw it again with Graph.from_plan or flowdsl graph TARGET --format json"
            )
            raise InvalidArgument(msg) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Graph:
        """The graph `to_json` wrote; `InvalidArgument` when `text` is not one."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as exc:
            msg = f"not a flowdsl graph: the text is not JSON ({exc})"
            raise InvalidArgument(msg) from None
        return cls.from_dict(data)

    def node(self, node_id: str) -> GraphNode:
        """The node with id `node_id`."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        msg = f"no node {node_id!r} in the graph of workflow {self.workflow!r}"
        raise KeyNotFound(msg)

    def to_dict(self) -> dict[str, object]:
        """Plain data (what `to_json` encodes): ``format``, ``workflow``, ``nodes``, ``edges``, ``blocks``."""
        return {
            "format": FORMAT,
            "workflow": self.workflow,
            "qualname": self.qualname,
            "where": self.where,
            "nodes": [
                {
                    "id": n.id,
                    "kind": n.kind,
                    "label": n.label,
                    "block": n.block,
                    "where": n.where,
                    "info": dict(n.info),
                }
                for n in self.nodes
            ],
            "edges": [
                {"source": e.source, "target": e.target, "kind": e.kind, "label": e.label}
                for e in self.edges
            ],
            "blocks": [
                {
                    "id": b.id,
                    "kind": b.kind,
                    "name": b.name,
                    "label": b.label,
                    "parent": b.parent,
                    "where": b.where,
                    "info": dict(b.info),
                }
                for b in self.blocks
            ],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The graph as a JSON document (see `to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent, default=repr)

    def to_mermaid(self) -> str:
        """A Mermaid ``flowchart`` (renders on GitHub inside a ```` ```mermaid ```` fence)."""
        return _render(self, _MERMAID)

    def to_dot(self) -> str:
        """A Graphviz ``digraph``: ``flowdsl graph T --format dot | dot -Tsvg > graph.svg``."""
        return _render(self, _DOT)


def _why(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"a node, an edge or a block lacks its {exc.args[0]!r}"
    return str(exc)


_NODE_KINDS: Final = frozenset(get_args(NodeKind))
_EDGE_KINDS: Final = frozenset(get_args(EdgeKind))
_BLOCK_KINDS: Final = frozenset(get_args(BlockKind))


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        msg = f"{what} is {value!r}, not a string"
        raise InvalidArgument(msg)
    return value


def _maybe(value: object, what: str) -> str | None:
    return None if value is None else _text(value, what)


def _kind(value: object, kinds: frozenset[str], what: str) -> Any:
    if value not in kinds:
        msg = f"{what} {value!r} is none of {', '.join(sorted(kinds))}"
        raise InvalidArgument(msg)
    return value


def _info(value: object, what: str) -> Mapping[str, object]:
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        msg = f"the info of {what} is {value!r}, not an object"
        raise InvalidArgument(msg)
    return MappingProxyType(dict(value))


def _from_dict(data: Mapping[str, Any]) -> Graph:
    if data.get("format") != FORMAT:
        msg = f"its format is {data.get('format')!r}"
        raise InvalidArgument(msg)
    nodes = tuple(
        GraphNode(
            _text(n["id"], "a node's id"),
            _kind(n["kind"], _NODE_KINDS, "node kind"),
            _text(n["label"], "a node's label"),
            _maybe(n.get("block"), "a node's block"),
            _maybe(n.get("where"), "a node's where"),
            _info(n.get("info"), f"node {n['id']!r}"),
        )
        for n in data["nodes"]
    )
    edges = tuple(
        GraphEdge(
            _text(e["source"], "an edge's source"),
            _text(e["target"], "an edge's target"),
            _kind(e.get("kind", "next"), _EDGE_KINDS, "edge kind"),
            _maybe(e.get("label"), "an edge's label"),
        )
        for e in data["edges"]
    )
    blocks = tuple(
        GraphBlock(
            _text(b["id"], "a block's id"),
            _kind(b["kind"], _BLOCK_KINDS, "block kind"),
            _text(b["name"], "a block's name"),
            _text(b["label"], "a block's label"),
            _maybe(b.get("parent"), "a block's parent"),
            _maybe(b.get("where"), "a block's where"),
            _info(b.get("info"), f"block {b['id']!r}"),
        )
        for b in data["blocks"]
    )
    ids = {n.id for n in nodes}
    block_ids = {b.id for b in blocks}
    for edge in edges:
        for end in (edge.source, edge.target):
            if end not in ids:
                msg = f"an edge names node {end!r}, which it does not have"
                raise InvalidArgument(msg)
    inside = [(n.id, n.block) for n in nodes] + [(b.id, b.parent) for b in blocks]
    for item, block in inside:
        if block is not None and block not in block_ids:
            msg = f"{item!r} is in block {block!r}, which it does not have"
            raise InvalidArgument(msg)
    return Graph(
        workflow=_text(data["workflow"], "the workflow"),
        qualname=_text(data.get("qualname", ""), "the qualname"),
        where=_text(data.get("where", ""), "where"),
        nodes=nodes,
        edges=edges,
        blocks=blocks,
    )


# -- rendering -----------------------------------------------------------------------------
#
# Both text formats share one walk: blocks become clusters (Mermaid subgraphs,
# DOT "cluster_" subgraphs) holding their nodes in declaration order; edges
# come after every node. Ids in the output are short generated ones (n0, b0),
# so no user name can clash with a keyword ("end") or need quoting as an id.


@attrs.frozen
class _Syntax:
    header: Callable[[Graph], list[str]]
    node: Callable[[GraphNode, str], str]
    open_block: Callable[[GraphBlock, str], list[str]]
    close_block: str
    edge: Callable[[GraphEdge, str, str], str]
    footer: Callable[[Graph, Mapping[str, str], Mapping[str, str]], list[str]]
    """Lines after the edges, given the output ids of the nodes and of the blocks."""


def _render(graph: Graph, syntax: _Syntax) -> str:
    ids = {node.id: f"n{i}" for i, node in enumerate(graph.nodes)}
    block_ids = {block.id: f"b{i}" for i, block in enumerate(graph.blocks)}
    blocks = {block.id: block for block in graph.blocks}
    # container id (None: top level) -> its items in order: ("node"|"block", id)
    contents: dict[str | None, list[tuple[str, str]]] = {None: []}
    for node in graph.nodes:
        path: list[str] = []
        at = node.block
        while at is not None:
            path.append(at)
            at = blocks[at].parent
        parent: str | None = None
        for block_id in reversed(path):
            if block_id not in contents:
                contents[block_id] = []
                contents[parent].append(("block", block_id))
            parent = block_id
        contents[parent].append(("node", node.id))
    nodes = {node.id: node for node in graph.nodes}
    lines = syntax.header(graph)

    def emit(container: str | None, depth: int) -> None:
        pad = "    " * depth
        for kind, item in contents[container]:
            if kind == "node":
                lines.append(pad + syntax.node(nodes[item], ids[item]))
            else:
                lines.extend(
                    pad + line for line in syntax.open_block(blocks[item], block_ids[item])
                )
                emit(item, depth + 1)
                lines.append(pad + syntax.close_block)

    emit(None, 1)
    lines.extend("    " + syntax.edge(e, ids[e.source], ids[e.target]) for e in graph.edges)
    lines.extend(syntax.footer(graph, ids, block_ids))
    return "\n".join(lines) + "\n"


# Mermaid ---------------------------------------------------------------------------------

_MERMAID_ENTITIES: Final = (
    ("#", "#35;"),  # first: the others insert '#'
    ("&", "#amp;"),
    ('"', "#quot;"),
    ("<", "#lt;"),
    (">", "#gt;"),
    ("`", "#96;"),
)
_MERMAID_SHAPES: Final[Mapping[str, tuple[str, str]]] = {
    "start": ('(["', '"])'),
    "end": ('(["', '"])'),
    "step": ('["', '"]'),
    "sleep": ('(("', '"))'),
    "wait": ('{"', '"}'),
    "fork": ('{{"', '"}}'),
    "join": ('{{"', '"}}'),
    "reducer": ('[/"', '"/]'),
    "compensation": ('[["', '"]]'),
    "call": ('("', '")'),
}
_MERMAID_CLASSES: Final = (
    ("terminal", ("start", "end"), "fill:#f6f8fa,stroke:#57606a"),
    ("block", ("fork", "join"), "fill:#57606a,stroke:#57606a,color:#ffffff"),
    ("reducer", ("reducer",), "fill:#ddf4ff,stroke:#0969da"),
    ("undo", ("compensation",), "fill:#fff8f5,stroke:#cf222e,stroke-dasharray:4 3"),
    ("waiting", ("sleep", "wait"), "fill:#fff8c5,stroke:#9a6700"),
    ("child", ("call",), "fill:#fbefff,stroke:#8250df,stroke-width:2px"),  # not "call": a keyword
)
_MERMAID_BLOCK_STYLES: Final[Mapping[str, str]] = {
    "foreach": "fill:#f6fff8,stroke:#1a7f37,stroke-width:2px",
}


def _mermaid_text(text: str) -> str:
    """Text for inside a quoted Mermaid label: entity codes for specials, <br/> for newlines."""
    for raw, code in _MERMAID_ENTITIES:
        text = text.replace(raw, code)
    return "<br/>".join(text.splitlines()) if "\n" in text else text


def _mermaid_edge(edge: GraphEdge, source: str, target: str) -> str:
    arrow = "-->" if edge.kind == "next" else "-.->"
    if edge.label is None:
        return f"{source} {arrow} {target}"
    return f'{source} {arrow}|"{_mermaid_text(edge.label)}"| {target}'


def _mermaid_footer(
    graph: Graph, ids: Mapping[str, str], block_ids: Mapping[str, str]
) -> list[str]:
    lines: list[str] = []
    for name, kinds, style in _MERMAID_CLASSES:
        members = [ids[n.id] for n in graph.nodes if n.kind in kinds]
        if members:
            lines.append(f"    classDef {name} {style}")
            lines.append(f"    class {','.join(members)} {name}")
    lines.extend(
        f"    style {block_ids[block.id]} {_MERMAID_BLOCK_STYLES[block.kind]}"
        for block in graph.blocks
        if block.kind in _MERMAID_BLOCK_STYLES
    )
    return lines


def _mermaid_node(node: GraphNode, node_id: str) -> str:
    left, right = _MERMAID_SHAPES[node.kind]
    return f"{node_id}{left}{_mermaid_text(node.label)}{right}"


_MERMAID: Final = _Syntax(
    header=lambda graph: [
        f"%% flowdsl workflow {' '.join(graph.workflow.split())}",
        "flowchart TD",
    ],
    node=_mermaid_node,
    open_block=lambda block, block_id: [f'subgraph {block_id} ["{_mermaid_text(block.label)}"]'],
    close_block="end",
    edge=_mermaid_edge,
    footer=_mermaid_footer,
)


# Graphviz DOT ---------------------------------------------------------------------------


def _dot_str(text: str) -> str:
    """A DOT double-quoted string; newlines become centred line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "\\n".join(escaped.splitlines()) + '"' if "\n" in text else '"' + escaped + '"'


_DOT_NODE_ATTRS: Final[Mapping[str, str]] = {
    "start": 'shape=oval, style=filled, fillcolor="#f6f8fa"',
    "end": 'shape=oval, style=filled, fillcolor="#f6f8fa"',
    "step": "shape=box, style=rounded",
    "sleep": 'shape=ellipse, style=filled, fillcolor="#fff8c5", color="#9a6700"',
    "wait": 'shape=diamond, style=filled, fillcolor="#fff8c5", color="#9a6700"',
    "fork": 'shape=box, style=filled, fillcolor="#57606a", fontcolor="#ffffff", fontsize=9, height=0.2',
    "join": 'shape=box, style=filled, fillcolor="#57606a", fontcolor="#ffffff", fontsize=9, height=0.2',
    "reducer": 'shape=parallelogram, style=filled, fillcolor="#ddf4ff", color="#0969da"',
    "compensation": 'shape=box, style="rounded,dashed", color="#cf222e", fontcolor="#cf222e"',
    "call": 'shape=component, style=filled, fillcolor="#fbefff", color="#8250df", penwidth=1.5',
}
_DOT_CLUSTER_ATTRS: Final[Mapping[str, str]] = {
    "parallel": 'style="rounded,dashed"; color="#8c959f"; fontsize=10;',
    "sequence": 'style="rounded"; color="#d0d7de"; fontsize=10;',
    "foreach": 'style="rounded,filled"; fillcolor="#f6fff8"; color="#1a7f37"; penwidth=1.5; fontsize=10;',
}
_DOT_EDGE_ATTRS: Final[Mapping[str, str]] = {
    "next": "",
    "route": 'style=dashed, color="#0969da", fontcolor="#0969da", constraint=false',
    "compensate": 'style=dotted, color="#cf222e", fontcolor="#cf222e", arrowhead=empty',
}


def _dot_edge(edge: GraphEdge, source: str, target: str) -> str:
    attrs_ = [a for a in (_DOT_EDGE_ATTRS[edge.kind],) if a]
    if edge.label is not None:
        attrs_.append(f"label={_dot_str(edge.label)}")
    return f"{source} -> {target}" + (f" [{', '.join(attrs_)}]" if attrs_ else "") + ";"


def _dot_header(graph: Graph) -> list[str]:
    return [
        f"digraph {_dot_str(graph.workflow)} {{",
        f'    graph [label={_dot_str("workflow " + graph.workflow)}, labelloc=t, fontname="Helvetica", fontsize=14, newrank=true];',
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=9];',
    ]


def _dot_node(node: GraphNode, node_id: str) -> str:
    extra = ""
    if node.kind == "call":  # shown on hover in SVG output
        extra = f", tooltip={_dot_str('runs workflow ' + str(node.info['workflow']))}"
    return f"{node_id} [label={_dot_str(node.label)}, {_DOT_NODE_ATTRS[node.kind]}{extra}];"


_DOT: Final = _Syntax(
    header=_dot_header,
    node=_dot_node,
    open_block=lambda block, block_id: [
        f"subgraph cluster_{block_id} {{",
        f"    label={_dot_str(block.label)};",
        f"    {_DOT_CLUSTER_ATTRS[block.kind]}",
    ],
    close_block="}",
    edge=_dot_edge,
    footer=lambda graph, ids, block_ids: ["}"],
)


# -- entry points ---------------------------------------------------------------------------

GraphSource: TypeAlias = "Workflow | Plan | Graph | str"


def graph_of(source: Workflow | Plan | Graph | str) -> Graph:
    """The `Graph` of a workflow, its plan, or its registered name."""
    if isinstance(source, Graph):
        return source
    if isinstance(source, Plan):
        return Graph.from_plan(source)
    if isinstance(source, str):
        from .._define._registry import get_workflow

        return Graph.from_plan(get_workflow(source).plan)
    return Graph.from_plan(source.plan)


def to_mermaid(source: Workflow | Plan | Graph | str) -> str:
    """The workflow's graph as a Mermaid flowchart (see `Graph.to_mermaid`)."""
    return graph_of(source).to_mermaid()


def to_dot(source: Workflow | Plan | Graph | str) -> str:
    """The workflow's graph as a Graphviz digraph (see `Graph.to_dot`)."""
    return graph_of(source).to_dot()


def to_json(source: Workflow | Plan | Graph | str, *, indent: int | None = 2) -> str:
    """The workflow's graph as JSON (see `Graph.to_dict`)."""
    return graph_of(source).to_json(indent=indent)
