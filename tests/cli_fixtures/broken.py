"""A definition error: two steps with one name. Importing this fails."""

from flowdsl import ok, step, workflow


@workflow
def broken() -> None:
    @step
    def load(ctx):
        return ok()

    @step(name="load")
    def load_again(ctx):
        return ok()
