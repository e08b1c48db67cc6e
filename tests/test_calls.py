"""``call_workflow``: another workflow run as a child run of its own.

What must hold: the child's output is stored under the node's key; its
failure is the node's failure; a retried node starts a new child run per
attempt (``#1``, ``#1.2``); child run ids carry the parent, the node and the
foreach indices; a durable child is a run of the same store whose
``parent_id`` is the parent, and a parent run again by its run id never
starts a second child.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from stores import StoreKit

from flowdsl import (
    Retry,
    arun_workflow,
    call_workflow,
    error,
    foreach,
    ok,
    run_workflow,
    step,
    workflow,
)

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl._define import _registry


@pytest.fixture(autouse=True)
def registry() -> Iterator[None]:
    with _registry.isolated():
        yield


def _payment() -> list[str]:
    charged: list[str] = []

    @workflow("payment")
    def payment() -> None:
        @step
        def charge(ctx: Any) -> Any:
            charged.append(ctx.run_id)
            if ctx["amount"] < 0:
                return error(f"cannot charge {ctx['amount']}")
            return ok({"charged": ctx["amount"]})

    return charged


def test_the_childs_output_is_stored_under_the_nodes_key() -> None:
    charged = _payment()

    @workflow
    def order() -> None:
        @step
        def total(ctx: Any) -> Any:
            return ok({"amount": 30})

        call_workflow("payment", input=lambda ctx: {"amount": ctx["amount"]}, returns="paid")

    run = run_workflow(order, run_id="o1")
    assert run.status == "completed", run.error
    assert run.output["paid"] == {"amount": 30, "charged": 30}
    assert charged == ["o1/payment#1"]
    assert [s.name for s in run.steps] == ["total", "payment"]


def test_the_childs_failure_is_the_nodes_failure_and_retries_start_new_children() -> None:
    charged = _payment()

    @workflow
    def order() -> None:
        call_workflow("payment", input={"amount": -1}, retry=Retry(2, base=0), name="pay")

    run = run_workflow(order, run_id="o2")
    assert run.status == "failed"
    assert run.failed_step == "pay"
    assert run.error == "cannot charge -1"
    assert charged == ["o2/pay#1", "o2/pay#1.2"]


def test_child_ids_inside_a_foreach_carry_the_index() -> None:
    charged = _payment()

    @workflow
    def orders() -> None:
        with foreach("amounts", name="paid"):
            call_workflow("payment", input=lambda ctx: {"amount": ctx.item})

    run = run_workflow(orders, {"amounts": [1, 2]}, run_id="o3")
    assert run.status == "completed", run.error
    assert sorted(charged) == ["o3/payment[0]#1", "o3/payment[1]#1"]
    assert [r.unwrap()["payment"]["charged"] for r in run.output["paid"]] == [1, 2]


def test_an_unknown_child_fails_the_node_naming_the_known_workflows() -> None:
    @workflow
    def lonely() -> None:
        call_workflow("nowhere")

    run = run_workflow(lonely)
    assert run.status == "failed"
    assert run.failed_step == "nowhere"
    assert "no workflow named 'nowhere'" in str(run.error)


def test_a_durable_child_is_a_run_of_the_store_with_its_parent(store_kit: StoreKit) -> None:
    charged = _payment()

    @workflow
    def order() -> None:
        call_workflow("payment", input={"amount": 5})

    store = store_kit.open()
    run = run_workflow(order, run_id="d1", store=store)
    assert run.status == "completed", run.error
    child = store.get_run("d1/payment#1")
    assert child is not None
    assert child.status == "completed"
    assert child.output["charged"] == 5
    again = run_workflow(order, run_id="d1", store=store)
    assert again.output == run.output
    assert charged == ["d1/payment#1"], "the recorded parent starts no second child"


def _hanging_child(reached: list[asyncio.Event], seen: list[str]) -> None:
    @workflow("hanging")
    def hanging() -> None:
        @step
        async def hold(ctx: Any) -> Any:
            seen.append(ctx.run_id)
            reached[0].set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
            return ok()


@pytest.mark.parametrize("durable", [False, True], ids=["inline", "durable"])
def test_cancelling_the_parent_cancels_its_child(store_kit: StoreKit, durable: bool) -> None:
    reached: list[asyncio.Event] = []
    seen: list[str] = []
    _hanging_child(reached, seen)

    @workflow
    def parent() -> None:
        @step
        def before(ctx: Any) -> Any:
            return ok({"n": 1})

        call_workflow("hanging", name="kid")

    store = store_kit.open() if durable else None

    async def main() -> None:
        reached.append(asyncio.Event())
        task = asyncio.ensure_future(arun_workflow(parent, run_id="p", store=store))
        await reached[0].wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        assert {asyncio.current_task()} == asyncio.all_tasks(), "no task outlives the parent"

    asyncio.run(main())
    assert seen == ["p/kid#1", "cancelled"], "the child's step saw the cancellation"
    if store is not None:
        child = store.get_run("p/kid#1")
        assert child is not None
        assert child.status == "cancelled"
        parent_run = store.get_run("p")
        assert parent_run is not None
        assert parent_run.status == "cancelled"
        store.close()
