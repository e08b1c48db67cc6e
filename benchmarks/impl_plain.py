"""Baseline: hand-written asyncio with no task per step.

A chain is plain ``await`` calls; a fan-out is ``asyncio.gather`` over the
coroutines (gather wraps each coroutine in a task, as any concurrent run must).
"""

from __future__ import annotations

import asyncio
import sys

NAME = "plain"


def version() -> str:
    return f"asyncio (CPython {sys.version.split()[0]})"


# -- W1 fan-out / fan-in -----------------------------------------------------


async def _root() -> int:
    return 0


async def _leaf(base: int, i: int) -> int:
    return base + i


def build_fanout(n: int) -> int:
    return n


async def run_fanout(n: int) -> int:
    base = await _root()
    return sum(await asyncio.gather(*[_leaf(base, i) for i in range(n)]))


# -- W2 chain ----------------------------------------------------------------


def _make_step(i: int):
    key = f"k{i}"

    async def add_key(ctx: dict) -> dict:
        return {key: i}

    return add_key


def build_chain(n: int) -> list:
    return [_make_step(i) for i in range(n)]


async def run_chain(steps: list) -> dict:
    ctx = {"input": 1}
    for fn in steps:
        ctx.update(await fn(ctx))
    return ctx


# -- W3 sleeping branches ----------------------------------------------------


async def _sleeper(delay: float) -> int:
    await asyncio.sleep(delay)
    return 1


def build_sleep(n: int, delay: float) -> tuple[int, float]:
    return n, delay


async def run_sleep(built: tuple[int, float]) -> int:
    n, delay = built
    return sum(await asyncio.gather(*[_sleeper(delay) for _ in range(n)]))


# -- W4 layered DAG ----------------------------------------------------------


async def _node(j: int) -> int:
    return j


def build_layers(layers: int, width: int) -> tuple[int, int]:
    return layers, width


async def run_layers(built: tuple[int, int]) -> dict:
    layers, width = built
    ctx: dict = {"input": 1}
    for layer in range(layers):
        ctx[f"layer{layer}"] = sum(await asyncio.gather(*[_node(j) for j in range(width)]))
    return ctx
