"""ETL fan-out: extract from three sources at once, then transform and load.

The extract stage is one ``parallel()`` block with a branch per source. Two
sources are single steps; the paginated API is a ``sequence()`` branch that
fetches its pages in order. The block's ``into=`` reducer gathers every row
into one list (a source that fails would fail the run with a message naming
it), then ``transform`` and ``load`` run once over all of them.

Run it: ``python examples/etl_fanout.py``
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from flowdsl import (
    Context,
    Err,
    Result,
    Run,
    error,
    ok,
    parallel,
    run_workflow,
    sequence,
    step,
    workflow,
)

# Fake sources: an orders database, a paginated CRM API and a CSV export.
ORDERS_DB = [
    {"id": 1, "amount": "19.90", "country": "fr"},
    {"id": 2, "amount": "5.00", "country": "de"},
]
CRM_PAGES = [
    [{"id": 3, "amount": "42.00", "country": "FR"}],
    [{"id": 4, "amount": "7.50", "country": "it"}],
]
CSV_EXPORT = "id,amount,country\n5,12.00,es\n6,3.10,fr\n"

WAREHOUSE: dict[int, dict[str, Any]] = {}  # where load upserts rows, by id


def gather_rows(ctx: Context, results: Mapping[str, Result[Any, Any]]):
    """Reducer of the extract block: one list of rows, or an error naming each failed source."""
    failed = {source: result.error for source, result in results.items() if isinstance(result, Err)}
    if failed:
        return error(f"extract failed for {sorted(failed)}: {failed}")
    rows = []
    counts = {}
    for source, result in results.items():
        found = result.value["rows"]
        rows.extend(found)
        counts[source] = len(found)
    return ok({"rows": rows, "extracted": counts})


@workflow
def etl() -> None:
    with parallel(into=gather_rows, name="extract"):

        @step(name="orders_db")
        async def extract_orders(ctx: Context):
            await asyncio.sleep(0.03)  # a query
            return ok({"rows": list(ORDERS_DB)})

        with sequence("crm_api"):  # its value is the mapping its steps added

            @step
            async def crm_page_1(ctx: Context):
                await asyncio.sleep(0.02)
                return ok({"rows": CRM_PAGES[0], "next_page": 2})

            @step
            async def crm_page_2(ctx: Context):
                await asyncio.sleep(0.02)
                return ok({"rows": ctx["rows"] + CRM_PAGES[ctx["next_page"] - 1]})

        @step(name="csv_export", blocking=True)  # file I/O: run it in a worker thread
        def read_csv(ctx: Context):
            header, *lines = CSV_EXPORT.strip().splitlines()
            keys = header.split(",")
            return ok({"rows": [dict(zip(keys, line.split(","), strict=True)) for line in lines]})

    @step
    def transform(ctx: Context):
        clean = [
            {
                "id": int(row["id"]),
                "amount": float(row["amount"]),
                "country": row["country"].upper(),
            }
            for row in ctx["rows"]
        ]
        return ok({"rows": sorted(clean, key=lambda row: row["id"])})

    @step
    def load(ctx: Context):
        WAREHOUSE.update({row["id"]: row for row in ctx["rows"]})  # idempotent: safe to rerun
        return ok({"loaded": len(ctx["rows"])})


def show(run: Run) -> None:
    """Print a run: its status, each step attempt with its duration, and the output."""
    print(f"{run.workflow}: {run.status} in {run.duration * 1000:.0f} ms")
    for attempt in run.steps:
        note = f"  {attempt.error!r}" if attempt.error is not None else ""
        print(
            f"  {attempt.name:<12} attempt {attempt.attempt}  {attempt.status:<9}"
            f" {attempt.duration * 1000:5.1f} ms{note}"
        )
    print(f"  extracted per source: {run.output.get('extracted')}")
    print(f"  loaded: {run.output.get('loaded')} rows")


def main() -> None:
    show(run_workflow("etl"))
    for row in WAREHOUSE.values():
        print(f"  {row}")


if __name__ == "__main__":
    main()
