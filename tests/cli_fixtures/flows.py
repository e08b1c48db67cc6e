"""Several workflows for the command line tests."""

from __future__ import annotations

import structlog

from flowdsl import END, Context, Retry, error, goto, ok, parallel, sequence, step, workflow


@workflow
def chunks() -> None:
    @step
    async def count(ctx: Context):
        for n in range(1, ctx.get("upto", 3) + 1):
            yield {"done": n}
        yield ok({"counted": ctx.get("upto", 3)})


@workflow
def flaky() -> None:
    @step(retry=Retry(max_attempts=3, backoff="constant", base=0))
    async def call(ctx: Context):
        if ctx.attempt < 3:
            return error(f"busy (attempt {ctx.attempt})")
        return ok({"answer": 42})


@workflow
def logs() -> None:
    @step
    def greet(ctx: Context):
        structlog.get_logger("fixtures").info("greeting.made", name=ctx["name"])
        return ok({"greeting": f"hello {ctx['name']}"})


def pick_best(ctx: Context, results):
    return ok({"best": max(r.value for r in results.values() if type(r).__name__ == "Ok")})


def release(ctx: Context) -> None:
    """Give the reserved stock back."""


@workflow("shapes")
def shapes() -> None:
    @step(compensate=release)
    async def reserve(ctx: Context):
        return ok({"reserved": True})

    with parallel(into=pick_best, name="quotes", max_concurrency=2):

        @step(retry=Retry(max_attempts=2))
        async def quote_a(ctx: Context):
            return 1

        with sequence("quote_b"):

            @step
            async def fetch_b(ctx: Context):
                return ok({"b": 2})

            @step(timeout=5)
            async def parse_b(ctx: Context):
                return ctx["b"]

    @step(routes=("reserve", END))
    async def decide(ctx: Context):
        return goto(END) if ctx["best"] else goto("reserve")
