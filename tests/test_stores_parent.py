"""Child runs in the stores: ``parent_id`` kept, listed by parent, and the end that wakes a parent.

What must hold, on every kind of store (`store_kit`):

* a run created with a parent (``RunHeader.parent_id``, by `open_run` or
  `enqueue`) reads back with that `Run.parent_id` wherever a `Run` or an
  `Opened` is made from its row; ``list_runs(parent=ID)`` is exactly the
  runs whose parent is ID;
* a store of schema 4 (before child runs) is migrated: every run is kept,
  and their ``parent_id`` is None;
* a child that completes or fails sends its parent ``child_finished(run_id)``
  in the commit of its end, as `send_event` would: a parent parked waiting
  for it is claimable once `finish_run` returns, one that waits in place is
  woken; a finish that is refused (a lost claim) sends nothing; a cancelled
  child sends nothing (it resumes when asked for); a parent that is gone or
  finished gets nothing, and the child's end is committed all the same;
* ``flowdsl runs list --parent ID`` lists a run's children and names their parent.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polling import until
from stores import StoreKit

import flowdsl
from flowdsl import (
    Store,
    Waiting,
    Worker,
    astart_workflow,
    call_workflow,
    ok,
    run_workflow,
    start_workflow,
    step,
    workflow,
)
from flowdsl.errors import StoreError, UsageError

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl._engine._seams import child_finished
from flowdsl.stores._codec import decode
from flowdsl.stores._protocol import ClaimRequest, Ending, Opened, RunHeader, Ticket

pytestmark = pytest.mark.usefixtures("flowdsl_registry")

KNOWN = (("parent-wf", "fp-parent"), ("child-wf", "fp-child"))
"""The (workflow, fingerprint) pairs the claims of these tests know."""


def header(run_id: str, parent_id: str | None = None, *, started: float | None = None) -> RunHeader:
    workflow = "parent-wf" if parent_id is None else "child-wf"
    fingerprint = "fp-parent" if parent_id is None else "fp-child"
    return RunHeader(
        run_id,
        workflow,
        fingerprint,
        ("a",),
        "{}",
        time.time() if started is None else started,
        parent_id=parent_id,
    )


def ending(status: Any = "completed") -> Ending:
    return Ending(status, '{"done": true}', None, None, "[]", 0.01)


def now_ticket() -> Ticket:
    return Ticket("default", 0, time.time())


def claimable(store: Store) -> list[str]:
    """The run ids a worker that knows `KNOWN` claims now (claimed, then given back)."""
    claimed = asyncio.run(store.claim(ClaimRequest(100, KNOWN)))
    for opened in claimed:
        assert opened.claim is not None
        store.release(opened.claim)
    return sorted(opened.run_id for opened in claimed)


def parked_parent(store: Store, run_id: str, *children: str) -> None:
    """Create `run_id` and park it waiting for the ends of `children` (and nothing else)."""

    async def main() -> None:
        opened = await store.open_run(header(run_id))
        assert opened.claim is not None
        events = tuple(child_finished(child) for child in children)
        await store.park(opened.claim, Waiting(("call",), events, None), (("call", 1),))

    asyncio.run(main())


def finish(store: Store, run_id: str, parent_id: str | None, status: Any = "completed") -> None:
    """Create the child run `run_id` (of `parent_id`) and finish it with `status`."""

    async def main() -> None:
        opened = await store.open_run(header(run_id, parent_id))
        assert opened.claim is not None
        await store.finish_run(opened.claim, ending(status))

    asyncio.run(main())


def payloads(kit: StoreKit, run_id: str) -> list[tuple[str, Any, bool]]:
    return [(row.event, decode(row.payload), row.taken) for row in kit.mailbox(run_id)]


# -- parent_id kept ----------------------------------------------------------------------------


def test_parent_id_round_trips_through_open_run_enqueue_claim_get_run_and_list_runs(
    store: Store,
) -> None:
    async def main() -> dict[str, Opened]:
        seen: dict[str, Opened] = {}
        seen["opened"] = await store.open_run(header("p/a#1", "p"))
        seen["queued"] = await store.enqueue(header("p/b#1", "p"), now_ticket())
        seen["orphan"] = await store.open_run(header("lone"))
        claim = seen["opened"].claim
        assert claim is not None
        await store.finish_run(claim, ending())
        # A run the store holds already: what it recorded comes back, whatever is asked.
        seen["finished by open_run"] = await store.open_run(header("p/a#1", "other"))
        seen["finished by enqueue"] = await store.enqueue(header("p/a#1"), now_ticket())
        seen["queued again"] = await store.enqueue(header("p/b#1", "other"), now_ticket())
        claimed = await store.claim(ClaimRequest(10, KNOWN))
        seen["claimed"] = next(o for o in claimed if o.run_id == "p/b#1")
        return seen

    seen = asyncio.run(main())
    assert {
        "opened": "p",
        "queued": "p",
        "orphan": None,
        "finished by open_run": "p",
        "finished by enqueue": "p",
        "queued again": "p",
        "claimed": "p",
    } == {name: opened.parent_id for name, opened in seen.items()}
    for name in ("finished by open_run", "finished by enqueue"):
        finished = seen[name].finished
        assert finished is not None, name
        assert ("p/a#1", "completed", "p") == (
            finished.run_id,
            finished.status,
            finished.parent_id,
        )
    for run_id, parent in (("p/a#1", "p"), ("p/b#1", "p"), ("lone", None)):
        run = store.get_run(run_id)
        assert run is not None
        assert parent == run.parent_id, run_id
    assert {"p/a#1": "p", "p/b#1": "p", "lone": None} == {
        run.run_id: run.parent_id for run in store.list_runs()
    }


def test_list_runs_by_parent_lists_exactly_its_children(store: Store) -> None:
    base = time.time()

    async def main() -> None:
        for n, (run_id, parent) in enumerate(
            [("p", None), ("p/a#1", "p"), ("q", None), ("q/a#1", "q"), ("p/a#1/x#1", "p/a#1")]
        ):
            await store.open_run(header(run_id, parent, started=base + n))
        await store.enqueue(header("p/b#1", "p", started=base + 10), now_ticket())

    asyncio.run(main())
    assert ["p/a#1", "p/b#1"] == [r.run_id for r in store.list_runs(parent="p")]
    assert ["p/a#1/x#1"] == [r.run_id for r in store.list_runs(parent="p/a#1")]
    assert ["p/b#1"] == [r.run_id for r in store.list_runs("queued", parent="p")]
    assert ["p/a#1"] == [r.run_id for r in store.list_runs(status="running", parent="p")]
    assert [] == store.list_runs(parent="nobody")
    assert [] == store.list_runs(parent="q/a#1")
    with pytest.raises(UsageError, match=r"parent= takes the run id of a parent run.*got ''"):
        store.list_runs(parent="")
    with pytest.raises(UsageError, match=r"got 7"):
        store.list_runs(parent=7)  # type: ignore[arg-type]


forests = st.lists(
    st.tuples(st.none() | st.integers(0, 7), st.booleans()),  # (parent index, queued?)
    max_size=8,
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(forest=forests)
def test_list_runs_by_parent_is_the_runs_whose_parent_id_it_is(
    store: Store, forest: list[tuple[int | None, bool]]
) -> None:
    """For any runs and parents (some parents not in the store): the filter is exact, in order."""
    prefix = uuid.uuid4().hex[:8] + "-"  # each example's runs apart from the others'
    base = time.time()

    async def main() -> None:
        for n, (parent, queued) in enumerate(forest):
            made = header(
                f"{prefix}{n}", None if parent is None else f"{prefix}{parent}", started=base + n
            )
            if queued:
                await store.enqueue(made, now_ticket())
            else:
                await store.open_run(made)

    asyncio.run(main())
    mine = [run for run in store.list_runs() if run.run_id.startswith(prefix)]
    assert [f"{prefix}{n}" for n in range(len(forest))] == [run.run_id for run in mine]
    for index in range(8):
        parent = f"{prefix}{index}"
        children = [run.run_id for run in mine if run.parent_id == parent]
        assert children == [run.run_id for run in store.list_runs(parent=parent)]
        assert [
            run.run_id for run in mine if run.parent_id == parent and run.status == "queued"
        ] == [run.run_id for run in store.list_runs("queued", parent=parent)]


# -- the migration from schema 4 ---------------------------------------------------------------


def test_a_schema_4_store_is_migrated_keeping_every_run_with_no_parent(
    store_kit: StoreKit,
) -> None:
    @workflow
    def recorded() -> None:
        @step
        async def only(ctx: Any) -> Any:
            return ok({"kept": ctx["n"]})

    store = store_kit.open()
    for n in range(3):
        assert (
            "completed" == run_workflow(recorded, {"n": n}, run_id=f"done-{n}", store=store).status
        )

    async def unfinished() -> None:
        await store.enqueue(header("queued-1"), now_ticket())
        opened = await store.open_run(header("parked-1"))
        assert opened.claim is not None
        await store.park(opened.claim, Waiting(("w",), ("go",), None), (("w", 1),))
        await store.send_event("parked-1", "go", '"early"')

    asyncio.run(unfinished())
    before = store.list_runs()
    store.close()
    store_kit.as_schema_4()
    assert 4 == store_kit.schema_version()

    migrated = store_kit.open()
    assert store_kit.release_schema == store_kit.schema_version(), (
        "migrated to this release's schema"
    )
    after = migrated.list_runs()
    assert before == after, "every run, as it was"
    assert 5 == len(after)
    assert {None} == {run.parent_id for run in after}
    assert [("go", "early", False)] == payloads(store_kit, "parked-1"), "the mailbox is kept"
    assert ["parked-1", "queued-1"] == claimable(migrated), "woken and queued runs still claim"
    # The migrated store records parents from now on.
    finish(migrated, "done-0/child#1", "done-0")
    assert ["done-0/child#1"] == [r.run_id for r in migrated.list_runs(parent="done-0")]


# -- a child's end sends its parent child_finished ---------------------------------------------


def test_a_finished_child_wakes_its_parked_parent_in_the_commit_of_its_end(
    store: Store, store_kit: StoreKit
) -> None:
    parked_parent(store, "p", "p/a#1", "p/b#1")
    assert [] == claimable(store), "parked until a child ends"
    finish(store, "p/a#1", "p", "completed")
    # finish_run has returned: its end and the parent's event are committed, together.
    assert [
        (child_finished("p/a#1"), {"run_id": "p/a#1", "status": "completed"}, False)
    ] == payloads(store_kit, "p")
    assert ["p"] == claimable(store)
    assert "completed" == store_kit.status_of("p/a#1")[0]  # type: ignore[index]
    finish(store, "p/b#1", "p", "failed")
    assert [
        (child_finished("p/a#1"), {"run_id": "p/a#1", "status": "completed"}, False),
        (child_finished("p/b#1"), {"run_id": "p/b#1", "status": "failed"}, False),
    ] == payloads(store_kit, "p")


def test_the_parent_takes_the_event_at_its_wait(store: Store) -> None:
    """The event is an ordinary one in the parent's mailbox: a wait for it takes it once."""
    from flowdsl.stores._protocol import Attempt

    parked_parent(store, "p", "p/a#1")
    finish(store, "p/a#1", "p")

    async def main() -> tuple[str | None, str | None]:
        claimed = await store.claim(ClaimRequest(10, KNOWN))
        assert ["p"] == [o.run_id for o in claimed]
        claim = claimed[0].claim
        assert claim is not None
        entry = Attempt("call", 1, 1, True, True, "", time.time(), 0.0)
        event = child_finished("p/a#1")
        first = await store.take_event(claim, event, entry, ("", ""))
        again = await store.take_event(claim, event, attrs.evolve(entry, visit=2), ("", ""))
        return first, again

    first, again = asyncio.run(main())
    assert first is not None
    assert {"run_id": "p/a#1", "status": "completed"} == decode(first)
    assert again is None, "taken once"


def test_a_parent_waiting_in_place_is_woken_by_its_childs_end(store: Store) -> None:
    event = child_finished("p/a#1")

    async def main() -> None:
        opened = await store.open_run(header("p"))
        assert opened.claim is not None
        waiter = asyncio.ensure_future(store.wait_for_event("p", event, 60.0))
        await asyncio.sleep(0.1)
        assert not waiter.done(), "nothing came yet"
        child = await store.open_run(header("p/a#1", "p"))
        assert child.claim is not None
        await store.finish_run(child.claim, ending())
        await asyncio.wait_for(waiter, 30.0)  # woken, well before its own 60 s

    asyncio.run(main())


def test_a_refused_finish_sends_nothing(store: Store, store_kit: StoreKit) -> None:
    """A child whose claim was taken over cannot finish: its parent gets no event either."""
    parked_parent(store, "p", "p/a#1")

    async def main() -> None:
        child = await store.open_run(header("p/a#1", "p"))
        assert child.claim is not None
        store_kit.set_owner("p/a#1", "elsewhere|pid:[1]|7|1", time.time() + 3600)
        with pytest.raises(StoreError, match="no longer owned by this process"):
            await store.finish_run(child.claim, ending())

    asyncio.run(main())
    assert [] == store_kit.mailbox("p")
    assert [] == claimable(store)
    assert "running" == store_kit.status_of("p/a#1")[0]  # type: ignore[index]


def test_a_cancelled_child_leaves_its_parent_waiting(store: Store, store_kit: StoreKit) -> None:
    """A cancelled run resumes when asked for: it has not ended, so its parent waits on."""
    parked_parent(store, "p", "p/a#1")
    finish(store, "p/a#1", "p", "cancelled")
    assert "cancelled" == store_kit.status_of("p/a#1")[0]  # type: ignore[index]
    assert [] == store_kit.mailbox("p")
    assert [] == claimable(store)


def test_a_child_whose_parent_is_gone_or_finished_finishes_all_the_same(
    store: Store, store_kit: StoreKit
) -> None:
    finish(store, "ghost/a#1", "ghost")
    run = store.get_run("ghost/a#1")
    assert run is not None
    assert ("completed", "ghost") == (run.status, run.parent_id)
    assert [] == store_kit.mailbox("ghost")
    assert not store_kit.has_run("ghost")

    finish(store, "done", None)  # a parent that ended first refuses events, as send_event
    finish(store, "done/a#1", "done", "failed")
    child = store.get_run("done/a#1")
    assert child is not None
    assert "failed" == child.status
    assert [] == store_kit.mailbox("done")


def test_a_parent_parked_on_a_child_under_a_worker_completes_when_the_child_ends(
    store: Store,
) -> None:
    """call_workflow under a worker: the parent parks (no lease) while the child runs."""
    go = asyncio.Event()

    @workflow
    def payment() -> None:
        @step
        async def charge(ctx: Any) -> Any:
            await go.wait()
            return ok({"charged": ctx["amount"]})

    @workflow
    def order() -> None:
        call_workflow("payment", input={"amount": 5}, returns="receipt")

        @step
        async def ship(ctx: Any) -> Any:
            return ok({"shipped": ctx["receipt"]["charged"]})

    child_id = "o-1/payment#1"

    async def main() -> None:
        worker = Worker(store, concurrency=2, park_after=0, poll=0.02)
        serving = asyncio.create_task(worker.arun())
        try:
            await astart_workflow("order", {}, store=store, run_id="o-1")
            await until(lambda: store.get_run("o-1").status == "waiting", "the parent parked")  # type: ignore[union-attr]
            parent = store.get_run("o-1")
            assert parent is not None
            assert parent.waiting is not None
            assert (child_finished(child_id),) == parent.waiting.events
            assert parent.owner is None, "a parked parent holds no lease"
            assert [child_id] == [run.run_id for run in store.list_runs(parent="o-1")]
            go.set()
            await until(lambda: store.get_run("o-1").status == "completed", "the parent done")  # type: ignore[union-attr]
        finally:
            worker.stop()
            await serving

    asyncio.run(main())
    parent, child = store.get_run("o-1"), store.get_run(child_id)
    assert parent is not None
    assert child is not None
    assert (None, "o-1", "completed") == (parent.parent_id, child.parent_id, child.status)
    assert 5 == parent.output["shipped"]
    assert {"amount": 5, "charged": 5} == dict(parent.output["receipt"])


def test_a_child_queued_on_another_queue_runs_on_the_worker_serving_it(store: Store) -> None:
    """call_workflow(queue=): the child waits on its queue until a worker serving it comes;
    the parent stays parked meanwhile, and its own worker finishes it after the child."""

    @workflow
    def payment() -> None:
        @step
        async def charge(ctx: Any) -> Any:
            return ok({"charged": ctx["amount"]})

    @workflow
    def order() -> None:
        call_workflow("payment", input={"amount": 7}, returns="receipt", queue="payments")

        @step
        async def ship(ctx: Any) -> Any:
            return ok({"shipped": ctx["receipt"]["charged"]})

    child_id = "o-2/payment#1"

    async def main() -> None:
        orders = Worker(store, queues=["default"], concurrency=2, park_after=0, poll=0.02)
        serving = [asyncio.create_task(orders.arun())]
        payments = Worker(store, queues=["payments"], concurrency=2, park_after=0, poll=0.02)
        try:
            await astart_workflow("order", {}, store=store, run_id="o-2")
            await until(lambda: store.get_run("o-2").status == "waiting", "the parent parked")  # type: ignore[union-attr]
            child = store.get_run(child_id)
            assert child is not None
            await asyncio.sleep(0.1)  # a few polls of the orders worker: it never takes the child
            assert "queued" == store.get_run(child_id).status  # type: ignore[union-attr]
            assert "waiting" == store.get_run("o-2").status  # type: ignore[union-attr]
            serving.append(asyncio.create_task(payments.arun()))
            await until(lambda: store.get_run("o-2").status == "completed", "the parent done")  # type: ignore[union-attr]
        finally:
            orders.stop()
            payments.stop()
            await asyncio.gather(*serving)

    asyncio.run(main())
    parent = store.get_run("o-2")
    assert parent is not None
    assert 7 == parent.output["shipped"]
    assert "completed" == store.get_run(child_id).status  # type: ignore[union-attr]


def test_start_workflow_records_a_parent(store: Store) -> None:
    @workflow
    def tagged() -> None:
        @step
        async def only(ctx: Any) -> Any:
            return ok()

    start_workflow("tagged", {}, store=store, run_id="t-1", parent_id="batch-7")
    run = store.get_run("t-1")
    assert run is not None
    assert ("queued", "batch-7") == (run.status, run.parent_id)
    assert ["t-1"] == [r.run_id for r in store.list_runs(parent="batch-7")]
    with pytest.raises(UsageError, match=r"parent_id= takes the run id of the parent run"):
        start_workflow("tagged", {}, store=store, parent_id="")
    with pytest.raises(UsageError, match=r"a run cannot be its own parent"):
        start_workflow("tagged", {}, store=store, run_id="t-2", parent_id="t-2")


# -- the command line --------------------------------------------------------------------------

_ROOT = str(Path(flowdsl.__file__).resolve().parent.parent)
"""Where the flowdsl these tests import lives: the command line runs that same code."""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m flowdsl ARGS` on this flowdsl, off a terminal (as test_cli.py drives it)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("FORCE_COLOR", "TTY_INTERACTIVE", "TTY_COMPATIBLE", "COLUMNS")
    }
    env["PYTHONPATH"] = _ROOT
    return subprocess.run(
        [sys.executable, "-m", "flowdsl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_runs_list_parent_lists_a_runs_children_and_names_their_parent(
    store_kit: StoreKit,
) -> None:
    @workflow
    def payment() -> None:
        @step
        async def charge(ctx: Any) -> Any:
            return ok({"charged": ctx["amount"]})

    @workflow
    def order() -> None:
        call_workflow("payment", input={"amount": 5})
        call_workflow("payment", input={"amount": 7}, name="refund")

    store = store_kit.open()
    assert "completed" == run_workflow(order, run_id="o-1", store=store).status
    assert "completed" == run_workflow(order, run_id="o-2", store=store).status
    store.close()
    url = store_kit.url

    children = cli("runs", "list", "--store", url, "--parent", "o-1")
    assert 0 == children.returncode, children.stderr
    listed = json.loads(children.stdout)
    assert [("o-1/payment#1", "o-1"), ("o-1/refund#1", "o-1")] == [
        (run["run_id"], run["parent_id"]) for run in listed
    ]
    everything = json.loads(cli("runs", "list", "--store", url).stdout)
    parents = {run["run_id"]: run["parent_id"] for run in everything}
    assert (None, None, "o-2") == (parents["o-1"], parents["o-2"], parents["o-2/refund#1"])
    none = cli("runs", "list", "--store", url, "--parent", "o-9", "--status", "failed")
    assert (0, []) == (none.returncode, json.loads(none.stdout))

    table = cli("runs", "list", "--store", url, "--parent", "o-2", "--format", "table")
    assert 0 == table.returncode, table.stderr
    header_line = next(line for line in table.stdout.splitlines() if "run_id" in line)
    columns = [cell.strip() for cell in header_line.split("┃") if cell.strip()]
    assert ["failed_step", "parent"] == columns[-2:]
    row = next(line for line in table.stdout.splitlines() if "o-2/payment#1" in line)
    assert "o-2" == [cell.strip() for cell in row.split("│")][1:-1][-1]
    plain = cli("runs", "list", "--store", url, "--status", "queued", "--format", "table")
    assert "parent" not in plain.stdout, "no child listed: no parent column"

    shown = cli("runs", "show", "o-1/refund#1", "--store", url)
    assert 0 == shown.returncode, shown.stderr
    record = json.loads(shown.stdout)
    assert ("o-1", {"amount": 7, "charged": 7}) == (record["parent_id"], record["output"])
    assert json.loads(cli("runs", "show", "o-1", "--store", url).stdout)["parent_id"] is None
