"""stageflow-core (pinned in benchmarks/run.py), written the way its README shows.

* Stages are plain async functions ``fn(ctx: StageContext) -> dict`` (the
  builder also takes stage classes, which it instantiates on every run: slower).
* The pipeline is declared with ``Pipeline.from_stages(stage(...), ...)`` and
  compiled once with ``.build()`` (default interceptors); a run is
  ``await graph.run(PipelineContext.create(...))``.
* A stage only sees the outputs of the stages it declares as dependencies, so
  a chain's context is each stage's one-key output, merged from the results.
* A layer boundary is a join stage, as for grafo: layer k -> join -> layer k+1.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version as _dist_version

from stageflow.api import Pipeline, PipelineContext, StageKind, stage

NAME = "stageflow"
KIND = StageKind.TRANSFORM


def version() -> str:
    return f"stageflow-core {_dist_version('stageflow-core')}"


def _build(specs: list, name: str):
    return Pipeline.from_stages(*specs, name=name).build()


async def _run(graph, name: str):
    return await graph.run(PipelineContext.create(topology=name, data={"input": 1}))


# -- W1 fan-out / fan-in -----------------------------------------------------


async def _root(ctx) -> dict:
    return {"base": 0}


def _make_leaf(i: int):
    async def leaf(ctx) -> dict:
        return {"v": ctx.inputs.get_from("root", "base") + i}

    return leaf


async def _sum(ctx) -> dict:
    return {"total": sum(out.data["v"] for out in ctx.inputs.prior_outputs.values())}


def build_fanout(n: int):
    leaves = [f"n{i}" for i in range(n)]
    specs = [stage("root", _root, KIND)]
    specs += [stage(name, _make_leaf(i), KIND, after="root") for i, name in enumerate(leaves)]
    specs.append(stage("sink", _sum, KIND, dependencies=leaves))
    return _build(specs, "fanout")


async def run_fanout(graph) -> int:
    results = await _run(graph, "fanout")
    return results.data("sink")["total"]


# -- W2 chain ----------------------------------------------------------------


def _make_step(i: int):
    key = f"k{i}"

    async def add_key(ctx) -> dict:
        return {key: i}

    return add_key


def build_chain(n: int):
    specs = [stage("s0", _make_step(0), KIND)]
    specs += [stage(f"s{i}", _make_step(i), KIND, after=f"s{i - 1}") for i in range(1, n)]
    return _build(specs, "chain")


async def run_chain(graph) -> dict:
    results = await _run(graph, "chain")
    ctx: dict = {"input": 1}
    for output in results.values():
        ctx.update(output.data)
    return ctx


# -- W3 sleeping branches ----------------------------------------------------


def build_sleep(n: int, delay: float):
    async def sleeper(ctx) -> dict:
        await asyncio.sleep(delay)
        return {"done": 1}

    return _build([stage(f"b{i}", sleeper, KIND) for i in range(n)], "sleep")


async def run_sleep(graph) -> int:
    results = await _run(graph, "sleep")
    return sum(output.data["done"] for output in results.values())


# -- W4 layered DAG ----------------------------------------------------------


def _make_node(j: int):
    async def node(ctx) -> dict:
        return {"v": j}

    return node


async def _join(ctx) -> dict:
    return {"sum": sum(out.data["v"] for out in ctx.inputs.prior_outputs.values())}


def build_layers(layers: int, width: int):
    specs = []
    previous_join: str | None = None
    for layer in range(layers):
        names = [f"l{layer}n{j}" for j in range(width)]
        for j, name in enumerate(names):
            if previous_join is None:
                specs.append(stage(name, _make_node(j), KIND))
            else:
                specs.append(stage(name, _make_node(j), KIND, after=previous_join))
        previous_join = f"join{layer}"
        specs.append(stage(previous_join, _join, KIND, dependencies=names))
    return _build(specs, "layers")


async def run_layers(graph) -> dict:
    results = await _run(graph, "layers")
    ctx: dict = {"input": 1}
    layer = 0
    while f"join{layer}" in results:
        ctx[f"layer{layer}"] = results.data(f"join{layer}")["sum"]
        layer += 1
    return ctx
