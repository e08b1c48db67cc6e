"""The engine's seams: what plugs into a run without touching its routing.

* an `Invoker` runs one attempt of a step elsewhere (threads, a process pool,
  a Dask cluster: `flowdsl.executors`);
* a `Journal` records what a durable run did and finds it again on resume
  (`flowdsl.stores`), one keyword-only `Entry` at a time;
* an `AttemptHook` wraps every step attempt as a context manager (a tracing
  span, the log context, a timeline), told how the attempt ended before it exits.

Stores and executors import these; the engine imports neither of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

if TYPE_CHECKING:
    from .._plan import CallNode, Plan, StepNode
    from ._context import Context
    from ._run import CompensationRecord, Run, Waiting

__all__ = [
    "DUE",
    "ITEMS",
    "REDUCE",
    "STEP",
    "TRACE",
    "UNDO",
    "Attempt",
    "AttemptHook",
    "Entry",
    "Invoker",
    "Journal",
    "child_finished",
]

STEP: Final = "step"
"""`Entry.kind` of a step attempt."""
REDUCE: Final = "reduce"
"""`Entry.kind` of a parallel block's ``into=`` reducer outcome."""
UNDO: Final = "undo"
"""`Entry.kind` of a finished compensation (its outcome is ``Ok(None)`` or ``Err(reason)``)."""
ITEMS: Final = "items"
"""`Entry.kind` of a foreach block's items, journaled when the block starts (``Ok(items)``)."""
DUE: Final = "due"
"""`Entry.kind` of a wait's deadline, journaled when the wait is first reached (``Ok(when)``)."""
TRACE: Final = "trace"
"""`Entry.kind` of a traced run's trace parent (``Ok({"traceparent": ...})``, W3C trace
context), journaled when it is first known so every execution of the run is in one trace."""


def child_finished(run_id: str) -> str:
    """The event a store sends a run's parent, in the commit that finishes the run."""
    return f"flowdsl.child-finished:{run_id}"


class Invoker(Protocol):
    """Runs one attempt of a step somewhere else (a thread pool, a process, a cluster)."""

    async def __call__(self, node: StepNode, ctx: Context) -> object: ...


@attrs.frozen(kw_only=True)
class Entry:
    """What the engine hands the journal: one finished attempt (or reducer, compensation)."""

    kind: str
    """`STEP`, `REDUCE`, `UNDO`, `ITEMS`, `DUE` or `TRACE`."""
    name: str
    """The step's name; the block's for a reducer; the undone step's for a compensation."""
    visit: int
    attempt: int
    outcome: object
    failed: bool
    retrying: bool
    """The attempt failed and will be tried again (else its outcome is final)."""
    started: float
    """Wall-clock seconds since the epoch."""
    duration: float
    plain_size: int = -1
    """How many parts a success's value holds when all of it is plain JSON (-1: not known).

    The journal writes such a value without a walk, so it writes a larger one on the
    event loop than a value it has to walk."""


class Journal(Protocol):
    """Where a durable run records what it did, and finds it again on resume."""

    def replayed(self, kind: str, name: str, visit: int) -> tuple[int, object | None]:
        """Failed attempts already spent on this visit, and its recorded outcome if it finished.

        The outcome is an `Err` when the step failed for good (it is not run again), and
        never None for a finished step: a step that returned None is replayed as `Ok(None)`.
        """
        ...

    def undone(self, name: str, visit: int) -> CompensationRecord | None:
        """The recorded compensation of a step's visit, when it already ran."""
        ...

    def must_check(self) -> bool:
        """Cheap: whether the run's claim may have been lost (see `check`)."""
        ...

    async def check(self) -> None:
        """Raise `StoreError` when this run's claim is lost (called before an attempt starts)."""
        ...

    async def record(self, entry: Entry) -> object:
        """Commit one entry before anything that depends on it starts.

        Returns the outcome to use: the same one, or an `Err` when the outcome
        cannot be journaled (then the step fails with that error, not retried).
        """
        ...

    async def finish(self, run: Run) -> None:
        """Record the run's final status (written even if the caller is cancelled meanwhile)."""
        ...

    async def receive(
        self, name: str, visit: int, key: str, event: str, due: float | None
    ) -> tuple[bool, object]:
        """Wait for `event` until `due`: ``(True, payload)`` once one is taken, else ``(False, None)``.

        Taking the event and journaling the wait's outcome (``Ok({key: payload})``)
        is one commit, so each event is delivered to exactly one visit of a wait.
        """
        ...

    @property
    def park_after(self) -> float | None:
        """Seconds a run may wait with nothing else running before it is parked (None: never)."""
        ...

    async def child(
        self,
        plan: Plan,
        data: Mapping[str, Any] | None,
        run_id: str,
        queue: str | None,
        executors: Mapping[str, Invoker],
        waiting: Callable[[], None] | None = None,
    ) -> Run:
        """Run (or find, or wait for) the child run `run_id` of this run, to its end.

        In the same store, with its own journal; a child run the store holds
        already is not started again: its recorded end is returned, or it is
        resumed. Under a worker the child is queued (on `queue`) and this
        waits, as a wait does, until its end wakes the run; `waiting` is
        called each time it starts waiting (the child is queued and has not
        ended), never when the child's end is found at once.
        """
        ...

    def watch(self, stop: Callable[[], None]) -> Callable[[], None]:
        """Call `stop()` on this (the run's) event loop when the run is asked to stop for good
        (`cancel_run`), maybe more than once; returns the function that ends the watch."""
        ...

    async def cancelling(self) -> bool:
        """Whether the run was asked to stop for good (read now, from the store)."""
        ...

    async def park(self, waiting: Waiting, visits: tuple[tuple[str, int], ...]) -> None:
        """Give the run up until an event or a deadline of `waiting` wakes it (a worker's run).

        `visits` are the (wait, visit) pairs waiting: one whose outcome is in
        the journal already (it took its event as the run parked) wakes it now.
        """
        ...


class Attempt(Protocol):
    """What an `AttemptHook`'s context manager yields: told how the attempt ended."""

    def ended(self, outcome: object, failed: bool) -> None:
        """The attempt returned `outcome` (an ``Err`` when it failed, raised or timed out)."""
        ...


class AttemptHook(Protocol):
    """Wraps each step attempt: ``with hook(node, ctx) as attempt: ...``.

    A ``call_workflow`` node's attempts (each a child run) are wrapped too.

    The context manager is entered just before the attempt's body is called
    and exited right after, with the exception when the attempt is cancelled
    (a fail_fast sibling, the run's timeout, the caller); ``attempt.ended``
    is called first when it ran to an outcome. It never changes the outcome.
    """

    def __call__(
        self, node: StepNode | CallNode, ctx: Context
    ) -> AbstractContextManager[Attempt]: ...
