"""RECORD child workflows: ``call_workflow``, placed like a step.

A call is recorded in the workflow body being defined; the compiler checks it
and resolves the child by name when the node runs (the child may be defined
after the parent, or be the parent itself), and the engine runs it as a run
of its own whose parent is the calling run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._plan import Retry, Where
from ..errors import DefinitionError
from ._frames import current_frame
from ._spec import CallSpec

if TYPE_CHECKING:
    from .._workflow import Workflow

__all__ = ["call_workflow"]


def call_workflow(
    workflow: str | Workflow,
    *,
    input: Mapping[str, Any] | Callable[[Any], Mapping[str, Any]] | None = None,
    returns: str | None = None,
    name: str | None = None,
    queue: str | None = None,
    retry: Retry | None = None,
) -> None:
    """Run another registered workflow here as a child run, and store its output.

    `input` is a mapping or ``fn(ctx)`` returning one (None: the child gets no
    input). The child's output (its final context) is stored as one value
    under `returns` (default: the node's name, itself the child workflow's
    name unless ``name=``). The child's failure is this node's failure,
    retried under `retry` as a step's would be; each attempt is a new child
    run. Under a worker the child is queued (on `queue`, else on the queue
    ``"default"``) and may run on another worker while the parent parks.
    """
    frame = sys._getframe(1)
    where = Where(frame.f_code.co_filename, frame.f_lineno)
    parent = current_frame()
    if parent is None:
        msg = f"{where}: use call_workflow() inside a @workflow body, not at module level"
        raise DefinitionError(msg)
    parent.children.append(CallSpec(workflow, input, returns, name, queue, retry, where))
