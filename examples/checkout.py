"""Multi-stage checkout: three parallel stages, each starting when the one before is done.

Stage 1 fetches the user, checks the inventory and validates the payment at
once; stage 2 runs fraud detection and shipping on what stage 1 found; stage 3
reserves the stock and computes the tax. Each stage is a ``parallel()`` block
that fails fast (a failed branch cancels its siblings and fails the run, so
later stages never start) and folds its branch values into the context with an
``into=`` reducer, so the next stage can read them.

Run it: ``python examples/checkout.py``
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from flowdsl import Context, Result, Run, ok, parallel, run_workflow, step, workflow

USERS = {"u-1": {"name": "Ada", "address": "12 Analytical Row"}}
STOCK = {"sku-42": {"available": 3, "weight_kg": 1.5}}
PRICES = {"sku-42": 40.0}


def merge_values(ctx: Context, results: Mapping[str, Result[Any, Any]]):
    """Reducer of every stage: store each branch's value under its key.

    The stages fail fast, so when this runs every branch succeeded.
    """
    return ok({key: result.value for key, result in results.items()})


@workflow
def checkout() -> None:
    # Stage 1: independent lookups.
    with parallel(on_error="fail_fast", into=merge_values, name="stage_1"):

        @step(returns="user")
        async def fetch_user(ctx: Context):
            await asyncio.sleep(0.02)
            user = USERS.get(ctx["user_id"])
            if user is None:
                raise LookupError(f"no user {ctx['user_id']!r}")
            return user

        @step(returns="inventory")
        async def check_inventory(ctx: Context):
            await asyncio.sleep(0.03)
            return STOCK[ctx["sku"]]

        @step(returns="payment")
        async def validate_payment(ctx: Context):
            await asyncio.sleep(0.03)
            return {"card": ctx["card"], "valid": True}

    # Stage 2: needs the user, the payment and the inventory.
    with parallel(on_error="fail_fast", into=merge_values, name="stage_2"):

        @step(returns="fraud")
        async def detect_fraud(ctx: Context):
            await asyncio.sleep(0.02)
            return {"score": 0.1 if ctx["payment"]["valid"] else 0.9}

        @step(returns="shipping")
        async def calculate_shipping(ctx: Context):
            await asyncio.sleep(0.03)
            return round(4.0 + 2.0 * ctx["inventory"]["weight_kg"] * ctx["quantity"], 2)

    # Stage 3: needs the fraud check and the shipping cost.
    with parallel(on_error="fail_fast", into=merge_values, name="stage_3"):

        @step(returns="reservation")
        async def reserve_stock(ctx: Context):
            await asyncio.sleep(0.02)
            return f"res-{ctx['sku']}-{ctx['quantity']}"

        @step(returns="tax")
        async def calculate_tax(ctx: Context):
            await asyncio.sleep(0.02)
            return round(0.2 * PRICES[ctx["sku"]] * ctx["quantity"], 2)

    @step
    def confirm(ctx: Context):
        subtotal = PRICES[ctx["sku"]] * ctx["quantity"]
        return ok({"total": subtotal + ctx["shipping"] + ctx["tax"], "confirmed": True})


def show(run: Run) -> None:
    """Print a run: its status, each step attempt with its duration, and the output."""
    print(f"{run.workflow}: {run.status} in {run.duration * 1000:.0f} ms")
    for attempt in run.steps:
        note = f"  {attempt.error!r}" if attempt.error is not None else ""
        print(
            f"  {attempt.name:<20} attempt {attempt.attempt}  {attempt.status:<9}"
            f" {attempt.duration * 1000:5.1f} ms{note}"
        )
    if run.status == "completed":
        print(f"  total: {run.output['total']:.2f}")
    else:
        print(f"  failed at {run.failed_step!r}: {run.error!r}")


ORDER = {"sku": "sku-42", "quantity": 2, "card": "4242"}


def main() -> None:
    print("-- a known user: all three stages run")
    show(run_workflow("checkout", {**ORDER, "user_id": "u-1"}))
    print("-- an unknown user: stage 1 fails, stages 2 and 3 never start")
    show(run_workflow("checkout", {**ORDER, "user_id": "u-404"}))


if __name__ == "__main__":
    main()
