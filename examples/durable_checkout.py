"""A durable checkout: every step is journaled in SQLite, so a crash loses nothing.

The workflow reserves stock, then in parallel charges the card (retried, with
``ctx.idempotency_key`` passed to the payment provider so a repeated charge is
recognised), emails the customer and prepares the parcel (a sequence), then
confirms the order. Run it::

    python examples/durable_checkout.py runs.db                 # runs order-1001
    python examples/durable_checkout.py runs.db                 # asked again: nothing runs
    python examples/durable_checkout.py runs.db --order 7 --crash-at book_pickup
    python examples/durable_checkout.py runs.db --order 7       # resumes where it died

``--crash-at STEP`` kills the process (SIGKILL, no cleanup) inside that step;
the next call with the same order resumes the run: the steps that finished
are not run again. Without a path the database goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from flowdsl import (
    Retry,
    Run,
    SQLiteStore,
    error,
    ok,
    parallel,
    parallel_results,
    run_workflow,
    sequence,
    step,
    workflow,
)

CATALOG = {"sku-kettle": 39.0, "sku-mug": 9.5, "sku-tea": 6.25}
CRASH_AT = os.environ.get("CHECKOUT_CRASH_AT", "")
executed: list[str] = []  # steps this process actually ran (not replayed from the journal)


def enter(ctx: Any) -> None:
    executed.append(ctx.step)
    if ctx.step == CRASH_AT:
        print(f"  ** crashing inside {ctx.step!r} (SIGKILL) **", flush=True)
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


@workflow
def durable_checkout() -> None:
    @step
    def reserve_stock(ctx: Any) -> Any:
        enter(ctx)
        missing = [sku for sku in ctx["items"] if sku not in CATALOG]
        if missing:
            return error(f"unknown items: {', '.join(missing)}")
        return ok({"reserved": list(ctx["items"]), "amount": sum(CATALOG[s] for s in ctx["items"])})

    with parallel():

        @step(retry=Retry(max_attempts=3, backoff="constant", base=0.01))
        async def charge_card(ctx: Any) -> Any:
            enter(ctx)
            if ctx.attempt == 1:  # the provider times out once
                raise ConnectionError("payment provider timed out")
            return ok({"payment": {"id": f"pay-{ctx['order']}", "key": ctx.idempotency_key}})

        @step
        async def email_customer(ctx: Any) -> Any:
            enter(ctx)
            return f"sent to {ctx['email']}"

        with sequence("shipping"):

            @step
            async def print_label(ctx: Any) -> Any:
                enter(ctx)
                return ok({"label": f"PKG-{ctx['order']}-{len(ctx['reserved'])}"})

            @step
            async def book_pickup(ctx: Any) -> Any:
                enter(ctx)
                return ok({"pickup": {"carrier": "ACME", "label": ctx["label"]}})

    @step
    def confirm(ctx: Any) -> Any:
        enter(ctx)
        results = parallel_results(ctx)
        return ok({"confirmed": all(r.is_ok() for r in results.values())})


def show(run: Run) -> None:
    print(f"run {run.run_id}: {run.status}")
    for record in run.steps:
        print(f"  {record.name:<15} attempt {record.attempt}  {record.status}")
    if run.status == "completed":
        payment = run.output["__results__"]["charge_card"].value["payment"]
        print(f"  paid {run.output['amount']:.2f} ({payment['id']}, key {payment['key']})")
    print(f"  executed in this process: {', '.join(executed) or 'nothing (journal only)'}")


def main(argv: list[str]) -> int:
    global CRASH_AT
    parser = argparse.ArgumentParser(description="A durable checkout on SQLite.")
    parser.add_argument("db", nargs="?", help="the SQLite file (default: a temporary one)")
    parser.add_argument("--order", default="1001")
    parser.add_argument("--crash-at", default=CRASH_AT, metavar="STEP")
    args = parser.parse_args(argv)
    CRASH_AT = args.crash_at
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "runs.db"
        order = {
            "order": args.order,
            "items": ["sku-kettle", "sku-tea"],
            "email": "ada@example.com",
        }
        with SQLiteStore(db) as store:
            run = run_workflow(durable_checkout, order, run_id=f"order-{args.order}", store=store)
            show(run)
            print(
                f"runs in {db.name}: "
                + ", ".join(f"{r.run_id} {r.status}" for r in store.list_runs())
            )
    return 0 if run.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
