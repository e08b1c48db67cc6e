"""Baseline: hand-written asyncio with no task per step.

A chain is plain ``await`` calls; a fan-out is ``asyncio.gather`` over the
coroutines (gather wraps each coroutine in a task, as any concurrent run must).
"""

from __future__ import annotations

import asyncio

from _handwritten import (  # the same bodies as impl_taskgroup
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

NAME = "plain"

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
    return sum(await asyncio.gather(*[leaf(base, i) for i in range(n)]))


async def run_chain(steps: list) -> dict:
    ctx = {"input": 1}
    for fn in steps:
        ctx.update(await fn(ctx))
    return ctx


async def run_sleep(built: tuple[int, float]) -> int:
    n, delay = built
    return sum(await asyncio.gather(*[sleeper(delay) for _ in range(n)]))


async def run_layers(built: tuple[int, int]) -> dict:
    layers, width = built
    ctx: dict = {"input": 1}
    for layer in range(layers):
        ctx[f"layer{layer}"] = sum(await asyncio.gather(*[node(j) for j in range(width)]))
    return ctx
