"""mailbot.workbook: attachment bytes -> sheets, and every hostile file -> a clean Rejected."""
from __future__ import annotations

import csv
import datetime as dt
import io
import random
import re
import resource
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbot.config import Limits
from mailbot.errors import Rejected
from mailbot.workbook import Sheet, Workbook, read, sniff

DATA = Path(__file__).parent / "data" / "workbooks"
LIMITS = Limits()
HEADER = ("市场主体（自然人）名称", "行政管理事项名称", "日期", "使用信用记录或报告情况", "使用的激励或惩戒措施")


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def rejected(data: bytes, filename: str = "清单.xlsx", limits: Limits = LIMITS) -> Rejected:
    with pytest.raises(Rejected) as info:
        read(data, filename, limits)
    return info.value


def codes(exc: Rejected) -> list[str]:
    return [p.code for p in exc.problems]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- hand-made zips

def build_zip(entries) -> bytes:
    """A zip from (name, raw_deflate, crc, size_local, size_central) entries, sizes as we please."""
    out, central = bytearray(), bytearray()
    for name, raw, crc, size_local, size_central in entries:
        n = name.encode()
        offset = len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(raw), size_local, len(n), 0) + n + raw
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(raw), size_central,
                               len(n), 0, 0, 0, 0, 0, offset) + n
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(out), 0)
    return bytes(out + central + eocd)


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zeros_stream(mib: int) -> tuple[bytes, int]:
    """Raw deflate of `mib` MiB of zeros and its CRC, without ever holding the zeros: after a full
    flush the compressor forgets its history, so every 1 MiB block compresses to the same bytes."""
    block = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    assert c.compress(block) + c.flush(zlib.Z_FULL_FLUSH) == segment
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    return segment * mib + c.flush(), crc


def xlsx_with(sheet_raw: bytes, crc: int, size_local: int, size_central: int) -> bytes:
    """official.xlsx with its sheet XML replaced by the given deflate stream."""
    entries = []
    with zipfile.ZipFile(io.BytesIO(fixture("official.xlsx"))) as zf:
        for info in zf.infolist():
            body = zf.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                entries.append((info.filename, sheet_raw, crc, size_local, size_central))
            else:
                entries.append((info.filename, deflate(body), zlib.crc32(body), len(body), len(body)))
    return build_zip(entries)


def test_zeros_stream_is_what_it_claims():
    raw, crc = zeros_stream(4)
    assert zlib.decompress(raw, -15) == bytes(4 << 20)
    assert crc == zlib.crc32(bytes(4 << 20))


def rewrite_zip(data: bytes, edits: dict) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info.filename, edits.get(info.filename, lambda b: b)(body))
        for name, body in edits.get("+", {}).items():
            dst.writestr(name, body)
    return out.getvalue()


def tiny_xlsx(shared_strings: bytes, sheet: bytes | None = None) -> bytes:
    """A minimal hand-written xlsx whose sharedStrings.xml (and sheet) we control byte for byte."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
            '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
            '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
            "</Types>"),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>'),
        "xl/workbook.xml": (
            f'<?xml version="1.0" encoding="UTF-8"?><workbook {ns} xmlns:r="{rel}">'
            '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'),
        "xl/_rels/workbook.xml.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/></Relationships>'),
        "xl/worksheets/sheet1.xml": sheet or (
            f'<?xml version="1.0" encoding="UTF-8"?><worksheet {ns}><sheetData>'
            '<row r="1"><c r="A1" t="s"><v>0</v></c></row></sheetData></worksheet>').encode(),
        "xl/sharedStrings.xml": shared_strings,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in parts.items():
            zf.writestr(name, body)
    return buf.getvalue()


SST = '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="1" uniqueCount="1">'
XXE = f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>{SST}<si><t>&e;</t></si></sst>'.encode()
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "ha">'
          + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(9))
          + f']>{SST}<si><t>&j;</t></si></sst>').encode()


# ---------------------------------------------------------------- sniff

@pytest.mark.parametrize("name, kind", [
    ("official.xlsx", "xlsx"), ("wps_dimension.xlsx", "xlsx"), ("formulas.xlsx", "xlsx"), ("official.xls", "xls"),
    ("official.docx", "docx"), ("gbk_member.zip", "zip"), ("official_utf8bom.csv", "csv"),
    ("official_gb18030.csv", "csv"), ("official_tab.csv", "csv"),
])
def test_sniff_fixtures(name, kind):
    assert sniff(fixture(name)) == kind


@pytest.mark.parametrize("data, kind", [
    (b"%PDF-1.7\n...", "pdf"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "image"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image"),
    (b"GIF89a\x01\x00", "image"),
    ("单位,报送人\n".encode("utf-16"), "csv"),
    (b"a,b\x00c", "unknown"),
    (b"", "unknown"),
    (b"\x01\x02\x03binary", "unknown"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "xls"),  # OLE that msoffcrypto cannot parse: calamine will refuse it
])
def test_sniff_magic(data, kind):
    assert sniff(data) == kind


def test_sniff_ignores_the_name_and_spots_other_office_zips():
    pptx = rewrite_zip(fixture("official.docx"), {})
    pptx = pptx.replace(b"word/document.xml", b"ppt/slides/s1.xml")
    assert sniff(pptx) == "unknown"
    assert read(fixture("official.xlsx"), "看起来像PDF.pdf", LIMITS).kind == "xlsx"


def test_sniff_encrypted_ooxml():
    import msoffcrypto.format.ooxml

    out = io.BytesIO()
    msoffcrypto.format.ooxml.OOXMLFile(io.BytesIO(fixture("official.xlsx"))).encrypt("1234", out)
    assert sniff(out.getvalue()) == "encrypted"
    exc = rejected(out.getvalue(), "加密清单.xlsx")
    assert codes(exc) == ["encrypted"]
    assert exc.problems[0].message == "附件“加密清单.xlsx”设置了打开密码，系统无法读取，请取消文件密码后重新发送。"


# ---------------------------------------------------------------- the official layout in every format

def official_rows(sheet: Sheet) -> list[tuple]:
    header = next(i for i, row in enumerate(sheet.rows) if row[:5] == HEADER)
    return sheet.rows[header + 1:]


@pytest.mark.parametrize("name", ["official.xlsx", "wps_dimension.xlsx", "official.xls"])
def test_official_spreadsheet(name):
    wb = read(fixture(name), name, LIMITS)
    assert isinstance(wb, Workbook) and wb.filename == name and len(wb.sheets) == 1
    sheet = wb.sheets[0]
    assert sheet.name == "清单" and not sheet.hidden
    assert sheet.rows[0] == ("行政管理事项中使用信用记录和信用报告的情况清单",)
    assert sheet.merged == [(1, 1, 1, 5)]
    assert sheet.rows[1] == ("单位：", "赞皇县市场监督管理局")
    assert sheet.rows[2] == ("报送人：", "张三")
    assert sheet.rows[3][0] == "报送日期：" and sheet.rows[3][1] in (dt.datetime(2026, 11, 20), dt.date(2026, 11, 20))
    assert sheet.rows[4] == HEADER
    data = official_rows(sheet)
    assert len(data) == 3
    assert data[0][2] in (dt.datetime(2026, 11, 3), dt.date(2026, 11, 3))
    assert data[1][2] == "2026.11.5" and data[2][2] == "2026年11月12日"
    assert data[0][0] == "赞皇县福源食品有限公司（91350100M000100Y43）"


@pytest.mark.parametrize("name", ["official_utf8bom.csv", "official_gb18030.csv", "official_tab.csv"])
def test_official_csv(name):
    wb = read(fixture(name), name, LIMITS)
    assert wb.kind == "csv" and [s.name for s in wb.sheets] == [name.removesuffix(".csv")]
    sheet = wb.sheets[0]
    assert sheet.rows[0] == ("行政管理事项中使用信用记录和信用报告的情况清单",)  # BOM stripped, trailing cells trimmed
    assert sheet.rows[1] == ("单位：", "赞皇县市场监督管理局")
    assert sheet.rows[4] == HEADER
    assert [r[2] for r in official_rows(sheet)] == ["2026-11-03", "2026.11.5", "2026年11月12日"]


def test_csv_semicolon_and_utf16():
    text = "单位;赞皇县税务局\n名称;事项\n甲公司;许可\n"
    assert read(text.encode(), "a.csv", LIMITS).sheets[0].rows[2] == ("甲公司", "许可")
    assert read(text.replace(";", "\t").encode("utf-16"), "a.txt", LIMITS).sheets[0].rows[2] == ("甲公司", "许可")


def test_docx_tables_and_header_paragraphs():
    wb = read(fixture("official.docx"), "清单.docx", LIMITS)
    assert wb.kind == "docx" and [s.name for s in wb.sheets] == ["表格1"]
    sheet = wb.sheets[0]
    assert sheet.rows[0] == ("单位：赞皇县市场监督管理局",)
    assert sheet.rows[1] == ("报送人：张三    报送日期：2026年11月20日",)  # title and 说明 paragraphs are not carried
    assert sheet.rows[2] == HEADER
    assert sheet.rows[4][0].strip() == "石家庄恒达建筑工程有限公司"
    assert sheet.rows[5] == (None, "招标投标资格审查", "2026/11/18", "同上", "限制参与招投标")  # vertical merge
    assert sheet.rows[7] == ("注：本表每月25日前报送。",)  # horizontal merge: one value, Nones trimmed
    assert sorted(sheet.merged) == [(5, 1, 6, 1), (8, 1, 8, 5)]


def test_docx_horizontal_merge_keeps_following_cells():
    import docx

    doc = docx.Document()
    table = doc.add_table(rows=2, cols=4)
    table.rows[0].cells[0].merge(table.rows[0].cells[1]).text = "合并"
    table.rows[0].cells[2].text = "右"
    table.rows[1].cells[0].text = "无"
    table.rows[1].cells[1].text = "无"  # equal neighbours that are NOT merged stay two values
    buf = io.BytesIO()
    doc.save(buf)
    sheet = read(buf.getvalue(), "a.docx", LIMITS).sheets[0]
    assert sheet.rows == [("合并", None, "右"), ("无", "无")]
    assert sheet.merged == [(1, 1, 1, 2)]


def test_docx_without_table_yields_its_text():
    import docx

    doc = docx.Document()
    doc.add_paragraph("单位：赞皇县教育局")
    doc.add_paragraph("本月无使用信用记录和信用报告情况。")
    buf = io.BytesIO()
    doc.save(buf)
    wb = read(buf.getvalue(), "说明.docx", LIMITS)
    assert wb.sheets[0].name == "正文"
    assert wb.sheets[0].rows == [("单位：赞皇县教育局",), ("本月无使用信用记录和信用报告情况。",)]


def test_zip_with_gbk_member_name():
    wb = read(fixture("gbk_member.zip"), "附件.zip", LIMITS)
    assert wb.kind == "zip"
    assert [s.name for s in wb.sheets] == ["赞皇县信用清单.xlsx:清单"]  # __MACOSX skipped
    assert wb.sheets[0].rows[4] == HEADER and wb.sheets[0].merged == [(1, 1, 1, 5)]


def test_zip_reads_every_candidate_and_one_nested_level():
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("表.csv", "甲,乙\n")
        zf.writestr("更深.zip", fixture("gbk_member.zip"))  # two levels down: ignored
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("清单.xlsx", fixture("official.xlsx"))
        zf.writestr("扫描件.pdf", b"%PDF-1.4 ...")
        zf.writestr("照片.jpg", b"\xff\xd8\xff\xe0 ...")
        zf.writestr("文件夹/", b"")
        zf.writestr("内层.zip", inner.getvalue())
    wb = read(outer.getvalue(), "材料.zip", LIMITS)
    assert [s.name for s in wb.sheets] == ["清单.xlsx:清单", "内层.zip:表.csv:表"]


def test_zip_without_a_table():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("扫描件.pdf", b"%PDF-1.4 ...")
    assert codes(rejected(buf.getvalue(), "材料.zip")) == ["not_a_table"]


def test_zip_with_too_many_members():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            zf.writestr(f"{i}.csv", "a,b\n")
    assert codes(rejected(buf.getvalue(), "a.zip", Limits(max_zip_members=2))) == ["too_many_files"]


def test_zip_member_problems_are_reported():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("坏.xlsx", fixture("official.xlsx")[:2000])
    exc = rejected(buf.getvalue(), "a.zip")
    assert codes(exc) == ["unreadable"] and "坏.xlsx" in exc.problems[0].message


def test_password_protected_zip():
    data = bytearray(fixture("gbk_member.zip"))
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.find(sig)
        while pos >= 0:
            data[pos + flag_at] |= 1
            pos = data.find(sig, pos + 1)
    assert codes(rejected(bytes(data), "a.zip")) == ["encrypted"]


def test_xlsm_reads_like_xlsx():
    main = b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
    xlsm = rewrite_zip(fixture("official.xlsx"), {
        "[Content_Types].xml": lambda b: b.replace(main, b"application/vnd.ms-excel.sheet.macroEnabled.main+xml")})
    assert sniff(xlsm) == "xlsx"
    assert read(xlsm, "清单.xlsm", LIMITS).sheets[0].rows[4] == HEADER


def test_formula_cells_give_cached_values():
    sheet = read(fixture("formulas.xlsx"), "f.xlsx", LIMITS).sheets[0]
    assert sheet.rows[1] == (1, 2, 3, "2026年11月3日", dt.datetime(2026, 11, 3))


def test_trailing_empty_rows_and_cells_are_trimmed_and_hidden_sheets_flagged():
    wb = openpyxl.Workbook()
    ws = wb.active
    ws["A1"], ws["C3"] = "甲", "乙"
    ws["F10"].number_format = "yyyy-mm-dd"  # formatted but empty
    ws["G12"] = ""
    old = wb.create_sheet("上月")
    old.sheet_state = "hidden"
    old["A1"] = 1
    buf = io.BytesIO()
    wb.save(buf)
    result = read(buf.getvalue(), "a.xlsx", LIMITS)
    assert result.sheets[0].rows == [("甲",), (), (None, None, "乙")]
    assert [s.hidden for s in result.sheets] == [False, True]


# ---------------------------------------------------------------- refusals

def test_pdf_and_image_are_not_tables():
    assert codes(rejected(b"%PDF-1.4 ...", "清单.pdf")) == ["not_a_table"]
    exc = rejected(b"\x89PNG\r\n\x1a\n....", "照片.png")
    assert codes(exc) == ["not_a_table"] and "照片.png" in exc.problems[0].message


@pytest.mark.parametrize("data", [
    fixture("official.xlsx")[: len(fixture("official.xlsx")) // 2],
    fixture("official.docx")[:-100],
    fixture("official.xls")[:3000],
    random.Random(0).randbytes(4096),
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + random.Random(1).randbytes(4096),
    b"PK\x03\x04" + random.Random(2).randbytes(4096),
])
def test_corrupt_files_are_unreadable(data):
    exc = rejected(data, "损坏.xlsx")
    assert codes(exc) == ["unreadable"]
    assert exc.problems[0].message == ("附件“损坏.xlsx”无法读取，文件可能已损坏或不是受支持的表格格式。"
                                       "请在Excel或WPS中打开该文件，“另存为”.xlsx格式后重新发送。")


def test_size_limit_comes_first():
    exc = rejected(fixture("official.xlsx"), "大.xlsx", Limits(max_attachment_bytes=1000))
    assert codes(exc) == ["too_large"] and "大.xlsx" in exc.problems[0].message


@pytest.mark.parametrize("name", ["official.xlsx", "official.xls", "official_utf8bom.csv", "official.docx", "gbk_member.zip"])
def test_row_and_column_limits(name):
    exc = rejected(fixture(name), name, Limits(max_rows=5))
    assert codes(exc) == ["too_many_rows"] and "超过5行" in exc.problems[0].message and exc.problems[0].sheet
    exc = rejected(fixture(name), name, Limits(max_columns=4))
    assert codes(exc) == ["too_many_columns"] and "超过4列" in exc.problems[0].message
    assert read(fixture(name), name, Limits(max_rows=8, max_columns=5)).sheets


def test_far_away_cell_in_xls_is_contained():
    """calamine would allocate 65536 x 256 cells (about 1 GB): it runs in a memory-capped child."""
    xlwt = pytest.importorskip("xlwt")  # dev dependency: writes the .xls

    wb = xlwt.Workbook()
    ws = wb.add_sheet("s")
    ws.write(0, 0, "a")
    ws.write(65535, 255, "b")
    buf = io.BytesIO()
    wb.save(buf)
    before = peak_rss_mib()
    start = time.perf_counter()
    assert codes(rejected(buf.getvalue(), "a.xls")) == ["unreadable"]
    assert time.perf_counter() - start < 1
    assert peak_rss_mib() - before < 50


def test_xls_child_refuses_foreign_pickles():
    import pickle

    from mailbot.workbook import _Unpickler

    assert _Unpickler(io.BytesIO(pickle.dumps([dt.date(2026, 1, 2), dt.datetime(2026, 1, 2, 3)]))).load()
    with pytest.raises(pickle.UnpicklingError):
        _Unpickler(io.BytesIO(pickle.dumps(Path("/")))).load()


def test_styled_empty_cell_at_xfd_is_cheap():
    """openpyxl hands over 16,384 values for such a row; only the first max_columns are looked at."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    rows = "".join(f'<row r="{i}"><c r="A{i}" t="s"><v>0</v></c><c r="XFD{i}" s="0"/></row>' for i in range(1, 2001))
    data = tiny_xlsx(f"{SST}<si><t>x</t></si></sst>".encode(), f"<worksheet {ns}><sheetData>{rows}</sheetData></worksheet>".encode())
    start = time.perf_counter()
    assert read(data, "a.xlsx", LIMITS).sheets[0].rows == [("x",)] * 2000
    assert time.perf_counter() - start < 2


def test_row_numbered_a_billion_does_not_spin():
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
    sheet = (f'<worksheet {ns}><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c></row>'
             '<row r="1000000000"><c r="A1000000000" t="s"><v>0</v></c></row></sheetData></worksheet>').encode()
    data = tiny_xlsx(f"{SST}<si><t>x</t></si></sst>".encode(), sheet)
    for limits in (LIMITS, Limits(max_rows=10)):
        start = time.perf_counter()
        assert read(data, "a.xlsx", limits).sheets[0].rows == [("x",)]  # beyond Excel's last row: never reached
        assert time.perf_counter() - start < 3
    sheet = sheet.replace(b"1000000000", b"1048576")
    assert codes(rejected(tiny_xlsx(f"{SST}<si><t>x</t></si></sst>".encode(), sheet), "a.xlsx")) == ["too_many_rows"]


# ---------------------------------------------------------------- calamine in this process, and what never reaches it

NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
X_SST = f"{SST}<si><t>x</t></si></sst>".encode()


def sheet_xml(cells: str, attrs: str = "") -> bytes:
    return f"<worksheet {NS}{attrs}><sheetData>{cells}</sheetData></worksheet>".encode()


@pytest.fixture
def no_calamine(monkeypatch):
    """calamine must not be called in this process (a failed Rust allocation aborts it)."""
    import python_calamine

    def refuse(*_a, **_k):
        raise AssertionError("calamine called in-process")
    monkeypatch.setattr(python_calamine.CalamineWorkbook, "from_filelike", refuse)


@pytest.fixture
def no_openpyxl(monkeypatch):
    import openpyxl

    def refuse(*_a, **_k):
        raise AssertionError("openpyxl called")
    monkeypatch.setattr(openpyxl, "load_workbook", refuse)


def test_plain_xlsx_is_read_by_calamine_not_openpyxl(no_openpyxl):
    sheet = read(fixture("official.xlsx"), "清单.xlsx", LIMITS).sheets[0]
    assert sheet.rows[4] == HEADER and sheet.merged == [(1, 1, 1, 5)] and sheet.active
    assert sheet.rows[3] == ("报送日期：", dt.datetime(2026, 11, 20))  # a datetime, as openpyxl gives it


def test_calamine_and_openpyxl_give_the_same_cells(monkeypatch):
    """Every committed .xlsx: the same rows, merges, hidden and active flags from both readers."""
    import mailbot.workbook

    names = sorted(Path(DATA.parent).glob("*/*.xlsx"))
    assert len(names) >= 15
    fast = {p: read(p.read_bytes(), p.name, LIMITS) for p in names}
    monkeypatch.setattr(mailbot.workbook, "_ODD_CELL", re.compile(rb"<"))  # every file looks odd: openpyxl reads it
    for p in names:
        careful = read(p.read_bytes(), p.name, LIMITS)
        assert careful.sheets == fast[p].sheets, p


@pytest.mark.parametrize("why, data, outcome", [
    ("a value at XFD1048576: calamine allocates every cell up to it",
     tiny_xlsx(X_SST, sheet_xml('<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
                                '<row r="1048576"><c r="XFD1048576" t="s"><v>0</v></c></row>')), "too_many_rows"),
    ("a value in the column after the limit", tiny_xlsx(X_SST, sheet_xml('<row r="1"><c r="AY1" t="s"><v>0</v></c></row>')),
     "too_many_columns"),
    ("sharedStrings announcing 4 trillion strings: calamine reserves room for them",
     tiny_xlsx(X_SST.replace(b'uniqueCount="1"', b'uniqueCount="4000000000000"')), [("x",)]),
    ("cells without a position: calamine counts them itself",
     tiny_xlsx(X_SST, sheet_xml('<row><c t="s"><v>0</v></c><c t="s"><v>0</v></c></row>')), [("x", "x")]),
    ("a prefixed cell: calamine reads <x:c> as a cell",
     tiny_xlsx(X_SST, f'<x:worksheet {NS.replace("xmlns", "xmlns:x")}><x:sheetData><x:row r="1"><x:c r="B1" t="s">'
                      '<x:v>0</x:v></x:c></x:row></x:sheetData></x:worksheet>'.encode()), [(None, "x")]),
])
def test_what_calamine_cannot_bound_is_read_by_openpyxl(no_calamine, why, data, outcome):
    if isinstance(outcome, str):
        assert codes(rejected(data, "a.xlsx")) == [outcome], why
    else:
        assert read(data, "a.xlsx", LIMITS).sheets[0].rows == outcome, why


def test_calamine_does_abort_on_those_files():
    """Why the scan exists: in a child with 2 GB of address space, calamine kills the process."""
    far = tiny_xlsx(X_SST, sheet_xml('<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
                                     '<row r="1048576"><c r="XFD1048576" t="s"><v>0</v></c></row>'))
    strings = tiny_xlsx(X_SST.replace(b'uniqueCount="1"', b'uniqueCount="4000000000000"'))
    code = ("import io, resource, sys; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "from python_calamine import CalamineWorkbook\n"
            "CalamineWorkbook.from_filelike(io.BytesIO(sys.stdin.buffer.read())).get_sheet_by_index(0).to_python()")
    for data in (far, strings):
        child = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True, timeout=60)
        assert child.returncode < 0 and b"memory allocation" in child.stderr


def test_a_tag_cut_at_a_chunk_boundary_is_not_odd(no_openpyxl):
    """The scan reads 64 KiB at a time: '<c r="A1"' cut after '<c ' must not send the file to openpyxl."""
    rows = "".join(f'<row r="{i}"><c r="A{i}" t="s"><v>0</v></c></row>' for i in range(1, 20001))
    data = tiny_xlsx(X_SST, sheet_xml(rows))
    assert len(read(data, "a.xlsx", LIMITS).sheets[0].rows) == 20000


# ---------------------------------------------------------------- other programs' formats

CHECKLISTS = DATA.parent / "checklists"


def office_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return buf.getvalue()


OTHER_FORMATS = {  # name -> (bytes, kind, words the message must hold)
    "清单.doc": ((CHECKLISTS / "word97.doc").read_bytes(), "doc", "Word 97-2003文档（.doc）"),
    "清单.odt": (office_zip({"mimetype": b"application/vnd.oasis.opendocument.text", "content.xml": b"<x/>"}), "odt",
                "OpenDocument文本文档"),
    "汇报.pptx": (office_zip({"[Content_Types].xml": b"<x/>", "ppt/presentation.xml": b"<x/>"}), "presentation", "演示文稿"),
    "清单.rar": (b"Rar!\x1a\x07\x01\x00" + bytes(64), "archive", "RAR或7z格式的压缩包"),
    "清单.7z": (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(64), "archive", "RAR或7z格式的压缩包"),
    "扫描件.pdf": (b"%PDF-1.4 ...", "pdf", "PDF文件"),
    "照片.bmp": (b"BM" + bytes(64), "image", "是图片"),
    "照片.tif": (b"II*\x00" + bytes(64), "image", "是图片"),
}


@pytest.mark.parametrize("name", OTHER_FORMATS)
def test_a_healthy_file_of_another_kind_is_named_never_called_damaged(name):
    data, kind, words = OTHER_FORMATS[name]
    assert sniff(data) == kind
    [problem] = rejected(data, name).problems
    assert problem.code == "not_a_table" and words in problem.message and name in problem.message
    assert "损坏" not in problem.message


def test_ods_and_wps_et_are_read(no_openpyxl):
    ods = read((CHECKLISTS / "official.ods").read_bytes(), "清单.ods", LIMITS)
    assert ods.kind == "ods" and [s.name for s in ods.sheets] == ["情况清单", "填报说明"]
    assert [s.active for s in ods.sheets] == [True, False]  # settings.xml names the active table
    assert ods.sheets[0].rows[3] == ("报送日期：", dt.datetime(2026, 11, 20))
    et = read((CHECKLISTS / "official.et").read_bytes(), "清单.et", LIMITS)
    assert et.kind == "xls" and et.sheets[0].rows[2] == HEADER


def test_ods_is_held_to_the_zip_limits_and_refuses_a_dtd():
    ods = (CHECKLISTS / "official.ods").read_bytes()
    evil = rewrite_zip(ods, {"content.xml": lambda b: b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                             + b.split(b"?>", 1)[1]})
    assert sniff(evil) == "ods" and codes(rejected(evil, "a.ods")) == ["unreadable"]
    assert codes(rejected(ods, "a.ods", Limits(max_uncompressed_bytes=10_000))) == ["zip_bomb"]
    assert codes(rejected(ods, "a.ods", Limits(max_rows=5))) == ["too_many_rows"]


def tnef_of(files):
    sys.path.insert(0, str(DATA.parent))
    from make_checklists import tnef

    return tnef(files)


def test_winmail_dat_is_unwrapped_like_a_zip():
    from mailbot.workbook import tnef_files

    data = (CHECKLISTS / "winmail.dat").read_bytes()
    assert sniff(data) == "tnef"
    assert [n for n, _ in tnef_files(data, "winmail.dat", LIMITS)] == ["市场监管局2026年11月情况清单.xlsx", "图片1.png"]
    book = read(data, "winmail.dat", LIMITS)
    assert book.kind == "tnef" and [s.name for s in book.sheets] == [
        "市场监管局2026年11月情况清单.xlsx:情况清单", "市场监管局2026年11月情况清单.xlsx:填报说明"]


def test_winmail_dat_file_names_in_gbk_and_its_limits():
    from mailbot.workbook import tnef_files

    data = tnef_of([("报表.xlsx", fixture("official.xlsx"))])
    without_long_name = data[: data.rindex(struct.pack("<BI", 2, 0x00069005))]  # the MAPI long name dropped
    assert [n for n, _ in tnef_files(without_long_name, "winmail.dat", LIMITS)] == ["报表~1.XLS"]  # the GBK 8.3 title
    assert codes(rejected(data[:-7], "winmail.dat")) == ["unreadable"]  # cut short
    many = tnef_of([(f"{i}.csv", b"a,b\n") for i in range(3)])
    assert codes(rejected(many, "winmail.dat", Limits(max_zip_members=2))) == ["too_many_files"]
    assert codes(rejected(tnef_of([("图.png", b"\x89PNG\r\n\x1a\n")]), "winmail.dat")) == ["not_a_table"]


# ---------------------------------------------------------------- zip bombs

def test_zip_bomb_with_honest_header():
    raw, crc = zeros_stream(1024)  # 1 GiB of zeros, about 1 MB compressed
    data = xlsx_with(raw, crc, 1 << 30, 1 << 30)
    assert len(data) < 2 << 20 and sniff(data) == "xlsx"
    before = peak_rss_mib()
    start = time.perf_counter()
    exc = rejected(data, "炸弹.xlsx")
    assert time.perf_counter() - start < 0.5
    assert peak_rss_mib() - before < 50
    assert codes(exc) == ["zip_bomb"] and exc.problems[0].message.startswith("附件“炸弹.xlsx”解压后体积异常")


@pytest.mark.parametrize("declared", [10_000, 50 << 20])
def test_zip_bomb_with_lying_header(declared):
    raw, _ = zeros_stream(1024)
    data = xlsx_with(raw, 0, declared, declared)  # central directory says small, and the ratio looks sane
    before = peak_rss_mib()
    start = time.perf_counter()
    assert codes(rejected(data, "炸弹.xlsx")) == ["zip_bomb"]
    assert time.perf_counter() - start < 0.5
    assert peak_rss_mib() - before < 50


def test_zip_bomb_inside_an_archive():
    raw, crc = zeros_stream(256)
    data = build_zip([("清单.csv", raw, crc, 256 << 20, 256 << 20)])
    assert codes(rejected(data, "a.zip")) == ["zip_bomb"]
    lying = build_zip([("清单.csv", raw, crc, 1000, 1000)])
    assert codes(rejected(lying, "a.zip")) == ["zip_bomb"]


def test_high_ratio_alone_is_a_bomb():
    raw, crc = zeros_stream(8)  # 8 MiB: within the size budget, ratio about 1000
    assert codes(rejected(xlsx_with(raw, crc, 8 << 20, 8 << 20), "a.xlsx")) == ["zip_bomb"]


# ---------------------------------------------------------------- XML attacks

@pytest.mark.parametrize("payload", [XXE, LAUGHS])
def test_xml_entities_are_unreadable(payload):
    exc = rejected(tiny_xlsx(payload), "恶意.xlsx")
    assert codes(exc) == ["unreadable"]
    assert "root:" not in str(exc)


@pytest.mark.parametrize("payload", [XXE, LAUGHS])
def test_openpyxl_alone_refuses_entities(payload):
    """The second line of defence, should our DOCTYPE scan ever miss: defusedxml inside openpyxl."""
    from defusedxml import DefusedXmlException

    with pytest.raises(ValueError) as info:  # openpyxl wraps it in its own ValueError
        wb = openpyxl.load_workbook(io.BytesIO(tiny_xlsx(payload)), read_only=True)
        list(wb.worksheets[0].values)
    assert isinstance(info.value.__cause__, DefusedXmlException)


def test_tiny_xlsx_helper_is_readable():
    assert read(tiny_xlsx(f"{SST}<si><t>单位：</t></si></sst>".encode()), "a.xlsx", LIMITS).sheets[0].rows == [("单位：",)]


def test_import_refuses_openpyxl_without_defusedxml():
    code = "import mailbot.workbook"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"OPENPYXL_DEFUSEDXML": "False", "PATH": ""}, cwd=Path(__file__).parent.parent)
    assert proc.returncode != 0 and "ImportError" in proc.stderr and "defusedxml" in proc.stderr


# ---------------------------------------------------------------- properties

CELL = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=20),
    st.integers(-10**12, 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.datetimes(min_value=dt.datetime(1901, 1, 1), max_value=dt.datetime(2100, 1, 1)),
)
TABLE = st.lists(st.lists(CELL, max_size=8), max_size=12)
SMALL = Limits(max_rows=10, max_columns=6)


def outcome(data: bytes, filename: str, limits: Limits):
    try:
        return read(data, filename, limits)
    except Rejected as exc:
        assert exc.problems and all(p.message for p in exc.problems)
        return exc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TABLE, st.sampled_from([LIMITS, SMALL]))
def test_any_xlsx_reads_or_is_rejected(table, limits):
    wb = openpyxl.Workbook()
    for row in table:
        wb.active.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    result = outcome(buf.getvalue(), "a.xlsx", limits)
    if isinstance(result, Workbook):
        rows = result.sheets[0].rows
        assert len(rows) <= limits.max_rows and all(len(r) <= limits.max_columns for r in rows)
        assert not rows or rows[-1]


@settings(max_examples=60, deadline=None)
@given(TABLE, st.sampled_from([",", "\t", ";"]), st.sampled_from(["utf-8-sig", "utf-8", "gb18030", "utf-16"]))
def test_any_csv_reads_or_is_rejected(table, delimiter, encoding):
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows([["" if v is None else str(v) for v in row] for row in table])
    try:
        data = buf.getvalue().encode(encoding)
    except UnicodeEncodeError:
        return
    outcome(data, "a.csv", SMALL)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["official.xlsx", "official.xls", "official.docx", "gbk_member.zip", "official_gb18030.csv"]),
       st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8))
def test_any_damaged_file_reads_or_is_rejected(name, flips):
    data = bytearray(fixture(name))
    for pos, value in flips:
        data[pos % len(data)] = value
    outcome(bytes(data), name, LIMITS)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_read_or_are_rejected(data):
    outcome(data, "x", LIMITS)


@pytest.mark.parametrize("ref, beyond", [
    ("AX1", False), ("AY1", True), ("ay1", True), ("ZZ1", True), ("AAA1", True), ("E50000", False),
    ("E50001", True), ("a100000", True), ("XFD1048576", True), ("A1", False), ("Z49999", False),
])
def test_the_scan_knows_a_reference_beyond_the_limits(ref, beyond):
    from mailbot.workbook import _beyond

    assert bool(_beyond(50_000, 50).search(f'<c r="{ref}" t="s">'.encode())) is beyond
