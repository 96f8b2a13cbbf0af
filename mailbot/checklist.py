"""Cells -> the checklist: header fields, rows and layout problems. Pure: no I/O.

Real files differ from the template (domain.md, "The template"): the table may sit on any
sheet, under a title, with a 序号 column, columns in another order and header texts with
line breaks or half-width parentheses. We find the header row by what its cells say.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from openpyxl.utils import get_column_letter

from .errors import Problem, Rejected
from .workbook import Cell, Sheet, Workbook

FIELDS = ("entity", "matter", "date", "usage", "measure")
FIELD_TITLES = {
    "entity": "市场主体（自然人）名称",
    "matter": "行政管理事项名称",
    "date": "日期",
    "usage": "使用信用记录或报告情况",
    "measure": "使用的激励或惩戒措施",
}
HEADER_LABELS = {"unit": "单位", "submitter": "报送人", "report_date": "报送日期"}
_HEADER_SCAN_ROWS = 40

# A header cell's normalised text -> field, tried in order; the first match wins.
_COLUMN_PATTERNS = (
    ("seq", re.compile(r"^(序号|编号|序)$")),
    ("code", re.compile(r"(统一社会信用代码|信用代码|身份证|证件号)")),
    ("measure", re.compile(r"(措施|激励|惩戒|奖惩)")),
    ("usage", re.compile(r"(使用信用记录|报告情况|使用情况|信用记录|信用报告|查询情况)")),
    ("entity", re.compile(r"(市场主体|自然人|主体名称|企业名称|单位名称|对象名称|当事人)")),
    ("matter", re.compile(r"(行政管理事项|事项名称|管理事项|事项|业务名称)")),
    ("date", re.compile(r"^(使用)?(日期|时间|查询日期|使用日期|办理日期|办理时间)$")),
)
_NIL = re.compile(r"(本月|当月|本期|本季度)?.{0,6}(无|未|没有).{0,12}(使用|查询|情况|记录|报告|业务|事项)|^无$")
_NOTE = re.compile(r"^(注|备注|说明|填表说明|填报说明)[:：]")


def norm(value: Cell) -> str:
    """Text as a person reads it: full-width folded, spaces and line breaks removed."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFKC", str(value))
    return re.sub(r"\s+", "", text)


def text(value: Cell) -> str:
    """A cell's text with outer whitespace trimmed, for storing what the department wrote."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass
class Row:
    row_no: int
    cells: dict[str, Cell]  # field -> raw cell value
    extras: dict[str, str] = field(default_factory=dict)  # other columns: header text -> text

    def text(self, name: str) -> str:
        return text(self.cells.get(name))


@dataclass
class Checklist:
    sheet: str
    header_row: int
    columns: dict[str, int]  # field -> 1-based column index
    unit: str = ""
    submitter: str = ""
    report_date: Cell = None
    nil_report: bool = False
    rows: list[Row] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    extra_columns: dict[str, int] = field(default_factory=dict)  # Row.extras key -> 1-based column index

    def column_letter(self, name: str) -> str | None:
        index = self.columns.get(name)
        return get_column_letter(index) if index else None


def column_field(title: Cell) -> str | None:
    t = norm(title)
    if not t or len(t) > 30:
        return None
    if t.startswith(("报送日期", "报送人", "单位:", "单位：")):
        return None
    for name, pattern in _COLUMN_PATTERNS:
        if pattern.search(t):
            return name
    return None


def _header_columns(row: tuple[Cell, ...]) -> dict[str, int]:
    found: dict[str, int] = {}
    extras = 0
    for index, value in enumerate(row, start=1):
        name = column_field(value)
        if name and name not in found:
            found[name] = index
        elif norm(value):
            extras += 1
    return found


def _find_table(sheet: Sheet) -> tuple[int, dict[str, int]] | None:
    best: tuple[int, dict[str, int]] | None = None
    for index, row in enumerate(sheet.rows[:_HEADER_SCAN_ROWS], start=1):
        cols = _header_columns(row)
        score = sum(1 for f in FIELDS if f in cols)
        if score >= 3 and (best is None or score > sum(1 for f in FIELDS if f in best[1])):
            best = (index, cols)
    return best


_LABEL = re.compile(r"(单位|报送人|报送日期)[:：]")


def _header_fields(sheet: Sheet, header_row: int) -> dict[str, Cell]:
    """单位 / 报送人 / 报送日期 above the table: in the same cell after the colon, or the next cell."""
    found: dict[str, Cell] = {}
    keys = {v: k for k, v in HEADER_LABELS.items()}
    for row in sheet.rows[: header_row - 1]:
        cells = list(row)
        for i, value in enumerate(cells):
            t = unicodedata.normalize("NFKC", str(value)) if value is not None else ""
            marks = list(_LABEL.finditer(t))
            if not marks:
                label = norm(value).rstrip(":：")
                if label in keys and (i + 1 < len(cells)) and keys[label] not in found:
                    nxt = next((c for c in cells[i + 1:] if norm(c)), None)
                    if nxt is not None and not _LABEL.search(norm(nxt)):
                        found[keys[label]] = nxt
                continue
            for j, m in enumerate(marks):
                end = marks[j + 1].start() if j + 1 < len(marks) else len(t)
                value_text = t[m.end():end].strip()
                key = keys[m.group(1)]
                if value_text:
                    found.setdefault(key, value_text)
                elif j + 1 == len(marks):
                    nxt = next((c for c in cells[i + 1:] if norm(c)), None)
                    if nxt is not None and not _LABEL.search(norm(nxt)):
                        found.setdefault(key, nxt)
    return found


def _is_nil(values: list[str]) -> bool:
    distinct = {v for v in values if v}
    return len(distinct) == 1 and bool(_NIL.search(distinct.pop()))


def _extra_columns(titles: tuple, columns: dict[str, int]) -> dict[str, int]:
    """Where each titled extra column is, so rules can locate a problem in it (e.g. a code)."""
    known = set(columns.values())
    return {text(t): i for i, t in enumerate(titles, start=1) if i not in known and text(t)}


def parse(workbook: Workbook) -> Checklist:
    """Find the table and read it; raises Rejected when no sheet holds the checklist."""
    candidates = []
    for sheet in workbook.sheets:
        found = _find_table(sheet)
        if found:
            candidates.append((sum(1 for f in FIELDS if f in found[1]), sheet, found))
    if not candidates:
        raise Rejected([Problem(
            "wrong_template",
            "附件中未找到情况清单的表头（应包含“市场主体（自然人）名称”“行政管理事项名称”“日期”"
            "“使用信用记录或报告情况”“使用的激励或惩戒措施”等列）。请使用随本回执附上的空白模板填写后重新发送。",
        )], attach_template=True)
    candidates.sort(key=lambda c: -c[0])
    _score, sheet, (header_row, columns) = candidates[0]
    checklist = Checklist(sheet=sheet.name, header_row=header_row, columns=columns)
    checklist.extra_columns = _extra_columns(sheet.rows[header_row - 1], columns)
    for key, value in _header_fields(sheet, header_row).items():
        setattr(checklist, key, text(value) if key != "report_date" else value)
    for name in FIELDS:
        if name not in columns:
            checklist.problems.append(Problem(
                "missing_column",
                f"表头缺少“{FIELD_TITLES[name]}”列，请按模板补齐该列后重新发送。",
                sheet=sheet.name, row=header_row))
    titles = {i: text(v) for i, v in enumerate(sheet.rows[header_row - 1], start=1)}
    known = set(columns.values())
    body: list[Row] = []
    for row_no, row in enumerate(sheet.rows[header_row:], start=header_row + 1):
        values = [text(v) for v in row]
        if not any(values):
            continue
        first = next(v for v in values if v)
        if _NOTE.match(unicodedata.normalize("NFKC", first)):
            continue
        cells = {name: (row[i - 1] if i - 1 < len(row) else None) for name, i in columns.items() if name in FIELDS}
        if not any(text(v) for v in cells.values()):
            continue  # only a 序号 or stray text outside the table
        extras = {titles.get(i, get_column_letter(i)): values[i - 1]
                  for i in range(1, len(values) + 1) if i not in known and values[i - 1]}
        body.append(Row(row_no=row_no, cells=cells, extras=extras))
    if len(body) == 1 and _is_nil([text(v) for v in body[0].cells.values()]):
        checklist.nil_report = True
    elif body:
        checklist.rows = body
    return checklist
