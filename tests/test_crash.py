"""Crash tests: a journaled run SIGKILLed inside a step resumes in another process.

The child (tests/crash_child.py) logs every step body's start and end to a
side file, apart from the journal. After the kills, every run must have
completed with the right output, the journal must agree with the side log,
no step whose success was committed may start again, and retry budgets must
be kept across crashes. Each test that uses a store runs once per kind of
store (the `store_kit` fixture): the children get its URL.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest
from stores import StoreKit

from flowdsl import run_workflow

# isort: split
# flowdsl's internals these tests reach into (remap here when the modules move):
from flowdsl._define import _registry

pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"), reason="needs fork and SIGKILL"
)

CHILD = Path(__file__).resolve().with_name("crash_child.py")
SRC = str(Path(__file__).resolve().parent.parent)
RANDOM_KILLS = int(os.environ.get("FLOWDSL_CRASH_KILLS", "60"))
SEED = int(os.environ.get("FLOWDSL_CRASH_SEED", "20261122"))
POINTS_PER_RUN = 33  # 11 step bodies (charge runs 3 times, audit visits 3 times) x 3 points


class Line(NamedTuple):
    at: int
    event: str
    key: str
    attempt: int
    pid: int


class Row(NamedTuple):
    key: str
    attempt: int
    succeeded: bool
    pid: int


@pytest.fixture(scope="module")
def flow() -> Iterator[ModuleType]:
    """The child's module, imported here (with its own registry) to compute expected outputs."""
    with _registry.isolated():
        spec = importlib.util.spec_from_file_location("crash_child_flow", CHILD)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    return env


def run_child(*args: str) -> int:
    done = subprocess.run(
        [sys.executable, str(CHILD), *args],
        env=child_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


def read_log(path: Path) -> list[Line]:
    lines = []
    for index, text in enumerate(path.read_text().splitlines()):
        event, key, attempt, pid = text.split()
        lines.append(Line(index, event, key, int(attempt), int(pid)))
    return lines


def read_journal(kit: StoreKit) -> dict[str, list[Row]]:
    rows: dict[str, list[Row]] = {}
    for run_id, name, visit, attempt, status, worker in kit.attempt_rows():
        key = f"{run_id}:{name}" if visit == 1 else f"{run_id}:{name}#{visit}"
        pid = int(worker.split("|")[2])  # host|pid namespace|pid|start
        rows.setdefault(run_id, []).append(Row(key, attempt, status == "succeeded", pid))
    return rows


def check(kit: StoreKit, log: Path, run_ids: list[str], killed: set[int], flow: ModuleType) -> None:
    """Every run completed right; the journal agrees with the side log; nothing ran twice."""
    with kit.open() as store:
        for run_id in run_ids:
            run = store.get_run(run_id)
            assert run is not None, run_id
            expected = run_workflow(flow.crash_checkout, flow.INPUT, run_id=run_id)
            assert ("completed", dict(expected.output)) == (run.status, dict(run.output))
        assert [] == store.list_runs("running")
    journal = check_journal(kit, log, run_ids, killed)
    for run_id in run_ids:
        # The retry budget survives crashes: attempts 1 and 2 failed, 3 succeeded, once each.
        rows = journal[run_id]
        charge = sorted((row.attempt, row.succeeded) for row in rows if row.key.endswith(":charge"))
        assert [(1, False), (2, False), (3, True)] == charge


def check_journal(
    kit: StoreKit,
    log: Path,
    run_ids: list[str],
    killed: set[int],
    calls: frozenset[str] = frozenset(),
) -> dict[str, list[Row]]:
    """The journal agrees with the side log, and no step whose success was committed reran.

    `calls` are the keys of call_workflow nodes: their work is their child run (whose own
    rows are checked), so they have no lines in the side log.
    """
    lines = read_log(log)
    journal = read_journal(kit)
    assert set(run_ids) == set(journal)
    ends = Counter((line.key, line.attempt, line.pid) for line in lines if line.event == "end")
    ended_at = {
        (line.key, line.attempt, line.pid): line.at for line in lines if line.event == "end"
    }
    last_start: dict[str, int] = {}
    for line in lines:
        if line.event == "start":
            last_start[line.key] = line.at
    journaled = set()
    for run_id in run_ids:
        rows = journal[run_id]
        for row in rows:
            if row.key in calls:
                continue
            # The journal agrees with what ran: each row is an attempt that ran to its end there.
            assert 1 == ends[(row.key, row.attempt, row.pid)], row
            journaled.add((row.key, row.attempt, row.pid))
        succeeded = [row for row in rows if row.succeeded]
        assert len({row.key for row in rows}) == len(succeeded) == len({r.key for r in succeeded})
        for row in succeeded:
            if row.key in calls:
                continue
            # A step whose success was committed never starts again.
            end = ended_at[(row.key, row.attempt, row.pid)]
            assert last_start[row.key] < end, row
    # Work that ran to its end but was never journaled was cut short by a kill: it ran again.
    for key, attempt, pid in ends.keys() - journaled:
        assert pid in killed, (key, attempt, pid)
    return journal


@pytest.mark.parametrize(
    ("kill", "reruns"),
    [
        ("reserve:1:1", set()),  # the first step, before its work
        ("charge:2:2", set()),  # the second attempt of a retried step, in a parallel block
        ("label:1:3", {"label"}),  # after label's work, before its outcome was committed
        ("audit:1:3", {"audit"}),  # inside a goto loop, work done but not committed
    ],
)
def test_a_run_killed_at_a_chosen_point_resumes_in_another_process(
    tmp_path: Path, store_kit: StoreKit, flow: ModuleType, kill: str, reruns: set[str]
) -> None:
    """Killed at a chosen point, the run resumes elsewhere; only the cut-short step reruns."""
    log = tmp_path / "steps.log"
    assert -signal.SIGKILL == run_child("run", store_kit.url, str(log), "r1", kill)
    assert 0 == run_child("run", store_kit.url, str(log), "r2", "0")
    lines = read_log(log)
    killed = {lines[0].pid}
    check(store_kit, log, ["r1", "r2"], killed, flow)
    ends = Counter(
        (line.key, line.attempt) for line in lines if line.event == "end" and line.key[:3] == "r1:"
    )
    ended_twice = {key[3:].split("#")[0] for (key, _), count in ends.items() if count > 1}
    # A step killed after its work reran; others may have too, if their commit was in flight
    # when the kill came (check() proved each rerun was cut short by the kill).
    assert reruns <= ended_twice
    if kill.startswith("charge"):
        rows = [row for row in read_journal(store_kit)["r1"] if row.key == "r1:charge"]
        first, second = {lines[0].pid}, {line.pid for line in lines} - {lines[0].pid}
        assert [(1, first), (2, second), (3, second)] == [(r.attempt, {r.pid}) for r in rows]


@pytest.mark.parametrize("store_kit", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("kill", "reruns"),
    [
        ("reserve:1:4", {"reserve"}),  # in the first step's own commit, before COMMIT
        ("reserve:1:5", set()),  # just after it: committed, so it never runs again
        ("confirm:1:4", {"confirm"}),  # the same for the last step, after a goto loop
        ("confirm:1:5", set()),
    ],
)
def test_a_run_killed_inside_a_commit_on_its_own_thread_loses_and_repeats_nothing(
    tmp_path: Path, store_kit: StoreKit, flow: ModuleType, kill: str, reruns: set[str]
) -> None:
    """A lone run on SQLite commits its steps itself: killed in there, before or after the
    COMMIT, it resumes with every committed step kept and none of them run again."""
    log = tmp_path / "steps.log"
    # The child dies only if the step's write was committed on the run's own thread.
    assert -signal.SIGKILL == run_child("run", store_kit.url, str(log), "r1", kill)
    assert 0 == run_child("run", store_kit.url, str(log), "r2", "0")
    lines = read_log(log)
    check(store_kit, log, ["r1", "r2"], {lines[0].pid}, flow)
    ends = Counter(
        (line.key, line.attempt) for line in lines if line.event == "end" and line.key[:3] == "r1:"
    )
    assert reruns == {key[3:].split("#")[0] for (key, _), count in ends.items() if count > 1}


def test_a_thousand_item_foreach_killed_midway_completes_every_item_exactly_once(
    tmp_path: Path, store_kit: StoreKit, flow: ModuleType
) -> None:
    """SIGKILLed three times in a durable foreach of 1,000 items (50 at a time), the run ends
    right: every item's success is journaled once, and no committed item starts again."""
    log = tmp_path / "steps.log"
    killed: set[int] = set()
    seen = 0

    def ran(code: int) -> None:
        nonlocal seen
        pids = {line.pid for line in read_log(log)[seen:]}
        seen = len(read_log(log))
        if code == -signal.SIGKILL:
            killed.update(pids)

    def done_items() -> int:
        return sum(
            1
            for row in store_kit.attempt_rows()
            if row[1].startswith("work[") and row[4] == "succeeded"
        )

    # Kill points count 3 per item: the first process dies about 500 items in, the second
    # about 300 items into the rest, the third at an instant that may fall inside a commit.
    assert -signal.SIGKILL == run_child("batch", store_kit.url, str(log), "b1", "1500")
    ran(-signal.SIGKILL)
    first = done_items()
    assert 0 < first < flow.BATCH, "the kill came in the middle of the block"
    assert -signal.SIGKILL == run_child("batch", store_kit.url, str(log), "b1", "900")
    ran(-signal.SIGKILL)
    assert first < done_items() < flow.BATCH
    ran(run_child("batch", store_kit.url, str(log), "b1", "t250000"))
    assert 0 == run_child("batch", store_kit.url, str(log), "b1", "0")
    ran(0)
    with store_kit.open() as store:
        run = store.get_run("b1")
        assert run is not None
        expected = run_workflow(flow.crash_batch, flow.BATCH_INPUT, run_id="b1")
        assert ("completed", dict(expected.output)) == (run.status, dict(run.output))
        assert run.output["total"] == flow.BATCH * (flow.BATCH - 1)
    # What `prepare` returned and the run's output are over 4 KB: kept compressed (SQLite).
    assert (store_kit.packed_values("b1") > 0) == store_kit.packs
    journal = check_journal(store_kit, log, ["b1"], killed)
    items = [row.key for row in journal["b1"] if row.succeeded and "work[" in row.key]
    assert sorted(items) == sorted(f"b1:work[{i}]" for i in range(flow.BATCH))
    assert len(killed) >= 2


@pytest.mark.parametrize(
    ("kill", "reruns"),
    [
        ("k1:1:3", {"kid#1:k1"}),  # in the child, its first step done but not committed
        ("k2:1:2", set()),  # in the child, in its second step
        ("after:1:1", set()),  # back in the parent, the child finished
    ],
)
def test_a_parent_killed_while_its_child_runs_resumes_the_same_child(
    tmp_path: Path, store_kit: StoreKit, flow: ModuleType, kill: str, reruns: set[str]
) -> None:
    """SIGKILLed during or after its child run, the parent resumes in another process with
    the same child run (resumed, or its recorded end used): no second child starts."""
    log = tmp_path / "steps.log"
    assert -signal.SIGKILL == run_child("family", store_kit.url, str(log), "f1", kill)
    killed = {read_log(log)[0].pid}
    assert 0 == run_child("family", store_kit.url, str(log), "f1", "0")
    with store_kit.open() as store:
        runs = {run.run_id: run for run in store.list_runs()}
        assert {"f1", "f1/kid#1"} == set(runs), "one child run, never a second"
        parent, child = runs["f1"], runs["f1/kid#1"]
        assert ("completed", "completed") == (parent.status, child.status)
        assert child.parent_id == "f1"
        assert [child.run_id] == [run.run_id for run in store.list_runs(parent="f1")]
        expected = run_workflow(flow.crash_family, run_id="f1")
        assert dict(expected.output) == dict(parent.output)
        assert parent.output["got"] == 6
    check_journal(store_kit, log, ["f1", "f1/kid#1"], killed, calls=frozenset({"f1:kid"}))
    ends = Counter(line.key for line in read_log(log) if line.event == "end")
    assert reruns <= {key.split("/", 1)[-1] for key, count in ends.items() if count > 1}


class ForkServer:
    """tests/crash_child.py in serve mode: forks one child per request (cheap kills)."""

    def __init__(self, url: str, log: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), "serve", url, str(log)],
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, run_id: str, kill: str) -> tuple[int, str]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{run_id} {kill}\n")
        self.process.stdin.flush()
        pid, answer = self.process.stdout.readline().split(maxsplit=1)
        return int(pid), answer.strip()

    def close(self) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.close()
        self.process.wait(timeout=30)
        self.process.stdout.close()


def test_randomized_kills_lose_nothing_and_rerun_nothing_committed(
    tmp_path: Path, store_kit: StoreKit, flow: ModuleType
) -> None:
    """Many runs killed at random points, each resumed by the next process: all complete."""
    log = tmp_path / "steps.log"
    rng = random.Random(SEED)
    server = ForkServer(store_kit.url, log)
    killed: set[int] = set()
    run_ids: list[str] = []
    try:
        while len(killed) < RANDOM_KILLS:
            if not run_ids or store_kit.has_run(run_ids[-1]):
                run_ids.append(f"r{len(run_ids)}")
            # else: killed while resuming the runs before it: ask for the same run again
            pid, answer = server.run(run_ids[-1], str(rng.randint(1, POINTS_PER_RUN)))
            if answer == "killed":
                killed.add(pid)
            else:
                assert "exit 0" == answer
        if not store_kit.has_run(run_ids[-1]):
            run_ids.pop()  # its child died before starting it
        pid, answer = server.run("last", "0")  # resumes whatever is left
        assert "exit 0" == answer
        run_ids.append("last")
    finally:
        server.close()
    assert len(killed) >= min(50, RANDOM_KILLS)
    check(store_kit, log, run_ids, killed, flow)


def test_kills_at_random_times_also_hit_commits(
    tmp_path: Path, store_kit: StoreKit, flow: ModuleType
) -> None:
    """Killed at any instant (inside the writer's transaction too), the journal stays whole."""
    log = tmp_path / "steps.log"
    rng = random.Random(SEED + 1)
    server = ForkServer(store_kit.url, log)
    killed: set[int] = set()
    run_ids: list[str] = []
    try:
        for _ in range(15):
            if not run_ids or store_kit.has_run(run_ids[-1]):
                run_ids.append(f"t{len(run_ids)}")
            pid, answer = server.run(run_ids[-1], f"t{rng.randint(0, 8000)}")
            if answer == "killed":
                killed.add(pid)
        if not store_kit.has_run(run_ids[-1]):
            run_ids.pop()  # its child died before starting it
        pid, answer = server.run("last", "0")
        assert "exit 0" == answer
        run_ids.append("last")
    finally:
        server.close()
    assert killed
    check(store_kit, log, run_ids, killed, flow)


def _processes() -> dict[int, tuple[int, str]]:
    """Every process of this machine: pid -> (parent pid, state), from /proc."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        state, ppid = stat.rpartition(")")[2].split()[:2]
        found[int(entry)] = (int(ppid), state)
    return found


def _descendants(pid: int) -> set[int]:
    table = _processes()
    family, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = {child for child, (ppid, _) in table.items() if ppid == parent}
        todo.extend(children - family)
        family |= children
    return family


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _alive(pids: set[int]) -> set[int]:
    """The processes of `pids` still running (a zombie has ended; its parent may never reap it)."""
    table = _processes()
    return {pid for pid in pids if pid in table and table[pid][1] not in ("Z", "X")}


def _wait_until(condition: Callable[[], bool], limit: float) -> bool:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process table in /proc")
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_process_workers_die_with_their_killed_parent(tmp_path: Path, start_method: str) -> None:
    """A SIGKILLed run takes its pool's workers, forkserver and resource tracker with it."""
    errors = tmp_path / "stderr"
    with errors.open("w") as stderr:
        parent = subprocess.Popen(
            [sys.executable, str(CHILD), "orphan", str(tmp_path), start_method],
            env=child_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    family: set[int] = set()
    try:
        assert _wait_until((tmp_path / "worker").exists, 60), errors.read_text()
        worker, worker_parent = map(int, (tmp_path / "worker").read_text().split())
        family = _descendants(parent.pid)
        commands = {pid: _command(pid) for pid in family}
        assert worker in family
        if start_method == "forkserver":
            assert "multiprocessing.forkserver" in commands[worker_parent]
        assert any("multiprocessing.resource_tracker" in text for text in commands.values())
        parent.kill()
        parent.wait(timeout=30)
        assert _wait_until(lambda: not _alive(family), 30), f"still running: {_alive(family)}"
        (tmp_path / "go").touch()  # a surviving step would go on to write its marker
        assert not (tmp_path / "finished").exists()
    finally:
        parent.kill()
        parent.wait(timeout=30)
        for pid in _alive(family):  # only what this test started, by pid
            os.kill(pid, signal.SIGKILL)
