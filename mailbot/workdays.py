"""Chinese working days (statutory holidays and make-up workdays, 调休) for deadlines and reminders.

The data comes from the `chinesecalendar` package, which only knows the years it was released
for (the State Council publishes each schedule late in the previous year). For any other year
the bot must keep running, so it falls back to Monday-Friday and warns, once per year, that
the package needs an update.
"""
from __future__ import annotations

import logging
import threading
from datetime import date, datetime, timedelta

import chinese_calendar

log = logging.getLogger("mailbot.workdays")

_ONE_DAY = timedelta(days=1)
_warned_years: set[int] = set()
_warned_lock = threading.Lock()


def _as_date(day: date) -> date:
    """Accept a datetime too, but compare calendar days only (a datetime is a date subclass)."""
    if isinstance(day, datetime):
        return day.date()
    if not isinstance(day, date):
        raise TypeError(f"expected a datetime.date, got {type(day).__name__}")
    return day


def _warn_unknown_year(year: int) -> None:
    """Log once per process and year, so a long-running bot does not flood its log."""
    with _warned_lock:
        if year in _warned_years:
            return
        _warned_years.add(year)
    log.warning(
        "chinesecalendar has no holiday data for %d; treating Monday-Friday as working days. "
        "The chinesecalendar package needs an update: pip install -U chinesecalendar",
        year,
    )


def has_data(year: int) -> bool:
    """Does the installed chinesecalendar know `year`'s holidays and 调休? (`config check` asks.)"""
    try:
        chinese_calendar.is_workday(date(year, 6, 1))
    except NotImplementedError:
        return False
    return True


def is_workday(day: date) -> bool:
    """True if government offices work on `day`: holidays are off, 调休 weekend days are on."""
    day = _as_date(day)
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        _warn_unknown_year(day.year)
        return day.weekday() < 5


def previous_workday(day: date) -> date:
    """`day` if it is a workday, else the nearest earlier one (a reminder is moved earlier)."""
    day = _as_date(day)
    while not is_workday(day):
        day -= _ONE_DAY
    return day


def next_workday(day: date) -> date:
    """`day` if it is a workday, else the nearest later one (a deadline may move later)."""
    day = _as_date(day)
    while not is_workday(day):
        day += _ONE_DAY
    return day


def add_workdays(day: date, n: int) -> date:
    """The n-th working day after `day`, not counting `day` itself.

    "Within 7 working days of d" ends on add_workdays(d, 7), which equals chinese_calendar's
    find_workday(6, d + 1 day) - but walking with is_workday keeps the Monday-Friday fallback
    when the walk crosses into a year the package does not know. A negative n counts back the
    same way; n == 0 returns `day` unchanged.
    """
    day = _as_date(day)
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    step = _ONE_DAY if n >= 0 else -_ONE_DAY
    remaining = abs(n)
    while remaining:
        day += step
        if is_workday(day):
            remaining -= 1
    return day
