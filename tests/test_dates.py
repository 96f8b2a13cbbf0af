"""Golden cases for the 日期 cell and the reporting month, plus a never-raises property."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbot.dates import DateParse, parse_date, period_of

D = dt.date


@pytest.mark.parametrize(
    "value, expected",
    [
        # text forms seen in real checklists (domain.md, Dates)
        ("2026.11.3", D(2026, 11, 3)),
        ("2026年11月5日", D(2026, 11, 5)),
        ("2026年11月5号", D(2026, 11, 5)),
        ("2026/11/09", D(2026, 11, 9)),
        ("2026-11-12", D(2026, 11, 12)),
        ("20261116", D(2026, 11, 16)),
        ("２０２６．１１．３", D(2026, 11, 3)),
        ("２０２６－１１－０３", D(2026, 11, 3)),
        ("２０２６年１１月５日", D(2026, 11, 5)),
        ("  2026-11-12  ", D(2026, 11, 12)),
        ("\u30002026/11/09\u3000", D(2026, 11, 9)),
        ("2026-11-12 10:30", D(2026, 11, 12)),
        ("2026/11/9 0:00:00", D(2026, 11, 9)),
        ("2026-11-12T10:30:00", D(2026, 11, 12)),
        ("2026年11月5日 10:30", D(2026, 11, 5)),
        ("2026 年 11 月 5 日", D(2026, 11, 5)),
        ("2024-02-29", D(2024, 2, 29)),
        # cell values as openpyxl / calamine deliver them
        (dt.datetime(2026, 11, 5, 14, 30), D(2026, 11, 5)),
        (D(2026, 11, 5), D(2026, 11, 5)),
        (46342, D(2026, 11, 16)),  # Excel serial, 1900 system
        (46342.75, D(2026, 11, 16)),  # serial with a time of day
        (45000, D(2023, 3, 15)),
        (20000, D(1954, 10, 3)),  # lower end of the serial range
        (80000, D(2119, 1, 11)),  # upper end of the serial range
        ("46342", D(2026, 11, 16)),  # a serial exported as text behaves like the number
        (20261116, D(2026, 11, 16)),  # yyyymmdd typed as a number cannot be month.day
    ],
)
def test_parses(value, expected):
    assert parse_date(value) == DateParse(expected, None, "")


@pytest.mark.parametrize(
    "value, code",
    [
        (None, "date_empty"),
        ("", "date_empty"),
        ("   ", "date_empty"),
        ("\u3000", "date_empty"),
        # 9.20 typed into a number cell is stored as 9.2: never guess
        (9.2, "date_bare_number"),
        (11.5, "date_bare_number"),
        (9, "date_bare_number"),
        (9.0, "date_bare_number"),
        (19999, "date_bare_number"),
        (80001, "date_bare_number"),
        (-3, "date_bare_number"),
        (Decimal("9.2"), "date_bare_number"),
        ("9.2", "date_bare_number"),
        ("11.5", "date_bare_number"),
        ("9", "date_bare_number"),
        ("９．２", "date_bare_number"),
        ("11月5日", "date_no_year"),
        ("11月5号", "date_no_year"),
        ("2026-02-30", "date_not_exist"),
        ("2026年13月1日", "date_not_exist"),
        ("2025.2.29", "date_not_exist"),
        ("20261131", "date_not_exist"),
        (20260230, "date_not_exist"),
        ("26.11.3", "date_unparsed"),  # two-digit year
        ("26/11/3", "date_unparsed"),
        ("11.5.", "date_unparsed"),
        ("2026年11月", "date_unparsed"),  # a month, not a day
        ("11/5", "date_unparsed"),
        ("本月无", "date_unparsed"),
        ("2026.11-3", "date_unparsed"),  # mixed separators
        (float("nan"), "date_unparsed"),
        (float("inf"), "date_unparsed"),
        (True, "date_unparsed"),
        (b"2026-11-12", "date_unparsed"),
        ([2026, 11, 12], "date_unparsed"),
    ],
)
def test_rejects_with_code(value, code):
    result = parse_date(value)
    assert result.date is None
    assert result.code == code
    assert result.detail  # every failure explains itself
    assert not result.ok


def test_year_less_takes_default_year():
    assert parse_date("11月5日", default_year=2026) == DateParse(D(2026, 11, 5), None)
    assert parse_date("１１月５号", default_year=2026).date == D(2026, 11, 5)
    assert parse_date("2月30日", default_year=2026).code == "date_not_exist"
    # only the explicit M月D日 form takes the default year
    assert parse_date("11.5", default_year=2026).code == "date_bare_number"
    assert parse_date(11.5, default_year=2026).code == "date_bare_number"
    assert parse_date("11/5", default_year=2026).code == "date_unparsed"
    # an explicit year is never overridden
    assert parse_date("2025年11月5日", default_year=2026).date == D(2025, 11, 5)


def test_details_are_specific():
    assert "9.2" in parse_date(9.2).detail
    assert parse_date("2026-02-30").detail == "2026年2月30日这一天不存在"
    assert "11月5日" in parse_date("11月5日").detail


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026年11月", (2026, 11)),
        ("2026年11月份", (2026, 11)),
        ("2026-11", (2026, 11)),
        ("2026.11", (2026, 11)),
        ("2026/1", (2026, 1)),
        ("11月份", (None, 11)),
        ("11月", (None, 11)),
        ("3月份信用记录使用情况清单", (None, 3)),
        ("关于报送２０２６年１１月信用清单的函", (2026, 11)),
        ("赞皇县市场监管局2026年 11 月份使用信用记录情况", (2026, 11)),
        ("2026年十一月份清单", (2026, 11)),
        ("2026年三月", (2026, 3)),
        ("11月份清单（2026年11月）", (2026, 11)),  # a month with a year wins
        ("2026年11月5日前报送的10月份清单", (None, 10)),  # the date is skipped
        ("2026年11月5日", None),
        ("11月5日", None),
        ("11月 5日", None),
        ("2026-11-12", None),
        ("2026.11.3", None),
        ("2026年13月", None),
        ("13月", None),
        ("统一月报", None),  # 一月 inside a word is not January
        ("电话0311-12", None),
        ("", None),
        ("信用清单", None),
    ],
)
def test_period_of(text, expected):
    assert period_of(text) == expected


@given(st.one_of(
    st.none(), st.text(), st.integers(), st.floats(), st.decimals(),
    st.dates(), st.datetimes(), st.booleans(),
    st.from_regex(r"\s*\d{1,4}[年./\-]\d{1,2}[月./\-]\d{1,2}[日号]?\s*", fullmatch=True),
))
def test_parse_date_never_raises(value):
    result = parse_date(value)
    assert (result.date is None) == (result.code is not None)
    assert result.code in (None, "date_empty", "date_bare_number", "date_no_year",
                           "date_not_exist", "date_unparsed")


@given(st.dates(min_value=D(1900, 1, 1), max_value=D(2099, 12, 31)),
       st.sampled_from(["{y}.{m}.{d}", "{y}年{m}月{d}日", "{y}/{m:02}/{d:02}", "{y}-{m}-{d}",
                        "{y}{m:02}{d:02}", "{y}年{m}月{d}号"]))
def test_any_real_date_round_trips(day, form):
    text = form.format(y=day.year, m=day.month, d=day.day)
    assert parse_date(text).date == day
    wide = text.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})  # full-width ASCII
    assert parse_date(wide).date == day


@given(st.text())
def test_period_of_never_raises(text):
    result = period_of(text)
    assert result is None or 1 <= result[1] <= 12
