"""Who owes which month, and where each department stands. Pure: no I/O.

Every registered department owes one checklist per period (month) before the deadline day.
The state is computed from its submissions, never stored, so it can never drift from them.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .config import Schedule
from .workdays import next_workday

FILED, LATE, REJECTED, MISSING = "filed", "late", "rejected", "missing"
STATE_ZH = {FILED: "已按时报送", LATE: "逾期报送", REJECTED: "报送未通过", MISSING: "未报送"}


def period_of(moment: dt.datetime, tz: ZoneInfo) -> str:
    local = moment.astimezone(tz)
    return f"{local.year:04d}-{local.month:02d}"


def parse_period(period: str) -> tuple[int, int]:
    year, month = period.split("-")
    return int(year), int(month)


def shift_period(period: str, months: int) -> str:
    year, month = parse_period(period)
    index = year * 12 + (month - 1) + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def deadline_day(period: str, schedule: Schedule) -> dt.date:
    """The last day a checklist for `period` is on time."""
    year, month = parse_period(period)
    day = dt.date(year, month, schedule.deadline_day)
    return next_workday(day) if schedule.deadline_moves_on_holiday else day


def deadline(period: str, schedule: Schedule, tz: ZoneInfo) -> dt.datetime:
    """The first instant that is late: midnight after the deadline day, office time, as UTC."""
    end = dt.datetime.combine(deadline_day(period, schedule) + dt.timedelta(days=1), dt.time(), tzinfo=tz)
    return end.astimezone(dt.timezone.utc)


def days_late(period: str, filed_at: dt.datetime, schedule: Schedule, tz: ZoneInfo) -> int:
    """Calendar days from the deadline day to the office-time day the checklist arrived."""
    return max(0, (filed_at.astimezone(tz).date() - deadline_day(period, schedule)).days)


@dataclass(frozen=True)
class Standing:
    state: str
    submissions: int
    in_force_id: int | None = None
    rows: int = 0
    filed_at: dt.datetime | None = None  # when the first accepted version arrived


def standing(submissions: list, period: str, schedule: Schedule, tz: ZoneInfo) -> Standing:
    """State of one department for one period from its submissions (any objects with
    `id`, `accepted`, `received_at`, `row_count`), oldest first."""
    accepted = [s for s in submissions if s.accepted]
    if not accepted:
        return Standing(REJECTED if submissions else MISSING, len(submissions))
    first, current = accepted[0], accepted[-1]
    state = LATE if first.received_at >= deadline(period, schedule, tz) else FILED
    return Standing(state, len(submissions), current.id, current.row_count, first.received_at)
