"""Working days: what chinesecalendar 1.11 says for 2026, and the Monday-Friday fallback."""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta

import chinese_calendar
import pytest

from mailbot import workdays
from mailbot.workdays import add_workdays, is_workday, next_workday, previous_workday

LOGGER = "mailbot.workdays"


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch):
    """Each test starts as a fresh process would: no unknown year warned about yet."""
    monkeypatch.setattr(workdays, "_warned_years", set())


def _warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


# --- National Day / Mid-Autumn 2026: 9-25..27 and 10-1..7 off; Sun 9-20 and Sat 10-10 worked.

@pytest.mark.parametrize("day", [date(2026, 10, d) for d in range(1, 8)])
def test_national_day_2026_is_off(day):
    assert not is_workday(day)


def test_national_day_2026_bounds():
    assert is_workday(date(2026, 9, 30))
    assert is_workday(date(2026, 10, 8))
    assert previous_workday(date(2026, 10, 5)) == date(2026, 9, 30)
    assert previous_workday(date(2026, 10, 1)) == date(2026, 9, 30)
    assert next_workday(date(2026, 10, 5)) == date(2026, 10, 8)


def test_make_up_workdays_2026_count():
    # 调休: Sunday 2026-09-20 and Saturday 2026-10-10 are working days.
    assert date(2026, 9, 20).weekday() == 6 and is_workday(date(2026, 9, 20))
    assert date(2026, 10, 10).weekday() == 5 and is_workday(date(2026, 10, 10))
    assert previous_workday(date(2026, 9, 20)) == date(2026, 9, 20)
    assert next_workday(date(2026, 10, 10)) == date(2026, 10, 10)
    assert previous_workday(date(2026, 10, 11)) == date(2026, 10, 10)


def test_mid_autumn_2026():
    assert not any(is_workday(date(2026, 9, d)) for d in (25, 26, 27))
    assert previous_workday(date(2026, 9, 27)) == date(2026, 9, 24)
    assert next_workday(date(2026, 9, 25)) == date(2026, 9, 28)


def test_plain_weekend():
    assert date(2026, 9, 13).weekday() == 6
    assert previous_workday(date(2026, 9, 13)) == date(2026, 9, 11)
    assert previous_workday(date(2026, 9, 12)) == date(2026, 9, 11)
    assert next_workday(date(2026, 9, 12)) == date(2026, 9, 14)
    assert previous_workday(date(2026, 9, 11)) == date(2026, 9, 11)


# --- Spring Festival 2026: 2-15..23 off; Saturdays 2-14 and 2-28 worked.

def test_spring_festival_2026():
    assert not any(is_workday(date(2026, 2, d)) for d in range(15, 24))
    assert is_workday(date(2026, 2, 14)) and is_workday(date(2026, 2, 28))
    assert previous_workday(date(2026, 2, 20)) == date(2026, 2, 14)
    assert next_workday(date(2026, 2, 20)) == date(2026, 2, 24)
    # Deadline 2-25 is a Wednesday workday; a reminder 3 days earlier (Sun 2-22) moves to 2-14.
    assert previous_workday(date(2026, 2, 22)) == date(2026, 2, 14)


def test_add_workdays_over_holidays():
    # 7 working days from 2026-09-29: 9-30, 10-8, 10-9, 10-10 (Sat, 调休), 10-12, 10-13, 10-14.
    assert add_workdays(date(2026, 9, 29), 7) == date(2026, 10, 14)
    assert add_workdays(date(2026, 2, 13), 1) == date(2026, 2, 14)
    assert add_workdays(date(2026, 2, 14), 1) == date(2026, 2, 24)
    assert add_workdays(date(2026, 3, 10), 0) == date(2026, 3, 10)
    assert add_workdays(date(2026, 10, 8), -1) == date(2026, 9, 30)


def test_add_workdays_matches_find_workday_within_2026():
    start = date(2026, 1, 1)
    for offset in range(0, 330, 3):
        d = start + timedelta(days=offset)
        for n in (1, 2, 5, 7, 10):
            assert add_workdays(d, n) == chinese_calendar.find_workday(n - 1, d + timedelta(days=1)), (d, n)


def test_datetime_is_accepted_as_its_day():
    assert previous_workday(datetime(2026, 10, 5, 23, 59)) == date(2026, 9, 30)
    assert type(previous_workday(datetime(2026, 10, 5, 9))) is date


def test_rejects_non_dates():
    with pytest.raises(TypeError):
        is_workday("2026-10-01")
    with pytest.raises(TypeError):
        add_workdays(date(2026, 1, 5), 1.5)


# --- Years the package does not know.

@pytest.mark.parametrize("year", [2027, 2003])
def test_unknown_year_falls_back_to_monday_friday(year, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for offset in range(28):
        day = date(year, 3, 1) + timedelta(days=offset)
        assert is_workday(day) is (day.weekday() < 5)
    sunday = next(date(year, 6, d) for d in range(1, 8) if date(year, 6, d).weekday() == 6)
    assert previous_workday(sunday) == sunday - timedelta(days=2)
    assert next_workday(sunday) == sunday + timedelta(days=1)
    records = _warnings(caplog)
    assert len(records) == 1
    message = records[0].getMessage()
    assert str(year) in message and "pip install -U chinesecalendar" in message


def test_one_warning_per_unknown_year(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    for _ in range(3):
        is_workday(date(2027, 5, 3))
        is_workday(date(2003, 5, 3))
        is_workday(date(2026, 5, 6))  # known year: never warns
    years = sorted(int(r.args[0]) for r in _warnings(caplog))
    assert years == [2003, 2027]


def test_walk_from_2026_into_2027(caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    with pytest.raises(NotImplementedError):  # what a plain find_workday would do
        chinese_calendar.find_workday(6, date(2026, 12, 26))
    # Mon 12-28 .. Thu 12-31 are workdays; 2027 falls back to Mon-Fri (Fri 1-1, Mon 1-4, Tue 1-5).
    assert add_workdays(date(2026, 12, 25), 7) == date(2027, 1, 5)
    assert next_workday(date(2027, 1, 2)) == date(2027, 1, 4)
    assert previous_workday(date(2027, 1, 3)) == date(2027, 1, 1)
    assert [int(r.args[0]) for r in _warnings(caplog)] == [2027]


def test_walk_back_from_2004_into_2003():
    # 2004-01-01 is New Year's Day (Thursday); 2003-12-31 is a Wednesday under the fallback.
    assert not is_workday(date(2004, 1, 1))
    assert previous_workday(date(2004, 1, 1)) == date(2003, 12, 31)
    assert add_workdays(date(2004, 1, 2), -1) == date(2003, 12, 31)


# --- `config check` tells the admin before the calendar runs out (issue 17).

LAST_KNOWN = max(year for year in range(2004, 2101) if workdays.has_data(year))


def test_has_data_follows_what_chinese_calendar_knows():
    assert workdays.has_data(2004) and workdays.has_data(2026) and workdays.has_data(LAST_KNOWN)
    assert not workdays.has_data(2003) and not workdays.has_data(LAST_KNOWN + 1)
    with pytest.raises(NotImplementedError):
        chinese_calendar.is_workday(date(LAST_KNOWN + 1, 6, 1))


def test_config_check_warns_in_december_when_the_coming_year_is_missing():
    from mailbot import preflight

    assert preflight.calendar(date(LAST_KNOWN, 11, 30)) == []  # too early: the schedule may not be out
    [december] = preflight.calendar(date(LAST_KNOWN, 12, 1))
    assert december.ok and december.warning
    assert december.what.startswith("节假日数据（chinesecalendar ")
    assert f"没有{LAST_KNOWN + 1}年的法定节假日和调休安排：{LAST_KNOWN + 1}年1月起的提醒日" in december.detail
    assert "请每年12月升级" in december.detail and "pip install -U chinesecalendar" in december.detail
    [late] = preflight.calendar(date(LAST_KNOWN + 1, 3, 1))
    assert f"没有今年（{LAST_KNOWN + 1}年）的法定节假日" in late.detail and "请立即升级" in late.detail


def test_config_check_command_shows_the_calendar_warning(tmp_path, capsys):
    import json

    import time_machine

    from mailbot.cli import main
    from tests import factory
    from tests.test_config import MINIMAL

    data = json.loads(json.dumps(MINIMAL)) | {"database": {"url": f"sqlite:///{tmp_path}/mailbot.db"}}
    path = factory.write_config(tmp_path / "mailbot.yaml", data)
    path.chmod(0o600)
    with time_machine.travel(datetime(LAST_KNOWN, 12, 2, 9, 0), tick=False):
        assert main(["--config", str(path), "config", "check"]) == 0  # a warning: the exit status stays 0
    out = capsys.readouterr().out.replace("\n", "")
    assert f"! 节假日数据（chinesecalendar " in out and f"没有{LAST_KNOWN + 1}年的法定节假日" in out
