"""The click command tree: ``flowdsl run | check | graph | runs ... | worker | events send``.

Each command only declares its arguments and hands them to the plain function
in `_commands` that does the work; the options several commands share are the
small decorator factories at the top.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from .. import __version__
from ._commands import (
    cmd_check,
    cmd_events_send,
    cmd_graph,
    cmd_run,
    cmd_runs_cancel,
    cmd_runs_list,
    cmd_runs_prune,
    cmd_runs_resume,
    cmd_runs_retry,
    cmd_runs_show,
    cmd_runs_view,
    cmd_ui,
    cmd_worker,
    parse_duration,
    parse_time,
)

__all__ = ["cli"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _log_format_option() -> Callable[[_F], _F]:
    return click.option(
        "--log-format",
        type=click.Choice(["console", "json"]),
        default="console",
        show_default=True,
        help="console: progress display and readable logs; json: one JSON log event per line.",
    )


def _output_option() -> Callable[[_F], _F]:
    return click.option(
        "--output",
        type=click.Choice(["output", "run"]),
        default="output",
        show_default=True,
        help="What to print on stdout: the run's output (when it completed), or the whole run record.",
    )


def _quiet_option() -> Callable[[_F], _F]:
    return click.option("-q", "--quiet", is_flag=True, help="No progress display.")


def _existing_store_option() -> Callable[[_F], _F]:
    return click.option(
        "--store",
        "store_path",
        required=True,
        metavar="URL",
        help="The store: a file path or sqlite:///relative.db, sqlite:////abs/path.db (it must exist).",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="flowdsl")
def cli() -> None:
    """Run, check and draw flowdsl workflows; serve, inspect and wake durable runs.

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
@click.option("--run-id", metavar="ID", help="Name the run (with --store: resume or return it).")
@_log_format_option()
@_output_option()
@_quiet_option()
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
    """Durable runs kept in a store: list, show, view, resume, cancel, retry, prune."""


_STATUSES = click.Choice(["queued", "running", "waiting", "completed", "failed", "cancelled"])


@runs.command("list")
@_existing_store_option()
@click.option(
    "--status",
    type=_STATUSES,
    default=None,
    help="Only the runs with this status (waiting: parked until an event or a deadline).",
)
@click.option("--workflow", metavar="NAME", default=None, help="Only the runs of this workflow.")
@click.option(
    "--since",
    callback=parse_time,
    default=None,
    metavar="ISO",
    help="Only the runs started at or after this time (2025-05-01T12:00+02:00; local time "
    "without a zone).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Only the N newest runs, newest first.",
)
@click.option(
    "--parent",
    metavar="RUN_ID",
    default=None,
    help="Only the child runs that this run started (call_workflow).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True
)
def runs_list(
    store_path: str,
    status: str | None,
    workflow: str | None,
    since: Any,
    limit: int | None,
    parent: str | None,
    fmt: str,
) -> int:
    """List the runs in a store, oldest first (newest first with --limit).

    A parked run (status waiting) also shows what it waits for: its waits, their
    events, and until when (the earliest deadline; none when only an event wakes it).
    A child run (started by call_workflow) names its parent run.
    """
    return cmd_runs_list(
        store_path, status, fmt, parent=parent, workflow=workflow, since=since, limit=limit
    )


@runs.command("cancel")
@click.argument("run_id", metavar="ID")
@_existing_store_option()
def runs_cancel(run_id: str, store_path: str) -> int:
    """Cancel a run for good, and its unfinished child runs.

    A queued or waiting run is cancelled at once; a running one is stopped by the
    process that runs it, at its next lease renewal at the latest. Exit status: 0 the
    cancel is committed; 2 no such run, or a run that has ended.
    """
    return cmd_runs_cancel(store_path, run_id)


@runs.command("retry")
@click.argument("run_id", metavar="ID")
@_existing_store_option()
@click.option(
    "--from",
    "from_step",
    metavar="STEP",
    default=None,
    help="Run this top-level step and all after it again (default: every step that did not "
    "succeed, and the steps whose compensation ran).",
)
def runs_retry(run_id: str, store_path: str, from_step: str | None) -> int:
    """Queue a new run of an ended run that reuses its journal; print the new run's id.

    A worker runs it (or: flowdsl runs resume NEW_ID --module ...). Exit status: 0 queued;
    2 no such run, a run that has not ended, or a STEP that is not one to retry from.
    """
    return cmd_runs_retry(store_path, run_id, from_step)


@runs.command("prune")
@_existing_store_option()
@click.option(
    "--older-than",
    "older_than",
    callback=parse_duration,
    required=True,
    metavar="DURATION",
    help="Delete the runs that ended longer ago than this: a number and a unit, s, m, h or d "
    "(90s, 15m, 12h, 7d).",
)
@click.option(
    "--status",
    type=click.Choice(["completed", "failed", "cancelled"]),
    default=None,
    help="Only the ended runs with this status (default: all three).",
)
def runs_prune(store_path: str, older_than: float, status: str | None) -> int:
    """Delete ended runs (with their journals and events); print how many.

    Queued, running and waiting runs are never deleted.
    """
    return cmd_runs_prune(store_path, older_than, status)


@runs.command("show")
@click.argument("run_id", metavar="ID")
@_existing_store_option()
def runs_show(run_id: str, store_path: str) -> int:
    """Print one run's record as JSON."""
    return cmd_runs_show(store_path, run_id)


@runs.command("view")
@click.argument("run_id", metavar="ID")
@_existing_store_option()
@click.option(
    "-o",
    "--output",
    "out",
    metavar="FILE",
    help="Write the page to FILE (default, or '-': standard output).",
)
def runs_view(run_id: str, store_path: str, out: str | None) -> int:
    """Write one run's page: a self-contained HTML file, opened with no network.

    The page shows the run's graph, each node coloured by its status, a timeline
    of every attempt (parallel branches, foreach items, goto visits, retries,
    waits, compensations) and every error with its traceback.
    """
    return cmd_runs_view(store_path, run_id, out)


@runs.command("resume")
@click.argument("run_id", metavar="ID")
@_existing_store_option()
@click.option(
    "--module",
    "modules",
    multiple=True,
    metavar="MODULE_OR_FILE",
    help="Import this first: the module that defines the run's workflow (repeatable).",
)
@_log_format_option()
@_output_option()
@_quiet_option()
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


@cli.command()
@click.argument("sources", nargs=-1, required=True, metavar="MODULE_OR_FILE...")
@click.option(
    "--store",
    "store_path",
    required=True,
    metavar="URL",
    help="The store whose queued runs to execute (shared with the other workers).",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="NAME",
    help="Serve this queue (repeatable); every queue when not given.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="How many runs this worker executes at once.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="On SIGTERM or Ctrl-C: seconds the runs in hand get to finish before they are handed back.",
)
@_log_format_option()
def worker(
    sources: tuple[str, ...],
    store_path: str,
    queues: tuple[str, ...],
    concurrency: int,
    grace: float,
    log_format: str,
) -> int:
    """Execute the queued runs of a store until SIGTERM or Ctrl-C (then exit 0).

    MODULE_OR_FILE are the modules (or files) that define the workflows and queues
    to run; several workers, on any hosts, may serve one store.
    """
    return cmd_worker(sources, store_path, queues, concurrency, grace, log_format)


@cli.command()
@click.argument("sources", nargs=-1, metavar="[MODULE_OR_FILE]...")
@_existing_store_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(min=1, max=65535),
    default=8321,
    show_default=True,
    help="The port to listen on.",
)
def ui(sources: tuple[str, ...], store_path: str, host: str, port: int) -> int:
    """Serve the dashboard over a store (pip install 'flowdsl[ui]'): runs, their pages,
    live updates, and the actions cancel, resume, retry and send event.

    MODULE_OR_FILE are the modules (or files) of the workflows its Resume button may
    run in this process. Requests that change runs need the token it prints.
    """
    return cmd_ui(sources, store_path, host, port)


@cli.group()
def events() -> None:
    """Send events to runs that wait for them (wait_for_event)."""


@events.command("send")
@click.argument("run_id")
@click.argument("event")
@click.option(
    "--data",
    metavar="JSON|@FILE",
    help="The event's payload: any JSON value, @file.json, or @- for standard input (default: null).",
)
@_existing_store_option()
def events_send(run_id: str, event: str, data: str | None, store_path: str) -> int:
    """Send EVENT to the run RUN_ID: committed in the store, then exit.

    The event is kept in the run's mailbox until a wait for EVENT takes it, so the
    run may be parked, queued, running, or not yet at its wait; a finished run
    refuses it. Exit status: 0 sent; 2 no such run or store, a finished run, or bad
    --data.
    """
    return cmd_events_send(store_path, run_id, event, data)
