"""The public API is pinned: adding or removing a name is a deliberate change."""

from __future__ import annotations

import flowdsl
import flowdsl.errors
import flowdsl.result


def test_all_names_exist_once() -> None:
    """__all__ lists real attributes, each once (ruff's RUF022 keeps it sorted)."""
    assert len(set(flowdsl.__all__)) == len(flowdsl.__all__)
    for name in flowdsl.__all__:
        assert hasattr(flowdsl, name), name


def test_core_names_of_the_design_are_exported() -> None:
    """Every name the documentation promises is importable from flowdsl."""
    promised = {
        "workflow", "step", "parallel", "sequence", "ok", "error", "goto", "END", "Retry",
        "run_workflow", "arun_workflow", "run_many", "arun_many", "stream_workflow",
        "parallel_ok", "parallel_result", "parallel_results", "get_workflow", "workflows",
        "Ok", "Err", "ErrorGroup", "Run", "StepStarted", "StepChunk", "StepFinished",
        "RunFinished", "DefinitionError", "FlowError", "WorkflowFailed", "register_type",
    }  # fmt: skip
    assert set() == promised - set(flowdsl.__all__)


def test_every_exception_derives_from_flow_error() -> None:
    """The exception tree has one root."""
    for name in flowdsl.errors.__all__:
        assert issubclass(getattr(flowdsl.errors, name), flowdsl.errors.FlowError), name
    assert issubclass(flowdsl.result.ErrorGroup, flowdsl.errors.FlowError)
