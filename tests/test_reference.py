"""The executor agrees with a small reference interpreter on random workflows.

Hypothesis draws step trees (sequences, parallel and foreach blocks in both
policies, nesting, `into` reducers, calls of generated child workflows) and,
for every step, what it returns on each visit (ok with a mapping or a value,
nothing, error, a raise, goto forward or back, goto END; inside a foreach
body also a value or a failure made from the item). The reference below is
plain sequential Python on dict copies. The executor must give the same
status, output, failed step and reason, run the same steps (each at most once
per visit, named with the foreach indices, in the child runs the reference
names), compensate the same steps (a failed child undoes its own), and leave
no task behind.

One rule keeps the comparison exact: the branches of a ``fail_fast`` block,
and the body of a ``fail_fast`` foreach, are steps or sequences of steps,
which never suspend, so branches (items) run one after another in
declaration (item) order; the first to fail cancels the others, and those not
started yet never run. ``complete_all`` blocks may hold anything.
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
    call_workflow,
    error,
    foreach,
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
class Each:
    """A foreach block over the list the workflow's input holds under ``<name>_items``."""

    name: str
    fail_fast: bool
    into: tuple[Any, ...] | None
    max_concurrency: int | None
    children: list[Any]

    @property
    def items(self) -> str:
        return f"{self.name}_items"


@attrs.define
class Call:
    """A call_workflow of a generated child workflow, with no input or the context's a, b."""

    name: str
    pick: bool
    child: list[Any]


@attrs.define
class Program:
    top: list[Any]
    items: dict[str, list[int]] = attrs.field(factory=dict)
    """The input the foreach blocks read their items from."""
    counter: Counter[str] = attrs.field(factory=Counter)
    undone: list[str] = attrs.field(factory=list)


@st.composite
def programs(draw: st.DrawFn) -> Program:
    count = 0
    items: dict[str, list[int]] = {}
    in_body: set[str] = set()  # steps inside a foreach body: they may use the item

    def new_name(prefix: str) -> str:
        nonlocal count
        count += 1
        return f"{prefix}{count}"

    def a_step(each: bool) -> Step:
        made = Step(new_name("s"), draw(st.booleans()))
        if each:
            in_body.add(made.name)
        return made

    def plain_branch(each: bool) -> Any:
        if draw(st.integers(0, 3)) == 0:
            return Seq(new_name("q"), [a_step(each) for _ in range(draw(st.integers(1, 3)))])
        return a_step(each)

    def an_into() -> tuple[Any, ...] | None:
        return draw(
            st.sampled_from(
                [None, None, ("count",), ("fail_if_err",), ("value",), ("order",), ("goto",)]
            )
        )

    def a_block(depth: int, each: bool, calls: bool) -> Par:
        fail_fast = draw(st.booleans())
        width = draw(st.integers(1, 3))
        if fail_fast:
            children = [plain_branch(each) for _ in range(width)]
        else:
            children = [any_branch(depth + 1, each, calls) for _ in range(width)]
        return Par(new_name("p"), fail_fast, an_into(), children)

    def a_foreach(depth: int, calls: bool) -> Each:
        fail_fast = draw(st.booleans())
        if fail_fast:
            body = [a_step(True) for _ in range(draw(st.integers(1, 3)))]
        else:
            body = [any_branch(depth + 1, True, calls) for _ in range(draw(st.integers(1, 2)))]
        block = Each(new_name("f"), fail_fast, an_into(), draw(st.sampled_from([None, 1, 2])), body)
        items[block.items] = draw(st.lists(st.integers(0, 5), max_size=3))
        return block

    def a_call() -> Call:
        child: list[Any] = []
        for _ in range(draw(st.integers(1, 3))):
            child.append(
                a_block(1, False, False) if draw(st.integers(0, 3)) == 0 else a_step(False)
            )
        return Call(new_name("c"), draw(st.booleans()), child)

    def any_branch(depth: int, each: bool, calls: bool) -> Any:
        choice = draw(st.integers(0, 5 if depth < 2 else 1))
        if choice == 2:
            inner: list[Any] = [a_step(each)]
            if draw(st.booleans()):
                inner.append(a_block(depth + 1, each, calls))
            inner.append(a_step(each))
            return Seq(new_name("q"), inner)
        if choice == 3:
            return a_block(depth + 1, each, calls)
        if choice == 4:
            return a_foreach(depth + 1, calls)
        if choice == 5 and calls:
            return a_call()
        return a_step(each)

    def top_level(calls: bool) -> list[Any]:
        top: list[Any] = []
        for _ in range(draw(st.integers(1, 5))):
            choice = draw(st.integers(0, 7 if calls else 3))
            if choice == 0:
                top.append(a_block(0, False, calls))
            elif choice == 1 and calls:
                top.append(a_foreach(0, calls))
            elif choice == 2 and calls:
                top.append(a_call())
            else:
                top.append(a_step(False))
        return top

    top = top_level(True)
    program = Program(top, items)
    fill_program(draw, program.top, in_body)
    for call in calls_in(program.top):
        fill_program(draw, call.child, in_body)
    return program


def calls_in(nodes: list[Any]) -> list[Call]:
    found: list[Call] = []
    for node in nodes:
        if isinstance(node, Call):
            found.append(node)
        elif not isinstance(node, Step):
            found.extend(calls_in(node.children))
    return found


def fill_program(draw: st.DrawFn, top: list[Any], in_body: set[str]) -> None:
    """Draw each step's behaviours and aim the gotos of one workflow (a program or a child)."""
    top_names = [n.name for n in top if isinstance(n, Step | Call)]
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
    with_item = st.one_of(behaviour, st.tuples(st.sampled_from(["item", "odd"])))

    def fill(node: Any) -> None:
        if isinstance(node, Step):
            drawn = with_item if node.name in in_body else behaviour
            node.behaviours = draw(st.lists(drawn, min_size=1, max_size=3))
        elif isinstance(node, Call):
            return  # the child is filled as a workflow of its own
        else:
            if isinstance(node, Par | Each) and node.into is not None and node.into[0] == "goto":
                node.into = ("goto", draw(targets))
            for child in node.children:
                fill(child)

    for node in top:
        fill(node)


# -- shared meaning of behaviours and reducers ------------------------------------------------


def outcome_of(node: Step, visit: int, item: tuple[int, Any] | None = None) -> Any:
    """What step `node` returns on its `visit`-th visit (the last behaviour repeats);
    inside a foreach body, "item" and "odd" use `item`, the (index, item) it runs for."""
    kind, *args = node.behaviours[min(visit, len(node.behaviours)) - 1]
    if kind == "item":
        return ok({f"{node.name}_item": item})
    if kind == "odd":
        assert item is not None
        return error(f"r-{node.name}-odd-{item}") if item[1] % 2 else ok(item[0])
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


def reduce_with(par: Par | Each, results: Mapping[str, Any] | tuple[Any, ...]) -> Any:
    """A parallel block's reducer (results by branch key) or a foreach's (a tuple)."""
    assert par.into is not None
    kind = par.into[0]
    every = list(results.values() if isinstance(results, Mapping) else results)
    oks = [r.value for r in every if isinstance(r, Ok)]
    if kind == "count":
        return ok({f"{par.name}_n": len(oks)})
    if kind == "fail_if_err":
        if len(oks) < len(every):
            return error(f"{par.name} saw errors")
        return ok({f"{par.name}_ok": True})
    if kind == "value":
        return ok(sum(v if isinstance(v, int) else 1 for v in oks))
    if kind == "order":  # which branches (items) succeeded, in order
        return ok({f"{par.name}_order": tuple(isinstance(r, Ok) for r in every)})
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


def flat(nodes: list[Any]) -> list[Any]:
    """A sequence's nodes with the sequences inside it spliced in (as the compiler does)."""
    found: list[Any] = []
    for node in nodes:
        found.extend(flat(node.children) if isinstance(node, Seq) else [node])
    return found


class Reference:
    """Sequential, copying, obviously-correct semantics of the contract (docs: steps and
    context, parallel, foreach and child workflows, goto)."""

    def __init__(self, top: list[Any], run_id: str = "run") -> None:
        self.top = top
        self.run_id = run_id
        self.visits: Counter[str] = Counter()
        self.executed: list[tuple[str, str]] = []
        """(step name, idempotency key) of every step run, child runs' included."""
        self.completed: list[str] = []
        self.children_undone: list[str] = []
        """What the failed child runs compensated (each in its own run)."""

    def run(self, data: dict[str, Any]) -> tuple[str, dict[str, Any], str | None, Any, list[str]]:
        ctx = dict(data)
        index = {n.name: i for i, n in enumerate(self.top) if isinstance(n, Step | Call)}
        i, jumps = 0, 0
        try:
            while i < len(self.top):
                node = self.top[i]
                route = self.node_in(node, ctx, "", None)
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

    def visit(self, name: str) -> int:
        self.visits[name] += 1
        return self.visits[name]

    def call(self, node: Step, suffix: str, item: Any) -> Any:
        name = node.name + suffix
        visit = self.visit(name)
        key = f"{self.run_id}:{name}" + (f"#{visit}" if visit > 1 else "")
        self.executed.append((node.name, key))
        try:
            out = outcome_of(node, visit, item)
        except ValueError as exc:
            raise Fail(name, exc) from None
        if isinstance(out, Err):
            raise Fail(name, out.error)
        if node.compensate:
            self.completed.append(key)
        return out

    def child(self, node: Call, ctx: Mapping[str, Any], suffix: str) -> Any:
        """Run the child workflow as the engine does: its own run, id and journal of visits."""
        name = node.name + suffix
        child = Reference(node.child, f"{self.run_id}/{name}#{self.visit(name)}")
        data = {k: ctx[k] for k in "ab" if k in ctx} if node.pick else {}
        status, output, _, reason, compensated = child.run(data)
        self.executed.extend(child.executed)
        self.children_undone.extend(child.children_undone)
        if status == "failed":
            self.children_undone.extend(compensated)
            raise Fail(name, reason)
        return ok({node.name: output})

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

    def node_in(self, node: Any, ctx: dict[str, Any], suffix: str, item: Any) -> Any:
        """Run one node of a sequence on `ctx`; the goto route it took, if any."""
        if isinstance(node, Step):
            return self.merge(node.name, self.call(node, suffix, item), ctx)
        if isinstance(node, Call):
            return self.merge(node.name, self.child(node, ctx, suffix), ctx)
        if isinstance(node, Each):
            return self.each(node, ctx, suffix)
        return self.block(node, ctx, suffix, item)

    def block(self, par: Par, ctx: dict[str, Any], suffix: str, item: Any) -> Any:
        snapshot = dict(ctx)
        results: dict[str, Any] = {}
        for child in par.children:
            try:
                results[child.name] = Ok(self.branch(child, snapshot, suffix, item))
            except Fail as failure:
                if par.fail_fast:
                    raise  # the siblings not started yet are cancelled: they never run
                results[child.name] = Err(failure.reason)
        if par.into is None:
            ctx["__results__"] = results
            return None
        return self.reduce(par, results, ctx, suffix)

    def each(self, block: Each, ctx: dict[str, Any], suffix: str) -> Any:
        """Item i's body runs as a sequence on the block's snapshot, its names suffixed [i]."""
        snapshot = dict(ctx)
        results: list[Any] = []
        for index, item in enumerate(snapshot[block.items]):
            try:
                results.append(
                    Ok(self.sequence(block.children, snapshot, f"{suffix}[{index}]", (index, item)))
                )
            except Fail as failure:
                if block.fail_fast:
                    raise  # the items not started yet are cancelled: they never run
                results.append(Err(failure.reason))
        if block.into is None:
            ctx[block.name] = tuple(results)
            return None
        return self.reduce(block, tuple(results), ctx, suffix)

    def reduce(self, block: Par | Each, results: Any, ctx: dict[str, Any], suffix: str) -> Any:
        out = reduce_with(block, results)
        if isinstance(out, Err):
            raise Fail(block.name + suffix, out.error)
        return self.merge(block.name, out, ctx)

    def branch(self, child: Any, snapshot: dict[str, Any], suffix: str, item: Any) -> Any:
        if isinstance(child, Step | Call):
            out = self.call(child, suffix, item) if isinstance(child, Step) else None
            if isinstance(child, Call):
                out = self.child(child, snapshot, suffix)
            if isinstance(out, Ok):
                return out.value
            if out is None:
                return None
            raise Fail(child.name + suffix, GotoError())
        return self.sequence(
            child.children if isinstance(child, Seq) else [child], snapshot, suffix, item
        )

    def sequence(self, nodes: list[Any], snapshot: dict[str, Any], suffix: str, item: Any) -> Any:
        """A branch or a foreach body: its nodes in order on a copy; what they added."""
        own = Written(snapshot)
        for node in flat(nodes):
            if self.node_in(node, own, suffix, item) is not None:
                raise Fail(node.name + suffix, GotoError())
        return {key: own[key] for key in own.written}


# -- building the same program with flowdsl ---------------------------------------------------


def visit_of(idempotency_key: str) -> int:
    """The visit number in a key: ``run:step`` is 1, ``run:step#n`` is n (the run id of a
    child run, ``run/call#1``, has a '#' of its own)."""
    return int(idempotency_key.rpartition(":")[2].partition("#")[2] or 1)


def build(program: Program, name: str, top: list[Any] | None = None) -> Any:
    """Define `top` (the program's, by default) as workflow `name`; a call's child as
    ``<name>_<call>``. Every step counts its runs in ``program.counter``."""
    counter = program.counter
    nodes = program.top if top is None else top
    children = {c.name: build(program, f"{name}_{c.name}", c.child) for c in calls_in(nodes)}

    def make_fn(node: Step, each: bool) -> Any:
        async def body(ctx: Any) -> Any:
            counter[f"{node.name}@{ctx.idempotency_key}"] += 1
            item = (ctx.index, ctx.item) if each else None
            return outcome_of(node, visit_of(ctx.idempotency_key), item)

        return body

    def undo(ctx: Any) -> None:
        program.undone.append(ctx.idempotency_key)

    def record(node: Any, each: bool) -> None:
        if isinstance(node, Step):
            step(make_fn(node, each), name=node.name, compensate=undo if node.compensate else None)
        elif isinstance(node, Seq):
            with sequence(node.name):
                for child in node.children:
                    record(child, each)
        elif isinstance(node, Call):
            pick = (lambda ctx: {k: ctx[k] for k in "ab" if k in ctx}) if node.pick else None
            call_workflow(children[node.name], name=node.name, input=pick)
        else:
            into = (lambda ctx, results, par=node: reduce_with(par, results)) if node.into else None
            on_error = "fail_fast" if node.fail_fast else "complete_all"
            if isinstance(node, Each):
                block = foreach(
                    node.items,
                    name=node.name,
                    on_error=on_error,
                    into=into,
                    max_concurrency=node.max_concurrency,
                )
            else:
                block = parallel(name=node.name, on_error=on_error, into=into)
            with block:
                for child in node.children:
                    record(child, each or isinstance(node, Each))

    @workflow(name, max_transitions=MAX_TRANSITIONS)
    def generated() -> None:
        for node in nodes:
            record(node, False)

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
    if isinstance(value, tuple):  # a foreach block's results
        return tuple(normal(v) for v in value)
    if isinstance(value, list):  # items from the input come back frozen (a list subclass)
        return [normal(v) for v in value]
    return value


names = iter(range(10**9))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    program=programs(), data=st.dictionaries(st.sampled_from("abcx"), st.integers(0, 9), max_size=2)
)
def test_executor_matches_the_reference_interpreter(program: Program, data: dict[str, int]) -> None:
    """Same status, output, failed step, reason, executed steps and compensations as the reference."""
    data = {**data, **program.items}
    reference = Reference(program.top)
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
    executed = Counter(f"{name}@{key}" for name, key in reference.executed)
    assert executed == program.counter
    assert all(1 == times for times in program.counter.values())  # at most once per visit
    assert sorted(compensated + reference.children_undone) == sorted(program.undone)
