"""What the live progress display costs: `flowdsl run` on a pseudo-terminal, with and without -q.

    .venv/bin/python benchmarks/bench_cli_display.py [--steps 400] [--repeat 3] [--columns 100]

It writes a workflow of ``--steps`` trivial steps in a chain to a temporary
file, then runs the real ``flowdsl run`` on it with stderr on a
pseudo-terminal (so rich draws its live display) and ``COLUMNS`` set, and
reports the median wall time of ``--repeat`` runs for the live display and
for ``-q`` (no display). The difference is what the display costs; it should
not grow with the number of steps faster than the run itself does.
POSIX only (it needs a pseudo-terminal).
"""

from __future__ import annotations

import argparse
import os
import pty
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "flowdsl"


def chain_source(steps: int) -> str:
    """A module defining workflow ``chain``: `steps` async steps, each adding one key."""
    return (
        "from flowdsl import ok, step, workflow\n\n\n"
        "@workflow\n"
        "def chain():\n"
        f"    for index in range({steps}):\n\n"
        "        async def add(ctx, index=index):\n"
        "            return ok({f'k{index}': index})\n\n"
        "        step(add, name=f's{index}')\n"
    )


def run_on_a_terminal(target: Path, columns: int, quiet: bool) -> float:
    """Seconds `flowdsl run target` takes with stderr on a pseudo-terminal."""
    main, secondary = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "40"}
    env.pop("NO_COLOR", None)
    args = [str(SCRIPT), "run", f"{target}:chain", *(["-q"] if quiet else [])]
    started = time.perf_counter()
    with subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=secondary, env=env) as proc:
        os.close(secondary)
        while True:  # drain the terminal, or the display blocks on a full buffer
            try:
                if not os.read(main, 65536):
                    break
            except OSError:  # the terminal closed: the command ended
                break
    took = time.perf_counter() - started
    os.close(main)
    if proc.returncode != 0:
        raise SystemExit(f"flowdsl run exited {proc.returncode}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--columns", type=int, default=100)
    args = parser.parse_args()
    if not SCRIPT.exists():
        raise SystemExit(f"no flowdsl console script at {SCRIPT}: run `make install` first")
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "chain_flow.py"
        target.write_text(chain_source(args.steps), encoding="utf-8")
        for label, quiet in (("live display", False), ("-q", True)):
            times = [run_on_a_terminal(target, args.columns, quiet) for _ in range(args.repeat)]
            print(
                f"{args.steps} steps, {label:>12}: median {statistics.median(times):.2f} s "
                f"(min {min(times):.2f}, max {max(times):.2f}, {args.repeat} runs)"
            )


if __name__ == "__main__":
    main()
