"""`Run` and its records: what a finished run tells its caller (frozen)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypeAlias

import attrs

from ..errors import WorkflowFailed
from ..result import Err, Ok

__all__ = ["CompensationRecord", "Run", "RunStatus", "StepRecord", "Waiting"]

RunStatus: TypeAlias = Literal["queued", "running", "waiting", "completed", "failed", "cancelled"]


class StepRecord(NamedTuple):
    """One attempt of one step."""

    name: str
    """The step's name."""
    attempt: int
    """Which attempt: 1, 2, ..."""
    status: str
    """"succeeded" or "failed"."""
    started: float
    """Wall-clock start, seconds since the epoch."""
    duration: float
    """Seconds."""
    error: Any = None
    """Why a failed attempt failed (an exception or an ``error()`` reason); None on success."""
    visit: int = 1
    """Which visit of the step (a goto loop runs a step again: its second visit is 2)."""


class CompensationRecord(NamedTuple):
    """One compensation run after a failure."""

    step: str
    """The name of the step that was undone."""
    status: str
    """"succeeded" or "failed"."""
    duration: float
    """Seconds."""
    error: Any = None
    """Why a failed compensation failed; None on success."""


@attrs.frozen
class Waiting:
    """What a parked run waits for (`Run.waiting`): its waits, their events, until when."""

    waits: tuple[str, ...]
    """The names of the waits the run is in (several, in parallel branches)."""
    events: tuple[str, ...] = ()
    """The events they wait for; the first to arrive wakes the run."""
    until: float | None = None
    """When the earliest deadline passes (epoch seconds); None: only an event wakes it."""


Attempted: TypeAlias = tuple[str, int, str, float, float, Any, int]
"""A `StepRecord`'s fields as a plain tuple, as the engine records an attempt: the garbage
collector stops tracking a tuple of scalars, never a NamedTuple, so a long run's records
do not make every full collection longer."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@attrs.frozen(repr=False)
class Run:
    """A run of a workflow: its status, output and the record of every attempt.

    Run calls return it once the run has ended; ``status`` is then
    "completed", "failed" or "cancelled". An unfinished run read from a
    durable store is "queued", "running" or "waiting" (parked by a worker
    until an event or a deadline wakes it, see `waiting`).
    """

    run_id: str
    """The run's id (given as ``run_id=``, or a fresh one)."""
    workflow: str
    """The workflow's registered name."""
    status: RunStatus
    """"completed", "failed", "cancelled" (from outside); a stored unfinished run's "queued",
    "running" or "waiting"."""
    output: Mapping[str, Any] = _EMPTY
    """The final context (input merged with every step's output), read-only."""
    error: Any = None
    """Why the run failed: the failing step's reason (often an exception)."""
    failed_step: str | None = None
    """The name of the step that failed the run, else None."""
    _steps: tuple[Attempted, ...] = attrs.field(default=(), alias="steps")
    # Each attempt as it was recorded: a plain tuple of a StepRecord's fields (an engine's
    # record) or a StepRecord (a store's). `steps` makes them StepRecords when first read.
    compensations: tuple[CompensationRecord, ...] = ()
    """The compensations that ran after a failure, in the order they ran."""
    duration: float = 0.0
    """How long the run took, in seconds."""
    started: float = 0.0
    """Wall-clock start, seconds since the epoch."""
    owner: str | None = None
    """Who holds an unfinished stored run (host, PID namespace, pid, start), else None."""
    lease_expires: float | None = None
    """When the owner's lease on an unfinished stored run runs out (epoch seconds), else None."""
    fingerprint: str = ""
    """The fingerprint of the definition the run was started with (its shape's hash)."""
    waiting: Waiting | None = None
    """What a parked run (status "waiting") waits for and until when, else None."""
    parent_id: str | None = None
    """The run that started this one with ``call_workflow``, else None."""

    def __repr__(self) -> str:
        # Short on purpose: asyncio reprs a task's result in places (3.11's Runner.run
        # does on every call), and a run can hold thousands of step records.
        failed = (
            f", failed_step={self.failed_step!r}, error={self.error!r}" if self.failed_step else ""
        )
        return (
            f"Run(run_id={self.run_id!r}, workflow={self.workflow!r}, status={self.status!r}"
            f"{failed}, steps=<{len(self._steps)} attempts>, duration={self.duration:.6f})"
        )

    @functools.cached_property
    def steps(self) -> tuple[StepRecord, ...]:
        """Every attempt of every step, in the order the attempts finished."""
        return tuple(map(StepRecord._make, self._steps))

    @property
    def ok(self) -> bool:
        """True when the run completed."""
        return self.status == "completed"

    @property
    def result(self) -> Ok[Mapping[str, Any]] | Err[Any]:
        """``Ok(output)`` when completed, else ``Err(error)``."""
        if self.status == "completed":
            return Ok(self.output)
        return Err(self.error)

    def unwrap(self) -> Mapping[str, Any]:
        """The output of a completed run; raises `WorkflowFailed` otherwise."""
        if self.status == "completed":
            return self.output
        if self.status == "failed":
            where = f" at step {self.failed_step!r}" if self.failed_step else ""
            msg = f"workflow {self.workflow!r} run {self.run_id!r} failed{where}: {self.error!r}"
        else:
            msg = f"workflow {self.workflow!r} run {self.run_id!r} is {self.status}, not completed"
        exc = WorkflowFailed(msg, self)
        if isinstance(self.error, BaseException):
            raise exc from self.error
        raise exc
