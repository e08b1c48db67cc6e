"""``with foreach(items):``: a body run once per item, known only when the run gets there.

What must hold: results come back in item order whatever order the items
finished in; ``max_concurrency`` is never exceeded; a ``fail_fast`` failure
cancels every item still running and starts no other (none outlives the
block); an empty collection gives ``()``; blocks nest either way; each
item's steps are named, journaled and keyed with the item's index, so a
resumed durable run runs only the unfinished items, over the items journaled
when the block started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stores import StoreKit

from flowdsl import (
    DefinitionError,
    Err,
    Ok,
    UsageError,
    arun_workflow,
    error,
    foreach,
    goto,
    ok,
    parallel,
    run_workflow,
    step,
    workflow,
)

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl._define import _registry
from flowdsl.errors import GotoError, IncompatibleDefinition, SerializationError


@pytest.fixture(autouse=True)
def registry() -> Iterator[None]:
    with _registry.isolated():
        yield


# -- order, concurrency, policies ---------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.permutations(list(range(6))), st.one_of(st.none(), st.integers(1, 7)))
def test_results_are_in_item_order_whatever_order_items_finish_in(
    finish_order: list[int], limit: int | None
) -> None:
    """Each item waits for its turn in a drawn finishing order; results stay in item order."""
    with _registry.isolated():
        finished: list[int] = []

        @workflow
        def ordered() -> None:
            with foreach(lambda ctx: range(6), max_concurrency=limit):

                @step
                async def work(ctx: Any) -> Any:
                    # An item's place in the drawn order is how many turns it takes.
                    for _ in range(finish_order.index(ctx.index) * 3):
                        await asyncio.sleep(0)
                    finished.append(ctx.index)
                    return ok({"square": ctx.item * ctx.item})

        run = run_workflow(ordered)
        assert run.status == "completed", run.error
        assert run.output["foreach#1"] == tuple(Ok({"square": i * i}) for i in range(6))
        if limit is None:
            assert finished == finish_order, "the drawn finishing order really happened"


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 40), st.integers(1, 8))
def test_max_concurrency_is_never_exceeded(count: int, limit: int) -> None:
    with _registry.isolated():
        running = 0
        peak = 0

        @workflow
        def capped() -> None:
            with foreach("items", max_concurrency=limit):

                @step
                async def work(ctx: Any) -> Any:
                    nonlocal running, peak
                    running += 1
                    peak = max(peak, running)
                    for _ in range(ctx.item % 3 + 1):
                        await asyncio.sleep(0)
                    running -= 1
                    return ok({"seen": ctx.item})

        run = run_workflow(capped, {"items": list(range(count))})
        assert run.status == "completed"
        assert peak <= limit
        assert peak == min(limit, count), "as many at once as the limit allows"
        assert [r.unwrap()["seen"] for r in run.output["foreach#1"]] == list(range(count))


@pytest.mark.parametrize("limit", [None, 2])
def test_fail_fast_cancels_every_remaining_item_and_none_outlives_the_block(
    limit: int | None,
) -> None:
    started: list[int] = []
    cancelled: list[int] = []
    release = asyncio.Event()

    @workflow
    def failing() -> None:
        with foreach("items", max_concurrency=limit):

            @step
            async def work(ctx: Any) -> Any:
                started.append(ctx.index)
                if ctx.index == 1:
                    await asyncio.sleep(0)
                    return error("item 1 is bad")
                try:
                    await release.wait()
                except asyncio.CancelledError:
                    cancelled.append(ctx.index)
                    raise
                return ok()

    async def main() -> Any:
        run = await arun_workflow(failing, {"items": list(range(10))})
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return run, others

    run, others = asyncio.run(main())
    assert run.status == "failed"
    assert run.failed_step == "work[1]"
    assert run.error == "item 1 is bad"
    assert others == [], "no item's task outlives the block"
    expected_started = list(range(10)) if limit is None else [0, 1]
    assert started == expected_started, "no item starts after the failure"
    assert sorted(cancelled) == [i for i in expected_started if i != 1]


def test_complete_all_keeps_failures_and_the_reducer_gets_the_tuple() -> None:
    seen: list[Any] = []

    def summarise(ctx: Any, results: Any) -> Any:
        seen.append(results)
        good = [r.unwrap()["n"] for r in results if r.is_ok()]
        return ok({"good": good, "bad": sum(1 for r in results if r.is_err())})

    @workflow
    def tolerant() -> None:
        with foreach("items", into=summarise):

            @step
            def check(ctx: Any) -> Any:
                if ctx.item < 0:
                    raise ValueError(f"negative: {ctx.item}")
                return ok({"n": ctx.item})

    run = run_workflow(tolerant, {"items": [3, -1, 4, -5]})
    assert run.status == "completed", run.error
    assert run.output["good"] == [3, 4]
    assert run.output["bad"] == 2
    assert "foreach#1" not in run.output, "with into= the block adds no key of its own"
    (results,) = seen
    assert isinstance(results, tuple)
    assert [type(r) for r in results] == [Ok, Err, Ok, Err]
    assert str(results[1].error) == "negative: -1"


def test_an_empty_collection_gives_an_empty_tuple() -> None:
    ran: list[int] = []

    @workflow
    def nothing() -> None:
        with foreach("items", name="each"):

            @step
            def work(ctx: Any) -> Any:
                ran.append(ctx.index)

        @step
        def after(ctx: Any) -> Any:
            return ok({"count": len(ctx["each"])})

    run = run_workflow(nothing, {"items": []})
    assert run.status == "completed"
    assert run.output["each"] == ()
    assert run.output["count"] == 0
    assert ran == []


def test_foreach_nests_in_parallel_and_foreach_in_foreach() -> None:
    @workflow
    def nested() -> None:
        with parallel():
            with foreach("rows", name="rows_done"):
                with foreach(lambda ctx: ctx.item, name="cells"):

                    @step
                    def cell(ctx: Any) -> Any:
                        return ok({"v": ctx.item * 10, "key": ctx.idempotency_key})

                @step
                def row(ctx: Any) -> Any:
                    return ok({"row": [r.unwrap()["v"] for r in ctx["cells"]]})

            @step
            def side(ctx: Any) -> Any:
                return ok({"side": True})

    run = run_workflow(nested, {"rows": [[1, 2], [3]]}, run_id="n1")
    assert run.status == "completed", run.error
    rows = run.output["__results__"]["rows_done"].unwrap()["rows_done"]
    assert [r.unwrap()["row"] for r in rows] == [[10, 20], [30]]
    inner = rows[0].unwrap()["cells"]
    assert inner[1].unwrap()["key"] == "n1:cell[0][1]"
    names = {s.name for s in run.steps}
    assert {"cell[0][0]", "cell[0][1]", "cell[1][0]", "row[0]", "row[1]", "side"} == names


def test_a_body_of_several_steps_runs_in_order_on_the_items_snapshot() -> None:
    @workflow
    def pipeline() -> None:
        @step
        def prepare(ctx: Any) -> Any:
            return ok({"files": ["a.csv", "b.csv"], "scale": 3})

        with foreach("files", name="loaded"):

            @step
            def load(ctx: Any) -> Any:
                return ok({"rows": len(ctx.item) * ctx["scale"]})

            @step
            def transform(ctx: Any) -> Any:
                return ok({"rows": ctx["rows"] + 1, "file": ctx.item})

    run = run_workflow(pipeline)
    assert run.output["loaded"] == (
        Ok({"rows": 16, "file": "a.csv"}),
        Ok({"rows": 16, "file": "b.csv"}),
    )
    assert "rows" not in run.output, "an item's writes stay in its result"


# -- bad items and bodies ---------------------------------------------------------------


def test_items_that_are_not_a_collection_fail_the_block_clearly() -> None:
    @workflow
    def stringy() -> None:
        with foreach("name"):

            @step
            def each(ctx: Any) -> Any:
                return ok()

    run = run_workflow(stringy, {"name": "abc"})
    assert run.status == "failed"
    assert run.failed_step == "foreach#1"
    assert isinstance(run.error, UsageError)
    assert "is a str, not a collection" in str(run.error)

    missing = run_workflow(stringy, {})
    assert "the context has no key 'name'" in str(missing.error)


def test_ctx_item_outside_a_foreach_says_where_it_is_set() -> None:
    @workflow
    def plain() -> None:
        @step
        def look(ctx: Any) -> Any:
            return ok({"x": ctx.item})

    run = run_workflow(plain)
    assert isinstance(run.error, UsageError)
    assert "only for the steps inside a 'with foreach(...):' body" in str(run.error)


def test_a_goto_inside_the_body_is_an_error() -> None:
    @workflow
    def jumpy() -> None:
        @step
        def start(ctx: Any) -> Any:
            return ok()

        with foreach("items"):

            @step
            def jump(ctx: Any) -> Any:
                return goto("start")

    run = run_workflow(jumpy, {"items": [1]})
    assert run.status == "failed"
    assert isinstance(run.error, GotoError)
    assert run.failed_step == "jump[0]"


@pytest.mark.parametrize(
    ("items", "message"),
    [(42, "items= takes a context key"), ("", "non-empty context key")],
)
def test_bad_items_are_a_definition_error(items: Any, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):

        @workflow
        def bad() -> None:
            with foreach(items):

                @step
                def each(ctx: Any) -> Any:
                    return ok()


def test_an_empty_body_is_a_definition_error_naming_the_line() -> None:
    with pytest.raises(
        DefinitionError, match=r"foreach block 'foreach#1' \(.*test_foreach.py:\d+\).*empty"
    ):

        @workflow
        def empty() -> None:
            with foreach("items"):
                pass


# -- durable ------------------------------------------------------------------------------


def test_a_resumed_run_runs_only_unfinished_items_over_the_journaled_items(
    store_kit: StoreKit,
) -> None:
    """The first run is interrupted while item 2 runs; the resume skips items 0 and 1."""
    calls: list[str] = []
    source = {"items": ["a", "b", "c"]}

    @workflow
    def resumable() -> None:
        with foreach(lambda ctx: list(source["items"]), max_concurrency=1, name="out"):

            @step
            def work(ctx: Any) -> Any:
                calls.append(f"{ctx.item}:{ctx.idempotency_key}")
                if ctx.index == 2 and len(calls) == 3:
                    raise KeyboardInterrupt
                return ok({"got": ctx.item.upper()})

    store = store_kit.open()
    with pytest.raises(KeyboardInterrupt):
        run_workflow(resumable, run_id="r1", store=store)
    assert store.get_run("r1").status == "cancelled"  # type: ignore[union-attr]
    source["items"] = ["x", "y", "z", "w"]  # the journaled items are used, not these
    run = run_workflow(resumable, run_id="r1", store=store)
    assert run.status == "completed", run.error
    assert run.output["out"] == (Ok({"got": "A"}), Ok({"got": "B"}), Ok({"got": "C"}))
    assert calls == ["a:r1:work[0]", "b:r1:work[1]", "c:r1:work[2]", "c:r1:work[2]"]
    rows = [r for r in store_kit.attempt_rows() if r.run_id == "r1"]
    assert sorted(r.step for r in rows if r.status == "succeeded") == [
        "work[0]",
        "work[1]",
        "work[2]",
    ]


def test_an_item_the_journal_cannot_store_fails_the_block(store_kit: StoreKit) -> None:
    @workflow
    def opaque() -> None:
        with foreach(lambda ctx: [object()]):

            @step
            def work(ctx: Any) -> Any:
                return ok()

    run = run_workflow(opaque, run_id="o1", store=store_kit.open())
    assert run.status == "failed"
    assert run.failed_step == "foreach#1"
    assert isinstance(run.error, SerializationError)


def test_the_fingerprint_covers_the_body(tmp_path: Any) -> None:
    def define(body_step: str) -> str:
        with _registry.isolated():

            @workflow
            def fp() -> None:
                with foreach("items"):
                    step(lambda ctx: ok(), name=body_step)

            return fp.plan.fingerprint

    assert define("load") != define("parse")


def test_resuming_with_another_body_is_refused(store_kit: StoreKit) -> None:
    store = store_kit.open()

    @workflow("changing")
    def first() -> None:
        with foreach("items"):

            @step
            def load(ctx: Any) -> Any:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_workflow(first, {"items": [1]}, run_id="c1", store=store)
    _registry.unregister("changing")

    @workflow("changing")
    def second() -> None:
        with foreach("items"):

            @step
            def parse(ctx: Any) -> Any:
                return ok()

    with pytest.raises(IncompatibleDefinition, match="parse"):
        run_workflow(second, {"items": [1]}, run_id="c1", store=store)


def test_a_compensation_inside_an_item_is_undone_under_its_name() -> None:
    undone: list[str] = []

    @workflow
    def saga() -> None:
        with foreach("items", on_error="complete_all", into=lambda ctx, rs: ok()):

            @step(compensate=lambda ctx: undone.append(ctx.step))
            def reserve(ctx: Any) -> Any:
                return ok({"r": ctx.item})

        @step
        def fail(ctx: Any) -> Any:
            return error("no")

    run = run_workflow(saga, {"items": [1, 2]})
    assert run.status == "failed"
    assert sorted(undone) == ["reserve[0]", "reserve[1]"]
    assert sorted(c.step for c in run.compensations) == ["reserve[0]", "reserve[1]"]
