"""Managing durable runs: `cancel_run`, `retry_run` and `prune_runs` (and their async forms).

Each takes the store as an object or a URL (a URL must name a store that
exists: these never create one) and returns once its write is committed.

* Cancelling commits a request in the run's row (and its unfinished child
  runs', recursively). A queued or parked run is cancelled at once; a
  running one is stopped by its owner, which finds the request at its next
  lease renewal (a third of the lease) or, on PostgreSQL, at once from a
  notification: its run call returns the `Run` with status "cancelled".
* Retrying queues a new run that starts with part of the original's journal
  (`stores._retry` says which part).
* Pruning deletes ended runs with their journals and mailboxes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ._checks import require, seconds_problem
from ._engine._clock import clock
from ._engine._options import no_running_loop
from .errors import UsageError
from .stores import open_store
from .stores._retry import picker
from .stores._rows import ENDED, check_statuses

__all__ = [
    "acancel_run",
    "aprune_runs",
    "aretry_run",
    "cancel_run",
    "prune_runs",
    "retry_run",
]


def _check_run_id(run_id: object, call: str) -> str:
    if isinstance(run_id, str) and run_id:
        return run_id
    msg = f"{call}() takes the run's id (a non-empty str) first, got {run_id!r}"
    raise UsageError(msg)


async def acancel_run(run_id: str, store: object) -> None:
    """`cancel_run` on the running event loop."""
    rid = _check_run_id(run_id, "cancel_run")
    opened, owned = open_store(store, must_exist=True)
    try:
        await opened.cancel(rid)
    finally:
        if owned:
            opened.close()


def cancel_run(run_id: str, store: object) -> None:
    """Cancel the durable run `run_id` for good; returns once the request is committed.

    A queued or parked (waiting) run is "cancelled" at once and never starts
    again. A running one stops within one lease interval wherever it runs:
    its owner finds the request when it renews the run's lease (every third
    of the lease; on PostgreSQL a notification tells it at once), cancels the
    run's task, and records the run as "cancelled"; the owner's call
    (`run_workflow`, `arun_workflow`, a worker) returns that `Run` rather than
    raising. No compensation runs. The run's unfinished child runs
    (`call_workflow`) are cancelled with it, recursively. A run cancelled this
    way is final: asked for by its ``run_id`` it returns its recorded `Run`;
    `retry_run` runs it again. (A run whose caller was interrupted is
    "cancelled" too, but resumes when asked for; cancelling it makes it final.)

    An unknown run id raises `flowdsl.errors.RunNotFound`; a run that has
    ended (completed, failed, or cancelled by this already) is a `UsageError`.
    `store` is a store object or URL. Inside a running event loop use
    ``await acancel_run(...)``.
    """
    no_running_loop("cancel_run", "acancel_run")
    asyncio.run(acancel_run(run_id, store))


async def aretry_run(run_id: str, store: object, from_step: str | None = None) -> str:
    """`retry_run` on the running event loop."""
    rid = _check_run_id(run_id, "retry_run")
    if from_step is not None and not (isinstance(from_step, str) and from_step):
        msg = f"from_step= takes a top-level step's name (a non-empty str), or None; got {from_step!r}"
        raise UsageError(msg)
    opened, owned = open_store(store, must_exist=True)
    try:
        return await opened.retry(rid, picker(rid, from_step), clock().now())
    finally:
        if owned:
            opened.close()


def retry_run(run_id: str, store: object, from_step: str | None = None) -> str:
    """Queue a new run of the ended run `run_id` that reuses its journal; the new run's id.

    The new run, ``"{run_id}.retry{n}"`` (n = 1, 2, ...: the first free), is
    queued as `start_workflow` queues (on the original's queue, with its
    priority), so a worker runs it; ``run_workflow(workflow, run_id=new_id,
    store=store)`` runs it here. It has the original's input and workflow
    definition (a worker, or a run call, needs that same definition), and no
    parent run. It starts with the original's journaled outcomes, which are
    not run again:

    * by default, of every step the original completed, except those whose
      compensation ran (they run again), and except the reducers of blocks
      with something inside that runs again;
    * with ``from_step=NAME`` (a top-level step, block, wait or child call),
      of what the original did before it first reached NAME, as it did it;
      NAME and what follows run again. A NAME that is not a top-level node
      of the workflow, or that the original never reached, is a `UsageError`
      listing the ones it may be.

    A step that runs again has a fresh retry budget. The original is not
    changed. The run must have ended (completed, failed or cancelled; else
    `UsageError`); an unknown run id raises `flowdsl.errors.RunNotFound`.
    The workflow need not be imported here: the store keeps its definition.
    """
    no_running_loop("retry_run", "aretry_run")
    return asyncio.run(aretry_run(run_id, store, from_step))


def _statuses(status: object) -> tuple[str, ...]:
    statuses = check_statuses(status)
    if statuses is None:
        return ENDED
    unended = [s for s in statuses if s not in ENDED]
    if unended:
        msg = (
            f"prune_runs() deletes ended runs only, never {', '.join(map(repr, unended))} "
            f"ones: status= takes 'completed', 'failed' or 'cancelled' (one, or a tuple), "
            f"or None for all three"
        )
        raise UsageError(msg)
    return statuses


async def aprune_runs(store: object, *, older_than: float, status: Any = None) -> int:
    """`prune_runs` on the running event loop."""
    require(seconds_problem(older_than, "older_than=", optional=False, zero=True))
    statuses = _statuses(status)
    cut = time.time() - float(older_than)
    opened, owned = open_store(store, must_exist=True)
    try:
        return await opened.prune(cut, statuses)
    finally:
        if owned:
            opened.close()


def prune_runs(store: object, *, older_than: float, status: Any = None) -> int:
    """Delete the runs that ended more than `older_than` seconds ago; how many were deleted.

    `status` None deletes every ended status ("completed", "failed" and
    "cancelled"); or one of them, or a tuple. A run's journal and its
    mailbox (events sent to it, its children's ``child_finished`` notices)
    go with it. Queued, running and waiting runs are never deleted. When a
    run ended is when its status last changed (its final record, its
    cancellation), on the clock of the process that wrote it.
    """
    no_running_loop("prune_runs", "aprune_runs")
    return asyncio.run(aprune_runs(store, older_than=older_than, status=status))
