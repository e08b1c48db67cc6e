"""flowdsl: workflows as decorated Python functions.

Record a workflow with ``@workflow``, ``@step``, ``parallel()`` and
``sequence()``; it is compiled at import time and run by an asyncio executor
with ``ok`` / ``error`` / ``goto`` routing::

    @workflow
    def greet():
        @step
        async def hello(ctx):
            return ok({"greeting": f"hello {ctx['name']}"})

    run_workflow("greet", {"name": "Ada"}).output["greeting"]
"""

from typing import TYPE_CHECKING

from ._define._calls import call_workflow
from ._define._dsl import foreach, parallel, sequence, step
from ._define._queues import Queue
from ._define._registry import get_workflow, workflows
from ._define._waits import sleep_for, sleep_until, wait_for_event
from ._engine._context import Context
from ._engine._events import (
    CompensationFinished,
    Event,
    RunFinished,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
)
from ._engine._logging import LogContextFilter
from ._engine._run import CompensationRecord, Run, StepRecord, Waiting
from ._managing import acancel_run, aprune_runs, aretry_run, cancel_run, prune_runs, retry_run
from ._outcome import Goto, error, goto, ok, parallel_ok, parallel_result, parallel_results
from ._plan import END, Plan, Retry
from ._running import (
    RunHandle,
    aresume_runs,
    arun_many,
    arun_workflow,
    astart_workflow,
    resume_runs,
    run_many,
    run_workflow,
    start_workflow,
    stream_workflow,
)
from ._sending import asend_event, send_event
from ._worker import Worker
from ._workflow import Workflow, workflow
from .errors import (
    DefinitionError,
    FlowError,
    UnwrapError,
    UsageError,
    WorkflowFailed,
    WorkflowNotFound,
)
from .result import Err, ErrorGroup, Ok, Result
from .stores import SQLiteStore, Store
from .stores._codec import RecordedError, register_type
from .views import Graph, GraphBlock, GraphEdge, GraphNode, to_dot, to_json, to_mermaid

if TYPE_CHECKING:
    from .stores import PostgresStore

__version__ = "0.1.0.dev0"

__all__ = [
    "END",
    "CompensationFinished",
    "CompensationRecord",
    "Context",
    "DefinitionError",
    "Err",
    "ErrorGroup",
    "Event",
    "FlowError",
    "Goto",
    "Graph",
    "GraphBlock",
    "GraphEdge",
    "GraphNode",
    "LogContextFilter",
    "Ok",
    "Plan",
    "PostgresStore",
    "Queue",
    "RecordedError",
    "Result",
    "Retry",
    "Run",
    "RunFinished",
    "RunHandle",
    "RunStarted",
    "SQLiteStore",
    "StepChunk",
    "StepFinished",
    "StepRecord",
    "StepStarted",
    "Store",
    "UnwrapError",
    "UsageError",
    "Waiting",
    "Worker",
    "Workflow",
    "WorkflowFailed",
    "WorkflowNotFound",
    "acancel_run",
    "aprune_runs",
    "aresume_runs",
    "aretry_run",
    "arun_many",
    "arun_workflow",
    "asend_event",
    "astart_workflow",
    "call_workflow",
    "cancel_run",
    "error",
    "foreach",
    "get_workflow",
    "goto",
    "ok",
    "parallel",
    "parallel_ok",
    "parallel_result",
    "parallel_results",
    "prune_runs",
    "register_type",
    "resume_runs",
    "retry_run",
    "run_many",
    "run_workflow",
    "send_event",
    "sequence",
    "sleep_for",
    "sleep_until",
    "start_workflow",
    "step",
    "stream_workflow",
    "to_dot",
    "to_json",
    "to_mermaid",
    "wait_for_event",
    "workflow",
    "workflows",
]


def __getattr__(name: str) -> object:
    # PostgresStore (and with it psycopg, half of `import flowdsl`) is imported when first
    # asked for: a process on SQLite never pays for it.
    if name == "PostgresStore":
        from .stores._postgres import PostgresStore

        return PostgresStore
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
