"""The department's own workbook with its problems marked, attached to the error receipt.

A clerk fixes a file fastest when the wrong cells are red in her own file: every located
problem fills its cell light red with a comment saying what to do, and a `问题清单` sheet lists
all problems (header-level ones only there). An .xlsx keeps its own formatting; .xls, .csv,
Word and zip input become an .xlsx of the table as read, each row at the row number the
messages quote. Pure: bytes in, bytes out, or None when the copy cannot be made (the receipt
then goes without it). The copy goes only to the sender, so ID numbers are not masked here.
"""
from __future__ import annotations

import copy
import datetime as dt
import io
import logging
import math
import warnings
import zipfile
from pathlib import PurePosixPath

import openpyxl
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.comments import Comment
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import column_index_from_string, get_column_letter
from openpyxl.utils.datetime import to_excel
from openpyxl.workbook.child import INVALID_TITLE_REGEX
from openpyxl.worksheet.properties import PageSetupProperties

from . import workbook as workbook_mod
from .checklist import Checklist
from .config import Limits
from .dates import EXCEL_EPOCH, SERIAL_MIN
from .errors import Problem

workbook_mod.defused_openpyxl()  # it reads the department's file again: through defusedxml only
log = logging.getLogger("mailbot.annotate")

AUTHOR = "县信用办"
LIST_SHEET = workbook_mod.LIST_SHEET
RED = "FFFFC7CE"  # Excel's "light red fill"
BIG_ROWS = 5_000  # beyond this many rows only the first MAX_MARKS cells are marked: comments are costly
MAX_MARKS = 500
# openpyxl holds every cell of a fully loaded workbook in memory (about 50 times the sheet XML): a
# bigger .xlsx is rebuilt from the table as read, like an .xls, without its formatting.
FULL_LOAD_MAX_XML = 25 * 2**20
LINE_HEIGHT = 16  # points per line of 11 pt Chinese text
_LEVEL = {"error": "错误", "warning": "提示"}
_KIND_ZH = {"xls": "Excel 97-2003（.xls）或WPS表格", "csv": "CSV文本", "docx": "Word", "zip": "压缩包",
            "ods": "OpenDocument表格（.ods）", "xlsx": "较大的Excel"}
# A value Excel or a CSV export could take for a formula: it is stored as text, never evaluated.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _fill() -> PatternFill:
    return PatternFill(fill_type="solid", start_color=RED, end_color=RED)


def annotated_filename(filename: str) -> str:
    """清单.xls -> 清单（问题标注）.xlsx: the sender's name without folders or leading dots, cut
    short so that the 120-character limit on attachment names (letters.build) keeps the .xlsx."""
    stem = PurePosixPath((filename or "").replace("\\", "/")).stem.strip(". ")[:80] or "情况清单"
    return f"{stem}（问题标注）.xlsx"


def annotate(data: bytes, kind: str, checklist: Checklist, problems: list[Problem],
             limits: Limits | None = None) -> bytes | None:
    """The annotated .xlsx, or None when the file cannot be re-opened or annotated.

    `kind` is `workbook.sniff(data)`; `limits` should be the office's, as when the file was read.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # openpyxl warns about extensions it does not keep
            if kind == "xlsx" and _sheet_xml_size(data) <= FULL_LOAD_MAX_XML:
                book, titles, notes = _reopen_xlsx(data), {}, []
            elif kind in _KIND_ZH:
                book, titles, notes = _rebuild(data, kind, checklist, limits or Limits())
            else:
                return None
            if book is None:
                return None
            title = titles.get(checklist.sheet, checklist.sheet)
            rows = max(book[title].max_row if title in book.sheetnames else 0, *(r.row_no for r in checklist.rows), 0)
            marked, skipped = _mark(book, titles, problems, MAX_MARKS if rows > BIG_ROWS else None)
            if skipped:
                notes.append(f"因表格行数较多（{rows}行），仅在前{marked}个有问题的单元格中标红并加批注，"
                             f"其余{skipped}个单元格的问题请按本表逐条核对。")
            _problem_list(book, titles, problems, notes)
            _mark_as_ours(book)
            out = io.BytesIO()
            book.save(out)
            return out.getvalue()
    except Exception:  # the receipt must go out even when the copy cannot be made
        log.warning("cannot annotate %s checklist %r", kind, checklist.sheet, exc_info=True)
        return None


def _mark_as_ours(book) -> None:
    """A custom document property that says this copy is ours: sent back with a reply ("reply with
    attachments"), it is never read as the department's checklist (decision.py)."""
    from openpyxl.packaging.custom import StringProperty

    if workbook_mod.ANNOTATED_MARK not in {p.name for p in book.custom_doc_props.props}:
        book.custom_doc_props.append(StringProperty(name=workbook_mod.ANNOTATED_MARK, value=AUTHOR))


# ---------------------------------------------------------------- opening

def _sheet_xml_size(data: bytes) -> int:
    """The declared size of the worksheets' XML (workbook.read has held the file to it)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return sum(i.file_size for i in zf.infolist() if i.filename.startswith("xl/worksheets/"))
    except zipfile.BadZipFile:
        return 0  # openpyxl will say it cannot open it

def _reopen_xlsx(data: bytes) -> openpyxl.Workbook | None:
    """The department's workbook with formatting; our marks from an earlier receipt removed."""
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), keep_links=False)
    except Exception:
        return None
    if LIST_SHEET in book.sheetnames:  # they sent back the copy we annotated: start clean
        del book[LIST_SHEET]
        for ws in book.worksheets:
            for cell in list(ws._cells.values()):  # the cells that exist; iter_rows would create the rest
                if cell.comment is not None and cell.comment.author == AUTHOR:
                    cell.comment = None
                if cell.fill.fill_type == "solid" and cell.fill.fgColor.rgb == RED:
                    cell.fill = PatternFill()
    return book


def _rebuild(data: bytes, kind: str, checklist: Checklist, limits: Limits):
    """(book, {original sheet name: title here}, notes): the checklist's sheet as read, row for row."""
    try:
        source = workbook_mod.read(data, "附件", limits)
    except Exception:
        return None, {}, []
    sheet = next((s for s in source.sheets if s.name == checklist.sheet), None)
    if sheet is None and kind == "csv":  # a CSV's one sheet is named after the file, unknown here
        sheet = source.sheets[0]
    if sheet is None:
        return None, {}, []
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = _safe_title(checklist.sheet)
    titles = {checklist.sheet: ws.title}
    for r, row in enumerate(sheet.rows, start=1):
        for c, value in enumerate(row, start=1):
            if value is not None:
                _put(ws.cell(r, c), value)
    for r0, c0, r1, c1 in sheet.merged:
        try:
            ws.merge_cells(start_row=r0, start_column=c0, end_row=r1, end_column=c1)
        except ValueError:
            pass  # an overlapping range: leave the cells unmerged
    if checklist.header_row:
        for c, value in enumerate(sheet.rows[checklist.header_row - 1], start=1):
            if value is not None:
                ws.cell(checklist.header_row, c).font = Font(bold=True)
    for index in checklist.columns.values():
        ws.column_dimensions[get_column_letter(index)].width = 24
    note = (f"贵单位发送的是{_KIND_ZH[kind]}文件，系统按读取到的内容生成了本表（原文件的格式未保留）；"
            "行号与校验时的行号一致，问题说明中的“第N行”即本表的第N行。")
    if ws.title != checklist.sheet:
        note += f"原工作表“{checklist.sheet}”在本表中名为“{ws.title}”。"
    return book, titles, [note]


def _safe_title(name: str) -> str:
    title = INVALID_TITLE_REGEX.sub("_", name).strip("'") or "情况清单"
    return title[:31] if title != LIST_SHEET else "情况清单"


def _text(value: str) -> str:
    return ILLEGAL_CHARACTERS_RE.sub("", value)


def _put(cell, value) -> None:
    """Write a value from department input: strings that look like formulas stay text."""
    if isinstance(value, str):
        value = _text(value)
        cell.value = value
        if value.startswith(_FORMULA_START):
            cell.data_type = "s"  # openpyxl took "=..." for a formula
            cell.quotePrefix = True  # and Excel keeps it text when the clerk edits the cell
        return
    cell.value = value
    if isinstance(value, dt.datetime):
        cell.number_format = "yyyy-mm-dd hh:mm" if value.time() != dt.time() else "yyyy-mm-dd"
    elif isinstance(value, dt.date):
        cell.number_format = "yyyy-mm-dd"


# ---------------------------------------------------------------- marking

def _merged(ws) -> list[tuple[int, int, int, int, str]]:
    return [(m.min_row, m.min_col, m.max_row, m.max_col, m.start_cell.coordinate) for m in ws.merged_cells.ranges]


def _anchor(merged: list[tuple[int, int, int, int, str]], row: int, column: str) -> str:
    """The cell that holds a merged range's value, else the cell itself."""
    col = column_index_from_string(column)
    for r0, c0, r1, c1, start in merged:
        if r0 <= row <= r1 and c0 <= col <= c1:
            return start
    return f"{column}{row}"


def _said(problem: Problem) -> str:
    """The message without its location: the comment sits on the cell it names."""
    message = problem.message
    if message.startswith("工作表“") and "：" in message:
        message = message.split("：", 1)[1]
    return f"【{_LEVEL.get(problem.severity, '提示')}】{message}"


def _mark(book, titles: dict[str, str], problems: list[Problem], limit: int | None) -> tuple[int, int]:
    """Fill and comment every located problem's cell; (cells marked, cells left unmarked)."""
    cells: dict[tuple[str, str], list[Problem]] = {}
    merged = {ws.title: _merged(ws) for ws in book.worksheets}
    for p in problems:
        title = titles.get(p.sheet, p.sheet)
        if p.row and p.column and title in merged:
            cells.setdefault((title, _anchor(merged[title], p.row, p.column)), []).append(p)
    chosen = list(cells.items())[:limit] if limit is not None else list(cells.items())
    for (title, coordinate), found in chosen:
        cell = book[title][coordinate]
        said = "\n".join(_said(p) for p in found)
        if cell.comment is not None and cell.comment.author != AUTHOR:
            said += f"\n（原批注：{cell.comment.text}）"
        comment = Comment(_text(said), AUTHOR)
        comment.width = 320
        comment.height = min(480, 30 + 16 * sum(math.ceil(len(line) / 20) or 1 for line in said.splitlines()))
        cell.comment = comment
        cell.fill = _fill()
        wrapped = copy.copy(cell.alignment)  # the cell's own alignment, wrapped
        wrapped.wrap_text = True
        cell.alignment = wrapped
        _show_as_held(cell)
    for title, row in {(title, book[title][coordinate].row) for (title, coordinate), _found in chosen}:
        _fit_row(book[title], row, merged[title])
    return len(chosen), len(cells) - len(chosen)


def _show_as_held(cell) -> None:
    """A number under a date format (the template's 日期 column) shows as 1900-01-08; the receipt
    quotes the 9.2 the cell holds, and so does the copy: the number again, in the General format."""
    value = cell.value
    day = value.date() if isinstance(value, dt.datetime) else value
    if isinstance(day, dt.date) and day < EXCEL_EPOCH + dt.timedelta(days=SERIAL_MIN):
        number = round(float(to_excel(value)), 6)
        cell.value = int(number) if number.is_integer() else number
        cell.number_format = "General"


def _fit_row(ws, row: int, merged) -> None:
    """Make a marked row tall enough for every wrapped text in it (the template's rows have a
    fixed height, and a marked cell now wraps)."""
    needed = 1
    for column in range(1, ws.max_column + 1):
        cell = ws._cells.get((row, column))  # the cells that exist; ws[row] would create the rest
        if cell is None or cell.value is None or not cell.alignment.wrap_text:
            continue
        first = last = cell.column
        for r0, c0, r1, c1, _start in merged:
            if r0 <= row <= r1 and c0 <= cell.column <= c1:
                first, last = c0, c1
        width = sum(ws.column_dimensions[get_column_letter(c)].width or 8.43 for c in range(first, last + 1))
        text = str(cell.value)
        needed = max(needed, sum(max(1, math.ceil(len(part.encode("gb18030", "replace")) / max(width - 1, 1)))
                                 for part in text.splitlines() or [text]))
    dims = ws.row_dimensions[row]
    if (dims.height or 15) < LINE_HEIGHT * needed + 2:
        dims.height = LINE_HEIGHT * needed + 2


def _where(problem: Problem) -> str:
    if problem.row and problem.column:
        return f"{problem.column}{problem.row}"
    if problem.row:
        return f"第{problem.row}行"
    return "表头" if problem.sheet else "—"


def _problem_list(book, titles: dict[str, str], problems: list[Problem], notes: list[str]) -> None:
    ws = book.create_sheet(LIST_SHEET)
    lines = ["有问题的单元格已在表中标为红色并附批注（鼠标移到单元格上即可查看）；全部问题如下，"
             "“错误”须修改后重新报送，“提示”请核实。", *notes]
    for r, line in enumerate(lines, start=1):
        _put(ws.cell(r, 1), line)
        ws.merge_cells(start_row=r, start_column=1, end_row=r, end_column=4)
        ws.cell(r, 1).alignment = Alignment(wrap_text=True, vertical="top")
        ws.row_dimensions[r].height = 18 * max(1, math.ceil(len(line) / 60))
    head = len(lines) + 2
    for c, title in enumerate(("级别", "工作表", "单元格", "问题说明"), start=1):
        cell = ws.cell(head, c, title)
        cell.font = Font(bold=True)
        cell.alignment = Alignment(horizontal="center", vertical="center")
    wrap = Alignment(wrap_text=True, vertical="top")
    plain, strong = ws.cell(head + 1, 1), ws.cell(head + 1, 2)
    plain.alignment = strong.alignment = wrap
    strong.font = Font(color="FF9C0006", bold=True)
    styles = {False: copy.copy(plain._style), True: copy.copy(strong._style)}  # set once, copied: 10x faster
    ordered = sorted(problems, key=lambda p: p.severity != "error")  # errors first, order kept
    for r, p in enumerate(ordered, start=head + 1):
        values = (_LEVEL.get(p.severity, "提示"), titles.get(p.sheet, p.sheet) or "", _where(p), p.message)
        for c, value in enumerate(values, start=1):
            cell = ws.cell(r, c)
            _put(cell, value)
            cell._style = copy.copy(styles[c == 1 and p.severity == "error"])
    for letter, width in zip("ABCD", (8, 18, 10, 90)):
        ws.column_dimensions[letter].width = width
    for r, p in enumerate(ordered, start=head + 1):  # rows tall enough for the wrapped explanation
        ws.row_dimensions[r].height = LINE_HEIGHT * max(1, math.ceil(len(p.message.encode("gb18030", "replace")) / 88)) + 2
    ws.freeze_panes = ws.cell(head + 1, 1)
    _printable(ws, head)
    book.move_sheet(ws, offset=-book.worksheets.index(ws))  # first: what the clerk reads before the table
    for other in book.worksheets:
        other.sheet_view.tabSelected = False  # one selected tab: grouped sheets would edit together
    book.active = 0
    ws.sheet_view.tabSelected = True


def _printable(ws, head: int) -> None:
    """A4 portrait, one page wide, the column titles on every page, page numbers at the foot."""
    ws.page_setup.paperSize, ws.page_setup.orientation = 9, "portrait"
    ws.page_setup.fitToWidth, ws.page_setup.fitToHeight = 1, 0
    ws.sheet_properties.pageSetUpPr = PageSetupProperties(fitToPage=True)
    ws.print_title_rows = f"{head}:{head}"
    ws.oddFooter.center.text = "第&P页 共&N页"
