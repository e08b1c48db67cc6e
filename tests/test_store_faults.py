"""The store under faults: cancels at its commit points, interrupts, damaged runs.

Every path records what really happened and gives the claim back at once; a
damaged run is a `StoreError` naming it, and never hides the healthy ones.
Each test runs once per kind of store (the `store_kit` fixture); damaged files
and old schemas of the SQLite file are in test_sqlite.py.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from polling import wait_for
from stores import StoreKit

from flowdsl import (
    Event,
    Run,
    RunFinished,
    Store,
    aresume_runs,
    arun_workflow,
    error,
    ok,
    parallel,
    run_workflow,
    step,
    workflow,
)
from flowdsl.errors import StoreError

pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


# -- cancels at the store's commit points ------------------------------------------------------


def test_a_run_cancelled_while_it_opens_is_recorded_cancelled_and_given_back(
    store: Store, store_kit: StoreKit
) -> None:
    """The claim commits after the caller gave up: it is released, the run cancelled, at once."""
    ran: list[str] = []

    @workflow
    def opening() -> None:
        step(lambda ctx: ran.append("a"), name="a")

    run_workflow(opening, run_id="warm", store=store)  # the writer thread is up
    lock = store_kit.write_lock()
    lock.take()

    async def cancel_during_open() -> None:
        task = asyncio.ensure_future(arun_workflow(opening, run_id="r1", store=store))
        for _ in range(5):
            await asyncio.sleep(0)  # the open job is queued; the writer waits for the lock
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_during_open())  # this loop is closed before the claim commits
    lock.give_back()
    wait_for(lambda: store_kit.status_of("r1") == ("cancelled", None), "the claim to be given back")
    assert ["a"] == ran  # only the warm-up run's step
    assert [] == store.resumable()  # a run its caller cancelled is not resumed by resume_runs
    again = run_workflow(opening, run_id="r1", store=store)  # not "executed by <itself>"
    assert ("completed", ["a", "a"]) == (again.status, ran)


def test_a_cancel_while_the_final_record_is_written_waits_for_it(
    store: Store, store_kit: StoreKit
) -> None:
    """The store, the listeners and the caller agree: completed, RunFinished, then the cancel."""
    events: list[Event] = []
    lock = store_kit.write_lock()

    @workflow
    def finishing() -> None:
        step(lambda ctx: ok({"done": True}), name="last")

    def hold_the_file(event: Event) -> None:
        if type(event).__name__ == "StepFinished":
            lock.take()  # the final record will wait for the lock
            reached.set()
        events.append(event)

    reached = threading.Event()

    async def main() -> None:
        task = asyncio.ensure_future(
            arun_workflow(finishing, run_id="r1", store=store, listeners=[hold_the_file])
        )
        await asyncio.to_thread(reached.wait, 30)
        for _ in range(3):
            await asyncio.sleep(0)
        task.cancel()
        asyncio.get_running_loop().call_later(0.05, lock.give_back)
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert isinstance(events[-1], RunFinished)
    assert "completed" == events[-1].run.status
    assert ("completed", None) == store_kit.status_of("r1")


@pytest.mark.parametrize("kind", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_in_a_step_records_the_run_cancelled(
    store: Store, store_kit: StoreKit, kind: type[BaseException]
) -> None:
    """Not left "running": the store says cancelled and gives the run up, then it propagates."""
    events: list[Event] = []

    @workflow
    def interrupted() -> None:
        step(lambda ctx: ok({"a": 1}), name="a")

        @step
        def stop(ctx: Any) -> None:
            raise kind()

    with pytest.raises(kind):
        run_workflow(interrupted, run_id="r1", store=store, listeners=[events.append])
    assert ("cancelled", None) == store_kit.status_of("r1")
    assert isinstance(events[-1], RunFinished)
    recorded = store.get_run("r1")
    assert recorded is not None
    assert ("cancelled", {"a": 1}) == (recorded.status, dict(recorded.output))


# -- nothing runs twice across a resume: compensations and reducers ------------------------------


def test_a_finished_compensation_never_runs_again_on_resume(store: Store) -> None:
    """A refund paid before the crash is not paid again; the one not reached runs once."""
    paid: list[str] = []
    gate = asyncio.Event

    async def refund(ctx: Any) -> None:
        paid.append(f"refund {ctx.step}")

    async def release_hold(ctx: Any) -> None:
        if not state["resumed"]:
            state["undoing"].set()
            await asyncio.Event().wait()  # cancelled here, after the refund was journaled
        paid.append("release hold")

    state: dict[str, Any] = {"resumed": False}

    @workflow
    def payment() -> None:
        step(lambda ctx: ok({"hold": 1}), name="hold", compensate=release_hold)
        step(lambda ctx: ok({"charge": 1}), name="charge", compensate=refund)
        step(lambda ctx: error("shipping failed"), name="ship")

    async def main() -> Run:
        state["undoing"] = gate()
        task = asyncio.ensure_future(arun_workflow(payment, run_id="p1", store=store))
        await state["undoing"].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        state["resumed"] = True
        return await arun_workflow(payment, run_id="p1", store=store)

    run = asyncio.run(main())
    assert ["refund charge", "release hold"] == paid
    assert ("failed", "ship") == (run.status, run.failed_step)
    assert [("charge", "succeeded"), ("hold", "succeeded")] == [
        (c.step, c.status) for c in run.compensations
    ]


def test_a_journaled_reducer_outcome_is_replayed_not_recomputed(store: Store) -> None:
    """into= ran before the crash: the resumed run uses its journaled outcome."""
    reduced: list[int] = []
    state: dict[str, Any] = {}

    def total(ctx: Any, results: Any) -> Any:
        reduced.append(len(results))
        return ok({"total": sum(r.value for r in results.values())})

    @workflow
    def summed() -> None:
        with parallel(name="fan", into=total):
            step(lambda ctx: 1, name="a")
            step(lambda ctx: 2, name="b")

        @step
        async def after(ctx: Any) -> Any:
            if "resumed" not in state:
                state["after"].set()
                await asyncio.Event().wait()
            return ok({"seen": ctx["total"]})

    async def main() -> Run:
        state["after"] = asyncio.Event()
        task = asyncio.ensure_future(arun_workflow(summed, run_id="s1", store=store))
        await state["after"].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        state["resumed"] = True
        return await arun_workflow(summed, run_id="s1", store=store)

    run = asyncio.run(main())
    assert ("completed", 3, [2]) == (run.status, run.output["seen"], reduced)


# -- damaged stores ------------------------------------------------------------------------


def two_runs(store: Store) -> None:
    """A completed run 'good' and a run 'bad' left unfinished (so both can be resumed)."""

    @workflow
    def pair() -> None:
        step(lambda ctx: ok({"a": 1}), name="a")

        @step
        async def b(ctx: Any) -> Any:
            if ctx.run_id.endswith("-wait") and not state.get("go"):
                state["reached"].set()
                await asyncio.Event().wait()
            return ok({"b": 2})

    state: dict[str, Any] = {}

    async def main() -> None:
        state["reached"] = asyncio.Event()
        for run_id in ("good-wait", "bad-wait"):
            state["reached"].clear()
            task = asyncio.ensure_future(arun_workflow(pair, run_id=run_id, store=store))
            await state["reached"].wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        state["go"] = True
        await arun_workflow(pair, run_id="done", store=store)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("part", "read", "resume"),
    [
        # A step outcome is read when the run resumes (get_run shows attempts, not outcomes).
        ("journal", True, False),
        ("input", True, False),
        ("definition", True, False),
        ("output", False, True),
        ("status", False, True),
    ],
    ids=["journal", "input", "definition", "output", "status"],
)
def test_a_damaged_run_is_a_store_error_and_the_others_stay_usable(
    store: Store, store_kit: StoreKit, part: str, read: bool, resume: bool
) -> None:
    """What cannot be read is a StoreError naming the run; listing and resuming the rest work."""
    two_runs(store)
    store_kit.damage("bad-wait", part)
    damaged: list[str] = []
    listed = store.list_runs(on_damaged=lambda run_id, exc: damaged.append(run_id))
    if read:
        assert store.get_run("bad-wait") is not None
        assert ([], {"done", "good-wait", "bad-wait"}) == (damaged, {r.run_id for r in listed})
    else:
        with pytest.raises(StoreError, match=r"run 'bad-wait' is damaged in the store: its \w+"):
            store.get_run("bad-wait")
        assert (["bad-wait"], {"done", "good-wait"}) == (damaged, {r.run_id for r in listed})

    async def resume_all() -> list[Run]:
        return await aresume_runs(store, include_cancelled=True)

    if resume:  # bad-wait is still resumable (its output is rewritten), or not unfinished
        assert "good-wait" in [r.run_id for r in asyncio.run(resume_all())]
    else:
        with pytest.raises(StoreError, match=r"run 'bad-wait' (is damaged|cannot resume)"):
            asyncio.run(resume_all())
    good = store.get_run("good-wait")
    assert good is not None
    assert ("completed", 2) == (good.status, good.output["b"])


def test_list_runs_logs_a_damaged_run_when_nobody_asks(
    store: Store, store_kit: StoreKit, caplog: pytest.LogCaptureFixture
) -> None:
    """Without on_damaged, a damaged run is left out with a warning on the 'flowdsl' logger."""
    two_runs(store)
    store_kit.damage("bad-wait", "output")
    with caplog.at_level("WARNING", logger="flowdsl"):
        listed = store.list_runs()
    assert {"done", "good-wait"} == {r.run_id for r in listed}
    assert any("'bad-wait' is damaged" in record.getMessage() for record in caplog.records)


def test_a_cancel_that_lands_as_the_write_ends_is_not_lost() -> None:
    """A write waited out despite a cancel re-raises it, even when both land in one turn."""
    from flowdsl.stores._journal import _wait_out_cancel

    async def main() -> None:
        write: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiter = asyncio.ensure_future(_wait_out_cancel(write))
        await asyncio.sleep(0)  # the waiter awaits the write
        write.set_result(1)  # the write ends...
        waiter.cancel()  # ...and the cancel comes before the waiter saw it end
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(main())
