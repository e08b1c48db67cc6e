"""A structural graph rebuilt from a definition's shape, for runs whose store kept no graph.

A store of an older release kept no graph, only each run's shape
(`Plan.shape`: one line per node, such as ``step parallel#1/send -> send``,
``foreach foreach#1/ complete_all into=True`` or ``call pay payment -> pay``).
That is enough to draw the structure: the steps, waits and calls in order,
parallel blocks with their branches, foreach blocks, reducers. What the shape
does not record (goto routes, retries, compensations, where things are
defined) is not drawn. `graph_from_shape` makes a `Graph` of it, so the
viewer draws it as any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

import attrs

from ..errors import InvalidArgument
from ._graph import BlockKind, Graph, GraphBlock, GraphEdge, GraphNode, NodeKind

__all__ = ["graph_from_shape"]

_SLEEPS: Final = frozenset({"sleep_for", "sleep_until"})


@attrs.define
class _Item:
    kind: str
    """step, wait, call, parallel, foreach or sequence."""
    name: str
    key: str = ""
    detail: str = ""
    """A wait's how, a call's child workflow, a block's on_error."""
    into: bool = False
    children: list[_Item] = attrs.field(factory=list)


def _fail(line: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"the shape line {line!r} {why}")


class _Reader:
    """Reads shape lines into a tree: each block holds what its path prefixes."""

    def __init__(self) -> None:
        self.top = _Item("sequence", "")
        self.paths: dict[str, _Item] = {"": self.top}

    def container(self, line: str, path_name: str) -> tuple[_Item, str]:
        """The innermost known block whose path prefixes `path_name`, and the rest (the name)."""
        best = ""
        for path in self.paths:
            if len(path) > len(best) and path_name.startswith(path) and path_name != path:
                best = path
        name = path_name[len(best) :]
        if not name:
            raise _fail(line, "names nothing")
        return self.paths[best], name

    def read(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind in ("step", "wait", "call"):
            left, arrow, key = rest.rpartition(" -> ")
            if not arrow:
                raise _fail(line, "has no ' -> KEY'")
            detail = ""
            if kind != "step":
                left, _, detail = left.rpartition(" ")
            parent, name = self.container(line, left)
            parent.children.append(_Item(kind, name, key, detail))
        elif kind in ("parallel", "foreach"):
            parts = rest.rsplit(" ", 2)
            if len(parts) != 3 or not parts[2].startswith("into="):
                raise _fail(line, "is not 'KIND PATH/ ON_ERROR into=BOOL'")
            self.block(line, kind, parts[0], parts[1], parts[2] == "into=True")
        elif kind == "sequence":
            self.block(line, kind, rest, "", False)
        else:
            raise _fail(line, f"is of a kind this release does not know ({kind!r})")

    def block(self, line: str, kind: str, path: str, detail: str, into: bool) -> None:
        if not path.endswith("/"):
            raise _fail(line, "names a block without its trailing '/'")
        parent, name = self.container(line, path[:-1])
        item = _Item(kind, name, name, detail, into)
        parent.children.append(item)
        self.paths[path] = item


class _Drawer:
    """Lays the tree out as graph nodes, edges and blocks (what `Graph.from_plan` would draw)."""

    def __init__(self) -> None:
        self.nodes: list[GraphNode] = []
        self.edges: list[GraphEdge] = []
        self.blocks: list[GraphBlock] = []
        self.ids: set[str] = set()

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
        info: Mapping[str, object] | None = None,
    ) -> str:
        node_id = self.unique(wanted)
        self.nodes.append(
            GraphNode(node_id, kind, label, block, None, MappingProxyType(dict(info or {})))
        )
        return node_id

    def open(self, kind: BlockKind, item: _Item, label: str, parent: str | None) -> str:
        block_id = self.unique(f"{kind}:{item.name}")
        info: dict[str, object] = {"name": item.name}
        if item.detail:
            info["on_error"] = item.detail
        self.blocks.append(
            GraphBlock(block_id, kind, item.name, label, parent, None, MappingProxyType(info))
        )
        return block_id

    def chain(self, items: Sequence[_Item], block: str | None, prev: str) -> str:
        for item in items:
            prev = self.lower(item, block, prev)
        return prev

    def lower(self, item: _Item, block: str | None, prev: str) -> str:
        if item.kind == "sequence":
            seq = self.open("sequence", item, f"sequence {item.name}", block)
            return self.chain(item.children, seq, prev)
        if item.kind == "parallel":
            par = self.open("parallel", item, f"parallel {item.name} ({item.detail})", block)
            fork = self.add("fork", f"fork:{item.name}", "fork", par)
            self.link(prev, fork)
            exits = [self.lower(child, par, fork) for child in item.children]
            join = self.add("join", f"join:{item.name}", "join", par)
            for exit_ in exits:
                self.link(exit_, join)
            return self.reducer(item, par, par, join)
        if item.kind == "foreach":
            each = self.open("foreach", item, f"foreach {item.name} ({item.detail})", block)
            last = self.chain(item.children, each, prev)
            return self.reducer(item, each, block, last)
        node_id = self.leaf(item, block)
        self.link(prev, node_id)
        return node_id

    def leaf(self, item: _Item, block: str | None) -> str:
        returns = "" if item.key == item.name else f"\nreturns {item.key}"
        if item.kind == "step":
            info = {"step": item.name, "key": item.key}
            return self.add("step", f"step:{item.name}", item.name + returns, block, info)
        if item.kind == "call":
            info = {"call": item.name, "workflow": item.detail, "returns": item.key}
            label = f"{item.name}\ncalls {item.detail}"
            return self.add("call", f"call:{item.name}", label, block, info)
        kind: NodeKind = "sleep" if item.detail in _SLEEPS else "wait"
        info = {"wait": item.name, "how": item.detail, "key": item.key}
        label = f"{item.name}\n{item.detail}"
        return self.add(kind, f"{kind}:{item.name}", label, block, info)

    def reducer(self, item: _Item, reduces: str, block: str | None, prev: str) -> str:
        if not item.into:
            return prev
        info = {"reduces": reduces}
        reducer = self.add("reducer", f"into:{item.name}", "into", block, info)
        self.link(prev, reducer)
        return reducer

    def link(self, source: str, target: str) -> None:
        self.edges.append(GraphEdge(source, target))


def graph_from_shape(workflow: str, shape: Sequence[str]) -> Graph:
    """The structure a definition's shape records, as a `Graph` (no routes, no compensations).

    `InvalidArgument` when a line is not one this release writes (the message names it).
    """
    reader = _Reader()
    for line in shape:
        reader.read(line)
    drawer = _Drawer()
    start = drawer.add("start", "start", "start", None)
    last = drawer.chain(reader.top.children, None, start)
    end = drawer.add("end", "end", "end", None)
    drawer.link(last, end)
    return Graph(
        workflow=workflow,
        qualname="",
        where="",
        nodes=tuple(drawer.nodes),
        edges=tuple(drawer.edges),
        blocks=tuple(drawer.blocks),
    )
