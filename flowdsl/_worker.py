"""`Worker`: runs queued runs from a store, shared with other workers on any host.

A worker imports the modules it is given (workflows and queues register
themselves), writes the queues' limits into the store, then loops: claim as
many runs as it has free slots (`Store.claim`: atomic across workers, within
every queue's limits, runs whose owner died first), run each as a task, and
wait for work (PostgreSQL wakes it with a notification; SQLite polls) or for
a slot to free up. Each run is executed by `stores.run_claimed` with the
run's lease renewed by the store: a worker that dies loses its leases and
another resumes its runs from the journal.

A run that `cancel_run` stops ends here as "cancelled" (the store tells the
run at its next lease renewal, or at once by a notification on PostgreSQL):
its task returns, and the worker goes on.

Stopping (`stop()`, SIGTERM or SIGINT under `run()`) stops claiming, lets the
runs in hand finish for ``grace`` seconds, then hands the rest back: each is
cancelled here and released in the store, unfinished and unowned, for
another worker to resume (it is not recorded as cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import signal
import threading
from collections.abc import Iterable, Sequence
from types import FrameType
from typing import Any

from ._checks import count_problem, require, seconds_problem
from ._define import _registry
from ._define._queues import DEFAULT_QUEUE, Queue, declared_queues
from ._define._schedules import due_ticks, next_tick, tick_run_id
from ._engine._clock import clock
from ._engine._options import no_running_loop, planned, run_listeners
from ._engine._run import Run
from .errors import StoreError, UsageError, WorkflowNotFound
from .executors._builtin import with_builtins
from .stores import open_store
from .stores._journal import RunJournal, run_claimed, run_header
from .stores._protocol import ClaimRequest, Opened, QueueLimits, Store, Ticket

__all__ = ["Worker"]

_log = logging.getLogger("flowdsl")


class Worker:
    """Runs the queued runs of a store: ``Worker(store, modules=["app.flows"]).run()``.

    ``store`` is a store object or URL; ``modules`` are what the CLI takes
    (``pkg.module`` or ``path/to/file.py``), imported when the worker starts;
    ``queues=None`` serves every queue, else the names (or `Queue` objects)
    given. At most ``concurrency`` runs execute at once in this worker.
    ``grace`` is how long `stop` lets running runs finish before handing them
    back. ``poll`` bounds how long the worker waits between looks at the store
    when nothing wakes it (a delayed run's time comes, a lease expires).

    A run whose waits (`wait_for_event`, `sleep_for`, ...) have lasted
    ``park_after`` seconds with nothing else of it running is **parked**: it
    holds no slot and no lease until an event or a deadline wakes it, and is
    then claimed again like a queued run (by any worker). The workers also
    start the runs of scheduled workflows (``@workflow(schedule=...)``), one
    per tick, into the "default" queue.
    """

    def __init__(
        self,
        store: object,
        modules: Iterable[str] = (),
        *,
        queues: Iterable[str | Queue] | None = None,
        concurrency: int = 10,
        grace: float = 30.0,
        poll: float = 1.0,
        park_after: float = 1.0,
    ) -> None:
        require(count_problem(concurrency, "concurrency="))
        require(seconds_problem(grace, "grace=", optional=False, zero=True))
        require(seconds_problem(poll, "poll=", optional=False))
        require(seconds_problem(park_after, "park_after=", optional=False, zero=True))
        if isinstance(modules, str):
            msg = f"modules= takes a list of modules or files, got the string {modules!r}; write modules=[{modules!r}]"
            raise UsageError(msg)
        self.store = store
        self.modules = tuple(modules)
        self.queues = _queue_names(queues)
        self.concurrency = concurrency
        self.grace = float(grace)
        self.poll = float(poll)
        self.park_after = float(park_after)
        self._stopping = threading.Event()
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    def __repr__(self) -> str:
        return f"Worker({self.store!r}, queues={self.queues!r}, concurrency={self.concurrency})"

    # -- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming runs and drain (see the class docstring); safe from any thread."""
        self._stopping.set()
        wake = self._wake
        if wake is not None:
            loop, event = wake
            with contextlib.suppress(RuntimeError):  # the loop has closed: it stopped already
                loop.call_soon_threadsafe(event.set)

    def run(self) -> None:
        """Run until stopped by `stop`, SIGTERM or SIGINT (then exit normally)."""
        no_running_loop("Worker.run", "Worker.arun")
        installed: list[tuple[signal.Signals, Any]] = []
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, frame: FrameType | None) -> None:
                self.stop()

            installed.extend(
                (signum, signal.signal(signum, on_signal))
                for signum in (signal.SIGTERM, signal.SIGINT)
            )
        try:
            asyncio.run(self.arun())
        finally:
            for signum, previous in installed:
                signal.signal(signum, previous)

    async def arun(self) -> None:
        """Run on the running event loop until `stop` (signals are left to the caller)."""
        _import(self.modules)
        store, owned = open_store(self.store)
        try:
            await self._serve(store)
        finally:
            if owned:
                store.close()

    # -- the loop --------------------------------------------------------------------------

    async def _serve(self, store: Store) -> None:
        loop = asyncio.get_running_loop()
        kick = asyncio.Event()
        self._wake = (loop, kick)
        if self._stopping.is_set():
            return
        known = tuple(
            sorted((name, wf.plan.fingerprint) for name, wf in _registry.workflows().items())
        )
        limits = tuple(
            QueueLimits(q.name, q.concurrency, q.rate_limit) for q in declared_queues().values()
        )
        if limits:
            await store.declare_queues(limits)
        active: dict[asyncio.Task[Run | None], RunJournal] = {}
        ticker = _Ticker(store)
        try:
            while not self._stopping.is_set():
                await ticker.tick()
                free = self.concurrency - len(active)
                claimed: list[Opened] = []
                if free > 0 and known:
                    request = ClaimRequest(free, known, self.queues, now=clock().now())
                    try:
                        claimed = await store.claim(request)
                    except StoreError as exc:  # the database is away: try again after a poll
                        _log.warning("could not claim runs: %s", exc)
                for opened in claimed:
                    self._start(store, opened, active, kick)
                if claimed and len(active) < self.concurrency:
                    continue  # there may be more work waiting: look again at once
                await self._wait(store, kick, ticker.wait(self.poll))
        finally:
            await self._drain(active)

    def _start(
        self,
        store: Store,
        opened: Opened,
        active: dict[asyncio.Task[Run | None], RunJournal],
        kick: asyncio.Event,
    ) -> None:
        assert opened.claim is not None
        plan = planned(_registry.get_workflow(opened.workflow).plan)
        journal = RunJournal(store, plan, opened.claim, opened.attempts)
        journal.park_after = self.park_after
        task = asyncio.create_task(self._execute(store, plan, opened, journal))
        active[task] = journal

        def done(finished: asyncio.Task[Run | None]) -> None:
            active.pop(finished, None)
            kick.set()

        task.add_done_callback(done)

    async def _execute(
        self, store: Store, plan: Any, opened: Opened, journal: RunJournal
    ) -> Run | None:
        try:
            return await run_claimed(
                plan,
                opened,
                store,
                timeout=None,
                listeners=run_listeners(plan.name, opened.run_id, ()),
                executors=with_builtins(None),
                journal=journal,
            )
        except asyncio.CancelledError:
            raise
        except StoreError as exc:  # its lease was taken over: the run goes on elsewhere
            _log.warning("run %r stopped in this worker: %s", opened.run_id, exc)
        except Exception:
            _log.exception("run %r raised in this worker (not a failed step)", opened.run_id)
        return None

    async def _wait(self, store: Store, kick: asyncio.Event, timeout: float) -> None:
        """Until a slot frees up, the worker is stopped, or the store may have work."""
        kick.clear()
        kicked = asyncio.ensure_future(kick.wait())
        work = asyncio.ensure_future(store.wait_for_work(timeout))
        try:
            await asyncio.wait({kicked, work}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (kicked, work):
                waiter.cancel()
            await asyncio.gather(kicked, work, return_exceptions=True)

    async def _drain(self, active: dict[asyncio.Task[Run | None], RunJournal]) -> None:
        """Let the runs in hand finish within the grace period, then hand the rest back."""
        if not active:
            return
        tasks = set(active)
        _, pending = await asyncio.wait(tasks, timeout=self.grace)
        for task in pending:
            journal = active.get(task)
            if journal is not None:
                journal.handing_over = True
            task.cancel()
        if pending:
            _log.info("handing %d runs back to the store for other workers", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)


class _Ticker:
    """Starts the runs of the registered scheduled workflows, one per tick (see `_schedules`).

    A look reads when the schedule was last looked at, queues the runs of the
    ticks since, and only then records itself (`Store.observe_schedule`): a
    worker that dies or loses the store in between leaves those ticks to the
    next look, which finds them again (run ids are the ticks', so none is
    queued twice).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.due: dict[str, float] = {}  # workflow -> when its next tick comes
        self.schedules = {
            name: wf.plan.schedule
            for name, wf in _registry.workflows().items()
            if wf.plan.schedule is not None
        }

    def wait(self, poll: float) -> float:
        """How long the worker may wait for work before the next tick (at most `poll`)."""
        if not self.due:
            return poll
        return max(0.0, min(poll, min(self.due.values()) - clock().now()))

    async def tick(self) -> None:
        now = clock().now()
        for name, schedule in self.schedules.items():
            if now < self.due.get(name, now):
                continue
            try:
                previous = await self.store.last_look(name)
                for tick in due_ticks(schedule, previous, now):
                    await self.start(name, tick)
                await self.store.observe_schedule(name, now)
                self.due[name] = next_tick(schedule, now)
            except StoreError as exc:  # the database is away: the next pass looks again
                _log.warning("could not start the scheduled runs of %r: %s", name, exc)

    async def start(self, name: str, tick: _dt.datetime) -> None:
        plan = planned(_registry.get_workflow(name).plan)
        run_id = tick_run_id(name, tick)
        header = run_header(plan, {"scheduled_at": tick}, run_id)
        opened = await self.store.enqueue(header, Ticket(DEFAULT_QUEUE, 0, clock().now()))
        if opened.new:
            _log.info("scheduled run %r of %r queued", run_id, name)


def _queue_names(queues: object) -> tuple[str, ...] | None:
    """What ``queues=`` names: None (every queue), or the queues' names, at least one."""
    if queues is None:
        return None
    if isinstance(queues, str | Queue):
        name = _queue_name(queues)
        msg = f"queues= takes a list of queues, got {queues!r}; write queues=[{name!r}]"
        raise UsageError(msg)
    if not isinstance(queues, Iterable):
        msg = f"queues= takes a list of queue names or Queue objects, or None, got {queues!r}"
        raise UsageError(msg)
    names = tuple(_queue_name(queue) for queue in queues)
    if not names:
        msg = (
            "queues= is empty: the worker would serve no queue; name the queues it serves, "
            "or pass queues=None to serve every queue"
        )
        raise UsageError(msg)
    return names


def _queue_name(queue: object) -> str:
    if isinstance(queue, Queue):
        return queue.name
    if isinstance(queue, str) and queue:
        return queue
    msg = f"queues= takes queue names or Queue objects, got {queue!r}"
    raise UsageError(msg)


def _import(modules: Sequence[str]) -> None:
    """Import what the worker was given; a module that cannot be is a `UsageError`."""
    from .cli._errors import CliError
    from .cli._targets import import_source

    for ref in modules:
        try:
            import_source(ref)
        except CliError as exc:
            raise UsageError(f"Worker: {exc.message}") from None
    if not _registry.workflows():
        msg = (
            "Worker: no workflow is registered in this process; give modules= the modules "
            "(or files) that define the workflows it should run"
        )
        raise WorkflowNotFound(msg)
