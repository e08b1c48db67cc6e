"""Outputs that are hard to print: a lone surrogate, floats strict JSON has no number for,
values nested deeper than JSON printing goes."""

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
def not_finite() -> None:
    @step
    async def measure(ctx):
        return ok({"ratio": float("nan"), "top": float("inf"), "bottom": float("-inf"), "x": 0.5})


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
