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
import re
import shlex
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from ._define._registry import workflows
from ._engine._events import (
    CompensationFinished,
    Event,
    RunFinished,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
)
from ._engine._run import Run
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


def _import_exited(ref: str, exc: SystemExit) -> CliError:
    call = "sys.exit()" if exc.code is None else f"sys.exit({exc.code!r})"
    return ImportFailed(
        f"importing {ref!r} failed: it called {call} at import{_where_raised(exc)}; a module "
        f"flowdsl loads must not exit when imported: put that code under "
        f"'if __name__ == \"__main__\":'"
    )


def _is_directory(ref: str) -> bool:
    """Whether `ref` names a directory rather than a module (a package imports as one)."""
    if not os.path.isdir(ref):
        return False
    return _looks_like_file(ref) or not os.path.isfile(os.path.join(ref, "__init__.py"))


def import_source(ref: str) -> ModuleType:
    """Import a module (``pkg.mod``) or a Python file (``path/to/file.py``).

    What the module prints while it is imported goes to stderr (stdout is for
    what the command produces). Raises `DefinitionError` as it is (a bad
    workflow definition) and `CliError` for everything else that goes wrong.
    """
    if not ref:
        msg = "give a module (pkg.module) or a file (path/to/file.py)"
        raise CliError(msg)
    if _is_directory(ref):
        msg = (
            f"{ref!r} is a directory, not a module or a Python file; name a Python file "
            f"in it: {ref.rstrip('/' + os.sep) or ref}/FILE.py"
        )
        raise CliError(msg)
    with stdout_to_stderr():
        if _looks_like_file(ref) or os.path.isfile(ref):
            return _import_file(ref)
        return _import_module(ref)


def _import_module(ref: str) -> ModuleType:
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
    except SystemExit as exc:
        raise _import_exited(ref, exc) from None
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
    except SystemExit as exc:
        del sys.modules[name]
        raise _import_exited(ref, exc) from None
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


# Deeper values are shown as a placeholder: printing never runs out of stack.
MAX_DEPTH = 100
_SURROGATE = re.compile("[\ud800-\udfff]")


def _key(key: object, depth: int) -> str:
    return key if isinstance(key, str) else json.dumps(jsonable(key, _depth=depth))


def _repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a broken __repr__ (or one that recursed too deep) must not stop printing
        return f"<{type(value).__name__} object: repr() failed>"


def jsonable(value: object, *, _depth: int = 0) -> object:
    """`value` as plain JSON data: results, errors, mappings with any keys and sets included.

    ``Ok(v)`` -> ``{"ok": v}``, ``Err(e)`` -> ``{"error": e}``, an exception ->
    ``{"type", "message"}``, a mapping -> an object (keys that are not strings
    as their JSON text), a tuple or set -> a list; anything else JSON cannot
    hold -> its ``repr()``. A container nested deeper than `MAX_DEPTH` levels
    (or one that contains itself) is cut there, shown as a placeholder string.
    """
    if value is None or isinstance(value, str | float | bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() < 10_000 else f"<int of {value.bit_length()} bits>"
    if _depth >= MAX_DEPTH:
        kind = "list" if isinstance(value, list) else "dict" if isinstance(value, dict) else ""
        kind = kind or type(value).__name__  # a context's frozen dict or list reads as one
        return f"<{kind} nested deeper than {MAX_DEPTH} levels: not shown>"
    inner = _depth + 1
    if isinstance(value, Mapping):
        return {_key(k, inner): jsonable(v, _depth=inner) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, _depth=inner) for v in value]
    if isinstance(value, Ok):
        return {"ok": jsonable(value.value, _depth=inner)}
    if isinstance(value, Err):
        return {"error": jsonable(value.error, _depth=inner)}
    if isinstance(value, BaseException):
        return _exception_json(value)
    if isinstance(value, set | frozenset):
        return [jsonable(v, _depth=inner) for v in sorted(value, key=_repr)]
    return _repr(value)


def dumps(value: object, *, indent: int | None = 2, ascii: bool = False) -> str:
    """`value` as JSON text (`jsonable`); lone surrogates are written as ``\\uXXXX`` escapes.

    Python strings can hold lone surrogates (from ``surrogateescape`` decoding,
    say), which no UTF-8 stream can carry: as escapes the text stays valid JSON
    that reads back to the same string.
    """
    text = json.dumps(jsonable(value), indent=indent, ensure_ascii=ascii)
    return _SURROGATE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def print_json(value: object) -> None:
    """Print `value` as JSON on stdout; all non-ASCII escaped if stdout cannot encode it."""
    text = dumps(value) + "\n"
    try:
        sys.stdout.write(text)
    except UnicodeEncodeError:  # e.g. PYTHONIOENCODING=ascii: nothing was written yet
        sys.stdout.write(dumps(value, ascii=True) + "\n")
    sys.stdout.flush()


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


_Row: TypeAlias = tuple[str, str, str, str, str]  # mark (markup), step, attempt, time, note


class Progress:
    """Shows a run's events on stderr: a live table on a terminal, plain lines otherwise.

    It is a listener (called with each event, synchronously, by the executor)
    and, for the live table, a context manager around the run. An event only
    updates a few fields; rich's refresh thread draws the table at its own
    rate, and the table is bounded whatever the number of steps: the steps
    running now (at most `RUNNING` rows), the last `RECENT` that finished,
    the latest `FAILED` failures, and a line of counts.
    """

    RUNNING = 10
    RECENT = 8
    FAILED = 5
    auto_refresh = True  # False: drawn only when the display stops (tests)

    def __init__(self, workflow: str, console: Console | None) -> None:
        self.workflow = workflow
        self.console = console
        self.live: Live | None = None
        self.run_id = ""
        self.lock = threading.Lock()  # the events' thread writes; rich's refresh thread reads
        self.running: dict[str, _Row] = {}  # started, or waiting to retry, in start order
        self.recent: deque[_Row] = deque(maxlen=self.RECENT)
        self.failed: deque[_Row] = deque(maxlen=self.FAILED)  # steps that failed for good
        self.counts = dict.fromkeys(
            ("succeeded", "failed", "retried", "cancelled", "undone", "undo failed"), 0
        )

    def __enter__(self) -> Progress:
        if self.console is not None:
            from rich.live import Live

            self.live = Live(
                console=self.console,
                get_renderable=self.table,
                auto_refresh=self.auto_refresh,
                refresh_per_second=10,
            )
            self.live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.stop()  # draws the table once more, as the run ended
            self.live = None

    def table(self) -> Any:
        """The table as it stands: bounded rows (see the class docstring) and the counts."""
        from rich.table import Table

        with self.lock:
            recent = list(self.recent)
            pinned = [row for row in self.failed if row not in recent]  # scrolled out of recent
            running = list(self.running.values())
            counts = dict(self.counts)
        title = _esc(self.workflow) + (f"  [dim]{_esc(self.run_id)}[/dim]" if self.run_id else "")
        summary = [f"{n} {what}" for what, n in counts.items() if n]
        if running:
            summary.append(f"{len(running)} running")
        table = Table(
            title=title,
            title_justify="left",
            caption=", ".join(summary) or "starting",
            caption_justify="left",
            box=None,
            pad_edge=False,
        )
        for column in ("", "step", "attempt", "time", ""):
            table.add_column(column, no_wrap=column != "")
        for mark, name, attempt, took, note in [*pinned, *recent, *running[: self.RUNNING]]:
            table.add_row(mark, _esc(name), attempt, took, _esc(note))
        if len(running) > self.RUNNING:
            table.add_row("", f"[dim]… {len(running) - self.RUNNING} more running[/dim]")
        return table

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
            if self.console is None:
                what = "resumed" if event.resumed else "started"
                self.line(f"run {event.run_id} {what}: workflow {event.workflow}")
        elif isinstance(event, RunFinished):
            self.ended()

    def started(self, event: StepStarted) -> None:
        if self.console is None:
            self.line(f"step {event.step}: started (attempt {event.attempt})")
            return
        with self.lock:
            self.running.pop(event.step, None)  # a retry moves to the end, as it starts again
            self.running[event.step] = (
                "[yellow]…[/yellow]",
                event.step,
                str(event.attempt),
                "",
                "",
            )

    def finished(self, event: StepFinished) -> None:
        took = _ms(event.duration)
        attempt = event.attempt
        if event.status == "succeeded":
            if self.console is None:
                self.line(f"step {event.step}: succeeded in {took} (attempt {attempt})")
                return
            with self.lock:
                row = self.running.pop(event.step, None)
                note = "" if row is None else row[4]  # the last chunk
                self.recent.append(("[green]✓[/green]", event.step, str(attempt), took, note))
                self.counts["succeeded"] += 1
            return
        why = _reason(event.error)
        retry = "" if event.retry_in is None else f"; retrying in {_ms(event.retry_in)}"
        if self.console is None:
            self.line(f"step {event.step}: failed in {took} (attempt {attempt}): {why}{retry}")
            return
        with self.lock:
            if retry:
                self.running[event.step] = (
                    "[yellow]↻[/yellow]",
                    event.step,
                    str(attempt),
                    took,
                    why + retry,
                )
                self.counts["retried"] += 1
                return
            self.running.pop(event.step, None)
            row = ("[red]✗[/red]", event.step, str(attempt), took, why)
            self.recent.append(row)
            self.failed.append(row)
            self.counts["failed"] += 1

    def chunk(self, event: StepChunk) -> None:
        text = _short(event.data)
        if self.console is None:
            self.line(f"step {event.step}: chunk {text}")
            return
        with self.lock:
            row = self.running.get(event.step)
            if row is not None:
                self.running[event.step] = (*row[:4], text)

    def ended(self) -> None:
        """The run is over: steps still shown as running were cancelled (Ctrl-C, fail_fast)."""
        if self.console is None:
            return
        with self.lock:
            for _, name, attempt, took, _ in self.running.values():
                self.recent.append(("[dim]⊘[/dim]", name, attempt, took, "cancelled"))
            self.counts["cancelled"] = len(self.running)
            self.running.clear()

    def compensated(self, event: CompensationFinished) -> None:
        took = _ms(event.duration)
        why = "" if event.error is None else _reason(event.error)
        if self.console is None:
            self.line(f"undo {event.step}: {event.status} in {took}" + (f": {why}" if why else ""))
            return
        done = event.status == "succeeded"
        mark = "[green]↶[/green]" if done else "[red]✗[/red]"
        with self.lock:
            self.recent.append((mark, f"undo {event.step}", "", took, why))
            self.counts["undone" if done else "undo failed"] += 1


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


def open_store(url: str, *, must_exist: bool = False) -> Any:
    """The durable store `url` names (a store URL or a file path), as the API reads it.

    ``must_exist=True`` for the commands that read runs: a store file that is
    not there is an error, never a new empty store.
    """
    from .stores import open_store as open_named_store

    try:
        return open_named_store(url, must_exist=must_exist)[0]
    except FlowError as exc:  # the store says what is wrong: missing, damaged, not a store
        raise CliError(str(exc)) from None


@contextmanager
def opened_store(url: str | None, *, must_exist: bool = False) -> Iterator[Any]:
    """`open_store(url)` for the block, closed after it; None when `url` is None."""
    store = None if url is None else open_store(url, must_exist=must_exist)
    try:
        yield store
    finally:
        close = getattr(store, "close", None)
        if callable(close):
            close()


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send what is printed in the block to stderr: ``sys.stdout`` and descriptor 1 alike.

    For imports and runs: stdout is for what the command produces. Worker processes
    (``executor="process"``) inherit descriptor 1, not ``sys.stdout``, so both are
    pointed at stderr until the block is over.
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


class _Ending:
    """A listener that keeps the run its ``RunFinished`` event carries."""

    def __init__(self) -> None:
        self.run: Run | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunFinished):
            self.run = event.run


def execute_run(
    workflow: Workflow | str,
    data: Mapping[str, Any] | None,
    *,
    run_id: str | None,
    store: object,
    progress: Progress | None,
) -> Run:
    """Run a workflow to the end with `progress` listening; usage problems become `CliError`.

    Ctrl-C cancels the run: `asyncio.run` cancels its task, the run is
    reported (and journaled) as "cancelled", and that `Run` is returned.
    """
    from ._running import arun_workflow

    ending = _Ending()
    listeners = (ending,) if progress is None else (progress, ending)
    options: dict[str, Any] = {"run_id": run_id, "listeners": listeners}
    if store is not None:
        options["store"] = store
    try:
        # stdout is for the result only: what steps print goes to stderr with the progress
        with stdout_to_stderr():
            if progress is None:
                return asyncio.run(arun_workflow(workflow, data, **options))
            with progress:
                return asyncio.run(arun_workflow(workflow, data, **options))
    except (UsageError, WorkflowNotFound, StoreError, DefinitionError) as exc:
        raise CliError(str(exc)) from None
    except KeyboardInterrupt:
        if ending.run is None or ending.run.status != "cancelled":  # the run was not stopped
            raise
        return ending.run


def finish_run(
    run: Run, output: str, log_format: str, quiet: bool, *, resume: str | None = None
) -> int:
    """Print the run's result on stdout and how it ended on stderr; returns the exit code.

    With ``--log-format json`` stderr stays JSON only (``workflow.finished`` says
    how it ended); with ``--quiet`` only a run that did not complete is
    reported. `resume` is the command that resumes the run, shown when it was
    cancelled.
    """
    if log_format != "json" and not (quiet and run.status == "completed"):
        report(run)
        if run.status == "cancelled" and resume is not None:
            print(f"resume it with: {resume}", file=sys.stderr, flush=True)
    if output == "run":
        print_json(run_record(run))
    elif run.status == "completed":
        print_json(run.output)
    return 0 if run.status == "completed" else 1


def _resume_command(run_id: str, store: str, modules: Iterable[str]) -> str:
    words = ["flowdsl", "runs", "resume", run_id, "--store", store]
    for module in modules:
        words += ["--module", module]
    return shlex.join(words)


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
    resume = None
    if store_path is not None:
        resume = _resume_command(run.run_id, store_path, [_split_target(target)[0]])
    return finish_run(run, output, log_format, quiet, resume=resume)


def _not_checkable(ref: str) -> str | None:
    """Why `check` cannot take `ref` (a TARGET, a directory) and what to give instead."""
    file, sep, name = ref.rpartition(":")
    if sep and name and not _looks_like_file(name):  # not a Windows drive letter
        instead = f"flowdsl check {file}" if file else "flowdsl check path/to/file.py"
        return (
            f"check takes modules or files, not a TARGET like {ref!r}: it checks every "
            f"workflow a module defines; run: {instead}"
        )
    if _is_directory(ref):
        folder = ref.rstrip("/" + os.sep) or ref
        return (
            f"{ref!r} is a directory; check takes modules or Python files: to check every "
            f"file in it, run: flowdsl check {folder}/*.py"
        )
    return None


def cmd_check(sources: Sequence[str]) -> int:
    configure_logging("console", sys.stderr.isatty())  # what modules log on import: stderr
    failed = missing = 0
    for ref in sources:
        why = _not_checkable(ref)
        if why is not None:
            print(f"{ref}: {why}", file=sys.stderr)
            missing += 1
            continue
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
    from .views import Graph

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
    """List the runs; damaged ones are named on stderr (exit 2) and the rest still listed."""
    damaged: list[StoreError] = []
    with opened_store(store_path, must_exist=True) as store:
        try:
            runs: Iterable[Run] = store.list_runs(
                status=status, on_damaged=lambda run_id, error: damaged.append(error)
            )
        except StoreError as exc:
            raise CliError(str(exc)) from None
    if fmt == "json":
        print_json([run_summary(run) for run in runs])
    else:
        print_runs_table(list(runs))
    for error in damaged:
        print(f"Error: {error}", file=sys.stderr)
    return 2 if damaged else 0


def print_runs_table(runs: Sequence[Run]) -> None:
    """``runs list --format table``: every cell whole, run ids never cut or wrapped.

    Off a terminal (a pipe, a file) each run is one line as wide as it needs;
    on a terminal the table fits the width when it can, wrapping only the
    workflow and step names, and is drawn wider than the terminal when even
    that cannot fit.
    """
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    headers = ("run_id", "workflow", "status", "started", "duration", "failed_step")
    rows = [
        (
            run.run_id,
            run.workflow,
            run.status,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started)),
            _ms(run.duration),
            run.failed_step or "",
        )
        for run in runs
    ]
    table = Table()
    for index, header in enumerate(headers):
        # Names may wrap (never be cut); every other cell keeps one line, headers too.
        wraps = header in ("workflow", "failed_step")
        widest = max([len(header), *(len(row[index]) for row in rows)]) if not wraps else 0
        table.add_column(
            header, no_wrap=not wraps, overflow="fold", min_width=max(len(header), widest)
        )
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console = Console()
    needs = Measurement.get(console, console.options.update(max_width=1 << 20), table)
    console.width = max(console.width, needs.minimum) if console.is_terminal else needs.maximum
    console.print(table)


def cmd_runs_show(store_path: str, run_id: str) -> int:
    with opened_store(store_path, must_exist=True) as store:
        run = _get_run(store, run_id, store_path)
    print_json(run_record(run))
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
    with opened_store(store_path, must_exist=True) as store:
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
    resume = _resume_command(run_id, store_path, modules)
    return finish_run(run, output, log_format, quiet, resume=resume)


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
        "--store",
        "store_path",
        required=True,
        metavar="URL",
        help="The store: a file path or sqlite:///relative.db, sqlite:////abs/path.db (it must exist).",
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
        "--store",
        "store_path",
        metavar="URL",
        help="Make the run durable in this store: a file path or sqlite:///relative.db (created if missing).",
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

        Exit status: 0 completed, 1 failed or cancelled (Ctrl-C cancels the run), 2 bad
        usage or a definition error.
        """
        return cmd_run(target, input_, store_path, run_id, log_format, output, quiet)

    @cli.command()
    @click.argument("sources", nargs=-1, required=True, metavar="MODULE_OR_FILE...")
    def check(sources: tuple[str, ...]) -> int:
        """Import and compile modules; list their workflows.

        Every module is checked. Exit status: 0 all valid; 1 a definition error (or a module
        that raises or exits while imported); 2 a module or file that does not exist, a
        directory, or a TARGET (this wins). To check a directory: flowdsl check DIR/*.py
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
