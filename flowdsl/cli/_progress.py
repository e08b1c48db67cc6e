"""What a run shows on stderr: the live table or plain progress lines, log lines, the report.

On a terminal `Progress` draws a live table (rich); elsewhere it prints one
plain line per event. `configure_logging` is the one place flowdsl
configures structlog: the library itself never does. rich and structlog are
imported only when they are used.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections import deque
from collections.abc import MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

from .._engine._events import (
    CompensationFinished,
    Event,
    RunFinished,
    RunStarted,
    StepChunk,
    StepFinished,
    StepStarted,
)
from .._engine._run import Run
from ._output import format_duration, recorded_error, to_json_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.live import Live

__all__ = ["Progress", "configure_logging", "progress_for", "report"]


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


def _short(value: object, limit: int = 120) -> str:
    try:
        text = to_json_text(value, indent=None)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(error: object) -> str:
    if isinstance(error, BaseException):
        recorded = recorded_error(error)
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
        took = format_duration(event.duration)
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
        retry = "" if event.retry_in is None else f"; retrying in {format_duration(event.retry_in)}"
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
        took = format_duration(event.duration)
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
    print(f"run {run.run_id} {run.status} in {format_duration(run.duration)}", file=sys.stderr)
    if run.status != "failed":
        return
    where = f" at step {run.failed_step!r}" if run.failed_step else ""
    print(f"failed{where}: {_reason(run.error)}", file=sys.stderr)
    error = run.error
    if isinstance(error, BaseException):
        recorded = recorded_error(error)
        if recorded is not None:
            text = recorded[2] or ""
        elif error.__traceback__ is not None:
            text = "".join(traceback.format_exception(error))
        else:
            text = ""
        if text:
            print(text.rstrip(), file=sys.stderr)
    sys.stderr.flush()


def progress_for(workflow: str, log_format: str, quiet: bool) -> Progress | None:
    """The display a run of `workflow` gets: None with ``--quiet`` or ``--log-format json``."""
    if quiet or log_format == "json":  # JSON logs carry the progress, one event per line
        return None
    from rich.console import Console

    console = Console(stderr=True)
    live = sys.stderr.isatty() and not console.is_dumb_terminal
    return Progress(workflow, console if live else None)
