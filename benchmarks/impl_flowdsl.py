"""flowdsl, written against its public API (README, docs/).

Workflows are built programmatically: the ``@workflow`` body loops and records
``step(fn, name=...)`` calls, and ``with parallel(into=...)`` blocks whose
reducer folds the branch results into the context. Every build registers a
workflow under a fresh name (the registry rejects two workflows with one name).

Importing this module raises ImportError while the engine is not there; the
harness then reports flowdsl as "not available".
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Mapping

import flowdsl
from flowdsl import ok, parallel, step, workflow
from flowdsl._define import _registry

NAME = "flowdsl"

_counter = itertools.count()


def version() -> str:
    return f"flowdsl {getattr(flowdsl, '__version__', '(repo)')}"


def _define(kind: str, nodes: int, body):
    # Each build is a throwaway: run by object, then dropped from the registry so
    # repeated builds do not accumulate.
    name = f"bench-{kind}-{nodes}-{os.getpid()}-{next(_counter)}"
    wf = workflow(name)(body)
    _registry.unregister(name)
    return wf


async def _arun(wf, payload: dict):
    arun = getattr(wf, "arun", None)
    if arun is not None:
        run = await arun(payload)
    else:
        run = await flowdsl.arun_workflow(wf, payload)
    if run.status != "completed":
        raise RuntimeError(f"flowdsl run {run.status}: {run.error!r} (step {run.failed_step})")
    return run.output


def _values(results: Mapping) -> list:
    """Branch values from an ``into`` reducer's ``results`` (key -> Ok(value))."""
    return [r.value for r in results.values()]


# -- W1 fan-out / fan-in -----------------------------------------------------


async def _root(ctx) -> object:
    return ok({"base": 0})


def _make_leaf(i: int):
    async def leaf(ctx) -> int:
        return ctx["base"] + i

    return leaf


def _sum_into(ctx, results) -> object:
    return ok({"total": sum(_values(results))})


def build_fanout(n: int):
    leaves = [_make_leaf(i) for i in range(n)]

    def body() -> None:
        step(_root, name="root")
        with parallel(name="fan", into=_sum_into):
            for i, leaf in enumerate(leaves):
                step(leaf, name=f"n{i}")

    return _define("fanout", n, body)


async def run_fanout(wf) -> int:
    return (await _arun(wf, {"input": 1}))["total"]


# -- W2 chain ----------------------------------------------------------------


def _make_step(i: int):
    key = f"k{i}"

    async def add_key(ctx) -> object:
        return ok({key: i})

    return add_key


def build_chain(n: int):
    fns = [_make_step(i) for i in range(n)]

    def body() -> None:
        for i, fn in enumerate(fns):
            step(fn, name=f"s{i}")

    return _define("chain", n, body)


async def run_chain(wf) -> Mapping:
    return await _arun(wf, {"input": 1})


# -- W3 sleeping branches ----------------------------------------------------


def _count_into(ctx, results) -> object:
    return ok({"done": sum(_values(results))})


def build_sleep(n: int, delay: float):
    async def sleeper(ctx) -> int:
        await asyncio.sleep(delay)
        return 1

    def body() -> None:
        with parallel(name="sleepers", into=_count_into):
            for i in range(n):
                step(sleeper, name=f"b{i}")

    return _define("sleep", n, body)


async def run_sleep(wf) -> int:
    return (await _arun(wf, {"input": 1}))["done"]


# -- W4 layered DAG ----------------------------------------------------------


def _make_node(j: int):
    async def node(ctx) -> int:
        return j

    return node


def _make_layer_into(layer: int):
    key = f"layer{layer}"

    def into(ctx, results) -> object:
        return ok({key: sum(_values(results))})

    return into


def build_layers(layers: int, width: int):
    nodes = [_make_node(j) for j in range(width)]

    def body() -> None:
        for layer in range(layers):
            with parallel(name=f"layer{layer}", into=_make_layer_into(layer)):
                for j, node in enumerate(nodes):
                    step(node, name=f"l{layer}n{j}")

    return _define("layers", layers * width, body)


async def run_layers(wf) -> Mapping:
    return await _arun(wf, {"input": 1})
