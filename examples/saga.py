"""A saga: book a trip (flight, hotel, car) and undo what was booked when a step fails.

Each booking step names its undo with ``@step(compensate=...)``. When the run
fails, flowdsl calls the compensation of every step that had completed, in
reverse completion order, with a context that includes what that step
produced (here, the confirmation number to cancel). ``run.compensations``
records each undo.

Run it: ``python examples/saga.py``
"""

from __future__ import annotations

import asyncio
import itertools

from flowdsl import Context, Run, ok, run_workflow, step, workflow


class FakeProvider:
    """An in-memory booking service: hands out confirmation numbers, keeps the live ones."""

    def __init__(self, kind: str, sold_out: frozenset[str] = frozenset()) -> None:
        self.kind = kind
        self.sold_out = sold_out
        self.live: set[str] = set()
        self._numbers = itertools.count(1)

    async def book(self, who: str, option: str = "standard") -> str:
        await asyncio.sleep(0.01)
        if option in self.sold_out:
            raise RuntimeError(f"no {option} {self.kind} left for {who}")
        confirmation = f"{self.kind[:3].upper()}-{next(self._numbers)}"
        self.live.add(confirmation)
        return confirmation

    async def cancel(self, confirmation: str) -> None:
        await asyncio.sleep(0.005)
        self.live.discard(confirmation)


AIRLINE = FakeProvider("flight")
HOTELS = FakeProvider("hotel")
CARS = FakeProvider("car", sold_out=frozenset({"convertible"}))


async def cancel_flight(ctx: Context) -> None:
    await AIRLINE.cancel(ctx["flight"])


async def cancel_hotel(ctx: Context) -> None:
    await HOTELS.cancel(ctx["hotel"])


async def cancel_car(ctx: Context) -> None:
    await CARS.cancel(ctx["car"])


@workflow
def book_trip() -> None:
    @step(compensate=cancel_flight)
    async def book_flight(ctx: Context):
        return ok({"flight": await AIRLINE.book(ctx["traveller"])})

    @step(compensate=cancel_hotel)
    async def book_hotel(ctx: Context):
        return ok({"hotel": await HOTELS.book(ctx["traveller"])})

    @step(compensate=cancel_car)
    async def book_car(ctx: Context):
        return ok({"car": await CARS.book(ctx["traveller"], ctx["car_class"])})


def show(run: Run) -> None:
    """Print a run: its status, each step attempt with its duration, and what was undone."""
    print(f"{run.workflow}: {run.status} in {run.duration * 1000:.0f} ms")
    for attempt in run.steps:
        note = f"  {attempt.error!r}" if attempt.error is not None else ""
        print(
            f"  {attempt.name:<12} attempt {attempt.attempt}  {attempt.status:<9}"
            f" {attempt.duration * 1000:5.1f} ms{note}"
        )
    for undo in run.compensations:
        print(f"  undo {undo.step:<12} {undo.status:<9} {undo.duration * 1000:5.1f} ms")
    print(f"  output: {dict(run.output)}")


def main() -> None:
    print("-- a compact car is available: the trip is booked")
    show(run_workflow("book_trip", {"traveller": "Ada", "car_class": "compact"}))
    print("-- no convertible left: the hotel, then the flight, are cancelled")
    show(run_workflow("book_trip", {"traveller": "Grace", "car_class": "convertible"}))
    print(f"still booked: {sorted(AIRLINE.live | HOTELS.live | CARS.live)}")


if __name__ == "__main__":
    main()
