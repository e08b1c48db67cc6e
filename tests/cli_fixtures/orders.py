"""The workflow drawn in docs/graphs.md (a test checks the doc shows this file's graph)."""

from flowdsl import END, Context, Retry, goto, ok, parallel, step, workflow


def release_stock(ctx: Context) -> None:
    """Compensation: put the reserved items back."""


def cheapest(ctx: Context, results):
    """Reducer: keep the cheapest quote that came back."""
    prices = [r.value for r in results.values() if type(r).__name__ == "Ok"]
    return ok({"price": min(prices)}) if prices else goto("manual_quote")


@workflow
def ship_order() -> None:
    @step(compensate=release_stock)
    async def reserve_stock(ctx: Context):
        return ok({"reserved": True})

    with parallel(into=cheapest, name="quotes", max_concurrency=2):

        @step(retry=Retry(max_attempts=3))
        async def quote_dhl(ctx: Context):
            return 12.5

        @step(timeout=5)
        async def quote_ups(ctx: Context):
            return 11.0

    @step(routes=(END,))
    async def book(ctx: Context):
        return goto(END, {"booked": True})

    @step
    def manual_quote(ctx: Context):
        return ok({"price": None})
