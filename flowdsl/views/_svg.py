"""A workflow's graph as inline SVG, laid out here (no Graphviz, no script).

The graph `Graph.from_plan` builds is series-parallel: a sequence of nodes
and blocks, a parallel block being a fork, branches side by side and a join.
`graph_svg` rebuilds that tree from the blocks and the declaration order,
sizes it bottom-up (each item has a width, a height and an axis: the x of
its vertical centre line), places it top-down, then draws every edge of the
graph between the placed boxes: "next" edges downwards, goto routes in lanes
on the right, compensations beside the step they undo. Colours come from the
page's CSS, by ``data-status`` and ``data-kind``.

Element ids and classes (stable, for the page's CSS and for tests):
``svg.graph`` holds ``g.cluster[data-kind]`` (one per block), ``path.edge[data-kind]``
and ``g.node`` (``data-node``: the graph node's id, ``data-kind``,
``data-status``, ``id="node-N"``), each with a ``<title>``.
"""

from __future__ import annotations

import abc
import html
from collections.abc import Mapping
from typing import Final

import attrs

from ._graph import Graph, GraphBlock, GraphNode

__all__ = ["NodeState", "graph_svg"]

_CHAR: Final = 6.8
"""Width of a character of the 12px label font (an estimate: no font metrics here)."""
_SMALL_CHAR: Final = 5.7
_MAX_CHARS: Final = 34
_NODE_H: Final = 30.0
_DETAIL_H: Final = 13.0
_MIN_W: Final = 70.0
_BAR_H: Final = 8.0
_V_GAP: Final = 22.0
_H_GAP: Final = 26.0
_PAD: Final = 12.0
_LABEL_H: Final = 18.0
_SIDE_GAP: Final = 28.0
_LANE: Final = 12.0
_MARGIN: Final = 10.0


@attrs.frozen
class NodeState:
    """What the run says about one graph node: its status and a line of detail."""

    status: str
    """succeeded, failed, running, waiting, not-run, cancelled or compensated."""
    summary: str = ""
    """Shown on hover (``load: 998 succeeded, 2 failed``)."""
    row: str | None = None
    """The id of the node's first timeline row, linked to from the node."""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cut(text: str, limit: int = _MAX_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


@attrs.define
class _Box:
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h


class _Item(abc.ABC):
    """Something laid out: `measure` sets width, height and axis; `place` positions it."""

    w: float = 0.0
    h: float = 0.0
    axis: float = 0.0

    @abc.abstractmethod
    def measure(self) -> None: ...

    @abc.abstractmethod
    def place(self, x: float, y: float, boxes: dict[str, _Box], rects: list[_Rect]) -> None: ...


@attrs.frozen
class _Rect:
    block: GraphBlock
    box: _Box


class _Leaf(_Item):
    def __init__(self, node: GraphNode) -> None:
        self.node = node
        self.side: list[GraphNode] = []
        self.bar_w = 0.0
        """The width of a fork or join bar (set by its block)."""

    @staticmethod
    def size(node: GraphNode) -> tuple[float, float]:
        first, _, rest = node.label.partition("\n")
        detail = rest.replace("\n", ", ")
        width = max(len(_cut(first)) * _CHAR, len(_cut(detail)) * _SMALL_CHAR) + 20
        return max(_MIN_W, width), _NODE_H + (_DETAIL_H if detail else 0.0)

    def measure(self) -> None:
        if self.node.kind in ("fork", "join"):
            self.w, self.h, self.axis = max(self.bar_w, 40.0), _BAR_H, max(self.bar_w, 40.0) / 2
            return
        w, h = self.size(self.node)
        self.axis = w / 2
        total = w
        for node in self.side:
            sw, sh = self.size(node)
            total += _SIDE_GAP + sw
            h = max(h, sh)
        self.w, self.h = total, h

    def place(self, x: float, y: float, boxes: dict[str, _Box], rects: list[_Rect]) -> None:
        if self.node.kind in ("fork", "join"):
            boxes[self.node.id] = _Box(x, y, self.w, self.h)
            return
        w, h = self.size(self.node)
        boxes[self.node.id] = _Box(x, y, w, h)
        at = x + w + _SIDE_GAP
        for node in self.side:
            sw, sh = self.size(node)
            boxes[node.id] = _Box(at, y, sw, sh)
            at += sw + _SIDE_GAP


class _Column(_Item):
    def __init__(self, items: list[_Item]) -> None:
        self.items = items

    def measure(self) -> None:
        for item in self.items:
            item.measure()
        self.axis = max((i.axis for i in self.items), default=0.0)
        right = max((i.w - i.axis for i in self.items), default=0.0)
        self.w = self.axis + right
        self.h = sum(i.h for i in self.items) + _V_GAP * max(0, len(self.items) - 1)

    def place(self, x: float, y: float, boxes: dict[str, _Box], rects: list[_Rect]) -> None:
        for item in self.items:
            item.place(x + self.axis - item.axis, y, boxes, rects)
            y += item.h + _V_GAP


class _Cluster(_Item):
    """A foreach block or a sequence branch: a labelled frame around a column."""

    def __init__(self, block: GraphBlock, inner: _Item) -> None:
        self.block = block
        self.inner = inner

    def measure(self) -> None:
        self.inner.measure()
        label = len(_cut(self.block.label, 48)) * _SMALL_CHAR + 2 * _PAD
        self.w = max(self.inner.w + 2 * _PAD, label)
        self.axis = (self.w - self.inner.w) / 2 + self.inner.axis
        self.h = self.inner.h + _LABEL_H + _PAD

    def place(self, x: float, y: float, boxes: dict[str, _Box], rects: list[_Rect]) -> None:
        rects.append(_Rect(self.block, _Box(x, y, self.w, self.h)))
        self.inner.place(x + self.axis - self.inner.axis, y + _LABEL_H, boxes, rects)


class _Parallel(_Item):
    """A parallel block: its fork, the branches side by side, its join, then its reducer."""

    def __init__(
        self,
        block: GraphBlock,
        fork: _Leaf | None,
        branches: list[_Item],
        join: _Leaf | None,
        tail: list[_Item],
    ) -> None:
        self.block = block
        self.fork = fork
        self.branches = branches
        self.join = join
        self.tail = tail
        self.row_w = 0.0
        self.row_h = 0.0
        self.mid = 0.0
        """The x of the fork and join bars' centre, from the branches' left edge."""

    def measure(self) -> None:
        for item in (*self.branches, *self.tail):
            item.measure()
        self.row_w = sum(b.w for b in self.branches) + _H_GAP * max(0, len(self.branches) - 1)
        self.row_h = max((b.h for b in self.branches), default=0.0)
        axes: list[float] = []
        at = 0.0
        for branch in self.branches:
            axes.append(at + branch.axis)
            at += branch.w + _H_GAP
        first, last = (axes[0], axes[-1]) if axes else (0.0, 0.0)
        self.mid = (first + last) / 2
        for bar in (self.fork, self.join):
            if bar is not None:
                bar.bar_w = last - first + 40
                bar.measure()
        tail_half = max((max(t.axis, t.w - t.axis) for t in self.tail), default=0.0)
        inner_left = max(self.mid, tail_half)
        inner_right = max(self.row_w - self.mid, tail_half)
        label = len(_cut(self.block.label, 48)) * _SMALL_CHAR + 2 * _PAD
        inner_w = inner_left + inner_right
        self.w = max(inner_w + 2 * _PAD, label)
        self.axis = (self.w - inner_w) / 2 + inner_left
        heights = [self.row_h]
        heights.extend(bar.h for bar in (self.fork, self.join) if bar is not None)
        heights.extend(t.h for t in self.tail)
        self.h = _LABEL_H + sum(heights) + _V_GAP * (len(heights) - 1) + _PAD

    def place(self, x: float, y: float, boxes: dict[str, _Box], rects: list[_Rect]) -> None:
        rects.append(_Rect(self.block, _Box(x, y, self.w, self.h)))
        axis = x + self.axis
        at = y + _LABEL_H
        if self.fork is not None:
            self.fork.place(axis - self.fork.w / 2, at, boxes, rects)
            at += self.fork.h + _V_GAP
        left = axis - self.mid
        for branch in self.branches:
            branch.place(left, at, boxes, rects)
            left += branch.w + _H_GAP
        at += self.row_h + _V_GAP
        if self.join is not None:
            self.join.place(axis - self.join.w / 2, at, boxes, rects)
            at += self.join.h + _V_GAP
        for item in self.tail:
            item.place(axis - item.axis, at, boxes, rects)
            at += item.h + _V_GAP


class _Tree:
    """The graph's nodes and blocks as nested items, in declaration order."""

    def __init__(self, graph: Graph) -> None:
        self.nodes = {n.id: n for n in graph.nodes}
        self.blocks = {b.id: b for b in graph.blocks}
        self.undoes = {e.target: e.source for e in graph.edges if e.kind == "compensate"}
        self.contents: dict[str | None, list[tuple[bool, str]]] = {None: []}
        for node in graph.nodes:
            path: list[str] = []
            at = node.block
            while at is not None and at in self.blocks and at not in path:
                path.append(at)
                at = self.blocks[at].parent
            parent: str | None = None
            for block_id in reversed(path):
                if block_id not in self.contents:
                    self.contents[block_id] = []
                    self.contents[parent].append((False, block_id))
                parent = block_id
            self.contents[parent].append((True, node.id))

    def column(self, container: str | None) -> _Column:
        items: list[_Item] = []
        for is_node, ref in self.contents[container]:
            if is_node:
                if not self.attach(items, self.nodes[ref]):
                    items.append(_Leaf(self.nodes[ref]))
            else:
                items.append(self.block(ref))
        return _Column(items)

    def attach(self, items: list[_Item], node: GraphNode) -> bool:
        """Put a compensation beside the step it undoes (the item just before it)."""
        step = self.undoes.get(node.id)
        if node.kind != "compensation" or step is None or not items:
            return False
        last = items[-1]
        if isinstance(last, _Leaf) and last.node.id == step:
            last.side.append(node)
            return True
        return False

    def block(self, block_id: str) -> _Item:
        block = self.blocks[block_id]
        if block.kind != "parallel":
            return _Cluster(block, self.column(block_id))
        fork: _Leaf | None = None
        join: _Leaf | None = None
        branches: list[_Item] = []
        tail: list[_Item] = []
        for is_node, ref in self.contents[block_id]:
            if not is_node:
                branches.append(self.block(ref))
                continue
            node = self.nodes[ref]
            if node.kind == "fork" and fork is None and not branches:
                fork = _Leaf(node)
            elif node.kind == "join" and join is None:
                join = _Leaf(node)
            elif join is not None:
                tail.append(_Leaf(node))
            elif self.attach(branches, node):
                pass
            elif node.kind == "reducer" and branches and self.reduces(branches[-1], node):
                branches[-1] = _Column([branches[-1], _Leaf(node)])  # a foreach branch's into=
            else:
                branches.append(_Leaf(node))
        return _Parallel(block, fork, branches, join, tail)

    @staticmethod
    def reduces(item: _Item, node: GraphNode) -> bool:
        return isinstance(item, _Cluster) and node.info.get("reduces") == item.block.id


def _node_svg(node: GraphNode, box: _Box, index: int, state: NodeState | None) -> str:
    status = state.status if state is not None else "not-run"
    first, _, rest = node.label.partition("\n")
    detail = rest.replace("\n", ", ")
    title = node.label.replace("\n", " \u00b7 ")
    if state is not None and state.summary:
        title += f"\n{state.summary}"
    else:
        title += f"\n{status}"
    x, y, w, h = box.x, box.y, box.w, box.h
    kind = node.kind
    if kind in ("fork", "join"):
        shape = (
            f'<rect class="shape" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="3"/>'
        )
    elif kind == "reducer":
        s = 8.0
        points = f"{x + s:.1f},{y:.1f} {x + w:.1f},{y:.1f} {x + w - s:.1f},{y + h:.1f} {x:.1f},{y + h:.1f}"
        shape = f'<polygon class="shape" points="{points}"/>'
    else:
        rx = {"start": h / 2, "end": h / 2, "sleep": 14.0, "wait": 14.0}.get(kind, 6.0)
        shape = f'<rect class="shape" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{rx:.1f}"/>'
        if kind == "call":
            shape += f'<rect class="inner" x="{x + 3:.1f}" y="{y + 3:.1f}" width="{w - 6:.1f}" height="{h - 6:.1f}" rx="4"/>'
    text = ""
    if kind not in ("fork", "join"):
        cx = box.cx
        base = y + (19.0 if detail else h / 2 + 4)
        text = f'<text class="label" x="{cx:.1f}" y="{base:.1f}">{_e(_cut(first))}</text>'
        if detail:
            text += (
                f'<text class="detail" x="{cx:.1f}" y="{base + 13:.1f}">{_e(_cut(detail))}</text>'
            )
    body = f"<title>{_e(title)}</title>{shape}{text}"
    if state is not None and state.row is not None:
        body = f'<a href="#{_e(state.row)}">{body}</a>'
    return (
        f'<g class="node" id="node-{index}" data-node="{_e(node.id)}" data-kind="{_e(kind)}" '
        f'data-status="{_e(status)}">{body}</g>'
    )


def _cluster_svg(rect: _Rect) -> str:
    b, block = rect.box, rect.block
    return (
        f'<g class="cluster" data-kind="{_e(block.kind)}" data-block="{_e(block.id)}">'
        f"<title>{_e(block.label)}</title>"
        f'<rect x="{b.x:.1f}" y="{b.y:.1f}" width="{b.w:.1f}" height="{b.h:.1f}" rx="8"/>'
        f'<text x="{b.x + 8:.1f}" y="{b.y + 13:.1f}">{_e(_cut(block.label, 48))}</text></g>'
    )


def _edge_path(
    kind: str, source: _Box, target: _Box, source_node: GraphNode, lane: float
) -> tuple[str, tuple[float, float] | None]:
    """The path of one edge, and where its label goes (None: no label)."""
    if kind == "compensate":
        y = source.y + source.h / 2
        return f"M{source.x + source.w:.1f},{y:.1f} H{target.x:.1f}", None
    if kind == "route" or target.y < source.bottom:
        sy = source.y + source.h / 2
        ty = target.y + target.h / 2
        if source is target:  # a step that loops on itself: out above, back in below
            sy, ty = source.y + source.h * 0.3, source.y + source.h * 0.7
        d = f"M{source.x + source.w:.1f},{sy:.1f} H{lane:.1f} V{ty:.1f} H{target.x + target.w:.1f}"
        return d, (lane + 3, (sy + ty) / 2)
    sx = source.cx
    tx = target.cx
    if source_node.kind == "fork":
        sx = min(max(tx, source.x + 4), source.x + source.w - 4)
    sy, ty = source.bottom, target.y
    if abs(sx - tx) < 0.5:
        return f"M{sx:.1f},{sy:.1f} V{ty:.1f}", None
    if target.h == _BAR_H:  # into a join bar: straight down onto it
        tx = min(max(sx, target.x + 4), target.x + target.w - 4)
        if abs(sx - tx) < 0.5:
            return f"M{sx:.1f},{sy:.1f} V{ty:.1f}", None
    my = (sy + ty) / 2
    return f"M{sx:.1f},{sy:.1f} C{sx:.1f},{my:.1f} {tx:.1f},{my:.1f} {tx:.1f},{ty:.1f}", None


def graph_svg(graph: Graph, states: Mapping[str, NodeState]) -> str:
    """The graph as one ``<svg class="graph">`` element, each node coloured by its state."""
    tree = _Tree(graph)
    top = tree.column(None)
    top.measure()
    boxes: dict[str, _Box] = {}
    rects: list[_Rect] = []
    top.place(_MARGIN, _MARGIN, boxes, rects)
    nodes = {n.id: n for n in graph.nodes}
    right = max((b.x + b.w for b in boxes.values()), default=0.0)
    right = max(right, max((r.box.x + r.box.w for r in rects), default=0.0))
    lanes = 0
    edges: list[str] = []
    for edge in graph.edges:
        source, target = boxes.get(edge.source), boxes.get(edge.target)
        if source is None or target is None:
            continue
        lane = right + _LANE * (lanes + 1)
        d, at = _edge_path(edge.kind, source, target, nodes[edge.source], lane)
        if at is not None:
            lanes += 1
        marker = "" if edge.kind == "compensate" else ' marker-end="url(#fd-arrow)"'
        title = f"<title>{_e(edge.label)}</title>" if edge.label else ""
        edges.append(f'<path class="edge" data-kind="{edge.kind}" d="{d}"{marker}>{title}</path>')
        if at is not None and edge.label:
            edges.append(
                f'<text class="edge-label" x="{at[0]:.1f}" y="{at[1]:.1f}">{_e(edge.label)}</text>'
            )
    width = right + _LANE * lanes + (40.0 if lanes else 0.0) + _MARGIN
    height = max((b.bottom for b in boxes.values()), default=0.0) + _MARGIN
    parts = [
        f'<svg class="graph" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="{_e("graph of workflow " + graph.workflow)}">',
        '<defs><marker id="fd-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ]
    parts.extend(_cluster_svg(rect) for rect in rects)
    parts.extend(edges)
    for index, node in enumerate(graph.nodes):
        box = boxes.get(node.id)
        if box is not None:
            parts.append(_node_svg(node, box, index, states.get(node.id)))
    parts.append("</svg>")
    return "".join(parts)
