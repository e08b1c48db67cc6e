"""`capture_events`: the events of every run started inside a block, as a list."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from .._engine._events import Event, RunFinished, StepFinished, listening

if TYPE_CHECKING:
    from .._engine._run import Run

__all__ = ["Events", "capture_events"]

E = TypeVar("E")


class Events(list[Event]):
    """A list of run events, in the order they happened, with a few filters."""

    def of_type(self, kind: type[E]) -> list[E]:
        """The events that are instances of `kind`, e.g. ``events.of_type(StepFinished)``."""
        return [event for event in self if isinstance(event, kind)]

    def for_step(self, step: str) -> Events:
        """The events about one step (every attempt, every run)."""
        return Events(event for event in self if getattr(event, "step", None) == step)

    def for_run(self, run_id: str) -> Events:
        """The events of one run."""
        return Events(
            event
            for event in self
            if (event.run.run_id if isinstance(event, RunFinished) else event.run_id) == run_id
        )

    def steps(self, status: str | None = None) -> list[str]:
        """Step names in the order their attempts finished; only ``status`` ones if given.

        A retried step appears once per attempt. ``status`` is "succeeded" or "failed".
        """
        return [
            event.step
            for event in self
            if isinstance(event, StepFinished) and (status is None or event.status == status)
        ]

    @property
    def runs(self) -> list[Run]:
        """The finished runs, in the order they finished."""
        return [event.run for event in self if isinstance(event, RunFinished)]


@contextmanager
def capture_events() -> Iterator[Events]:
    """Collect the events of every run started inside the block (sync or async).

    Yields an `Events` list that fills up as runs progress; it keeps its
    content after the block. The events are the objects `stream_workflow`
    yields (`StepStarted`, `StepChunk`, `StepFinished`, `RunFinished`) plus
    `RunStarted` and `CompensationFinished`::

        with capture_events() as events:
            run_workflow("onboard_user", {"name": "Ada"})
        assert events.steps("failed") == []
    """
    events = Events()
    with listening(events.append):
        yield events
