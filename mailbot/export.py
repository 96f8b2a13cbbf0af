"""Rows in force as spreadsheet rows: the digest's 汇总 sheet and the export for the city platform.

Everything a department typed passes `safe_text` (ID numbers masked, characters XML cannot
carry dropped) before it reaches a file. A text a spreadsheet would read as a formula (first
character `=`, `+`, `-`, `@`, tab or CR) is written as a string cell marked quote-prefixed in
.xlsx, and behind a single quote in .csv, as OWASP recommends for CSV injection.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from . import codes, store, vocabulary
from .config import OfficeConfig
from .models import Row, Submission
from .workbook import get_column_letter

# openpyxl (10 MB) is imported where a sheet is written: the daemon filing mail never loads it.

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SEVENTEEN_DIGITS = re.compile(r"[0-9]{17}")  # every ID number has them (after NFKC folding)
KINDS = (vocabulary.KIND_INCENTIVE, vocabulary.KIND_PUNISHMENT, vocabulary.KIND_NONE, vocabulary.KIND_OTHER)
UNKNOWN_FIELD = "未识别"
ILLEGAL_CHARACTERS_RE = re.compile(r"[\000-\010]|[\013-\014]|[\016-\037]")  # openpyxl's: XML cannot carry them

# 汇总 columns (title, width); the export puts 所属期 in front.
COLUMNS = (
    ("单位", 26), ("市场主体（自然人）名称", 30), ("行政管理事项名称", 24), ("日期", 12),
    ("使用信用记录或报告情况", 40), ("使用的激励或惩戒措施", 24), ("措施类别", 10), ("规范措施", 20),
    ("查询渠道", 24), ("领域", 16), ("报送时间", 17),
)
PERIOD_COLUMN = ("所属期", 9)
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
HEADER_FILL = "DDEBF7"
PORTRAIT_WIDTH = 100  # column width units that still print at full size across an A4 portrait page
PAGE_FOOTER = "第&P页 共&N页"
ROW_HEIGHT = 16  # points per line of 11 pt Chinese text (Noto CJK and 等线 both fit)


# --- safe values --------------------------------------------------------------------------------

def safe_text(value: object) -> str:
    """Department text fit for any file we write: no ID number whole, no illegal XML character."""
    text = ILLEGAL_CHARACTERS_RE.sub("", str(value))
    if _SEVENTEEN_DIGITS.search(unicodedata.normalize("NFKC", text)):  # cheap test before the full scan
        text = codes.mask_ids(text)
    return text


def unsafe_start(value) -> bool:
    return isinstance(value, str) and value.startswith(FORMULA_START)


def xlsx_value(ws, value):
    """A value for a write-only sheet; a formula-looking text becomes a plain, quote-prefixed string."""
    if not unsafe_start(value):
        return value
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(ws, value=value)
    cell.data_type = "s"  # written as an inline string: no spreadsheet evaluates it
    cell.quotePrefix = True  # and Excel keeps it text when someone edits the cell
    return cell


def csv_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def header(ws, titles: Iterable[str]) -> list:
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font, PatternFill

    cells = []
    for title in titles:
        cell = WriteOnlyCell(ws, value=title)
        cell.font, cell.fill = Font(bold=True), PatternFill("solid", fgColor=HEADER_FILL)
        cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
        cells.append(cell)
    return cells


def text_width(text: str) -> int:
    """Width in spreadsheet column units: a Chinese character takes two, like two digits."""
    return len(str(text).encode("gb18030", "replace"))


def printable(ws, *, landscape: bool, title_rows: int = 1, ruled: bool = False) -> None:
    """A4, one page wide (as many pages tall as it takes), the top `title_rows` on every page,
    "第1页 共3页" at the foot; `ruled`: gridlines printed like a form's (rows are read across a
    wide page) and rows tall enough for Chinese text. Call before the first row is written: the
    fit-to-page flag and the row height are in the sheet's head."""
    from openpyxl.worksheet.page import PageMargins
    from openpyxl.worksheet.properties import PageSetupProperties

    if ruled:
        ws.print_options.gridLines = True
        ws.sheet_format.defaultRowHeight, ws.sheet_format.customHeight = ROW_HEIGHT, True
    ws.page_setup.paperSize = 9  # A4
    ws.page_setup.orientation = "landscape" if landscape else "portrait"
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.page_margins = PageMargins(left=0.4, right=0.4, top=0.5, bottom=0.6, header=0.3, footer=0.3)
    ws.print_options.horizontalCentered = True
    ws.oddFooter.center.text = PAGE_FOOTER
    if title_rows:
        ws.print_title_rows = f"1:{title_rows}"


def heading(ws, text: str, columns: int, width: float) -> None:
    """The sheet's title row, merged across its columns: what it shows, for whom, as of when."""
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Alignment, Font

    ws.merged_cells.add(f"A1:{get_column_letter(columns)}1")
    lines = max(1, -(-text_width(text) * 14 // 11 // max(int(width) - 2, 1)))  # 14 pt on 11 pt columns
    ws.row_dimensions[1].height = 8 + 20 * lines
    cell = WriteOnlyCell(ws, value=text)
    cell.font = Font(bold=True, size=14)
    cell.alignment = Alignment(horizontal="center", vertical="center", wrap_text=True)
    ws.append([cell])


def start_sheet(wb, title: str, columns: Iterable[tuple[str, float]], freeze: str | None = None,
                title_text: str | None = None, landscape: bool | None = None, ruled: bool = False):
    """A write-only sheet set up to print, with widths, an optional title row, the header row
    written and frozen."""
    ws = wb.create_sheet(title)
    columns = list(columns)
    for i, (_title, width) in enumerate(columns, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    top = 1 if title_text else 0
    total = sum(w for _t, w in columns)
    ws.freeze_panes = freeze or f"A{top + 2}"
    printable(ws, landscape=total > PORTRAIT_WIDTH if landscape is None else landscape, title_rows=top + 1,
              ruled=ruled)
    if title_text:
        heading(ws, title_text, len(columns), total)
    ws.append(header(ws, [t for t, _w in columns]))
    return ws


def finish_sheet(ws, columns: int, rows: int, header_row: int = 1) -> None:
    """Filter over the header and every data row (the ref is written when the sheet closes)."""
    ws.auto_filter.ref = f"A{header_row}:{get_column_letter(columns)}{header_row + max(rows, 1)}"


# --- rows in force ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Record:
    """One row in force as the digest and the export show it; its texts already passed `safe_text`."""

    department_id: str
    department: str
    received: dt.datetime  # the in-force submission's arrival, office time, naive (for Excel)
    entity: str
    matter: str
    date: dt.date | str  # the parsed date, else the text as written
    usage: str
    measure: str
    kinds: tuple[str, ...]
    measures: tuple[str, ...]  # canonical incentive/punishment terms
    channels: tuple[str, ...]
    field: str

    def values(self) -> list:
        return [self.department, self.entity, self.matter, self.date, self.usage, self.measure,
                "、".join(self.kinds), "、".join(self.measures), "、".join(self.channels), self.field,
                self.received]


def features(measures: list[dict], channels: list[str], field: str | None) -> tuple:
    """(kinds, canonical measures, channels, field) of one row from its derived fields; an empty
    measure cell counts as 无."""
    measures = measures or [{"canonical": vocabulary.KIND_NONE, "kind": vocabulary.KIND_NONE}]
    kinds = tuple(dict.fromkeys(m["kind"] for m in measures))
    canonical = tuple(dict.fromkeys(m["canonical"] for m in measures
                                    if m["kind"] in (vocabulary.KIND_INCENTIVE, vocabulary.KIND_PUNISHMENT)))
    return kinds, canonical, tuple(channels or ()), field or UNKNOWN_FIELD


def in_force_rows(engine: Engine, office: OfficeConfig, period: str, until: dt.datetime | None = None) -> list[Record]:
    """Every row of the newest accepted submission of each department (the rule of `store.in_force`)
    as of `until` (default: all stored), ordered as the departments are in the config, then by row.

    Two queries, whatever the number of departments: the submissions in force, and their rows
    with only the derived fields shown (as JSON text, so equal values are decoded once)."""
    newest = select(func.max(Submission.id)).where(
        Submission.office == office.id, Submission.period == period, Submission.accepted.is_(True))
    if until is not None:
        newest = newest.where(Submission.received_at <= until)
    newest = newest.group_by(Submission.department_id).scalar_subquery()
    derived = Row.derived
    rows = select(Row.submission_id, Row.row_no, Row.entity, Row.matter, Row.date, Row.date_raw, Row.usage,
                  Row.measure, derived["measures"].as_string(), derived["channels"].as_string(),
                  derived["field"].as_string()).where(Row.submission_id.in_(newest))
    with store.reading(engine) as session:
        conn = session.connection()
        subs = {s.id: s for s in conn.execute(select(Submission.id, Submission.department_id, Submission.received_at)
                                              .where(Submission.id.in_(newest)))}
        found = conn.execute(rows).all()
    position = {d.id: i for i, d in enumerate(office.departments)}
    names = {d.id: d.name for d in office.departments}
    tz = office.office.tz
    heads = {sid: (position.get(s.department_id, len(position)), s.department_id, names.get(s.department_id, s.department_id),
                   s.received_at.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0)) for sid, s in subs.items()}
    found.sort(key=lambda r: (heads[r[0]][:2], r[1]))
    decoded: dict[tuple, tuple] = {}
    out = []
    for sid, _no, entity, matter, day, raw, usage, measure, measures, channels, field in found:
        _pos, dept, name, received = heads[sid]
        key = (measures, channels, field)
        if key not in decoded:
            decoded[key] = features(json.loads(measures) if measures else [], json.loads(channels) if channels else [], field)
        out.append(Record(dept, name, received, safe_text(entity), safe_text(matter), day or safe_text(raw),
                          safe_text(usage), safe_text(measure), *decoded[key]))
    return out


def write_records(ws, records: Iterable[Record], period: str | None = None) -> int:
    """Append records to a sheet started with `COLUMNS` (and 所属期 first when `period` is given)."""
    from openpyxl.cell import WriteOnlyCell

    count = 0
    lead = [period] if period else []
    for record in records:
        row = [xlsx_value(ws, v) for v in lead + record.values()]
        stamp = WriteOnlyCell(ws, value=row[-1])
        stamp.number_format = DATETIME_FORMAT
        row[-1] = stamp
        ws.append(row)
        count += 1
    return count


# --- the export for the city platform ----------------------------------------------------------

def periods_of(selector: str) -> list[str]:
    """`2026-11` -> that month; `2026` -> its twelve months."""
    if re.fullmatch(r"\d{4}", selector):
        return [f"{selector}-{m:02d}" for m in range(1, 13)]
    return [selector]


def _batches(engine: Engine, office: OfficeConfig, periods: list[str]) -> Iterator[tuple[str, list[Record]]]:
    for period in periods:  # one query per month keeps a year's export in bounded memory
        yield period, in_force_rows(engine, office, period)


def export_xlsx(engine: Engine, office: OfficeConfig, selector: str, path: Path) -> int:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = start_sheet(wb, "情况清单", (PERIOD_COLUMN, *COLUMNS))
    total = 0
    for period, records in _batches(engine, office, periods_of(selector)):
        total += write_records(ws, records, period)
    finish_sheet(ws, len(COLUMNS) + 1, total)
    wb.save(path)
    return total


def export_csv(engine: Engine, office: OfficeConfig, selector: str, path: Path) -> int:
    """UTF-8 with a BOM, so Excel on Chinese Windows opens it without garbling."""
    total = 0
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow([PERIOD_COLUMN[0], *(t for t, _w in COLUMNS)])
        for period, records in _batches(engine, office, periods_of(selector)):
            for record in records:
                writer.writerow([csv_value(v) for v in [period, *record.values()]])
            total += len(records)
    return total


def export(engine: Engine, office: OfficeConfig, selector: str, fmt: str = "xlsx", out: Path | None = None) -> tuple[Path, int]:
    """Write every row in force for a month (`2026-11`) or a year (`2026`); returns the path and row count."""
    path = Path(out) if out else Path(f"情况清单导出_{selector}.{fmt}")
    total = (export_csv if fmt == "csv" else export_xlsx)(engine, office, selector, path)
    return path, total
