"""COMPILE: spec tree -> `Plan`, checking every rule of a workflow definition.

One `_PlanBuilder` per workflow walks the spec tree once and lowers it to plan
nodes with everything the executor needs precomputed. Each object (the
workflow, a step, a block) is checked in one pass: all of its problems are
collected and raised together as one `DefinitionError` that names the
workflow, the object, its ``file:line``, and the fix for each. The scalar
checks themselves are `flowdsl._checks`'s; the recording calls
(`_dsl`) check only what they must to record at all (that they are inside a
workflow body).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
from collections.abc import Callable, Mapping

from .._checks import (
    arity_problem,
    count_problem,
    hook_problem,
    name_problem,
    retry_problems,
    seconds_problem,
)
from .._plan import (
    AGEN,
    ASYNC,
    REMOTE,
    SYNC,
    THREAD,
    CallNode,
    End,
    ForeachNode,
    Node,
    ParallelNode,
    Plan,
    Retry,
    Schedule,
    SequenceNode,
    StepNode,
    WaitNode,
    Where,
    is_async_callable,
)
from ..errors import DefinitionError
from ._registry import get_workflow, workflows
from ._schedules import schedule_problems
from ._spec import (
    CallSpec,
    ForeachSpec,
    NodeSpec,
    ParallelSpec,
    SequenceSpec,
    StepSpec,
    WaitSpec,
    WorkflowSpec,
)

__all__ = ["compile_workflow"]

_ON_ERROR = ("fail_fast", "complete_all")
_RESERVED_KEYS = ("__results__",)
_EXECUTOR_HINT = "'inline', 'thread', 'process' or a name given in executors="


def _schedule(spec: WorkflowSpec) -> tuple[Schedule | None, list[str]]:
    """The workflow's `Schedule` (None without ``schedule=``), and what is wrong with it."""
    if spec.schedule is None:
        given = [
            option
            for option, value in (("timezone=", spec.timezone), ("catch_up=", spec.catch_up))
            if value is not None
        ]
        if given:
            return None, [f"{' and '.join(given)} only apply with schedule='<cron>'"]
        return None, []
    timezone = "UTC" if spec.timezone is None else spec.timezone
    catch_up = "latest" if spec.catch_up is None else spec.catch_up
    problems = schedule_problems(spec.schedule, timezone, catch_up)
    if problems:
        return None, problems
    return Schedule(spec.schedule, timezone, catch_up), []  # type: ignore[arg-type]


def _executor_problem(value: object) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return None
    return f"executor= takes {_EXECUTOR_HINT}, got {value!r}"


class _PlanBuilder:
    """Builds one `Plan`; every problem is raised with the workflow's name in front."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        self.steps: dict[str, StepNode] = {}
        self.step_specs: dict[str, StepSpec] = {}
        self.keys: dict[str, str] = {}  # result key -> step name that writes it
        self.blocks: dict[str, Where] = {}
        self.shape: list[str] = []
        self.top_steps: dict[str, int] = {}
        self.counts: dict[str, int] = {}  # unnamed waits of each kind so far (their names)
        self.routes: list[tuple[str, Where, str]] = []  # (what declares it, where, target)
        self.waits: dict[str, WaitNode] = {}
        self.parallels = 0  # parallel blocks lowered so far (naming the unnamed ones)
        self.foreachs = 0  # foreach blocks lowered so far
        self.calls: dict[str, Where] = {}
        self.call_nodes: dict[str, CallNode] = {}

    # -- errors --------------------------------------------------------------------------

    def fail(self, what: str, where: Where, problems: list[str] | str) -> DefinitionError:
        """One error for every problem of one object (`what`, written at `where`)."""
        if isinstance(problems, str):
            problems = [problems]
        if len(problems) == 1:
            text = problems[0]
        else:
            text = f"{len(problems)} problems: " + "; ".join(
                f"({n}) {problem}" for n, problem in enumerate(problems, 1)
            )
        prefix = f"workflow {self.spec.name!r}, {what}" if what else f"workflow {self.spec.name!r}"
        return DefinitionError(f"{prefix} ({where}): {text}")

    # -- the walk ------------------------------------------------------------------------

    def build(self) -> Plan:
        spec = self.spec
        if not isinstance(spec.name, str) or not spec.name:
            msg = f"{spec.where}: a workflow name must be a non-empty string, got {spec.name!r}"
            raise DefinitionError(msg)
        schedule, problems = _schedule(spec)
        problems += [
            p
            for p in (
                seconds_problem(spec.timeout, "timeout"),
                count_problem(spec.max_transitions, "max_transitions"),
                _executor_problem(spec.executor),
            )
            if p is not None
        ]
        if not spec.children:
            empty = "is empty; define at least one @step inside its body"
            if not problems:
                msg = f"workflow {spec.name!r} ({spec.where}) {empty}"
                raise DefinitionError(msg)
            problems.append(f"it {empty}")
        if problems:
            raise self.fail("", spec.where, problems)
        nodes = self.lower_sequence(spec.children, path="", top=True)
        for what, where, target in self.routes:
            self.check_route(what, where, target)
        shape = tuple(self.shape)
        timeout = spec.timeout
        return Plan(
            name=spec.name,
            qualname=spec.qualname,
            where=spec.where,
            nodes=nodes,
            targets=dict(self.top_steps),
            steps=dict(self.steps),
            waits=dict(self.waits),
            calls=dict(self.call_nodes),
            schedule=schedule,
            timeout=float(timeout) if timeout is not None else None,  # type: ignore[arg-type]
            max_transitions=spec.max_transitions,  # type: ignore[arg-type]
            shape=shape,
            fingerprint=hashlib.sha256("\n".join(shape).encode()).hexdigest()[:16],
        )

    def lower_sequence(
        self,
        children: tuple[NodeSpec, ...],
        path: str,
        top: bool,
        out: list[Node] | None = None,
    ) -> tuple[Node, ...]:
        """Lower the children of a sequence; nested sequences are flattened into it."""
        out = [] if out is None else out
        for child in children:
            if isinstance(child, SequenceSpec):
                self.check_sequence(child)
                self.lower_sequence(child.children, path, top, out)
            elif isinstance(child, StepSpec):
                out.append(self.lower_step(child, path, len(out) if top else -1))
            else:
                out.append(self.lower_node(child, path, len(out) if top else -1))
        return tuple(out)

    def lower_node(self, child: NodeSpec, path: str, top_index: int) -> Node:
        """Lower a step, wait, call or block (not a sequence: its caller flattens those)."""
        if isinstance(child, StepSpec):
            return self.lower_step(child, path, top_index)
        if isinstance(child, WaitSpec):
            return self.lower_wait(child, path, top_index)
        if isinstance(child, CallSpec):
            return self.lower_call(child, path, top_index)
        if isinstance(child, ForeachSpec):
            return self.lower_foreach(child, path, top_index)
        return self.lower_parallel(child, path, top_index)  # type: ignore[arg-type]

    def lower_branch(self, child: NodeSpec, path: str) -> Node:
        if isinstance(child, SequenceSpec):
            self.check_sequence(child)
            sub = f"{path}{child.name}/"
            self.shape.append(f"sequence {sub}")
            return SequenceNode(
                name=child.name,
                key=child.name,
                children=self.lower_sequence(child.children, sub, top=False),
                where=child.where,
            )
        return self.lower_node(child, path, -1)

    def check_sequence(self, spec: SequenceSpec) -> None:
        self.check_block_name(spec.name, "sequence", spec.where)
        if not spec.children:
            raise self.fail(
                f"sequence {spec.name!r}",
                spec.where,
                "the block is empty; put at least one @step inside it",
            )

    # -- steps ---------------------------------------------------------------------------

    def lower_step(self, spec: StepSpec, path: str, top_index: int) -> StepNode:
        name = spec.name
        if not isinstance(name, str) or not name:
            raise self.fail("", spec.where, f"a step name must be a non-empty string, got {name!r}")
        what = f"step {name!r}"
        problems = self.identity_problems(spec)
        mode, executor, how = self.step_mode(spec)
        problems.extend(how)
        problem = arity_problem(spec.fn, 1, f"{name}(ctx)")
        if problem is not None:
            problems.append(
                f"{problem}; a step takes one argument, the context: def {name}(ctx): ..."
            )
        problems.extend(self.option_problems(spec))
        if problems:
            raise self.fail(what, spec.where, problems)
        self.routes.extend(
            (f"step {name!r}", spec.where, target)
            for target in spec.routes
            if isinstance(target, str)
        )
        key = spec.key
        node = StepNode(
            name=name,
            key=key,
            fn=spec.fn,
            mode=mode,
            retry=spec.retry,
            timeout=float(spec.timeout) if spec.timeout is not None else None,
            compensate=spec.compensate,  # type: ignore[arg-type]  # checked above
            routes=spec.routes,
            executor=executor,
            where=spec.where,
            top_index=top_index,
        )
        self.step_specs[name] = spec
        self.steps[name] = node
        self.keys[key] = name
        if top_index >= 0:
            self.top_steps[name] = top_index
        self.shape.append(f"step {path}{name} -> {key}")
        return node

    def identity_problems(self, spec: StepSpec) -> list[str]:
        """Whether the step's name and result key are its own."""
        name = spec.name
        problems: list[str] = []
        if name in self.step_specs:
            first = self.step_specs[name].where
            problems.append(
                f"duplicate step name; another step with this name is at {first}. "
                f"Rename one, e.g. @step(name={name + '_2'!r})"
            )
        if name in self.blocks:
            problems.append(
                f"a block is already named {name!r} (at {self.blocks[name]}); rename one of them"
            )
        if name in self.waits:
            problems.append(
                f"a wait is already named {name!r} (at {self.waits[name].where}); rename one "
                f"of them"
            )
        if name in self.calls:
            problems.append(
                f"a call_workflow is already named {name!r} (at {self.calls[name]}); rename "
                f"one of them"
            )
        returns_problem = name_problem(spec.returns, "returns=", optional=True)
        if returns_problem is not None:
            problems.append(returns_problem)
            return problems
        key = spec.key
        if key in _RESERVED_KEYS:
            problems.append(f"{key!r} is reserved for parallel results; choose returns=")
        if key in self.keys:
            problems.append(
                f"duplicate result key {key!r}: step {self.keys[key]!r} already stores its "
                f"value there; give one of them another returns="
            )
        return problems

    def option_problems(self, spec: StepSpec) -> list[str]:
        """What is wrong with the step's retry=, timeout=, compensate= and routes=."""
        problems: list[str] = []
        retry = spec.retry
        if retry is not None and not isinstance(retry, Retry):
            problems.append(
                f"retry= takes a flowdsl.Retry(...), got {retry!r}; "
                f"write retry=Retry(max_attempts=3)"
            )
        elif retry is not None:
            bad = retry_problems(retry)
            if bad:
                problems.append("bad Retry: " + "; ".join(bad))
        timeout = seconds_problem(spec.timeout, "timeout=")
        if timeout is not None:
            problems.append(timeout)
        if spec.compensate is not None:
            compensate = hook_problem(spec.compensate, 1, "undo(ctx)")
            if compensate is not None:
                problems.append(f"compensate= must be a function undo(ctx); {compensate}")
        problems.extend(
            f"routes= takes step names (or END), got {target!r}"
            for target in spec.routes
            if not isinstance(target, str | End)
        )
        return problems

    def step_mode(self, spec: StepSpec) -> tuple[int, str | None, list[str]]:
        """How the step is called, the executor it runs on (the workflow's by default),
        and what is wrong with its body, ``blocking=`` and ``executor=``."""
        fn = spec.fn
        executor = spec.executor
        problems = [p for p in (_executor_problem(executor),) if p is not None]
        if not isinstance(spec.blocking, bool):
            problems.append(f"blocking= must be True or False, got {spec.blocking!r}")
        if inspect.isgeneratorfunction(fn):
            problems.append(
                "a plain generator function cannot be a step; to stream progress, make it "
                "an async generator (async def with yield), yielding the outcome last"
            )
            return SYNC, None, problems
        if inspect.isasyncgenfunction(fn):
            if spec.blocking or executor is not None:
                problems.append(
                    "an async generator step runs on the event loop; remove blocking=/executor="
                )
            return AGEN, None, problems
        is_async = is_async_callable(fn)
        if spec.blocking:
            if is_async:
                problems.append(
                    "blocking=True is for plain (sync) functions; an async def step "
                    "already runs on the event loop without blocking it"
                )
            if executor not in (None, "thread"):
                problems.append(
                    f"blocking=True runs the step in a thread; it cannot also use "
                    f"executor={executor!r}"
                )
            return THREAD, executor, problems
        if executor is None:
            executor = self.spec.executor  # type: ignore[assignment]  # checked in build()
        if executor == "thread":
            return THREAD, executor, problems
        if executor is not None and executor != "inline":
            return REMOTE, executor, problems
        return (ASYNC if is_async else SYNC), None, problems

    # -- waits ---------------------------------------------------------------------------

    def lower_wait(self, spec: WaitSpec, path: str, top_index: int) -> WaitNode:
        how = spec.how
        if spec.name is not None:
            name: object = spec.name
        elif how == "event":
            name = spec.value
        else:  # by kind and order, never by line: an edit above it changes nothing
            self.counts[how] = self.counts.get(how, 0) + 1
            name = f"{how}#{self.counts[how]}"
        call = "wait_for_event" if how == "event" else how
        if how == "event" and (not isinstance(spec.value, str) or not spec.value):
            raise self.fail(
                call, spec.where, f"the event must be a non-empty string, got {spec.value!r}"
            )
        if not isinstance(name, str) or not name:
            raise self.fail(
                call, spec.where, f"the wait's name must be a non-empty string, got {name!r}"
            )
        what = f"wait {name!r}"
        problems: list[str] = []
        if (
            name in self.step_specs
            or name in self.blocks
            or name in self.waits
            or name in self.calls
        ):
            other = (
                self.step_specs[name].where
                if name in self.step_specs
                else self.blocks.get(name) or self.calls.get(name) or self.waits[name].where
            )
            twice = " (two waits for one event need name=)" if how == "event" else ""
            problems.append(f"duplicate name {name!r}, also used at {other}{twice}")
        seconds: float | None = None
        until: float | None = None
        fn = spec.value if callable(spec.value) and how != "event" else None
        if how == "sleep_for" and fn is None:
            bad = seconds_problem(spec.value, "sleep_for()'s seconds", optional=False, zero=True)
            if bad is None:
                seconds = float(spec.value)  # type: ignore[arg-type]
            else:
                problems.append(f"{bad}, or a function of the context returning them")
        elif how == "sleep_until" and fn is None:
            if isinstance(spec.value, _dt.datetime) and spec.value.utcoffset() is not None:
                until = spec.value.timestamp()
            elif isinstance(spec.value, _dt.datetime):
                problems.append(
                    f"sleep_until() needs a time-zone-aware datetime, got the naive "
                    f"{spec.value!r}; write datetime(..., tzinfo=timezone.utc)"
                )
            else:
                problems.append(
                    f"sleep_until() takes an aware datetime, or a function of the context "
                    f"returning one, got {spec.value!r}"
                )
        if fn is not None:
            arity = arity_problem(fn, 1, f"{call}'s function(ctx)")
            if arity is not None:
                problems.append(arity)
        key = name
        if how == "event":
            returns = name_problem(spec.returns, "returns=", optional=True)
            if returns is not None:
                problems.append(returns)
            elif spec.returns is not None:
                key = spec.returns  # type: ignore[assignment]
            timeout = seconds_problem(spec.timeout, "timeout=")
            if timeout is not None:
                problems.append(timeout)
            target = spec.on_timeout
            if target is not None and not isinstance(target, str | End):
                problems.append(f"on_timeout= takes a step name, END or None, got {target!r}")
            elif target is not None and top_index < 0:
                problems.append(
                    f"on_timeout={target!r} is only for a top-level wait: inside a parallel "
                    f"branch a wait cannot route (a goto in a branch is an error); leave it "
                    f"None, so a timeout fails the branch"
                )
            elif target is not None and spec.timeout is None:
                problems.append("on_timeout= needs timeout=: without one the wait never times out")
        if key in self.keys or key in _RESERVED_KEYS:
            holder = self.keys.get(key, "parallel results")
            problems.append(f"duplicate result key {key!r}: {holder!r} stores its value there")
        if problems:
            raise self.fail(what, spec.where, problems)
        if how == "event" and isinstance(spec.on_timeout, str):
            self.routes.append((what, spec.where, spec.on_timeout))
        node = WaitNode(
            name=name,
            key=key,
            kind="wait" if how == "event" else "sleep",
            how=how,
            seconds=seconds,
            until=until,
            fn=fn,
            event=spec.value if how == "event" else None,  # type: ignore[arg-type]
            timeout=float(spec.timeout) if spec.timeout is not None else None,  # type: ignore[arg-type]
            on_timeout=spec.on_timeout,  # type: ignore[arg-type]
            where=spec.where,
            top_index=top_index,
        )
        self.waits[name] = node
        if how == "event":
            self.keys[key] = name
        if top_index >= 0:
            self.top_steps[name] = top_index
        self.shape.append(f"wait {path}{name} {how} -> {key}")
        return node

    # -- blocks --------------------------------------------------------------------------

    def lower_parallel(self, spec: ParallelSpec, path: str, top_index: int) -> ParallelNode:
        self.parallels += 1
        # An unnamed block is named by kind and order, never by line: an edit above it
        # must not change its key (or the fingerprint of durable runs).
        key = spec.name if spec.name is not None else f"parallel#{self.parallels}"
        if spec.name is None:
            self.blocks.setdefault(key, spec.where)
        else:
            bad_name = name_problem(spec.name, "name=")
            if bad_name is not None:
                raise self.fail("parallel block", spec.where, bad_name)
            self.check_block_name(spec.name, "parallel", spec.where)
        problems: list[str] = []
        if not spec.children:
            problems.append("the block is empty; put at least one @step inside it")
        problems.extend(self.block_options(spec))
        what = f"parallel block {key!r}"
        if problems:
            raise self.fail(what, spec.where, problems)
        on_error = spec.on_error or ("complete_all" if spec.into is not None else "fail_fast")
        sub = f"{path}{key}/"
        self.shape.append(f"parallel {sub} {on_error} into={spec.into is not None}")
        children = tuple(self.lower_branch(child, sub) for child in spec.children)
        seen: dict[str, Node] = {}
        for child in children:
            if child.key in seen:
                raise self.fail(
                    what,
                    child.where,
                    f"two branches share the result key {child.key!r}; "
                    f"give one of them another name or returns=",
                )
            seen[child.key] = child
        return ParallelNode(
            name=key,
            key=key,
            children=children,
            keys=tuple(seen),
            fail_fast=on_error == "fail_fast",
            into=spec.into,  # type: ignore[arg-type]  # checked above
            max_concurrency=spec.max_concurrency,  # type: ignore[arg-type]
            where=spec.where,
            top_index=top_index,
            named=spec.name is not None,
        )

    def block_options(self, spec: ParallelSpec | ForeachSpec) -> list[str]:
        """What is wrong with a block's on_error=, into= and max_concurrency=."""
        problems: list[str] = []
        if spec.on_error is not None and spec.on_error not in _ON_ERROR:
            problems.append(
                f"unknown on_error={spec.on_error!r}; use 'fail_fast' or 'complete_all'"
            )
        if spec.into is not None:
            into = hook_problem(spec.into, 2, "into(ctx, results)")
            if into is not None:
                problems.append(f"into= must be a function fn(ctx, results); {into}")
        concurrency = count_problem(spec.max_concurrency, "max_concurrency=", optional=True)
        if concurrency is not None:
            problems.append(concurrency)
        return problems

    def lower_foreach(self, spec: ForeachSpec, path: str, top_index: int) -> ForeachNode:
        self.foreachs += 1
        key = spec.name if spec.name is not None else f"foreach#{self.foreachs}"
        if spec.name is None:
            self.blocks.setdefault(key, spec.where)
        else:
            bad_name = name_problem(spec.name, "name=")
            if bad_name is not None:
                raise self.fail("foreach block", spec.where, bad_name)
            self.check_block_name(spec.name, "foreach", spec.where)
        problems: list[str] = []
        if not spec.children:
            problems.append(
                "the block is empty; put at least one @step (or wait, block, "
                "call_workflow) inside it, run once per item"
            )
        items = spec.items
        if isinstance(items, str):
            if not items:
                problems.append("items= must be a non-empty context key or a function fn(ctx)")
        elif callable(items):
            arity = arity_problem(items, 1, "items(ctx)")
            if arity is not None:
                problems.append(f"items= must be a function fn(ctx) or a context key; {arity}")
        else:
            problems.append(
                f"items= takes a context key (a string) or a function fn(ctx) returning the "
                f"items, got {items!r}; write foreach('files') or foreach(lambda ctx: ...)"
            )
        problems.extend(self.block_options(spec))
        if key in self.keys or key in _RESERVED_KEYS:
            holder = self.keys.get(key, "parallel results")
            problems.append(f"duplicate result key {key!r}: {holder!r} stores its value there")
        what = f"foreach block {key!r}"
        if problems:
            raise self.fail(what, spec.where, problems)
        on_error = spec.on_error or ("complete_all" if spec.into is not None else "fail_fast")
        if spec.into is None:
            self.keys[key] = key
        sub = f"{path}{key}/"
        self.shape.append(f"foreach {sub} {on_error} into={spec.into is not None}")
        children = self.lower_sequence(spec.children, sub, top=False)
        return ForeachNode(
            name=key,
            key=key,
            items=items,  # type: ignore[arg-type]  # checked above
            children=children,
            fail_fast=on_error == "fail_fast",
            into=spec.into,  # type: ignore[arg-type]
            max_concurrency=spec.max_concurrency,  # type: ignore[arg-type]
            where=spec.where,
            top_index=top_index,
            named=spec.name is not None,
        )

    def lower_call(self, spec: CallSpec, path: str, top_index: int) -> CallNode:
        target = spec.workflow
        plan = getattr(target, "plan", None)
        if isinstance(plan, Plan):
            child = plan.name
        elif isinstance(target, str) and target:
            child = target
        else:
            raise self.fail(
                "call_workflow",
                spec.where,
                f"the workflow to call must be a workflow's name or the workflow itself, "
                f"got {target!r}",
            )
        bad = name_problem(spec.name, "name=", optional=True)
        if bad is not None:
            raise self.fail("call_workflow", spec.where, bad)
        name: str = spec.name if isinstance(spec.name, str) else child
        what = f"call_workflow {name!r}"
        problems: list[str] = []
        taken = (
            self.step_specs[name].where
            if name in self.step_specs
            else self.blocks.get(name)
            or self.calls.get(name)
            or (self.waits[name].where if name in self.waits else None)
        )
        if taken is not None:
            problems.append(
                f"duplicate name {name!r}, also used at {taken} (two calls of one workflow "
                f"need name=)"
            )
        returns = name_problem(spec.returns, "returns=", optional=True)
        if returns is not None:
            problems.append(returns)
        key: str = spec.returns if isinstance(spec.returns, str) and spec.returns else name
        if returns is None and (key in self.keys or key in _RESERVED_KEYS):
            holder = self.keys.get(key, "parallel results")
            problems.append(f"duplicate result key {key!r}: {holder!r} stores its value there")
        data = spec.input
        if data is not None and not isinstance(data, Mapping) and not callable(data):
            problems.append(
                f"input= takes a mapping or a function fn(ctx) returning one, got {data!r}"
            )
        if callable(data) and not isinstance(data, Mapping):
            arity = arity_problem(data, 1, "input(ctx)")
            if arity is not None:
                problems.append(f"input= must be a mapping or a function fn(ctx); {arity}")
        queue = spec.queue
        if queue is not None and (not isinstance(queue, str) or not queue):
            problems.append(f"queue= takes a queue's name, got {queue!r}")
        retry = spec.retry
        if retry is not None and not isinstance(retry, Retry):
            problems.append(
                f"retry= takes a flowdsl.Retry(...), got {retry!r}; write retry=Retry(max_attempts=3)"
            )
        elif retry is not None:
            bad_retry = retry_problems(retry)
            if bad_retry:
                problems.append("bad Retry: " + "; ".join(bad_retry))
        if problems:
            raise self.fail(what, spec.where, problems)
        self.calls[name] = spec.where
        self.keys[key] = name
        if top_index >= 0:
            self.top_steps[name] = top_index
        self.shape.append(f"call {path}{name} {child} -> {key}")
        node = self.call_nodes[name] = CallNode(
            name=name,
            key=key,
            workflow=child,
            resolve=_resolver(child, plan if isinstance(plan, Plan) else None),
            input=data,  # type: ignore[arg-type]
            queue=queue,  # type: ignore[arg-type]
            retry=retry,  # type: ignore[arg-type]  # checked above
            where=spec.where,
            top_index=top_index,
        )
        return node

    def check_block_name(self, name: object, kind: str, where: Where) -> None:
        bad = name_problem(name, "the name")
        if bad is not None:
            raise self.fail(f"{kind} block", where, bad)
        if name in self.blocks:
            raise self.fail(
                f"{kind} {name!r}",
                where,
                f"duplicate block name; another block is named {name!r} at {self.blocks[name]}",
            )
        if name in self.waits:
            raise self.fail(
                f"{kind} {name!r}",
                where,
                f"a wait is already named {name!r} (at {self.waits[name].where}); rename one "
                f"of them",
            )
        if name in self.step_specs:
            raise self.fail(
                f"{kind} {name!r}",
                where,
                f"a step is already named {name!r} (at {self.step_specs[name].where}); "
                f"rename one of them",
            )
        if name in self.calls:
            raise self.fail(
                f"{kind} {name!r}",
                where,
                f"a call_workflow is already named {name!r} (at {self.calls[name]}); "
                f"rename one of them",
            )
        self.blocks[name] = where  # type: ignore[index]

    def check_route(self, what: str, where: Where, target: str) -> None:
        if target in self.top_steps:
            return
        known = ", ".join(repr(n) for n in self.top_steps)
        if target in self.steps:
            problem = (
                f"declared route {target!r} is inside a parallel block; goto targets must be "
                f"top-level steps: {known}"
            )
        else:
            problem = (
                f"declared route {target!r} is not a step of this workflow; known steps: {known}"
            )
        raise self.fail(what, where, problem)


def _resolver(name: str, given: Plan | None) -> Callable[[], Plan]:
    """How a call finds its child's plan when it runs: the registered one, by name.

    A workflow passed as an object is used when none is registered under its
    name (a test's isolated registry, say); a name nothing is registered under
    raises `WorkflowNotFound` then, naming the workflows there are.
    """

    def resolve() -> Plan:
        found = workflows().get(name)
        if found is not None:
            return found.plan
        if given is not None:
            return given
        return get_workflow(name).plan

    return resolve


def compile_workflow(spec: WorkflowSpec) -> Plan:
    """Validate a recorded workflow and lower it to an immutable `Plan`."""
    return _PlanBuilder(spec).build()
