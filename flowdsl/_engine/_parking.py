"""When a worker's run parks: every active thread of control waits, long enough.

A run executes as threads of control: the top-level sequence, and while a
parallel block runs, each of its branches that is active (started, holding
its ``max_concurrency`` slot, not finished). A wait enters the `Parker` while
it waits and leaves it when it ends. Once every active thread is in a wait,
and that has lasted the journal's ``park_after`` seconds, the run parks: no
step is in flight, so stopping the run here loses nothing (a resumed run
replays everything it did and waits only what remains of its deadlines).

Only a run whose journal can park it (a worker's) has a `Parker`: a run
without one pays nothing for this.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ._clock import clock
from ._run import Waiting

__all__ = ["Parker"]


class Parker:
    """Counts a run's active threads and the waits among them; fires `park` when all wait."""

    __slots__ = ("after", "loop", "park", "threads", "timer", "waits")

    def __init__(
        self, after: float, park: Callable[[Waiting, tuple[tuple[str, int], ...]], None]
    ) -> None:
        self.after = after
        self.park = park
        self.loop = asyncio.get_running_loop()
        self.threads = 1  # the top-level sequence
        self.waits: dict[object, tuple[str, int, str | None, float | None]] = {}
        self.timer: asyncio.TimerHandle | None = None

    def enter(
        self, token: object, name: str, visit: int, event: str | None, due: float | None
    ) -> None:
        """A wait started waiting (`token` tells it from other visits, items, branches)."""
        self.waits[token] = (name, visit, event, due)
        self.check()

    def leave(self, token: object) -> None:
        """The wait ended (its event came, its deadline passed, it was cancelled)."""
        if self.waits.pop(token, None) is not None:
            self.check()

    def threads_changed(self, change: int) -> None:
        """A branch became active (+1) or ended (-1); a block's parent paused (-1) or went on."""
        self.threads += change
        self.check()

    def idle(self) -> bool:
        return bool(self.waits) and len(self.waits) >= self.threads

    def check(self) -> None:
        idle = self.idle()
        if idle and self.timer is None:
            self.timer = self.loop.call_later(self.after, self.fire)
        elif not idle and self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def fire(self) -> None:
        self.timer = None
        if self.idle() and not self.overdue():
            self.park(
                self.waiting(), tuple((name, visit) for name, visit, _, _ in self.waits.values())
            )

    def overdue(self) -> bool:
        """Whether a wait's deadline has passed: it is ending now, so parking would only wake
        the run again at once (with ``park_after=0``, again and again, never timing out)."""
        now = clock().now()
        return any(due is not None and due <= now for _, _, _, due in self.waits.values())

    def waiting(self) -> Waiting:
        """What the run waits for: every wait's name, their events, the earliest deadline."""
        waits = self.waits.values()
        names = tuple(name for name, _, _, _ in waits)
        events = tuple(sorted({event for _, _, event, _ in waits if event is not None}))
        dues = [due for _, _, _, due in waits if due is not None]
        return Waiting(names, events, min(dues) if dues else None)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
