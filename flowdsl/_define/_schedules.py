"""Cron schedules: checked at import (`schedule_problems`), ticked by workers (`due_ticks`).

A schedule is a cron expression read in an IANA time zone (croniter does the
calendar: months, weekdays, daylight-saving gaps). Workers ask the store when
a schedule was last looked at (`Store.observe_schedule`) and start one run
per tick they find since then, with the run id `tick_run_id` gives it, so
that any number of workers start each tick once. Which missed ticks run is
the schedule's ``catch_up``: a tick is *missed* when it was found more than
`ON_TIME` seconds after it came (no worker ran then).
"""

from __future__ import annotations

import datetime as _dt
import zoneinfo
from typing import TYPE_CHECKING, Any, Final

from .._plan import CATCH_UPS, Schedule

if TYPE_CHECKING:
    from croniter import croniter as Croniter

__all__ = ["ON_TIME", "due_ticks", "next_tick", "schedule_problems", "tick_run_id"]

ON_TIME: Final = 60.0
"""A tick found up to this many seconds after it came is on time; later, it was missed."""


def _croniter() -> type[Croniter]:
    """croniter, imported when a schedule is first checked (``import flowdsl`` does not pay)."""
    from croniter import croniter

    return croniter


def croniter(expression: str, start: Any) -> Croniter:
    return _croniter()(expression, start)


def schedule_problems(cron: object, timezone: object, catch_up: object) -> list[str]:
    """What is wrong with ``@workflow(schedule=cron, timezone=..., catch_up=...)``."""
    problems: list[str] = []
    if not isinstance(cron, str) or not cron.strip():
        problems.append(f"schedule= takes a cron expression such as '0 2 * * *', got {cron!r}")
    elif not _croniter().is_valid(cron):
        problems.append(
            f"schedule={cron!r} is not a cron expression croniter accepts; write five fields "
            f"(minute hour day-of-month month day-of-week), e.g. '0 2 * * *' for 02:00 daily"
        )
    if not isinstance(timezone, str) or not timezone:
        problems.append(f"timezone= takes an IANA time zone name such as 'UTC', got {timezone!r}")
    else:
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            problems.append(
                f"timezone={timezone!r} is not a known time zone; use an IANA name such as "
                f"'UTC' or 'Europe/Paris'"
            )
    if catch_up not in CATCH_UPS:
        problems.append(f"catch_up= must be 'latest', 'all' or 'none', got {catch_up!r}")
    return problems


def _aware(schedule: Schedule, when: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(when, zoneinfo.ZoneInfo(schedule.timezone))


def next_tick(schedule: Schedule, after: float) -> float:
    """The first tick strictly after `after` (epoch seconds)."""
    tick: _dt.datetime = croniter(schedule.cron, _aware(schedule, after)).get_next(_dt.datetime)
    return tick.timestamp()


def _latest(schedule: Schedule, now: float) -> _dt.datetime:
    """The most recent tick at or before `now` (croniter's ``get_prev`` alone is strictly before)."""
    found = croniter(schedule.cron, _aware(schedule, now))
    last: _dt.datetime = found.get_prev(_dt.datetime)
    after: _dt.datetime = croniter(schedule.cron, last).get_next(_dt.datetime)
    return _aware(schedule, (after if after.timestamp() <= now else last).timestamp())


def due_ticks(schedule: Schedule, previous: float | None, now: float) -> list[_dt.datetime]:
    """The ticks to start now, given when a worker last looked (`previous`; None: never).

    On first sight only ``"latest"`` starts one: the most recent tick. Then
    every tick in (previous, now]: ``"all"`` starts each, ``"none"`` those on
    time (see `ON_TIME`), ``"latest"`` those on time or, when none is, the
    last one; so each policy starts at least what the one before it does.
    Each tick is the datetime `datetime.fromtimestamp` gives for its instant
    in the schedule's zone (croniter marks some with ``fold=1`` needlessly).
    """
    if previous is None:
        if schedule.catch_up != "latest":
            return []
        return [_latest(schedule, now)]
    ticks: list[_dt.datetime] = []
    found = croniter(schedule.cron, _aware(schedule, previous))
    while True:
        tick: float = found.get_next(float)
        if tick > now:
            break
        ticks.append(_aware(schedule, tick))
    if schedule.catch_up == "all":
        return ticks
    on_time = [tick for tick in ticks if now - tick.timestamp() <= ON_TIME]
    if schedule.catch_up == "latest":
        return on_time or ticks[-1:]
    return on_time


def tick_run_id(workflow: str, tick: _dt.datetime) -> str:
    """The run id of a tick's run: the same in every worker, so a tick starts once."""
    return f"{workflow}@{tick.isoformat()}"
