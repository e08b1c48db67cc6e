"""A step that waits: it creates the file named by the ``marker`` input, then sleeps a minute.

The Ctrl-C test starts a run of it, waits for the marker, and interrupts the command.
"""

import asyncio
from pathlib import Path

from flowdsl import Context, ok, step, workflow


@workflow
def waits() -> None:
    @step
    async def wait(ctx: Context):
        await asyncio.to_thread(Path(ctx["marker"]).write_text, "waiting\n")
        await asyncio.sleep(60)
        return ok({"waited": True})
