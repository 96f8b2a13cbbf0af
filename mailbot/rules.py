"""Validation rules: checklist rows -> problems and derived fields. Pure: no I/O.

Every problem names the sheet, row and column and says in Chinese how to fix it. Whether a
code rejects the submission (`error`) or only informs (`warning`) is config (`rules.severity`).
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace

from . import codes, dates, vocabulary
from .checklist import FIELD_TITLES, Checklist, norm, text
from .config import Department
from .errors import Problem

# code -> default severity; the office may override any of them in config.
DEFAULT_SEVERITY = {
    "wrong_template": "error",
    "missing_column": "error",
    "entity_empty": "error",
    "matter_empty": "error",
    "date_empty": "error",
    "usage_empty": "error",
    "measure_empty": "warning",
    "date_bare_number": "error",
    "date_unparsed": "error",
    "date_not_exist": "error",
    "date_no_year": "error",
    "date_future": "error",
    "date_outside_period": "warning",
    "uscc_invalid": "error",
    "id_invalid": "error",
    "unit_mismatch": "error",
    "unit_missing": "warning",
    "report_date_unparsed": "warning",
    "duplicate_row": "warning",
    "empty_checklist": "error",
}


@dataclass(frozen=True)
class Context:
    department: Department | None  # None when checking a file offline: the 单位 is not compared
    period: str  # YYYY-MM the submission is filed for
    today: dt.date  # in the office's time zone
    severity: dict[str, str] = field(default_factory=dict)  # overrides from config
    departments: tuple[Department, ...] = ()  # every registered department, to name a mismatch


@dataclass
class Checked:
    problems: list[Problem]
    derived: dict[int, dict]  # row_no -> derived fields
    dates: dict[int, dt.date | None]  # row_no -> parsed date

    @property
    def accepted(self) -> bool:
        return not any(p.is_error for p in self.problems)


def _period_bounds(period: str) -> tuple[int, int]:
    year, month = period.split("-")
    return int(year), int(month)


def _where(checklist: Checklist, row: int | None, name: str | None) -> str:
    place = f"工作表“{checklist.sheet}”"
    if row:
        place += f"第{row}行"
    if name:
        letter = checklist.column_letter(name)
        title = FIELD_TITLES.get(name, name)
        place += f"“{title}”列" + (f"（{letter}{row}）" if letter and row else "")
    return place


def _severity(ctx: Context, code: str) -> str:
    return ctx.severity.get(code, DEFAULT_SEVERITY.get(code, "error"))


def _problem(ctx: Context, checklist: Checklist, code: str, message: str, row: int | None = None,
             name: str | None = None) -> Problem | None:
    severity = _severity(ctx, code)
    if severity == "off":
        return None
    where = _where(checklist, row, name)
    return Problem(code, f"{where}：{message}", severity, checklist.sheet, row,
                   checklist.column_letter(name) if name else None)


_DATE_HINT = "请填写完整日期，如“2026年11月5日”或“2026-11-05”。"


def _date_message(result: dates.DateParse) -> str:
    if result.code == "date_empty":
        return "日期未填写。" + _DATE_HINT
    if result.code == "date_not_exist":
        return f"{result.detail}，请核对月份和日。"
    if result.code == "date_bare_number":
        return f"{result.detail}。"
    return f"{result.detail}。" + _DATE_HINT
_REQUIRED = {
    "entity": ("entity_empty", "市场主体（自然人）名称未填写，请填写企业或个人名称。"),
    "matter": ("matter_empty", "行政管理事项名称未填写，请填写所办理的事项名称（如“食品经营许可证核发”）。"),
    "usage": ("usage_empty", "使用信用记录或报告情况未填写，请说明查询渠道和查询结果（如“经信用中国查询，无失信记录”）。"),
    "measure": ("measure_empty", "使用的激励或惩戒措施未填写；未采取措施的请填写“无”。"),
}


def unit_matches(unit: str, dept: Department) -> bool:
    u = re.sub(r"[(（].*?[)）]", "", norm(unit))
    for name in (dept.name, *dept.aliases):
        n = norm(name)
        if u == n or (len(u) >= 4 and (u in n or n in u)):
            return True
    return False


def check_header(checklist: Checklist, ctx: Context) -> list[Problem]:
    out: list[Problem | None] = []
    if ctx.department is None:
        pass
    elif not checklist.unit:
        out.append(_problem(ctx, checklist, "unit_missing",
                            f"表头“单位”未填写，请填写“{ctx.department.name}”。"))
    elif not unit_matches(checklist.unit, ctx.department):
        other = next((d for d in ctx.departments if d.id != ctx.department.id and unit_matches(checklist.unit, d)), None)
        extra = f"（“{other.name}”应由其登记的邮箱报送）" if other else ""
        out.append(_problem(ctx, checklist, "unit_mismatch",
                            f"表内单位为“{checklist.unit}”，与发件邮箱登记的单位“{ctx.department.name}”不一致{extra}。"
                            "请核对后使用本单位登记的邮箱发送本单位的清单。"))
    if text(checklist.report_date) and report_date(checklist) is None:
        out.append(_problem(ctx, checklist, "report_date_unparsed",
                            f"无法识别报送日期“{text(checklist.report_date)}”。" + _DATE_HINT))
    return [p for p in out if p]


def report_date(checklist: Checklist) -> dt.date | None:
    if not text(checklist.report_date):
        return None
    return dates.parse_date(checklist.report_date).date


def check(checklist: Checklist, ctx: Context) -> Checked:
    """All rules over one parsed checklist; derived fields feed the digests."""
    problems: list[Problem | None] = list(checklist.problems) + check_header(checklist, ctx)
    year, month = _period_bounds(ctx.period)
    default_year = (report_date(checklist) or dt.date(year, month, 1)).year
    derived: dict[int, dict] = {}
    parsed_dates: dict[int, dt.date | None] = {}
    seen: dict[tuple, int] = {}
    for row in checklist.rows:
        p = lambda code, msg, name=None: problems.append(_problem(ctx, checklist, code, msg, row.row_no, name))  # noqa: E731
        for name, (code, message) in _REQUIRED.items():
            if name in checklist.columns and not row.text(name):
                p(code, message, name)
        day = None
        if "date" in checklist.columns:
            result = dates.parse_date(row.cells.get("date"), default_year=default_year)
            day = result.date
            if result.code:
                p(result.code, _date_message(result), "date")
            elif day and day > ctx.today:
                p("date_future", f"日期{day:%Y-%m-%d}晚于今天，请核对。", "date")
            elif day and (day.year, day.month) != (year, month):
                p("date_outside_period",
                  f"日期{day:%Y-%m-%d}不在本次报送所属的{year}年{month}月内，请核对；如为补报其他月份，请在邮件主题中注明月份（如“{day.year}年{day.month}月”）。",
                  "date")
        parsed_dates[row.row_no] = day
        found = []
        for name in ("entity", "code"):
            value = row.text(name) if name in row.cells else ""
            for extra_title, extra in row.extras.items():
                if name == "code" and re.search(r"代码|身份证|证件", extra_title):
                    value += " " + extra
            for code in codes.find_codes(value):
                found.append({"kind": code.kind, "value": code.value, "valid": code.problem is None})
                if code.problem:
                    label = "统一社会信用代码" if code.kind == "uscc" else "身份证号码"
                    # the whole number is shown: this message only goes to the department that sent it
                    p(f"{code.kind}_invalid", f"{label}“{code.value}”有误：{code.problem}。请核对后更正。",
                      "entity" if name == "entity" else None)
        measures = vocabulary.map_measures(row.text("measure"))
        joined = " ".join(row.text(n) for n in ("usage", "measure", "matter"))
        derived[row.row_no] = {
            "measures": [{"raw": m.raw, "canonical": m.canonical, "kind": m.kind} for m in measures],
            "channels": vocabulary.detect_channels(joined),
            "lists": vocabulary.detect_lists(joined),
            "field": vocabulary.detect_field(row.text("matter")),
            "codes": found,
        }
        key = tuple(norm(row.cells.get(n)) for n in ("entity", "matter", "date", "usage", "measure"))
        if key in seen:
            p("duplicate_row", f"与第{seen[key]}行内容完全相同，请确认是否重复填写。")
        else:
            seen[key] = row.row_no
    if not checklist.rows and not checklist.nil_report:
        problems.append(_problem(
            ctx, checklist, "empty_checklist",
            "表格中没有填写任何记录。如本月没有使用信用记录和信用报告的情况，请在表格第一行填写“本月无使用信用记录和信用报告情况”后重新发送。"))
    return Checked([q for q in problems if q], derived, parsed_dates)


def subject_period(subject: str, received: dt.date) -> str | None:
    """A month named in the mail subject, e.g. “2026年11月” or “11月份”."""
    found = dates.period_of(subject)
    if not found:
        return None
    year, month = found
    if year is None:  # “11月份”: the nearest such month not after the month received
        year = received.year if month <= received.month else received.year - 1
    return f"{year:04d}-{month:02d}"


def reporting_period(subject: str, checklist: Checklist | None, received: dt.date) -> tuple[str, str]:
    """(period, source): the subject if it names a month, else 报送日期, else the day received."""
    found = subject_period(subject, received)
    if found:
        return found, "subject"
    day = report_date(checklist) if checklist else None
    if day:
        return f"{day.year:04d}-{day.month:02d}", "report_date"
    return f"{received.year:04d}-{received.month:02d}", "received"


def with_severity(problems: list[Problem], ctx_severity: dict[str, str]) -> list[Problem]:
    """Apply config severities to problems raised outside `check` (e.g. by the reader)."""
    out = []
    for p in problems:
        sev = ctx_severity.get(p.code)
        if sev == "off":
            continue
        out.append(replace(p, severity=sev) if sev else p)
    return out

