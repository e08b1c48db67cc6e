"""A saga whose last step fails: the run fails and the booking is undone."""

from flowdsl import Context, ok, step, workflow


class Declined(Exception):
    """The card was declined."""


def cancel_booking(ctx: Context) -> None:
    print(f"cancelled {ctx['booking']}")


@workflow
def checkout() -> None:
    @step(compensate=cancel_booking)
    async def book(ctx: Context):
        return ok({"booking": "B-1"})

    @step
    async def charge(ctx: Context):
        raise Declined(f"card of {ctx.get('name', 'nobody')} declined")
