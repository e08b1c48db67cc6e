"""DBOS Transact's side of the durable-runs benchmark (see bench_dbos.py).

Runs in benchmarks/.venvs/dbos (the ``dbos`` package pinned in bench_dbos.py),
never in the project's environment. Written the way DBOS's documentation shows:
``@DBOS.workflow()`` and ``@DBOS.step()`` on ``async def`` functions, one
``DBOS(config=...)`` per process, ``DBOS.launch()``, a workflow called with
``SetWorkflowID`` for its id, and recovery left to ``DBOS.launch()`` (it
recovers the pending workflows of this executor). A fan-out is DBOS's way of
running steps concurrently in an async workflow: every step started as a task,
in a fixed order, then ``asyncio.gather``.

Settings, all on a SQLite system database (``system_database_url``):

* ``shipped``: the config holds only ``name`` and ``system_database_url``:
  SQLite's defaults (a rollback journal, ``synchronous=FULL``);
* ``tuned``: every connection DBOS opens gets ``PRAGMA journal_mode=WAL`` and
  ``PRAGMA synchronous=NORMAL``, from an SQLAlchemy ``connect`` listener;
* ``json``: ``tuned`` with DBOS's JSON serializer (``DBOSPortableJSONSerializer``)
  instead of its default, pickle.

The journal mode and synchronous level that DBOS's connections really had are
read back and reported.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version as dist_version
from typing import Any

import sqlalchemy
from _durable_worker import (
    CHAIN_STEPS,
    FANOUT_WIDTH,
    PAYLOAD,
    PAYLOAD_STEPS,
    WrongResult,
    blocked_step,
    step_log,
)
from dbos import (
    DBOS,
    DBOSConfig,
    DBOSPortableJSONSerializer,
    SetWorkflowID,
    WorkflowHandleAsync,
)
from sqlalchemy import event

SYNCHRONOUS = {0: "off", 1: "normal", 2: "full", 3: "extra"}

_seen: set[tuple[str, str]] = set()
_setting = ""


@DBOS.step()
async def add(index: int) -> int:
    return index


@DBOS.workflow()
async def chain_wf() -> int:
    total = 0
    for index in range(CHAIN_STEPS):
        total += await add(index)
    return total


@DBOS.step()
async def leaf(index: int) -> int:
    return index


@DBOS.workflow()
async def fanout_wf() -> int:
    tasks = [asyncio.create_task(leaf(index)) for index in range(FANOUT_WIDTH)]
    return sum(await asyncio.gather(*tasks))


@DBOS.step()
async def big() -> list[dict[str, Any]]:
    return PAYLOAD


@DBOS.workflow()
async def payload_wf() -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = []
    for _ in range(PAYLOAD_STEPS):
        value = await big()
    return value


@DBOS.step()
async def work(index: int, log: str) -> int:
    step_log(log, index)
    await blocked_step(index)
    return index


@DBOS.workflow()
async def recover_wf(log: str) -> int:
    total = 0
    for index in range(CHAIN_STEPS):
        total += await work(index, log)
    return total


def _tune(dbapi_conn: Any, connection_record: Any) -> None:
    dbapi_conn.execute("PRAGMA journal_mode=WAL")
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")


def _observe(dbapi_conn: Any, connection_record: Any) -> None:
    mode = dbapi_conn.execute("PRAGMA journal_mode").fetchone()[0]
    level = dbapi_conn.execute("PRAGMA synchronous").fetchone()[0]
    _seen.add((str(mode).lower(), SYNCHRONOUS.get(level, str(level))))


def version() -> str:
    return f"dbos {dist_version('dbos')} (SQLAlchemy {dist_version('sqlalchemy')})"


def settings() -> dict[str, str]:
    modes = sorted(_seen)
    return {
        "journal_mode": ",".join(sorted({m for m, _ in modes})) or "?",
        "synchronous": ",".join(sorted({s for _, s in modes})) or "?",
        "serializer": "portable_json" if _setting == "json" else "pickle (default)",
    }


async def start(setting: str, path: str) -> None:
    global _setting
    if setting not in ("shipped", "tuned", "json"):
        msg = f"unknown DBOS setting {setting!r}; use 'shipped', 'tuned' or 'json'"
        raise ValueError(msg)
    _setting = setting
    if setting != "shipped":
        event.listen(sqlalchemy.engine.Engine, "connect", _tune)
    event.listen(sqlalchemy.engine.Engine, "connect", _observe)  # after _tune: reads it back
    config: DBOSConfig = {"name": "flowdsl-bench", "system_database_url": f"sqlite:///{path}"}
    if setting == "json":
        config["serializer"] = DBOSPortableJSONSerializer()
    DBOS(config=config)
    DBOS.launch()


async def stop() -> None:
    DBOS.destroy()


async def _chain(run_id: str) -> None:
    with SetWorkflowID(run_id):
        total = await chain_wf()
    expected = CHAIN_STEPS * (CHAIN_STEPS - 1) // 2
    if total != expected:
        msg = f"chain total {total!r}, expected {expected}"
        raise WrongResult(msg)


async def chain(run_id: str) -> None:
    await _chain(run_id)


async def concurrent(prefix: str, runs: int) -> None:
    await asyncio.gather(*(_chain(f"{prefix}-{i}") for i in range(runs)))


async def fanout(run_id: str) -> None:
    with SetWorkflowID(run_id):
        total = await fanout_wf()
    expected = FANOUT_WIDTH * (FANOUT_WIDTH - 1) // 2
    if total != expected:
        msg = f"fan-out total {total!r}, expected {expected}"
        raise WrongResult(msg)


async def payload(run_id: str) -> None:
    with SetWorkflowID(run_id):
        value = await payload_wf()
    if len(value) != len(PAYLOAD) or value[-1]["sku"] != PAYLOAD[-1]["sku"]:
        msg = "the payload workflow's result is not the payload"
        raise WrongResult(msg)


async def crash(run_id: str, log: str) -> None:
    with SetWorkflowID(run_id):
        await recover_wf(log)


async def recover(run_id: str, log: str) -> None:
    # DBOS.launch() (in start) has begun recovering the pending workflow; wait for its
    # result, polling the system database every 2 ms (the default is once a second).
    handle: WorkflowHandleAsync[int] = await DBOS.retrieve_workflow_async(run_id)
    total = await handle.get_result(polling_interval_sec=0.002)
    expected = CHAIN_STEPS * (CHAIN_STEPS - 1) // 2
    if total != expected:
        msg = f"recovered total {total!r}, expected {expected}"
        raise WrongResult(msg)
