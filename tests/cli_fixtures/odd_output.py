"""Outputs that are hard to print: a lone surrogate, values nested deeper than JSON printing goes."""

from flowdsl import ok, step, workflow


def nested(depth: int) -> object:
    value: object = "bottom"
    for _ in range(depth):
        value = [value]
    return value


@workflow
def surrogate() -> None:
    @step
    async def name(ctx):
        return ok({"name": "\udcff", "plain": "é"})


@workflow
def deep() -> None:
    @step
    async def dig(ctx):
        return ok({"deep": nested(900)})


@workflow
def deep_failure() -> None:
    @step
    async def dig(ctx):
        return ok({"deep": nested(900)})

    @step
    async def fail(ctx):
        raise RuntimeError("failed after digging")
