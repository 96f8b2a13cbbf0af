"""Validation rules: checklist rows -> problems and derived fields. Pure: no I/O.

Every problem names the sheet, spreadsheet row and column letter and says in Chinese what is
wrong and how to fix it. Whether a code rejects the submission (`error`), only informs
(`warning`) or is not checked (`off`) is config (`rules.severity`) over `DEFAULT_SEVERITY`.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field, replace

from . import codes, dates, vocabulary
from .checklist import FIELD_TITLES, Checklist, norm, text
from .config import Department
from .errors import Problem
from .workbook import get_column_letter

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
    "submitter_missing": "warning",
    "report_date_missing": "warning",
    "report_date_unparsed": "warning",
    "duplicate_row": "warning",
    "sheet_other_month": "error",
    "empty_checklist": "error",
}
# code -> what it means, for `mailbot rules` and the example config.
MEANING = {
    "wrong_template": "附件中找不到情况清单的表头（不是按模板填写的清单）",
    "missing_column": "表头缺少模板中的某一列",
    "entity_empty": "“市场主体（自然人）名称”未填写",
    "matter_empty": "“行政管理事项名称”未填写",
    "date_empty": "“日期”未填写",
    "usage_empty": "“使用信用记录或报告情况”未填写",
    "measure_empty": "“使用的激励或惩戒措施”未填写",
    "date_bare_number": "“日期”是一个数字（如 9.2），无法确定年月日",
    "date_unparsed": "“日期”无法识别",
    "date_not_exist": "“日期”不存在（如2月30日）",
    "date_no_year": "“日期”没有写年份",
    "date_future": "“日期”晚于今天",
    "date_outside_period": "“日期”不在本次报送所属的月份内",
    "uscc_invalid": "统一社会信用代码有误（位数、字符或校验码不对）",
    "id_invalid": "身份证号码有误（位数、出生日期或校验码不对）",
    "unit_mismatch": "表头“单位”与发件邮箱登记的单位不一致",
    "unit_missing": "表头“单位”未填写",
    "submitter_missing": "表头“报送人”未填写",
    "report_date_missing": "表头“报送日期”未填写",
    "report_date_unparsed": "表头“报送日期”无法识别",
    "duplicate_row": "两行内容完全相同（可能重复填写）",
    "sheet_other_month": "附件中没有本次报送月份的工作表，读取的工作表是其他月份的清单",
    "empty_checklist": "表格中没有任何记录，也没有写明本月无情况",
}
SEVERITY_ZH = {"error": "错误（退回）", "warning": "提示（受理）", "off": "不检查"}

# An extra column whose title says it holds codes (统一社会信用代码, 身份证号码, 证件号码, 证照号 ...).
_CODE_TITLE = re.compile(r"代码|身份证|证件|证照")
# What someone meant as a code but got the length wrong: 15-20 letters and digits, nothing else.
_CODE_LIKE = re.compile(r"[0-9A-Za-z]{15,20}")
# Only 18 characters in a row that are neither CJK nor space (single spaces between them allowed:
# codes written in groups) can fold into a code: cells without such a run (most names and texts)
# skip codes.find_codes, which normalises character by character.
_CODE_RUN = re.compile(r"(?:[^\s\u3400-\u4dbf\u4e00-\u9fff]\s?){17}[^\s\u3400-\u4dbf\u4e00-\u9fff]")


def may_hold_code(text: str) -> bool:
    """False when `text` cannot hold a USCC or ID number: a cheap test before codes.find_codes."""
    return bool(_CODE_RUN.search(text))


# Measures, matters and channel texts repeat from row to row (drop-down lists, 同上): memoised.
_map_measures = functools.lru_cache(4096)(vocabulary.map_measures)


@functools.lru_cache(4096)
def _measure_dicts(text: str) -> tuple[dict, ...]:
    """The derived "measures" of a 措施 cell; the dicts are shared between rows (never changed)."""
    return tuple({"raw": m.raw, "canonical": m.canonical, "kind": m.kind} for m in _map_measures(text))
_detect_channels_and_lists = functools.lru_cache(4096)(vocabulary.detect_channels_and_lists)
_detect_field = functools.lru_cache(4096)(vocabulary.detect_field)
# A year-less date this far after 报送日期 belongs to the year before (December rows in a January report).
_YEARLESS_SLACK = dt.timedelta(days=31)


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


def period_zh(period: str) -> str:
    """2026-11 -> 2026年11月"""
    year, month = _period_bounds(period)
    return f"{year}年{month}月"


def _period_bounds(period: str) -> tuple[int, int]:
    year, month = period.split("-")
    return int(year), int(month)


def _severity(ctx: Context, code: str) -> str:
    return ctx.severity.get(code, DEFAULT_SEVERITY.get(code, "error"))


@dataclass(frozen=True)
class _Column:
    """Where a problem sits: the column's letter and the title the sender sees over it."""

    letter: str | None
    title: str


def _field_column(checklist: Checklist, name: str) -> _Column:
    return _Column(checklist.column_letter(name), FIELD_TITLES.get(name, name))


def _extra_column(checklist: Checklist, key: str) -> _Column:
    index = checklist.extra_columns.get(key)
    return _Column(get_column_letter(index) if index else None, key)


def _problem(ctx: Context, checklist: Checklist, code: str, message: str, row: int | None = None,
             column: _Column | None = None) -> Problem | None:
    severity = _severity(ctx, code)
    if severity == "off":
        return None
    place = f"工作表“{checklist.sheet}”"
    if row:
        place += f"第{row}行"
    if column:
        place += f"“{column.title}”列" + (f"（{column.letter}{row}）" if column.letter and row else "")
    return Problem(code, f"{place}：{message}", severity, checklist.sheet, row, column.letter if column else None)


_DATE_HINT = "请填写完整日期，如“2026年11月5日”或“2026-11-05”。"


def _date_message(result: dates.DateParse) -> str:
    if result.code == dates.DATE_EMPTY:
        return "日期未填写。" + _DATE_HINT
    if result.code == dates.DATE_NOT_EXIST:
        return f"{result.detail}，请核对月份和日后填写正确的日期。"
    if result.code == dates.DATE_BARE_NUMBER:
        return f"{result.detail}（系统不会猜测日期，请确认实际日期）。"
    return f"{result.detail}。" + _DATE_HINT


_REQUIRED = {
    "entity": ("entity_empty", "市场主体（自然人）名称未填写，请填写企业或个人名称。"),
    "matter": ("matter_empty", "行政管理事项名称未填写，请填写所办理的事项名称（如“食品经营许可证核发”）。"),
    "usage": ("usage_empty", "使用信用记录或报告情况未填写，请说明查询渠道和查询结果（如“经信用中国查询，无失信记录”）。"),
    "measure": ("measure_empty", "使用的激励或惩戒措施未填写；未采取措施的请填写“无”。"),
}


# ---------------------------------------------------------------- header: 单位, 报送日期 ----------

def _unit_key(name: str) -> str:
    """A unit's name without spaces, full-width forms or a parenthesised note such as （盖章）."""
    return re.sub(r"\(.*?\)", "", norm(name))


def unit_match(unit: str, dept: Department) -> int:
    """2: the 单位 is the department's name or an alias; 1: one contains the other; 0: no match."""
    u = _unit_key(unit)
    best = 0
    for name in (dept.name, *dept.aliases):
        n = _unit_key(name)
        if not n:
            continue
        if u == n:
            return 2
        if len(u) >= 4 and len(n) >= 3 and (u in n or n in u):
            best = 1
    return best


def unit_matches(unit: str, dept: Department) -> bool:
    return unit_match(unit, dept) > 0


def check_header(checklist: Checklist, ctx: Context) -> list[Problem]:
    out: list[Problem | None] = []
    dept = ctx.department
    if not checklist.unit:
        out.append(_problem(ctx, checklist, "unit_missing", f"表头“单位”未填写，请在“单位：”后填写“{dept.name}”。"
                            if dept else "表头“单位”未填写，请在“单位：”后填写本单位全称。"))
    elif dept is None:
        pass
    else:
        own = unit_match(checklist.unit, dept)
        others = [(unit_match(checklist.unit, d), d) for d in ctx.departments if d.id != dept.id]
        strength, other = max(others, key=lambda o: o[0], default=(0, None))
        if own == 0 or strength > own:
            # Both units are named; the file never counts for the other department, whose own
            # registered mailbox must send it.
            said = f"表头“单位”填写的是“{checklist.unit}”，与发件邮箱登记的单位“{dept.name}”不一致"
            fix = f"如确为本单位清单，请将“单位”改为“{dept.name}”后重新发送；"
            if strength:
                if _unit_key(other.name) != _unit_key(checklist.unit):
                    said += f"（“{checklist.unit}”即已登记的“{other.name}”）"
                said += f"，本次报送不计入“{other.name}”。"
                fix += f"如为“{other.name}”的清单，请由“{other.name}”使用其登记的邮箱报送。"
            else:
                said += "。"
                fix += "其他单位的清单请由该单位使用其登记的邮箱报送。"
            out.append(_problem(ctx, checklist, "unit_mismatch", said + fix))
    if not checklist.submitter:
        out.append(_problem(ctx, checklist, "submitter_missing",
                            "表头“报送人”未填写，请在“报送人：”后填写经办人姓名，以便我办核实情况时联系。"))
    if not text(checklist.report_date):
        out.append(_problem(ctx, checklist, "report_date_missing",
                            "表头“报送日期”未填写，请在“报送日期：”后填写报送当天的日期，如 2026-11-05。"))
    else:
        result = dates.parse_date(checklist.report_date)
        if not result.ok:
            said = f"报送日期“{text(checklist.report_date)}”没有写年份。" + _DATE_HINT \
                if result.code == dates.DATE_NO_YEAR else "报送日期" + _date_message(result)
            out.append(_problem(ctx, checklist, "report_date_unparsed", said))
    return [p for p in out if p]


def report_date(checklist: Checklist) -> dt.date | None:
    if not text(checklist.report_date):
        return None
    return dates.parse_date(checklist.report_date).date


# ---------------------------------------------------------------- rows ----------------------------

def _first_column(checklist: Checklist) -> _Column | None:
    """Where a problem of a whole row is marked: the name column, else the leftmost field."""
    fields = [n for n in FIELD_TITLES if n in checklist.columns]
    name = "entity" if "entity" in fields else min(fields, key=checklist.columns.get, default=None)
    return _field_column(checklist, name) if name else None


def _row_date(value, report_day: dt.date | None, fallback_year: int) -> dates.DateParse:
    """A 日期 cell; a year-less 11月5日 takes its year from 报送日期 (else from the period)."""
    result = dates.parse_date(value)
    if result.code != dates.DATE_NO_YEAR:
        return result
    year = report_day.year if report_day else fallback_year
    result = dates.parse_date(value, default_year=year)
    if report_day and result.date and result.date > report_day + _YEARLESS_SLACK:
        result = dates.parse_date(value, default_year=year - 1)  # 12月28日 in a report dated 1月5日
    return result


def _code_columns(checklist: Checklist) -> list[tuple[str, bool, _Column, str | None]]:
    """(field or Row.extras key, is an extra, column, meant) of every column that may carry a code:
    the name (meant None), the code column and extra columns whose title says they hold codes
    (meant "uscc", "id" or "any"). The same for every row: worked out once."""
    out: list[tuple[str, bool, _Column, str | None]] = [("entity", False, _field_column(checklist, "entity"), None)]
    if "code" in checklist.columns:  # the first such column; checklist keeps it with the fields
        out.append(("code", False, _Column(checklist.column_letter("code"), "统一社会信用代码或身份证号码"), "any"))
    for key in checklist.extra_columns:
        title = norm(key)
        if _CODE_TITLE.search(title):
            meant = "id" if "身份证" in title else "uscc" if "信用代码" in title else "any"
            out.append((key, True, _extra_column(checklist, key), meant))
    return out


def _check_codes(cell: str, meant: str | None) -> tuple[list[dict], list[tuple[str, str]]]:
    """Codes found in one cell, and (problem code, message) for each wrong one.

    In a cell meant for a code, a value of the wrong length is reported too; in the name cell
    only 18-character runs count as codes (a name may hold other numbers).
    """
    found, wrong = [], []
    for code in codes.find_codes(cell) if meant or may_hold_code(cell) else ():
        found.append({"kind": code.kind, "value": code.value, "valid": code.problem is None})
        if code.problem:
            wrong.append((code.kind, code.value, code.problem))
    value = norm(cell).upper() if meant and not found else ""
    if value and _CODE_LIKE.fullmatch(value):
        kind = meant if meant != "any" else "id" if value[:-1].isdigit() else "uscc"
        problem = codes.id_check(value) if kind == "id" else codes.uscc_check(value)
        if problem:
            found.append({"kind": kind, "value": value, "valid": False})
            wrong.append((kind, value, problem))
    messages = []
    for kind, value, problem in wrong:
        # The whole number is shown: this message goes only to the department that sent it
        # (`mailbot check` and digests mask it with codes.mask_ids).
        if kind == "uscc":
            messages.append(("uscc_invalid", f"统一社会信用代码“{value}”有误：{problem}。请对照营业执照核对后更正。"))
        else:
            messages.append(("id_invalid", f"身份证号码“{value}”有误：{problem}。请对照身份证核对后更正。"))
    return found, messages


def check(checklist: Checklist, ctx: Context) -> Checked:
    """All rules over one parsed checklist; derived fields feed the digests."""
    problems: list[Problem | None] = with_severity(checklist.problems, ctx.severity) + check_header(checklist, ctx)
    year, month = _period_bounds(ctx.period)
    report_day = report_date(checklist)
    first = _first_column(checklist)
    derived: dict[int, dict] = {}
    parsed_dates: dict[int, dt.date | None] = {}
    seen: dict[tuple, int] = {}
    # what is the same for every row, worked out once (20,000 rows: a tenth of the time)
    required = [(name, code, message, _field_column(checklist, name))
                for name, (code, message) in _REQUIRED.items() if name in checklist.columns]
    has_date, where = "date" in checklist.columns, _field_column(checklist, "date")
    code_columns = _code_columns(checklist)
    for row in checklist.rows:
        def p(code: str, message: str, column: _Column | None = None) -> None:
            problems.append(_problem(ctx, checklist, code, message, row.row_no, column))

        said = {name: row.text(name) for name in FIELD_TITLES}
        for name, code, message, column in required:
            if not said[name]:
                p(code, message, column)
        day = None
        if has_date:
            result = _row_date(row.cells.get("date"), report_day, year)
            day = result.date
            if result.code:
                p(result.code, _date_message(result), where)
            elif day > ctx.today:
                p("date_future", f"日期{day:%Y-%m-%d}晚于今天（{ctx.today:%Y-%m-%d}），请核对后填写实际使用信用记录的日期。", where)
            elif (day.year, day.month) != (year, month):
                p("date_outside_period",
                  f"日期{day:%Y-%m-%d}不在本次报送所属的{year}年{month}月内，请核对；如为补报其他月份，"
                  f"请在邮件主题中注明月份（如“{day.year}年{day.month}月”）。", where)
        parsed_dates[row.row_no] = day
        found = []
        for name, extra, column, meant in code_columns:
            cell = row.extras.get(name, "") if extra else said[name] if name in said else row.text(name)
            if not cell:
                continue
            codes_here, messages = _check_codes(cell, meant)
            found += codes_here
            for code, message in messages:
                p(code, message, column)
        channels, lists = _detect_channels_and_lists(" ".join((said["usage"], said["measure"], said["matter"])))
        derived[row.row_no] = {
            "measures": list(_measure_dicts(said["measure"])),
            "channels": list(channels),
            "lists": list(lists),
            "field": _detect_field(said["matter"]),
            "codes": found,
        }
        key = (*(day if n == "date" and day else norm(v) for n, v in sorted(row.cells.items())),
               *sorted((k, norm(v)) for k, v in row.extras.items()))
        if key in seen:
            p("duplicate_row", f"本行与第{seen[key]}行内容完全相同，请确认是否重复填写；如确属重复，请删除其中一行。", first)
        else:
            seen[key] = row.row_no
    if not checklist.rows and not checklist.nil_report:
        problems.append(_problem(
            ctx, checklist, "empty_checklist",
            "表格中没有填写任何记录。如本月没有使用信用记录和信用报告的情况，请在表格第一行填写“本月无使用信用记录和信用报告情况”后重新发送。",
            checklist.header_row + 1, first))
    return Checked([q for q in problems if q], derived, parsed_dates)


# ---------------------------------------------------------------- the reporting period -----------

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
    """(period, source): the subject if it names a month, else the month the sheet read is named
    for (a workbook kept for the year, checklist.parse), else 报送日期, else the day received.

    A 报送日期 after the day the mail arrived cannot be the day it was sent: it is not used.
    """
    found = subject_period(subject, received)
    if found:
        return found, "subject"
    if checklist and checklist.period:
        return checklist.period, "sheet"
    day = report_date(checklist) if checklist else None
    if day and day <= received:
        return f"{day.year:04d}-{day.month:02d}", "report_date"
    return f"{received.year:04d}-{received.month:02d}", "received"


def with_severity(problems: list[Problem], ctx_severity: dict[str, str]) -> list[Problem]:
    """Apply config severities to problems raised outside the row rules (e.g. by the reader)."""
    out = []
    for p in problems:
        sev = ctx_severity.get(p.code)
        if sev == "off":
            continue
        out.append(replace(p, severity=sev) if sev else p)
    return out


def summarise_other_months(problems: list[Problem], days: dict[int, dt.date | None], period: str) -> list[Problem]:
    """`problems` with the per-row "date outside the period" ones made into one line saying how many
    rows of which months were flagged (a receipt reads better so; the annotated copy keeps each)."""
    rows = [p for p in problems if p.code == "date_outside_period" and p.row]
    if len(rows) < 2:
        return problems
    months: dict[str, list[int]] = {}
    for p in rows:
        day = days.get(p.row)
        months.setdefault(f"{day.year}年{day.month}月" if day else "其他月份", []).append(p.row)
    year, month = _period_bounds(period)

    def numbers(found: list[int]) -> str:
        shown = "、".join(map(str, found[:10]))
        return f"第{shown}行" + ("等" if len(found) > 10 else "")
    parts = "；".join(f"{m}{len(found)}行（{numbers(found)}）" for m, found in months.items())
    message = (f"工作表“{rows[0].sheet}”中有{len(rows)}行记录的日期不在本次报送所属的{year}年{month}月内：{parts}。"
               "请核对这些日期；如为补报其他月份，请在邮件主题中注明月份后另行报送。")
    summary = replace(rows[0], message=message, row=None, column=None)
    first = problems.index(rows[0])
    rest = [p for p in problems if p not in rows]
    return rest[:first] + [summary] + rest[first:]
