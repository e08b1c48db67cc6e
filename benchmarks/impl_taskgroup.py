"""Baseline: hand-written asyncio with one task per node, in an asyncio.TaskGroup.

This is what an engine that starts one task per node costs at the very least:
fan-outs and layers are TaskGroups, and a chain awaits one task per step.
"""

from __future__ import annotations

import asyncio

from _handwritten import (  # the same bodies as impl_plain
    build_chain,
    build_fanout,
    build_layers,
    build_sleep,
    leaf,
    node,
    root,
    sleeper,
    version,
)

NAME = "taskgroup"

__all__ = [
    "build_chain",
    "build_fanout",
    "build_layers",
    "build_sleep",
    "run_chain",
    "run_fanout",
    "run_layers",
    "run_sleep",
    "version",
]


async def run_fanout(n: int) -> int:
    base = await root()
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(leaf(base, i)) for i in range(n)]
    return sum(t.result() for t in tasks)


async def run_chain(steps: list) -> dict:
    ctx = {"input": 1}
    async with asyncio.TaskGroup() as tg:
        for fn in steps:
            ctx.update(await tg.create_task(fn(ctx)))
    return ctx


async def run_sleep(built: tuple[int, float]) -> int:
    n, delay = built
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(sleeper(delay)) for _ in range(n)]
    return sum(t.result() for t in tasks)


async def run_layers(built: tuple[int, int]) -> dict:
    layers, width = built
    ctx: dict = {"input": 1}
    for layer in range(layers):
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(node(j)) for j in range(width)]
        ctx[f"layer{layer}"] = sum(t.result() for t in tasks)
    return ctx
