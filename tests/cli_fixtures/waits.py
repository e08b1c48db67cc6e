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
        marker = Path(ctx["marker"])
        written = marker.with_suffix(".partial")
        await asyncio.to_thread(written.write_text, "waiting\n")
        # The marker appears once the thread's result is in: the test's Ctrl-C then lands in
        # the sleep. (Landing while asyncio copies a thread's result into its future, a
        # signal handler that cancels that future makes asyncio log an InvalidStateError.)
        written.rename(marker)
        await asyncio.sleep(60)
        return ok({"waited": True})
