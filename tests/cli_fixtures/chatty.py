"""Steps that print: on the event loop, in a thread and in a worker process."""

import os

from flowdsl import ok, step, workflow


@workflow
def chatty():
    @step
    def loud(ctx):
        print("loud on the loop")
        return ok({"loop": True})

    @step(executor="process")
    def far(ctx):
        print("loud in a worker process")
        os.write(1, b"written straight to descriptor 1\n")
        return ok({"process": True})
