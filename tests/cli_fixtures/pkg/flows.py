"""Imported as a module: ``flowdsl run pkg.flows:greet`` from tests/cli_fixtures."""

from flowdsl import Context, ok, step, workflow


@workflow("pkg-greet")
def greet() -> None:
    @step
    def hello(ctx: Context):
        return ok({"greeting": f"hi {ctx['name']}"})
