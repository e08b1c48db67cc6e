"""Durable runs: run_id semantics, resume, leases, the JSON journal, the store's API.

Every test that needs a store runs once per kind of store (the `store` and
`store_kit` fixtures); what only the SQLite file has is in test_sqlite.py.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stores import StoreKit

from flowdsl import (
    END,
    Err,
    Goto,
    Ok,
    RecordedError,
    Retry,
    Run,
    RunFinished,
    StepFinished,
    Store,
    aresume_runs,
    arun_workflow,
    error,
    goto,
    ok,
    parallel,
    resume_runs,
    run_workflow,
    sequence,
    step,
    stream_workflow,
    workflow,
)
from flowdsl.errors import (
    GotoError,
    IncompatibleDefinition,
    SerializationError,
    StoreError,
    UsageError,
    WorkflowNotFound,
)
from flowdsl.result import ErrorGroup

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
import flowdsl.stores._owner as _store
from flowdsl._define import _registry
from flowdsl.stores._codec import Unencodable, decode, dumps, encode, encode_reason
from flowdsl.stores._owner import owner_alive, owner_token

CHILD = Path(__file__).resolve().with_name("crash_child.py")
SRC = str(Path(__file__).resolve().parent.parent)


pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


def in_loop(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(main())


class Gate:
    """Holds a step until the test lets it go; tells the test when the step got there."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def wait(self) -> None:
        self.reached.set()
        await self.release.wait()


async def cancel_at(gate: Gate, coro: Coroutine[Any, Any, Run]) -> None:
    """Run `coro` until it reaches `gate`, then cancel it (a run stopped midway)."""
    task = asyncio.ensure_future(coro)
    await gate.reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- run_id semantics ------------------------------------------------------------------------


def test_a_completed_run_asked_for_again_runs_nothing(store: Store) -> None:
    """The same run_id returns the recorded Run; no step runs again."""
    calls: list[str] = []

    @workflow
    def once() -> None:
        @step
        def first(ctx: Any) -> Any:
            calls.append("first")
            return ok({"n": 1})

        @step
        async def second(ctx: Any) -> Any:
            calls.append("second")
            return ok({"n": ctx["n"] + 1, "when": (2024, 1)})

    first = run_workflow(once, {"x": 1}, run_id="r1", store=store)
    again = run_workflow(once, {"x": 1}, run_id="r1", store=store)
    assert ["first", "second"] == calls
    assert ("completed", {"x": 1, "n": 2, "when": (2024, 1)}) == (again.status, dict(again.output))
    assert dict(first.output) == dict(again.output)
    assert [("first", 1, "succeeded"), ("second", 1, "succeeded")] == [
        (s.name, s.attempt, s.status) for s in again.steps
    ]


def test_streaming_a_completed_run_yields_only_run_finished(store: Store) -> None:
    """Asking a stream for a recorded run runs nothing and still ends with RunFinished."""

    @workflow
    def streamed() -> None:
        step(lambda ctx: ok({"n": 1}), name="only")

    first = run_workflow(streamed, run_id="s1", store=store)

    async def main() -> list[Any]:
        return [event async for event in stream_workflow(streamed, run_id="s1", store=store)]

    events = in_loop(main)
    assert [RunFinished] == [type(event) for event in events]
    assert dict(first.output) == dict(events[0].run.output)


def test_a_failed_run_asked_for_again_returns_the_recorded_failure(store: Store) -> None:
    """A failed run is finished: asked again, nothing runs; the exception comes back recorded."""
    calls: list[int] = []

    @workflow
    def breaks() -> None:
        @step
        def boom(ctx: Any) -> Any:
            calls.append(1)
            raise ValueError("card 4242 declined")

    live = run_workflow(breaks, run_id="r1", store=store)
    again = run_workflow(breaks, run_id="r1", store=store)
    assert 1 == len(calls)
    assert ("failed", "boom") == (again.status, again.failed_step)
    assert isinstance(live.error, ValueError)
    reason = again.error
    assert isinstance(reason, RecordedError)
    assert ("ValueError", "card 4242 declined") == (reason.type, reason.message)
    assert reason.traceback is not None
    assert "card 4242 declined" in reason.traceback
    assert "ValueError: card 4242 declined" == str(reason)
    assert reason == again.steps[0].error


def test_a_cancelled_run_resumes_when_asked_again(store: Store) -> None:
    """Cancelled midway, the run is "cancelled"; the same run_id resumes it, skipping done steps."""
    calls: list[str] = []
    gate = Gate()

    @workflow
    def paused() -> None:
        @step
        async def one(ctx: Any) -> Any:
            calls.append("one")
            return ok({"a": 1})

        @step
        async def two(ctx: Any) -> Any:
            calls.append("two")
            if not gate.release.is_set():
                await gate.wait()
            return ok({"b": ctx["a"] + 1})

    async def main() -> Run:
        await cancel_at(gate, arun_workflow(paused, {"in": 0}, run_id="r1", store=store))
        cancelled = store.get_run("r1")
        assert cancelled is not None
        assert ("cancelled", ["one"]) == (cancelled.status, [s.name for s in cancelled.steps])
        gate.release.set()
        return await arun_workflow(paused, run_id="r1", store=store)

    run = in_loop(main)
    assert ("completed", {"in": 0, "a": 1, "b": 2}) == (run.status, dict(run.output))
    assert ["one", "two", "two"] == calls  # "two" was cut short: it runs again, "one" does not
    assert ["one", "two"] == [s.name for s in run.steps]


@pytest.mark.parametrize("policy", ["complete_all", "fail_fast"])
def test_a_replayed_goto_in_a_branch_fails_the_branch_as_it_did_live(
    store: Store, policy: str
) -> None:
    """A branch step's recorded goto is replayed as the same GotoError failure, not as a value."""
    gate = Gate()

    @workflow(f"branch_goto_{policy}")
    def branch_goto() -> None:
        with parallel(on_error=policy):  # type: ignore[arg-type]

            @step
            async def jumper(ctx: Any) -> Any:
                return goto("after")

            @step
            async def slow(ctx: Any) -> Any:
                if not gate.release.is_set():
                    await gate.wait()
                return ok({"slow": True})

        step(lambda ctx: None, name="after")

    async def main() -> tuple[Run, Run]:
        if policy == "complete_all":
            await cancel_at(gate, arun_workflow(branch_goto, run_id="g1", store=store))
        gate.release.set()
        live = await arun_workflow(branch_goto, run_id="g2")  # no store: the live semantics
        resumed = await arun_workflow(branch_goto, run_id="g1", store=store)
        return live, resumed

    live, resumed = in_loop(main)
    assert (live.status, live.failed_step) == (resumed.status, resumed.failed_step)
    if policy == "complete_all":
        reason = resumed.output["__results__"]["jumper"].error
        assert isinstance(reason, GotoError)
        assert isinstance(live.output["__results__"]["jumper"].error, GotoError)
    else:
        assert isinstance(resumed.error, GotoError)


def test_the_recorded_input_is_used_on_resume(store: Store) -> None:
    """A resumed run continues with the input it started with, whatever the caller passes."""
    gate = Gate()

    @workflow
    def echo() -> None:
        @step
        async def hold(ctx: Any) -> Any:
            if not gate.release.is_set():
                await gate.wait()
            return ok({"seen": ctx["name"]})

    async def main() -> Run:
        await cancel_at(gate, arun_workflow(echo, {"name": "ada"}, run_id="r1", store=store))
        gate.release.set()
        return await arun_workflow(echo, {"name": "bob"}, run_id="r1", store=store)

    assert {"name": "ada", "seen": "ada"} == dict(in_loop(main).output)


def test_retry_budget_and_idempotency_key_survive_a_resume(store: Store) -> None:
    """Failed attempts stay spent; the attempt cut short runs again; the key is stable."""
    seen: list[tuple[int, str]] = []
    gate = Gate()

    @workflow
    def flaky() -> None:
        @step(retry=Retry(max_attempts=3, backoff="constant", base=0))
        async def pay(ctx: Any) -> Any:
            seen.append((ctx.attempt, ctx.idempotency_key))
            if ctx.attempt == 1:
                return error("gateway timeout")
            if ctx.attempt == 2 and not gate.release.is_set():
                await gate.wait()
            return error("still down")

    async def main() -> Run:
        await cancel_at(gate, arun_workflow(flaky, run_id="r1", store=store))
        gate.release.set()
        return await arun_workflow(flaky, run_id="r1", store=store)

    run = in_loop(main)
    # attempt 1 failed (spent), attempt 2 was cut short (runs again), 3 is the last
    assert [(1, "r1:pay"), (2, "r1:pay"), (2, "r1:pay"), (3, "r1:pay")] == seen
    assert ("failed", "still down") == (run.status, run.error)
    assert [(1, "failed"), (2, "failed"), (3, "failed")] == [
        (s.attempt, s.status) for s in run.steps
    ]


def test_a_step_that_failed_for_good_is_not_retried_on_resume(store: Store) -> None:
    """In a complete_all block, a branch that used its retries fails the same way after a resume."""
    calls: list[str] = []
    gate = Gate()
    spent = asyncio.Event()

    @workflow
    def branches() -> None:
        with parallel(on_error="complete_all"):

            @step(retry=Retry(max_attempts=2, backoff="constant", base=0))
            def bad(ctx: Any) -> Any:
                calls.append("bad")
                if ctx.attempt == 2:
                    spent.set()
                raise KeyError("sku-1")

            @step
            async def slow(ctx: Any) -> Any:
                calls.append("slow")
                await spent.wait()  # bad's last failure is handed to the journal by now
                if not gate.release.is_set():
                    await gate.wait()
                return 1

        @step
        def report(ctx: Any) -> Any:
            return ok({"report": [k for k, v in ctx["__results__"].items() if type(v) is Ok]})

    async def main() -> Run:
        await cancel_at(gate, arun_workflow(branches, run_id="r1", store=store))
        gate.release.set()
        return await arun_workflow(branches, run_id="r1", store=store)

    run = in_loop(main)
    assert ["bad", "bad", "slow", "slow"] == sorted(calls)
    assert ("completed", ["slow"]) == (run.status, run.output["report"])
    failure = run.output["__results__"]["bad"]
    assert Err(RecordedError("KeyError", "'sku-1'", failure.error.traceback)) == failure


def test_one_run_id_cannot_run_twice_at_once(store: Store) -> None:
    """A second call for a run that is executing in this process is refused, naming it."""
    gate = Gate()

    @workflow
    def single() -> None:
        @step
        async def hold(ctx: Any) -> Any:
            await gate.wait()

    async def main() -> None:
        task = asyncio.ensure_future(arun_workflow(single, run_id="r1", store=store))
        await gate.reached.wait()
        with pytest.raises(StoreError, match="'r1' of workflow 'single' is being executed by"):
            await arun_workflow(single, run_id="r1", store=store)
        gate.release.set()
        assert "completed" == (await task).status

    in_loop(main)


def test_a_run_id_of_another_workflow_is_refused(store: Store) -> None:
    """run_id names one run of one workflow."""

    @workflow
    def first() -> None:
        @step
        async def a(ctx: Any) -> Any:
            return ok()

    @workflow
    def second() -> None:
        @step
        async def a(ctx: Any) -> Any:
            return ok()

    gate = Gate()

    @workflow
    def held() -> None:
        @step
        async def hold(ctx: Any) -> Any:
            if not gate.release.is_set():
                await gate.wait()

    async def main() -> None:
        await cancel_at(gate, arun_workflow(held, run_id="h", store=store))
        with pytest.raises(StoreError, match="belongs to workflow 'held', not 'first'"):
            await arun_workflow(first, run_id="h", store=store)

    in_loop(main)
    run_workflow(first, run_id="r1", store=store)
    with pytest.raises(StoreError, match="run 'r1' in the store belongs to workflow 'first'"):
        run_workflow(second, run_id="r1", store=store)


# -- JSON only -------------------------------------------------------------------------------


def test_an_unencodable_output_fails_its_own_step_naming_key_and_type(store: Store) -> None:
    """The step fails (not retried) with a SerializationError; earlier outputs are kept."""
    calls: list[int] = []

    @workflow
    def dated() -> None:
        @step
        async def fine(ctx: Any) -> Any:
            return ok({"order": 7})

        @step(retry=Retry(max_attempts=3, backoff="constant", base=0))
        async def stamp(ctx: Any) -> Any:
            calls.append(1)
            return ok({"receipt": {"lines": [1, 2j]}})

    run = run_workflow(dated, run_id="r1", store=store)
    assert ("failed", "stamp", 1) == (run.status, run.failed_step, len(calls))
    assert isinstance(run.error, SerializationError)
    message = str(run.error)
    assert "key 'receipt' holds a complex (at 'receipt'['lines'][1])" in message
    recorded = store.get_run("r1")
    assert recorded is not None
    assert ("failed", {"order": 7}) == (recorded.status, dict(recorded.output))
    assert "flowdsl.errors.SerializationError" == recorded.error.type
    assert message == recorded.error.message


@pytest.mark.parametrize(
    ("outcome", "problem"),
    [
        (1j, "key 'keep' holds a complex"),
        (ok(bytearray(b"raw")), "key 'keep' holds a bytearray"),
        (goto(END, {"at": object()}), "key 'at' holds a object"),
        (ok({"deep": [{"x": {0.5j}}]}), "key 'deep' holds a complex (at 'deep'[0]['x']{0.5j})"),
    ],
)
def test_the_serialization_error_names_where_the_value_is(
    store: Store, outcome: object, problem: str
) -> None:
    """Plain values are named by the step's key, mappings and goto updates by their own key."""

    @workflow
    def bad() -> None:
        @step
        async def keep(ctx: Any) -> Any:
            return outcome

    run = run_workflow(bad, store=store)
    assert problem in str(run.error)


def test_an_unencodable_input_is_refused_before_anything_runs(store: Store) -> None:
    """The input is journaled first: it must be JSON too."""

    @workflow
    def takes() -> None:
        @step
        async def a(ctx: Any) -> Any:
            raise AssertionError("never runs")

    with pytest.raises(SerializationError, match=r"key 'when' holds a complex \(at 'when'\[1\]\)"):
        run_workflow(takes, {"when": (2024, 1j)}, store=store)
    assert [] == store.list_runs()


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_recording_an_error_never_fails(store: Store) -> None:
    """Any reason is recordable: unprintable exceptions, values JSON cannot hold, groups."""
    reasons: list[object] = [
        Unprintable(),
        {"at": object()},
        ErrorGroup([ValueError("a"), "b"]),
        error("x"),
    ]

    @workflow
    def odd() -> None:
        @step
        async def fail(ctx: Any) -> Any:
            return error(reasons[ctx["i"]])

    for index in range(len(reasons)):
        run = run_workflow(odd, {"i": index}, run_id=f"r{index}", store=store)
        assert "failed" == run.status
        recorded = store.get_run(f"r{index}")
        assert recorded is not None
        assert "failed" == recorded.status
    assert "Unprintable()" in repr(store.get_run("r0").error)  # type: ignore[union-attr]
    assert {"at": RecordedError("object", repr(reasons[1]["at"]))} == store.get_run("r1").error  # type: ignore[index, union-attr]
    group = store.get_run("r2").error  # type: ignore[union-attr]
    assert ErrorGroup([RecordedError("ValueError", "a"), "b"]) == group
    assert Err("x") == store.get_run("r3").error  # type: ignore[union-attr]


@st.composite
def journal_values(draw: st.DrawFn) -> object:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    keys = st.text() | st.integers() | st.just("$")
    return draw(
        st.recursive(
            scalars,
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.lists(inner, max_size=3).map(tuple)
                | st.dictionaries(keys, inner, max_size=3)
                | inner.map(Ok)
                | st.builds(
                    Goto,
                    st.text(min_size=1) | st.just(END),
                    st.dictionaries(st.text(), inner, max_size=2),
                )
            ),
            max_leaves=12,
        )
    )


@given(journal_values())
def test_journal_values_come_back_equal_and_of_the_same_type(value: object) -> None:
    """decode(encode(v)) == v, with tuples, non-str keys, "$" keys and outcomes kept."""
    back = decode(dumps(encode(value)))
    assert value == back
    assert repr(value) == repr(back)


def test_encode_reports_the_path_to_what_it_cannot_hold() -> None:
    """The path runs from the top-level key to the offending value."""
    with pytest.raises(Unencodable) as caught:
        encode({"a": [1, {"b": (2, object())}]})
    assert ["a", 1, "b", 1] == list(reversed(caught.value.path))
    assert {"$": "exc", "type": "complex", "message": "1j", "traceback": None} == (
        encode_reason(1j)
    )


# -- the definition fingerprint --------------------------------------------------------------


def define_shop(extra: bool, gate: Gate) -> Any:
    @workflow("shop")
    def shop() -> None:
        @step
        async def pick(ctx: Any) -> Any:
            if not gate.release.is_set():
                await gate.wait()
            return ok({"picked": True})

        if extra:

            @step
            async def wrap(ctx: Any) -> Any:
                return ok()

        @step
        async def ship(ctx: Any) -> Any:
            return ok()

    return shop


def test_resuming_with_a_changed_definition_names_the_difference(store_kit: StoreKit) -> None:
    """IncompatibleDefinition shows the shape lines removed and added; nothing runs."""
    gate = Gate()

    async def main() -> None:
        with store_kit.open() as store:
            shop = define_shop(extra=False, gate=gate)
            await cancel_at(gate, arun_workflow(shop, run_id="r1", store=store))

    in_loop(main)
    with _registry.isolated():
        _registry.unregister("shop")  # the same name, a new definition: as after a deploy
        changed = define_shop(extra=True, gate=gate)
        with pytest.raises(IncompatibleDefinition) as caught:
            run_workflow(changed, run_id="r1", store=store_kit.url)
    message = str(caught.value)
    assert "run 'r1' of workflow 'shop' was journaled by a different definition" in message
    assert "(- recorded, + now):\n  + step wrap -> wrap\n" in message
    assert "start a new run_id" in message
    with store_kit.open() as store:
        assert "cancelled" == store.get_run("r1").status  # type: ignore[union-attr]


# -- the store ---------------------------------------------------------------------------------


def test_list_runs_and_get_run(store: Store) -> None:
    """Runs are listed oldest first, filtered by status; unknown ids give None."""

    @workflow
    def judge() -> None:
        @step
        async def decide(ctx: Any) -> Any:
            return ok({"verdict": "yes"}) if ctx["good"] else error("no")

    for index, good in enumerate([True, False, True]):
        run_workflow(judge, {"good": good}, run_id=f"r{index}", store=store)
    assert ["r0", "r1", "r2"] == [run.run_id for run in store.list_runs()]
    assert ["r0", "r2"] == [run.run_id for run in store.list_runs("completed")]
    assert ["r1"] == [run.run_id for run in store.list_runs(status="failed")]
    assert [] == store.list_runs("running")
    got = store.get_run("r0")
    assert got is not None
    assert ("judge", "completed", {"good": True, "verdict": "yes"}) == (
        got.workflow,
        got.status,
        dict(got.output),
    )
    assert got.started > 0
    assert got.duration > 0
    assert store.get_run("nope") is None
    with pytest.raises(UsageError, match="status must be"):
        store.list_runs("done")  # type: ignore[arg-type]


def test_a_running_run_shows_its_progress(store: Store) -> None:
    """While a run executes, get_run reports it "running" with the attempts committed so far."""
    gate = Gate()

    @workflow
    def progress() -> None:
        @step
        async def one(ctx: Any) -> Any:
            return ok({"one": 1})

        @step
        async def two(ctx: Any) -> Any:
            await gate.wait()

    async def main() -> None:
        task = asyncio.ensure_future(arun_workflow(progress, {"x": 0}, run_id="r1", store=store))
        await gate.reached.wait()
        running = store.get_run("r1")
        assert running is not None
        assert ("running", ["one"], {"x": 0}) == (
            running.status,
            [s.name for s in running.steps],
            dict(running.output),
        )
        gate.release.set()
        await task

    in_loop(main)


def test_compensations_are_recorded(store: Store) -> None:
    """A failed run's compensations are in the stored Run."""

    def undo(ctx: Any) -> None:
        raise RuntimeError("undo failed")

    @workflow
    def saga() -> None:
        @step(compensate=undo)
        async def book(ctx: Any) -> Any:
            return ok({"booked": 1})

        @step
        async def pay(ctx: Any) -> Any:
            return error("declined")

    run_workflow(saga, run_id="r1", store=store)
    recorded = store.get_run("r1")
    assert recorded is not None
    assert [("book", "failed", "RuntimeError: undo failed")] == [
        (c.step, c.status, str(c.error)) for c in recorded.compensations
    ]


def test_a_closed_store_refuses_writes(store_kit: StoreKit) -> None:
    """Closing stops the writer; a run call after that fails clearly."""

    @workflow
    def tiny() -> None:
        @step
        async def a(ctx: Any) -> Any:
            return 1

    store = store_kit.open()
    run_workflow(tiny, store=store)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="is closed"):
        run_workflow(tiny, store=store)


def test_owners_are_told_apart() -> None:
    """Alive here, gone here, or unknown: another host, another PID namespace, old tokens."""
    me = owner_token()
    host, namespace, pid, start = me.split("|")
    assert int(pid) == os.getpid()
    assert namespace.startswith("pid:[")
    assert owner_alive(me) is True
    assert owner_alive(f"{host}|{namespace}|999999999|1") is False
    assert owner_alive(f"{host}|{namespace}|{pid}|{int(start) + 1}") is False  # pid reused
    assert owner_alive(f"elsewhere|{namespace}|1|1") is None
    assert owner_alive(f"{host}|pid:[1]|999999999|1") is None  # a container on this host
    assert owner_alive(f"{host}||999999999|1") is None
    assert owner_alive(f"{host}|999999999|1") is None  # a token of an older release


def test_an_unreadable_proc_entry_is_not_taken_for_a_dead_owner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """/proc that cannot be read says nothing: only the owner's lease does."""
    host, namespace, _, _ = owner_token().split("|")
    monkeypatch.setattr(_store, "_proc_stat", lambda pid: None)
    assert owner_alive(f"{host}|{namespace}|999999999|1") is None


# -- resume_runs -------------------------------------------------------------------------------


def test_resume_runs_resumes_cancelled_runs_when_asked(store: Store) -> None:
    """resume_runs picks up "running" runs; include_cancelled=True takes cancelled ones too."""
    gate = Gate()

    @workflow
    def later() -> None:
        @step
        async def wait(ctx: Any) -> Any:
            if not gate.release.is_set():
                await gate.wait()
            return ok({"done": ctx["n"]})

    async def main() -> None:
        await cancel_at(gate, arun_workflow(later, {"n": 5}, run_id="r1", store=store))
        assert [] == await aresume_runs(store)
        gate.release.set()
        resumed = await aresume_runs(store, include_cancelled=True)
        assert [("r1", "completed", 5)] == [(r.run_id, r.status, r.output["done"]) for r in resumed]

    in_loop(main)
    assert [] == resume_runs(store, include_cancelled=True)
    with pytest.raises(UsageError, match="concurrency must be an int >= 1"):
        resume_runs(store, concurrency=0)


def test_resume_runs_after_a_crash_in_another_process(tmp_path: Path, store_kit: StoreKit) -> None:
    """A run killed in a child process is resumed here by resume_runs."""
    import importlib.util

    log = tmp_path / "steps.log"
    env = dict(os.environ, PYTHONPATH=SRC)
    done = subprocess.run(
        [sys.executable, str(CHILD), "run", store_kit.url, str(log), "r1", "label:1:2"],
        env=env,
        check=False,
        timeout=60,
    )
    assert -9 == done.returncode
    with store_kit.open() as store:
        assert ["r1"] == [run.run_id for run in store.list_runs("running")]
        with pytest.raises(
            WorkflowNotFound, match="cannot resume run 'r1' \\(workflow 'crash_checkout'\\)"
        ):
            resume_runs(store)
        spec = importlib.util.spec_from_file_location("crash_child_for_resume", CHILD)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        [run] = resume_runs(store)
        assert ("r1", "completed", "r1:confirm") == (
            run.run_id,
            run.status,
            run.output["confirmation"],
        )
        assert [] == resume_runs(store)


def test_resume_runs_checks_every_definition_first(store: Store) -> None:
    """A changed workflow stops resume_runs before any run executes."""
    gate = Gate()

    @workflow("gone")
    def original() -> None:
        @step
        async def a(ctx: Any) -> Any:
            await gate.wait()

    in_loop(lambda: cancel_at(gate, arun_workflow(original, run_id="r1", store=store)))
    with _registry.isolated():
        _registry.unregister("gone")

        @workflow("gone")
        def renamed() -> None:
            @step
            async def b(ctx: Any) -> Any:
                return ok()

        with pytest.raises(IncompatibleDefinition, match="- step a -> a\n  \\+ step b -> b"):
            resume_runs(store, include_cancelled=True)
    assert "cancelled" == store.get_run("r1").status  # type: ignore[union-attr]


# -- concurrency -------------------------------------------------------------------------------


def test_a_thousand_concurrent_runs_in_one_process(store: Store) -> None:
    """1,000 runs at once on one store: all complete, all recorded, commits are shared."""

    @workflow
    def order() -> None:
        @step
        async def reserve(ctx: Any) -> Any:
            return ok({"reserved": ctx["i"]})

        with parallel():

            @step
            async def charge(ctx: Any) -> Any:
                return ok({"charged": ctx["i"] * 2})

            with sequence("ship"):

                @step
                def pack(ctx: Any) -> Any:
                    return ok({"packed": True})

                @step
                async def label(ctx: Any) -> Any:
                    return ok({"label": f"L{ctx['i']}"})

        @step
        async def done(ctx: Any) -> Any:
            return ctx["__results__"]["charge"].value["charged"] + ctx["reserved"]

    async def main() -> list[Run]:
        return await asyncio.gather(
            *(arun_workflow(order, {"i": i}, run_id=f"o{i}", store=store) for i in range(1000))
        )

    started = time.perf_counter()
    runs = in_loop(main)
    took = time.perf_counter() - started
    assert [3 * i for i in range(1000)] == [run.output["done"] for run in runs]
    stored = store.list_runs("completed")
    assert 1000 == len(stored)
    assert {5} == {len(run.steps) for run in stored}
    assert took < 30


def test_two_processes_write_one_file(store_kit: StoreKit) -> None:
    """Two processes, 150 concurrent runs each, one database: no "database is locked"."""
    store_kit.open().close()
    env = dict(os.environ, PYTHONPATH=SRC)
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), "many", store_kit.url, "150", tag],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert "ready" == child.stdout.readline().strip()
        for child in children:  # both start writing together
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for child, (out, err) in zip(children, outputs, strict=True):
        assert (0, "150") == (child.returncode, out.strip()), err
    with store_kit.open() as store:
        runs = store.list_runs()
    assert 300 == len(runs)
    assert {"completed"} == {run.status for run in runs}
    assert {11} == {len(run.steps) for run in runs}


def test_a_run_owned_on_another_host_waits_for_its_lease(store_kit: StoreKit) -> None:
    """Another host's run is left alone while its lease holds, resumable once it expires."""
    gate = Gate()

    @workflow
    def remote() -> None:
        @step
        async def work(ctx: Any) -> Any:
            if not gate.release.is_set():
                await gate.wait()
            return ok({"done": True})

    with store_kit.open(lease=60) as store:
        in_loop(lambda: cancel_at(gate, arun_workflow(remote, run_id="r1", store=store)))
        gate.release.set()
        store_kit.set_owner("r1", "elsewhere|pid:[1]|7|1", time.time() + 60)
        assert [] == store.resumable()
        with pytest.raises(StoreError, match="being executed by process 7 on elsewhere"):
            run_workflow(remote, run_id="r1", store=store)
        store_kit.set_owner("r1", "elsewhere|pid:[1]|7|1", time.time() - 1)
        assert ["r1"] == [pending.run_id for pending in store.resumable()]
        assert ["completed"] == [run.status for run in resume_runs(store)]


@pytest.mark.parametrize(
    "owner",
    [
        "{host}|pid:[1]|999999999|1",  # same host name, another PID namespace (a container)
        "{host}|{namespace}|{parent}|{parent_start}",  # alive, and not this process
    ],
)
def test_a_claimer_never_takes_a_run_whose_lease_holds(store_kit: StoreKit, owner: str) -> None:
    """Whatever the claimer's own lease= or namespace, an unexpired lease is respected."""
    host, namespace, pid, _ = owner_token().split("|")
    parent = os.getppid()
    with open(f"/proc/{parent}/stat", "rb") as file:
        data = file.read()
    parent_start = data[data.rindex(b")") + 2 :].split()[19].decode()
    token = owner.format(
        host=host, namespace=namespace, pid=pid, parent=parent, parent_start=parent_start
    )

    @workflow
    def held() -> None:
        step(lambda ctx: ok({"done": True}), name="work")

    with store_kit.open(lease=0.01) as store:  # a claimer with a far shorter lease
        run_workflow(held, run_id="r1", store=store)
        store_kit.set_owner("r1", token, time.time() + 60)
        assert [] == store.resumable()
        with pytest.raises(StoreError, match="is being executed by"):
            run_workflow(held, run_id="r1", store=store)


def test_a_dead_owner_on_this_host_is_taken_over_at_once(store: Store, store_kit: StoreKit) -> None:
    """Same host and PID namespace, process gone: claimable before its lease expires."""
    host, namespace, _, _ = owner_token().split("|")

    @workflow
    def orphan() -> None:
        step(lambda ctx: ok({"done": True}), name="work")

    run_workflow(orphan, run_id="r1", store=store)
    store_kit.set_owner("r1", f"{host}|{namespace}|999999999|1", time.time() + 60)
    assert ["r1"] == [pending.run_id for pending in store.resumable()]
    assert "completed" == run_workflow(orphan, run_id="r1", store=store).status


def test_a_process_that_lost_its_run_cannot_write_to_it(store: Store, store_kit: StoreKit) -> None:
    """If another process took the run over (a new claim), this one's next write fails."""

    @workflow
    def taken() -> None:
        @step
        def first(ctx: Any) -> Any:
            store_kit.set_owner(ctx.run_id, "elsewhere|pid:[1]|7|1", time.time() + 60)
            return ok({"a": 1})

        @step
        def second(ctx: Any) -> Any:
            raise AssertionError("never runs")

    with pytest.raises(StoreError, match="run 'r1' is no longer owned by this process"):
        run_workflow(taken, run_id="r1", store=store)
    recorded = store.get_run("r1")
    assert recorded is not None
    assert ("running", ()) == (recorded.status, recorded.steps)
    assert "elsewhere|pid:[1]|7|1" == recorded.owner


def test_a_new_claim_of_the_same_owner_fences_the_old_one(
    store: Store, store_kit: StoreKit
) -> None:
    """The fence is the claim, not the process: same owner token, older epoch, refused."""

    @workflow
    def reclaimed() -> None:
        @step
        def first(ctx: Any) -> Any:
            store_kit.set_owner(ctx.run_id, owner_token(), time.time() + 60, epoch=42)
            return ok({"a": 1})

    with pytest.raises(StoreError, match="no longer owned"):
        run_workflow(reclaimed, run_id="r1", store=store)


def test_no_step_starts_once_the_lease_is_known_lost(store: Store, store_kit: StoreKit) -> None:
    """A paused owner that wakes past its lease checks before starting the next step."""
    started: list[str] = []

    def paused_past_the_lease(event: object) -> None:
        if isinstance(event, StepFinished) and event.step == "first":
            store_kit.set_owner("r1", "elsewhere|pid:[1]|7|1", time.time() + 60)
            store_kit.forget_renewals(store)  # as after a pause: the lease is not known to hold

    @workflow
    def woken() -> None:
        step(lambda ctx: started.append("first"), name="first")
        step(lambda ctx: started.append("second"), name="second")

    with pytest.raises(StoreError, match="its lease ran out and another process"):
        run_workflow(woken, run_id="r1", store=store, listeners=[paused_past_the_lease])
    assert ["first"] == started


def test_the_owner_renews_its_lease_while_it_runs(store_kit: StoreKit) -> None:
    """lease_expires moves forward while a step waits longer than the lease."""
    seen: list[float] = []

    def lease_now() -> float:
        return store_kit.lease_expires("r1")

    @workflow
    def long_step() -> None:
        @step
        async def wait(ctx: Any) -> Any:
            first = lease_now()
            deadline = time.monotonic() + 30
            while lease_now() == first and time.monotonic() < deadline:  # noqa: ASYNC110 - polls the database
                await asyncio.sleep(0.01)
            seen.extend((first, lease_now()))
            return ok()

    with store_kit.open(lease=0.3) as store:
        assert "completed" == run_workflow(long_step, run_id="r1", store=store).status
    assert seen[1] > seen[0]


# -- found in review: each of these once lost work or broke the store ------------------------


def test_a_step_that_returned_none_is_not_run_again_on_resume(store: Store) -> None:
    """None is a finished step's outcome too: the resumed run replays it, it does not rerun it."""
    calls: list[str] = []
    gate = Gate()

    @workflow
    def side_effect() -> None:
        @step
        def charge(ctx: Any) -> None:
            calls.append("charge")

        @step
        async def after(ctx: Any) -> Any:
            if not gate.release.is_set():
                await gate.wait()
            return ok({"done": True})

    async def main() -> Run:
        await cancel_at(gate, arun_workflow(side_effect, run_id="n1", store=store))
        gate.release.set()
        return await arun_workflow(side_effect, run_id="n1", store=store)

    run = in_loop(main)
    assert ("completed", ["charge"]) == (run.status, calls)


def test_a_reason_with_a_lone_surrogate_is_recorded(store: Store) -> None:
    """A message holding a surrogate-escaped byte is stored and read back unchanged."""
    name = b"caf\xe9.txt".decode("utf-8", "surrogateescape")

    @workflow
    def odd_name() -> None:
        @step
        def read(ctx: Any) -> Any:
            raise FileNotFoundError(f"no such file: {name}")

    run = run_workflow(odd_name, run_id="u1", store=store)
    stored = store.get_run("u1")
    assert stored is not None
    assert ("failed", "failed") == (run.status, stored.status)
    assert f"no such file: {name}" == stored.error.message


def test_an_output_that_contains_itself_fails_its_step_with_a_serialization_error(
    store: Store,
) -> None:
    """A self-containing value is refused like any unencodable one, naming the step's key."""
    node: dict[str, Any] = {}
    node["self"] = node

    @workflow
    def cyclic() -> None:
        step(lambda ctx: ok({"tree": node}), name="build")

    run = run_workflow(cyclic, run_id="c1", store=store)
    assert ("failed", "build", SerializationError) == (run.status, run.failed_step, type(run.error))
    assert "contains itself" in str(run.error)
    assert store.get_run("c1") is not None


def test_a_self_containing_reducer_output_fails_its_block_and_the_store_stays_readable(
    store: Store,
) -> None:
    """A reducer's outcome is journaled like a step's: one that cannot be fails the block."""

    def merge(ctx: Any, results: Any) -> Any:
        tree: dict[str, Any] = {"name": "root"}
        tree["self"] = tree
        return ok({"tree": tree, "count": len(results)})

    @workflow
    def reduced() -> None:
        with parallel(name="fan", into=merge):
            step(lambda ctx: 1, name="a")

    run = run_workflow(reduced, {"order": 7}, run_id="t1", store=store)
    assert ("failed", "fan", SerializationError) == (run.status, run.failed_step, type(run.error))
    assert "the into= reducer of 'fan'" in str(run.error)
    assert "contains itself" in str(run.error)
    stored = store.get_run("t1")
    assert stored is not None
    assert (7, "failed") == (stored.output["order"], stored.status)
    assert ["t1"] == [r.run_id for r in store.list_runs()]


def test_one_run_failing_to_resume_does_not_cancel_the_others(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """resume_runs gives every run its chance, then raises the one error."""
    gates = {"good": Gate(), "bad": Gate()}
    armed = False
    open_run = store.open_run

    async def breaks_on_resume(header: Any) -> Any:
        if armed and header.run_id == "bad":
            raise RuntimeError("store broke")
        return await open_run(header)

    monkeypatch.setattr(store, "open_run", breaks_on_resume)

    @workflow
    def resumable() -> None:
        @step
        async def wait(ctx: Any) -> Any:
            gate = gates[ctx.run_id]
            if not gate.release.is_set():
                await gate.wait()
            return ok({"done": ctx.run_id})

    async def main() -> None:
        nonlocal armed
        for run_id, gate in gates.items():
            await cancel_at(gate, arun_workflow(resumable, run_id=run_id, store=store))
            gate.release.set()
        armed = True
        with pytest.raises(RuntimeError, match="store broke"):
            await aresume_runs(store, include_cancelled=True)

    in_loop(main)
    good = store.get_run("good")
    assert good is not None
    assert ("completed", {"done": "good"}) == (good.status, dict(good.output))


def test_a_stored_run_carries_its_definition_fingerprint(store: Store) -> None:
    """store.get_run(...).fingerprint is the definition the run was journaled with."""

    @workflow
    def printed() -> None:
        step(lambda ctx: ok({"a": 1}), name="a")

    run = run_workflow(printed, run_id="f1", store=store)
    stored = store.get_run("f1")
    assert stored is not None
    assert (printed.plan.fingerprint,) * 2 == (run.fingerprint, stored.fingerprint)
