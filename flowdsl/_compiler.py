"""COMPILE: spec tree -> `Plan`. All validation lives here.

One `_PlanBuilder` per workflow walks the spec tree once, checks every rule
of a workflow definition, and lowers the tree to plan nodes with everything the
executor needs precomputed. Each problem raises `DefinitionError` with the
workflow, the step or block, its ``file:line``, and the fix.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from collections.abc import Callable, Mapping
from types import FunctionType
from typing import Any

import attrs

from ._plan import (
    AGEN,
    ASYNC,
    REMOTE,
    SYNC,
    THREAD,
    Node,
    ParallelNode,
    Plan,
    SequenceNode,
    StepNode,
)
from ._spec import (
    End,
    NodeSpec,
    ParallelSpec,
    Retry,
    SequenceSpec,
    StepSpec,
    Where,
    WorkflowSpec,
    retry_problems,
)
from .errors import DefinitionError, UsageError

__all__ = ["compile_workflow", "is_async_callable", "replace_steps"]

_ON_ERROR = ("fail_fast", "complete_all")
_RESERVED_KEYS = ("__results__",)


def is_async_callable(fn: object) -> bool:
    """True for ``async def`` functions, and objects or partials wrapping one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's async __call__
    )


def _plain_arity_fits(fn: FunctionType, args: int) -> bool:
    """Whether a plain function takes `args` positional arguments (read off its code)."""
    code = fn.__code__
    positional = code.co_argcount
    required = positional - len(fn.__defaults__ or ())
    kw_required = code.co_kwonlyargcount - len(fn.__kwdefaults__ or {})
    takes_more = bool(code.co_flags & inspect.CO_VARARGS)
    return kw_required == 0 and required <= args and (args <= positional or takes_more)


def arity_problem(fn: object, args: int, call: str) -> str | None:
    """Why `fn` cannot be called with `args` positional arguments, or None when it can.

    A callable whose signature Python cannot read (some builtins) is given the
    benefit of the doubt.
    """
    if type(fn) is FunctionType and _plain_arity_fits(fn, args):
        return None  # the common case, without building a Signature (10,000-step workflows)
    try:
        signature = inspect.signature(fn)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*range(args))
    except TypeError as exc:
        return f"it cannot be called as {call}: its signature is {signature} ({exc})"
    return None


def _hook_problem(fn: object, args: int, call: str) -> str | None:
    """Why `fn` cannot be a hook called as `call` (a compensation, a reducer), or None."""
    if not callable(fn):
        return f"got {fn!r}"
    return arity_problem(fn, args, call)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


class _PlanBuilder:
    """Builds one `Plan`; every check raises with the workflow's name in front."""

    def __init__(self, spec: WorkflowSpec) -> None:
        self.spec = spec
        self.steps: dict[str, StepNode] = {}
        self.step_specs: dict[str, StepSpec] = {}
        self.keys: dict[str, str] = {}  # result key -> step name that writes it
        self.blocks: dict[str, Where] = {}
        self.shape: list[str] = []
        self.top_steps: dict[str, int] = {}
        self.routes: list[tuple[StepSpec, str]] = []
        self.parallels = 0  # parallel blocks lowered so far (naming the unnamed ones)

    # -- errors --------------------------------------------------------------------------

    def fail(self, what: str, where: Where, problem: str) -> DefinitionError:
        return DefinitionError(f"workflow {self.spec.name!r}, {what} ({where}): {problem}")

    # -- the walk ------------------------------------------------------------------------

    def build(self) -> Plan:
        spec = self.spec
        if not isinstance(spec.name, str) or not spec.name:
            msg = f"{spec.where}: a workflow name must be a non-empty string, got {spec.name!r}"
            raise DefinitionError(msg)
        timeout = spec.timeout
        if timeout is not None and (not _is_number(timeout) or timeout <= 0):  # type: ignore[operator]
            msg = (
                f"workflow {spec.name!r} ({spec.where}): timeout must be a number of seconds "
                f"> 0 or None, got {timeout!r}"
            )
            raise DefinitionError(msg)
        limit = spec.max_transitions
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            msg = (
                f"workflow {spec.name!r} ({spec.where}): max_transitions must be an int >= 1, "
                f"got {limit!r}"
            )
            raise DefinitionError(msg)
        if spec.executor is not None and (not isinstance(spec.executor, str) or not spec.executor):
            msg = (
                f"workflow {spec.name!r} ({spec.where}): executor= takes 'inline', 'thread', "
                f"'process' or a name given in executors=, got {spec.executor!r}"
            )
            raise DefinitionError(msg)
        if not spec.children:
            msg = (
                f"workflow {spec.name!r} ({spec.where}) is empty; define at least one "
                f"@step inside its body"
            )
            raise DefinitionError(msg)
        nodes = self.lower_sequence(spec.children, path="", top=True)
        for step_spec, target in self.routes:
            self.check_route(step_spec, target)
        shape = tuple(self.shape)
        return Plan(
            name=spec.name,
            qualname=spec.qualname,
            where=spec.where,
            nodes=nodes,
            targets=dict(self.top_steps),
            steps=dict(self.steps),
            timeout=float(timeout) if timeout is not None else None,  # type: ignore[arg-type]
            max_transitions=limit,
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
                self.check_block_name(child.name, "sequence", child.where)
                if not child.children:
                    raise self.fail(
                        f"sequence {child.name!r}",
                        child.where,
                        "the block is empty; put at least one @step inside it",
                    )
                self.lower_sequence(child.children, path, top, out)
            elif isinstance(child, StepSpec):
                out.append(self.lower_step(child, path, len(out) if top else -1))
            else:
                out.append(self.lower_parallel(child, path, len(out) if top else -1))
        return tuple(out)

    def lower_branch(self, child: NodeSpec, path: str) -> Node:
        if isinstance(child, SequenceSpec):
            self.check_block_name(child.name, "sequence", child.where)
            if not child.children:
                raise self.fail(
                    f"sequence {child.name!r}",
                    child.where,
                    "the block is empty; put at least one @step inside it",
                )
            sub = f"{path}{child.name}/"
            self.shape.append(f"sequence {sub}")
            return SequenceNode(
                name=child.name,
                key=child.name,
                children=self.lower_sequence(child.children, sub, top=False),
                where=child.where,
            )
        if isinstance(child, StepSpec):
            return self.lower_step(child, path, -1)
        return self.lower_parallel(child, path, -1)

    def lower_step(self, spec: StepSpec, path: str, top_index: int) -> StepNode:
        name = spec.name
        if not isinstance(name, str) or not name:
            msg = f"workflow {self.spec.name!r} ({spec.where}): a step name must be a non-empty string, got {name!r}"
            raise DefinitionError(msg)
        what = f"step {name!r}"
        if name in self.step_specs:
            first = self.step_specs[name].where
            raise self.fail(
                what,
                spec.where,
                f"duplicate step name; another step with this name is at {first}. "
                f"Rename one, e.g. @step(name={name + '_2'!r})",
            )
        if name in self.blocks:
            raise self.fail(
                what,
                spec.where,
                f"a block is already named {name!r} (at {self.blocks[name]}); rename one of them",
            )
        if spec.returns is not None and (not isinstance(spec.returns, str) or not spec.returns):
            raise self.fail(
                what, spec.where, f"returns= must be a non-empty string, got {spec.returns!r}"
            )
        key = spec.key
        if key in _RESERVED_KEYS:
            raise self.fail(
                what, spec.where, f"{key!r} is reserved for parallel results; choose returns="
            )
        if key in self.keys:
            other = self.keys[key]
            raise self.fail(
                what,
                spec.where,
                f"duplicate result key {key!r}: step {other!r} already stores its value there; "
                f"give one of them another returns=",
            )
        mode, executor = self.step_mode(spec, what)
        problem = arity_problem(spec.fn, 1, f"{name}(ctx)")
        if problem is not None:
            raise self.fail(
                what,
                spec.where,
                f"{problem}; a step takes one argument, the context: def {name}(ctx): ...",
            )
        retry = spec.retry
        if retry is not None:
            if not isinstance(retry, Retry):
                raise self.fail(
                    what,
                    spec.where,
                    f"retry= takes a flowdsl.Retry(...), got {retry!r}; "
                    f"write retry=Retry(max_attempts=3)",
                )
            problems = retry_problems(retry)
            if problems:
                raise self.fail(what, spec.where, "bad Retry: " + "; ".join(problems))
        timeout = spec.timeout
        if timeout is not None and (not _is_number(timeout) or timeout <= 0):
            raise self.fail(
                what,
                spec.where,
                f"timeout= must be a number of seconds > 0 or None, got {timeout!r}",
            )
        if spec.compensate is not None:
            problem = _hook_problem(spec.compensate, 1, "undo(ctx)")
            if problem is not None:
                raise self.fail(
                    what, spec.where, f"compensate= must be a function undo(ctx); {problem}"
                )
        for target in spec.routes:
            if not isinstance(target, str | End):
                raise self.fail(
                    what,
                    spec.where,
                    f"routes= takes step names (or END), got {target!r}",
                )
            if isinstance(target, str):
                self.routes.append((spec, target))
        node = StepNode(
            name=name,
            key=key,
            fn=spec.fn,
            mode=mode,
            retry=retry,
            timeout=float(timeout) if timeout is not None else None,
            compensate=spec.compensate,  # type: ignore[arg-type]  # checked callable above
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

    def step_mode(self, spec: StepSpec, what: str) -> tuple[int, str | None]:
        """How the step is called, and the executor it runs on (the workflow's by default)."""
        fn = spec.fn
        executor = spec.executor
        if executor is not None and (not isinstance(executor, str) or not executor):
            raise self.fail(
                what,
                spec.where,
                f"executor= takes 'inline', 'thread', 'process' or a name given in executors=, "
                f"got {executor!r}",
            )
        if not isinstance(spec.blocking, bool):
            raise self.fail(
                what, spec.where, f"blocking= must be True or False, got {spec.blocking!r}"
            )
        if inspect.isgeneratorfunction(fn):
            raise self.fail(
                what,
                spec.where,
                "a plain generator function cannot be a step; to stream progress, make it "
                "an async generator (async def with yield), yielding the outcome last",
            )
        if inspect.isasyncgenfunction(fn):
            if spec.blocking or executor is not None:
                raise self.fail(
                    what,
                    spec.where,
                    "an async generator step runs on the event loop; remove blocking=/executor=",
                )
            return AGEN, None
        is_async = is_async_callable(fn)
        if spec.blocking:
            if is_async:
                raise self.fail(
                    what,
                    spec.where,
                    "blocking=True is for plain (sync) functions; an async def step "
                    "already runs on the event loop without blocking it",
                )
            if executor not in (None, "thread"):
                raise self.fail(
                    what,
                    spec.where,
                    f"blocking=True runs the step in a thread; it cannot also use "
                    f"executor={executor!r}",
                )
            return THREAD, executor
        if executor is None:
            executor = self.spec.executor  # type: ignore[assignment]  # checked in build()
        if executor == "thread":
            return THREAD, executor
        if executor is not None and executor != "inline":
            return REMOTE, executor
        return (ASYNC if is_async else SYNC), None

    def lower_parallel(self, spec: ParallelSpec, path: str, top_index: int) -> ParallelNode:
        self.parallels += 1
        # An unnamed block is named by kind and order, never by line: an edit above it
        # must not change its key (or the fingerprint of durable runs).
        key = spec.name if spec.name is not None else f"parallel#{self.parallels}"
        what = f"parallel block {key!r}"
        if spec.name is None:
            self.blocks.setdefault(key, spec.where)
        else:
            if not isinstance(spec.name, str) or not spec.name:
                raise self.fail(
                    "parallel block",
                    spec.where,
                    f"name= must be a non-empty string, got {spec.name!r}",
                )
            self.check_block_name(spec.name, "parallel", spec.where)
        if not spec.children:
            raise self.fail(
                what, spec.where, "the block is empty; put at least one @step inside it"
            )
        if spec.on_error is not None and spec.on_error not in _ON_ERROR:
            raise self.fail(
                what,
                spec.where,
                f"unknown on_error={spec.on_error!r}; use 'fail_fast' or 'complete_all'",
            )
        if spec.into is not None:
            problem = _hook_problem(spec.into, 2, "into(ctx, results)")
            if problem is not None:
                raise self.fail(
                    what, spec.where, f"into= must be a function fn(ctx, results); {problem}"
                )
        limit = spec.max_concurrency
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            raise self.fail(
                what, spec.where, f"max_concurrency= must be an int >= 1 or None, got {limit!r}"
            )
        on_error = spec.on_error or ("complete_all" if spec.into is not None else "fail_fast")
        sub = f"{path}{key}/"
        self.shape.append(f"parallel {sub} {on_error} into={spec.into is not None}")
        children = tuple(self.lower_branch(child, sub) for child in spec.children)
        keys = tuple(child.key for child in children)
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
            keys=keys,
            fail_fast=on_error == "fail_fast",
            into=spec.into,  # type: ignore[arg-type]  # checked callable above
            max_concurrency=limit,
            where=spec.where,
            top_index=top_index,
            named=spec.name is not None,
        )

    def check_block_name(self, name: object, kind: str, where: Where) -> None:
        if not isinstance(name, str) or not name:
            raise self.fail(
                f"{kind} block", where, f"the name must be a non-empty string, got {name!r}"
            )
        if name in self.blocks:
            raise self.fail(
                f"{kind} {name!r}",
                where,
                f"duplicate block name; another block is named {name!r} at {self.blocks[name]}",
            )
        if name in self.step_specs:
            raise self.fail(
                f"{kind} {name!r}",
                where,
                f"a step is already named {name!r} (at {self.step_specs[name].where}); "
                f"rename one of them",
            )
        self.blocks[name] = where

    def check_route(self, spec: StepSpec, target: str) -> None:
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
        raise self.fail(f"step {spec.name!r}", spec.where, problem)


def compile_workflow(spec: WorkflowSpec) -> Plan:
    """Validate a recorded workflow and lower it to an immutable `Plan`."""
    return _PlanBuilder(spec).build()


def replace_steps(
    plan: Plan, replacements: Mapping[str, Callable[..., Any]], caller: str = "with_steps()"
) -> Plan:
    """A copy of `plan` whose named steps call other functions (for tests and fakes).

    A name the plan has no step for raises `UsageError`, prefixed with `caller`.
    """
    unknown = [name for name in replacements if name not in plan.steps]
    if unknown:
        known = ", ".join(repr(n) for n in plan.steps)
        msg = (
            f"{caller}: workflow {plan.name!r} has no step named "
            f"{', '.join(map(repr, unknown))}; known steps: {known}"
        )
        raise UsageError(msg)

    def swap(node: Node) -> Node:
        if isinstance(node, StepNode):
            fn = replacements.get(node.name)
            if fn is None:
                return node
            if inspect.isasyncgenfunction(fn):
                mode = AGEN
            elif node.mode in (THREAD, REMOTE) and not is_async_callable(fn):
                mode = node.mode
            else:
                mode = ASYNC if is_async_callable(fn) else SYNC
            return attrs.evolve(node, fn=fn, mode=mode)
        return attrs.evolve(node, children=tuple(swap(c) for c in node.children))

    nodes = tuple(swap(n) for n in plan.nodes)
    steps: dict[str, StepNode] = {}

    def collect(node: Node) -> None:
        if isinstance(node, StepNode):
            steps[node.name] = node
        else:
            for child in node.children:
                collect(child)

    for node in nodes:
        collect(node)
    return attrs.evolve(plan, nodes=nodes, steps=steps)
