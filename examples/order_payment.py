"""An order that pays through a child workflow, durably, and undoes itself when payment fails.

``place_order`` reserves the stock and writes the invoice (each step names its
undo with ``compensate=``), then ``call_workflow("payment", input=...,
returns="payment")`` runs the ``payment`` workflow (authorize, then capture)
as a child run, and ships with what it returned. Both runs are durable in one
SQLite store:

* the child is a run of its own in the same store, with the id
  ``"{parent}/payment#1"`` and ``Run.parent_id`` naming the order's run;
* the child's output (its final context) is stored in the order's context
  under ``returns``, here ``ctx["payment"]``;
* a declined card fails the child, and so the ``payment`` node: the order
  fails with the child's error, and its completed steps are compensated, the
  most recent first (the invoice is voided, then the stock released);
* asked again for a finished order, the store returns the recorded run:
  nothing executes, and no second child is started (no second charge).

Run it::

    python examples/order_payment.py            # the store goes to a temporary folder
    python examples/order_payment.py runs.db    # keep it; run it twice to see the replay
"""

from __future__ import annotations

import itertools
import sys
import tempfile
from pathlib import Path

from flowdsl import (
    Context,
    Run,
    SQLiteStore,
    call_workflow,
    error,
    ok,
    run_workflow,
    step,
    workflow,
)

PRICES = {"kettle": 39.0, "mug": 9.5, "tea": 6.25}


class Warehouse:
    """Stock levels; a reservation takes items out until it is released."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.stock = dict(stock)
        self.reservations: dict[str, dict[str, int]] = {}
        self._ids = itertools.count(1)

    def reserve(self, items: dict[str, int]) -> str:
        short = [sku for sku, qty in items.items() if self.stock.get(sku, 0) < qty]
        if short:
            raise LookupError(f"out of stock: {', '.join(short)}")
        for sku, qty in items.items():
            self.stock[sku] -= qty
        reservation = f"RSV-{next(self._ids)}"
        self.reservations[reservation] = dict(items)
        return reservation

    def release(self, reservation: str) -> None:
        for sku, qty in self.reservations.pop(reservation, {}).items():
            self.stock[sku] += qty


class Gateway:
    """A fake card gateway: authorizations by idempotency key, so a repeat is recognised."""

    declined = frozenset({"tok_declined"})

    def __init__(self) -> None:
        self.authorized: dict[str, tuple[str, float]] = {}  # key -> (authorization, amount)
        self.captured: list[str] = []

    def authorize(self, card: str, amount: float, key: str) -> str | None:
        if card in self.declined:
            return None
        if key not in self.authorized:
            self.authorized[key] = (f"AUTH-{len(self.authorized) + 1}", amount)
        return self.authorized[key][0]

    def capture(self, authorization: str) -> str:
        self.captured.append(authorization)
        return authorization.replace("AUTH", "CAP")


WAREHOUSE = Warehouse({"kettle": 5, "mug": 20, "tea": 50})
GATEWAY = Gateway()
INVOICES: dict[str, str] = {}  # invoice number -> "open" or "void"


@workflow("payment")
def payment() -> None:
    @step
    def authorize(ctx: Context):
        authorization = GATEWAY.authorize(ctx["card"], ctx["amount"], ctx.idempotency_key)
        if authorization is None:
            return error(f"card {ctx['card']} declined for {ctx['amount']:.2f}")
        return ok({"authorization": authorization})

    @step
    def capture(ctx: Context):
        capture = GATEWAY.capture(ctx["authorization"])
        return ok({"capture": capture, "paid": ctx["amount"], "payment_run": ctx.run_id})


def release_stock(ctx: Context) -> None:
    WAREHOUSE.release(ctx["reservation"])


def void_invoice(ctx: Context) -> None:
    INVOICES[ctx["invoice"]] = "void"


@workflow
def place_order() -> None:
    @step(compensate=release_stock)
    def reserve_stock(ctx: Context):
        items = dict(ctx["items"])
        amount = sum(PRICES[sku] * qty for sku, qty in items.items())
        return ok({"reservation": WAREHOUSE.reserve(items), "amount": amount})

    @step(compensate=void_invoice)
    def create_invoice(ctx: Context):
        invoice = f"INV-{ctx['order']}"
        INVOICES[invoice] = "open"
        return ok({"invoice": invoice})

    call_workflow(
        "payment",
        input=lambda ctx: {"order": ctx["order"], "amount": ctx["amount"], "card": ctx["card"]},
        returns="payment",
    )

    @step
    def ship(ctx: Context):
        return ok({"shipped": f"SHP-{ctx['order']}", "receipt": ctx["payment"]["capture"]})


ORDERS = [
    {"order": "1001", "items": {"kettle": 1, "tea": 2}, "card": "tok_visa"},
    {"order": "1002", "items": {"mug": 4}, "card": "tok_declined"},
]


def child_id(run: Run) -> str:
    """The id of the order's payment run: ``{parent}/{node}#{visit}``."""
    return f"{run.run_id}/payment#1"


def show(run: Run) -> None:
    print(f"run {run.run_id} ({run.workflow}): {run.status}")
    for record in run.steps:
        print(f"  {record.name:<15} {record.status}")
    if run.status == "completed":
        paid = run.output["payment"]
        print(f"  ctx['payment'] (the child's output): {paid}")
        print(f"  paid by the child run {paid['payment_run']!r}")
        print(f"  shipped {run.output['shipped']}, receipt {run.output['receipt']}")
    else:
        print(f"  failed at {run.failed_step!r}: {run.error}")
    for undo in run.compensations:
        print(f"  undo {undo.step:<15} {undo.status}")


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(argv[0]) if argv else Path(tmp) / "orders.db"
        with SQLiteStore(db) as store:
            runs = [
                run_workflow(place_order, order, run_id=f"order-{order['order']}", store=store)
                for order in ORDERS
            ]
            for run in runs:
                show(run)
            print(f"runs in {db.name}:")
            for stored in store.list_runs():
                print(
                    f"  {stored.run_id:<22} {stored.workflow:<12} {stored.status:<10}"
                    f" parent_id={stored.parent_id!r}"
                )
            declined = store.get_run(child_id(runs[1]))
            assert declined is not None
            print(f"  the declined payment failed at {declined.failed_step!r}: {declined.error}")
            charges = len(GATEWAY.captured)
            again = run_workflow(place_order, ORDERS[0], run_id="order-1001", store=store)
            print(
                f"order-1001 asked again: {again.status}, same output: "
                f"{again.output == runs[0].output}, new charges: {len(GATEWAY.captured) - charges}"
            )
        print(f"invoices: {INVOICES}")
        print(f"stock: {WAREHOUSE.stock}, open reservations: {sorted(WAREHOUSE.reservations)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
