"""Validate signup records with the Result algebra, reporting every problem at once.

Each field is parsed into a Result; ``combine`` joins a record's fields, so a
record with three bad fields reports all three (an ``ErrorGroup``) instead of
only the first. ``traverse_all`` does the same over the whole batch, and
``gather`` runs an async uniqueness check on the valid records, at most two at a
time. Nothing raises: the script ends with a readable report.

Run it: ``python examples/result_pipeline.py``
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from flowdsl.result import Err, ErrorGroup, Ok, Result, combine, gather, traverse_all, try_

PLANS = ("free", "pro", "team")
REGISTERED = {"taken@example.com"}

RECORDS = [
    {"email": "Ada@Example.com ", "age": "36", "plan": "pro"},
    {"email": "grace.example.com", "age": "abc", "plan": "pro"},
    {"email": "linus@example.com", "age": "12", "plan": "enterprise"},
    {"email": "taken@example.com", "age": "41", "plan": "free"},
    {"email": "barbara@example.com", "age": "29", "plan": "team"},
]


@dataclass(frozen=True)
class Signup:
    email: str
    age: int
    plan: str


def parse_email(raw: str) -> Result[str, str]:
    return Ok(raw.strip().lower()).ensure(
        lambda email: "@" in email, lambda email: f"email {email!r} has no '@'"
    )


def parse_age(raw: str) -> Result[int, str]:
    return (
        try_(int, raw)
        .map_error(lambda _exc: f"age {raw!r} is not a whole number")
        .bind(lambda age: Ok(age) if age >= 16 else Err(f"age {age} is under 16"))
    )


def parse_plan(raw: str) -> Result[str, str]:
    return Ok(raw) if raw in PLANS else Err(f"plan {raw!r} is not one of {', '.join(PLANS)}")


def parse_signup(record: Mapping[str, str]) -> Result[Signup, str | ErrorGroup]:
    fields = combine(
        parse_email(record.get("email", "")),
        parse_age(record.get("age", "")),
        parse_plan(record.get("plan", "")),
    )
    return fields.map(lambda f: Signup(*f))


async def check_unique(signup: Signup) -> Result[Signup, str]:
    await asyncio.sleep(0)  # stands in for a database query
    if signup.email in REGISTERED:
        return Err(f"{signup.email} is already registered")
    return Ok(signup)


async def settled(check: Awaitable[Result[Signup, str]]) -> Ok[Result[Signup, str]]:
    """Wrap a check's Result in Ok, so gather() hands back every record's own Result."""
    return Ok(await check)


def problems(reason: object) -> list[str]:
    return [str(e) for e in reason.errors] if isinstance(reason, ErrorGroup) else [str(reason)]


def main() -> None:
    print("Parsing each record:")
    parsed = [parse_signup(record) for record in RECORDS]
    for number, result in enumerate(parsed, 1):
        match result:
            case Ok(signup):
                print(f"  record {number}: ok  {signup.email} ({signup.plan}, {signup.age})")
            case Err(reason):
                print(f"  record {number}: rejected")
                for problem in problems(reason):
                    print(f"      - {problem}")

    batch = traverse_all(RECORDS, parse_signup)
    count = batch.match(ok=lambda _: 0, err=lambda reason: len(problems(reason)))
    print(f"\nThe whole batch at once: {count} problems in {len(RECORDS)} records.")

    valid = [result.value for result in parsed if isinstance(result, Ok)]
    checks = asyncio.run(gather(*(settled(check_unique(s)) for s in valid), limit=2)).unwrap()
    print("Uniqueness check of the valid records (at most 2 queries at once):")
    print(
        "  " + combine(*checks).match(ok=lambda _: "all new", err=lambda r: "; ".join(problems(r)))
    )

    accepted = [check.value.email for check in checks if isinstance(check, Ok)]
    print(f"\nAccepted {len(accepted)} of {len(RECORDS)}: {', '.join(accepted)}")


if __name__ == "__main__":
    main()
