"""Prints while being imported, then defines one workflow."""

from flowdsl import ok, step, workflow

print("noisy: imported")


@workflow
def noisy() -> None:
    @step
    async def one(ctx):
        return ok({"quiet": True})
