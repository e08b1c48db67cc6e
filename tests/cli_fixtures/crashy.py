"""A durable run whose process dies in its second step the first time (for `runs resume`).

The step kills its own process (``os._exit``) unless the file named by the
``marker`` input exists, and creates that file first: so the first run dies
mid-way and a resumed run completes.
"""

import os
from pathlib import Path

from flowdsl import Context, ok, step, workflow


@workflow
def crashy() -> None:
    @step
    def first(ctx: Context):
        return ok({"first": True})

    @step
    def second(ctx: Context):
        marker = Path(ctx["marker"])
        if not marker.exists():
            marker.write_text("died once\n")
            os._exit(3)
        return ok({"second": ctx.attempt})
