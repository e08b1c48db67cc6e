"""Executors: the same step semantics inline, in threads, in a process pool and on Dask.

The Dask tests use the session's real ``LocalCluster`` (tests/conftest.py):
two spawned worker processes. Worker processes re-import the main module, so
a script that starts a ``LocalCluster(processes=True)`` or a spawn process
pool needs the ``if __name__ == "__main__":`` guard (pytest's entry point has
one). Waiting is done on files and events, never on sleeps that must be long
enough: a step that should outlive its timeout or its run waits for a file
the test creates afterwards.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import os
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowdsl import (
    END,
    DefinitionError,
    Err,
    Event,
    FlowError,
    Ok,
    Retry,
    Run,
    RunFinished,
    StepFinished,
    UsageError,
    arun_workflow,
    error,
    goto,
    ok,
    parallel,
    parallel_ok,
    parallel_result,
    run_workflow,
    step,
    workflow,
)
from flowdsl.errors import ExecutorConfigError, ExecutorError, WorkerLost
from flowdsl.executors import (
    DaskExecutor,
    Executor,
    ProcessExecutor,
    RemoteTraceback,
    ThreadExecutor,
)
from flowdsl.executors._base import pack, unpack
from flowdsl.executors._trampoline import RemoteContext, run_step

pytestmark = pytest.mark.usefixtures("flowdsl_registry")

EXECUTORS = ("inline", "thread", "process", "dask")
REMOTE = ("process", "dask")


@dataclass(frozen=True)
class Where:
    """Where a test's steps run: the workflow's ``executor=`` and the run's ``executors=``."""

    name: str
    executors: Mapping[str, Executor]

    @property
    def remote(self) -> bool:
        return self.name in REMOTE

    def run(self, wf: Any, data: Mapping[str, Any] | None = None, **options: Any) -> Run:
        return run_workflow(wf, data, executors=self.executors, **options)


@pytest.fixture(scope="module")
def dask_executor(dask_client: Any) -> Iterator[DaskExecutor]:
    with DaskExecutor(dask_client) as executor:
        yield executor


def _where(request: pytest.FixtureRequest) -> Where:
    name: str = request.param
    if name == "dask":
        return Where(name, {"dask": request.getfixturevalue("dask_executor")})
    return Where(name, {})


@pytest.fixture(params=EXECUTORS)
def where(request: pytest.FixtureRequest) -> Where:
    return _where(request)


@pytest.fixture(params=REMOTE)
def remote(request: pytest.FixtureRequest) -> Where:
    return _where(request)


async def wait_for_file(path: str, limit: float = 10.0) -> bool:
    """Poll for `path` (a file the test creates); False after `limit` seconds."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):  # noqa: ASYNC240 - a local tmp file, microseconds
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def formatted(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


# -- outcomes -----------------------------------------------------------------------------


def test_outcomes_come_back_intact(where: Where) -> None:
    """ok(mapping), plain values, ok(), goto with an update and goto(END) route the same everywhere."""

    @workflow("outcomes", executor=where.name)
    def outcomes() -> None:
        @step
        def merge(ctx: Any) -> object:
            return ok({"doubled": ctx["n"] * 2})

        @step
        async def plain(ctx: Any) -> object:
            await asyncio.sleep(0)
            return {"nested": [ctx["doubled"], (1, 2)]}

        @step
        def nothing(ctx: Any) -> object:
            return ok()

        @step(routes=("last",))
        def jump(ctx: Any) -> object:
            return goto("last", {"jumped": True})

        @step
        def skipped(ctx: Any) -> object:
            return ok({"skipped": True})

        @step
        def last(ctx: Any) -> object:
            return goto(END, {"result": Ok(ctx["doubled"])})

        @step
        def never(ctx: Any) -> object:
            return ok({"never": True})

    run = where.run(outcomes, {"n": 21})
    assert "completed" == run.status
    expected = {
        "n": 21,
        "doubled": 42,
        "plain": {"nested": [42, (1, 2)]},
        "jumped": True,
        "result": Ok(42),
    }
    assert expected == dict(run.output)


def test_context_is_the_same_read_only_mapping(where: Where) -> None:
    """A step sees the same keys and ctx attributes, and cannot change the context."""

    @workflow("context", executor=where.name)
    def context() -> None:
        @step
        def first(ctx: Any) -> object:
            return ok({"seen": 1})

        @step
        def look(ctx: Any) -> object:
            try:
                ctx["x"] = 1
            except TypeError:
                immutable = True
            else:
                immutable = False
            return {
                "items": sorted(ctx.items()),
                "attrs": (ctx.run_id, ctx.step, ctx.attempt, ctx.idempotency_key),
                "immutable": immutable,
            }

    run = where.run(context, {"a": "b"}, run_id="r1")
    assert "completed" == run.status
    assert [("a", "b"), ("seen", 1)] == run.output["look"]["items"]
    assert ("r1", "look", 1, "r1:look") == run.output["look"]["attrs"]
    assert run.output["look"]["immutable"]


def test_error_outcome_fails_the_run(where: Where) -> None:
    """error(reason) fails the run with that reason, brought back from the worker."""

    @workflow("errs", executor=where.name)
    def errs() -> None:
        @step
        def refuse(ctx: Any) -> object:
            return error({"code": 409})

    run = where.run(errs)
    assert ("failed", "refuse", {"code": 409}) == (run.status, run.failed_step, run.error)


def test_parallel_block_results_in_order(where: Where) -> None:
    """A parallel block of executor steps reduces its results in declaration order."""

    def gather(ctx: Any, results: Mapping[str, Any]) -> object:
        return ok(
            {"values": [r.value if type(r) is Ok else ("err", r.error) for r in results.values()]}
        )

    @workflow("fan", executor=where.name)
    def fan() -> None:
        with parallel(into=gather):

            @step
            async def slow(ctx: Any) -> object:
                await asyncio.sleep(0.05)
                return 1

            @step
            def fast(ctx: Any) -> object:
                return 2

            @step
            def failing(ctx: Any) -> object:
                return error("no")

    run = where.run(fan)
    assert "completed" == run.status
    assert [1, 2, ("err", "no")] == run.output["values"]


def test_step_after_a_parallel_block_reads_its_results(where: Where) -> None:
    """The block's __results__ (a read-only mapping of Ok/Err) reaches a remote step intact."""

    @workflow("after_block", executor=where.name)
    def after_block() -> None:
        with parallel(on_error="complete_all"):

            @step
            def good(ctx: Any) -> object:
                return 1

            @step
            def bad(ctx: Any) -> object:
                return error("no")

        @step
        def summary(ctx: Any) -> object:
            return (parallel_ok(ctx, "good"), parallel_ok(ctx, "bad"), parallel_result(ctx, "bad"))

    run = where.run(after_block)
    assert "completed" == run.status, run.error
    assert (True, False, Err("no")) == run.output["summary"]


# -- exceptions and retries ----------------------------------------------------------------


def test_exception_keeps_its_type_and_remote_traceback(where: Where) -> None:
    """A raised exception keeps its type (even one defined in the workflow) and its frames."""

    class Refused(Exception):
        pass

    @workflow("raises", executor=where.name)
    def raises() -> None:
        @step
        def explode(ctx: Any) -> object:
            raise Refused("boom")

    run = where.run(raises)
    assert "failed" == run.status
    assert Refused is type(run.error)
    assert ("boom",) == run.error.args
    text = formatted(run.error)
    assert 'raise Refused("boom")' in text
    assert "in explode" in text
    if where.remote:
        assert isinstance(run.error.__cause__, RemoteTraceback)


def test_unrebuildable_exception_still_reports(where: Where) -> None:
    """An exception that cannot be re-created in the caller comes back as text with its traceback."""

    class TwoArgs(Exception):
        def __init__(self, a: int, b: int) -> None:
            super().__init__(f"{a}+{b}")

    @workflow("two_args", executor=where.name)
    def two_args() -> None:
        @step
        def odd(ctx: Any) -> object:
            raise TwoArgs(1, 2)

    run = where.run(two_args)
    assert "failed" == run.status
    if where.remote:
        assert isinstance(run.error, ExecutorError)
        assert "'odd'" in str(run.error)
        assert "TwoArgs: 1+2" in str(run.error)
        assert "raise TwoArgs(1, 2)" in formatted(run.error)
    else:
        assert isinstance(run.error, TwoArgs)


def test_retries_use_the_policy(where: Where) -> None:
    """Failed attempts (raised or error()) are retried as the policy says; exactly max_attempts."""

    class Flaky(Exception):
        pass

    @workflow("retries", executor=where.name)
    def retries() -> None:
        @step(retry=Retry(max_attempts=3, base=0, retry_on=(Flaky,)))
        def flaky(ctx: Any) -> object:
            if ctx.attempt == 1:
                raise Flaky("first")
            if ctx.attempt == 2:
                return error("second")
            return ok({"attempts": ctx.attempt, "key": ctx.idempotency_key})

        @step(retry=Retry(max_attempts=3, base=0, retry_on=(Flaky,)))
        def other(ctx: Any) -> object:
            raise KeyError("not retried")

    run = where.run(retries, run_id="r")
    assert ("failed", "other") == (run.status, run.failed_step)
    assert 3 == run.output["attempts"]
    assert "r:flaky" == run.output["key"]
    statuses = [(r.name, r.attempt, r.status) for r in run.steps]
    assert [
        ("flaky", 1, "failed"),
        ("flaky", 2, "failed"),
        ("flaky", 3, "succeeded"),
        ("other", 1, "failed"),
    ] == statuses
    assert isinstance(run.steps[0].error, Flaky)


# -- timeouts and cancellation --------------------------------------------------------------


def test_timed_out_attempt_is_abandoned_and_its_result_ignored(
    where: Where, tmp_path: Path
) -> None:
    """A timed-out attempt fails (and is retried); its late result never reaches the context."""
    release = str(tmp_path / "release")

    @workflow("slow", executor=where.name)
    def slow() -> None:
        @step(timeout=0.2, retry=Retry(max_attempts=2, base=0))
        async def wait(ctx: Any) -> object:
            if ctx.attempt == 1:
                await wait_for_file(release)
                return ok({"late": True})
            await asyncio.sleep(0.1)  # the late result of attempt 1 would arrive now
            return ok({"attempt": ctx.attempt})

    def release_first(event: Event) -> None:
        # A thread cannot be stopped, and asyncio.run waits for its default thread pool at
        # the end: let the abandoned attempt finish as soon as it has timed out.
        if isinstance(event, StepFinished) and event.status == "failed":
            Path(release).touch()

    run = where.run(slow, listeners=(release_first,))
    assert "completed" == run.status
    assert {"attempt": 2} == dict(run.output)
    assert isinstance(run.steps[0].error, TimeoutError)
    assert "'wait' timed out after 0.2s" in str(run.steps[0].error)


def test_cancelling_a_run_stops_waiting_for_its_step(where: Where, tmp_path: Path) -> None:
    """A run cancelled while a step runs elsewhere is reported cancelled and does not hang."""
    started, release = str(tmp_path / "started"), str(tmp_path / "release")
    events: list[Event] = []

    @workflow("cancel_me", executor=where.name)
    def cancel_me() -> None:
        @step
        async def block(ctx: Any) -> object:
            Path(started).touch()  # noqa: ASYNC240 - a local tmp file, microseconds
            await wait_for_file(release)
            return ok({"late": True})

    async def main() -> None:
        task = asyncio.ensure_future(
            arun_workflow(cancel_me, executors=where.executors, listeners=(events.append,))
        )
        assert await wait_for_file(started)
        task.cancel()
        try:
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            # An abandoned thread must end before asyncio.run can.
            Path(release).touch()  # noqa: ASYNC240 - a local tmp file, microseconds

    asyncio.run(main())
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert ["cancelled"] == [e.run.status for e in finished]
    assert "late" not in finished[0].run.output


# -- dead workers -------------------------------------------------------------------------------


def test_killed_worker_is_a_failed_attempt_that_is_retried(remote: Where) -> None:
    """A worker process killed mid-step fails that attempt with WorkerLost; the retry runs."""

    @workflow("killed", executor=remote.name)
    def killed() -> None:
        @step(retry=Retry(max_attempts=2, base=0))
        def die(ctx: Any) -> object:
            if ctx.attempt == 1:
                os.kill(os.getpid(), 9)
            return ok({"survived": ctx.attempt})

    run = remote.run(killed)
    assert "completed" == run.status
    assert {"survived": 2} == dict(run.output)
    assert isinstance(run.steps[0].error, WorkerLost)
    assert "'die'" in str(run.steps[0].error)


def test_killed_worker_without_retry_fails_the_run(remote: Where) -> None:
    """Without a retry policy a dead worker fails the run with WorkerLost; the next run works."""

    @workflow("exits", executor=remote.name)
    def exits() -> None:
        @step
        def leave(ctx: Any) -> object:
            os._exit(3)

    @workflow("after", executor=remote.name)
    def after() -> None:
        @step
        def fine(ctx: Any) -> object:
            return 1

    run = remote.run(exits)
    assert ("failed", "leave") == (run.status, run.failed_step)
    assert isinstance(run.error, WorkerLost)
    assert 1 == remote.run(after).output["fine"]


# -- what cannot travel ------------------------------------------------------------------------


def test_unpicklable_step_names_the_step_and_the_object(where: Where) -> None:
    """A step that captures a lock runs locally; remotely it fails naming the step and the lock."""
    lock = threading.Lock()

    @workflow("locked", executor=where.name)
    def locked() -> None:
        @step
        def guarded(ctx: Any) -> object:
            with lock:
                return 1

    run = where.run(locked)
    if not where.remote:
        assert "completed" == run.status
        return
    assert "failed" == run.status
    assert isinstance(run.error, ExecutorError)
    message = str(run.error)
    assert "step 'guarded'" in message
    assert "closure variable 'lock' is lock" in message
    assert "Traceback" not in message
    assert run.error.__cause__ is None


def test_unpicklable_context_value_names_the_key(where: Where) -> None:
    """A context value that cannot be pickled fails a remote step naming the key."""

    @workflow("ctx_lock", executor=where.name)
    def ctx_lock() -> None:
        @step
        def reads(ctx: Any) -> object:
            return ctx["n"]

    run = where.run(ctx_lock, {"n": 1, "conn": threading.Lock()})
    if not where.remote:
        assert "completed" == run.status
        return
    assert isinstance(run.error, ExecutorError)
    assert "step 'reads'" in str(run.error)
    assert "context value 'conn' is lock" in str(run.error)


def test_unpicklable_outcome_fails_the_step(where: Where) -> None:
    """An outcome that cannot be pickled back fails the step with a message, not a hang."""

    @workflow("returns_lock", executor=where.name)
    def returns_lock() -> None:
        @step
        def give(ctx: Any) -> object:
            return ok({"lock": threading.Lock()})

    run = where.run(returns_lock)
    if not where.remote:
        assert "completed" == run.status
        return
    assert isinstance(run.error, ExecutorError)
    assert "step 'give'" in str(run.error)
    assert "cannot be pickled" in str(run.error)


def test_large_context_travels(where: Where) -> None:
    """A context bigger than the scatter threshold reaches the step whole."""
    blob = os.urandom(1_500_000)

    @workflow("large", executor=where.name)
    def large() -> None:
        @step
        def size(ctx: Any) -> object:
            return len(ctx["blob"])

    assert len(blob) == where.run(large, {"blob": blob}).output["size"]


def test_step_module_travels_by_value(remote: Where, tmp_path: Path) -> None:
    """A step, and the helpers of its module, run where that module cannot be imported."""
    name = "flowdsl_test_user_module"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import importlib.util

            from flowdsl import ok, step, workflow

            FACTOR = 3


            def helper(x):
                return x * FACTOR


            def define(executor):
                @workflow("user_module", executor=executor)
                def user_module():
                    @step
                    def compute(ctx):
                        found = importlib.util.find_spec(__name__) is not None
                        return ok({"value": helper(ctx["x"]), "importable": found})

                return user_module
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
    try:
        run = remote.run(module.define(remote.name), {"x": 5})
    finally:
        del sys.modules[name]
    assert "completed" == run.status, run.error
    assert {"x": 5, "value": 15, "importable": False} == dict(run.output)


FAR_AWAY = """
import os

from flowdsl import step, workflow


def explode(path, how):
    if how == "deleted":
        os.remove(path)
    else:
        with open(path, "w") as file:
            file.write("# edited after the run started\\n" * 40)
    raise RuntimeError("exploded on the worker")


def define(executor):
    @workflow("far_away", executor=executor)
    def far_away():
        @step
        def fail(ctx):
            def inner():
                return explode(__file__, ctx["how"])

            return inner()

    return far_away
"""


@pytest.mark.parametrize("how", ["deleted", "edited"])
def test_remote_traceback_names_files_and_shows_lines_the_worker_cannot_read(
    remote: Where, tmp_path: Path, how: str
) -> None:
    """Every frame of code sent by value names its file and shows its line, read or not there."""
    name = f"flowdsl_test_far_away_{how}"
    path = tmp_path / f"{name}.py"
    path.write_text(FAR_AWAY)
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))
    try:
        run = remote.run(module.define(remote.name), {"how": how})
    finally:
        del sys.modules[name]
    assert isinstance(run.error, RuntimeError)
    text = formatted(run.error)
    lines = FAR_AWAY.splitlines()
    for function, line in [
        ("fail", "return inner()"),
        ("inner", 'return explode(__file__, ctx["how"])'),
        ("explode", 'raise RuntimeError("exploded on the worker")'),
    ]:
        number = next(i for i, text in enumerate(lines, 1) if text.strip() == line)
        assert f'File "{path}", line {number}, in {function}\n    {line}\n' in text
    assert "<dynamic-code>" not in text
    assert "edited after the run started" not in text
    assert (how == "deleted") != path.exists()


# -- choosing an executor -----------------------------------------------------------------------


def test_step_executor_wins_over_the_workflow_default() -> None:
    """@step(executor=...) overrides @workflow(executor=...); 'inline' keeps a step on the loop."""
    here = os.getpid()

    @workflow("mixed", executor="process")
    def mixed() -> None:
        @step
        def away(ctx: Any) -> object:
            return os.getpid()

        @step(executor="inline")
        def home(ctx: Any) -> object:
            return os.getpid()

        @step(executor="thread")
        def thread(ctx: Any) -> object:
            return threading.current_thread() is not threading.main_thread()

        @step(blocking=True)
        def blocking(ctx: Any) -> object:
            return threading.current_thread() is not threading.main_thread()

        @step
        async def chunks(ctx: Any) -> Any:
            yield ok(os.getpid())

    plan = mixed.plan
    assert ("process", None, "thread", None, None) == tuple(
        plan.steps[n].executor for n in ("away", "home", "thread", "blocking", "chunks")
    )
    run = run_workflow(mixed)
    assert "completed" == run.status, run.error
    assert run.output["away"] != here
    assert (here, True, True, here) == (
        run.output["home"],
        run.output["thread"],
        run.output["blocking"],
        run.output["chunks"],
    )


def test_bad_workflow_executor_is_a_definition_error() -> None:
    """@workflow(executor=...) takes a non-empty name."""
    with pytest.raises(DefinitionError, match="executor= takes 'inline', 'thread', 'process'"):

        @workflow("bad_default", executor="")
        def bad_default() -> None:
            @step
            def a(ctx: Any) -> object:
                return 1


def test_unknown_executor_fails_the_step_with_the_known_names() -> None:
    """A step sent to an executor the run does not have fails with the names it has."""

    @workflow("nowhere")
    def nowhere() -> None:
        @step(executor="gpu")
        def train(ctx: Any) -> object:
            return 1

    run = run_workflow(nowhere, executors={"dask": ThreadExecutor()})
    assert isinstance(run.error, ExecutorError)
    assert "executor 'gpu'" in str(run.error)
    assert "Known: 'thread', 'process', 'dask'" in str(run.error)


@pytest.mark.parametrize(
    ("executors", "message"),
    [
        ({"thread": ThreadExecutor()}, "'thread' is built in"),
        ({"": ThreadExecutor()}, "got the name ''"),
        ({"gpu": "not an executor"}, "must be callable"),
    ],
)
def test_bad_executors_mapping_is_a_usage_error(executors: Mapping[str, Any], message: str) -> None:
    """executors= is checked before the run starts."""

    @workflow("checked")
    def checked() -> None:
        @step
        def a(ctx: Any) -> object:
            return 1

    with pytest.raises(UsageError, match=message):
        run_workflow(checked, executors=executors)


def test_thread_executor_bounds_concurrency() -> None:
    """A named ThreadExecutor runs steps (sync and async) in its own threads."""
    with ThreadExecutor(max_workers=1) as pool:

        @workflow("io")
        def io() -> None:
            with parallel():

                @step(executor="io")
                def one(ctx: Any) -> object:
                    return threading.current_thread().name

                @step(executor="io")
                async def two(ctx: Any) -> object:
                    return threading.current_thread().name

        run = run_workflow(io, executors={"io": pool})
    results = run.output["__results__"]
    names = {results["one"].value, results["two"].value}
    assert 1 == len(names)
    assert names.pop().startswith("flowdsl-step")


def test_process_workers_outlive_the_thread_that_started_them() -> None:
    """Workers end with the process that owns the pool, not with the thread that spawned them."""

    @workflow("which_worker", executor="own")
    def which_worker() -> None:
        @step
        def pid(ctx: Any) -> object:
            return ok({"pid": os.getpid()})

    # spawn: the worker is a child of this process (with forkserver, of the forkserver)
    with ProcessExecutor(max_workers=1, start_method="spawn") as pool:
        runs: list[Run] = []
        thread = threading.Thread(
            target=lambda: runs.append(run_workflow(which_worker, executors={"own": pool}))
        )
        thread.start()  # the pool spawns its worker from this thread, which then ends
        thread.join()
        runs.append(run_workflow(which_worker, executors={"own": pool}))
    assert ["completed", "completed"] == [run.status for run in runs], runs[-1].error
    assert runs[0].output["pid"] == runs[1].output["pid"]


def test_process_executor_close_stops_abandoned_attempts(tmp_path: Path) -> None:
    """Closing a pool does not wait for an attempt nobody awaits (a timed-out one)."""
    release = str(tmp_path / "never")

    @workflow("abandon")
    def abandon() -> None:
        @step(executor="own", timeout=0.2)
        async def stuck(ctx: Any) -> object:
            await wait_for_file(release, limit=60)
            return 1

    pool = ProcessExecutor(max_workers=1)
    run = run_workflow(abandon, executors={"own": pool})
    assert isinstance(run.error, TimeoutError)
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 5
    with pytest.raises(ExecutorError, match="closed"):
        pool.start()


def test_executor_arguments_are_checked() -> None:
    """Constructors reject what they cannot use, with the fix in the message."""
    with pytest.raises(ExecutorConfigError, match="'fork' is unsafe"):
        ProcessExecutor(start_method="fork")
    with pytest.raises(ExecutorConfigError, match="max_workers"):
        ProcessExecutor(max_workers=0)
    with pytest.raises(ExecutorConfigError, match="max_workers"):
        ThreadExecutor(max_workers=0)
    with pytest.raises(UsageError, match="scheduler address"):
        DaskExecutor(42)
    with pytest.raises(ExecutorConfigError, match="io_timeout"):
        DaskExecutor("tcp://127.0.0.1:1", io_timeout=0)
    with pytest.raises(ExecutorConfigError, match="scatter_threshold"):
        DaskExecutor("tcp://127.0.0.1:1", scatter_threshold=-1)
    with pytest.raises(ExecutorConfigError, match="scatter_threshold"):
        DaskExecutor("tcp://127.0.0.1:1", scatter_threshold=float("nan"))
    assert 1e6 == DaskExecutor("tcp://127.0.0.1:1", scatter_threshold=1e6).scatter_threshold


@pytest.mark.parametrize(
    ("make", "builtin"),
    [
        (lambda: ProcessExecutor(max_workers=0), ValueError),
        (lambda: ProcessExecutor(start_method="fork"), ValueError),
        (lambda: ThreadExecutor(max_workers=True), ValueError),
        (lambda: DaskExecutor("tcp://127.0.0.1:1", io_timeout=-1), ValueError),
        (lambda: DaskExecutor(42), TypeError),
    ],
)
def test_executor_argument_errors_are_flow_errors(make: Any, builtin: type[Exception]) -> None:
    """Each is a FlowError, and still the builtin it was, so existing except clauses work."""
    with pytest.raises(FlowError) as caught:
        make()
    assert isinstance(caught.value, builtin)


# -- Dask specifics -------------------------------------------------------------------------------


def test_dask_executor_from_an_address_owns_its_client(dask_cluster: Any) -> None:
    """Given an address, the executor opens a client of its own and closes it; runs reuse it."""

    @workflow("addressed", executor="dask")
    def addressed() -> None:
        @step
        def where(ctx: Any) -> object:
            return os.getpid()

    with DaskExecutor(dask_cluster.scheduler_address) as dask:
        first = run_workflow(addressed, executors={"dask": dask})
        second = run_workflow(addressed, executors={"dask": dask})
        client = dask._client
        assert "running" == client.status
    assert ("completed", "completed") == (first.status, second.status)
    assert "closed" == client.status


def test_dask_executor_leaves_a_passed_client_open(dask_client: Any) -> None:
    """A client passed in belongs to the caller."""
    DaskExecutor(dask_client).close()
    assert "running" == dask_client.status


def test_dask_unreachable_scheduler_fails_within_io_timeout() -> None:
    """Connecting is bounded: an address nobody listens on fails the step, it does not hang."""

    @workflow("unreachable", executor="dask")
    def unreachable() -> None:
        @step
        def a(ctx: Any) -> object:
            return 1

    dask = DaskExecutor("tcp://127.0.0.1:9", io_timeout=0.5)
    started = time.monotonic()
    run = run_workflow(unreachable, executors={"dask": dask})
    dask.close()
    assert time.monotonic() - started < 10
    assert isinstance(run.error, ExecutorError)
    assert "connecting (tcp://127.0.0.1:9)" in str(run.error)


def test_dask_client_connecting_after_io_timeout_is_closed_not_left_open() -> None:
    """Gave up on at io_timeout, a connection that succeeds later is handed over to be closed."""
    from flowdsl.executors._dask import _within

    release, closed = threading.Event(), threading.Event()
    handed: list[object] = []
    client = object()

    def connect() -> object:
        release.wait(30)
        return client

    def late(result: object) -> None:
        handed.append(result)
        closed.set()

    with pytest.raises(ExecutorError, match=r"connecting did not finish within io_timeout=0\.01s"):
        _within(0.01, "connecting", connect, late=late)
    assert not closed.is_set()
    release.set()
    assert closed.wait(30)
    assert [client] == handed


def test_dask_client_connecting_as_io_timeout_ends_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Made just as the wait gave up: it is returned, not both failed and handed over to be closed."""
    import concurrent.futures

    from flowdsl.executors._dask import _within

    class Racing(concurrent.futures.Future[object]):
        """Its timed wait ends only once the result is there, then says it timed out."""

        def result(self, timeout: float | None = None) -> object:
            if timeout is not None:
                self.exception()  # waits for the connection to be made
                raise concurrent.futures.TimeoutError
            return super().result()

    monkeypatch.setattr(concurrent.futures, "Future", Racing)
    handed: list[object] = []
    client = object()
    assert client is _within(0.01, "connecting", lambda: client, late=handed.append)
    assert [] == handed


def test_dask_client_connecting_in_time_is_kept() -> None:
    """A connection made within io_timeout is returned, and never handed over to be closed."""
    from flowdsl.executors._dask import _within

    handed: list[object] = []
    client = object()
    assert client is _within(30, "connecting", lambda: client, late=handed.append)
    assert [] == handed


def test_dask_worker_without_flowdsl_fails_the_step_instead_of_hanging(
    dask_executor: DaskExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that cannot import flowdsl fails the step with the fix (Dask issue 5419 hangs)."""
    from flowdsl.executors import _bootstrap

    monkeypatch.setattr(_bootstrap, "TRAMPOLINE", "flowdsl_not_installed._trampoline")

    @workflow("no_flowdsl", executor="dask")
    def no_flowdsl() -> None:
        @step
        def a(ctx: Any) -> object:
            return 1

    run = run_workflow(no_flowdsl, executors={"dask": dask_executor})
    assert isinstance(run.error, ExecutorError)
    assert "No module named 'flowdsl_not_installed'" in str(run.error)
    assert "install flowdsl on every worker" in str(run.error)


def test_dask_asynchronous_client_on_the_running_loop(dask_cluster: Any) -> None:
    """An asynchronous Client on the run's own event loop works the same."""
    from distributed import Client

    @workflow("async_client", executor="dask")
    def async_client() -> None:
        @step
        async def where(ctx: Any) -> object:
            return os.getpid()

    async def main() -> Run:
        async with Client(
            dask_cluster.scheduler_address, asynchronous=True, set_as_default=False
        ) as client:
            return await arun_workflow(async_client, executors={"dask": DaskExecutor(client)})

    run = asyncio.run(main())
    assert "completed" == run.status, run.error
    assert run.output["where"] != os.getpid()


def test_importing_flowdsl_does_not_import_dask() -> None:
    """import flowdsl, flowdsl.executors (and running a process step) leave dask unimported."""
    code = textwrap.dedent(
        """
        import sys
        import flowdsl, flowdsl.executors
        from flowdsl.executors import DaskExecutor
        DaskExecutor("tcp://127.0.0.1:8786")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
        print(loaded)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "[]" == out.stdout.strip()


def test_err_and_ok_results_round_trip(where: Where) -> None:
    """Ok and Err values returned inside a mapping come back as the same Result types."""

    @workflow("results", executor=where.name)
    def results() -> None:
        @step
        def make(ctx: Any) -> object:
            return ok({"good": Ok(1), "bad": Err(ValueError("x"))})

    run = where.run(results)
    assert Ok(1) == run.output["good"]
    assert isinstance(run.output["bad"], Err)
    assert isinstance(run.output["bad"].error, ValueError)


def test_executors_exports() -> None:
    """flowdsl.executors exports exactly its public names, sorted."""
    import flowdsl.executors

    expected = ["DaskExecutor", "Executor", "ProcessExecutor", "RemoteTraceback", "ThreadExecutor"]
    assert expected == flowdsl.executors.__all__


# -- packing, without a worker --------------------------------------------------------------------


def _node_and_ctx(fn: Any, data: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    from flowdsl._engine._context import Context, Scope

    @workflow("packed", executor="process")
    def packed() -> None:
        step(fn, name="packed_step")

    return packed.plan.steps["packed_step"], Context(Scope(initial=data), 0, "r", "packed_step")


class _Holder:
    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, ctx: Any) -> object:
        return 1


@pytest.mark.parametrize(
    ("fn", "culprit"),
    [
        (functools.partial(lambda lock, ctx: 1, threading.Lock()), "partial argument 0 is lock"),
        (functools.partial(lambda ctx, lock: 1, lock=threading.Lock()), "partial argument 'lock'"),
        (_Holder(), "attribute 'lock' is lock"),
    ],
)
def test_unpicklable_parts_of_partials_and_objects_are_named(fn: Any, culprit: str) -> None:
    """The culprit inside a functools.partial or a callable object is named too."""
    node, ctx = _node_and_ctx(fn)
    with pytest.raises(ExecutorError, match=culprit):
        pack(node, ctx)


def test_trampoline_reports_what_it_cannot_load_or_send_back() -> None:
    """A body that cannot be unpickled, or an outcome that cannot be pickled, comes back as a message."""
    node, ctx = _node_and_ctx(lambda ctx: ok({"lock": threading.Lock()}), {"a": 1})
    body, context, lines = pack(node, ctx)
    with pytest.raises(ExecutorError, match="loading its body failed there"):
        unpack(node, run_step(b"not a pickle", context, lines))
    with pytest.raises(ExecutorError, match="loading its context failed there"):
        unpack(node, run_step(body, b"not a pickle", lines))
    with pytest.raises(ExecutorError, match=r"returned Ok\(\{'lock'.*cannot be pickled"):
        unpack(node, run_step(body, context, lines))
    with pytest.raises(ExecutorError, match="cannot be unpickled here"):
        unpack(node, b"not a pickle")


def _raising(message: str) -> Any:
    def fail(ctx: Any) -> object:
        raise RuntimeError(message)

    return fail


def test_remote_traceback_without_lines_to_send_still_names_the_file() -> None:
    """Code whose file nobody can read (exec'd source) sends no lines; its frames keep the name."""
    namespace: dict[str, Any] = {}
    source = "def generated(ctx):\n    raise RuntimeError('from generated code')\n"
    exec(compile(source, "<generated>", "exec"), namespace)
    node, ctx = _node_and_ctx(namespace["generated"])
    packed = pack(node, ctx)
    assert b"" == packed.lines
    with pytest.raises(RuntimeError, match="from generated code") as caught:
        unpack(node, run_step(*packed))
    assert 'File "<generated>", line 2, in generated' in formatted(caught.value)


def test_lines_of_a_file_gone_since_the_worker_cached_it_are_shown(tmp_path: Path) -> None:
    """A worker whose linecache read the file before it vanished (a profiler does) shows the lines."""
    path = tmp_path / "vanishing.py"
    path.write_text('def vanish(ctx):\n    raise RuntimeError("gone")\n')
    namespace: dict[str, Any] = {}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    node, ctx = _node_and_ctx(namespace["vanish"])
    packed = pack(node, ctx)  # reads the lines: this process's linecache has the file now
    path.unlink()
    with pytest.raises(RuntimeError, match="gone") as caught:
        unpack(node, run_step(*packed))  # this process plays the worker
    expected = f'File "{path}", line 2, in vanish\n    raise RuntimeError("gone")\n'
    assert expected in formatted(caught.value)


def test_unreadable_lines_blob_still_reports_the_exception() -> None:
    """Source lines that cannot be read on the worker cost the lines, never the exception."""
    node, ctx = _node_and_ctx(_raising("still reported"))
    body, context, _ = pack(node, ctx)
    with pytest.raises(RuntimeError, match="still reported") as caught:
        unpack(node, run_step(body, context, b"not a pickle"))
    assert "in fail" in formatted(caught.value)


def test_remote_exception_comes_back_without_the_workers_frames() -> None:
    """Its traceback travels as text only, even where tblib (distributed) pickles tracebacks."""
    pickling_support = pytest.importorskip("tblib.pickling_support")

    def fail(ctx: Any) -> object:
        try:
            raise KeyError("first")
        except KeyError as exc:
            raise ExceptionGroup("both", [ValueError("a"), TypeError("b")]) from exc

    node, ctx = _node_and_ctx(fail)
    packed = pack(node, ctx)
    group = ExceptionGroup("both", [ValueError("a")])
    pickling_support.install(group, *group.exceptions)  # what distributed does, for these types
    with pytest.raises(ExceptionGroup) as caught:
        unpack(node, run_step(*packed))
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert "KeyError: 'first'" in caught.value.__cause__.text
    assert [None, None] == [member.__traceback__ for member in caught.value.exceptions]
    assert caught.value.__context__ is None


def test_code_marshal_cannot_write_travels_the_cloudpickle_way() -> None:
    """A code object with a constant marshal refuses (built by hand) is pickled as before."""

    def hand_made(ctx: Any) -> object:
        return "made by hand"

    hand_made.__code__ = hand_made.__code__.replace(
        co_consts=(*hand_made.__code__.co_consts, range(3))
    )
    node, ctx = _node_and_ctx(hand_made)
    assert "made by hand" == unpack(node, run_step(*pack(node, ctx)))


def test_remote_context_is_a_read_only_mapping() -> None:
    """RemoteContext has the mapping, its copy, and the ctx attributes."""
    ctx = RemoteContext({"a": 1}, "r", "s", 2, "r:s")
    assert (["a"], 1, {"a": 1}) == (list(ctx), len(ctx), ctx.to_dict())
    assert ("r", "s", 2, "r:s") == (ctx.run_id, ctx.step, ctx.attempt, ctx.idempotency_key)
    assert "RemoteContext({'a': 1}, step='s', attempt=2)" == repr(ctx)


def test_executors_work_as_async_context_managers() -> None:
    """async with starts an executor and closes it; repr shows how it was made."""

    async def main() -> tuple[str, str]:
        async with ProcessExecutor(1, start_method="spawn") as pool, ThreadExecutor(2) as threads:
            return repr(pool), repr(threads)

    assert (
        "ProcessExecutor(max_workers=1, start_method='spawn')",
        "ThreadExecutor(max_workers=2)",
    ) == asyncio.run(main())
    assert "DaskExecutor('tcp://h:1')" == repr(DaskExecutor("tcp://h:1"))


def test_closing_a_thread_executor_fails_queued_attempts_not_the_run() -> None:
    """close() cancels queued attempts: each fails with ExecutorError; the run is not cancelled."""
    from flowdsl.executors import ThreadExecutor

    started = threading.Event()
    release = threading.Event()

    def first(ctx: Any) -> Any:
        started.set()
        release.wait(5)
        return ok()

    @workflow
    def queued() -> None:
        with parallel(on_error="complete_all"):
            step(first, name="first", executor="pool")
            step(lambda ctx: ok(), name="second", executor="pool")

    async def main() -> Run:
        pool = ThreadExecutor(max_workers=1)
        task = asyncio.create_task(arun_workflow(queued, executors={"pool": pool}))
        await asyncio.to_thread(started.wait, 5)
        pool.close()  # "second" is still queued behind "first"
        release.set()
        return await task

    run = asyncio.run(main())
    assert "completed" == run.status
    reason = parallel_result(run.output, "second").error
    assert isinstance(reason, ExecutorError)
    assert "was closed while the attempt waited to run" in str(reason)


def test_thread_executor_steps_see_the_callers_contextvars() -> None:
    """A ThreadExecutor runs the step in a copy of the caller's context, like 'thread'."""
    import contextvars

    from flowdsl.executors import ThreadExecutor

    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="none")

    @workflow
    def tenanted() -> None:
        step(lambda ctx: tenant.get(), name="who", executor="pool")

    async def main() -> Run:
        tenant.set("acme")
        with ThreadExecutor(max_workers=1) as pool:
            return await arun_workflow(tenanted, executors={"pool": pool})

    assert "acme" == asyncio.run(main()).output["who"]


def test_a_nan_io_timeout_is_refused() -> None:
    """io_timeout=nan once slipped through (nan <= 0 is False): the shared check refuses it."""
    with pytest.raises(
        ExecutorConfigError, match=r"io_timeout=...\) must be a number of seconds > 0"
    ):
        DaskExecutor("tcp://127.0.0.1:1", io_timeout=float("nan"))
