"""Workers and queues: start_workflow and RunHandle, claim order, queue limits, and workers dying.

Tests that need a worker process start tests/worker_child.py (a `Worker` on
the kit's store); its step bodies write a side log, apart from the journal,
that says which process ran what and when (``time.time()``: one clock for
every process of this host). Tests that only need a worker run one in a
thread of the test process (`serving`). Every test runs once per kind of
store (the `store_kit` fixture): workers get the kit's URL, and the database
is read behind the store's back only through the kit.

Nothing here waits a fixed time for something to happen: a test waits for
an event (a line in the side log, a status in the store) with a deadline.

The random-kill test reuses tests/test_crash.py's workflow and checks; its
size comes from the environment: FLOWDSL_WORKER_RUNS (queued runs, 300),
FLOWDSL_WORKER_KILLS (SIGKILLs, 20), FLOWDSL_WORKER_PROCESSES (workers at a
time, 3) and FLOWDSL_WORKER_SEED.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, TypeVar

import pytest
import test_crash
from polling import serving, wait_for
from stores import StoreKit

from flowdsl import (
    Queue,
    RunHandle,
    Store,
    Worker,
    astart_workflow,
    ok,
    start_workflow,
    step,
    workflow,
)
from flowdsl.errors import DefinitionError, ResultTimeout, UsageError, WorkflowNotFound

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl._define import _registry
from flowdsl.stores._protocol import ClaimRequest

CHILD = Path(__file__).resolve().with_name("worker_child.py")
CRASH_CHILD = Path(__file__).resolve().with_name("crash_child.py")
SRC = str(Path(__file__).resolve().parent.parent)

STORM_RUNS = int(os.environ.get("FLOWDSL_WORKER_RUNS", "300"))
STORM_KILLS = int(os.environ.get("FLOWDSL_WORKER_KILLS", "20"))
STORM_WORKERS = int(os.environ.get("FLOWDSL_WORKER_PROCESSES", "3"))
STORM_SEED = int(os.environ.get("FLOWDSL_WORKER_SEED", "20261123"))

T = TypeVar("T")

needs_signals = pytest.mark.skipif(
    not hasattr(signal, "SIGKILL") or not hasattr(signal, "SIGSTOP"),
    reason="needs SIGKILL, SIGSTOP and SIGTERM",
)


# -- helpers -----------------------------------------------------------------------------------


def load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def flows() -> Iterator[ModuleType]:
    """worker_child.py's workflows and queues, in a registry of this module's own."""
    with _registry.isolated():
        yield load(CHILD, "worker_child_flows")


@pytest.fixture(scope="module")
def crash_flow(flows: ModuleType) -> ModuleType:
    """crash_child.py's workflows, in the same registry (a worker child runs them too)."""
    return load(CRASH_CHILD, "worker_crash_flow")


def status(kit: StoreKit, run_id: str) -> str | None:
    found = kit.status_of(run_id)
    return None if found is None else found[0]


def completed(kit: StoreKit, *run_ids: str) -> bool:
    return all(status(kit, run_id) == "completed" for run_id in run_ids)


class Line(NamedTuple):
    """One line of worker_child.py's side log (lines of all processes, in the order written)."""

    event: str
    key: str
    attempt: int
    pid: int
    time: float

    @property
    def run_id(self) -> str:
        return self.key.rpartition(":")[0]

    @property
    def step(self) -> str:
        return self.key.rpartition(":")[2]


def read_lines(path: Path) -> list[Line]:
    lines = []
    for text in path.read_text().splitlines():
        event, key, attempt, pid, at = text.split()
        lines.append(Line(event, key, int(attempt), int(pid), float(at)))
    return lines


def rows_by_pid(kit: StoreKit, run_id: str) -> list[tuple[str, int]]:
    """The journaled step attempts of `run_id`, in commit order, as (step, pid of the writer)."""
    return [
        (row.step, int(row.worker.split("|")[2]))  # host|pid namespace|pid|start
        for row in kit.attempt_rows()
        if row.run_id == run_id
    ]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    return env


class Workers:
    """The worker processes (tests/worker_child.py) of one test, on one store and side log.

    Every process still running at teardown is killed (by its pid); what the
    processes wrote on stderr is printed then, so a failing test shows it.
    """

    def __init__(self, kit: StoreKit, directory: Path) -> None:
        self.kit = kit
        self.directory = directory
        self.log = directory / "steps.log"
        self.log.touch()
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *options: str) -> subprocess.Popen[bytes]:
        errors = self.directory / f"worker-{len(self.started)}.stderr"
        with errors.open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(CHILD), self.kit.url, str(self.log), *options],
                env=child_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.started.append(process)
        return process

    def stderr(self, process: subprocess.Popen[bytes]) -> str:
        index = self.started.index(process)
        return (self.directory / f"worker-{index}.stderr").read_text()

    def terminate(self, process: subprocess.Popen[bytes]) -> int:
        """SIGTERM, then the exit code once the worker has drained and exited."""
        process.send_signal(signal.SIGTERM)
        return process.wait(timeout=60)

    def lines(self) -> list[Line]:
        return read_lines(self.log)

    def saw(self, event: str, key: str, pid: int) -> bool:
        return any((line.event, line.key, line.pid) == (event, key, pid) for line in self.lines())

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()  # SIGKILL ends a stopped process too
            process.wait(timeout=60)
        for index, process in enumerate(self.started):
            text = (self.directory / f"worker-{index}.stderr").read_text()
            if text:
                sys.stderr.write(f"--- worker {process.pid} (exit {process.returncode}):\n{text}")


@pytest.fixture
def workers(store_kit: StoreKit, tmp_path: Path) -> Iterator[Workers]:
    found = Workers(store_kit, tmp_path)
    try:
        yield found
    finally:
        found.close()


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (one that ends as another starts: no overlap)."""
    edges = sorted([(end, -1) for _, end in spans] + [(start, 1) for start, _ in spans])
    most = now = 0
    for _, change in edges:
        now += change
        most = max(most, now)
    return most


def run_spans(lines: list[Line]) -> dict[str, tuple[float, float]]:
    """Each run's time in the side log: from its first step's start to its last step's end."""
    starts = {
        line.run_id: line.time for line in lines if (line.event, line.step) == ("start", "first")
    }
    ends = {line.run_id: line.time for line in lines if (line.event, line.step) == ("end", "last")}
    assert starts.keys() == ends.keys()
    return {run_id: (starts[run_id], ends[run_id]) for run_id in starts}


# -- start_workflow and RunHandle --------------------------------------------------------------


@pytest.mark.usefixtures("flowdsl_registry")
def test_starting_one_run_id_twice_queues_one_run(store_kit: StoreKit) -> None:
    """A second start_workflow with the run_id returns a handle to the run and queues nothing."""
    calls: list[str] = []

    @workflow
    def greet() -> None:
        @step
        def hello(ctx: Any) -> Any:
            calls.append(ctx.run_id)
            return ok({"greeting": f"hello {ctx['name']}"})

    store = store_kit.open()
    first = start_workflow(greet, {"name": "ada"}, store=store, run_id="g1")
    again = start_workflow("greet", {"name": "ada"}, store=store_kit.url, run_id="g1")
    assert ("g1", "g1") == (first.run_id, again.run_id)
    assert [("g1", "queued")] == [(run.run_id, run.status) for run in store.list_runs()]
    assert ("queued", "queued") == (first.status(), again.status())
    assert [] == calls  # starting runs nothing
    with serving(store):
        run = again.result(timeout=30)
    assert ("completed", "hello ada") == (run.status, run.output["greeting"])
    assert ["g1"] == calls
    third = start_workflow(greet, {"name": "ada"}, store=store, run_id="g1")
    assert ("g1", "completed") == (third.run_id, third.status())  # not queued again
    assert [("g1", "completed")] == [(run.run_id, run.status) for run in store.list_runs()]
    assert ["g1"] == calls


@pytest.mark.usefixtures("flowdsl_registry")
def test_a_run_id_of_another_workflow_is_refused_by_start_workflow(store_kit: StoreKit) -> None:
    """start_workflow with a run_id that another workflow's run holds is a UsageError."""

    @workflow
    def mine() -> None:
        @step
        def one(ctx: Any) -> Any:
            return ok({"x": 1})

    @workflow
    def theirs() -> None:
        @step
        def two(ctx: Any) -> Any:
            return ok({"x": 2})

    store = store_kit.open()
    start_workflow(mine, store=store, run_id="taken")
    with pytest.raises(
        UsageError, match=r"run 'taken' .* belongs to workflow 'mine', not 'theirs'"
    ):
        start_workflow(theirs, store=store, run_id="taken")
    assert [("taken", "mine")] == [(run.run_id, run.workflow) for run in store.list_runs()]


@pytest.mark.usefixtures("flowdsl_registry")
def test_result_times_out_while_the_run_goes_on(store_kit: StoreKit) -> None:
    """result(timeout=) raises ResultTimeout (a TimeoutError) and the run goes on to complete."""
    release = threading.Event()

    @workflow
    def slow() -> None:
        @step
        async def wait(ctx: Any) -> Any:
            await asyncio.to_thread(release.wait, 60)
            return ok({"waited": True})

    store = store_kit.open()
    handle = start_workflow(slow, store=store, run_id="s1")
    with pytest.raises(
        ResultTimeout, match=r"run 's1' has not finished within 0.05s \(it is queued\)"
    ):
        handle.result(timeout=0.05)  # no worker yet
    try:
        with serving(store):
            wait_for(lambda: handle.status() == "running", "the worker to claim s1")
            with pytest.raises(TimeoutError, match=r"within 0.1s \(it is running\); it goes on"):
                handle.result(timeout=0.1)
            assert "running" == handle.status()
            release.set()
            run = handle.result(timeout=30)
    finally:
        release.set()
    assert ("completed", True) == (run.status, run.output["waited"])
    assert "completed" == RunHandle("s1", store_kit.url).status()


def test_start_workflow_needs_the_workflow_registered(store_kit: StoreKit) -> None:
    """A name no workflow is registered under is WorkflowNotFound; nothing is queued."""
    store = store_kit.open()
    with pytest.raises(WorkflowNotFound, match=r"no workflow named 'nowhere'.*Import the module"):
        start_workflow("nowhere", {"x": 1}, store=store)
    assert [] == store.list_runs()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"priority": "high"}, r"priority= must be an int .*, got 'high'"),
        ({"priority": 1.5}, r"priority= must be an int .*, got 1.5"),
        ({"priority": True}, r"priority= must be an int .*, got True"),
        ({"priority": 2**31}, r"priority= must be an int from -2147483648 to 2147483647"),
        ({"priority": -(2**31) - 1}, r"priority= must be an int from -2147483648 to 2147483647"),
        ({"delay": -1}, r"delay= must be a number of seconds >= 0 or None, got -1"),
        ({"delay": "soon"}, r"delay= must be a number of seconds >= 0 or None, got 'soon'"),
        ({"delay": float("nan")}, r"delay= must be a number of seconds >= 0 or None, got nan"),
        ({"queue": ""}, r"queue= takes a Queue or a queue name, got ''"),
        ({"queue": 3}, r"queue= takes a Queue or a queue name, got 3"),
        ({"store": None}, r"start_workflow\(\) needs store=: .* e\.g\. store='sqlite:///runs.db'"),
    ],
)
@pytest.mark.usefixtures("flowdsl_registry")
def test_bad_start_arguments_are_usage_errors(
    store_kit: StoreKit, options: dict[str, Any], message: str
) -> None:
    """A bad priority, delay, queue or store is a UsageError saying what is wrong; nothing queued."""

    @workflow
    def plain() -> None:
        @step
        def one(ctx: Any) -> Any:
            return ok({"x": 1})

    store = store_kit.open()
    with pytest.raises(UsageError, match=message):
        start_workflow(plain, **{"store": store, **options})
    assert [] == store.list_runs()


def test_queue_and_worker_settings_are_checked() -> None:
    """Bad Queue limits are a DefinitionError, two declarations of one name too; bad Worker args."""
    with _registry.isolated():
        with pytest.raises(
            DefinitionError, match=r"Queue\('q'\) .*concurrency= must be an int >= 1"
        ):
            Queue("q", concurrency=0)
        with pytest.raises(DefinitionError, match=r"rate_limit= takes \(count, seconds\)"):
            Queue("q", rate_limit=5)  # type: ignore[arg-type]
        # A store keeps the limits in integer columns: what does not fit is refused here.
        with pytest.raises(DefinitionError, match=r"concurrency= must be at most 2147483647"):
            Queue("q", concurrency=2**63)
        with pytest.raises(DefinitionError, match=r"rate_limit's count must be at most"):
            Queue("q", rate_limit=(2**31, 1.0))
        Queue("q", concurrency=2)
        Queue("q", concurrency=2)  # the same declaration again (a module imported twice)
        with pytest.raises(DefinitionError, match=r"Queue\('q'\) .* is declared already"):
            Queue("q", concurrency=3)
    with pytest.raises(UsageError, match=r"concurrency= must be an int >= 1, got 0"):
        Worker("sqlite:///unused.db", concurrency=0)
    with pytest.raises(UsageError, match=r"modules= takes a list .* write modules=\['app'\]"):
        Worker("sqlite:///unused.db", modules="app")


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ("emails", r"queues= takes a list of queues, got 'emails'; write queues=\['emails'\]"),
        (Queue, r"queues= takes a list of queues, got Queue\('emails'.*\]"),
        ([], r"queues= is empty: the worker would serve no queue; .* queues=None"),
        (["emails", 3], r"queues= takes queue names or Queue objects, got 3"),
        (3, r"queues= takes a list of queue names or Queue objects, or None, got 3"),
    ],
)
def test_a_worker_is_given_a_list_of_queues(queues: Any, message: str) -> None:
    """One queue name (or Queue) where a list is due, or no queue at all, is a UsageError."""
    with _registry.isolated():
        if queues is Queue:
            queues = Queue("emails")
        with pytest.raises(UsageError, match=message):
            Worker("sqlite:///unused.db", queues=queues)


# -- the order of claims, and delays ----------------------------------------------------------


@pytest.mark.usefixtures("flowdsl_registry")
def test_a_worker_runs_higher_priority_first_then_oldest(store_kit: StoreKit) -> None:
    """One worker of concurrency 1 takes a queue's runs by priority (higher first), then age."""
    order: list[str] = []

    @workflow
    def ordered() -> None:
        @step
        def note(ctx: Any) -> Any:
            order.append(ctx.run_id)
            return ok({"done": True})

    store = store_kit.open()
    # Run ids sort the other way round from their age, so "oldest" cannot be the run_id.
    queued = [
        ("z-low-old", 0),
        ("y-high-old", 5),
        ("x-low-new", 0),
        ("w-high-new", 5),
        ("v-neg", -1),
    ]
    for run_id, priority in queued:
        start_workflow(ordered, store=store, run_id=run_id, priority=priority)
    with serving(store, concurrency=1):
        wait_for(lambda: completed(store_kit, *(r for r, _ in queued)), "every run to complete")
    assert ["y-high-old", "w-high-new", "z-low-old", "x-low-new", "v-neg"] == order


@pytest.mark.usefixtures("flowdsl_registry")
def test_a_delayed_run_is_not_claimed_before_its_time(store_kit: StoreKit) -> None:
    """Store.claim passes over a run whose delay= has not passed, and takes it once it has."""

    @workflow
    def later() -> None:
        @step
        def one(ctx: Any) -> Any:
            return ok({"x": 1})

    store = store_kit.open()
    start_workflow(later, store=store, run_id="later", delay=3600)
    start_workflow(later, store=store, run_id="now", delay=0)
    request = ClaimRequest(10, ((later.name, later.plan.fingerprint),))
    claimed = asyncio.run(store.claim(request))
    assert ["now"] == [opened.run_id for opened in claimed]
    assert [] == asyncio.run(store.claim(request))
    assert ("queued", None) == store_kit.status_of("later")
    store_kit.make_available("later")
    claimed += asyncio.run(store.claim(request))
    assert ["now", "later"] == [opened.run_id for opened in claimed]
    assert all(opened.fresh and opened.claim is not None for opened in claimed)
    for opened in claimed:
        assert opened.claim is not None
        store.release(opened.claim)


@pytest.mark.usefixtures("flowdsl_registry")
def test_a_worker_starts_a_delayed_run_when_its_time_comes(store_kit: StoreKit) -> None:
    """A worker runs what is due and leaves a delayed run queued until its time has come."""

    @workflow
    def later() -> None:
        @step
        def one(ctx: Any) -> Any:
            return ok({"x": 1})

    store = store_kit.open()
    start_workflow(later, store=store, run_id="later", delay=3600)  # older: looked at first
    soon = start_workflow(later, store=store, run_id="soon")
    with serving(store):
        assert "completed" == soon.result(timeout=30).status
        assert ("queued", None) == store_kit.status_of("later")
        store_kit.make_available("later")
        assert "completed" == RunHandle("later", store).result(timeout=30).status


# -- which runs a worker takes ----------------------------------------------------------------


@pytest.mark.usefixtures("flowdsl_registry")
def test_a_worker_claims_only_runs_of_its_own_definitions(store_kit: StoreKit) -> None:
    """A run queued by another definition of a workflow, or of a workflow it lacks, stays queued."""
    store = store_kit.open()
    with _registry.isolated():

        @workflow("versioned")
        def second_version() -> None:
            @step
            def renamed(ctx: Any) -> Any:
                return ok({"version": 2})

        @workflow("elsewhere")
        def elsewhere() -> None:
            @step
            def one(ctx: Any) -> Any:
                return ok({"x": 1})

        start_workflow(second_version, store=store, run_id="by-v2")
        start_workflow(elsewhere, store=store, run_id="not-here")

    @workflow("versioned")
    def first_version() -> None:
        @step
        def original(ctx: Any) -> Any:
            return ok({"version": 1})

    ours = start_workflow(first_version, store=store, run_id="by-v1")  # queued last
    with serving(store):
        run = ours.result(timeout=30)
    assert ("completed", 1) == (run.status, run.output["version"])
    assert ("queued", None) == store_kit.status_of("by-v2")
    assert ("queued", None) == store_kit.status_of("not-here")
    with _registry.isolated():
        _registry.unregister("versioned")
        _registry.register(second_version)
        with serving(store):  # a worker with that definition takes it
            assert 2 == RunHandle("by-v2", store).result(timeout=30).output["version"]
    assert ("queued", None) == store_kit.status_of("not-here")


@pytest.mark.usefixtures("flowdsl_registry")
def test_a_worker_serves_only_the_queues_it_is_given(store_kit: StoreKit) -> None:
    """Worker(queues=[...]) leaves other queues' runs queued; a run without queue= is "default"."""
    emails = Queue("emails")

    @workflow
    def send() -> None:
        @step
        def one(ctx: Any) -> Any:
            return ok({"sent": True})

    store = store_kit.open()
    start_workflow(send, store=store, run_id="to-reports", queue="reports")
    mail = start_workflow(send, store=store, run_id="to-emails", queue=emails)
    plain = start_workflow(send, store=store, run_id="to-default")
    with serving(store, queues=[emails, "default"]):
        assert ["completed", "completed"] == [h.result(timeout=30).status for h in (mail, plain)]
        assert ("queued", None) == store_kit.status_of("to-reports")
    with serving(store, queues=["reports"]):
        assert "completed" == RunHandle("to-reports", store).result(timeout=30).status


# -- queue limits across worker processes -----------------------------------------------------


@needs_signals
def test_queue_concurrency_holds_across_worker_processes(
    store_kit: StoreKit, workers: Workers, flows: ModuleType
) -> None:
    """Queue("capped", concurrency=2): two workers of concurrency 5 never run more than 2 at once."""
    store = store_kit.open()
    run_ids = [f"c{i}" for i in range(20)]
    for run_id in run_ids:
        # Each run waits in `middle` until 2 runs are in progress: the limit is reached.
        start_workflow(
            flows.job, {"meet": 2, "hold": 0.05}, store=store, queue="capped", run_id=run_id
        )
    pair = [workers.start("--concurrency", "5") for _ in range(2)]
    wait_for(lambda: completed(store_kit, *run_ids), "the 20 runs to complete", timeout=120)
    assert [0, 0] == [workers.terminate(process) for process in pair]
    spans = run_spans(workers.lines())
    assert set(run_ids) == set(spans)
    assert 2 == max_overlap(list(spans.values()))


@needs_signals
def test_a_rate_limit_holds_in_every_window(
    store_kit: StoreKit, workers: Workers, flows: ModuleType
) -> None:
    """Queue("paced", rate_limit=(3, 1.0)): no 1 s window holds more than 3 starts; all 12 run."""
    count, period = flows.PACED.rate_limit
    store = store_kit.open()
    run_ids = [f"p{i}" for i in range(12)]
    for run_id in run_ids:
        start_workflow(flows.job, {}, store=store, queue="paced", run_id=run_id)
    pair = [workers.start("--concurrency", "5") for _ in range(2)]
    wait_for(lambda: completed(store_kit, *run_ids), "the 12 runs to complete", timeout=120)
    assert [0, 0] == [workers.terminate(process) for process in pair]
    claims = {run_id: store_kit.claimed_at(run_id) for run_id in run_ids}
    starts = {
        line.run_id: line.time
        for line in workers.lines()
        if (line.event, line.step) == ("start", "first")
    }
    assert set(run_ids) == set(starts)
    # The store's record: the n+1-th first claim after any claim comes a period later or more
    # (a claim is refused while n claims are newer than `now - period`).
    claimed = sorted(at for at in claims.values() if at is not None)
    assert len(run_ids) == len(claimed)
    assert [] == [(a, b) for a, b in zip(claimed, claimed[count:], strict=False) if a > b - period]
    # The steps: each started after its run's claim, within `delay` of it; so the starts are
    # as far apart as the claims, less that delay (a step cannot start before its claim).
    delays = [starts[run_id] - at for run_id, at in claims.items() if at is not None]
    assert min(delays) >= 0
    delay = max(delays)
    assert delay < period  # else the check below would say nothing
    begun = sorted(starts.values())
    assert [] == [
        (a, b) for a, b in zip(begun, begun[count:], strict=False) if a > b - (period - delay)
    ]
    assert len(begun) > count  # the limit delays starts; it does not drop runs


# -- workers dying, freezing and stopping ------------------------------------------------------


@needs_signals
def test_workers_killed_at_random_lose_nothing_and_rerun_nothing_committed(
    store_kit: StoreKit, workers: Workers, crash_flow: ModuleType, tmp_path: Path
) -> None:
    """Runs survive SIGKILLed workers: all complete right, once, one worker at a time."""
    crash = crash_flow
    # Three generators, so what one draws never depends on how often another was asked.
    thresholds, points, victims = (random.Random(f"{STORM_SEED}-{use}") for use in range(3))
    crash_log = tmp_path / "crash.log"
    crash_log.touch()
    store = store_kit.open()
    run_ids = [f"w{i}" for i in range(STORM_RUNS)]

    async def queue_all() -> None:
        await asyncio.gather(
            *(
                astart_workflow(crash.crash_checkout, crash.INPUT, store=store, run_id=run_id)
                for run_id in run_ids
            )
        )

    asyncio.run(queue_all())
    killed: set[int] = set()

    def start(kill: int) -> subprocess.Popen[bytes]:
        options = ["--crash-log", str(crash_log), "--kill", str(kill), "--concurrency", "8"]
        return workers.start(*options)

    def kill_point() -> int:  # half the workers die at a kill point inside a step of theirs
        return points.randint(1, 300) if points.random() < 0.5 else 0

    live = [start(kill_point()) for _ in range(STORM_WORKERS)]
    tail = Tail(crash_log)
    # The side log has 2 lines per step body, 22 per run, more when steps rerun: the
    # SIGKILLs the test sends all fall within its first half, while the runs still go on.
    gap = max(1, STORM_RUNS * 22 // (2 * STORM_KILLS))
    next_kill = thresholds.randint(1, gap)
    deadline = time.monotonic() + 300
    looked = 0.0
    while True:
        if time.monotonic() - looked > 0.2:
            if completed_all(store, len(run_ids)):
                break
            looked = time.monotonic()
        for process in list(live):
            code = process.poll()
            if code is None:
                continue
            assert -signal.SIGKILL == code, workers.stderr(process)
            killed.add(process.pid)
            live.remove(process)
            live.append(start(kill_point() if len(killed) < STORM_KILLS else 0))
        tail.read()
        busy = [process for process in live if process.pid in tail.pids]
        if len(killed) < STORM_KILLS and tail.lines >= next_kill and busy:
            victims.choice(busy).kill()  # at any instant: inside a step, a commit, a claim
            next_kill += thresholds.randint(1, gap)
        assert time.monotonic() < deadline, f"{len(killed)} kills so far; runs still unfinished"
        time.sleep(0.01)
    assert [0] * len(live) == [workers.terminate(process) for process in live]
    assert len(killed) >= STORM_KILLS
    test_crash.check(store_kit, crash_log, run_ids, killed, crash)
    # One worker at a time: a run's side-log lines come in blocks, one per process, and
    # every block but the last is a process that was killed (it was not going on elsewhere).
    blocks: dict[str, list[int]] = {}
    for line in test_crash.read_log(crash_log):
        pids = blocks.setdefault(line.key.partition(":")[0], [])
        if not pids or pids[-1] != line.pid:
            pids.append(line.pid)
    for run_id, pids in blocks.items():
        assert len(pids) == len(set(pids)), (run_id, pids)
        assert set(pids[:-1]) <= killed, (run_id, pids)


def completed_all(store: Store, count: int) -> bool:
    return len(store.list_runs("completed")) == count


class Tail:
    """What a side log (test_crash's format) has grown by: its line count, the pids in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0
        self.pids: set[int] = set()

    def read(self) -> None:
        with self.path.open("rb") as file:
            file.seek(self.offset)
            data = file.read()
        whole = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(whole)
        for text in whole.splitlines():
            self.lines += 1
            self.pids.add(int(text.split()[3]))


def freeze(process: subprocess.Popen[bytes], kit: StoreKit, run_id: str) -> float:
    """SIGSTOP `process` just after it renewed its lease on `run_id`; when that lease expires.

    Stopping it right after a renewal stops it between two writes, so it holds
    no lock of the database while it is frozen (its next write is lease/3 away).
    """
    before = kit.lease_expires(run_id)
    wait_for(lambda: kit.lease_expires(run_id) != before, f"a renewal of {run_id}'s lease")
    os.kill(process.pid, signal.SIGSTOP)
    return kit.lease_expires(run_id)


@needs_signals
def test_a_frozen_worker_loses_its_run_and_commits_nothing_more_of_it(
    store_kit: StoreKit, workers: Workers, flows: ModuleType, tmp_path: Path
) -> None:
    """A worker SIGSTOPped past its lease: another completes the run; woken, it writes nothing."""
    gate = tmp_path / "gate"
    store = store_kit.open()
    start_workflow(flows.job, {"gate": str(gate)}, store=store, run_id="f1")
    frozen = workers.start("--gated", "--lease", "1.0", "--concurrency", "1")
    wait_for(lambda: workers.saw("start", "f1:middle", frozen.pid), "f1's middle step to start")
    expires = freeze(frozen, store_kit, "f1")
    try:
        other = workers.start("--lease", "1.0")
        wait_for(lambda: completed(store_kit, "f1"), "another worker to complete f1")
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    taken = next(
        line
        for line in workers.lines()
        if (line.event, line.key, line.pid) == ("start", "f1:middle", other.pid)
    )
    assert taken.time >= expires  # not taken over while the frozen worker's lease held
    gate.touch()  # the frozen worker's step goes on to its end, then tries to commit it
    wait_for(lambda: workers.saw("end", "f1:middle", frozen.pid), "the woken step to end")
    assert 0 == workers.terminate(other)
    # The woken worker goes on serving: it runs f2 (no other worker is left) once it is done
    # with f1, so by then anything it could have written of f1 would be in the journal.
    after = start_workflow(flows.job, {"n": 21}, store=store, run_id="f2")
    run = after.result(timeout=30)
    assert ("completed", 42, frozen.pid) == (run.status, run.output["n"], run.output["last_by"])
    assert [("first", frozen.pid), ("middle", other.pid), ("last", other.pid)] == rows_by_pid(
        store_kit, "f1"
    )
    record = store.get_run("f1")
    assert record is not None
    assert ("completed", frozen.pid, other.pid, other.pid) == (
        record.status,
        record.output["first_by"],
        record.output["middle_by"],
        record.output["last_by"],
    )
    assert 0 == workers.terminate(frozen)
    said = workers.stderr(frozen)
    assert "run 'f1' stopped in this worker" in said, said
    assert "no longer owned" in said, said


@needs_signals
def test_sigterm_lets_the_runs_in_hand_finish_and_claims_no_more(
    store_kit: StoreKit, workers: Workers, flows: ModuleType, tmp_path: Path
) -> None:
    """SIGTERM: the worker stops claiming, its runs finish within the grace, and it exits 0."""
    store = store_kit.open()
    run_ids = ["d0", "d1", "d2"]
    gates = {run_id: tmp_path / f"gate-{run_id}" for run_id in run_ids}
    for run_id in run_ids:
        start_workflow(flows.job, {"gate": str(gates[run_id])}, store=store, run_id=run_id)
    worker = workers.start("--gated", "--concurrency", "2", "--grace", "60")

    def in_hand() -> list[str]:
        return [
            line.run_id
            for line in workers.lines()
            if (line.event, line.step) == ("start", "middle")
        ]

    held = wait_for(lambda: len(in_hand()) == 2 and in_hand(), "two runs to reach their gates")
    (rest,) = set(run_ids) - set(held)
    worker.send_signal(signal.SIGTERM)
    wait_for(lambda: workers.saw("stopping", "-", worker.pid), "the worker to be told to stop")
    # One run finishes: a slot frees up while the other run still holds the worker open.
    gates[held[0]].touch()
    wait_for(lambda: completed(store_kit, held[0]), f"{held[0]} to complete")
    for gate in gates.values():  # had the worker claimed the third run, it would finish too
        gate.touch()
    assert 0 == worker.wait(timeout=60)
    for run_id in held:
        run = store.get_run(run_id)
        assert run is not None
        assert ("completed", worker.pid) == (run.status, run.output["last_by"])
    assert ("queued", None) == store_kit.status_of(rest)
    assert [] == [line for line in workers.lines() if line.run_id == rest]


@needs_signals
def test_sigint_stops_a_worker_as_sigterm_does(
    store_kit: StoreKit, workers: Workers, flows: ModuleType
) -> None:
    """Worker.run() stops on SIGINT too, and returns normally: the process exits 0."""
    store = store_kit.open()
    handle = start_workflow(flows.job, {"n": 1}, store=store, run_id="i1")
    worker = workers.start()
    assert 2 == handle.result(timeout=30).output["n"]  # it is up and serving
    worker.send_signal(signal.SIGINT)
    assert 0 == worker.wait(timeout=60)
    assert workers.saw("stopping", "-", worker.pid)


@needs_signals
def test_sigterm_hands_runs_back_after_the_grace_for_another_worker(
    store_kit: StoreKit, workers: Workers, flows: ModuleType, tmp_path: Path
) -> None:
    """Runs still going when the grace ends are released, not cancelled; another completes them."""
    gate = tmp_path / "gate"  # never opened: the first worker's runs cannot finish
    store = store_kit.open()
    run_ids = ["h0", "h1"]
    for run_id in run_ids:
        start_workflow(flows.job, {"gate": str(gate)}, store=store, run_id=run_id)
    first = workers.start("--gated", "--concurrency", "2", "--grace", "0.2")
    for run_id in run_ids:
        wait_for(
            lambda r=run_id: workers.saw("start", f"{r}:middle", first.pid),
            f"{run_id} to reach the gate",
        )
    assert 0 == workers.terminate(first)
    for run_id in run_ids:
        assert ("running", None) == store_kit.status_of(run_id)  # unowned, to be resumed
    second = workers.start()
    wait_for(lambda: completed(store_kit, *run_ids), "the second worker to complete both runs")
    assert 0 == workers.terminate(second)
    for run_id in run_ids:
        run = store.get_run(run_id)
        assert run is not None
        assert ("completed", first.pid, second.pid) == (
            run.status,
            run.output["first_by"],
            run.output["last_by"],
        )
        assert [("first", first.pid), ("middle", second.pid), ("last", second.pid)] == rows_by_pid(
            store_kit, run_id
        )
        assert not workers.saw("end", f"{run_id}:middle", first.pid)  # cut short by the hand-over
