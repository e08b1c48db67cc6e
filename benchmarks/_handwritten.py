"""The step bodies and builders shared by the two hand-written asyncio baselines.

`impl_taskgroup` and `impl_plain` differ only in how they schedule these
bodies, so both time exactly the same work.
"""

from __future__ import annotations

import asyncio
import sys


def version() -> str:
    return f"asyncio (CPython {sys.version.split()[0]})"


async def root() -> int:
    return 0


async def leaf(base: int, i: int) -> int:
    return base + i


def build_fanout(n: int) -> int:
    return n


def _make_step(i: int):
    key = f"k{i}"

    async def add_key(ctx: dict) -> dict:
        return {key: i}

    return add_key


def build_chain(n: int) -> list:
    return [_make_step(i) for i in range(n)]


async def sleeper(delay: float) -> int:
    await asyncio.sleep(delay)
    return 1


def build_sleep(n: int, delay: float) -> tuple[int, float]:
    return n, delay


async def node(j: int) -> int:
    return j


def build_layers(layers: int, width: int) -> tuple[int, int]:
    return layers, width
