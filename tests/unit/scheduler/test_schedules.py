"""Slot planning of recurring schedules: pure functions of the cron, the zone and the clock."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest

from scheduler_service.domain.schedules import (
    CatchUp,
    Slot,
    check_cron,
    next_slot,
    plan,
    template_from_json,
    template_to_json,
    zone,
)
from tests.integration.store.test_store_contract import spec

S = 1_000_000
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def at(year: int, month: int, day: int, hour: int, minute: int = 0, tz: dt.tzinfo = dt.UTC) -> int:
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=tz).timestamp() * S)


def test_cron_and_zone_checks() -> None:
    check_cron("*/5 * * * *")
    check_cron("* * * * * */10")  # seconds last
    for bad in ("", "* * *", "61 * * * *", "not cron at all"):
        with pytest.raises(ValueError):
            check_cron(bad)
    zone("Europe/Berlin")
    with pytest.raises(ValueError, match="time zone"):
        zone("Mars/Olympus")


def test_next_slot_is_strictly_after() -> None:
    slot = next_slot("0 * * * *", "UTC", at(2026, 1, 1, 10))
    assert slot.at == at(2026, 1, 1, 11) and slot.wall == "2026-01-01T11:00:00"


def test_spring_forward_skipped_time_fires_once_at_the_next_valid_instant() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29.
    slot = next_slot("30 2 * * *", "Europe/Berlin", at(2026, 3, 29, 0))
    assert slot.at == at(2026, 3, 29, 3, 0, BERLIN)
    after = next_slot("30 2 * * *", "Europe/Berlin", slot.at, slot.wall)
    assert after.wall == "2026-03-30T02:30:00"


def test_fall_back_repeated_time_fires_once() -> None:
    # 02:30 happens twice in Berlin on 2026-10-25; it is one slot.
    first = next_slot("30 2 * * *", "Europe/Berlin", at(2026, 10, 25, 0))
    second = next_slot("30 2 * * *", "Europe/Berlin", first.at, first.wall)
    assert first.wall == "2026-10-25T02:30:00"
    assert second.wall == "2026-10-26T02:30:00"
    # Planning through the night fires the slot once too.
    fired, upcoming = plan(
        "30 * * * *", "Europe/Berlin", first, "", at(2026, 10, 25, 3, 45, BERLIN), 10 * 3600 * S,
        CatchUp.LATEST,
    )  # fmt: skip
    walls = [s.wall for s in fired]
    assert walls.count("2026-10-25T02:30:00") == 1
    assert len(walls) == len(set(walls))
    assert upcoming.wall == "2026-10-25T04:30:00"


def test_slots_within_grace_fire_late_and_older_follow_the_policy() -> None:
    first = Slot(at(2026, 1, 1, 0), "2026-01-01T00:00:00")
    now = at(2026, 1, 1, 10, 30)
    grace = 2 * 3600 * S  # slots at 09:00 and 10:00 are within it; 00:00..08:00 are old
    fired, upcoming = plan("0 * * * *", "UTC", first, "", now, grace, CatchUp.LATEST)
    assert [s.wall[11:16] for s in fired] == ["08:00", "09:00", "10:00"]
    assert upcoming.wall == "2026-01-01T11:00:00"
    fired, _ = plan("0 * * * *", "UTC", first, "", now, grace, CatchUp.SKIP)
    assert [s.wall[11:16] for s in fired] == ["09:00", "10:00"]
    fired, _ = plan("0 * * * *", "UTC", first, "", now, grace, CatchUp.ALL)
    assert len(fired) == 11 and fired[0] == first


def test_catch_up_all_keeps_at_most_the_latest_thousand() -> None:
    first = Slot(at(2026, 1, 1, 0), "2026-01-01T00:00:00")
    fired, _ = plan("* * * * *", "UTC", first, "", at(2026, 1, 3, 0), 0, CatchUp.ALL)
    assert len(fired) == 1001  # 1000 old ones plus the one on the cutoff
    assert fired[-1].at == at(2026, 1, 3, 0)


def test_on_time_slot_fires_alone() -> None:
    first = next_slot("* * * * * *", "UTC", at(2026, 1, 1, 0))
    fired, upcoming = plan("* * * * * *", "UTC", first, "", first.at, 60 * S, CatchUp.LATEST)
    assert fired == [first] and upcoming.at == first.at + S


def test_templates_round_trip() -> None:
    template = spec(labels={"a": "b"}, priority=4)
    assert template_from_json(template_to_json(template)) == template
