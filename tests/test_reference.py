"""The executor agrees with a small reference interpreter on random workflows.

Hypothesis draws step trees (sequences, parallel blocks in both policies,
nesting, `into` reducers) and, for every step, what it returns on each visit
(ok with a mapping or a value, nothing, error, a raise, goto forward or back,
goto END). The reference below is plain sequential Python on dict copies. The
executor must give the same status, output, failed step and reason, run the
same steps (each at most once per visit), compensate the same steps, and
leave no task behind.

One rule keeps the comparison exact: the branches of a ``fail_fast`` block are
steps or sequences of steps, which never suspend, so branches run one after
another in declaration order; the first to fail cancels the others, and those
not started yet never run. ``complete_all`` blocks may hold anything.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdsl import (
    END,
    Err,
    Ok,
    arun_workflow,
    error,
    goto,
    ok,
    parallel,
    sequence,
    step,
    workflow,
)
from flowdsl.errors import GotoError, TransitionLimitExceeded

MAX_TRANSITIONS = 12


pytestmark = pytest.mark.usefixtures("flowdsl_registry")  # each test defines its own workflows


# -- the generated program ----------------------------------------------------------------


@attrs.define
class Step:
    name: str
    compensate: bool
    behaviours: list[tuple[Any, ...]] = attrs.field(factory=list)


@attrs.define
class Seq:
    name: str
    children: list[Any]


@attrs.define
class Par:
    name: str
    fail_fast: bool
    into: tuple[Any, ...] | None
    children: list[Any]


@attrs.define
class Program:
    top: list[Any]
    counter: Counter[str] = attrs.field(factory=Counter)
    undone: list[str] = attrs.field(factory=list)


@st.composite
def programs(draw: st.DrawFn) -> Program:
    count = 0

    def new_name(prefix: str) -> str:
        nonlocal count
        count += 1
        return f"{prefix}{count}"

    def a_step() -> Step:
        return Step(new_name("s"), draw(st.booleans()))

    def plain_branch() -> Any:
        if draw(st.integers(0, 3)) == 0:
            return Seq(new_name("q"), [a_step() for _ in range(draw(st.integers(1, 3)))])
        return a_step()

    def a_block(depth: int) -> Par:
        fail_fast = draw(st.booleans())
        width = draw(st.integers(1, 3))
        if fail_fast:
            children = [plain_branch() for _ in range(width)]
        else:
            children = [any_branch(depth + 1) for _ in range(width)]
        into = draw(
            st.sampled_from([None, None, ("count",), ("fail_if_err",), ("value",), ("goto",)])
        )
        return Par(new_name("p"), fail_fast, into, children)

    def any_branch(depth: int) -> Any:
        choice = draw(st.integers(0, 3 if depth < 2 else 1))
        if choice == 2:
            inner: list[Any] = [a_step()]
            if draw(st.booleans()):
                inner.append(a_block(depth + 1))
            inner.append(a_step())
            return Seq(new_name("q"), inner)
        if choice == 3:
            return a_block(depth + 1)
        return a_step()

    top: list[Any] = []
    for _ in range(draw(st.integers(1, 5))):
        top.append(a_block(0) if draw(st.integers(0, 3)) == 0 else a_step())
    top_names = [n.name for n in top if isinstance(n, Step)]
    targets = st.sampled_from([*top_names, END]) if top_names else st.just(END)
    plain = st.one_of(
        st.tuples(
            st.just("map"), st.dictionaries(st.sampled_from("abc"), st.integers(0, 9), max_size=2)
        ),
        st.tuples(st.just("val"), st.integers(0, 9)),
        st.tuples(st.just("none")),
        st.tuples(st.just("err")),
        st.tuples(st.just("raise")),
    )
    jump = st.tuples(
        st.just("goto"),
        targets,
        st.dictionaries(st.sampled_from("ab"), st.integers(0, 9), max_size=1),
    )
    behaviour = st.one_of(plain, plain, jump)

    def fill(node: Any) -> None:
        if isinstance(node, Step):
            node.behaviours = draw(st.lists(behaviour, min_size=1, max_size=3))
        elif isinstance(node, Par):
            if node.into is not None and node.into[0] == "goto":
                node.into = ("goto", draw(targets))
            for child in node.children:
                fill(child)
        else:
            for child in node.children:
                fill(child)

    for node in top:
        fill(node)
    return Program(top)


# -- shared meaning of behaviours and reducers ------------------------------------------------


def outcome_of(node: Step, visit: int) -> Any:
    """What step `node` returns on its `visit`-th visit (the last behaviour repeats)."""
    kind, *args = node.behaviours[min(visit, len(node.behaviours)) - 1]
    if kind == "map":
        return ok(dict(args[0]))
    if kind == "val":
        return ok(args[0])
    if kind == "none":
        return None
    if kind == "err":
        return error(f"r-{node.name}-{visit}")
    if kind == "raise":
        raise ValueError(f"boom-{node.name}-{visit}")
    return goto(args[0], dict(args[1]))


def reduce_with(par: Par, results: Mapping[str, Any]) -> Any:
    assert par.into is not None
    kind = par.into[0]
    oks = [r.value for r in results.values() if isinstance(r, Ok)]
    if kind == "count":
        return ok({f"{par.name}_n": len(oks)})
    if kind == "fail_if_err":
        if len(oks) < len(results):
            return error(f"{par.name} saw errors")
        return ok({f"{par.name}_ok": True})
    if kind == "value":
        return ok(sum(v if isinstance(v, int) else 1 for v in oks))
    return goto(par.into[1], {f"{par.name}_went": True})


# -- the reference interpreter ----------------------------------------------------------------


class Fail(Exception):
    def __init__(self, step: str, reason: Any) -> None:
        self.step, self.reason = step, reason


class Written(dict[str, Any]):
    """A dict that remembers which keys were written into it, in first-write order."""

    def __init__(self, initial: Mapping[str, Any]) -> None:
        super().__init__(initial)
        self.written: dict[str, None] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        self.written[key] = None
        super().__setitem__(key, value)

    def update(self, other: Mapping[str, Any]) -> None:  # type: ignore[override]
        for key, value in other.items():
            self[key] = value


class Reference:
    """Sequential, copying, obviously-correct semantics of the contract (docs: steps and context, parallel, goto)."""

    def __init__(self, program: Program) -> None:
        self.top = program.top
        self.visits: Counter[str] = Counter()
        self.executed: list[tuple[str, int]] = []
        self.completed: list[str] = []

    def run(self, data: dict[str, Any]) -> tuple[str, dict[str, Any], str | None, Any, list[str]]:
        ctx = dict(data)
        index = {n.name: i for i, n in enumerate(self.top) if isinstance(n, Step)}
        i, jumps = 0, 0
        try:
            while i < len(self.top):
                node = self.top[i]
                route = self.step_in(node, ctx) if isinstance(node, Step) else self.block(node, ctx)
                if route is None:
                    i += 1
                elif route is END:
                    break
                else:
                    jumps += 1
                    if jumps > MAX_TRANSITIONS:
                        raise Fail(node.name, TransitionLimitExceeded())
                    i = index[route]
        except Fail as failure:
            return "failed", ctx, failure.step, failure.reason, list(reversed(self.completed))
        return "completed", ctx, None, None, []

    def call(self, node: Step) -> Any:
        self.visits[node.name] += 1
        visit = self.visits[node.name]
        self.executed.append((node.name, visit))
        try:
            out = outcome_of(node, visit)
        except ValueError as exc:
            raise Fail(node.name, exc) from None
        if isinstance(out, Err):
            raise Fail(node.name, out.error)
        if node.compensate:
            key = f"run:{node.name}" + (f"#{visit}" if visit > 1 else "")
            self.completed.append(key)
        return out

    @staticmethod
    def merge(key: str, out: Any, ctx: dict[str, Any]) -> Any:
        if isinstance(out, Ok):
            if isinstance(out.value, Mapping):
                ctx.update(out.value)
            elif out.value is not None:
                ctx[key] = out.value
            return None
        if out is None:
            return None
        ctx.update(out.update)
        return out.target

    def step_in(self, node: Step, ctx: dict[str, Any]) -> Any:
        return self.merge(node.name, self.call(node), ctx)

    def block(self, par: Par, ctx: dict[str, Any]) -> Any:
        snapshot = dict(ctx)
        results: dict[str, Any] = {}
        for child in par.children:
            try:
                results[child.name] = Ok(self.branch(child, snapshot))
            except Fail as failure:
                if par.fail_fast:
                    raise  # the siblings not started yet are cancelled: they never run
                results[child.name] = Err(failure.reason)
        if par.into is None:
            ctx["__results__"] = results
            return None
        out = reduce_with(par, results)
        if isinstance(out, Err):
            raise Fail(par.name, out.error)
        return self.merge(par.name, out, ctx)

    def branch(self, child: Any, snapshot: dict[str, Any]) -> Any:
        if isinstance(child, Step):
            out = self.call(child)
            if isinstance(out, Ok):
                return out.value
            if out is None:
                return None
            raise Fail(child.name, GotoError())
        own = Written(snapshot)
        nodes = child.children if isinstance(child, Seq) else [child]
        for node in nodes:
            route = self.step_in(node, own) if isinstance(node, Step) else self.block(node, own)
            if route is not None:
                raise Fail(node.name, GotoError())
        return {key: own[key] for key in own.written}


# -- building the same program with flowdsl ---------------------------------------------------


def visit_of(idempotency_key: str) -> int:
    """The visit number in a key: ``run:step`` is 1, ``run:step#n`` is n."""
    return int(idempotency_key.partition("#")[2] or 1)


def build(program: Program, name: str) -> Any:
    counter = program.counter

    def make_fn(node: Step) -> Any:
        async def body(ctx: Any) -> Any:
            counter[f"{node.name}@{ctx.idempotency_key}"] += 1
            return outcome_of(node, ctx.attempt and int(ctx.idempotency_key.partition("#")[2] or 1))

        return body

    def undo(ctx: Any) -> None:
        program.undone.append(ctx.idempotency_key)

    def record(node: Any) -> None:
        if isinstance(node, Step):
            step(make_fn(node), name=node.name, compensate=undo if node.compensate else None)
        elif isinstance(node, Seq):
            with sequence(node.name):
                for child in node.children:
                    record(child)
        else:
            into = (lambda ctx, results, par=node: reduce_with(par, results)) if node.into else None
            with parallel(
                name=node.name,
                on_error="fail_fast" if node.fail_fast else "complete_all",
                into=into,
            ):
                for child in node.children:
                    record(child)

    @workflow(name, max_transitions=MAX_TRANSITIONS)
    def generated() -> None:
        for node in program.top:
            record(node)

    return generated


def normal(value: Any) -> Any:
    """Compare outputs structurally: Ok/Err, mappings and exceptions by what they say."""
    if isinstance(value, Ok):
        return ("ok", normal(value.value))
    if isinstance(value, Err):
        return ("err", normal(value.error))
    if isinstance(value, GotoError | TransitionLimitExceeded):
        return type(value).__name__
    if isinstance(value, BaseException):
        return (type(value).__name__, str(value))
    if isinstance(value, Mapping):
        return {k: normal(v) for k, v in value.items()}
    return value


names = iter(range(10**9))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    program=programs(), data=st.dictionaries(st.sampled_from("abcx"), st.integers(0, 9), max_size=2)
)
def test_executor_matches_the_reference_interpreter(program: Program, data: dict[str, int]) -> None:
    """Same status, output, failed step, reason, executed steps and compensations as the reference."""
    reference = Reference(program)
    status, output, failed_step, reason, compensated = reference.run(dict(data))
    wf = build(program, f"generated_{next(names)}")

    async def main() -> Any:
        run = await arun_workflow(wf, data, run_id="run")
        await asyncio.sleep(0)
        assert set() == asyncio.all_tasks() - {asyncio.current_task()}
        return run

    run = asyncio.run(main())
    assert (status, failed_step) == (run.status, run.failed_step)
    assert normal(reason) == normal(run.error)
    assert normal(output) == normal(run.output)
    executed = Counter(
        f"{name}@run:{name}" + (f"#{visit}" if visit > 1 else "")
        for name, visit in reference.executed
    )
    assert executed == program.counter
    assert all(1 == times for times in program.counter.values())  # at most once per visit
    assert sorted(compensated) == sorted(program.undone)
