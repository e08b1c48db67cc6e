"""`Queue`: a named line of queued runs, with limits that hold across every worker.

Queues are declared at module level, like workflows, and registered by name:
a worker that imports the module writes their limits into the store, and the
store enforces them for every worker and host (`Store.claim`). Declaring the
same queue again (a module imported twice) is fine; two different
declarations of one name are a `DefinitionError`.
"""

from __future__ import annotations

import sys
import threading

from .._checks import INT32_MAX, count_problem, seconds_problem
from .._plan import Where
from ..errors import DefinitionError

__all__ = ["DEFAULT_QUEUE", "Queue", "declared_queues", "get_queue"]

DEFAULT_QUEUE = "default"
"""The queue of a run started without ``queue=``."""

_QUEUES: dict[str, Queue] = {}
_LOCK = threading.Lock()


class Queue:
    """A queue of runs: ``Queue("emails", concurrency=10, rate_limit=(100, 60.0))``.

    ``concurrency`` caps how many of its runs run at once, across every
    worker; ``rate_limit=(n, period)`` lets at most ``n`` of its runs start in
    any window of ``period`` seconds. Either may be None (no limit). Pass the
    queue (or its name) to ``start_workflow(..., queue=...)``.
    """

    __slots__ = ("concurrency", "name", "rate_limit", "where")

    def __init__(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        frame = sys._getframe(1)
        self.where = Where(frame.f_code.co_filename, frame.f_lineno)
        problems = [
            p
            for p in (
                None
                if isinstance(name, str) and name
                else f"a queue name must be a non-empty string, got {name!r}",
                count_problem(concurrency, "concurrency=", optional=True, maximum=INT32_MAX),
                _rate_problem(rate_limit),
            )
            if p is not None
        ]
        if problems:
            msg = f"Queue({name!r}) ({self.where}): " + "; ".join(problems)
            raise DefinitionError(msg)
        self.name = name
        self.concurrency = concurrency
        self.rate_limit = None if rate_limit is None else (int(rate_limit[0]), float(rate_limit[1]))
        _register(self)

    @property
    def limits(self) -> tuple[int | None, tuple[int, float] | None]:
        return (self.concurrency, self.rate_limit)

    def __repr__(self) -> str:
        return (
            f"Queue({self.name!r}, concurrency={self.concurrency!r}, "
            f"rate_limit={self.rate_limit!r})"
        )


def _rate_problem(rate_limit: object) -> str | None:
    if rate_limit is None:
        return None
    if not isinstance(rate_limit, tuple) or len(rate_limit) != 2:
        return f"rate_limit= takes (count, seconds), e.g. (100, 60.0), got {rate_limit!r}"
    count, period = rate_limit
    return count_problem(count, "rate_limit's count", maximum=INT32_MAX) or seconds_problem(
        period, "rate_limit's period", optional=False
    )


def _register(queue: Queue) -> None:
    with _LOCK:
        old = _QUEUES.get(queue.name)
        if old is not None and old.limits != queue.limits:
            msg = (
                f"Queue({queue.name!r}) ({queue.where}) is declared already with other limits "
                f"({old.where}: concurrency={old.concurrency!r}, rate_limit={old.rate_limit!r}); "
                f"declare it once, or give one of them another name"
            )
            raise DefinitionError(msg)
        _QUEUES[queue.name] = queue


def declared_queues() -> dict[str, Queue]:
    """Every queue declared in this process, by name."""
    return dict(_QUEUES)


def get_queue(name: str) -> Queue | None:
    """The queue declared under `name`, or None (a queue with no limits)."""
    return _QUEUES.get(name)


def forget_queue(name: str) -> None:
    """Forget a declaration (the testing toolkit's registry isolation uses it)."""
    with _LOCK:
        _QUEUES.pop(name, None)
