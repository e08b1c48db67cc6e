"""What each command does, as plain functions (no click): each returns the exit status.

``cmd_run``, ``cmd_check``, ``cmd_graph`` and ``cmd_runs_*`` take the parsed
arguments; a problem the user can fix is raised as `CliError`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

import click

from .._define._registry import workflows
from .._engine._events import Event, RunFinished
from .._engine._run import Run
from .._running import arun_workflow
from .._workflow import Workflow
from ..errors import (
    DefinitionError,
    FlowError,
    RunNotFound,
    StoreError,
    UsageError,
    WorkflowNotFound,
)
from ..stores import open_store as open_named_store
from ..views import Graph, run_page
from ._errors import CliError
from ._output import print_json, print_runs_table, run_record, run_summary
from ._progress import Progress, configure_logging, progress_for, report
from ._targets import (
    ImportFailed,
    import_source,
    load_target,
    not_checkable,
    read_input,
    read_json,
    split_target,
    stdout_to_stderr,
    workflows_in,
)

__all__ = [
    "cmd_check",
    "cmd_events_send",
    "cmd_graph",
    "cmd_run",
    "cmd_runs_cancel",
    "cmd_runs_list",
    "cmd_runs_prune",
    "cmd_runs_resume",
    "cmd_runs_retry",
    "cmd_runs_show",
    "cmd_runs_view",
    "parse_duration",
    "parse_time",
]


# -- argument types --------------------------------------------------------------------------

_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhd])")


def parse_duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """``--older-than``: a number with a unit, ``s``, ``m``, ``h`` or ``d`` (``90s``, ``7d``);
    its seconds. Anything else is a usage error (exit 2)."""
    if value is None:
        return None
    found = _DURATION.fullmatch(value.strip())
    if found is None:
        msg = (
            f"{value!r} is not a duration: write a number and a unit, s, m, h or d "
            f"(90s, 15m, 12h, 7d)"
        )
        raise click.BadParameter(msg, ctx, param)
    return float(found[1]) * _UNITS[found[2]]


def parse_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """``--since``: an ISO 8601 time (``2025-05-01``, ``2025-05-01T12:00+02:00``), taken as
    this machine's local time when it names no zone."""
    if value is None:
        return None
    try:
        found = datetime.fromisoformat(value.strip())
    except ValueError:
        msg = (
            f"{value!r} is not an ISO 8601 time: write 2025-05-01, 2025-05-01T12:00 or "
            f"2025-05-01T12:00+02:00"
        )
        raise click.BadParameter(msg, ctx, param) from None
    return found if found.tzinfo is not None else found.astimezone()


# -- stores and runs -----------------------------------------------------------------------


def open_store(url: str, *, must_exist: bool = False) -> Any:
    """The durable store `url` names (a store URL or a file path), as the API reads it.

    ``must_exist=True`` for the commands that read runs: a store file that is
    not there is an error, never a new empty store.
    """
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
    run: Run, output: str, log_format: str, quiet: bool, *, then: tuple[str, str] | None = None
) -> int:
    """Print the run's result on stdout and how it ended on stderr; returns the exit code.

    With ``--log-format json`` stderr stays JSON only (``workflow.finished`` says
    how it ended); with ``--quiet`` only a run that did not complete is
    reported. `then` is what to do with the run next and the command that does
    it (resume it; retry it, when it was cancelled for good), shown when it
    was cancelled.
    """
    if log_format != "json" and not (quiet and run.status == "completed"):
        report(run)
        if run.status == "cancelled" and then is not None:
            print(f"{then[0]} it with: {then[1]}", file=sys.stderr, flush=True)
    if output == "run":
        print_json(run_record(run))
    elif run.status == "completed":
        print_json(run.output)
    return 0 if run.status == "completed" else 1


def _next_step(store: Any, run: Run, store_path: str, resume: str) -> tuple[str, str]:
    """What to do next with a cancelled run, and the command: resume it (`resume`), unless
    cancel_run stopped it for good (it does not resume: retry it)."""
    if run.status == "cancelled":
        try:
            final = asyncio.run(store.cancel_requested(run.run_id))
        except StoreError:
            final = False
        if final:
            return "retry", shlex.join(
                ["flowdsl", "runs", "retry", run.run_id, "--store", store_path]
            )
    return "resume", resume


def _resume_command(run_id: str, store: str, modules: Iterable[str]) -> str:
    words = ["flowdsl", "runs", "resume", run_id, "--store", store]
    for module in modules:
        words += ["--module", module]
    return shlex.join(words)


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
            wf, data, run_id=run_id, store=store, progress=progress_for(wf.name, log_format, quiet)
        )
        then = None
        if store_path is not None:
            resume = _resume_command(run.run_id, store_path, [split_target(target)[0]])
            then = _next_step(store, run, store_path, resume)
    return finish_run(run, output, log_format, quiet, then=then)


def cmd_check(sources: Sequence[str]) -> int:
    configure_logging("console", sys.stderr.isatty())  # what modules log on import: stderr
    failed = missing = 0
    for ref in sources:
        why = not_checkable(ref)
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


def _no_run(run_id: str, store_path: str) -> CliError:
    msg = f"no run {run_id!r} in {store_path!r}; list them with: flowdsl runs list --store {store_path}"
    return CliError(msg)


def _get_run(store: Any, run_id: str, store_path: str) -> Run:
    try:
        run: Run | None = store.get_run(run_id)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    if run is None:
        raise _no_run(run_id, store_path)
    return run


def cmd_runs_list(
    store_path: str,
    status: str | None,
    fmt: str,
    *,
    parent: str | None = None,
    workflow: str | None = None,
    since: datetime | None = None,
    limit: int | None = None,
) -> int:
    """List the runs (a parent's children only, with `parent`; the `limit` newest, newest
    first, with `limit`); damaged ones are named on stderr (exit 2) and the rest still listed."""
    damaged: list[StoreError] = []
    with opened_store(store_path, must_exist=True) as store:
        try:
            runs: Iterable[Run] = store.list_runs(
                status,
                workflow,
                since,
                limit,
                parent=parent,
                on_damaged=lambda run_id, error: damaged.append(error),
            )
        except (StoreError, UsageError) as exc:
            raise CliError(str(exc)) from None
    if fmt == "json":
        print_json([run_summary(run) for run in runs])
    else:
        print_runs_table(list(runs))
    for error in damaged:
        print(f"Error: {error}", file=sys.stderr)
    return 2 if damaged else 0


def cmd_runs_cancel(store_path: str, run_id: str) -> int:
    """``flowdsl runs cancel``: commit the cancel; say on stderr what it did to each run."""
    with opened_store(store_path, must_exist=True) as store:
        try:
            done = asyncio.run(store.cancel(run_id))
        except RunNotFound:
            raise _no_run(run_id, store_path) from None
        except (UsageError, StoreError) as exc:
            raise CliError(str(exc)) from None
    for cancelled, how in done:
        what = "child run" if cancelled != run_id else "run"
        if how == "cancelled":
            print(f"{what} {cancelled!r} cancelled", file=sys.stderr)
        else:
            print(
                f"{what} {cancelled!r} is running: its process stops it at its next lease "
                f"renewal, and records it as cancelled",
                file=sys.stderr,
            )
    return 0


def cmd_runs_retry(store_path: str, run_id: str, from_step: str | None) -> int:
    """``flowdsl runs retry``: queue the retry; its run id on stdout."""
    from .._managing import retry_run

    with opened_store(store_path, must_exist=True) as store:
        try:
            new_id = retry_run(run_id, store, from_step=from_step)
        except RunNotFound:
            raise _no_run(run_id, store_path) from None
        except (UsageError, StoreError) as exc:
            raise CliError(str(exc)) from None
    print(new_id, flush=True)
    print(f"run {new_id!r} queued: a retry of run {run_id!r}", file=sys.stderr, flush=True)
    return 0


def cmd_runs_prune(store_path: str, older_than: float, status: str | None) -> int:
    """``flowdsl runs prune``: delete the runs that ended before the cut; the count on stdout."""
    from .._managing import prune_runs

    with opened_store(store_path, must_exist=True) as store:
        try:
            count = prune_runs(store, older_than=older_than, status=status)
        except (UsageError, StoreError) as exc:
            raise CliError(str(exc)) from None
    print(count, flush=True)
    plural = "" if count == 1 else "s"
    print(f"{count} ended run{plural} deleted", file=sys.stderr, flush=True)
    return 0


def cmd_runs_show(store_path: str, run_id: str) -> int:
    with opened_store(store_path, must_exist=True) as store:
        run = _get_run(store, run_id, store_path)
    print_json(run_record(run))
    return 0


def cmd_runs_view(store_path: str, run_id: str, out: str | None) -> int:
    """``flowdsl runs view``: the run's page (one self-contained HTML file) to `out` or stdout."""
    with opened_store(store_path, must_exist=True) as store:
        try:
            page = run_page(store, run_id)
        except RunNotFound:
            raise _no_run(run_id, store_path) from None
        except StoreError as exc:
            raise CliError(str(exc)) from None
    if out is None or out == "-":
        sys.stdout.write(page)
        sys.stdout.flush()
        return 0
    try:
        with open(out, "w", encoding="utf-8") as file:
            file.write(page)
    except OSError as exc:
        msg = f"cannot write the page of run {run_id!r} to {out!r}: {exc.strerror or exc}"
        raise CliError(msg) from None
    size = len(page.encode())
    print(f"run {run_id!r}: page written to {out} ({size:,} bytes)", file=sys.stderr, flush=True)
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
            progress=progress_for(recorded.workflow, log_format, quiet),
        )
        then = _next_step(store, run, store_path, _resume_command(run_id, store_path, modules))
    return finish_run(run, output, log_format, quiet, then=then)


def cmd_events_send(store_path: str, run_id: str, event: str, data: str | None) -> int:
    """``flowdsl events send``: commit the event in the run's mailbox; say so on stderr."""
    from .._sending import send_event

    payload = None if data is None else read_json(data, "--data")[1]
    with opened_store(store_path, must_exist=True) as store:
        try:
            send_event(run_id, event, payload, store=store)
        except RunNotFound:
            raise _no_run(run_id, store_path) from None
        except (UsageError, StoreError) as exc:  # a finished run, a bad name, a damaged store
            raise CliError(str(exc)) from None
    print(f"event {event!r} sent to run {run_id!r}", file=sys.stderr, flush=True)
    return 0


def cmd_worker(
    sources: Sequence[str],
    store_path: str,
    queues: Sequence[str],
    concurrency: int,
    grace: float,
    log_format: str,
) -> int:
    """``flowdsl worker``: serve the store's queues until SIGTERM or Ctrl-C, then exit 0."""
    from .._worker import Worker

    configure_logging(log_format, sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)  # what the worker logs: takeovers, hand-backs
    handler.setFormatter(logging.Formatter("flowdsl worker: %(levelname)s: %(message)s"))
    log = logging.getLogger("flowdsl")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for ref in sources:
        try:
            import_source(ref)
        except DefinitionError as exc:
            raise CliError(f"definition error: {exc}") from None
    store = open_store(store_path)
    try:
        worker = Worker(
            store,
            queues=queues or None,
            concurrency=concurrency,
            grace=grace,
        )
        print(
            f"flowdsl worker: serving {', '.join(queues) if queues else 'every queue'} of "
            f"{store_path} with {concurrency} slots; workflows: "
            f"{', '.join(sorted(workflows())) or 'none'}",
            file=sys.stderr,
            flush=True,
        )
        worker.run()
    finally:
        store.close()
    print("flowdsl worker: stopped", file=sys.stderr, flush=True)
    return 0


def cmd_ui(sources: Sequence[str], store_path: str, host: str, port: int) -> int:
    """``flowdsl ui``: serve the dashboard over the store until Ctrl-C, then exit 0."""
    try:
        from ..ui import serve
    except ImportError as exc:
        msg = f"the dashboard needs its extra: pip install 'flowdsl[ui]' ({exc})"
        raise CliError(msg) from None
    for ref in sources:  # the workflows its Resume button runs in this process
        try:
            import_source(ref)
        except DefinitionError as exc:
            raise CliError(f"definition error: {exc}") from None
    store = open_store(store_path, must_exist=True)
    try:
        serve(
            store,
            host=host,
            port=port,
            announce=lambda line: print(line, file=sys.stderr, flush=True),
        )
    finally:
        store.close()
    return 0
