"""The child process of tests/test_crash.py and tests/test_durable.py.

It runs the journaled ``crash_checkout`` workflow (a sequence, a parallel
block with a retried step and a sub-sequence, a goto loop) and dies by
SIGKILL on cue. Every step body appends ``start``/``end`` lines to a side
log (``O_APPEND`` + fsync), separate from the journal, so the test can
compare what ran with what the journal says::

    start|end KEY ATTEMPT PID        KEY is ctx.idempotency_key

Each step body has three kill points: after its ``start`` line, after it
yielded to the event loop, and after its ``end`` line (the work is done but
its outcome is not journaled yet). A kill is either ``N`` (die at the N-th
kill point this process reaches), ``STEP:ATTEMPT:POINT`` (die at that point
of that attempt), ``tMICROSECONDS`` (die that long after starting, wherever
the process is), or ``0`` (never).

Modes::

    python crash_child.py run STORE LOG RUN_ID KILL   resume what is unfinished, then run RUN_ID
    python crash_child.py batch STORE LOG RUN_ID KILL the same with ``crash_batch``: a durable
                                                      foreach over BATCH items (3 kill points each)
    python crash_child.py family STORE LOG RUN_ID KILL the same with ``crash_family``: a parent
                                                      calling the child workflow ``crash_kid``
    python crash_child.py serve STORE LOG             fork server: per stdin line "RUN_ID KILL",
                                                      fork a child that does `run`; answer
                                                      "PID killed|exit CODE" on stdout
    python crash_child.py many STORE COUNT TAG        wait for "go" on stdin, then COUNT
                                                      concurrent runs; print how many completed
    python crash_child.py orphan DIR METHOD           run one step in a ProcessExecutor started
                                                      with METHOD; the step writes DIR/worker
                                                      ("PID PPID"), waits for DIR/go, then
                                                      writes DIR/finished (the test kills us first)

STORE is a store URL (``sqlite:////abs/path/runs.db``, any scheme flowdsl
opens) or, as before, the path of a SQLite file. Each process opens one store
object on it and shares it between all its runs.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from typing import Any

from flowdsl import (
    Retry,
    Store,
    arun_workflow,
    call_workflow,
    foreach,
    goto,
    ok,
    parallel,
    resume_runs,
    run_workflow,
    sequence,
    step,
    workflow,
)

# isort: split
# flowdsl's internals this script reaches into (remap here when the modules move):
from flowdsl.stores import open_store

PRICES = {"book": 12, "pen": 3, "lamp": 40}
INPUT: dict[str, Any] = {"items": ["book", "pen", "lamp"], "customer": "ada"}
BATCH = 1000
BATCH_INPUT: dict[str, Any] = {"count": BATCH}

_log_fd = -1
_kill: tuple[str, int, int] | int = 0
_points = 0


def _line(event: str, ctx: Any) -> None:
    if _log_fd >= 0:
        os.write(_log_fd, f"{event} {ctx.idempotency_key} {ctx.attempt} {os.getpid()}\n".encode())
        os.fsync(_log_fd)


def _point(ctx: Any, where: int) -> None:
    global _points
    _points += 1
    if _points == _kill or _kill == (ctx.step, ctx.attempt, where):
        os.kill(os.getpid(), signal.SIGKILL)


def _enter(ctx: Any) -> None:
    _line("start", ctx)
    _point(ctx, 1)


def _leave(ctx: Any) -> None:
    _line("end", ctx)
    _point(ctx, 3)


async def _body(ctx: Any) -> None:
    _enter(ctx)
    await asyncio.sleep(0)  # let the other branches of a parallel block interleave
    _point(ctx, 2)
    _leave(ctx)


@workflow("crash_checkout")
def crash_checkout() -> None:
    @step
    async def reserve(ctx: Any) -> Any:
        await _body(ctx)
        return ok({"reserved": list(ctx["items"])})

    with parallel():

        @step(retry=Retry(max_attempts=3, backoff="constant", base=0))
        async def charge(ctx: Any) -> Any:
            await _body(ctx)
            if ctx.attempt < 3:
                raise ConnectionError(f"payment gateway timed out (attempt {ctx.attempt})")
            return ok({"charged": sum(PRICES[item] for item in ctx["reserved"])})

        with sequence("shipping"):

            @step
            def pack(ctx: Any) -> Any:
                _enter(ctx)
                _point(ctx, 2)
                _leave(ctx)
                return ok({"parcel": {"items": len(ctx["reserved"]), "sizes": ("S", "M")}})

            @step
            async def label(ctx: Any) -> Any:
                await _body(ctx)
                return ok({"label": f"{ctx['customer']}/{ctx['parcel']['items']}"})

        @step
        async def email(ctx: Any) -> Any:
            await _body(ctx)
            return f"mailed {ctx['customer']}"

    @step
    async def audit(ctx: Any) -> Any:
        await _body(ctx)
        done = ctx.get("audits", 0) + 1
        if done < 3:
            return goto("audit", {"audits": done})
        return ok({"audits": done})

    @step
    async def confirm(ctx: Any) -> Any:
        await _body(ctx)
        return ok({"confirmation": ctx.idempotency_key})


@workflow("crash_batch")
def crash_batch() -> None:
    @step
    def prepare(ctx: Any) -> Any:
        _enter(ctx)
        _point(ctx, 2)
        _leave(ctx)
        # Over 4 KB of JSON: a SQLite store keeps it compressed, and every resume reads it back.
        numbers = list(range(ctx["count"]))
        return ok({"numbers": numbers, "labels": [f"item {n}" for n in numbers]})

    with foreach("numbers", max_concurrency=50, name="doubled"):

        @step
        async def work(ctx: Any) -> Any:
            await _body(ctx)
            return ok({"double": ctx.item * 2})

    @step
    def total(ctx: Any) -> Any:
        _enter(ctx)
        _point(ctx, 2)
        _leave(ctx)
        return ok({"total": sum(result.unwrap()["double"] for result in ctx["doubled"])})


@workflow("crash_kid")
def crash_kid() -> None:
    @step
    async def k1(ctx: Any) -> Any:
        await _body(ctx)
        return ok({"half": ctx["n"] / 2})

    @step
    async def k2(ctx: Any) -> Any:
        await _body(ctx)
        return ok({"twice": ctx["half"] * 4})


@workflow("crash_family")
def crash_family() -> None:
    @step
    async def order(ctx: Any) -> Any:
        await _body(ctx)
        return ok({"n": 3})

    call_workflow("crash_kid", input=lambda ctx: {"n": ctx["n"]}, name="kid", returns="kid")

    @step
    async def after(ctx: Any) -> Any:
        await _body(ctx)
        return ok({"got": ctx["kid"]["twice"]})


@workflow("orphan")
def orphan() -> None:
    @step(executor="pool")
    def linger(ctx: Any) -> Any:
        import time
        from pathlib import Path

        where = Path(ctx["dir"])
        (where / "worker.tmp").write_text(f"{os.getpid()} {os.getppid()}")
        (where / "worker.tmp").rename(where / "worker")  # whole, or not there
        deadline = time.monotonic() + 120
        while not (where / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        (where / "finished").write_text(str(os.getpid()))
        return ok({"finished": True})


def _orphan(where: str, start_method: str) -> None:
    from flowdsl.executors import ProcessExecutor

    with ProcessExecutor(1, start_method=start_method) as pool:
        run_workflow("orphan", {"dir": where}, executors={"pool": pool})


def _parse_kill(text: str) -> tuple[str, int, int] | int:
    if ":" in text:
        name, attempt, where = text.split(":")
        return (name, int(attempt), int(where))
    return int(text)


def _kill_in_commits(store: Store) -> None:
    """Kill points 4 and 5, in a step's commit made on the run's own thread (a lone run's on
    SQLite): 4 once its row is inserted, before the COMMIT; 5 once it has committed."""
    from flowdsl.stores import _sqlite

    if not isinstance(store, _sqlite.SQLiteStore):
        return
    insert, commit_here = _sqlite._append_job, _sqlite._Writer.commit_here

    def killing_insert(writer: Any, conn: Any, claim: Any, attempt: Any) -> None:
        insert(writer, conn, claim, attempt)
        here = threading.current_thread() is threading.main_thread()
        if here and _kill == (attempt.step, attempt.attempt, 4):
            os.kill(os.getpid(), signal.SIGKILL)

    def killing_commit_here(writer: Any, job: Any) -> bool:
        done: bool = commit_here(writer, job)
        attempt = job.args[-1]  # of a step's record; another job's last argument is no match
        if done and job.fn is killing_insert and _kill == (attempt.step, attempt.attempt, 5):
            os.kill(os.getpid(), signal.SIGKILL)
        return done

    _sqlite._append_job = killing_insert  # type: ignore[assignment]
    _sqlite._Writer.commit_here = killing_commit_here  # type: ignore[method-assign]


def _open(target: str) -> Store:
    """The store `target` names: a store URL or a SQLite file path."""
    store, _ = open_store(target)
    return store


def _run(target: str, log: str, run_id: str, kill: str, name: str = "crash_checkout") -> None:
    global _log_fd, _kill
    if kill.startswith("t"):  # at a random instant, wherever the process is
        timer = threading.Timer(int(kill[1:]) / 1e6, os.kill, (os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()
    else:
        _kill = _parse_kill(kill)
    _log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    store = _open(target)
    _kill_in_commits(store)
    try:
        resume_runs(store)
        data = {"crash_checkout": INPUT, "crash_batch": BATCH_INPUT}.get(name)
        run_workflow(name, data, run_id=run_id, store=store)
    finally:
        store.close()


def _serve(target: str, log: str) -> None:
    for request in sys.stdin:
        run_id, kill = request.split()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _run(target, log, run_id, kill)
            except BaseException:
                import traceback

                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            answer = "killed"
        else:
            answer = f"exit {os.waitstatus_to_exitcode(status)}"
        sys.stdout.write(f"{pid} {answer}\n")
        sys.stdout.flush()


async def _many(target: str, count: int, tag: str) -> int:
    store = _open(target)
    try:
        runs = await asyncio.gather(
            *(
                arun_workflow("crash_checkout", INPUT, run_id=f"{tag}-{i}", store=store)
                for i in range(count)
            )
        )
    finally:
        store.close()
    return sum(run.status == "completed" for run in runs)


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "run":
        _run(*argv[1:5])
    elif mode == "batch":
        _run(*argv[1:5], name="crash_batch")
    elif mode == "family":
        _run(*argv[1:5], name="crash_family")
    elif mode == "serve":
        _serve(argv[1], argv[2])
    elif mode == "many":
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        if sys.stdin.readline().strip() == "go":
            done = asyncio.run(_many(argv[1], int(argv[2]), argv[3]))
            sys.stdout.write(f"{done}\n")
    elif mode == "orphan":
        _orphan(argv[1], argv[2])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
