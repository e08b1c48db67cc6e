"""A retrying external call: a flaky HTTP-like service, exponential backoff, a per-step timeout.

``fetch_rate`` calls a fake service that hangs, then drops the connection,
then answers 503, then succeeds. ``timeout=`` bounds each attempt (a hung
attempt is cut short and counts as a failed attempt); ``Retry`` waits 20, 40,
80 ms between attempts. A raised exception is retried only when it is one of
``retry_on``; an ``error(...)`` result is always a failed attempt. A 404 is
neither: it raises ``LookupError``, which fails the step at once.

The step passes ``ctx.idempotency_key`` to the service: it is the same for
every attempt of this step in this run, so a real server can deduplicate.

Run it: ``python examples/retrying_call.py``
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from flowdsl import Context, Retry, Run, error, ok, run_workflow, step, workflow


class FlakyService:
    """A fake rates API: its first answers to each request are bad, in the order of `script`."""

    def __init__(self, rates: dict[str, float], script: tuple[str, ...]) -> None:
        self.rates = rates
        self.script = script
        self.calls: Counter[str] = Counter()

    async def get(self, currency: str, idempotency_key: str) -> tuple[int, dict[str, Any]]:
        """Return ``(status, body)`` like an HTTP client would."""
        await asyncio.sleep(0.005)  # network latency
        if currency not in self.rates:
            return 404, {"detail": f"unknown currency {currency!r}"}
        seen = self.calls[idempotency_key]
        self.calls[idempotency_key] += 1
        behaviour = self.script[seen] if seen < len(self.script) else "answer"
        if behaviour == "hang":
            await asyncio.sleep(10)  # never answers in time
        if behaviour == "reset":
            raise ConnectionResetError("connection reset by peer")
        if behaviour == "busy":
            return 503, {"detail": "service unavailable"}
        return 200, {"rate": self.rates[currency]}


SERVICE = FlakyService({"EUR": 1.08, "GBP": 1.27}, script=("hang", "reset", "busy"))


@workflow
def convert() -> None:
    @step(
        retry=Retry(
            max_attempts=5,
            backoff="exponential",
            base=0.02,
            max_delay=1.0,
            retry_on=(ConnectionError, TimeoutError),
        ),
        timeout=0.05,  # seconds, per attempt
    )
    async def fetch_rate(ctx: Context):
        status, body = await SERVICE.get(ctx["currency"], ctx.idempotency_key)
        if status == 404:
            raise LookupError(body["detail"])  # not in retry_on: no point retrying
        if status != 200:
            return error(f"HTTP {status}: {body['detail']}")  # a failed attempt, retried
        return ok({"rate": body["rate"]})

    @step
    def convert_amount(ctx: Context):
        return ok({"converted": round(ctx["amount"] * ctx["rate"], 2)})


def show(run: Run) -> None:
    """Print a run: its status, each attempt with its duration and the wait before it."""
    print(f"{run.workflow}: {run.status} in {run.duration * 1000:.0f} ms")
    previous = None
    for attempt in run.steps:
        waited = ""
        if previous is not None and previous.name == attempt.name:
            gap = attempt.started - (previous.started + previous.duration)
            waited = f" after {gap * 1000:3.0f} ms"
        note = f"  {attempt.error!r}" if attempt.error is not None else ""
        print(
            f"  {attempt.name:<14} attempt {attempt.attempt}{waited:>13}  {attempt.status:<9}"
            f" {attempt.duration * 1000:5.1f} ms{note}"
        )
        previous = attempt
    print(f"  output: {dict(run.output)}")


def main() -> None:
    print("-- hang, reset, 503, then 200: four attempts")
    show(run_workflow("convert", {"currency": "EUR", "amount": 100}))
    print("-- an unknown currency: 404 is not retried")
    show(run_workflow("convert", {"currency": "XYZ", "amount": 100}))


if __name__ == "__main__":
    main()
