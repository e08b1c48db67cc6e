"""flowdsl's side of the durable-runs benchmark against DBOS (see bench_dbos.py).

The public API only: ``@workflow`` bodies of ``step(fn, name=...)`` and a
``parallel(into=...)`` block, run with ``arun_workflow(..., run_id=...,
store=store)`` on one `SQLiteStore`, and ``aresume_runs(store)`` after a
crash. The workflows are registered under fixed names at import, as an
application's are, so that a new process can resume them.

Settings: ``normal`` is ``SQLiteStore(path)`` as shipped (WAL,
``synchronous="normal"``), which is also the tuned setting; ``full`` is
``synchronous="full"`` (an fsync per commit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from _durable_worker import (
    CHAIN_STEPS,
    FANOUT_WIDTH,
    PAYLOAD,
    PAYLOAD_STEPS,
    WrongResult,
    blocked_step,
    step_log,
)

import flowdsl
from flowdsl import Run, SQLiteStore, aresume_runs, arun_workflow, ok, parallel, step, workflow

Step = Callable[[Any], Coroutine[Any, Any, Any]]

_store: SQLiteStore | None = None
_setting = ""


def _adder(index: int) -> Step:
    key = f"k{index}"

    async def add(ctx: Any) -> Any:
        return ok({key: index})

    return add


def _leaf(index: int) -> Step:
    async def leaf(ctx: Any) -> int:
        return index

    return leaf


def _sum_into(ctx: Any, results: Mapping[str, Any]) -> Any:
    return ok({"total": sum(result.value for result in results.values())})


async def _big(ctx: Any) -> Any:
    return ok({"payload": PAYLOAD})


def _recovering(index: int) -> Step:
    async def work(ctx: Any) -> Any:
        step_log(ctx["log"], index)
        await blocked_step(index)
        return ok({f"k{index}": index})

    return work


_adders = [_adder(i) for i in range(CHAIN_STEPS)]
_leaves = [_leaf(i) for i in range(FANOUT_WIDTH)]
_recovery_steps = [_recovering(i) for i in range(CHAIN_STEPS)]


@workflow("bench-durable-chain")
def chain_wf() -> None:
    for index, fn in enumerate(_adders):
        step(fn, name=f"s{index}")


@workflow("bench-durable-fanout")
def fanout_wf() -> None:
    with parallel(name="fan", into=_sum_into):
        for index, fn in enumerate(_leaves):
            step(fn, name=f"n{index}")


@workflow("bench-durable-payload")
def payload_wf() -> None:
    for index in range(PAYLOAD_STEPS):
        step(_big, name=f"p{index}")


@workflow("bench-durable-recover")
def recover_wf() -> None:
    for index, fn in enumerate(_recovery_steps):
        step(fn, name=f"r{index}")


def version() -> str:
    return f"flowdsl {getattr(flowdsl, '__version__', '(repo)')}"


def settings() -> dict[str, str]:
    return {"journal_mode": "wal", "synchronous": _setting}


async def start(setting: str, path: str) -> None:
    global _store, _setting
    if setting not in ("normal", "full"):
        msg = f"unknown flowdsl setting {setting!r}; use 'normal' or 'full'"
        raise ValueError(msg)
    _setting = setting
    # The default store is the tuned one: say nothing for "normal", as a user would.
    _store = SQLiteStore(path) if setting == "normal" else SQLiteStore(path, synchronous="full")


async def stop() -> None:
    if _store is not None:
        _store.close()


def _opened() -> SQLiteStore:
    if _store is None:
        msg = "start() first"
        raise RuntimeError(msg)
    return _store


def _completed(run: Run) -> Mapping[str, Any]:
    if run.status != "completed":
        msg = f"flowdsl run {run.run_id} {run.status}: {run.error!r}"
        raise WrongResult(msg)
    return run.output


def _check_chain(output: Mapping[str, Any]) -> None:
    if any(output.get(f"k{i}") != i for i in range(CHAIN_STEPS)):
        msg = f"chain output {dict(output)!r} lacks k0..k{CHAIN_STEPS - 1}"
        raise WrongResult(msg)


async def chain(run_id: str) -> None:
    _check_chain(_completed(await arun_workflow(chain_wf, run_id=run_id, store=_opened())))


async def concurrent(prefix: str, runs: int) -> None:
    store = _opened()
    done = await asyncio.gather(
        *(arun_workflow(chain_wf, run_id=f"{prefix}-{i}", store=store) for i in range(runs))
    )
    for run in done:
        _check_chain(_completed(run))


async def fanout(run_id: str) -> None:
    output = _completed(await arun_workflow(fanout_wf, run_id=run_id, store=_opened()))
    expected = FANOUT_WIDTH * (FANOUT_WIDTH - 1) // 2
    if output.get("total") != expected:
        msg = f"fan-out total {output.get('total')!r}, expected {expected}"
        raise WrongResult(msg)


async def payload(run_id: str) -> None:
    output = _completed(await arun_workflow(payload_wf, run_id=run_id, store=_opened()))
    value = output["payload"]
    if len(value) != len(PAYLOAD) or value[-1]["sku"] != PAYLOAD[-1]["sku"]:
        msg = "the payload workflow's output is not the payload"
        raise WrongResult(msg)


async def crash(run_id: str, log: str) -> None:
    await arun_workflow(recover_wf, {"log": log}, run_id=run_id, store=_opened())


async def recover(run_id: str, log: str) -> None:
    runs = await aresume_runs(_opened())
    if [run.run_id for run in runs] != [run_id]:
        msg = f"resumed {[run.run_id for run in runs]}, expected [{run_id!r}]"
        raise WrongResult(msg)
    _check_chain(_completed(runs[0]))
