"""One workflow, so a TARGET of just this file is enough."""

from flowdsl import Context, ok, step, workflow


@workflow
def greet() -> None:
    @step
    async def hello(ctx: Context):
        return ok({"greeting": f"hello {ctx.get('name', 'world')}"})
