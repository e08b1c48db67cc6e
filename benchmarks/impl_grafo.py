"""grafo (pinned in benchmarks/run.py), written the way its README shows.

* Nodes are typed (``Node[int](...)``): an untyped node logs a warning on every
  run ("no expected type"), which a user would silence this way.
* The default per-node timeout (60 s) is kept: ``timeout=None`` logs a warning
  per node, so a user keeps the default (it wraps every node in ``wait_for``).
* Fan-in uses the README's "manual forwarding": a kwarg given as a lambda is
  evaluated when the node starts, here to collect the parents' outputs.
* A chain forwards the context from node to node (``connect(forward="ctx")``).
* A layer boundary is a join node: all of layer k -> join -> all of layer k+1
  (the dense 100 x 100 edge set between layers would be 10,000 edges a layer).
"""

from __future__ import annotations

import asyncio
import itertools
from importlib.metadata import version as _dist_version

from grafo import Node, TreeExecutor

NAME = "grafo"
REUSABLE = False  # a grafo graph runs once; steady-state cases are not run


def version() -> str:
    return f"grafo {_dist_version('grafo')}"


# -- W1 fan-out / fan-in -----------------------------------------------------


async def _root() -> int:
    return 0


async def _leaf(base: int, i: int) -> int:
    return base + i


async def _sum(values: list[int]) -> int:
    return sum(values)


async def build_fanout(n: int) -> tuple[TreeExecutor, Node]:
    root = Node[int](coroutine=_root, uuid="root")
    leaves = [Node[int](coroutine=_leaf, kwargs={"i": i}, uuid=f"n{i}") for i in range(n)]
    sink = Node[int](
        coroutine=_sum,
        kwargs={"values": lambda: [leaf.output for leaf in leaves]},
        uuid="sink",
    )
    for leaf in leaves:
        await root.connect(leaf, forward="base")
        await leaf.connect(sink)
    return TreeExecutor(uuid="fanout", roots=[root]), sink


async def run_fanout(built: tuple[TreeExecutor, Node]) -> int:
    executor, sink = built
    await executor.run()
    if executor.errors:
        raise executor.errors[0]
    return sink.output


# -- W2 chain ----------------------------------------------------------------


def _make_step(i: int):
    key = f"k{i}"

    async def add_key(ctx: dict) -> dict:
        ctx[key] = i
        return ctx

    return add_key


async def build_chain(n: int) -> tuple[TreeExecutor, Node]:
    nodes = [Node[dict](coroutine=_make_step(i), uuid=f"s{i}") for i in range(n)]
    nodes[0].kwargs["ctx"] = {"input": 1}
    for parent, child in itertools.pairwise(nodes):
        await parent.connect(child, forward="ctx")
    return TreeExecutor(uuid="chain", roots=[nodes[0]]), nodes[-1]


async def run_chain(built: tuple[TreeExecutor, Node]) -> dict:
    executor, last = built
    await executor.run()
    if executor.errors:
        raise executor.errors[0]
    return last.output


# -- W3 sleeping branches ----------------------------------------------------


def build_sleep(n: int, delay: float) -> TreeExecutor:
    async def sleeper() -> int:
        await asyncio.sleep(delay)
        return 1

    roots = [Node[int](coroutine=sleeper, uuid=f"b{i}") for i in range(n)]
    return TreeExecutor(uuid="sleep", roots=roots)


async def run_sleep(executor: TreeExecutor) -> int:
    await executor.run()
    if executor.errors:
        raise executor.errors[0]
    return sum(node.output for node in executor.roots)


# -- W4 layered DAG ----------------------------------------------------------


async def _node(j: int) -> int:
    return j


async def build_layers(layers: int, width: int) -> tuple[TreeExecutor, list[Node]]:
    joins: list[Node] = []
    roots: list[Node] = []
    previous_join: Node | None = None
    for layer in range(layers):
        nodes = [
            Node[int](coroutine=_node, kwargs={"j": j}, uuid=f"l{layer}n{j}") for j in range(width)
        ]
        join = Node[int](
            coroutine=_sum,
            kwargs={"values": lambda nodes=nodes: [node.output for node in nodes]},
            uuid=f"join{layer}",
        )
        for node in nodes:
            if previous_join is None:
                roots.append(node)
            else:
                await previous_join.connect(node)
            await node.connect(join)
        joins.append(join)
        previous_join = join
    return TreeExecutor(uuid="layers", roots=roots), joins


async def run_layers(built: tuple[TreeExecutor, list[Node]]) -> dict:
    executor, joins = built
    await executor.run()
    if executor.errors:
        raise executor.errors[0]
    ctx: dict = {"input": 1}
    for layer, join in enumerate(joins):
        ctx[f"layer{layer}"] = join.output
    return ctx
