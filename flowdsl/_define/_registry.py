"""The workflows registered by name: what `run_workflow("name")` and the CLI find.

`@workflow` registers each workflow it defines here; `flowdsl.testing` swaps
in a registry of its own for a block (`isolated`). Registering the same
definition again (a module imported twice) replaces it; another definition
under a taken name is a `DefinitionError`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import DefinitionError, WorkflowNotFound
from . import _queues

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["get_workflow", "isolated", "register", "unregister", "workflows"]

_WORKFLOWS: dict[str, Workflow] = {}
_LOCK = threading.Lock()


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
    """Run a block with a registry of its own (workflows and queues); restored after."""
    global _WORKFLOWS
    with _LOCK:
        saved, _WORKFLOWS = _WORKFLOWS, dict(_WORKFLOWS)
    queues = dict(_queues._QUEUES)
    try:
        yield _WORKFLOWS
    finally:
        with _LOCK:
            _WORKFLOWS = saved
        _queues._QUEUES.clear()
        _queues._QUEUES.update(queues)


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
