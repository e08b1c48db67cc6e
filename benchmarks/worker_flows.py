"""The workflows benchmarks/bench_workers.py queues: ten steps, and one that marks its start."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from flowdsl import ok, step, workflow


def _make(i: int) -> Any:
    key = f"s{i}"

    async def add(ctx: Any) -> Any:
        return ok({key: i})

    return add


@workflow
def ten_steps() -> None:
    for i in range(10):
        step(_make(i), name=f"s{i}")


@workflow
def marked() -> None:
    @step
    def mark(ctx: Any) -> Any:
        started = time.time()
        mark = Path(os.environ["BENCH_MARKS"], ctx["mark"])
        mark.with_suffix(".tmp").write_text(repr(started))
        os.replace(mark.with_suffix(".tmp"), mark)  # the reader sees it whole or not at all
        return ok()
