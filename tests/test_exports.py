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
        "RunFinished", "DefinitionError", "FlowError", "WorkflowFailed",
        "Queue", "start_workflow", "Worker", "RunHandle", "register_type",
        "SQLiteStore", "PostgresStore", "Store",
        "sleep_for", "sleep_until", "wait_for_event", "send_event", "asend_event", "Waiting",
        "cancel_run", "acancel_run", "retry_run", "aretry_run", "prune_runs",
    }  # fmt: skip
    assert set() == promised - set(flowdsl.__all__)


def test_every_exception_derives_from_flow_error() -> None:
    """The exception tree has one root."""
    for name in flowdsl.errors.__all__:
        assert issubclass(getattr(flowdsl.errors, name), flowdsl.errors.FlowError), name
    assert issubclass(flowdsl.result.ErrorGroup, flowdsl.errors.FlowError)


# -- every deliberate raise is a FlowError --------------------------------------------------

# Where flowdsl may raise something that is not a FlowError, and why. Keys are
# (module, function, exception name); anything else raised on purpose must be a FlowError.
ALLOWED_RAISES: dict[tuple[str, str, str], str] = {
    # Protocols that fix the exception: a mapping's miss, immutability, final classes.
    ("flowdsl._engine._context", "__getitem__", "KeyError"): "the Mapping protocol",
    ("flowdsl.executors._builtin", "__getitem__", "KeyError"): "the Mapping protocol",
    ("flowdsl._outcome", "__setattr__", "AttributeError"): "immutable objects",
    ("flowdsl.result", "__setattr__", "AttributeError"): "immutable objects",
    ("flowdsl.result", "__delattr__", "AttributeError"): "immutable objects",
    ("flowdsl.result", "_no_subclass", "TypeError"): "a final class refuses subclassing",
    # A module's __getattr__ (lazy PostgresStore) answers a missing name as Python does.
    ("flowdsl", "__getattr__", "AttributeError"): "the module attribute protocol",
    ("flowdsl.stores", "__getattr__", "AttributeError"): "the module attribute protocol",
    # Cancellation is raised as itself, never wrapped.
    ("flowdsl._engine._execution", "overdue", "asyncio.CancelledError"): "cancellation",
    ("flowdsl._engine._execution", "interrupt", "asyncio.CancelledError"): "cancellation",
    ("flowdsl._engine._execution", "stop_here", "asyncio.CancelledError"): "cancellation",
    ("flowdsl._engine._execution", "refuse", "asyncio.CancelledError"): "cancellation",
    ("flowdsl._engine._execution", "_report", "asyncio.CancelledError"): "cancellation",
    ("flowdsl.result", "gather", "asyncio.CancelledError"): "cancellation",
    ("flowdsl.stores._journal", "wait", "asyncio.CancelledError"): "cancellation",
    # The command line ends with an exit status; the testing toolkit fails with assertions.
    ("flowdsl.cli", "main", "SystemExit"): "exit statuses",
    ("flowdsl.cli._commands", "parse_duration", "click.BadParameter"): "click's usage error",
    ("flowdsl.cli._commands", "parse_time", "click.BadParameter"): "click's usage error",
    ("flowdsl.testing._model", "check", "AssertionError"): "a failed check is a test failure",
    ("flowdsl.testing._reducer", "probe", "AssertionError"): "a failed check is a test failure",
    ("flowdsl.testing.strategies", "<module>", "ImportError"): "hypothesis is not installed",
    # A group of the errors of several runs, each raised as it was.
    ("flowdsl._running", "aresume_runs", "ExceptionGroup"): "several runs' own errors",
}
# Internal control flow: raised and caught inside flowdsl, never seen by a caller.
INTERNAL = {
    "Failed",
    "Unencodable",
    "Undecodable",
    "Unregistered",
    "Unpackable",
    "_Bad",
    "_BadDeadline",
    "_Failure",
}


def _raises() -> list[tuple[str, str, str, int, object]]:
    """Every ``raise Name(...)`` in the package: (module, function, name, line, the class)."""
    import ast
    import builtins
    import importlib
    from pathlib import Path

    root = Path(flowdsl.__file__).parent
    found: list[tuple[str, str, str, int, object]] = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        module_name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if module_name.endswith("__main__"):
            continue
        module = importlib.import_module(module_name)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        owner: dict[int, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    owner[id(inner)] = node.name  # walked outermost first: the innermost wins
        for node in ast.walk(tree):
            if not isinstance(node, ast.Raise) or node.exc is None:
                continue
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if not isinstance(target, ast.Name | ast.Attribute):
                continue
            name = ast.unparse(target)
            try:
                value = eval(name, {**vars(builtins), **vars(module)})
            except Exception:  # a local variable: re-raising what was caught
                continue
            if isinstance(value, type) and issubclass(value, BaseException):
                found.append(
                    (module_name, owner.get(id(node), "<module>"), name, node.lineno, value)
                )
    return found


def test_every_deliberate_raise_is_a_flow_error() -> None:
    """Walk the package's raise sites: each raises a FlowError, or is allowed here with a reason."""
    offenders = [
        f"{module}:{line} in {function}(): raise {name}"
        for module, function, name, line, cls in _raises()
        if not issubclass(cls, flowdsl.errors.FlowError)  # type: ignore[arg-type]
        and (module, function, name) not in ALLOWED_RAISES
        and name not in INTERNAL
    ]
    assert [] == offenders


def test_the_allowances_are_all_still_needed() -> None:
    """An allowance nothing uses any more is removed, so the list stays true."""
    used = {(module, function, name) for module, function, name, _, _ in _raises()}
    assert [] == sorted(set(ALLOWED_RAISES) - used)


def test_internal_exceptions_are_not_public() -> None:
    """The control-flow exceptions allowed above are in no public __all__."""
    public = set(flowdsl.__all__) | set(flowdsl.errors.__all__)
    assert set() == INTERNAL & public


def test_the_exception_tree_docstring_names_every_flow_error() -> None:
    """errors.py draws the tree: every public FlowError subclass is in the drawing."""
    drawing = flowdsl.errors.__doc__ or ""
    classes = {
        name
        for name in {*flowdsl.errors.__all__, *flowdsl.__all__}
        if isinstance(getattr(flowdsl.errors, name, getattr(flowdsl, name, None)), type)
        and issubclass(
            getattr(flowdsl.errors, name, getattr(flowdsl, name, None)), flowdsl.errors.FlowError
        )
    }
    assert set() == {name for name in classes if name not in drawing}


def test_import_flowdsl_leaves_postgresql_and_cron_for_later() -> None:
    """psycopg and croniter are imported when a PostgreSQL store or a schedule needs them:
    a process on SQLite (a worker restarting after a crash, say) does not pay for them."""
    import subprocess
    import sys

    script = (
        "import sys, flowdsl\n"
        "before = sorted(m for m in ('psycopg', 'psycopg_pool', 'croniter') if m in sys.modules)\n"
        "flowdsl.PostgresStore\n"
        "print(before, 'psycopg' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert "[] True" == done.stdout.strip()
