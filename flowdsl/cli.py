"""The flowdsl command line: ``flowdsl run | check | graph | runs`` (also ``python -m flowdsl``).

It runs on click and rich, dependencies of flowdsl; where they cannot be imported,
it says how to install them and exits 2. Exit codes: 0 a run completed (or a command
succeeded), 1 a run failed (or ``check`` found a definition error), 2 bad
usage, bad input, or a definition error. Errors the user can fix are one
message on stderr, never a traceback.

Progress goes to stderr (a live table on a terminal, plain lines otherwise);
what a command produces (a run's output, a graph, run records) goes to
stdout. This is the one place flowdsl configures structlog.

The commands are thin: everything they do (loading a ``TARGET``, reading
``--input``, showing progress, encoding results) is a plain function here;
click and rich are imported only when the command line runs.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from ._events import (
    CompensationFinished,
    Event,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
)
from ._registry import workflows
from ._run import Run
from ._workflow import Workflow
from .errors import DefinitionError, FlowError, StoreError, UsageError, WorkflowNotFound
from .result import Err, Ok

if TYPE_CHECKING:
    import click
    from rich.console import Console
    from rich.live import Live

__all__ = ["main"]

INSTALL_HINT = (
    "flowdsl: the command line needs click and rich (dependencies of flowdsl), "
    "which cannot be imported here; install them: pip install click rich"
)


class CliError(Exception):
    """A problem the user can fix: shown as one line on stderr, exits with `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class ImportFailed(CliError):
    """The user's module raised while being imported (not a definition error)."""


# -- loading TARGET ------------------------------------------------------------------------


def _looks_like_file(ref: str) -> bool:
    return ref.endswith(".py") or "/" in ref or os.sep in ref


def _split_target(target: str) -> tuple[str, str]:
    """``pkg.mod:NAME`` or ``path/file.py:NAME`` -> (module or file, NAME or "")."""
    ref, sep, name = target.rpartition(":")
    if not sep or _looks_like_file(name):  # no NAME (a Windows drive letter is not one)
        return target, ""
    if not ref:
        msg = (
            f"TARGET {target!r} names no module or file; write MODULE:NAME or path/to/file.py:NAME"
        )
        raise CliError(msg)
    return ref, name


def _where_raised(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" ({exc.filename}:{exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if "importlib" not in frame.filename and not frame.filename.startswith("<frozen"):
            return f" ({frame.filename}:{frame.lineno})"
    return ""


def _import_failed(ref: str, exc: Exception) -> CliError:
    return ImportFailed(
        f"importing {ref!r} failed: {type(exc).__name__}: {exc}{_where_raised(exc)}"
    )


def import_source(ref: str) -> ModuleType:
    """Import a module (``pkg.mod``) or a Python file (``path/to/file.py``).

    Raises `DefinitionError` as it is (a bad workflow definition) and
    `CliError` for everything else that goes wrong.
    """
    if not ref:
        msg = "give a module (pkg.module) or a file (path/to/file.py)"
        raise CliError(msg)
    if _looks_like_file(ref) or os.path.isfile(ref):
        return _import_file(ref)
    cwd = os.getcwd()
    if cwd not in sys.path:  # as `python -m` does: modules of the current directory
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(ref)
    except DefinitionError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name is not None and (ref == exc.name or ref.startswith(exc.name + ".")):
            msg = (
                f"no module named {ref!r} (looked in the current directory and sys.path); "
                f"to load a file, give its path: path/to/{ref.rpartition('.')[2]}.py"
            )
            raise CliError(msg) from None
        raise _import_failed(ref, exc) from None
    except Exception as exc:
        raise _import_failed(ref, exc) from None


def _import_file(ref: str) -> ModuleType:
    path = Path(ref)
    if not path.is_file():
        msg = f"no such file: {ref!r}"
        raise CliError(msg)
    path = path.resolve()
    folder = str(path.parent)
    if folder not in sys.path:  # the file's siblings import as they would for `python file.py`
        sys.path.insert(0, folder)
    name = path.stem
    loaded = sys.modules.get(name)
    if loaded is not None:
        if getattr(loaded, "__file__", None) == str(path):
            return loaded
        name = f"_flowdsl_file_{abs(hash(str(path))):x}"
    elif not name.isidentifier():
        name = f"_flowdsl_file_{abs(hash(str(path))):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        msg = f"cannot import {ref!r} as Python source"
        raise CliError(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except DefinitionError:
        del sys.modules[name]
        raise
    except Exception as exc:
        del sys.modules[name]
        raise _import_failed(ref, exc) from None
    return module


def workflows_in(module: ModuleType) -> dict[str, Workflow]:
    """The workflows a module defines (registered from its file) or holds as attributes."""
    found: dict[str, Workflow] = {}
    file = getattr(module, "__file__", None)
    if file is not None:
        real = os.path.realpath(file)
        found = {
            name: wf for name, wf in workflows().items() if os.path.realpath(wf.where.file) == real
        }
    for value in vars(module).values():
        if isinstance(value, Workflow):
            found.setdefault(value.name, value)
    return found


def load_target(target: str) -> Workflow:
    """The workflow a ``TARGET`` names: ``pkg.mod:NAME`` or ``path/file.py:NAME``.

    NAME is a module attribute holding the workflow or its registered name;
    it may be left out when the module defines exactly one workflow.
    """
    ref, name = _split_target(target)
    module = import_source(ref)
    defined = workflows_in(module)
    known = ", ".join(repr(n) for n in defined) or "none"
    if not name:
        if len(defined) == 1:
            return next(iter(defined.values()))
        if not defined:
            msg = f"{ref!r} defines no workflow"
        else:
            msg = f"{ref!r} defines several workflows ({known}); pick one: {ref}:{next(iter(defined))}"
        raise CliError(msg)
    value = getattr(module, name, None)
    if isinstance(value, Workflow):
        return value
    wf = defined.get(name) or workflows().get(name)
    if wf is None:
        msg = f"{ref!r} has no workflow {name!r}; workflows defined there: {known}"
        raise CliError(msg)
    return wf


# -- --input -----------------------------------------------------------------------------


def read_input(value: str | None) -> dict[str, Any] | None:
    """``--input``: a JSON object, ``@file.json``, or ``@-`` for standard input."""
    if value is None:
        return None
    source = "--input"
    text = value
    if value.startswith("@"):
        where = value[1:]
        if where == "-":
            source, text = "standard input", sys.stdin.read()
        else:
            source = f"input file {where!r}"
            try:
                text = Path(where).read_text(encoding="utf-8")
            except OSError as exc:
                msg = f"cannot read {source}: {exc.strerror or exc}"
                raise CliError(msg) from None
            except UnicodeDecodeError as exc:
                msg = (
                    f"cannot read {source}: it is not UTF-8 text ({exc.reason} at byte "
                    f"{exc.start}); save it as UTF-8 JSON"
                )
                raise CliError(msg) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = (
            f"{source} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); "
            f"""pass an object like --input '{{"name": "Ada"}}' or --input @input.json"""
        )
        raise CliError(msg) from None
    except RecursionError:
        msg = f"{source} is nested too deeply to read; flatten it"
        raise CliError(msg) from None
    if data is None:
        return None
    if not isinstance(data, dict):
        msg = f'{source} must be a JSON object like {{"name": "Ada"}}, got {type(data).__name__}'
        raise CliError(msg)
    return data


# -- JSON out ------------------------------------------------------------------------------


def _recorded(exc: BaseException) -> tuple[str, str, str | None] | None:
    """(type, message, traceback) of an error read back from a store, else None."""
    kind, message = getattr(exc, "type", None), getattr(exc, "message", None)
    if isinstance(kind, str) and isinstance(message, str):
        trace = getattr(exc, "traceback", None)
        return kind, message, trace if isinstance(trace, str) else None
    return None


def _exception_json(exc: BaseException) -> dict[str, object]:
    recorded = _recorded(exc)
    if recorded is not None:
        return {"type": recorded[0], "message": recorded[1]}
    kind = type(exc)
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    return {"type": name, "message": str(exc)}


def _key(key: object) -> str:
    return key if isinstance(key, str) else json.dumps(jsonable(key))


def jsonable(value: object) -> object:
    """`value` as plain JSON data: results, errors, mappings with any keys and sets included.

    ``Ok(v)`` -> ``{"ok": v}``, ``Err(e)`` -> ``{"error": e}``, an exception ->
    ``{"type", "message"}``, a mapping -> an object (keys that are not strings
    as their JSON text), a tuple or set -> a list; anything else JSON cannot
    hold -> its ``repr()``.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Ok):
        return {"ok": jsonable(value.value)}
    if isinstance(value, Err):
        return {"error": jsonable(value.error)}
    if isinstance(value, BaseException):
        return _exception_json(value)
    if isinstance(value, set | frozenset):
        return [jsonable(v) for v in sorted(value, key=repr)]
    return repr(value)


def dumps(value: object, *, indent: int | None = 2) -> str:
    return json.dumps(jsonable(value), indent=indent, ensure_ascii=False)


def run_summary(run: Run) -> dict[str, object]:
    """One line of ``runs list``."""
    return {
        "run_id": run.run_id,
        "workflow": run.workflow,
        "status": run.status,
        "failed_step": run.failed_step,
        "started": run.started,
        "duration": run.duration,
    }


def run_record(run: Run) -> dict[str, object]:
    """A `Run` as plain data, for ``--output run`` and ``runs show``."""
    return {
        **run_summary(run),
        "output": run.output,
        "error": run.error,
        "steps": [record._asdict() for record in run.steps],
        "compensations": [record._asdict() for record in run.compensations],
    }


# -- structlog -----------------------------------------------------------------------------


class _StderrLogger:
    """A structlog logger that writes each line to the current ``sys.stderr``.

    Looking stderr up at each call lets rich's live display, which redirects
    it while it runs, print log lines above the table.
    """

    def __init__(self, name: str | None = None) -> None:
        self.name = name

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = err = critical = exception = fatal = msg


def _drop_lifecycle(
    logger: object, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Drop flowdsl's own run events: the progress display shows them already."""
    if getattr(logger, "name", None) == "flowdsl":
        import structlog

        raise structlog.DropEvent
    return event_dict


def configure_logging(log_format: str, terminal: bool) -> None:
    """Configure structlog for this process (the library itself never does).

    ``json``: every event, flowdsl's run lifecycle included, as one JSON object
    per line on stderr. ``console``: human-readable lines (coloured on a
    terminal) for the events the workflow's own code logs at INFO and above;
    flowdsl's lifecycle is shown by the progress display instead.
    """
    import logging

    import structlog

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if log_format == "json":
        processors = [
            *shared,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(default=repr),
        ]
        level = logging.DEBUG
    else:
        processors = [_drop_lifecycle, *shared, structlog.dev.ConsoleRenderer(colors=terminal)]
        level = logging.INFO
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=False,
    )


# -- progress ------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.2f} s"


def _short(value: object, limit: int = 120) -> str:
    try:
        text = dumps(value, indent=None)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(error: object) -> str:
    if isinstance(error, BaseException):
        recorded = _recorded(error)
        if recorded is not None:
            return f"{recorded[0]}: {recorded[1]}"
        return f"{type(error).__name__}: {error}"
    return _short(error)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class Progress:
    """Shows a run's events on stderr: a live table on a terminal, plain lines otherwise.

    It is a listener (called with each event, synchronously, by the executor)
    and, for the live table, a context manager around the run.
    """

    def __init__(self, workflow: str, console: Console | None) -> None:
        self.workflow = workflow
        self.console = console
        self.live: Live | None = None
        self.rows: dict[str, tuple[str, str, str, str, str]] = {}  # mark (markup), then text
        self.run_id = ""

    def __enter__(self) -> Progress:
        if self.console is not None:
            from rich.live import Live

            self.live = Live(self.table(), console=self.console, refresh_per_second=12)
            self.live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.update(self.table(), refresh=True)
            self.live.stop()
            self.live = None

    def table(self) -> Any:
        from rich.table import Table

        title = _esc(self.workflow) + (f"  [dim]{_esc(self.run_id)}[/dim]" if self.run_id else "")
        table = Table(title=title, title_justify="left", box=None, pad_edge=False)
        for column in ("", "step", "attempt", "time", ""):
            table.add_column(column, no_wrap=column != "")
        for mark, name, attempt, took, note in self.rows.values():
            table.add_row(mark, _esc(name), attempt, took, _esc(note))
        return table

    def show(self, key: str, mark: str, name: str, attempt: str, took: str, note: str) -> None:
        """Set a row of the live table (`mark` is markup; the rest is plain text)."""
        self.rows[key] = (mark, name, attempt, took, note)
        if self.live is not None:
            self.live.update(self.table())

    @staticmethod
    def line(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # events --------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepStarted):
            self.started(event)
        elif isinstance(event, StepFinished):
            self.finished(event)
        elif isinstance(event, StepChunk):
            self.chunk(event)
        elif isinstance(event, CompensationFinished):
            self.compensated(event)
        elif isinstance(event, RunStarted):
            self.run_id = event.run_id
            if self.live is None:
                what = "resumed" if event.resumed else "started"
                self.line(f"run {event.run_id} {what}: workflow {event.workflow}")
            else:
                self.live.update(self.table())

    def started(self, event: StepStarted) -> None:
        if self.live is None:
            self.line(f"step {event.step}: started (attempt {event.attempt})")
        else:
            self.show(event.step, "[yellow]…[/yellow]", event.step, str(event.attempt), "", "")

    def finished(self, event: StepFinished) -> None:
        took = _ms(event.duration)
        attempt = event.attempt
        if event.status == "succeeded":
            if self.live is None:
                self.line(f"step {event.step}: succeeded in {took} (attempt {attempt})")
            else:
                note = self.rows.get(event.step, ("", "", "", "", ""))[4]  # the last chunk
                self.show(event.step, "[green]✓[/green]", event.step, str(attempt), took, note)
            return
        why = _reason(event.error)
        retry = "" if event.retry_in is None else f"; retrying in {_ms(event.retry_in)}"
        if self.live is None:
            self.line(f"step {event.step}: failed in {took} (attempt {attempt}): {why}{retry}")
        else:
            mark = "[yellow]↻[/yellow]" if retry else "[red]✗[/red]"
            self.show(event.step, mark, event.step, str(attempt), took, why + retry)

    def chunk(self, event: StepChunk) -> None:
        text = _short(event.data)
        if self.live is None:
            self.line(f"step {event.step}: chunk {text}")
        else:
            mark, _, attempt, took, _ = self.rows.get(event.step, ("", "", "", "", ""))
            self.show(event.step, mark, event.step, attempt, took, text)

    def compensated(self, event: CompensationFinished) -> None:
        took = _ms(event.duration)
        why = "" if event.error is None else _reason(event.error)
        if self.live is None:
            self.line(f"undo {event.step}: {event.status} in {took}" + (f": {why}" if why else ""))
        else:
            mark = "[green]↶[/green]" if event.status == "succeeded" else "[red]✗[/red]"
            self.show("undo:" + event.step, mark, f"undo {event.step}", "", took, why)


def report(run: Run) -> None:
    """The last lines on stderr: how the run ended and, when it failed, why."""
    print(f"run {run.run_id} {run.status} in {_ms(run.duration)}", file=sys.stderr)
    if run.status != "failed":
        return
    where = f" at step {run.failed_step!r}" if run.failed_step else ""
    print(f"failed{where}: {_reason(run.error)}", file=sys.stderr)
    error = run.error
    if isinstance(error, BaseException):
        recorded = _recorded(error)
        if recorded is not None:
            text = recorded[2] or ""
        elif error.__traceback__ is not None:
            text = "".join(traceback.format_exception(error))
        else:
            text = ""
        if text:
            print(text.rstrip(), file=sys.stderr)
    sys.stderr.flush()


# -- running -------------------------------------------------------------------------------


def open_store(path: str) -> Any:
    """The durable store at `path`: a SQLite file, or a ``sqlite:///path`` URL."""
    import sqlite3

    from ._sqlite import SQLiteStore

    file = path.removeprefix("sqlite:///")
    try:
        return SQLiteStore(file)
    except FlowError as exc:
        raise CliError(str(exc)) from None
    except (OSError, sqlite3.Error) as exc:  # e.g. a file that is not a SQLite database
        msg = f"cannot open the store {path!r}: {exc}"
        raise CliError(msg) from None


@contextmanager
def opened_store(path: str | None) -> Iterator[Any]:
    """`open_store(path)` for the block, closed after it; None when `path` is None."""
    store = None if path is None else open_store(path)
    try:
        yield store
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


@contextmanager
def steps_print_to_stderr() -> Iterator[None]:
    """Send what steps print to stderr: ``sys.stdout`` and file descriptor 1 alike.

    Worker processes (``executor="process"``) inherit descriptor 1, not ``sys.stdout``,
    so both are pointed at stderr until the run is over.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no descriptor 1 to save (stdout closed): only sys.stdout can move
        with redirect_stdout(sys.stderr):
            yield
        return
    try:
        os.dup2(2, 1)
        with redirect_stdout(sys.stderr):
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def execute_run(
    workflow: Workflow | str,
    data: Mapping[str, Any] | None,
    *,
    run_id: str | None,
    store: object,
    progress: Progress | None,
) -> Run:
    """Run a workflow to the end with `progress` listening; usage problems become `CliError`."""
    from ._runner import arun_workflow

    listeners = () if progress is None else (progress,)
    options: dict[str, Any] = {"run_id": run_id, "listeners": listeners}
    if store is not None:
        options["store"] = store
    try:
        # stdout is for the result only: what steps print goes to stderr with the progress
        with steps_print_to_stderr():
            if progress is None:
                return asyncio.run(arun_workflow(workflow, data, **options))
            with progress:
                return asyncio.run(arun_workflow(workflow, data, **options))
    except (UsageError, WorkflowNotFound, StoreError, DefinitionError) as exc:
        raise CliError(str(exc)) from None


def finish_run(run: Run, output: str, log_format: str, quiet: bool) -> int:
    """Print the run's result on stdout and how it ended on stderr; returns the exit code.

    With ``--log-format json`` stderr stays JSON only (``workflow.finished`` says
    how it ended); with ``--quiet`` only a failure is reported.
    """
    if log_format != "json" and not (quiet and run.status == "completed"):
        report(run)
    if output == "run":
        print(dumps(run_record(run)))
    elif run.status == "completed":
        print(dumps(run.output))
    sys.stdout.flush()
    return 0 if run.status == "completed" else 1


def _progress(workflow: str, log_format: str, quiet: bool) -> Progress | None:
    if quiet or log_format == "json":  # JSON logs carry the progress, one event per line
        return None
    from rich.console import Console

    console = Console(stderr=True)
    live = sys.stderr.isatty() and not console.is_dumb_terminal
    return Progress(workflow, console if live else None)


# -- commands --------------------------------------------------------------------------------


def cmd_run(
    target: str,
    input: str | None,
    store_path: str | None,
    run_id: str | None,
    log_format: str,
    output: str,
    quiet: bool,
) -> int:
    configure_logging(log_format, sys.stderr.isatty())
    data = read_input(input)
    try:
        wf = load_target(target)
    except DefinitionError as exc:
        raise CliError(f"definition error: {exc}") from None
    with opened_store(store_path) as store:
        run = execute_run(
            wf, data, run_id=run_id, store=store, progress=_progress(wf.name, log_format, quiet)
        )
    return finish_run(run, output, log_format, quiet)


def cmd_check(sources: Sequence[str]) -> int:
    configure_logging("console", sys.stderr.isatty())  # what modules log on import: stderr
    failed = missing = 0
    for ref in sources:
        try:
            module = import_source(ref)
        except DefinitionError as exc:
            print(f"{ref}: definition error: {exc}", file=sys.stderr)
            failed += 1
            continue
        except ImportFailed as exc:
            print(f"{ref}: {exc.message}", file=sys.stderr)
            failed += 1
            continue
        except CliError as exc:
            print(f"{ref}: {exc.message}", file=sys.stderr)
            missing += 1
            continue
        found = workflows_in(module)
        count = f"{len(found)} workflow" + ("" if len(found) == 1 else "s")
        print(f"{ref}: ok, {count}")
        for wf in found.values():
            steps = len(wf.plan.steps)
            print(f"  {wf.name}  {steps} step{'' if steps == 1 else 's'}  {wf.where}")
    return 2 if missing else 1 if failed else 0


def cmd_graph(target: str, fmt: str) -> int:
    from ._graph import Graph

    configure_logging("console", sys.stderr.isatty())  # stdout is for the graph only
    try:
        wf = load_target(target)
    except DefinitionError as exc:
        raise CliError(f"definition error: {exc}") from None
    graph = Graph.from_plan(wf.plan)
    render: Callable[[], str] = {
        "mermaid": graph.to_mermaid,
        "dot": graph.to_dot,
        "json": graph.to_json,
    }[fmt]
    text = render()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _get_run(store: Any, run_id: str, store_path: str) -> Run:
    try:
        run: Run | None = store.get_run(run_id)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    if run is None:
        msg = f"no run {run_id!r} in {store_path!r}; list them with: flowdsl runs list --store {store_path}"
        raise CliError(msg)
    return run


def cmd_runs_list(store_path: str, status: str | None, fmt: str) -> int:
    with opened_store(store_path) as store:
        try:
            runs: Iterable[Run] = store.list_runs(status=status)
        except StoreError as exc:
            raise CliError(str(exc)) from None
    if fmt == "json":
        print(dumps([run_summary(run) for run in runs]))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("run_id", "workflow", "status", "started", "duration", "failed_step")
    for run in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started))
        table.add_row(
            run.run_id, run.workflow, run.status, started, _ms(run.duration), run.failed_step or ""
        )
    Console().print(table)
    return 0


def cmd_runs_show(store_path: str, run_id: str) -> int:
    with opened_store(store_path) as store:
        run = _get_run(store, run_id, store_path)
    print(dumps(run_record(run)))
    return 0


def cmd_runs_resume(
    store_path: str, run_id: str, modules: Sequence[str], log_format: str, output: str, quiet: bool
) -> int:
    configure_logging(log_format, sys.stderr.isatty())
    for ref in modules:
        try:
            import_source(ref)
        except DefinitionError as exc:
            raise CliError(f"definition error: {exc}") from None
    with opened_store(store_path) as store:
        recorded = _get_run(store, run_id, store_path)
        if recorded.workflow not in workflows():
            msg = (
                f"run {run_id!r} is a run of workflow {recorded.workflow!r}, which is not "
                f"registered; import the module that defines it: --module pkg.module or "
                f"--module path/to/file.py"
            )
            raise CliError(msg)
        run = execute_run(
            recorded.workflow,
            None,
            run_id=run_id,
            store=store,
            progress=_progress(recorded.workflow, log_format, quiet),
        )
    return finish_run(run, output, log_format, quiet)


# -- click -----------------------------------------------------------------------------------


def _build() -> click.Group:
    import click

    from . import __version__

    log_format = click.option(
        "--log-format",
        type=click.Choice(["console", "json"]),
        default="console",
        show_default=True,
        help="console: progress display and readable logs; json: one JSON log event per line.",
    )
    output = click.option(
        "--output",
        type=click.Choice(["output", "run"]),
        default="output",
        show_default=True,
        help="What to print on stdout: the run's output (when it completed), or the whole run record.",
    )
    quiet = click.option("-q", "--quiet", is_flag=True, help="No progress display.")
    store_required = click.option(
        "--store", "store_path", required=True, metavar="PATH", help="The SQLite store file."
    )

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, prog_name="flowdsl")
    def cli() -> None:
        """Run, check and draw flowdsl workflows.

        TARGET is pkg.module:NAME or path/to/file.py:NAME, NAME being the
        workflow's registered name or the module attribute that holds it.
        """

    @cli.command()
    @click.argument("target")
    @click.option(
        "--input",
        "input_",
        metavar="JSON|@FILE",
        help="The input: a JSON object, @file.json, or @- for standard input.",
    )
    @click.option(
        "--store", "store_path", metavar="PATH", help="Make the run durable in this SQLite store."
    )
    @click.option(
        "--run-id", metavar="ID", help="Name the run (with --store: resume or return it)."
    )
    @log_format
    @output
    @quiet
    def run(
        target: str,
        input_: str | None,
        store_path: str | None,
        run_id: str | None,
        log_format: str,
        output: str,
        quiet: bool,
    ) -> int:
        """Run a workflow: progress on stderr, its output as JSON on stdout.

        Exit status: 0 completed, 1 failed, 2 bad usage or a definition error.
        """
        return cmd_run(target, input_, store_path, run_id, log_format, output, quiet)

    @cli.command()
    @click.argument("sources", nargs=-1, required=True, metavar="MODULE_OR_FILE...")
    def check(sources: tuple[str, ...]) -> int:
        """Import and compile modules; list their workflows.

        Every module is checked. Exit status: 0 all valid; 1 a definition error (or a module
        that raises while imported); 2 a module or file that does not exist (this wins).
        """
        return cmd_check(sources)

    @cli.command()
    @click.argument("target")
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["mermaid", "dot", "json"]),
        default="mermaid",
        show_default=True,
    )
    def graph(target: str, fmt: str) -> int:
        """Print a workflow's graph without running it (pipe dot into `dot -Tsvg`)."""
        return cmd_graph(target, fmt)

    @cli.group()
    def runs() -> None:
        """Durable runs kept in a store: list, show, resume."""

    @runs.command("list")
    @store_required
    @click.option(
        "--status", type=click.Choice(["running", "completed", "failed", "cancelled"]), default=None
    )
    @click.option(
        "--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True
    )
    def runs_list(store_path: str, status: str | None, fmt: str) -> int:
        """List the runs in a store, oldest first."""
        return cmd_runs_list(store_path, status, fmt)

    @runs.command("show")
    @click.argument("run_id", metavar="ID")
    @store_required
    def runs_show(run_id: str, store_path: str) -> int:
        """Print one run's record as JSON."""
        return cmd_runs_show(store_path, run_id)

    @runs.command("resume")
    @click.argument("run_id", metavar="ID")
    @store_required
    @click.option(
        "--module",
        "modules",
        multiple=True,
        metavar="MODULE_OR_FILE",
        help="Import this first: the module that defines the run's workflow (repeatable).",
    )
    @log_format
    @output
    @quiet
    def runs_resume(
        run_id: str,
        store_path: str,
        modules: tuple[str, ...],
        log_format: str,
        output: str,
        quiet: bool,
    ) -> int:
        """Resume an unfinished run (a completed one is printed, not run again)."""
        return cmd_runs_resume(store_path, run_id, modules, log_format, output, quiet)

    return cli


def main(argv: Sequence[str] | None = None, prog_name: str = "flowdsl") -> NoReturn:
    """The ``flowdsl`` console script."""
    try:
        import click
        import rich  # noqa: F401 - checked here, used by the progress display
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        raise SystemExit(2) from None
    cli = _build()
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name=prog_name,
            standalone_mode=False,
        )
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except click.exceptions.Abort:
        print("Aborted!", file=sys.stderr)
        raise SystemExit(130) from None
    except CliError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        raise SystemExit(exc.code) from None
    except FlowError as exc:  # a library error the commands did not expect: still no traceback
        print(f"Error: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code if isinstance(code, int) else 0)
