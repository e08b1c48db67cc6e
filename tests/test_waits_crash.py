"""Crashes during waits: a durable run SIGKILLed while it sleeps or waits for an event.

The child (tests/wait_child.py) runs the waits and notes their commit points
(a wait's deadline journaled, an event taken) in a marker file; it can die
right after one. The run is then resumed here, in the test process, with the
same definitions, or by a worker in another child. What must hold:

- the deadline journaled when a wait was first reached is kept: a resumed
  sleep or event timeout waits only what remains, and not less;
- a step that finished before the crash does not run again (the steps' side
  log and the store's attempt rows say so);
- an event sent while no process runs the workflow is received on resume,
  each event exactly once, in order, whatever the crashes;
- taking an event and journaling it are one fenced write: a process that
  lost the run cannot consume an event, a take whose journal entry is
  refused takes nothing, and a cancel during the take waits for its commit;
- a parked run outlives its worker, and a new worker wakes it.

Sleeps of days run on `flowdsl.testing.fake_clock` in the resuming process;
one test uses a sleep of a second and a half of real time, to show the real
clock's remainder. Every test runs once per kind of store (`store_kit`): the
children get the kit's URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, TypeVar

import pytest
from polling import until, wait_for
from stores import StoreKit

from flowdsl import (
    Run,
    Store,
    arun_workflow,
    asend_event,
    run_workflow,
    send_event,
    start_workflow,
)
from flowdsl.testing import FakeClock, fake_clock

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl._define import _registry
from flowdsl.errors import StoreError
from flowdsl.result import Ok
from flowdsl.stores._codec import dumps, encode
from flowdsl.stores._protocol import Attempt, Claim

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL") or not hasattr(signal, "SIGTERM"),
    reason="needs SIGKILL and SIGTERM",
)

CHILD = Path(__file__).resolve().with_name("wait_child.py")
SRC = str(Path(__file__).resolve().parent.parent)
DAY = 86_400.0

T = TypeVar("T")


@pytest.fixture(scope="module")
def flows() -> Iterator[ModuleType]:
    """wait_child.py's workflows, in a registry of this module's own (to resume runs here)."""
    with _registry.isolated():
        spec = importlib.util.spec_from_file_location("wait_child_flows", CHILD)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


class Mark(NamedTuple):
    """One line of the child's marker file: a wait's commit point."""

    what: str
    """``due`` (its deadline journaled) or ``took`` (its event taken and journaled)."""
    wait: str
    visit: int
    started: float | None
    """When the wait was first reached (``due`` lines only)."""


class Ran(NamedTuple):
    """One line of the steps' side log."""

    key: str
    pid: int
    at: float


class Files:
    """The side log and marker file of one test, shared by its children."""

    def __init__(self, directory: Path) -> None:
        self.log = directory / "steps.log"
        self.marks = directory / "marks.log"
        self.log.touch()
        self.marks.touch()

    def ran(self) -> list[Ran]:
        lines = []
        for text in self.log.read_text().splitlines():
            key, pid, at = text.split()
            lines.append(Ran(key, int(pid), float(at)))
        return lines

    def steps(self) -> list[str]:
        return [line.key for line in self.ran()]

    def read_marks(self) -> list[Mark]:
        found = []
        for text in self.marks.read_text().splitlines():
            what, wait, visit, *started = text.split()
            found.append(Mark(what, wait, int(visit), float(started[0]) if started else None))
        return found

    def due(self, wait: str, visit: int = 1) -> Mark:
        (mark,) = [m for m in self.read_marks() if m[:3] == ("due", wait, visit)]
        return mark


@pytest.fixture
def files(flows: ModuleType, tmp_path: Path) -> Iterator[Files]:
    """The test's side log and marker file; this process's steps write the log too."""
    found = Files(tmp_path)
    flows.log_to(str(found.log))
    try:
        yield found
    finally:
        flows.log_to(None)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    return env


def start_child(kit: StoreKit, files: Files, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), args[0], kit.url, str(files.log), str(files.marks), *args[1:]],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def reap(process: subprocess.Popen[str], *, kill: bool = True) -> str:
    """Wait for `process` to end (SIGKILLed first unless `kill` is False); its stderr."""
    if kill and process.poll() is None:
        process.kill()
    try:
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:  # it would not end by itself
            process.kill()
            process.communicate()
    return err


class Exit(NamedTuple):
    """How a child ended."""

    code: int
    """Its exit code; minus the signal that killed it."""
    pid: int
    err: str


def run_child(kit: StoreKit, files: Files, run_id: str, name: str, data: Any, kill: str) -> Exit:
    """Run `name` as `run_id` in a child process, to its end or to its kill."""
    process = start_child(kit, files, "run", run_id, name, json.dumps(data), kill)
    err = reap(process, kill=False)
    return Exit(process.returncode, process.pid, err)


def killed_at(kit: StoreKit, files: Files, run_id: str, name: str, data: Any, kill: str) -> int:
    """Run `name` in a child that dies by SIGKILL at `kill`; its pid."""
    done = run_child(kit, files, run_id, name, data, kill)
    assert -signal.SIGKILL == done.code, done.err
    return done.pid


def steps_by(kit: StoreKit, run_id: str) -> list[tuple[str, int, int]]:
    """The run's journaled step attempts, in commit order: (step, visit, pid of the writer)."""
    return [
        (row.step, row.visit, int(row.worker.split("|")[2]))  # host|pid namespace|pid|start
        for row in kit.attempt_rows()
        if row.run_id == run_id
    ]


def parked_by_none(kit: StoreKit, run_id: str) -> bool:
    return kit.status_of(run_id) == ("waiting", None)


async def resume_on_fake_clock(
    clock: FakeClock, kit: StoreKit, run_id: str, name: str, data: Any, due: float
) -> Run:
    """Resume the run here once half a day has passed; it must end at `due`, not before.

    The process was down for half a day: a resumed wait that took its
    deadline anew (a day from now) would not end at `due`.
    """
    clock.advance(DAY / 2)
    store = kit.open()
    task = asyncio.create_task(arun_workflow(name, data, run_id=run_id, store=store))
    await until(lambda: clock.sleepers >= 1, "the resumed wait to sleep")
    clock.advance(due - clock.now() - 60)
    await asyncio.sleep(0.1)
    assert not task.done(), "a resumed wait ends at its journaled deadline, not before"
    clock.advance(120)
    done, _ = await asyncio.wait({task}, timeout=10)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise AssertionError("the resumed wait did not end at its journaled deadline")
    return task.result()


# -- sleeps ------------------------------------------------------------------------------------


def test_a_sleep_killed_waits_only_its_remainder_in_real_time(
    store_kit: StoreKit, files: Files
) -> None:
    """Killed 0.4 s into its 1.5 s sleep, resumed 0.4 s later: done at its deadline, not
    after another 1.5 s, and `a` is not run again."""
    seconds = 1.5
    process = start_child(
        store_kit, files, "run", "nap-1", "napping", json.dumps({"seconds": seconds}), "0"
    )
    try:
        wait_for(lambda: [m for m in files.read_marks() if m.what == "due"], "the child's sleep")
        began = files.due("nap").started
        assert began is not None
        wait_for(lambda: time.time() >= began + 0.4, "the child to sleep 0.4 s")
    finally:
        err = reap(process)
    assert -signal.SIGKILL == process.returncode, err
    child = process.pid
    due = began + seconds
    wait_for(lambda: time.time() >= began + 0.8, "the process to have been down 0.4 s")
    resumed = time.time()
    run = run_workflow("napping", {"seconds": seconds}, run_id="nap-1", store=store_kit.open())
    took = time.time() - resumed
    assert "completed" == run.status
    assert child == run.output["a_by"], "a's output is the one journaled before the kill"
    assert run.output["b_at"] >= due, "the resumed sleep ends at its deadline, not before"
    assert took < seconds - 0.3, f"waited {took:.3f}s: the whole sleep again, not its remainder"
    assert ["nap-1:a", "nap-1:b"] == files.steps()
    assert [("a", 1, child), ("nap", 1, os.getpid()), ("b", 1, os.getpid())] == steps_by(
        store_kit, "nap-1"
    )


def test_a_day_long_sleep_killed_waits_only_what_remains_of_the_day(
    store_kit: StoreKit, files: Files
) -> None:
    """The deadline journaled at first reach is kept: resumed half a day later, half remains."""
    data = {"seconds": DAY}
    child = killed_at(store_kit, files, "nap-2", "napping", data, "due:nap:1")
    began = files.due("nap").started
    assert began is not None
    with fake_clock() as clock:
        run = asyncio.run(
            resume_on_fake_clock(clock, store_kit, "nap-2", "napping", data, began + DAY)
        )
    assert "completed" == run.status
    assert ["nap-2:a", "nap-2:b"] == files.steps()
    assert [("a", 1, child), ("nap", 1, os.getpid()), ("b", 1, os.getpid())] == steps_by(
        store_kit, "nap-2"
    )


# -- events ------------------------------------------------------------------------------------


def test_events_sent_while_no_process_runs_the_workflow_are_each_received_once_in_order(
    store_kit: StoreKit, files: Files
) -> None:
    """Killed waiting; two events sent; resumed and killed right after taking the second: all
    is delivered once, in order, with no wait for the day-long timeout."""
    first = killed_at(store_kit, files, "read-1", "reading", {}, "due:note:1")
    with store_kit.open() as store:
        send_event("read-1", "note", "one", store=store)
        send_event("read-1", "note", {"n": 2}, store=store)
    second = killed_at(store_kit, files, "read-1", "reading", {}, "took:note:2")
    run = run_workflow("reading", {}, run_id="read-1", store=store_kit.open(), timeout=30)
    assert "completed" == run.status
    assert ("one", {"n": 2}) == tuple(run.output["seen"])
    assert ["due", "took", "due", "took"] == [m.what for m in files.read_marks()]
    assert [("note", 1), ("note", 1), ("note", 2), ("note", 2)] == [
        (m.wait, m.visit) for m in files.read_marks()
    ]
    assert [
        ("read-1:a", first),
        ("read-1:collect", second),
        ("read-1:collect#2", os.getpid()),
    ] == [(line.key, line.pid) for line in files.ran()]
    assert [
        ("a", 1, first),
        ("note", 1, second),
        ("collect", 1, second),
        ("note", 2, second),
        ("collect", 2, os.getpid()),
    ] == steps_by(store_kit, "read-1")


def test_a_resumed_event_wait_times_out_when_the_rest_of_its_timeout_is_spent(
    store_kit: StoreKit, files: Files
) -> None:
    """Killed waiting with a day's timeout; resumed half a day later: it times out at the
    journaled deadline (to on_timeout), not a day after the resume."""
    child = killed_at(store_kit, files, "reply-1", "replying", {}, "due:reply:1")
    began = files.due("reply").started
    assert began is not None
    with fake_clock() as clock:
        run = asyncio.run(
            resume_on_fake_clock(clock, store_kit, "reply-1", "replying", {}, began + DAY)
        )
    assert "completed" == run.status
    assert "reply" not in run.output, "a timed-out wait stores nothing"
    assert ["reply-1:a", "reply-1:gave_up"] == files.steps()
    assert [("a", 1, child), ("reply", 1, os.getpid()), ("gave_up", 1, os.getpid())] == steps_by(
        store_kit, "reply-1"
    )


def test_a_process_that_lost_its_waiting_run_cannot_consume_its_event(
    store_kit: StoreKit, files: Files
) -> None:
    """The run is taken over while the child waits: the event stays for the new owner."""
    process = start_child(store_kit, files, "run", "reply-2", "replying", "{}", "0")
    try:
        wait_for(lambda: [m for m in files.read_marks() if m.what == "due"], "the child's wait")
        # Another process claimed the run; its lease ran out since, so this one may resume it.
        store_kit.set_owner("reply-2", "elsewhere|pid:[1]|1|1", time.time() - 1)
        with store_kit.open() as store:
            send_event("reply-2", "reply", {"by": "ana"}, store=store)
        err = reap(process, kill=False)
    finally:
        reap(process)
    assert 1 == process.returncode, err
    assert "no longer owned by this process" in err
    assert ["due"] == [m.what for m in files.read_marks()], "the old owner took no event"
    run = run_workflow("replying", {}, run_id="reply-2", store=store_kit.open(), timeout=10)
    assert "completed" == run.status
    assert {"by": "ana"} == run.output["answered"]
    assert [("a", 1), ("reply", 1), ("b", 1)] == [row[:2] for row in steps_by(store_kit, "reply-2")]
    assert os.getpid() == steps_by(store_kit, "reply-2")[1][2], "the new owner took the event"


def test_a_run_cancelled_while_it_takes_an_event_keeps_what_the_take_committed(
    store_kit: StoreKit, files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The take is held at the database's write lock when the run's caller gives up: the
    cancel waits for the commit, so the event is taken and journaled together, once; the
    resumed run replays it and the mailbox has nothing more to give."""
    store = store_kit.open()
    lock = store_kit.write_lock()
    cls = type(store)
    take_event = cls.take_event
    looked = asyncio.Event()  # the wait's first take came back empty
    sent = asyncio.Event()  # the event is committed to the mailbox
    holding = asyncio.Event()

    async def held_take(self: Store, claim: Any, event: str, entry: Any, wrap: Any) -> Any:
        if looked.is_set() and not holding.is_set():
            # A take after the empty look (woken by the event, or by anything else): it
            # starts once the event is in, and is held at the write lock, taken off the loop.
            await sent.wait()
            await asyncio.to_thread(lock.take)
            holding.set()
        taken = await take_event(self, claim, event, entry, wrap)
        if taken is None:
            looked.set()
        return taken

    monkeypatch.setattr(cls, "take_event", held_take)

    async def main() -> None:
        task = asyncio.create_task(arun_workflow("replying", {}, run_id="take-1", store=store))
        # The first take must find the mailbox empty, not race the send for the event.
        await asyncio.wait_for(looked.wait(), 20)
        await asend_event("take-1", "reply", "yes", store=store)
        sent.set()
        await asyncio.wait_for(holding.wait(), 20)
        task.cancel()
        await asyncio.sleep(0.1)
        assert not task.done(), "the cancel waits for the take to commit"
        lock.give_back()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert ("cancelled", None) == store_kit.status_of("take-1")
    me = os.getpid()
    assert [("a", 1, me), ("reply", 1, me)] == steps_by(store_kit, "take-1")
    monkeypatch.undo()
    run = run_workflow("replying", {}, run_id="take-1", store=store, timeout=10)
    assert "completed" == run.status
    assert "yes" == run.output["answered"]
    assert ["take-1:a", "take-1:b"] == files.steps()
    assert [("a", 1, me), ("reply", 1, me), ("b", 1, me)] == steps_by(store_kit, "take-1")


def test_a_take_whose_journal_entry_is_refused_leaves_the_event_in_the_mailbox(
    store_kit: StoreKit, files: Files
) -> None:
    """Taking an event and journaling it are one write: when the wait's journal entry cannot
    be written (the journal holds that visit's outcome already, written by another store
    object of this process on the same claim), the event is not taken either, and the next
    visit of the wait gets it."""
    store, twin = store_kit.open(), store_kit.open()
    forged = dumps(encode(Ok({"note": "forged"})))

    async def main() -> None:
        task = asyncio.create_task(arun_workflow("reading", {}, run_id="twin-1", store=store))
        await until(lambda: any(r[0] == "a" for r in steps_by(store_kit, "twin-1")), "a done")
        # A new run's first claim has epoch 1; this process's owner token is the twin's too.
        await twin.append(Claim("twin-1", 1), Attempt("note", 1, 1, True, True, forged, 0.0, 0.0))
        await asend_event("twin-1", "note", "one", store=store)
        with pytest.raises(StoreError):
            await asyncio.wait_for(task, 20)

    asyncio.run(main())
    send_event("twin-1", "note", "two", store=store)
    run = run_workflow("reading", {}, run_id="twin-1", store=store, timeout=10)
    assert "completed" == run.status
    assert ("forged", "one") == tuple(run.output["seen"]), "the refused take took nothing"


# -- parked runs under workers -----------------------------------------------------------------


def test_parked_runs_outlive_their_killed_worker_and_a_new_worker_wakes_them(
    store_kit: StoreKit, files: Files
) -> None:
    """A worker parks a run on an event and one on a sleep, then dies by SIGKILL: both stay
    waiting, ownerless; a new worker wakes the first by its events (one sent while no
    worker ran), the second at its deadline; no step runs twice."""
    store = store_kit.open()
    workers: list[subprocess.Popen[str]] = []
    try:
        workers.append(start_child(store_kit, files, "worker"))
        start_workflow("reading", {}, store=store, run_id="park-1")
        start_workflow("napping", {"seconds": 1.5}, store=store, run_id="park-2")
        for run_id in ("park-1", "park-2"):
            wait_for(partial(parked_by_none, store_kit, run_id), f"{run_id} parked")
        reap(workers[0])
        send_event("park-1", "note", "one", store=store)
        parked = {run_id: store.get_run(run_id) for run_id in ("park-1", "park-2")}
        for run_id, run in parked.items():
            assert run is not None
            assert ("waiting", None, None) == (run.status, run.owner, run.lease_expires), run_id
        assert parked["park-1"].waiting is not None  # type: ignore[union-attr]
        assert ("note",) == parked["park-1"].waiting.events  # type: ignore[union-attr]
        due = files.due("nap").started + 1.5  # type: ignore[operator]
        workers.append(start_child(store_kit, files, "worker"))
        wait_for(lambda: "park-1:collect" in files.steps(), "the first event taken")
        wait_for(partial(parked_by_none, store_kit, "park-1"), "park-1 parked again")
        send_event("park-1", "note", "two", store=store)
        wait_for(lambda: store_kit.status_of("park-1") == ("completed", None), "park-1 completed")
        wait_for(lambda: store_kit.status_of("park-2") == ("completed", None), "park-2 completed")
        workers[1].send_signal(signal.SIGTERM)
        err = reap(workers[1], kill=False)
        assert 0 == workers[1].returncode, err
    finally:
        for process in workers:
            reap(process)
    first, second = workers[0].pid, workers[1].pid
    reading = store.get_run("park-1")
    assert reading is not None
    assert ("one", "two") == tuple(reading.output["seen"])
    napping = store.get_run("park-2")
    assert napping is not None
    assert napping.output["b_at"] >= due, "woken at its deadline, not before"
    assert sorted(
        [
            ("park-1:a", first),
            ("park-1:collect", second),
            ("park-1:collect#2", second),
            ("park-2:a", first),
            ("park-2:b", second),
        ]
    ) == sorted((line.key, line.pid) for line in files.ran())
    assert [
        ("a", 1, first),
        ("note", 1, second),
        ("collect", 1, second),
        ("note", 2, second),
        ("collect", 2, second),
    ] == steps_by(store_kit, "park-1")
    assert [("a", 1, first), ("nap", 1, second), ("b", 1, second)] == steps_by(store_kit, "park-2")
