"""Bytes of an attachment -> sheets of cell values (xlsx, xls, WPS .et, ods, csv, docx, zip, TNEF).

The bytes are hostile until proven otherwise: the type comes from the content, never the
name; every zip is measured before it is opened and again while it inflates; every library
failure becomes a `Rejected` whose message tells the sender what to do. Cell values come from
python-calamine (Rust, ten times openpyxl's speed): in this process for an .xlsx whose XML was
scanned first and holds nothing calamine could choke on, else in a child with capped memory.
"""
from __future__ import annotations

import codecs
import copy
import csv
import datetime as dt
import io
import itertools
import functools
import logging
import os
import pickle
import re
import string
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import defusedxml.ElementTree  # noqa: F401  (hard dependency: openpyxl only defuses when it is importable)
import python_calamine  # noqa: F401  (used in a child process: fail here, not on every .xls)

from .config import Limits
from .errors import Problem, Rejected

_NOT_DEFUSED = ("mailbot.workbook refuses to run: openpyxl is not parsing XML through defusedxml "
                "(install defusedxml and do not set OPENPYXL_DEFUSEDXML=False)")
if os.environ.get("OPENPYXL_DEFUSEDXML", "True") != "True":  # what openpyxl reads (openpyxl.xml)
    raise ImportError(_NOT_DEFUSED)


def defused_openpyxl():
    """openpyxl, checked to parse through defusedxml. Imported only where it is used (the odd
    .xlsx, the marked-up copy, the template): a worker that reads with calamine alone is 14 MB
    smaller without it."""
    import openpyxl
    from openpyxl.xml import functions

    if not openpyxl.DEFUSEDXML or not functions.iterparse.__module__.startswith("defusedxml"):
        raise ImportError(_NOT_DEFUSED)
    return openpyxl


def get_column_letter(index: int) -> str:
    """Column 1 -> "A", 28 -> "AB" (openpyxl.utils.get_column_letter, without importing openpyxl)."""
    if not 1 <= index <= 18278:
        raise ValueError(f"Invalid column index {index}")
    letters = ""
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters

log = logging.getLogger("mailbot.workbook")

Cell = None | str | int | float | bool | dt.datetime | dt.date | dt.time


@dataclass
class Sheet:
    name: str
    rows: list[tuple[Cell, ...]]  # rows[i] is spreadsheet row i + 1
    merged: list[tuple[int, int, int, int]] = field(default_factory=list)  # (min_row, min_col, max_row, max_col), 1-based
    hidden: bool = False  # hidden sheets often hold old months or lookup lists
    active: bool = False  # the sheet that was open when the file was saved (xlsx, ods)


@dataclass
class Workbook:
    kind: str  # "xlsx", "xls" (also WPS .et), "ods", "csv", "docx", "zip", "tnef"
    sheets: list[Sheet]
    filename: str = ""
    marked: bool = False  # carries ANNOTATED_MARK: the copy with problems marked that mailbot sent
    modified: str = ""  # when the file was last saved (docProps/core.xml, ISO 8601), if it says


# The custom document property annotate.py writes into every copy it marks up, and the sheet it adds.
ANNOTATED_MARK = "mailbot-annotated"
LIST_SHEET = "问题清单"


class _Sheets(list):
    """A reader's sheets, with what the package said about itself."""

    marked = False
    modified = ""


_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_IMAGES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
_TNEF = b"\x78\x9f\x3e\x22"  # Outlook's winmail.dat
_ARCHIVES = (b"Rar!\x1a\x07", b"7z\xbc\xaf\x27\x1c")
# Files of another kind than a table, each told apart so that the sender reads what it is.
NOT_TABLES = ("pdf", "image", "doc", "odt", "presentation", "archive")
_ODF = {"application/vnd.oasis.opendocument.spreadsheet": "ods", "application/vnd.oasis.opendocument.text": "odt",
        "application/vnd.oasis.opendocument.presentation": "presentation"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x19\x1b-\x1f\x7f]")
_MERGE = re.compile(rb'<(?:\w+:)?mergeCell\b[^>]*?\bref="([A-Za-z]{1,3}[0-9]+:[A-Za-z]{1,3}[0-9]+)"')
_EXCEL_MAX_ROWS = 1_048_576  # nothing legitimate lies below; stop padding there
_RATIO_FLOOR = 1 << 20  # members smaller than this cannot hurt whatever their ratio
_CHUNK = 1 << 16
_HEADER_WORDS = ("单位", "报送人", "报送日期")
_RESAVE = "请在Excel或WPS中打开该文件，“另存为”.xlsx格式后重新发送。"
_SAY = {  # problem code[:variant] -> what the sender reads
    "too_large": "附件“{name}”大小约{size}，超过系统可接收的{limit}上限。请删除与清单无关的内容（如图片、多余的工作表）后重新发送。",
    "encrypted": "附件“{name}”设置了打开密码，系统无法读取，请取消文件密码后重新发送。",
    "encrypted:zip": "附件“{name}”设置了解压密码，系统无法读取，请直接发送未加密的清单文件。",
    "not_a_table:pdf": "附件“{name}”是PDF文件，系统无法从中读取清单内容。请发送Excel格式（.xlsx）的清单原件，不要转换为PDF。",
    "not_a_table:image": "附件“{name}”是图片，系统无法从中读取清单内容。请发送Excel格式（.xlsx）的清单原件，不要拍照或截图。",
    "not_a_table:doc": "附件“{name}”是Word 97-2003文档（.doc）或WPS文字文档（.wps），系统无法读取这种格式。"
                       "请在Word或WPS中打开后“另存为”.docx格式重新发送，或按模板用Excel填写后以.xlsx格式发送。",
    "not_a_table:odt": "附件“{name}”是OpenDocument文本文档（.odt），系统无法从中读取清单内容。"
                       "请按模板用Excel或WPS表格填写后以.xlsx格式发送。",
    "not_a_table:presentation": "附件“{name}”是演示文稿（PowerPoint或WPS演示），系统无法从中读取清单内容。"
                                "请按模板用Excel或WPS表格填写后以.xlsx格式发送。",
    "not_a_table:archive": "附件“{name}”是RAR或7z格式的压缩包，系统无法解压这种格式。"
                           "请直接发送Excel格式（.xlsx）的清单，或改用zip格式压缩后发送。",
    "not_a_table:zip": "压缩包“{name}”中没有找到Excel、WPS、Word或CSV格式的清单文件。请直接发送Excel格式（.xlsx）的清单。",
    "not_a_table:tnef": "附件“{name}”是Outlook打包的附件（winmail.dat），其中没有找到Excel、WPS、Word或CSV格式的清单文件。"
                        "请直接发送Excel格式（.xlsx）的清单。",
    "unreadable": "附件“{name}”无法读取，文件可能已损坏或不是受支持的表格格式。" + _RESAVE,
    "zip_bomb": "附件“{name}”解压后体积异常（超过{limit}或压缩比例异常），系统已停止读取。请确认发送的是清单原件，" + _RESAVE[1:],
    "too_many_rows": "附件“{name}”的工作表“{sheet}”超过{limit}行，超出系统处理上限。请只保留本月清单内容，删除多余的行后重新发送。",
    "too_many_columns": "附件“{name}”的工作表“{sheet}”超过{limit}列，超出系统处理上限。请按模板的列填写，删除多余的列后重新发送。",
    "too_many_files": "压缩包“{name}”内文件过多（超过{limit}个）。请只发送清单表格文件，不要打包其他材料。",
}


def _reject(key: str, name: str, sheet: str | None = None, **facts):
    message = _SAY[key].format(name=name, sheet=sheet, **facts)
    raise Rejected([Problem(key.partition(":")[0], message, sheet=sheet)])


def _size(n: int) -> str:
    return f"{n / 2**20:.0f}MB" if n >= 2**20 else f"{max(n // 1024, 1)}KB"


# ---------------------------------------------------------------- sniffing

def sniff(data: bytes) -> str:
    """Type from the first bytes: xlsx, docx, ods, zip, xls, tnef, encrypted, csv, unknown, or one
    of NOT_TABLES (pdf, image, doc, odt, presentation, archive)."""
    if data.startswith(b"PK\x03\x04"):
        try:
            zf = zipfile.ZipFile(io.BytesIO(data))
            names = {n.lower(): n for n in zf.namelist()}
            if "mimetype" in names:  # OpenDocument: the first member names the kind
                with zf.open(names["mimetype"]) as fh:
                    return _ODF.get(fh.read(100).decode("ascii", "replace").strip(), "unknown")
        except Exception:
            return "zip"  # broken archive: reading it will say so
        if "xl/workbook.xml" in names:
            return "xlsx"
        if "word/document.xml" in names:
            return "docx"
        if "ppt/presentation.xml" in names:
            return "presentation"
        if "[content_types].xml" in names:
            return "unknown"  # another office document (xlsb, vsdx...): not an archive of files
        return "zip"
    if data.startswith(_OLE):
        return _sniff_ole(data)
    if data.startswith(_TNEF):
        return "tnef"
    if data.startswith(b"%PDF"):
        return "pdf"
    if data.startswith(_IMAGES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return "image"
    if data.startswith(_ARCHIVES):
        return "archive"
    return "csv" if _decode(data[:_CHUNK], final=len(data) <= _CHUNK) is not None else "unknown"


def _sniff_ole(data: bytes) -> str:
    """An OLE file: encrypted OOXML or Office file, Word 97 / WPS .wps, PowerPoint, else a workbook
    (xls, WPS .et) or something calamine will refuse."""
    try:
        import msoffcrypto

        if msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted():
            return "encrypted"
    except Exception:
        pass  # not an Office OLE file msoffcrypto knows
    try:
        import olefile  # msoffcrypto's own dependency

        with olefile.OleFileIO(io.BytesIO(data)) as ole:
            streams = {"/".join(entry).lower() for entry in ole.listdir()}
    except Exception:
        return "xls"  # calamine will judge it
    if streams & {"workbook", "book"}:
        return "xls"
    if "worddocument" in streams:
        return "doc"
    if "powerpoint document" in streams:
        return "presentation"
    return "xls"


def _decode(data: bytes, final: bool = True) -> str | None:
    """Text in UTF-8 (BOM or not), UTF-16 with BOM (Excel's "Unicode text") or GB18030; None if binary."""
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        encodings = ("utf-16",)
    elif not data or b"\x00" in data:
        return None
    else:
        encodings = ("utf-8-sig", "gb18030")
    for encoding in encodings:
        try:
            text = codecs.getincrementaldecoder(encoding)().decode(data, final=final)
        except UnicodeDecodeError:
            continue
        return None if _CONTROL.search(text) else text
    return None


# ---------------------------------------------------------------- entry point

def read(data: bytes, filename: str, limits: Limits, *, _depth: int = 0) -> Workbook:
    """Every sheet of one attachment; raises `Rejected` for anything the sender must fix."""
    name = filename or "附件"
    if len(data) > limits.max_attachment_bytes:
        _reject("too_large", name, size=_size(len(data)), limit=_size(limits.max_attachment_bytes))
    kind = sniff(data)
    if kind == "encrypted":
        _reject("encrypted", name)
    if kind in NOT_TABLES:
        _reject(f"not_a_table:{kind}", name)
    if kind == "unknown":
        _reject("unreadable", name)
    reader = {"xlsx": _read_xlsx, "xls": _read_in_child, "ods": _read_ods, "csv": _read_csv, "docx": _read_docx,
              "zip": _read_archive, "tnef": _read_tnef}[kind]
    try:
        sheets = reader(data, name, limits, _depth)
    except Rejected:
        raise
    except Exception:  # whatever the libraries raise on a damaged file, the sender can only re-save it
        _reject("unreadable", name)
    except BaseException as exc:  # a Rust panic inside calamine arrives as pyo3's PanicException
        if type(exc).__name__ != "PanicException":
            raise
        _reject("unreadable", name)
    return Workbook(kind, sheets, filename, getattr(sheets, "marked", False), getattr(sheets, "modified", ""))


# ---------------------------------------------------------------- zip safety

def _open_zip(data: bytes, name: str, limits: Limits) -> zipfile.ZipFile:
    """Open a zip only after its central directory promises a sane size; `_inflate` holds it to that."""
    zf = zipfile.ZipFile(io.BytesIO(data))
    total = 0
    for info in zf.infolist():
        if info.flag_bits & 0x1:
            _reject("encrypted:zip", name)
        total += info.file_size
        if info.file_size > _RATIO_FLOOR and info.file_size > limits.max_compression_ratio * max(info.compress_size, 1):
            _reject("zip_bomb", name, limit=_size(limits.max_uncompressed_bytes))
    if total > limits.max_uncompressed_bytes:
        _reject("zip_bomb", name, limit=_size(limits.max_uncompressed_bytes))
    return zf


def _inflate(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limits: Limits):
    """Yield a member's bytes in chunks, stopping at the first byte beyond its declared size.

    zipfile silently stops at the declared size (and then blames the CRC): ask it for one byte
    more, without its CRC check, to tell a lying header from a damaged file; check the CRC here.
    """
    probe = copy.copy(info)
    probe.file_size = info.file_size + 1
    del probe.CRC
    seen = crc = 0
    with zf.open(probe) as fh:
        while chunk := fh.read(_CHUNK):
            seen += len(chunk)
            if seen > info.file_size:
                _reject("zip_bomb", name, limit=_size(limits.max_uncompressed_bytes))
            crc = zlib.crc32(chunk, crc)
            yield chunk
    if seen != info.file_size or crc != info.CRC:
        raise zipfile.BadZipFile(f"{info.filename}: damaged member")


@dataclass
class _Scan:
    """What one pass over an OOXML package found (see `_scan`)."""

    merges: dict[str, list[str]] = field(default_factory=dict)  # sheet XML path -> merge refs, in order
    odd: str = ""  # why calamine must not read it in this process ("" when it may)
    active: int = 0  # the workbookView's activeTab: index of the sheet open when the file was saved
    marked: bool = False  # docProps/custom.xml carries ANNOTATED_MARK
    modified: str = ""  # docProps/core.xml's dcterms:modified


# Cell XML that calamine reads in a way this scan cannot bound: a <c> start tag whose position is
# not the `r` attribute written first (calamine then counts cells itself), or a namespace prefix
# (calamine matches local names, so <x:c> is a cell that a search for "<c " would not see).
_ODD_CELL = re.compile(rb'<c(?! r=")[\s>]')
_PREFIXED = re.compile(rb':(?:c|row)[\s>]')  # apart: each alone starts with a literal, which re finds fast
_ACTIVE_TAB = re.compile(rb'<(?:\w+:)?workbookView\b[^>]*?\bactiveTab="(\d{1,5})"')
_MODIFIED = re.compile(rb"<dcterms:modified\b[^>]*>\s*([0-9T:.+Z-]{10,30})\s*<")
_UNIQUE_COUNT = re.compile(rb'<(?:\w+:)?sst\b[^>]*?\buniqueCount="(\d+)"')


def _greater(bound: str, alphabet: str, width: int | None) -> str:
    """A regex for the strings over `alphabet` (in order) that denote more than `bound`: longer ones
    (up to `width` characters, unbounded when None), or as long and later in alphabet order."""
    def above(c: str) -> str:
        rest = alphabet[alphabet.index(c) + 1:]
        return "[" + "".join(re.escape(x) for x in rest) + "]" if rest else ""
    every = "[" + "".join(re.escape(x) for x in alphabet) + "]"
    options = [bound[:i] + above(c) + every * (len(bound) - i - 1) for i, c in enumerate(bound) if above(c)]
    longer = every + "{" + str(len(bound) + 1) + "," + (str(width) if width else "") + "}"
    if width is None or width > len(bound):
        options.append(longer)
    return "(?:" + "|".join(options) + ")"


@functools.lru_cache(maxsize=8)
def _beyond(max_rows: int, max_columns: int) -> re.Pattern:
    """A cell reference past the row or column limit (calamine would allocate every cell up to it)."""
    letters = get_column_letter(max_columns)
    cols = _greater(letters, string.ascii_uppercase, 3)
    rows = _greater(str(max_rows), string.digits, None)
    # case-blind letters: calamine reads "ay1" as AY1
    return re.compile(('<c r="(?:(?i:' + cols + ")[0-9]|[A-Za-z]{1,3}" + rows + '")').encode())


def _scan(zf: zipfile.ZipFile, name: str, limits: Limits) -> _Scan:
    """Inflate every member once (bounded); refuse XML with a DTD; collect each sheet's merge refs;
    and tell whether calamine may read the cells in this process: a Rust allocation that fails
    aborts the whole process, so nothing may make it allocate beyond the row and column limits
    (it allocates rows x columns up to the farthest cell, and the strings a header announces)."""
    found = _Scan()
    beyond = _beyond(limits.max_rows, limits.max_columns)
    for info in zf.infolist():
        xml = info.filename.endswith((".xml", ".rels", ".vml"))
        sheet = info.filename.startswith("xl/worksheets/")
        strings = info.filename == "xl/sharedStrings.xml"
        tail, refs, count, announced = b"", [], 0, 0
        for chunk in _inflate(zf, info, name, limits):
            if not xml:
                continue
            buf = tail + chunk
            if b"<!DOCTYPE" in buf or b"<!ENTITY" in buf:  # OOXML never needs one; XXE and entity bombs do
                _reject("unreadable", name)
            if sheet:
                if b"mergeCell" in buf:
                    refs += [m.group(1).decode() for m in _MERGE.finditer(buf) if m.end() > len(tail)]
                # a tag cut short at the end of the buffer is searched again with the next chunk
                if not found.odd and ((m := _ODD_CELL.search(buf)) and m.start() < len(buf) - 8
                                      or _PREFIXED.search(buf) or beyond.search(buf)):
                    found.odd = f"{info.filename}: cells beyond the limits or not addressed plainly"
            elif strings:
                if not tail and (m := _UNIQUE_COUNT.search(buf)):
                    announced = int(m.group(1))
                count += chunk.count(b"<si") + chunk.count(b":si")
            elif info.filename == "xl/workbook.xml" and (m := _ACTIVE_TAB.search(buf)):
                found.active = int(m.group(1))
            elif info.filename == "docProps/custom.xml" and f'name="{ANNOTATED_MARK}"'.encode() in buf:
                found.marked = True
            elif info.filename == "docProps/core.xml" and (m := _MODIFIED.search(buf)):
                found.modified = m.group(1).decode()
            tail = buf[-256:]
        if sheet and (_ODD_CELL.search(tail) or _PREFIXED.search(tail)):
            found.odd = found.odd or f"{info.filename}: cells not addressed plainly"
        if refs:
            found.merges[info.filename] = list(dict.fromkeys(refs))
        if strings and announced > count:
            found.odd = found.odd or f"sharedStrings announces {announced} strings, holds {count}"
    return found


# ---------------------------------------------------------------- readers

def _value(v):
    if v is None or v == "":
        return None
    if isinstance(v, (str, bool, int, float, dt.date, dt.time)):
        return v
    return str(v)  # timedelta, error codes, anything exotic: keep it visible as text


def _calamine_value(v):
    """A calamine value as openpyxl gives it, so that every reader yields the same cells: calamine
    has "" for an empty cell, a float for every number, a date for a date-only cell."""
    kind = type(v)
    if kind is str:
        return v or None
    if kind is float:
        return int(v) if v.is_integer() and -1e15 < v < 1e15 else v
    if kind is dt.date:
        return dt.datetime(v.year, v.month, v.day)
    return _value(v)


def _rows(rows, name: str, sheet: str, limits: Limits, calamine: bool = False) -> list[tuple]:
    """Trimmed rows, refused as soon as data appears beyond the row or column limit.

    Cells past the column limit are only counted, at C speed: a styled empty cell at XFD makes
    openpyxl hand over 16,384 values per row, and converting them one by one took 37 s for a
    400 KB file."""
    out: list[tuple] = []
    cap = limits.max_columns
    convert = _calamine_value if calamine else _value
    for number, row in enumerate(rows, 1):
        extra = row[cap:]
        wide = extra.count(None) + extra.count("") < len(extra) and any(v is not None and v != "" for v in extra)
        row = [convert(v) for v in row[:cap]]
        while row and row[-1] is None:
            row.pop()
        if number > limits.max_rows:
            if row or wide:
                _reject("too_many_rows", name, sheet, limit=limits.max_rows)
            if number >= _EXCEL_MAX_ROWS:
                break
            continue
        if wide:
            _reject("too_many_columns", name, sheet, limit=limits.max_columns)
        out.append(tuple(row))
    while out and not out[-1]:
        out.pop()
    return out


def _read_xlsx(data: bytes, name: str, limits: Limits, depth: int) -> list[Sheet]:
    with _open_zip(data, name, limits) as zf:
        scan = _scan(zf, name, limits)
    sheets = _Sheets()
    sheets.marked, sheets.modified = scan.marked, scan.modified
    if scan.odd:
        log.info("%s: read with openpyxl (%s)", name, scan.odd)
        sheets += _read_openpyxl(data, name, limits, scan)
        return sheets
    from python_calamine import CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

    with CalamineWorkbook.from_filelike(io.BytesIO(data)) as wb:
        for i, meta in enumerate(wb.sheets_metadata):
            if meta.typ != SheetTypeEnum.WorkSheet:
                continue
            ws = wb.get_sheet_by_index(i)
            rows = _rows(_padded(ws), name, meta.name, limits, calamine=True)
            merged = sorted((a + 1, b + 1, c + 1, d + 1) for (a, b), (c, d) in ws.merged_cell_ranges or ())
            sheets.append(Sheet(meta.name, rows, merged, meta.visible != SheetVisibleEnum.Visible, i == scan.active))
    return sheets


def _padded(ws):
    """calamine's rows start at the first used cell: put them back in place (rows[i] is row i + 1),
    one at a time, so that its lists and ours never all exist at once."""
    start = ws.start
    if start is None:
        return iter(())
    cells = ws.iter_rows()
    if start[1]:
        lead = [None] * start[1]
        cells = (lead + r for r in cells)
    return itertools.chain(itertools.repeat((), start[0]), cells)


def _read_openpyxl(data: bytes, name: str, limits: Limits, scan: _Scan) -> list[Sheet]:
    """The careful reader for what calamine must not see here (beyond the limits, odd XML):
    openpyxl streams the cells and `_rows` stops at the first one past the limits."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # openpyxl warns about styles and extensions it skips
        from openpyxl.utils.cell import range_boundaries

        wb = defused_openpyxl().load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
        try:
            sheets = []
            for i, ws in enumerate(wb.worksheets):
                ws.reset_dimensions()  # WPS writes <dimension ref="A1"/> whatever the content
                rows = _rows(ws.iter_rows(values_only=True), name, ws.title, limits)
                refs = scan.merges.get(str(getattr(ws, "_worksheet_path", "")).lstrip("/"), [])
                merged = sorted((r0, c0, r1, c1) for c0, r0, c1, r1 in map(range_boundaries, refs))
                active = wb.sheetnames.index(ws.title) == scan.active
                sheets.append(Sheet(ws.title, rows, merged, ws.sheet_state != "visible", active))
        finally:
            wb.close()
    return sheets


# calamine is Rust: a damaged .xls can make it abort the whole process (an allocation of
# hundreds of GB fails, seen within seconds of fuzzing) or allocate rows x columns of a range
# reaching IV65536 (1 GB from a 6 KB file), and an .ods can repeat a row or column millions of
# times. So .xls and .ods are read in a child with capped memory and time.
_CHILD_MEMORY = 512 << 20  # address space of the child: ample for 50,000 rows x 50 columns
_CHILD_SECONDS = 60
_CALAMINE_CHILD = """
import io, pickle, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({0}, {0}))
from python_calamine import CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum
wb = CalamineWorkbook.from_filelike(io.BytesIO(sys.stdin.buffer.read()))
out = []
for i, meta in enumerate(wb.sheets_metadata):
    if meta.typ == SheetTypeEnum.WorkSheet:
        ws = wb.get_sheet_by_index(i)
        out.append((meta.name, meta.visible != SheetVisibleEnum.Visible, ws.start,
                    ws.to_python(skip_empty_area=True), getattr(ws, "merged_cell_ranges", None) or []))
pickle.dump(out, sys.stdout.buffer)
"""


class _Unpickler(pickle.Unpickler):
    """Only plain values come back from the child: refuse any other class."""

    def find_class(self, module, name):
        if module == "datetime" and name in ("date", "datetime", "time", "timedelta"):
            return getattr(dt, name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def _child(script: str, data: bytes, name: str):
    child = subprocess.run([sys.executable, "-I", "-c", script.format(_CHILD_MEMORY)], input=data,
                           capture_output=True, timeout=_CHILD_SECONDS)
    if child.returncode != 0:
        _reject("unreadable", name)
    return _Unpickler(io.BytesIO(child.stdout)).load()


def _read_in_child(data: bytes, name: str, limits: Limits, depth: int, active: str | None = None) -> list[Sheet]:
    sheets = []
    for title, hidden, start, cells, merges in _child(_CALAMINE_CHILD, data, name):
        rows: list = []
        if start is not None:  # calamine starts at the first used cell; put it back in place
            lead = [None] * start[1]
            rows = _rows(itertools.chain(itertools.repeat((), start[0]), (lead + r for r in cells)),
                         name, title, limits, calamine=True)
        merged = sorted((a + 1, b + 1, c + 1, d + 1) for (a, b), (c, d) in merges)
        sheets.append(Sheet(title, rows, merged, hidden, title == active))
    return sheets


_ODS_ACTIVE = re.compile(rb'config:name="ActiveTable"[^>]*>([^<]{1,200})<')


def _read_ods(data: bytes, name: str, limits: Limits, depth: int) -> list[Sheet]:
    """OpenDocument (LibreOffice, WPS): the package is held to the zip limits and scanned for a DTD
    like an .xlsx, then calamine reads it in the capped child."""
    with _open_zip(data, name, limits) as zf:
        _scan(zf, name, limits)
        try:
            settings = zf.read("settings.xml")
        except KeyError:
            settings = b""
    found = _ODS_ACTIVE.search(settings)
    active = found.group(1).decode("utf-8", "replace") if found else None
    return _read_in_child(data, name, limits, depth, active)


def _read_csv(data: bytes, name: str, limits: Limits, depth: int) -> list[Sheet]:
    text = _decode(data)
    if text is None:
        _reject("unreadable", name)
    head = [line for line in itertools.islice(io.StringIO(text), 50) if line.strip()]
    delimiter = max(",\t;", key=lambda d: sum(line.count(d) for line in head))  # ties go to ","
    title = PurePosixPath(name.replace("\\", "/")).stem or "Sheet1"
    rows = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    return [Sheet(title, _rows(rows, name, title, limits))]


def _read_docx(data: bytes, name: str, limits: Limits, depth: int) -> list[Sheet]:
    """Each table becomes a sheet; header paragraphs above the first table lead its rows."""
    import docx
    from docx.table import Table

    with _open_zip(data, name, limits) as zf:
        _scan(zf, name, limits)
    doc = docx.Document(io.BytesIO(data))
    header: list[tuple] = []
    sheets: list[Sheet] = []
    for block in doc.iter_inner_content():
        if isinstance(block, Table):
            sheets.append(_docx_table(block, f"表格{len(sheets) + 1}", [] if sheets else header, name, limits))
        elif not sheets and any(word in block.text for word in _HEADER_WORDS):
            header.append((block.text,))
    if not sheets:  # a letter-style reply ("本月无……") still deserves to be read
        texts = [(p.text,) for p in doc.paragraphs if p.text.strip()]
        sheets.append(Sheet("正文", _rows(texts, name, "正文", limits)))
    return sheets


def _docx_table(table, title: str, lead: list[tuple], name: str, limits: Limits) -> Sheet:
    """Walk the layout grid ourselves: a merged cell keeps its text in its top-left position only,
    as in a spreadsheet (python-docx repeats it, and resolves vertical merges in quadratic time)."""
    from docx.table import _Cell

    grid: list[list] = []
    boxes: list[list[int]] = []  # [min_row, min_col, max_row, max_col] of each cell
    above: dict[int, list[int]] = {}  # grid column -> box covering it in the previous row
    for r, tr in enumerate(table._tbl.tr_lst, len(lead) + 1):
        if r > limits.max_rows:
            _reject("too_many_rows", name, title, limit=limits.max_rows)
        c = tr.grid_before + 1
        values: list = [None] * tr.grid_before
        current: dict[int, list[int]] = {}
        for tc in tr.tc_lst:
            span = tc.grid_span
            if c + span - 1 > limits.max_columns:
                _reject("too_many_columns", name, title, limit=limits.max_columns)
            box = above.get(c) if tc.vMerge == "continue" else None
            if box is None:
                box = [r, c, r, c + span - 1]
                boxes.append(box)
                values.append(_Cell(tc, table).text)
            else:
                box[2] = r
                values.append(None)
            values += [None] * (span - 1)
            current.update(dict.fromkeys(range(c, c + span), box))
            c += span
        above = current
        grid.append(values)
    merged = [tuple(b) for b in boxes if b[:2] != b[2:]]
    return Sheet(title, _rows(lead + grid, name, title, limits), merged)


def _member_name(info: zipfile.ZipInfo) -> str:
    """Chinese Windows zips names in GBK without the UTF-8 flag; zipfile decoded them as CP437."""
    if info.flag_bits & 0x800:
        return info.filename
    raw = info.filename.encode("cp437")
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            pass
    return info.filename


def _read_archive(data: bytes, name: str, limits: Limits, depth: int) -> list[Sheet]:
    """Every table-like member (one level of nested zip at most), sheets named "member:sheet"."""
    with _open_zip(data, name, limits) as zf:
        members = [i for i in zf.infolist() if not i.is_dir()]
        if len(members) > limits.max_zip_members:
            _reject("too_many_files", name, limit=limits.max_zip_members)
        wanted = ((_member_name(info), info) for info in members)
        wanted = ((member, info) for member, info in wanted
                  if not member.startswith("__MACOSX/") and not PurePosixPath(member).name.startswith("._"))
        sheets = _read_members(((m, lambda info=info: b"".join(_inflate(zf, info, name, limits))) for m, info in wanted),
                               limits, depth)
    if not sheets:
        _reject("not_a_table:zip", name)
    return sheets


def _read_members(members, limits: Limits, depth: int) -> list[Sheet]:
    """The sheets of every table-like (member name, bytes getter) of an archive, named "member:sheet";
    the problems of those that cannot be read, together."""
    sheets: list[Sheet] = []
    problems: list[Problem] = []
    for member, blob in members:
        blob = blob()
        kind = sniff(blob)
        if kind in NOT_TABLES or kind == "unknown" or (kind in ("zip", "tnef") and depth >= 1):
            continue
        try:
            book = read(blob, member, limits, _depth=depth + 1)
        except Rejected as exc:
            problems += exc.problems
            continue
        sheets += [Sheet(f"{member}:{s.name}", s.rows, s.merged, s.hidden, s.active) for s in book.sheets]
    if problems:
        raise Rejected(problems)
    return sheets


# ---------------------------------------------------------------- Outlook's winmail.dat

# Outlook (rich text mail, often on Chinese Windows) wraps every attachment into one TNEF file.
# tnefparse runs in the capped child too: its loops follow counts read from the file.
_TNEF_SECONDS = 20
_TNEF_CHILD = """
import logging, pickle, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({0}, {0}))
logging.disable(logging.CRITICAL)
from tnefparse.tnef import TNEF
tnef = TNEF(sys.stdin.buffer.read(), do_checksum=False)
files = []
for obj in tnef.objects:  # the exact bytes and the short name, attachment by attachment
    if obj.name == TNEF.ATTATTACHRENDDATA:
        files.append([None, b"", None])
    elif obj.level == TNEF.LVL_ATTACHMENT and files and obj.name in (TNEF.ATTATTACHDATA, TNEF.ATTATTACHTITLE):
        files[-1][2 if obj.name == TNEF.ATTATTACHDATA else 1] = bytes(obj.data)
for found, parsed in zip(files, tnef.attachments):
    long = [p.data for p in parsed.mapi_attrs if p.name == 0x3707 and isinstance(p.data, str)]  # PR_ATTACH_LONG_FILENAME
    found[0] = long[0] if long else None
    if found[2] is None:
        found[2] = parsed.data if isinstance(parsed.data, bytes) else b""
pickle.dump([tuple(f) for f in files], sys.stdout.buffer)
"""
_TNEF_OBJECT = struct.Struct("<BII")  # level, attribute id, length; then the data and a 16-bit checksum


def tnef_files(data: bytes, name: str, limits: Limits) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every file in a TNEF (winmail.dat) attachment. The object layer is
    walked here first, strictly: a broken or overlong file, or one with more files than a zip may
    hold, is refused before tnefparse sees it."""
    offset, count = 6, 0
    while offset < len(data):
        if offset + _TNEF_OBJECT.size + 2 > len(data):
            _reject("unreadable", name)
        level, attribute, length = _TNEF_OBJECT.unpack_from(data, offset)
        offset += _TNEF_OBJECT.size + length + 2
        if level not in (1, 2) or offset > len(data):
            _reject("unreadable", name)
        count += attribute & 0xFFFF == 0x9002  # attAttachRendData opens each attachment
    if count > limits.max_zip_members:
        _reject("too_many_files", name, limit=limits.max_zip_members)
    child = subprocess.run([sys.executable, "-I", "-c", _TNEF_CHILD.format(_CHILD_MEMORY)], input=data,
                           capture_output=True, timeout=_TNEF_SECONDS)
    if child.returncode != 0:
        _reject("unreadable", name)
    out = []
    for i, (long, short, blob) in enumerate(_Unpickler(io.BytesIO(child.stdout)).load(), 1):
        title = long or _legacy_name(short.rstrip(b"\x00")) or f"附件{i}"
        out.append((PurePosixPath(title.replace("\\", "/")).name or f"附件{i}", blob))
    return out


def _legacy_name(raw: bytes) -> str:
    """An 8.3 name in the sender's ANSI code page: on Chinese Windows, GBK."""
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            pass
    return raw.decode("gb18030", "replace")


def _read_tnef(data: bytes, name: str, limits: Limits, depth: int) -> list[Sheet]:
    """Like a zip: the sheets of every table-like file inside, named "file:sheet"."""
    sheets = _read_members(((member, lambda blob=blob: blob) for member, blob in tnef_files(data, name, limits)),
                           limits, depth)
    if not sheets:
        _reject("not_a_table:tnef", name)
    return sheets
