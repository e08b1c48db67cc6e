"""The `Store` protocol: what a durable run needs from the place its journal lives.

A store holds one row per run (its workflow, definition fingerprint, input,
status, owner and lease, and once finished its output) and one row per
journal entry (a finished step attempt, a reducer's outcome, a compensation).
Payloads cross this boundary as JSON text made by `_codec`, so every store
shares one format and none of them ever unpickles anything.

**Leases.** A run is executed by one owner at a time. Claiming it (`open_run`)
records the owner (`owner_token`: host, PID namespace, pid, start time), an
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

import os
import socket
import sys
from collections.abc import Iterable
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from ._codec import Undecodable, decode
from ._run import CompensationRecord, Run, RunStatus, StepRecord
from .errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "STEP",
    "UNDO",
    "Attempt",
    "Claim",
    "Ending",
    "Opened",
    "Pending",
    "RunHeader",
    "Store",
    "build_run",
    "damaged",
    "owner_alive",
    "owner_token",
    "step_record",
]

STEP = "step"
"""`Attempt.kind` of a step attempt."""
REDUCE = "reduce"
"""`Attempt.kind` of a parallel block's ``into=`` reducer outcome."""
UNDO = "undo"
"""`Attempt.kind` of a finished compensation."""


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
    """`STEP`, `REDUCE` or `UNDO`."""


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


@runtime_checkable
class Store(Protocol):
    """Where durable runs are journaled (`SQLiteStore` is the embedded one).

    Users call `get_run`, `list_runs` and `close`; the run functions call the
    rest. Every ``async`` method returns once its write is committed, and
    every write of a claimed run is fenced on its `Claim`.
    """

    def get_run(self, run_id: str) -> Run | None:
        """The run named `run_id` (finished or not), or None; `StoreError` when it is damaged."""
        ...

    def list_runs(
        self,
        status: RunStatus | None = None,
        *,
        on_damaged: Callable[[str, StoreError], None] | None = None,
    ) -> list[Run]:
        """Every run (or those with `status`), oldest first.

        A damaged run is left out and handed to ``on_damaged(run_id, error)``
        (logged as a warning when that is None).
        """
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
        """Commit a run's final record and give up owning it; `StoreError` when lost."""
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


# -- who owns a run ------------------------------------------------------------------------

_HOST = socket.gethostname()
_TOKEN: tuple[int, str] | None = None


def _pid_namespace() -> str:
    """This process's PID namespace (``pid:[4026531836]``), or "" when it cannot be read."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _proc_stat(pid: int) -> tuple[bytes, bytes] | bool | None:
    """(state, start time in clock ticks) from /proc; False when there is no such process,
    None when it cannot be told (no /proc, or an entry that cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fields = data[data.rindex(b")") + 2 :].split()
        return fields[0], fields[19]
    except (ValueError, IndexError):
        return None


def owner_token() -> str:
    """``host|pidns|pid|start``: names this process, even after its pid is reused."""
    global _TOKEN
    pid = os.getpid()
    if _TOKEN is None or _TOKEN[0] != pid:
        stat = _proc_stat(pid) if sys.platform == "linux" else None
        start = stat[1].decode() if isinstance(stat, tuple) else ""
        _TOKEN = (pid, f"{_HOST}|{_pid_namespace()}|{pid}|{start}")
    return _TOKEN[1]


def describe_owner(owner: str) -> str:
    """``process 7 on host-a`` for an owner token (older tokens had no namespace)."""
    parts = owner.split("|")
    if len(parts) == 4:
        return f"process {parts[2]} on {parts[0]}"
    if len(parts) == 3:
        return f"process {parts[1]} on {parts[0]}"
    return owner


def owner_alive(owner: str) -> bool | None:
    """Whether the process `owner` names is alive; None when that cannot be known here.

    Known only for a process on this host and in this PID namespace, whose
    /proc entry can be read: then True (alive) or False (gone, or a zombie, or
    the pid now names another process). Anything else is None, and only the
    owner's lease tells whether the run can be taken over.
    """
    parts = owner.split("|")
    if len(parts) != 4:
        return None
    host, namespace, pid_text, start = parts
    if host != _HOST or not namespace or namespace != _pid_namespace():
        return None
    try:
        pid = int(pid_text)
    except ValueError:
        return None
    if sys.platform != "linux":
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return None
        return True
    stat = _proc_stat(pid)
    if stat is False:
        return False
    if stat is None or stat is True:
        return None
    if stat[0] in (b"Z", b"X"):
        return False
    return not start or stat[1].decode() == start


# -- reading runs back ---------------------------------------------------------------------


def damaged(run_id: str, where: str, why: object) -> StoreError:
    """The error for a run whose journal cannot be read (edited, truncated, a bad page)."""
    return StoreError(
        f"run {run_id!r} is damaged in the store: its {where} cannot be read ({why}); "
        f"the other runs are not affected. Delete the run, or restore the store from a backup"
    )


def _decode(run_id: str, where: str, text: str, strict: bool = False) -> Any:
    try:
        return decode(text, strict=strict)
    except Undecodable as exc:
        raise damaged(run_id, where, exc) from None


def step_record(run_id: str, attempt: Attempt) -> StepRecord:
    """The `StepRecord` of a step attempt's journal row."""
    error: object = None
    if not attempt.succeeded:
        outcome = _decode(run_id, f"attempt of step {attempt.step!r}", attempt.outcome)
        error = getattr(outcome, "error", outcome)
    return StepRecord(
        attempt.step,
        attempt.attempt,
        "succeeded" if attempt.succeeded else "failed",
        attempt.started,
        attempt.duration,
        error,
        visit=attempt.visit,
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
    owner: str | None = None,
    lease_expires: float | None = None,
) -> Run:
    """A `Run` from a store's rows; `StoreError` naming the run when they cannot be read.

    A run still running shows its input as its output.
    """
    data = _decode(run_id, "output" if output is not None else "input", output or input)
    if data is not None and not isinstance(data, dict):
        raise damaged(run_id, "output", f"a {type(data).__name__}, not a mapping")
    comps: list[CompensationRecord] = []
    if compensations:
        for item in _decode(run_id, "compensations", compensations):
            try:
                step, state, took, reason = item
            except (TypeError, ValueError):
                raise damaged(run_id, "compensations", f"{item!r} is not a record") from None
            comps.append(CompensationRecord(step, state, took, reason))
    return Run(
        run_id=run_id,
        workflow=workflow,
        status=status,
        output=MappingProxyType(dict(data or {})),
        error=_decode(run_id, "error", error) if error is not None else None,
        failed_step=failed_step,
        steps=tuple(step_record(run_id, a) for a in attempts if a.kind == STEP),
        compensations=tuple(comps),
        duration=duration or 0.0,
        started=started,
        owner=owner,
        lease_expires=lease_expires,
    )


def readable(
    rows: Iterable[Any], build: Callable[[Any], Run], on_damaged: Callable[[str, StoreError], None]
) -> list[Run]:
    """The runs `build` makes of `rows`; a damaged one is handed to `on_damaged`, not raised."""
    runs: list[Run] = []
    for row in rows:
        try:
            runs.append(build(row))
        except StoreError as exc:
            on_damaged(row[0], exc)
    return runs
