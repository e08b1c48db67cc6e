"""Expense approval with escalation: durable waits for people, with deadlines.

    submit -> wait for "approved" (3 days) -> pay
                 | nobody answered in 3 days
                 v
              escalate -> wait for "manager_decision" (2 days) -> decide -> pay, or rejected
                             | nobody answered: the run fails (TimeoutError)

The team lead approves with ``send_event(run_id, "approved", {"by": ...})``
from any process that can reach the store; the manager decides with
``send_event(run_id, "manager_decision", {"approved": ..., "by": ...})``.

``python examples/expense_approval.py`` queues three expenses in a SQLite
store in a temporary directory, serves them with a worker (which parks each
waiting run: status "waiting", no worker slot held), and plays the five days
on flowdsl's fake clock, so it finishes in about a second: one expense is
approved in time, one is escalated then approved, one is escalated then
rejected.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowdsl import (
    END,
    Run,
    SQLiteStore,
    Store,
    Worker,
    asend_event,
    astart_workflow,
    error,
    goto,
    ok,
    step,
    wait_for_event,
    workflow,
)
from flowdsl.testing import FakeClock, fake_clock

DAY = 86_400.0

PAYMENTS: dict[str, tuple[str, float]] = {}
"""The payment system: one payment per idempotency key, so a repeated attempt pays once."""


@workflow
def expense_approval() -> None:
    @step
    async def submit(ctx: Any) -> Any:
        if ctx["amount"] <= 0:
            return error(f"expense {ctx['expense_id']}: the amount must be positive")
        return ok({"submitted": True})

    wait_for_event("approved", returns="approval", timeout=3 * DAY, on_timeout="escalate")

    @step
    async def pay(ctx: Any) -> Any:
        PAYMENTS.setdefault(ctx.idempotency_key, (ctx["expense_id"], ctx["amount"]))
        return goto(END, {"status": "paid", "approved_by": ctx["approval"]["by"]})

    @step
    async def escalate(ctx: Any) -> Any:  # reached only when nobody approved in time
        return ok({"escalated": True})

    wait_for_event("manager_decision", returns="decision", timeout=2 * DAY)

    @step(routes=("pay",))
    async def decide(ctx: Any) -> Any:
        decision = ctx["decision"]
        if decision["approved"]:
            return goto("pay", {"approval": {"by": decision["by"]}})
        return goto(END, {"status": "rejected", "rejected_by": decision["by"]})


EXPENSES = {"exp-1": 120.0, "exp-2": 900.0, "exp-3": 5000.0}


async def until(check: Callable[[], bool], what: str) -> None:
    """Poll the store (the worker runs beside us) for at most 20 seconds."""
    for _ in range(2000):
        if check():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{what} did not happen within 20 s")


def statuses(store: Store) -> dict[str, str]:
    return {run.run_id: run.status for run in store.list_runs()}


def waiting_for(store: Store, run_id: str) -> tuple[str, ...]:
    run = store.get_run(run_id)
    return () if run is None or run.waiting is None else run.waiting.events


async def demo(store: Store, clock: FakeClock) -> dict[str, Run]:
    """Queue the three expenses, serve them, play five days; return the finished runs."""
    start = clock.now()

    def say(text: str) -> None:
        print(f"day {(clock.now() - start) / DAY:g}: {text}")

    worker = Worker(store, concurrency=2, park_after=0, poll=0.02)
    serving = asyncio.create_task(worker.arun())
    try:
        for run_id, amount in EXPENSES.items():
            await astart_workflow(
                "expense_approval", {"expense_id": run_id, "amount": amount},
                store=store, run_id=run_id,
            )  # fmt: skip
        await until(
            lambda: all(waiting_for(store, r) == ("approved",) for r in EXPENSES), "parking"
        )
        say(
            f"{len(EXPENSES)} expenses submitted; parked, waiting for 'approved': {statuses(store)}"
        )

        clock.advance(1 * DAY)
        await asend_event("exp-1", "approved", {"by": "ana"}, store=store)
        say("ana approves exp-1")
        await until(lambda: statuses(store)["exp-1"] == "completed", "exp-1 paid")

        clock.advance(2 * DAY)  # three days: the other two were not approved in time
        await until(
            lambda: all(waiting_for(store, r) == ("manager_decision",) for r in ("exp-2", "exp-3")),
            "the escalations",
        )
        say("exp-2 and exp-3 were not approved in 3 days: escalated to the manager")

        clock.advance(1 * DAY)
        await asend_event(
            "exp-2", "manager_decision", {"approved": True, "by": "maria"}, store=store
        )
        await asend_event(
            "exp-3", "manager_decision", {"approved": False, "by": "maria"}, store=store
        )
        say("maria approves exp-2 and rejects exp-3")
        await until(lambda: set(statuses(store).values()) == {"completed"}, "every decision")
    finally:
        worker.stop()
        await serving
    runs = {run_id: store.get_run(run_id) for run_id in EXPENSES}
    return {run_id: run for run_id, run in runs.items() if run is not None}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, SQLiteStore(Path(tmp) / "expenses.db") as store:
        with fake_clock() as clock:
            runs = asyncio.run(demo(store, clock))
        for run_id, run in runs.items():
            out = run.output
            who = out.get("approved_by") or out.get("rejected_by")
            path = " -> ".join(record.name for record in run.steps)
            print(f"{run_id} ({out['amount']:g} EUR): {out['status']} by {who}; {path}")
        print(f"payments: {sorted(PAYMENTS.values())}")


if __name__ == "__main__":
    main()
