"""The `Store` protocol: what a durable run needs from the place its journal lives.

A store holds one row per run (its workflow, definition fingerprint, input,
status, owner and lease, the run that started it if any, and once finished
its output) and one row per
journal entry (a finished step attempt, a reducer's outcome, a compensation).
Payloads cross this boundary as JSON text made by `_codec`, so every store
shares one format and none of them ever unpickles anything.

**Leases.** A run is executed by one owner at a time. Claiming it (`open_run`)
records the owner (`_owner.owner_token`: host, PID namespace, pid, start time), an
expiry that the owner keeps renewing, and a fencing number (`Claim.epoch`)
that every claim increments. Every journal write names its claim and commits
only while the run's row still holds it, so an owner that lost its run
(paused past its lease, partitioned) can never commit anything for it after
another process took it over. A run is claimable when it has no owner, when
its lease expired, or at once when its owner is known dead (same host and PID
namespace, process gone). `SQLiteStore` (`_sqlite`) is the embedded
implementation; a server-backed store implements the same methods.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol, TypeAlias, runtime_checkable

import attrs

from .._engine._run import Run, RunStatus, Waiting
from .._engine._seams import STEP
from ..errors import StoreError

__all__ = [
    "Attempt",
    "Claim",
    "ClaimRequest",
    "Definition",
    "Ending",
    "Opened",
    "Pending",
    "Pick",
    "QueueLimits",
    "RunHeader",
    "Store",
    "Ticket",
]


@attrs.frozen
class RunHeader:
    """What a run call asks the store for: create this run, or claim it to resume."""

    run_id: str
    workflow: str
    fingerprint: str
    shape: tuple[str, ...]
    input: str
    """JSON."""
    started: float
    parent_id: str | None = attrs.field(default=None, kw_only=True)
    """The run that started this one with ``call_workflow``, else None (recorded when the
    run is created; a run the store holds already keeps what it recorded)."""
    graph: str | None = attrs.field(default=None, kw_only=True, repr=False)
    """The workflow's graph as JSON (``Graph.to_json``), or None. A store keeps the first
    it is given for each `fingerprint` (later ones change nothing), for the run viewer."""
    journal: tuple[Attempt, ...] = attrs.field(default=(), kw_only=True)
    """Journal entries the store commits with the run when it creates it (a queued run's
    trace parent); none is written for a run the store holds already."""


@attrs.frozen
class Definition:
    """The definition a run was started with, as the store keeps it (`Store.get_definition`)."""

    workflow: str
    fingerprint: str
    shape: tuple[str, ...]
    """One line per node of the plan (`Plan.shape`): what the fingerprint covers."""
    graph: str | None
    """The workflow's graph as JSON (``Graph.to_json``), kept for the fingerprint when its
    first run started; None when the store has none (a run recorded by an older release)."""


@attrs.frozen
class Attempt:
    """One journal entry: a finished attempt of one visit of a step (or reducer, compensation)."""

    step: str
    """The step's name (a block's, for a reducer; the undone step's, for a compensation)."""
    visit: int
    attempt: int
    succeeded: bool
    final: bool
    """True when this attempt's outcome is the step's outcome (a success, or a failure not retried)."""
    outcome: str
    """JSON: the step's outcome, or ``Err(reason)``."""
    started: float
    duration: float
    kind: str = attrs.field(default=STEP, kw_only=True)
    """What was journaled: a step attempt, a reducer outcome, a compensation (`_engine._seams`)."""


@attrs.frozen
class Claim:
    """One claim of one run: every journal write of the claim names it (fencing)."""

    run_id: str
    epoch: int
    """Incremented by every claim of the run; a write with an older epoch is refused."""


@attrs.frozen
class Opened:
    """What `Store.open_run` found, and whether this process now owns the run."""

    run_id: str
    claim: Claim | None
    """Set when the run is new or was unfinished and this process now executes it."""
    new: bool
    workflow: str
    fingerprint: str
    shape: tuple[str, ...]
    input: str
    started: float
    attempts: tuple[Attempt, ...] = ()
    finished: Run | None = None
    """The recorded run, when it completed or failed: nothing is executed."""
    owner: str | None = None
    """Who executes the run, when it is unfinished but not claimed."""
    fresh: bool = False
    """The run never ran before: a queued run claimed for the first time (not a resume)."""
    parent_id: str | None = None
    """The run that started this one with ``call_workflow`` (as the store recorded it), else None."""
    cancel_requested: bool = False
    """`cancel_run` asked for the run to stop: claimed, it is recorded as cancelled at once."""

    @property
    def claimed(self) -> bool:
        return self.claim is not None


@attrs.frozen
class Ending:
    """A run's final record."""

    status: RunStatus
    output: str
    error: str | None
    failed_step: str | None
    compensations: str
    duration: float


@attrs.frozen
class Pending:
    """An unfinished run that no live process owns: `resume_runs` picks these up."""

    run_id: str
    workflow: str
    fingerprint: str
    shape: tuple[str, ...]
    status: RunStatus
    parent_id: str | None = attrs.field(default=None, kw_only=True)
    """The run that started it as a child run (`call_workflow`), if any."""


@attrs.frozen
class Ticket:
    """How a run is queued (`Store.enqueue`): its queue, its priority, when it may start."""

    queue: str
    priority: int
    """Higher first within a queue; then oldest first."""
    available_at: float
    """Wall-clock seconds since the epoch: not claimed before then (``delay=``)."""


@attrs.frozen
class QueueLimits:
    """What a `Queue` declares: the store enforces it across every worker."""

    name: str
    concurrency: int | None
    """At most this many runs of the queue running at once (None: no limit)."""
    rate_limit: tuple[int, float] | None
    """At most n starts in any window of `period` seconds, ``(n, period)``; None: no limit."""


@attrs.frozen
class ClaimRequest:
    """What a worker asks `Store.claim` for: up to `limit` runs it can execute."""

    limit: int
    known: tuple[tuple[str, str], ...]
    """The (workflow, fingerprint) pairs this worker has registered: only those are claimed."""
    queues: tuple[str, ...] | None = None
    """The queues it serves (None: every queue)."""
    now: float | None = None
    """flowdsl's clock (epoch seconds), which delays and wait deadlines are measured on;
    None: the store's. Leases always use the store's own clock."""


Pick: TypeAlias = Callable[
    [str, str | None, tuple[str, ...], tuple[Attempt, ...]], tuple[Attempt, ...]
]
"""`Store.retry`'s ``pick(status, failed_step, shape, journal)``: the entries a retry keeps."""


@runtime_checkable
class Store(Protocol):
    """Where durable runs are journaled (`SQLiteStore` is the embedded one).

    Users call `get_run`, `list_runs`, `get_definition` and `close`; the run
    functions (and `cancel_run`, `retry_run`, `prune_runs`) call the rest.
    Every ``async`` method returns once its write is committed, and
    every write of a claimed run is fenced on its `Claim`.
    """

    def get_run(self, run_id: str) -> Run | None:
        """The run named `run_id` (finished or not), or None; `StoreError` when it is damaged."""
        ...

    def list_runs(
        self,
        status: RunStatus | tuple[RunStatus, ...] | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        limit: int | None = None,
        *,
        before: Run | tuple[float, str] | None = None,
        parent: str | None = None,
        on_damaged: Callable[[str, StoreError], None] | None = None,
    ) -> list[Run]:
        """The runs (of `status`, one or a tuple; of `workflow`; started at or after the aware
        datetime `since`), oldest first; with `limit`, the `limit` newest, newest first.

        ``before=`` pages: the runs after that one in the newest-first order
        (pass the last `Run` of the previous page, or its ``(started,
        run_id)``). With ``parent=RUN_ID`` only the child runs that run
        started (their `Run.parent_id` is `parent`; a run id with no children
        gives ``[]``). A damaged run is left out and handed to
        ``on_damaged(run_id, error)`` (logged as a warning when that is None).
        """
        ...

    def get_definition(self, run_id: str) -> Definition | None:
        """The definition run `run_id` was started with (its graph, if kept), or None."""
        ...

    def close(self) -> None:
        """Finish pending writes and release the store's resources."""
        ...

    async def open_run(self, header: RunHeader) -> Opened:
        """Create the run, or claim it when it is unfinished and its owner is gone."""
        ...

    async def append(self, claim: Claim, attempt: Attempt) -> None:
        """Commit one journal entry; `StoreError` when the claim was lost."""
        ...

    async def finish_run(self, claim: Claim, ending: Ending) -> None:
        """Commit a run's final record and give up owning it; `StoreError` when lost.

        A child run (one with a parent) that completed or failed also sends
        its parent the event ``child_finished(run_id)`` in the same commit,
        with the payload ``{"run_id": ..., "status": ...}``, as `send_event`
        would (a parked parent waiting for it becomes claimable at once). A
        parent that is gone or finished gets nothing, and the child's end is
        committed all the same.
        """
        ...

    async def holds(self, claim: Claim) -> bool:
        """Whether the claim still holds the run (its lease is renewed when it does)."""
        ...

    def lost(self, claim: Claim) -> bool:
        """Whether this store knows the claim is gone or may be (a cheap, local check)."""
        ...

    def release(self, claim: Claim, status: RunStatus | None = None) -> None:
        """Give the run up (written in the background); `status` records how it stopped."""
        ...

    def resumable(
        self,
        *,
        include_cancelled: bool = False,
        on_damaged: Callable[[str, StoreError], None] | None = None,
    ) -> list[Pending]:
        """Unfinished runs that no live owner holds, oldest first (damaged ones as in list_runs)."""
        ...

    # -- managing runs -------------------------------------------------------------------

    async def cancel(self, run_id: str) -> tuple[tuple[str, str], ...]:
        """Cancel `run_id` and its unfinished child runs, recursively, in one commit.

        Each is ``(run_id, "cancelled")`` when it is cancelled now (queued,
        parked, running with no live owner, cancelled by an interrupted caller),
        or ``(run_id, "stopping")`` when its owner is asked to stop it (it
        notices at its next lease renewal at the latest, see `watch`). A run
        cancelled now that has a parent outside the tree sends it
        ``child_finished`` as `finish_run` does. An unknown run is
        `RunNotFound`; one that has ended is a `UsageError`.
        """
        ...

    def watch(self, claim: Claim, stop: Callable[[], None]) -> Callable[[], None]:
        """Call `stop()` (from any thread, maybe more than once) when `cancel_run` asks for
        the claim's run to stop; returns the function that ends the watch."""
        ...

    async def cancel_requested(self, run_id: str) -> bool:
        """Whether `cancel_run` asked for `run_id` to stop (read now)."""
        ...

    async def retry(
        self,
        run_id: str,
        pick: Pick,
        available_at: float,
    ) -> str:
        """Queue a new run of the ended run `run_id` with a journal of its entries; its id.

        ``pick(status, failed_step, shape, journal)`` (the original's status and
        failed step, its recorded definition shape, its journal in commit
        order) chooses the entries the new run starts
        with (it may raise `UsageError`; nothing is written then). The new run
        ``{run_id}.retry{n}`` (the smallest n free) is queued on the
        original's queue with its priority, input and definition, claimable
        from `available_at`, and has no parent. An unknown run is
        `RunNotFound`; one that has not ended is a `UsageError`.
        """
        ...

    async def prune(self, finished_before: float, statuses: tuple[str, ...]) -> int:
        """Delete the runs with one of `statuses` (finished ones) that ended before
        `finished_before` (epoch seconds), with their journals and mailboxes; how many."""
        ...

    # -- queues and workers --------------------------------------------------------------

    async def enqueue(self, header: RunHeader, ticket: Ticket) -> Opened:
        """Commit the run as "queued" and return at once; nothing is claimed.

        A `run_id` the store holds already queues nothing: the run is returned
        as it is (`Opened.claim` is None; `Opened.finished` is set when it ended).
        """
        ...

    async def claim(self, request: ClaimRequest) -> list[Opened]:
        """Atomically claim up to ``request.limit`` runs for this process.

        Candidates, in order: unfinished runs of the known workflows whose owner
        is gone (their lease expired, or they were released), then queued runs
        whose ``available_at`` has come, higher priority first, then oldest.
        Each queue's `QueueLimits` hold across all workers: at most
        ``concurrency`` of its runs in status "running", at most n first starts
        in any window of ``period`` seconds. Each `Opened` carries its claim and
        its journal, as `open_run` does.
        """
        ...

    async def declare_queues(self, queues: tuple[QueueLimits, ...]) -> None:
        """Record queues' limits (a worker does when it starts; the newest declaration wins)."""
        ...

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a run may have become claimable, or after `timeout` seconds.

        A store that can be notified (PostgreSQL ``LISTEN``) returns on the
        notification; one that cannot polls (SQLite: at most every 50 ms).
        A parked run's deadline counts: the wait ends by the earliest one.
        """
        ...

    # -- waits and events ----------------------------------------------------------------

    async def send_event(self, run_id: str, event: str, payload: str) -> None:
        """Commit an event (`payload`: JSON) to the run's mailbox for `event`, last in line.

        A parked run waiting for `event` becomes claimable at once. An unknown
        run is `RunNotFound`; a completed or failed one refuses it (`UsageError`).
        """
        ...

    async def take_event(
        self, claim: Claim, event: str, entry: Attempt, wrap: tuple[str, str]
    ) -> str | None:
        """Take the oldest event of the run's mailbox for `event`; its payload, or None.

        In the same commit `entry` is journaled with the outcome
        ``wrap[0] + payload + wrap[1]``, so an event is taken by exactly one
        wait, and only while `claim` holds the run.
        """
        ...

    async def wait_for_event(self, run_id: str, event: str, timeout: float) -> None:
        """Return when an event for the run may have arrived, or after `timeout` seconds."""
        ...

    async def park(
        self, claim: Claim, waiting: Waiting, visits: tuple[tuple[str, int], ...]
    ) -> None:
        """Give the run up as "waiting": no owner, no lease, until it is woken.

        It is claimable again (by `claim`, as a woken run) once ``waiting.until``
        passes or one of ``waiting.events`` is in its mailbox; at once when one
        is there already, or when one of the waiting `visits` (wait name,
        visit) has its outcome journaled. `StoreError` when the claim was lost.
        """
        ...

    async def last_look(self, workflow: str) -> float | None:
        """When a worker last recorded a look at `workflow`'s schedule; None before the first."""
        ...

    async def observe_schedule(self, workflow: str, now: float) -> float | None:
        """Note that a worker looked at `workflow`'s schedule at `now` (epoch seconds).

        Returns when one last looked (the latest of every worker's looks),
        or None the first time: a schedule's history starts then. A worker
        records a look once the ticks it found are queued (`last_look` first),
        so a worker that dies in between leaves them to the next look.
        """
        ...
