"""Order processing: an ``into=`` reducer routes each order by what its branches found.

Stock reservation and payment run at once. The block's reducer sees both
outcomes (``into=`` implies ``on_error="complete_all"``, so failures arrive as
``Err`` values) and decides: ship the order, put it on backorder, or handle a
payment issue, jumping with ``goto``. Three orders run concurrently with
``run_many``, one down each path.

Run it: ``python examples/order_routing.py``
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from flowdsl import (
    END,
    Context,
    Err,
    Ok,
    Result,
    Run,
    error,
    goto,
    ok,
    parallel,
    run_many,
    step,
    workflow,
)

STOCK = {"book": 5, "lamp": 0, "mug": 9}


class OutOfStock(Exception):
    def __init__(self, sku: str) -> None:
        super().__init__(f"{sku} is out of stock")
        self.sku = sku


class PaymentDeclined(Exception):
    pass


def route_order(ctx: Context, results: Mapping[str, Result[Any, Any]]):
    """Reducer: ship when both branches succeeded, otherwise pick the recovery step."""
    match results["reservation"], results["payment"]:
        case Ok(reservation), Ok(payment):
            return ok({"reservation": reservation, "payment": payment})
        case Err(OutOfStock() as missing), Ok(payment):
            return goto("backorder", {"payment": payment, "missing": missing.sku})
        case _, Err(PaymentDeclined() as declined):
            return goto("payment_issue", {"payment_error": str(declined)})
        case _:
            return error(f"cannot route order {ctx['order_id']}: {dict(results)}")


@workflow
def process_order() -> None:
    @step
    def validate(ctx: Context):
        if ctx["quantity"] < 1:
            return error(f"order {ctx['order_id']}: quantity must be at least 1")
        return ok({"status": "validated"})

    with parallel(into=route_order, name="fulfil"):

        @step(returns="reservation")
        async def reserve_stock(ctx: Context):
            await asyncio.sleep(0.02)
            if STOCK[ctx["sku"]] < ctx["quantity"]:
                raise OutOfStock(ctx["sku"])
            return f"rsv-{ctx['order_id']}"

        @step(returns="payment")
        async def charge_card(ctx: Context):
            await asyncio.sleep(0.03)
            if ctx["card"].startswith("0000"):
                raise PaymentDeclined("card declined by issuer")
            return f"pay-{ctx['order_id']}"

    @step
    def ship(ctx: Context):
        # goto(END): finish here, backorder and payment_issue are only reached by goto
        return goto(END, {"status": "shipped", "tracking": f"trk-{ctx['reservation']}"})

    @step
    def backorder(ctx: Context):
        return goto(END, {"status": "backordered", "restock_request": ctx["missing"]})

    @step
    def payment_issue(ctx: Context):
        return ok({"status": "awaiting_payment", "customer_emailed": True})


ORDERS = [
    {"order_id": "o-1", "sku": "book", "quantity": 1, "card": "4242"},
    {"order_id": "o-2", "sku": "lamp", "quantity": 1, "card": "4242"},
    {"order_id": "o-3", "sku": "mug", "quantity": 2, "card": "0000-1111"},
]


def show(run: Run) -> None:
    """Print a run: its status, each step attempt with its duration, and the output."""
    print(f"{run.workflow} {run.output['order_id']}: {run.status} in {run.duration * 1000:.0f} ms")
    for attempt in run.steps:
        note = f"  {attempt.error!r}" if attempt.error is not None else ""
        print(
            f"  {attempt.name:<14} attempt {attempt.attempt}  {attempt.status:<9}"
            f" {attempt.duration * 1000:5.1f} ms{note}"
        )
    print(f"  status: {run.output['status']}")


def process_all() -> list[Run]:
    return run_many("process_order", ORDERS, concurrency=3)


def main() -> None:
    for run in process_all():
        show(run)


if __name__ == "__main__":
    main()
