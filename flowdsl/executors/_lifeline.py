"""Process-pool workers that end with the process that owns their pool.

A worker of a `concurrent.futures` process pool outlives an owner killed by
SIGKILL: it runs its step to the end, then waits for work forever. It also
keeps the forkserver and the multiprocessing resource tracker alive, since
each of them exits only when the last process holding its pipe does. Worse,
the run resumed in another process runs the same attempt again beside it.

So each pool has a `Lifeline`: a pipe whose write end only the owner holds.
Every worker receives the read end when it starts (`watch` is the pool's
initializer) and a daemon thread blocks reading it. However the owner ends
(exit, crash, SIGKILL), the kernel closes the write end; the read returns
end-of-file and the worker leaves at once with ``os._exit``, abandoning its
step. The forkserver and the resource tracker then see their last client go
and exit as they are built to. The same end-of-file comes when the owner
`cut`s the lifeline after shutting the pool down (or replacing a broken one),
so no worker of an old pool lingers either.

Not ``prctl(PR_SET_PDEATHSIG)``: Linux sends that signal when the *thread*
that started the worker ends, and `concurrent.futures` starts workers from
whichever thread submits, often a short-lived one running a workflow; a
worker would be killed under a live owner. The pipe belongs to the owner
process, not to one of its threads. What the thread cannot do is run while a
step holds the GIL without a break (a C extension that never releases it);
Python code lets it run within the interpreter's switch interval (5 ms).
"""

from __future__ import annotations

import multiprocessing.context
import os
import threading
from multiprocessing.connection import Connection
from typing import Final

__all__ = ["Lifeline", "watch"]

_EXIT_CODE: Final = 70  # EX_SOFTWARE: nobody is left to read it; it tells a tracer why


class Lifeline:
    """The owner's side of one pool's lifeline: its workers end when this process does."""

    __slots__ = ("_writer", "reader")

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        # Both ends are created non-inheritable: a worker receives only the read end,
        # duplicated for it by multiprocessing when it starts.
        self.reader, self._writer = context.Pipe(duplex=False)

    def cut(self) -> None:
        """End every worker still holding the read end (call after the pool shut down)."""
        self._writer.close()
        self.reader.close()


def watch(lifeline: Connection) -> None:
    """A worker's initializer: leave at once when the owner ends or cuts the lifeline."""
    threading.Thread(
        target=_wait_for_the_end, args=(lifeline,), name="flowdsl-lifeline", daemon=True
    ).start()


def _wait_for_the_end(lifeline: Connection) -> None:
    try:
        while True:  # the owner never writes: this returns only at end-of-file
            lifeline.recv_bytes()
    except (EOFError, OSError):
        pass
    os._exit(_EXIT_CODE)
