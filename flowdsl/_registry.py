"""The only import-time global state: registered workflows and open recordings.

`@workflow` records its body into a frame pushed here, then registers the
compiled workflow under its name. Recording frames are per thread, so two
threads importing modules at once do not see each other's steps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .errors import DefinitionError, WorkflowNotFound

if TYPE_CHECKING:
    from ._spec import NodeSpec
    from ._workflow import Workflow

__all__ = ["Frame", "current_frame", "get_workflow", "recording", "register", "workflows"]

_WORKFLOWS: dict[str, Workflow] = {}
_LOCK = threading.Lock()
_LOCAL = threading.local()


class Frame:
    """One open container being recorded: a workflow body, sequence or parallel block."""

    __slots__ = ("children", "kind", "workflow")

    def __init__(self, kind: str, workflow: str) -> None:
        self.kind = kind
        self.workflow = workflow
        self.children: list[NodeSpec] = []


def _stack() -> list[Frame]:
    stack: list[Frame] | None = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = []
    return stack


def current_frame() -> Frame | None:
    """The innermost container being recorded in this thread, if any."""
    stack = _stack()
    return stack[-1] if stack else None


@contextmanager
def recording(frame: Frame) -> Iterator[Frame]:
    """Make `frame` the container that `@step`, `parallel()` and `sequence()` add to."""
    stack = _stack()
    stack.append(frame)
    try:
        yield frame
    finally:
        stack.pop()


def register(wf: Workflow) -> None:
    """Register `wf` under its name; the same definition imported again replaces itself."""
    with _LOCK:
        old = _WORKFLOWS.get(wf.name)
        if old is not None and old is not wf and old.identity != wf.identity:
            msg = (
                f"workflow {wf.name!r} ({wf.where}) is already registered by "
                f"{old.qualname} ({old.where}); give one of them another name: "
                f"@workflow({wf.name + '_2'!r})"
            )
            raise DefinitionError(msg)
        _WORKFLOWS[wf.name] = wf


def unregister(name: str) -> None:
    """Forget the workflow registered under `name` (used by the testing toolkit)."""
    with _LOCK:
        _WORKFLOWS.pop(name, None)


@contextmanager
def isolated() -> Iterator[dict[str, Workflow]]:
    """Run a block with a registry of its own; the previous one is restored after."""
    global _WORKFLOWS
    with _LOCK:
        saved, _WORKFLOWS = _WORKFLOWS, dict(_WORKFLOWS)
    try:
        yield _WORKFLOWS
    finally:
        with _LOCK:
            _WORKFLOWS = saved


def get_workflow(name: str) -> Workflow:
    """The workflow registered under `name`."""
    try:
        return _WORKFLOWS[name]
    except KeyError:
        known = ", ".join(repr(n) for n in sorted(_WORKFLOWS)) or "none"
        msg = (
            f"no workflow named {name!r}; registered workflows: {known}. "
            f"Import the module that defines it first."
        )
        raise WorkflowNotFound(msg) from None


def workflows() -> dict[str, Workflow]:
    """A snapshot of every registered workflow, by name."""
    return dict(_WORKFLOWS)
