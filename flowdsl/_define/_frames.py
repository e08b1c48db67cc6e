"""The recordings open in each thread: what `@step`, `parallel()` and `sequence()` add to.

`record_workflow` pushes a frame for the body it runs; a block pushes one for
its own children. Frames are per thread, so two threads importing modules at
once do not see each other's steps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._spec import NodeSpec

__all__ = ["Frame", "current_frame", "recording", "stack"]

_LOCAL = threading.local()


class Frame:
    """One open container being recorded: a workflow body, sequence or parallel block."""

    __slots__ = ("children", "kind", "workflow")

    def __init__(self, kind: str, workflow: str) -> None:
        self.kind = kind
        self.workflow = workflow
        self.children: list[NodeSpec] = []


def stack() -> list[Frame]:
    """This thread's open frames, innermost last."""
    found: list[Frame] | None = getattr(_LOCAL, "stack", None)
    if found is None:
        found = _LOCAL.stack = []
    return found


def current_frame() -> Frame | None:
    """The innermost container being recorded in this thread, if any."""
    frames = stack()
    return frames[-1] if frames else None


@contextmanager
def recording(frame: Frame) -> Iterator[Frame]:
    """Make `frame` the container that `@step`, `parallel()` and `sequence()` add to."""
    frames = stack()
    frames.append(frame)
    try:
        yield frame
    finally:
        frames.pop()
