"""A batch of files: one small pipeline per file, several files at once, with a cap.

``list_files`` lists the ``*.csv`` files of a folder. ``with foreach("files",
max_concurrency=3):`` then runs the body once per file, at most three files at
a time: ``load`` reads and parses the file (the read runs in a thread, off the
event loop), ``transform`` totals its lines. Inside the body ``ctx.item`` is
the file and ``ctx.index`` its place in the list; each item's steps are named
with that index (``load[2]``, ``transform[2]``).

The same body runs under the two failure policies:

* ``import_all`` is fail-safe: ``on_error="complete_all"`` with an ``into=``
  reducer. Every file is processed; the reducer gets one ``Ok`` or ``Err`` per
  file, in file order, and summarises the successes and the failures.
* ``import_strict`` is fail-fast (the default without ``into=``): the first
  bad file fails the run, the files still in flight are cancelled and no
  other one starts.

Run it: ``python examples/batch_files.py [FOLDER]`` (without a folder, five
small files are written to a temporary one, one of them malformed).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowdsl import Context, Err, Ok, Result, Run, foreach, ok, run_workflow, step, workflow

LIMIT = 3  # files processed at once

SAMPLE = {  # file name -> its lines; sales-3.csv has a quantity that is not a number
    "sales-1.csv": ["sku,qty,price", "kettle,2,39.00", "mug,6,9.50"],
    "sales-2.csv": ["sku,qty,price", "tea,10,6.25"],
    "sales-3.csv": ["sku,qty,price", "mug,1,9.50", "kettle,two,39.00"],
    "sales-4.csv": ["sku,qty,price", "tea,4,6.25", "mug,2,9.50"],
    "sales-5.csv": ["sku,qty,price", "kettle,1,39.00"],
}


class InFlight:
    """Counts the files being loaded right now, and the most at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def reset(self) -> None:
        self.now = self.peak = 0

    def enter(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        self.now -= 1


LOADING = InFlight()


def write_sample(folder: Path) -> None:
    for name, lines in SAMPLE.items():
        (folder / name).write_text("\n".join(lines) + "\n")


def list_files(ctx: Context):
    """The batch: every CSV file of the input's folder, in name order."""
    return ok({"files": sorted(str(path) for path in Path(ctx["folder"]).glob("*.csv"))})


async def load(ctx: Context):
    """Read and parse one file (``ctx.item``) into rows; a malformed line fails the item."""
    path = Path(ctx.item)
    LOADING.enter()
    try:
        text = await asyncio.to_thread(path.read_text)
    finally:
        LOADING.leave()
    header, *lines = text.strip().splitlines()
    keys = header.split(",")
    rows = []
    for number, line in enumerate(lines, start=2):
        row = dict(zip(keys, line.split(","), strict=True))
        if not row["qty"].isdigit():
            raise ValueError(f"{path.name} line {number}: qty {row['qty']!r} is not a number")
        rows.append({"sku": row["sku"], "qty": int(row["qty"]), "price": float(row["price"])})
    return ok({"rows": rows})


def transform(ctx: Context):
    """Total the file's rows (``ctx["rows"]``, what ``load`` added for this item)."""
    rows = ctx["rows"]
    return ok(
        {
            "file": Path(ctx.item).name,
            "lines": len(rows),
            "revenue": round(sum(row["qty"] * row["price"] for row in rows), 2),
        }
    )


def summarise(ctx: Context, results: Sequence[Result[Any, Any]]):
    """Reducer of ``import_all``: totals of the files that loaded, the reason of each that did not.

    `results` holds one ``Ok(what the item's body added)`` or ``Err(reason)`` per
    file, in the order of ``ctx["files"]``, whatever order the files finished in.
    """
    imported: dict[str, float] = {}
    failed: dict[str, str] = {}
    for path, result in zip(ctx["files"], results, strict=True):
        match result:
            case Ok(added):
                imported[added["file"]] = added["revenue"]
            case Err(reason):
                failed[Path(path).name] = f"{type(reason).__name__}: {reason}"
    return ok(
        {
            "imported": imported,
            "failed": failed,
            "revenue": round(sum(imported.values()), 2),
        }
    )


@workflow
def import_all() -> None:
    step(list_files)
    with foreach("files", max_concurrency=LIMIT, on_error="complete_all", into=summarise):
        step(load)
        step(transform)


@workflow
def import_strict() -> None:
    step(list_files)
    with foreach("files", max_concurrency=LIMIT, name="totals"):  # on_error="fail_fast"
        step(load)
        step(transform)


def show(run: Run) -> None:
    """Print a run: its status, each step attempt, and what it produced."""
    print(f"{run.workflow}: {run.status} in {run.duration * 1000:.0f} ms")
    for attempt in run.steps:
        note = f"  {attempt.error!r}" if attempt.error is not None else ""
        print(f"  {attempt.name:<14} {attempt.status:<9}{note}")
    if run.status == "failed":
        print(f"  failed at {run.failed_step!r}: {run.error}")
    elif "imported" in run.output:
        imported, failed = run.output["imported"], run.output["failed"]
        print(
            f"  {len(imported)} imported, {len(failed)} failed; revenue {run.output['revenue']:.2f}"
        )
        print(
            "  in file order: "
            + ", ".join(f"{name} {total:.2f}" for name, total in imported.items())
        )
        for name, reason in failed.items():
            print(f"  failed: {name}: {reason}")
    print(f"  at most {LOADING.peak} files loading at once (max_concurrency={LIMIT})")


def main(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(argv[0]) if argv else Path(tmp)
        if not argv:
            write_sample(folder)
        print("-- fail-safe: complete_all with into=summarise")
        LOADING.reset()
        show(run_workflow("import_all", {"folder": str(folder)}))
        print("-- fail-fast: the first bad file fails the run")
        LOADING.reset()
        show(run_workflow("import_strict", {"folder": str(folder)}))


if __name__ == "__main__":
    main(sys.argv[1:])
