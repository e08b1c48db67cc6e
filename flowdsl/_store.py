"""The `Store` protocol: what a durable run needs from the place its journal lives.

A store holds one row per run (its workflow, definition fingerprint, input,
status, owner and, once finished, its output) and one row per finished step
attempt. Payloads cross this boundary as JSON text made by `_codec`, so every
store shares one format and none of them ever unpickles anything.

`SQLiteStore` (`_sqlite`) is the embedded implementation; a server-backed
store implements the same methods.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterable
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from ._codec import decode
from ._run import CompensationRecord, Run, RunStatus, StepRecord

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = [
    "Attempt",
    "Ending",
    "Opened",
    "Pending",
    "RunHeader",
    "Store",
    "build_run",
    "owner_alive",
    "owner_token",
    "step_record",
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


@attrs.frozen
class Attempt:
    """One finished attempt of one visit of a step: a journal row."""

    step: str
    visit: int
    attempt: int
    succeeded: bool
    final: bool
    """True when this attempt's outcome is the step's outcome (a success, or a failure not retried)."""
    outcome: str
    """JSON: the step's outcome, or ``Err(reason)``."""
    started: float
    duration: float


@attrs.frozen
class Opened:
    """What `Store.open_run` found, and whether this process now owns the run."""

    run_id: str
    claimed: bool
    """True: the run is new or was unfinished, and this process now executes it."""
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


@runtime_checkable
class Store(Protocol):
    """Where durable runs are journaled (`SQLiteStore` is the embedded one).

    Users call `get_run`, `list_runs` and `close`; the run functions call the
    rest. Every ``async`` method returns once its write is committed.
    """

    def get_run(self, run_id: str) -> Run | None:
        """The run named `run_id` (finished or not), or None."""
        ...

    def list_runs(self, status: RunStatus | None = None) -> list[Run]:
        """Every run (or those with `status`), oldest first."""
        ...

    def close(self) -> None:
        """Finish pending writes and release the store's resources."""
        ...

    async def open_run(self, header: RunHeader) -> Opened:
        """Create the run, or claim it when it is unfinished and no live process owns it."""
        ...

    async def append(self, run_id: str, attempt: Attempt) -> None:
        """Commit one attempt of a run this process owns."""
        ...

    async def finish_run(self, run_id: str, ending: Ending) -> None:
        """Commit a run's final record and give up owning it."""
        ...

    def release(self, run_id: str) -> None:
        """Give up owning an unfinished run (it can be resumed); may complete later."""
        ...

    def resumable(self, *, include_cancelled: bool = False) -> list[Pending]:
        """Unfinished runs that no live process owns, oldest first."""
        ...


# -- who owns a run ------------------------------------------------------------------------

_HOST = socket.gethostname()
_TOKEN: tuple[int, str] | None = None


def _proc_stat(pid: int) -> tuple[bytes, bytes] | None:
    """(state, start time in clock ticks) from /proc, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0], fields[19]


def owner_token() -> str:
    """``host|pid|start``: names this process, even after its pid is reused."""
    global _TOKEN
    pid = os.getpid()
    if _TOKEN is None or _TOKEN[0] != pid:
        stat = _proc_stat(pid) if sys.platform == "linux" else None
        start = stat[1].decode() if stat is not None else ""
        _TOKEN = (pid, f"{_HOST}|{pid}|{start}")
    return _TOKEN[1]


def owner_alive(owner: str) -> bool | None:
    """Whether the process `owner` names is alive: None when it is on another host."""
    host, _, rest = owner.partition("|")
    if host != _HOST:
        return None
    pid_text, _, start = rest.partition("|")
    try:
        pid = int(pid_text)
    except ValueError:
        return False
    if sys.platform == "linux":
        stat = _proc_stat(pid)
        if stat is None or stat[0] in (b"Z", b"X"):
            return False
        return not start or stat[1].decode() == start
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- reading runs back ---------------------------------------------------------------------


def step_record(attempt: Attempt) -> StepRecord:
    """The `StepRecord` of a journal row."""
    error: object = None
    if not attempt.succeeded:
        error = decode(attempt.outcome).error
    return StepRecord(
        attempt.step,
        attempt.attempt,
        "succeeded" if attempt.succeeded else "failed",
        attempt.started,
        attempt.duration,
        error,
    )


def build_run(
    *,
    run_id: str,
    workflow: str,
    status: RunStatus,
    input: str,
    output: str | None,
    error: str | None,
    failed_step: str | None,
    compensations: str | None,
    started: float,
    duration: float | None,
    attempts: Iterable[Attempt],
) -> Run:
    """A `Run` from a store's rows. A run still running shows its input as its output."""
    data: Mapping[str, Any] | None = decode(output if output is not None else input)
    comps = tuple(
        CompensationRecord(step, state, took, reason)
        for step, state, took, reason in (decode(compensations) if compensations else ())
    )
    return Run(
        run_id=run_id,
        workflow=workflow,
        status=status,
        output=MappingProxyType(dict(data or {})),
        error=decode(error) if error is not None else None,
        failed_step=failed_step,
        steps=tuple(step_record(attempt) for attempt in attempts),
        compensations=comps,
        duration=duration or 0.0,
        started=started,
    )
