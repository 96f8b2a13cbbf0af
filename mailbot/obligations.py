"""Who owes which month, when, and where each department stands. Pure: no I/O.

Every registered department owes one checklist per period (month) before the deadline day.
The state is computed from its submissions, never stored, so it can never drift from them.

This is also the one calendar: the deadline and its move over holidays, the reminder days, the
notice day (moved to a working day) and every digest key and window. The scheduler and the
digests both ask here, so a digest made by hand and the scheduled one agree on which day a
period closes.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from .config import Schedule
from .workdays import next_workday, previous_workday

FILED, LATE, REJECTED, MISSING = "filed", "late", "rejected", "missing"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
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


def is_open(period: str, now: dt.datetime, schedule: Schedule, tz: ZoneInfo) -> bool:
    """True while a checklist for `period` can still arrive on time."""
    return now < deadline(period, schedule, tz)


def last_closed_period(now: dt.datetime, schedule: Schedule, tz: ZoneInfo) -> str:
    """The latest period whose deadline has passed at `now`: what a digest means by default."""
    period = period_of(now, tz)
    while is_open(period, now, schedule, tz):
        period = shift_period(period, -1)
    return period


def reminder_dates(period: str, schedule: Schedule) -> dict[int, dt.date]:
    """Each configured reminder day -> the day it goes out: on a weekend or holiday the previous
    working day, but never back into the month before (then the next working day)."""
    year, month = parse_period(period)
    out = {}
    for day in sorted(set(schedule.reminder_days)):
        nominal = dt.date(year, month, day)
        moved = previous_workday(nominal)
        out[day] = moved if moved.month == month else next_workday(nominal)
    return out


def notice_date(period: str, schedule: Schedule) -> dt.date:
    """The notice day, never before the (possibly moved) deadline has passed, on a working day."""
    year, month = parse_period(period)
    day = max(dt.date(year, month, schedule.notice_day), deadline_day(period, schedule) + dt.timedelta(days=1))
    return next_workday(day)


def send_at(day: dt.date, schedule: Schedule, tz: ZoneInfo) -> dt.datetime:
    """`send_time` on `day`, office time, as UTC."""
    hour, minute = map(int, schedule.send_time.split(":"))
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=tz).astimezone(dt.timezone.utc)


def notice_at(period: str, schedule: Schedule, tz: ZoneInfo) -> dt.datetime:
    """When the period's notices, 通报 and monthly digest are due: the office's month closes here."""
    return send_at(notice_date(period, schedule), schedule, tz)


def month_window(period: str, schedule: Schedule, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    """From the previous period's notice time to this one's: each quarantined mail or failed
    delivery appears in exactly one monthly digest."""
    return notice_at(shift_period(period, -1), schedule, tz), notice_at(period, schedule, tz)


def monthly_key(period: str, now: dt.datetime, schedule: Schedule, tz: ZoneInfo) -> tuple[str, bool]:
    """(key, interim): `digest:{period}` from the notice time on (the one the scheduler sends);
    before it an on-demand digest is an interim one, at most one a day, so it never takes that key."""
    if now >= notice_at(period, schedule, tz):
        return f"digest:{period}", False
    return f"digest:{period}:{now.astimezone(tz).date().isoformat()}", True


def week_window(now: dt.datetime, schedule: Schedule, tz: ZoneInfo) -> tuple[dt.datetime, dt.datetime, dt.date]:
    """The seven days before the configured weekday (the latest one not after `now`), office time;
    a late run in the same week reports the same window."""
    today = now.astimezone(tz).date()
    day = schedule.weekly_digest_day
    anchor = today - dt.timedelta(days=(today.weekday() - WEEKDAYS.index(day)) % 7) if day else today
    end = dt.datetime.combine(anchor, dt.time(), tzinfo=tz).astimezone(dt.timezone.utc)
    return end - dt.timedelta(days=7), end, anchor


def weekly_key(now: dt.datetime, schedule: Schedule, tz: ZoneInfo) -> str:
    year, week, _day = week_window(now, schedule, tz)[2].isocalendar()
    return f"weekly:{year}-W{week:02d}"


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
    nil_report: bool = False  # the version in force says there was nothing to report (零报告)


def standing(submissions: list, period: str, schedule: Schedule, tz: ZoneInfo) -> Standing:
    """State of one department for one period from its submissions (any objects with
    `id`, `accepted`, `received_at`, `row_count` and optionally `nil_report`), oldest first."""
    accepted = [s for s in submissions if s.accepted]
    if not accepted:
        return Standing(REJECTED if submissions else MISSING, len(submissions))
    first, current = accepted[0], accepted[-1]
    state = LATE if first.received_at >= deadline(period, schedule, tz) else FILED
    return Standing(state, len(submissions), current.id, current.row_count, first.received_at,
                    bool(getattr(current, "nil_report", False)))
