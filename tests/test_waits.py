"""Waits: sleep_for, sleep_until and wait_for_event, as recorded nodes and as they run.

Definitions are checked at import; runs are driven by flowdsl's fake clock,
so a wait of three days takes no time. Each runtime story runs without a
store (the in-process mailbox) and on every kind of store (`store_kit`).
Crashes during waits are in test_waits_crash.py; parking under workers is at
the end of this file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import until
from stores import KITS

from flowdsl import (
    END,
    Run,
    Store,
    Waiting,
    Worker,
    arun_workflow,
    asend_event,
    astart_workflow,
    goto,
    ok,
    parallel,
    send_event,
    sequence,
    sleep_for,
    sleep_until,
    step,
    to_dot,
    to_json,
    to_mermaid,
    wait_for_event,
    workflow,
)
from flowdsl._define import _registry
from flowdsl._engine import _mailbox
from flowdsl.errors import (
    DefinitionError,
    RunningLoopError,
    RunNotFound,
    SerializationError,
    UsageError,
)
from flowdsl.testing import FakeClock, fake_clock

pytestmark = pytest.mark.usefixtures("flowdsl_registry")

DAY = 86_400.0
UTC = dt.UTC


# -- definitions --------------------------------------------------------------------------


def test_waits_are_named_by_kind_and_order_or_event_and_drawn_in_every_format() -> None:
    """Default names: sleep_for#n, sleep_until#n, the event; kinds sleep and wait."""

    @workflow("named")
    def wf() -> None:
        @step
        async def submit(ctx: Any) -> Any:
            return ok()

        sleep_for(60)
        sleep_until(dt.datetime(2030, 1, 1, tzinfo=UTC))
        wait_for_event("approved", timeout=DAY, on_timeout="escalate")
        sleep_for(5)

        @step
        async def escalate(ctx: Any) -> Any:
            return ok()

    names = [n.name for n in wf.plan.nodes]
    assert [
        "submit",
        "sleep_for#1",
        "sleep_until#1",
        "approved",
        "sleep_for#2",
        "escalate",
    ] == names
    graph = wf.graph()
    kinds = {n.label.split("\n")[0]: n.kind for n in graph.nodes}
    assert "sleep" == kinds["sleep_for#1"] == kinds["sleep_until#1"]
    assert "wait" == kinds["approved"]
    timeout_edges = [e for e in graph.edges if e.kind == "route" and "escalate" in e.target]
    assert timeout_edges, "on_timeout is drawn as a route edge"
    assert "approved" in to_mermaid(graph)
    assert "approved" in to_dot(graph)
    drawn = json.loads(to_json(graph))
    assert {"sleep", "wait"} <= {n["kind"] for n in drawn["nodes"]}


def test_an_edit_above_an_unnamed_wait_keeps_its_name_and_the_fingerprint() -> None:
    """Names never carry a line number: moving a wait down a file strands no durable run."""

    def define(blank_lines: int) -> str:
        source = "\n" * blank_lines + (
            "@workflow('moved')\n"
            "def moved():\n"
            "    sleep_for(60)\n"
            "    wait_for_event('go', timeout=5)\n"
        )
        namespace: dict[str, Any] = {"workflow": workflow, "sleep_for": sleep_for}
        namespace["wait_for_event"] = wait_for_event
        with _registry.isolated():
            exec(compile(source, "moved.py", "exec"), namespace)
            return str(namespace["moved"].plan.fingerprint)

    assert define(0) == define(40)


def test_two_waits_for_one_event_need_names() -> None:
    """The event name is the default name, so a second wait for it is a duplicate."""
    with pytest.raises(DefinitionError, match=r"duplicate name 'ping'.*two waits for one event"):

        @workflow
        def twice() -> None:
            wait_for_event("ping")
            wait_for_event("ping")

    @workflow
    def named() -> None:
        wait_for_event("ping", name="first")
        wait_for_event("ping", name="second")

    assert ["first", "second"] == [n.name for n in named.plan.nodes]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: wait_for_event("e", timeout=5, on_timeout="nowhere"), r"nowhere"),
        (lambda: wait_for_event("e", on_timeout=END), r"on_timeout= needs timeout="),
        (lambda: wait_for_event("e", timeout=-1), r"timeout"),
        (lambda: wait_for_event("", timeout=1), r"event must be a non-empty string"),
        (lambda: sleep_for(-5), r"sleep_for\(\)'s seconds"),
        (lambda: sleep_until(dt.datetime(2030, 1, 1)), r"naive"),
        (lambda: sleep_until("tomorrow"), r"aware datetime"),  # type: ignore[arg-type]
        (lambda: sleep_for(lambda: 5), r"function"),
    ],
)
def test_bad_waits_are_definition_errors_naming_the_line(
    make: Callable[[], None], message: str
) -> None:
    """Every problem of a wait is found at import, in the user's file, at the wait's line."""
    with pytest.raises(DefinitionError, match=message) as caught:

        @workflow
        def bad() -> None:
            @step
            async def first(ctx: Any) -> Any:
                return ok()

            make()

    assert f"{__file__}:" in str(caught.value)


def test_on_timeout_is_only_for_top_level_waits() -> None:
    """Inside a branch a timeout fails the branch: it cannot route."""
    with pytest.raises(DefinitionError, match=r"only for a top-level wait"):

        @workflow
        def branchy() -> None:
            with parallel():
                wait_for_event("e", timeout=5, on_timeout=END)

                @step
                async def other(ctx: Any) -> Any:
                    return ok()


def test_a_wait_called_while_a_step_runs_says_to_use_asyncio_sleep() -> None:
    """In a step's body a wait cannot be recorded: the error names asyncio.sleep."""

    @workflow
    def confused() -> None:
        @step
        async def nap(ctx: Any) -> Any:
            sleep_for(1)
            return ok()

    run = confused.run({})
    assert "failed" == run.status
    assert isinstance(run.error, UsageError)
    assert "asyncio.sleep" in str(run.error)


def test_a_wait_at_module_level_is_a_definition_error() -> None:
    with pytest.raises(DefinitionError, match=r"inside a @workflow body"):
        sleep_for(1)


def test_a_wait_is_a_goto_target() -> None:
    """goto(wait) sends the run back to the wait, as to a step."""

    @workflow
    def loop() -> None:
        wait_for_event("tick", returns="got")

        @step
        async def count(ctx: Any) -> Any:
            seen = [*ctx.get("seen", ()), ctx["got"]]
            return goto("tick", {"seen": seen}) if len(seen) < 3 else ok({"seen": seen})

    async def main() -> Run:
        task = asyncio.create_task(arun_workflow("loop", {}, run_id="looping"))
        await asyncio.sleep(0)
        for n in range(3):
            await asend_event("looping", "tick", n)
        return await task

    run = asyncio.run(main())
    assert (0, 1, 2) == tuple(run.output["seen"])


# -- running: without a store and on every store ----------------------------------------------

Runner = Callable[..., Awaitable[Run]]


@pytest.fixture(params=["memory", *KITS])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store | None]:
    """Where the run lives: no store (the in-process mailbox), or each kind of store."""
    if request.param == "memory":
        yield None
        return
    kit = KITS[request.param](tmp_path)
    try:
        yield kit.open()
    finally:
        kit.close()


async def start(name: str, run_id: str, store: Store | None, data: Any = None) -> asyncio.Task[Run]:
    """The run as a task, once it is executing (an event can reach it).

    With a store, once the store holds the run: a store may commit a run's
    creation and an event on different connections, in either order.
    """
    task = asyncio.create_task(arun_workflow(name, data or {}, run_id=run_id, store=store))
    await asyncio.sleep(0)
    deadline = time.monotonic() + 10.0
    while store is not None and store.get_run(run_id) is None:
        assert time.monotonic() < deadline, f"run {run_id!r} was not created in 10 s"
        await asyncio.sleep(0.005)
    return task


def approval() -> None:
    @workflow
    def expense() -> None:
        @step
        async def submit(ctx: Any) -> Any:
            return ok({"submitted": True})

        wait_for_event("approved", returns="decision", timeout=3 * DAY, on_timeout="escalate")
        sleep_for(lambda ctx: ctx["cooling_off"])

        @step
        async def pay(ctx: Any) -> Any:
            return goto(END, {"paid": ctx["decision"]["by"]})

        @step
        async def escalate(ctx: Any) -> Any:
            return ok({"escalated": True})


def test_an_approved_expense_is_paid_after_its_cooling_off(where: Store | None) -> None:
    """The event's payload is stored under returns=; the sleep follows the fake clock."""
    approval()

    async def main(clock: FakeClock) -> Run:
        task = await start("expense", "e-1", where, {"cooling_off": 3600})
        await asend_event("e-1", "approved", {"by": "ana"}, store=where)

        def cooling_off() -> bool:  # the wait's own deadline is a sleeper too, until it is taken
            if where is None:
                return clock.sleepers >= 1
            run = where.get_run("e-1")
            return run is not None and "approved" in [r.name for r in run.steps]

        await until(cooling_off, "the event taken")
        await until(lambda: clock.sleepers >= 1, "the cooling-off sleep")
        assert not task.done()
        clock.advance(3599)
        await asyncio.sleep(0.05)
        assert not task.done(), "the sleep ends at its deadline, not before"
        clock.advance(1)
        return await task

    with fake_clock() as clock:
        run = asyncio.run(main(clock))
    assert "completed" == run.status
    assert {"by": "ana"} == run.output["decision"]
    assert "ana" == run.output["paid"]
    assert "escalated" not in run.output


def test_a_timed_out_wait_goes_to_on_timeout_and_stores_nothing(where: Store | None) -> None:
    approval()

    async def main(clock: FakeClock) -> Run:
        task = await start("expense", "e-2", where, {"cooling_off": 1})
        await until(lambda: clock.sleepers >= 1, "the wait")
        clock.advance(3 * DAY)
        return await task

    with fake_clock() as clock:
        run = asyncio.run(main(clock))
    assert "completed" == run.status
    assert run.output["escalated"] is True
    assert "decision" not in run.output


def test_a_timed_out_wait_without_on_timeout_fails_the_run(where: Store | None) -> None:
    @workflow
    def strict() -> None:
        wait_for_event("answer", timeout=60)

        @step
        async def after(ctx: Any) -> Any:
            return ok({"after": True})

    async def main(clock: FakeClock) -> Run:
        task = await start("strict", "s-1", where)
        await until(lambda: clock.sleepers >= 1, "the wait")
        clock.advance(60)
        return await task

    with fake_clock() as clock:
        run = asyncio.run(main(clock))
    assert "failed" == run.status
    assert "answer" == run.failed_step
    assert isinstance(run.error, TimeoutError) or "TimeoutError" in repr(run.error)
    assert "after" not in run.output


def test_on_timeout_end_finishes_the_run(where: Store | None) -> None:
    @workflow
    def lenient() -> None:
        wait_for_event("answer", timeout=60, on_timeout=END)

        @step
        async def after(ctx: Any) -> Any:
            return ok({"after": True})

    async def main(clock: FakeClock) -> Run:
        task = await start("lenient", "l-1", where)
        await until(lambda: clock.sleepers >= 1, "the wait")
        clock.advance(61)
        return await task

    with fake_clock() as clock:
        run = asyncio.run(main(clock))
    assert "completed" == run.status
    assert "after" not in run.output


def test_a_none_payload_is_stored_and_an_early_event_is_kept(where: Store | None) -> None:
    """An event sent before the run reaches its wait waits for it; None is a payload too."""
    gate = asyncio.Event()

    @workflow
    def early() -> None:
        @step
        async def slow(ctx: Any) -> Any:
            await gate.wait()
            return ok()

        wait_for_event("go")

    async def main() -> Run:
        gate.clear()
        task = await start("early", "early-1", where)
        await asend_event("early-1", "go", None, store=where)  # the run is still in `slow`
        gate.set()
        return await task

    run = asyncio.run(main())
    assert "completed" == run.status
    assert "go" in run.output
    assert run.output["go"] is None


def test_events_are_taken_first_in_first_out_one_per_visit(where: Store | None) -> None:
    """A goto loop over a wait takes the events in the order they were sent, each once."""

    @workflow
    def fifo() -> None:
        wait_for_event("item", returns="item")

        @step
        async def collect(ctx: Any) -> Any:
            got = [*ctx.get("got", ()), ctx["item"]]
            return goto("item", {"got": got}) if len(got) < 5 else ok({"got": got})

    async def main() -> Run:
        task = await start("fifo", "fifo-1", where)
        for n in range(5):
            await asend_event("fifo-1", "item", n, store=where)
        return await task

    run = asyncio.run(main())
    assert [0, 1, 2, 3, 4] == list(run.output["got"])
    visits = [r.visit for r in run.steps if r.name == "item"]
    assert [1, 2, 3, 4, 5] == visits


def test_two_concurrent_senders_deliver_each_event_exactly_once(where: Store | None) -> None:
    """Two threads send 20 events each: the loop takes 40, none twice, none lost."""
    count = 40

    @workflow
    def inbox() -> None:
        wait_for_event("msg", returns="msg")

        @step
        async def take(ctx: Any) -> Any:
            got = [*ctx.get("got", ()), ctx["msg"]]
            return goto("msg", {"got": got}) if len(got) < count else ok({"got": got})

    def sender(tag: str) -> None:
        for n in range(count // 2):
            send_event("inbox-1", "msg", f"{tag}{n}", store=where)

    async def main() -> Run:
        task = await start("inbox", "inbox-1", where)
        threads = [threading.Thread(target=sender, args=(tag,)) for tag in "ab"]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(lambda: [t.join() for t in threads])
        return await task

    run = asyncio.run(main())
    got = list(run.output["got"])
    assert sorted(got) == sorted(f"{t}{n}" for t in "ab" for n in range(count // 2))
    for tag in "ab":  # each sender's events arrive in the order it sent them
        mine = [g for g in got if g.startswith(tag)]
        assert mine == sorted(mine, key=lambda g: int(g[1:]))


def test_waits_run_in_parallel_branches(where: Store | None) -> None:
    """A branch may wait: for an event, or a sleep; the others go on meanwhile."""

    @workflow
    def both() -> None:
        with parallel(name="gather"):
            wait_for_event("left", returns="left")
            with sequence("right"):
                sleep_for(DAY, name="nap")

                @step
                async def woke(ctx: Any) -> Any:
                    return ok({"woke": True})

            @step
            async def quick(ctx: Any) -> Any:
                return ok({"quick": True})

    async def main(clock: FakeClock) -> Run:
        task = await start("both", "both-1", where)
        await until(lambda: clock.sleepers >= 1, "the nap")
        clock.advance(DAY)
        await asyncio.sleep(0.05)
        assert not task.done(), "the event has not come"
        await asend_event("both-1", "left", "L", store=where)
        return await task

    with fake_clock() as clock:
        run = asyncio.run(main(clock))
    results = run.output["__results__"]
    assert "L" == results["left"].value["left"]
    assert results["right"].value["woke"] is True
    assert results["quick"].value["quick"] is True


def test_sleep_until_a_function_of_the_context(where: Store | None) -> None:
    """sleep_until(fn): the aware datetime fn returns; a naive one fails the wait."""

    @workflow
    def dated() -> None:
        sleep_until(lambda ctx: ctx["when"])

    async def main(clock: FakeClock, when: dt.datetime, run_id: str) -> Run:
        task = await start("dated", run_id, where, {"when": when})
        if when.tzinfo is None:
            return await task
        await until(lambda: clock.sleepers >= 1, "the sleep")
        clock.advance(when.timestamp() - clock.now() - 1)
        await asyncio.sleep(0.05)
        assert not task.done()
        clock.advance(1)
        return await task

    with fake_clock() as clock:
        aware = dt.datetime.fromtimestamp(clock.now() + 7 * DAY, UTC)
        assert "completed" == asyncio.run(main(clock, aware, "d-1")).status
        naive = dt.datetime(2030, 1, 1)
        run = asyncio.run(main(clock, naive, "d-2"))
    assert "failed" == run.status
    assert "naive" in str(run.error)


# -- send_event's errors ------------------------------------------------------------------


def test_an_event_for_no_run_is_run_not_found() -> None:
    with pytest.raises(RunNotFound, match="nobody") as caught:
        send_event("nobody", "e")
    assert isinstance(caught.value, LookupError)


def test_an_event_for_an_unknown_or_finished_stored_run_is_refused(store: Store) -> None:
    @workflow
    def done_flow() -> None:
        @step
        async def only(ctx: Any) -> Any:
            return ok()

    assert "completed" == done_flow.run({}, run_id="done-1", store=store).status
    with pytest.raises(UsageError, match=r"'done-1' has completed"):
        send_event("done-1", "e", store=store)
    with pytest.raises(RunNotFound, match="'ghost'"):
        send_event("ghost", "e", store=store)


def test_send_event_with_a_store_refuses_a_running_loop(store: Store) -> None:
    async def main() -> None:
        send_event("any", "e", store=store)

    with pytest.raises(RunningLoopError, match="asend_event"):
        asyncio.run(main())


def test_a_payload_the_store_cannot_keep_is_a_serialization_error(store: Store) -> None:
    approval()

    async def main() -> None:
        task = await start("expense", "p-1", store, {"cooling_off": 0})
        with pytest.raises(SerializationError, match=r"event 'approved'.*lock"):
            await asend_event("p-1", "approved", {"lock": threading.Lock()}, store=store)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_a_durable_run_executing_here_is_reached_without_its_store(store: Store) -> None:
    """send_event(run_id) without store= commits into the store of a durable run here."""
    approval()

    async def main(clock: FakeClock) -> Run:
        task = await start("expense", "here-1", store, {"cooling_off": 0})
        await until(lambda: "here-1" in _mailbox._RUNS, "the run executing here")
        await asend_event("here-1", "approved", {"by": "bo"})
        return await task

    with fake_clock() as clock:
        run = asyncio.run(main(clock))
    assert "bo" == run.output["paid"]


# -- parking under workers ------------------------------------------------------------------


async def serve(worker: Worker) -> asyncio.Task[None]:
    return asyncio.create_task(worker.arun())


def statuses(store: Store) -> dict[str, int]:
    found: dict[str, int] = {}
    for run in store.list_runs():
        found[run.status] = found.get(run.status, 0) + 1
    return found


async def until_counted(
    store: Store, status: str, count: int, what: str, timeout: float = 240.0
) -> None:
    """Until `count` of the store's runs have `status`, or fail naming `what`.

    The runs are listed off the loop, every half second: the worker under test
    runs on this loop, and listing a thousand runs takes a while. The budget
    is generous: on a busy machine, PostgreSQL moves some ten runs a second
    through a worker of concurrency 4.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await asyncio.to_thread(statuses, store)).get(status) != count:
        if loop.time() > deadline:
            raise AssertionError(f"waited {timeout:g}s for {what}, in vain")
        await asyncio.sleep(0.5)


def test_a_thousand_parked_runs_hold_no_worker_slot(store: Store) -> None:
    """1,000 runs wait for events; a worker of concurrency 4 still runs the other runs."""

    @workflow
    def waits_for_go() -> None:
        wait_for_event("go", returns="go")

    @workflow
    def other() -> None:
        @step
        async def work(ctx: Any) -> Any:
            return ok({"worked": True})

    async def main() -> None:
        worker = Worker(store, concurrency=4, park_after=0, poll=0.02)
        serving = await serve(worker)
        for n in range(1000):
            await astart_workflow("waits_for_go", {}, store=store, run_id=f"w{n}")
        await until_counted(store, "waiting", 1000, "1,000 parked runs")
        handles = [await astart_workflow("other", {}, store=store) for _ in range(10)]
        for handle in handles:
            assert "completed" == (await handle.aresult(timeout=60)).status
        for n in range(1000):
            await asend_event(f"w{n}", "go", n, store=store)
        await until_counted(store, "completed", 1010, "all completed")
        worker.stop()
        await serving

    asyncio.run(main())
    runs = {r.run_id: r for r in store.list_runs()}
    assert all(runs[f"w{n}"].output["go"] == n for n in range(1000))


def test_a_parked_run_says_what_it_waits_for_and_wakes_at_its_deadline(store: Store) -> None:
    """Run.waiting names the waits, their events and the earliest deadline; no owner."""

    @workflow
    def napping() -> None:
        with parallel(name="both"):
            wait_for_event("call")
            sleep_for(DAY, name="nap")

    async def main(clock: FakeClock) -> None:
        worker = Worker(store, concurrency=1, park_after=0, poll=0.02)
        serving = await serve(worker)
        started = clock.now()
        await astart_workflow("napping", {}, store=store, run_id="nap-1")
        await until(lambda: store.get_run("nap-1").status == "waiting", "parked")  # type: ignore[union-attr]
        run = store.get_run("nap-1")
        assert run is not None
        assert run.owner is None
        assert run.lease_expires is None
        assert run.waiting is not None
        assert {"call", "nap"} == set(run.waiting.waits)
        assert ("call",) == run.waiting.events
        assert run.waiting.until == pytest.approx(started + DAY, abs=1)
        clock.advance(DAY)
        await until(
            lambda: (
                (r := store.get_run("nap-1")) is not None
                and r.waiting == Waiting(("call",), ("call",), None)
            ),
            "woken by the deadline, parked again on the event alone",
        )
        await asend_event("nap-1", "call", "hello", store=store)
        await until(lambda: store.get_run("nap-1").status == "completed", "done")  # type: ignore[union-attr]
        worker.stop()
        await serving

    with fake_clock() as clock:
        asyncio.run(main(clock))


def test_a_run_with_a_step_in_flight_is_not_parked(store: Store) -> None:
    """One branch waits, another runs a step: the run keeps its lease until the step ends."""
    release = threading.Event()

    @workflow
    def busy() -> None:
        with parallel(name="mixed"):
            wait_for_event("late")

            @step(blocking=True)
            def working(ctx: Any) -> Any:
                release.wait(30)
                return ok({"worked": True})

    async def main() -> None:
        worker = Worker(store, concurrency=1, park_after=0, poll=0.02)
        serving = await serve(worker)
        await astart_workflow("busy", {}, store=store, run_id="busy-1")
        await until(lambda: store.get_run("busy-1").status == "running", "running")  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
        run = store.get_run("busy-1")
        assert run is not None
        assert "running" == run.status
        assert run.owner is not None
        release.set()
        await until(lambda: store.get_run("busy-1").status == "waiting", "parked after the step")  # type: ignore[union-attr]
        await asend_event("busy-1", "late", 1, store=store)
        await until(lambda: store.get_run("busy-1").status == "completed", "done")  # type: ignore[union-attr]
        worker.stop()
        await serving

    asyncio.run(main())
    run = store.get_run("busy-1")
    assert run is not None
    assert 1 == [r.name for r in run.steps].count("working"), "the step ran once"


def test_a_wait_shorter_than_park_after_waits_in_place(store: Store) -> None:
    """An event that comes before park_after: the run never gave up its lease."""

    @workflow
    def brief() -> None:
        wait_for_event("soon")

    async def main() -> None:
        worker = Worker(store, concurrency=1, park_after=3600, poll=0.02)
        serving = await serve(worker)
        await astart_workflow("brief", {}, store=store, run_id="brief-1")
        await until(lambda: store.get_run("brief-1").status == "running", "running")  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
        run = store.get_run("brief-1")
        assert run is not None
        assert run.owner is not None
        assert run.waiting is None
        await asend_event("brief-1", "soon", None, store=store)
        await until(lambda: store.get_run("brief-1").status == "completed", "done")  # type: ignore[union-attr]
        worker.stop()
        await serving

    asyncio.run(main())


def test_a_parked_run_whose_deadline_passed_times_out_instead_of_parking_again(
    store: Store,
) -> None:
    """Woken at its deadline with park_after=0, an event wait times out; it does not park again."""

    @workflow
    def reminder() -> None:
        wait_for_event("reply", timeout=DAY, on_timeout="nudge")

        @step
        async def answered(ctx: Any) -> Any:
            return goto(END, {"answered": True})

        @step
        async def nudge(ctx: Any) -> Any:
            return ok({"nudged": True})

    async def main(clock: FakeClock) -> None:
        worker = Worker(store, concurrency=1, park_after=0, poll=0.02)
        serving = await serve(worker)
        await astart_workflow("reminder", {}, store=store, run_id="remind-1")
        await until(lambda: store.get_run("remind-1").status == "waiting", "parked")  # type: ignore[union-attr]
        clock.advance(DAY)
        await until(lambda: store.get_run("remind-1").status == "completed", "timed out")  # type: ignore[union-attr]
        worker.stop()
        await serving

    with fake_clock() as clock:
        asyncio.run(main(clock))
    run = store.get_run("remind-1")
    assert run is not None
    assert run.output["nudged"] is True
    assert ["reply", "nudge"] == [r.name for r in run.steps]
