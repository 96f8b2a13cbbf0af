"""Read the 日期 cell of a checklist row, and the reporting month named in a mail subject.

Pure functions: they never guess. A value that could be read two ways (the number 9.2 may be
a typed "9.20") comes back with a code, and the caller decides whether to reject or warn and
how to word the reply. Whether a date is in the future or outside the period is not judged here.
"""
from __future__ import annotations

import datetime as dt
import math
import numbers
import re
import unicodedata
from dataclasses import dataclass


# Excel's 1900 date system. Counting from 1899-12-30 absorbs Excel's fictitious 1900-02-29.
EXCEL_EPOCH = dt.date(1899, 12, 30)
# Serials in this range (1954-10-03 .. 2119-01-11) are dates; a smaller number is more likely
# a typed month.day (9.2) or a day, and is never guessed.
SERIAL_MIN, SERIAL_MAX = 20000, 80000

DATE_EMPTY = "date_empty"
DATE_BARE_NUMBER = "date_bare_number"
DATE_NO_YEAR = "date_no_year"
DATE_NOT_EXIST = "date_not_exist"
DATE_UNPARSED = "date_unparsed"


@dataclass(frozen=True)
class DateParse:
    """The outcome of reading one cell: a date, or a code saying why there is none.

    `detail` is a short Chinese phrase about this particular value, fit to quote in a reply.
    """

    date: dt.date | None
    code: str | None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.code is None


# A trailing time of day, as Excel or WPS writes it when a datetime is exported as text.
_TIME = re.compile(r"(?:\s+|T|(?<=[日号]))\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?$")
_SPACE_AROUND = re.compile(r"\s*([年月日号./-])\s*")
_YMD_SEP = re.compile(r"(\d{4})([./-])(\d{1,2})\2(\d{1,2})")
_YMD_CN = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})[日号]?")
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})")
_MD_CN = re.compile(r"(\d{1,2})月(\d{1,2})[日号]")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _nfkc(text: str) -> str:
    """Full-width digits and punctuation (２０２６．１１．３) become ASCII."""
    return unicodedata.normalize("NFKC", text).replace("。", ".")


def _make(y: int, m: int, d: int) -> DateParse:
    try:
        return DateParse(dt.date(y, m, d), None)
    except ValueError:
        return DateParse(None, DATE_NOT_EXIST, f"{y}年{m}月{d}日这一天不存在")


def _bare(shown: str) -> DateParse:
    return DateParse(
        None,
        DATE_BARE_NUMBER,
        f"“{shown}”是一个数字而不是日期，无法确定年月日（单元格里输入的“9.20”会被存成数字9.2），"
        "请写成“2026年9月20日”这样的完整日期",
    )


def _from_number(value: int | float, shown: str) -> DateParse:
    if isinstance(value, float) and not math.isfinite(value):
        return DateParse(None, DATE_UNPARSED, f"无法把“{shown}”识别为日期")
    whole = math.floor(value)
    if SERIAL_MIN <= whole <= SERIAL_MAX:
        return DateParse(EXCEL_EPOCH + dt.timedelta(days=whole), None)
    # 20261116 typed as a number is unambiguous: it cannot be a month.day.
    if value == whole and 19000101 <= whole <= 21001231:
        return _from_text(str(whole), None)
    return _bare(shown)


def _from_text(raw: str, default_year: int | None) -> DateParse:
    text = _nfkc(raw).strip()
    if not text:
        return DateParse(None, DATE_EMPTY, "日期为空")
    text = _TIME.sub("", text).strip()
    text = _SPACE_AROUND.sub(r"\1", text)
    if m := _YMD_SEP.fullmatch(text):
        return _make(int(m[1]), int(m[3]), int(m[4]))
    if m := _YMD_CN.fullmatch(text):
        return _make(int(m[1]), int(m[2]), int(m[3]))
    if m := _COMPACT.fullmatch(text):
        return _make(int(m[1]), int(m[2]), int(m[3]))
    if m := _MD_CN.fullmatch(text):
        if default_year is None:
            return DateParse(None, DATE_NO_YEAR, f"“{raw.strip()}”没有写年份")
        return _make(default_year, int(m[1]), int(m[2]))
    if _NUMBER.fullmatch(text):
        return _from_number(float(text), raw.strip())
    return DateParse(None, DATE_UNPARSED, f"无法把“{raw.strip()}”识别为日期")


def parse_date(value: object, *, default_year: int | None = None) -> DateParse:
    """Read a 日期 cell as a date; `default_year` (from 报送日期) completes `11月5日` only."""
    if value is None:
        return DateParse(None, DATE_EMPTY, "日期为空")
    if isinstance(value, dt.date):
        day = value.date() if isinstance(value, dt.datetime) else value
        if day < EXCEL_EPOCH + dt.timedelta(days=SERIAL_MIN):
            # A date-formatted cell holding a small number (9.2 shows as 1900-01-09): the
            # department typed a number, not a date.
            from openpyxl.utils.datetime import to_excel  # rare: not worth openpyxl in every worker

            number = round(float(to_excel(value)), 6)  # openpyxl knows Excel's 1900-02-29 quirk
            return _bare(str(int(number)) if number.is_integer() else f"{number:g}")
        return DateParse(day, None)
    if isinstance(value, str):
        return _from_text(value, default_year)
    if isinstance(value, numbers.Number) and not isinstance(value, (bool, complex)):
        try:
            if isinstance(value, numbers.Integral):  # kept as int: no overflow for huge values
                return _from_number(int(value), str(value))
            number = float(value)  # float, Decimal, Fraction
            shown = str(int(number)) if number.is_integer() else repr(number)
            return _from_number(number, shown)
        except (ValueError, OverflowError):  # sNaN, or too large for a float
            pass
    return DateParse(None, DATE_UNPARSED, f"无法把“{value!s:.40}”识别为日期")


# --- the reporting month in free text (mail subjects, sheet titles) -----------------------

_CN_MONTHS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9, "十": 10, "十一": 11, "十二": 12}
# A month is only a period when no day number follows it: 2026年11月5日 is a date, not a month.
_PERIOD_CN = re.compile(
    r"((?:19|20)\d{2})\s*年\s*(\d{1,2}|十[一二]?|[一二三四五六七八九])\s*月(?!\s*\d)")
_PERIOD_SEP = re.compile(r"(?<!\d)((?:19|20)\d{2})\s*[-./]\s*(\d{1,2})(?!\d)(?!\s*[-./]\s*\d)")
# Year-less months take Arabic digits only: 一月 hides inside words such as 统一月报.
_PERIOD_MONTH = re.compile(r"(?<![\d年])(\d{1,2})\s*月(?!\s*\d)")


def _month(token: str) -> int:
    return _CN_MONTHS[token] if token in _CN_MONTHS else int(token)


def period_of(text: str) -> tuple[int | None, int] | None:
    """Find the reporting month in a subject: (2026, 11), (None, 11) when no year, or None.

    A month with a year wins over a year-less one anywhere in the text; otherwise the first wins.
    """
    if not text:
        return None
    s = _nfkc(text)
    found: list[tuple[int, int, int]] = []
    for rx in (_PERIOD_CN, _PERIOD_SEP):
        for m in rx.finditer(s):
            month = _month(m[2])
            if 1 <= month <= 12:
                found.append((m.start(), int(m[1]), month))
                break
    if found:
        _, year, month = min(found)
        return (year, month)
    for m in _PERIOD_MONTH.finditer(s):
        month = int(m[1])
        if 1 <= month <= 12:
            return (None, month)
    return None
