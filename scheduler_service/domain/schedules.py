"""Recurring schedules: which slots of a cron expression fire, as pure functions of time.

Slots are wall-clock times in the schedule's time zone (croniter does the calendar). Each
slot is identified by its wall-clock time, so a time that a DST change repeats (02:30 twice
in autumn) is one slot and fires once; a time that it skips (02:30 in spring) fires at the
next valid instant, as croniter gives it.

Missed slots — the scheduler was down, or busy — follow this rule (``plan``):

- a slot missed by at most the grace period fires, late;
- older slots follow the schedule's catch-up policy: LATEST fires the most recent of them
  once, SKIP fires none, ALL fires each (the most recent 1000 at most).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import zoneinfo
from dataclasses import asdict, dataclass

from croniter import croniter

from .model import (
    MICROS_PER_SECOND,
    Backoff,
    ConcurrencyLimits,
    Micros,
    OnFailure,
    TaskSpec,
)

MAX_CATCH_UP = 1000


class CatchUp(enum.IntEnum):
    """The numbers of ``orchestrator.v1.CatchUp``."""

    LATEST = 1
    SKIP = 2
    ALL = 3


@dataclass(frozen=True, slots=True)
class Slot:
    at: Micros  # the instant, UTC micros
    wall: str  # the wall-clock time in the schedule's zone, ISO without offset


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A validated CreateSchedule request."""

    id: str
    cron: str
    time_zone: str
    template: TaskSpec
    catch_up: CatchUp
    client: str


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    id: str
    cron: str
    time_zone: str
    template: TaskSpec
    client: str
    paused: bool
    catch_up: CatchUp
    next_fire_at: Micros
    next_slot: str
    last_slot: str
    last_fire_at: Micros | None
    last_task_id: str
    fired_count: int
    created_at: Micros


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone, or ValueError naming it."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like Europe/Berlin"
        ) from None


def check_cron(expression: str) -> None:
    fields = expression.split()
    if len(fields) not in (5, 6) or not croniter.is_valid(expression):
        raise ValueError(
            f"{expression!r} is not a cron expression: five fields (minute hour day month "
            "weekday) or six with seconds last"
        )


def _local(at: Micros, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    return dt.datetime.fromtimestamp(at / MICROS_PER_SECOND, tz)


def _slot(moment: dt.datetime) -> Slot:
    return Slot(
        int(moment.timestamp() * MICROS_PER_SECOND), moment.replace(tzinfo=None).isoformat()
    )


def slots_after(cron: str, time_zone: str, after: Micros) -> croniter:
    """An iterator of slot datetimes strictly after ``after``."""
    return croniter(cron, _local(after, zone(time_zone)))


def next_slot(cron: str, time_zone: str, after: Micros, last_wall: str = "") -> Slot:
    """The first slot strictly after ``after`` that is not a DST repeat of ``last_wall``."""
    iterator = slots_after(cron, time_zone, after)
    while True:
        slot = _slot(iterator.get_next(dt.datetime))
        if slot.wall != last_wall:
            return slot


def plan(
    cron: str,
    time_zone: str,
    first: Slot,
    last_wall: str,
    now: Micros,
    grace: Micros,
    catch_up: CatchUp,
) -> tuple[list[Slot], Slot]:
    """The slots to fire now (oldest first), starting at ``first`` (the schedule's next slot,
    already due), and the next slot after ``now``."""
    cutoff = now - grace
    fire: list[Slot] = []
    if first.at < cutoff and catch_up != CatchUp.SKIP:
        old: list[Slot] = []
        iterator = slots_after(cron, time_zone, first.at - 1)
        if catch_up == CatchUp.LATEST:
            # The most recent slot before the cutoff (at or after `first`).
            latest = _slot(croniter(cron, _local(cutoff, zone(time_zone))).get_prev(dt.datetime))
            if latest.at >= first.at:
                old = [latest]
        else:
            while True:
                slot = _slot(iterator.get_next(dt.datetime))
                if slot.at >= cutoff:
                    break
                old.append(slot)
                if len(old) > MAX_CATCH_UP:
                    old.pop(0)
        fire.extend(old)
    # Slots within the grace period fire, late.
    start = max(first.at, cutoff) - 1
    iterator = slots_after(cron, time_zone, start)
    while True:
        slot = _slot(iterator.get_next(dt.datetime))
        if slot.at > now:
            upcoming = slot
            break
        fire.append(slot)
    # One slot per wall-clock time: a DST repeat of a fired time does not fire again.
    unique: list[Slot] = []
    seen = last_wall
    for slot in fire:
        if slot.wall != seen:
            unique.append(slot)
            seen = slot.wall
    if upcoming.wall == seen:
        upcoming = next_slot(cron, time_zone, upcoming.at, seen)
    return unique, upcoming


# -- templates ---------------------------------------------------------------------------


def template_to_json(spec: TaskSpec) -> str:
    data = asdict(spec)
    data.pop("run_at")
    data["labels"] = dict(spec.labels)
    return json.dumps(data, sort_keys=True)


def template_from_json(text: str) -> TaskSpec:
    data = json.loads(text)
    data["backoff"] = Backoff(**data["backoff"])
    data["on_failure"] = OnFailure(data["on_failure"])
    if data.get("key_limits") is not None:
        data["key_limits"] = ConcurrencyLimits(**data["key_limits"])
    return TaskSpec(run_at=None, **data)
