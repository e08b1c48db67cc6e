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

from ._context import Context
from ._dsl import parallel, sequence, step, workflow
from ._events import (
    CompensationFinished,
    Event,
    RunFinished,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
)
from ._outcome import Goto, error, goto, ok, parallel_ok, parallel_result, parallel_results
from ._plan import Plan
from ._registry import get_workflow, workflows
from ._run import CompensationRecord, Run, StepRecord
from ._runner import arun_many, arun_workflow, run_many, run_workflow, stream_workflow
from ._spec import END, Retry
from ._workflow import Workflow
from .errors import (
    DefinitionError,
    FlowError,
    UnwrapError,
    UsageError,
    WorkflowFailed,
    WorkflowNotFound,
)
from .result import Err, ErrorGroup, Ok, Result

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
    "Ok",
    "Plan",
    "Result",
    "Retry",
    "Run",
    "RunFinished",
    "RunStarted",
    "StepChunk",
    "StepFinished",
    "StepRecord",
    "StepStarted",
    "UnwrapError",
    "UsageError",
    "Workflow",
    "WorkflowFailed",
    "WorkflowNotFound",
    "arun_many",
    "arun_workflow",
    "error",
    "get_workflow",
    "goto",
    "ok",
    "parallel",
    "parallel_ok",
    "parallel_result",
    "parallel_results",
    "run_many",
    "run_workflow",
    "sequence",
    "step",
    "stream_workflow",
    "workflow",
    "workflows",
]
