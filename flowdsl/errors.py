"""The flowdsl exception tree.

Every exception the library raises on purpose derives from `FlowError`, with a
builtin mixin where one makes ``except`` clauses read naturally::

    FlowError
     ├── DefinitionError (TypeError)       a workflow definition is invalid (import time)
     ├── WorkflowNotFound (LookupError)    no workflow registered under a name
     ├── RunNotFound (LookupError)         no run with that id (in the store, or in this process)
     ├── KeyNotFound (KeyError)            a branch's result or a graph node that is not there
     ├── UsageError (TypeError)            a call given the wrong kind of thing (input, option)
     ├── InvalidArgument (ValueError)      a call given a value out of range (gather(limit=0))
     ├── RunningLoopError (RuntimeError)   a sync run function called from a running event loop
     ├── ResultTimeout (TimeoutError)      RunHandle.result(timeout=) before the run ended
     ├── UnwrapError (ValueError)          Err.unwrap() / Result.unwrap() on an Err
     ├── ErrorGroup                        several failure reasons as one (flowdsl.result)
     ├── RecordedError                     a failure reason read back from a journal (flowdsl)
     ├── WorkflowFailed                    Run.unwrap() on a run that did not complete
     ├── RunError                          a run broke a rule while executing
     │    ├── GotoError                    a goto to an unknown step, or inside a branch
     │    └── TransitionLimitExceeded      more than max_transitions goto jumps (a loop)
     ├── SerializationError (TypeError)    an output that the journal cannot encode
     ├── StoreError                        a durable store problem
     │    └── IncompatibleDefinition       resuming a run with a changed workflow
     └── ExecutorError                     a step could not be run where it was sent
          ├── WorkerLost                   the worker running a step died
          └── ExecutorConfigError (ValueError)  an executor given a setting it cannot use

Messages say what is wrong and how to fix it. The message is built first and
then raised, so it can be read and tested on its own.
"""

from __future__ import annotations

__all__ = [
    "DefinitionError",
    "ExecutorConfigError",
    "ExecutorError",
    "FlowError",
    "GotoError",
    "IncompatibleDefinition",
    "InvalidArgument",
    "KeyNotFound",
    "ResultTimeout",
    "RunError",
    "RunNotFound",
    "RunningLoopError",
    "SerializationError",
    "StoreError",
    "TransitionLimitExceeded",
    "UnwrapError",
    "UsageError",
    "WorkerLost",
    "WorkflowFailed",
    "WorkflowNotFound",
]


class FlowError(Exception):
    """The root of every exception flowdsl raises on purpose."""


class DefinitionError(FlowError, TypeError):
    """A workflow definition is invalid; raised at import time by ``@workflow``."""


class WorkflowNotFound(FlowError, LookupError):
    """No workflow is registered under the requested name."""


class RunNotFound(FlowError, LookupError):
    """No run has the id asked for: not in the store, or not executing in this process."""


class KeyNotFound(FlowError, KeyError):
    """A key looked up is not there: a branch in a block's results, a node of a graph.

    A `KeyError`, so ``except KeyError`` and ``dict``-like code keep working.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class InvalidArgument(FlowError, ValueError):
    """A call was given a value out of range (``gather(limit=0)``, an empty ``ErrorGroup``)."""


class UnwrapError(FlowError, ValueError):
    """``unwrap()`` was called on an ``Err``; the error is chained when it is an exception."""


class WorkflowFailed(FlowError):
    """``Run.unwrap()`` on a run that did not complete; chained to the failure reason."""

    def __init__(self, message: str, run: object = None) -> None:
        super().__init__(message)
        self.run = run


class RunError(FlowError):
    """A run broke one of the executor's rules (a bad goto, too many transitions)."""


class GotoError(RunError):
    """A step returned a goto the workflow cannot follow."""


class TransitionLimitExceeded(RunError):
    """A run made more goto jumps than its workflow's ``max_transitions``."""


class SerializationError(FlowError, TypeError):
    """A step output cannot be encoded as JSON for the journal."""


class StoreError(FlowError):
    """A durable store could not do what was asked."""


class IncompatibleDefinition(StoreError):
    """A journaled run cannot resume because its workflow definition changed."""


class ExecutorError(FlowError):
    """A step attempt could not be run on the executor it was sent to."""


class WorkerLost(ExecutorError):
    """The worker process running a step died before reporting an outcome."""


class ExecutorConfigError(ExecutorError, ValueError):
    """An executor was created with a setting it cannot use (``ProcessExecutor(max_workers=0)``)."""


class UsageError(FlowError, TypeError):
    """A run function was called the wrong way (bad input, an unknown option)."""


class ResultTimeout(FlowError, TimeoutError):
    """``RunHandle.result(timeout=)`` ran out of time; the run itself goes on."""


class RunningLoopError(FlowError, RuntimeError):
    """A sync run function (``run_workflow``, ...) was called from a running event loop.

    The message names the ``async`` function to await instead.
    """
