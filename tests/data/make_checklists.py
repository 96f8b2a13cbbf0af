"""Write the golden checklists under tests/data/checklists/ (run: .venv/bin/python tests/data/make_checklists.py).

One file per layout variant departments really send and per format (xlsx, xls, csv, docx, zip,
.eml). Each sits beside `<name>.expected.json`, written and checked by hand (see
tests/test_checklist.py); this script only writes the inputs. Bytes are deterministic: zip
timestamps, document dates and MIME boundaries are pinned.
"""
from __future__ import annotations

import csv
import datetime as dt
import email.policy
import io
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from email.message import EmailMessage
from pathlib import Path

import openpyxl

sys.path.insert(0, str(Path(__file__).parent))
from make_workbooks import HEADER, normalise_zip, official_docx, official_xls  # noqa: E402

from mailbot.template import build_template, instructions  # noqa: E402

OUT = Path(__file__).parent / "checklists"

TITLE = "行政管理事项中使用信用记录和信用报告的情况清单"
DEPT = "赞皇县市场监督管理局"
PERSON = "张三"
SENT = dt.datetime(2026, 11, 20)
NIL = "本月无使用信用记录和信用报告情况"
FUYUAN = "赞皇县福源食品有限公司"
USCC = "91350100M000100Y43"  # valid check digit (domain.md)
ROWS = [  # entity, matter, date, usage, measure
    [f"{FUYUAN}（{USCC}）", "食品经营许可证核发", dt.datetime(2026, 11, 3), "通过信用中国查询，无失信记录", "容缺受理"],
    ["石家庄恒达建筑工程有限公司", "政府采购供应商资格审查", "2026.11.5",
     "查询中国执行信息公开网，列入失信被执行人名单", "限制参与政府采购"],
    ["李四", "个体工商户登记", "2026年11月12日", "查询信用石家庄，无不良记录", "无"],
]
FIXED = (2026, 1, 1, 0, 0, 0)


# ---------------------------------------------------------------- helpers

def _save(wb) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return normalise_zip(buf.getvalue())


def xlsx(rows: list[list], merges=(), dates=(), sheet="清单", before=(), after=()) -> bytes:
    """One sheet from `rows` (row 1 first); `dates` are cells to format as dates; `before`/`after`
    are (title, rows, hidden) sheets placed around it."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, body, hidden in before:
        _fill(wb.create_sheet(title), body).sheet_state = "hidden" if hidden else "visible"
    ws = _fill(wb.create_sheet(sheet), rows)
    for ref in merges:
        ws.merge_cells(ref)
    for ref in dates:
        ws[ref].number_format = "yyyy-mm-dd"
    for title, body, hidden in after:
        _fill(wb.create_sheet(title), body).sheet_state = "hidden" if hidden else "visible"
    wb.active = wb.sheetnames.index(sheet)
    return _save(wb)


def _fill(ws, rows):
    for row in rows:
        ws.append(row)
    return ws


def _dated(rows):
    return [[v.strftime("%Y-%m-%d") if isinstance(v, dt.datetime) else v for v in row] for row in rows]


def official_rows(header=HEADER, rows=ROWS) -> list[list]:
    """Title, the three header fields split over A/B, the header on row 5, then `rows`."""
    return [[TITLE], ["单位：", DEPT], ["报送人：", PERSON], ["报送日期：", SENT], list(header), *map(list, rows)]


# ---------------------------------------------------------------- layout variants (xlsx)

def template_filled() -> bytes:
    """The official template mailbot sends out, filled in: header fields in B2:C4, rows from row 7."""
    wb = openpyxl.load_workbook(io.BytesIO(build_template("赞皇县社会信用体系建设领导小组办公室", "zhxxyt@126.com")))
    ws = wb["情况清单"]
    ws["B2"], ws["B3"], ws["B4"] = DEPT, PERSON, SENT
    for i, row in enumerate(ROWS):
        for j, value in enumerate(row):
            ws.cell(7 + i, 1 + j, value)
    return _save(wb)


def instructions_first() -> bytes:
    """填报说明 first (with a sample table), an old month hidden, the real table on the third sheet."""
    sample = [["填写示例"], list(HEADER), ["某某有限公司", "某某许可", "2026-01-05", "经信用中国查询，无失信记录", "无"]]
    old = official_rows(rows=[["赞皇县旧账商贸有限公司", "食品经营许可证核发", "2026年10月9日", "经信用中国查询，无失信记录", "无"]])
    return xlsx(official_rows(), merges=["A1:E1"], dates=["B4", "C6"], sheet="11月",
                before=[("填报说明", [[line] for line in instructions()] + sample, False), ("10月", old, True)])


def header_one_cell() -> bytes:
    """All three header fields in one merged cell; 序号 first; half-width parentheses, line breaks and
    a spaced 日 期 in the header; extra 统一社会信用代码 and 备注 columns."""
    header = ["序号", "市场主体(自然人)名称", "统一社会信用代码", "行政管理\n事项名称", "日 期",
              "使用信用记录或\n报告情况", "使用的激励或\n惩戒措施", "备注"]
    rows = [
        [1, FUYUAN, USCC, ROWS[0][1], ROWS[0][2], ROWS[0][3], ROWS[0][4], "已办结"],
        [2, ROWS[1][0], None, *ROWS[1][1:]],
        [3, ROWS[2][0], None, *ROWS[2][1:], None],
    ]
    one = f"单位：{DEPT}　　报送人：{PERSON}　　报送日期：2026年11月20日"
    return xlsx([[TITLE], [one], header, *rows], merges=["A1:H1", "A2:H2"], dates=["E4"])


def short_names_reordered() -> bytes:
    """`单位：XX局` in one cell per row, 报送日期 in the next (merged) cell; short column names in
    another order."""
    header = ["日期", "事项名称", "市场主体名称", "采取的激励惩戒措施", "信用记录或报告使用情况"]
    order = [2, 1, 0, 4, 3]
    rows = [[row[i] for i in order] for row in ROWS]
    return xlsx([[TITLE], [f"单位：{DEPT}"], [f"报送人：{PERSON}"], ["报送日期：", SENT], header, *rows],
                merges=["A1:E1", "B4:C4"], dates=["B4", "A6"])


def labels_next_cell() -> bytes:
    """Labels without a colon or with （盖章）, merged over A:B, values in the merged C:E; spaced
    header texts; the date as typed text."""
    header = ["市 场 主 体\n（自然人）\n名 称", "行政管理事项名称", "日　期", "使用信用记录或报告情况", "使用的激励或惩戒措施"]
    rows = [[TITLE], ["填报单位（盖章）", None, DEPT], ["报 送 人", None, PERSON], ["报送日期：", None, "2026.11.20"],
            header, *_dated(ROWS)]
    return xlsx(rows, merges=["A1:E1", "A2:B2", "C2:E2", "A3:B3", "C3:E3", "A4:B4", "C4:E4"])


def footer_notes() -> bytes:
    """A 1-5 numbering row under the header, blank rows inside and after the data, 注/备注/说明 rows,
    and 报送人/联系电话 in a footer row below the table (not above it)."""
    rows = [[TITLE], ["单位：", DEPT], ["报送日期：", SENT], [], list(HEADER), [1, 2, 3, 4, 5],
            ROWS[0], ROWS[1], [], ROWS[2], [], [],
            ["注：1.本表每月25日前报送；2.日期请填写完整的年、月、日。"],
            ["备注：福源公司已补充材料。"], ["说明：无"],
            ["报送人：", PERSON, None, "联系电话：", "0311-84225051"]]
    return xlsx(rows, merges=["A1:E1", "A13:E13", "A14:E14", "A15:E15"], dates=["B3", "C7"])


def two_row_header() -> bytes:
    """The header over two rows: the first three titles merged down over both, a group title merged
    across the last two columns above their own titles; Alt+Enter breaks and spaces inside titles."""
    rows = [[TITLE], ["单位：", DEPT], ["报送人：", PERSON], ["报送日期：", SENT],
            ["市场主体（自然人）\n名称", "行政管理\n事项 名称", "日  期", "信用记录和信用报告使用情况", None],
            [None, None, None, "使用信用记录\n或报告情况", "使用的激励或\n惩戒措施"], *ROWS]
    return xlsx(rows, merges=["A1:E1", "A5:A6", "B5:B6", "C5:C6", "D5:E5"], dates=["B4", "C7"])


OCTOBER = [  # rows of October, for the workbooks kept for the whole year
    ["赞皇县旧账商贸有限公司", "食品经营许可证核发", dt.datetime(2026, 10, 9), "经信用中国查询，无失信记录", "无"],
    ["赞皇县秋实农业有限公司", "政府采购供应商资格审查", "2026年10月21日", "经信用中国查询，无失信记录", "告知承诺"],
]


def _year_book(months: dict[str, list], active: str) -> bytes:
    """One sheet per month, each the official layout with its own 报送日期; `active` open when saved."""
    wb = openpyxl.Workbook()
    wb.remove(wb.active)
    for title, rows in months.items():
        month = int(title.rstrip("月"))
        sent = dt.datetime(2026, month, 20) if rows else "  年  月  日"
        ws = _fill(wb.create_sheet(title), official_rows(rows=rows)[:3] + [["报送日期：", sent], list(HEADER), *rows])
        ws.merge_cells("A1:E1")
        ws["B4"].number_format = "yyyy-mm-dd"
        for r in range(6, 6 + len(rows)):
            ws.cell(r, 3).number_format = "yyyy-mm-dd"
    wb.active = wb.sheetnames.index(active)
    return _save(wb)


def year_sheets() -> bytes:
    """The workbook kept for the year: 10月 and 11月 filled, 12月 prepared but empty; saved while 10月 was open."""
    return _year_book({"10月": OCTOBER, "11月": ROWS, "12月": []}, active="10月")


def year_late() -> bytes:
    """October filed late in November: 10月 filled and open, 11月 prepared but still empty."""
    return _year_book({"10月": OCTOBER, "11月": []}, active="10月")


def october_only() -> bytes:
    """Last month's file sent again: one sheet, named 10月, with October's rows."""
    return _year_book({"10月": OCTOBER}, active="10月")


def codes_spaced() -> bytes:
    """Codes as people type them: in groups with ASCII or full-width spaces, full-width characters,
    lower case; in the name cell and in a 统一社会信用代码（身份证号） column. Rows 9 and 10 are wrong."""
    header = [*HEADER[:1], "统一社会信用代码（身份证号）", *HEADER[1:]]
    rest = ROWS[0][1:]
    rows = [
        ["赞皇县福源食品有限公司（9135 0100 M000 100Y43）", None, *rest],
        ["北京某科技有限公司", "９１１１　００００　８０２１　００４３３ｂ", *rest],
        ["李四", "1101 0519 4912 3100 2x", *rest],
        ["赞皇县丙商贸有限公司（9135 0100 M000 100Y44）", None, *rest],
        ["王五", "110105 19490230 0021", *rest],
    ]
    return xlsx(official_rows(header, rows), merges=["A1:F1"], dates=["B4", "D6", "D7", "D8", "D9", "D10"])


def other_months() -> bytes:
    """One sheet kept all year: September's and October's rows above November's."""
    older = [["赞皇县九月商贸有限公司", "食品经营许可证核发", dt.datetime(2026, 9, 15), "经信用中国查询，无失信记录", "无"],
             *OCTOBER, [OCTOBER[0][0], "招标投标资格审查", "2026.10.28", "经信用中国查询，无失信记录", "无"]]
    return xlsx(official_rows(rows=older + ROWS), merges=["A1:E1"], dates=["B4", "C6", "C7", "C10"])


def nil_merged() -> bytes:
    """Nothing this month: one merged row under the header."""
    return xlsx(official_rows(rows=[[NIL]]), merges=["A1:E1", "A6:E6"], dates=["B4"])


def nil_wu() -> bytes:
    """Nothing this month: 无 in every column."""
    return xlsx(official_rows(rows=[["无"] * 5]), merges=["A1:E1"], dates=["B4"])


def nil_seq_column() -> bytes:
    """A 序号 column, the sentence merged over it and the five fields, pre-numbered empty rows below."""
    header = ["序号", *HEADER]
    rows = [[TITLE], [f"单位：{DEPT}"], [f"报送人：{PERSON}"], ["报送日期：2026年11月20日"], header,
            ["本月未使用信用记录和信用报告。"], *[[n] for n in range(2, 12)]]
    return xlsx(rows, merges=["A1:F1", "A6:F6"])


def nil_above_table() -> bytes:
    """The nil sentence written between the header fields and an empty table."""
    rows = official_rows(rows=[])
    rows.insert(4, ["本单位2026年11月无使用信用记录和信用报告情况。"])
    return xlsx(rows, merges=["A1:E1", "A5:E5"], dates=["B4"])


def formulas() -> bytes:
    """Formula cells carrying the values Excel cached (openpyxl writes none: patched in)."""
    header = ["序号", *HEADER]
    rows = [[TITLE], ["单位：", DEPT], ["报送人：", PERSON], ["报送日期：", "=DATE(2026,11,20)"], header,
            ["=ROW()-5", f'="{FUYUAN}"', ROWS[0][1], "=DATE(2026,11,3)", ROWS[0][3], '=IF(1>0,"容缺受理","无")'],
            ["=ROW()-5", *ROWS[2]]]
    cached = {"B4": 46346, "A6": 1, "B6": FUYUAN, "D6": 46329, "F6": "容缺受理", "A7": 2}

    def cache(xml: bytes) -> bytes:
        for ref, value in cached.items():
            pattern = rf'<c r="{ref}"([^>]*)><f>([^<]*)</f><v\s*/?>(?:</v>)?'.encode()
            kind = b' t="str"' if isinstance(value, str) else b""
            new = rb'<c r="' + ref.encode() + rb'"\1' + kind + rb"><f>\2</f><v>" + str(value).encode() + b"</v>"
            xml, n = re.subn(pattern, new, xml)
            assert n == 1, ref
        return xml

    data = xlsx(rows, merges=["A1:F1"], dates=["B4", "D6"])
    return normalise_zip(data, {"xl/worksheets/sheet1.xml": cache})


def missing_column() -> bytes:
    """Four of the five columns: the 措施 column is missing."""
    return xlsx(official_rows(HEADER[:4], [r[:4] for r in ROWS]), merges=["A1:E1"], dates=["B4", "C6"])


def wrong_template() -> bytes:
    """Some other table (a contact list): none of the checklist's columns."""
    return xlsx([["联系人名单"], ["姓名", "联系电话", "地址"], [PERSON, "0311-84225051", "赞皇县"]])


def row_problems() -> bytes:
    """The template layout with one mistake per row, for the problem locations."""
    bad_uscc = USCC[:-1] + "4"
    rows = [
        ROWS[0],                                                              # 6: fine
        ["赞皇县甲商贸有限公司", "食品经营许可证核发", 9.2, "经信用中国查询，无失信记录", "无"],  # 7: 9.20 typed
        ["赞皇县乙商贸有限公司", None, "2026-11-06", "经信用中国查询，无失信记录", "无"],      # 8: matter empty
        [f"赞皇县丙商贸有限公司（{bad_uscc}）", "食品经营许可证核发", "2026-11-07", "经信用中国查询，无失信记录", "无"],
        ["赞皇县丁商贸有限公司", "食品经营许可证核发", "2026-10-28", "经信用中国查询，无失信记录", "无"],  # 10: October
        ["赞皇县戊商贸有限公司", "食品经营许可证核发", "2026年11月31日", "经信用中国查询，无失信记录", "无"],
        ROWS[0],                                                              # 12: same as row 6
        ["赞皇县己商贸有限公司", "食品经营许可证核发", "2026-11-28", "经信用中国查询，无失信记录", "无"],  # 13: future
        ["赞皇县庚商贸有限公司", "食品经营许可证核发", "2026-11-09", "经信用中国查询，无失信记录", None],  # 14
    ]
    return xlsx(official_rows(rows=rows), merges=["A1:E1"], dates=["B4", "C6", "C12"])


# ---------------------------------------------------------------- other formats

def _xls(rows: list[list], merges=()) -> bytes:
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("清单")
    date = xlwt.easyxf(num_format_str="yyyy-mm-dd")
    merged = {}
    for ref in merges:  # "A1:E1" -> write_merge
        from openpyxl.utils.cell import range_boundaries
        c0, r0, c1, r1 = range_boundaries(ref)
        merged[(r0 - 1, c0 - 1)] = (r1 - 1, c1 - 1)
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            if value is None:
                continue
            style = date if isinstance(value, dt.datetime) else xlwt.Style.default_style
            if (r, c) in merged:
                r1, c1 = merged[(r, c)]
                ws.write_merge(r, r1, c, c1, value, style)
            else:
                ws.write(r, c, value, style)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def variants_xls() -> bytes:
    """Legacy .xls: header fields in one cell, 序号, columns reordered, a blank row and a 注 row."""
    header = ["序号", "行政管理事项名称", "市场主体（自然人）名称", "使用信用记录或报告情况", "使用的激励或惩戒措施", "日期"]
    rows = [[i + 1, r[1], r[0], r[3], r[4], r[2]] for i, r in enumerate(ROWS)]
    one = f"单位：{DEPT}  报送人：{PERSON}  报送日期：2026-11-20"
    return _xls([[TITLE], [one], header, rows[0], rows[1], [], rows[2], ["注：本表每月25日前报送。"]],
                merges=["A1:F1", "A2:F2", "A8:F8"])


def nil_merged_xls() -> bytes:
    return _xls(official_rows(rows=[[NIL]]), merges=["A1:E1", "A6:E6"])


def _csv(rows: list[list], delimiter=",") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(_dated(rows))
    return buf.getvalue()


def official_csv() -> bytes:
    return b"\xef\xbb\xbf" + _csv(official_rows()).encode("utf-8")


def variants_csv() -> bytes:
    """GB18030 as saved by Excel on Chinese Windows: 单位 and 报送日期 in one cell, 序号, reordered,
    blank lines, a 注 line and 报送人/联系电话 in a footer line."""
    header = ["序号", "日期", "市场主体（自然人）名称", "行政管理事项名称", "使用的激励或惩戒措施", "使用信用记录或报告情况"]
    rows = [[i + 1, r[2], r[0], r[1], r[4], r[3]] for i, r in enumerate(ROWS)]
    lines = [[TITLE], [f"单位：{DEPT}    报送日期：2026年11月20日"], header, *rows, [], ["注：本表每月25日前报送。"],
             ["报送人：张三", "联系电话：0311-84225051"]]
    return _csv(lines).encode("gb18030")


def nil_csv() -> bytes:
    return _csv(official_rows(rows=[["本月无使用信用记录和信用报告情况。"]])).encode("utf-8")


def _docx(build) -> bytes:
    import docx

    doc = docx.Document()
    doc.core_properties.created = doc.core_properties.modified = dt.datetime(2026, 1, 1)
    build(doc)
    buf = io.BytesIO()
    doc.save(buf)
    return normalise_zip(buf.getvalue())


def header_in_table_docx() -> bytes:
    """Word: title and header fields inside the table's first rows, a 序号 column."""
    def build(doc):
        header = ["序号", *HEADER]
        table = doc.add_table(rows=3 + 1 + len(ROWS), cols=6)
        table.rows[0].cells[0].merge(table.rows[0].cells[5]).text = TITLE
        table.rows[1].cells[0].text = "单位："
        table.rows[1].cells[1].merge(table.rows[1].cells[2]).text = DEPT
        table.rows[1].cells[3].text = "报送人："
        table.rows[1].cells[4].merge(table.rows[1].cells[5]).text = PERSON
        table.rows[2].cells[0].text = "报送日期："
        table.rows[2].cells[1].merge(table.rows[2].cells[2]).text = "2026年11月20日"
        for cell, title in zip(table.rows[3].cells, header, strict=True):
            cell.text = title
        for i, row in enumerate(_dated(ROWS)):
            for cell, value in zip(table.rows[4 + i].cells, [str(i + 1), *row], strict=True):
                cell.text = value
    return _docx(build)


def nil_letter_docx() -> bytes:
    """Word, no table: a short letter saying nothing happened this month, with the header fields."""
    def build(doc):
        doc.add_paragraph("关于2026年11月信用记录和信用报告使用情况的说明")
        doc.add_paragraph("县信用办：")
        doc.add_paragraph("经核查，我局2026年11月未发生使用信用记录和信用报告的情况。")
        doc.add_paragraph("特此说明。")
        doc.add_paragraph(f"单位：{DEPT}")
        doc.add_paragraph(f"报送人：{PERSON}")
        doc.add_paragraph("报送日期：2026年11月20日")
    return _docx(build)


def nil_table_docx() -> bytes:
    """Word: header paragraphs, the table with one merged row saying nothing happened."""
    def build(doc):
        doc.add_paragraph(TITLE)
        doc.add_paragraph(f"单位：{DEPT}    报送人：{PERSON}    报送日期：2026年11月20日")
        table = doc.add_table(rows=2, cols=5)
        for cell, title in zip(table.rows[0].cells, HEADER, strict=True):
            cell.text = title
        table.rows[1].cells[0].merge(table.rows[1].cells[4]).text = NIL
    return _docx(build)


def zipped() -> bytes:
    """A zip holding the filled template and the stamped scan (盖章扫描件): the scan is skipped."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("盖章扫描件.pdf", FIXED), PDF, zipfile.ZIP_DEFLATED)
        zf.writestr(zipfile.ZipInfo("情况清单.xlsx", FIXED), template_filled(), zipfile.ZIP_DEFLATED)
    return buf.getvalue()


# ---------------------------------------------------------------- formats of other programs

def _soffice(data: bytes, suffix: str, target: str) -> bytes:
    """`data` (a file ending in `suffix`) converted by LibreOffice, as a department's WPS or
    LibreOffice saves it: needs `soffice` on PATH (Debian's libreoffice) to regenerate."""
    if not shutil.which("soffice"):
        raise SystemExit("soffice (LibreOffice) is needed to write the .ods and .doc fixtures")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"in{suffix}"
        src.write_bytes(data)
        subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{tmp}/profile", "--convert-to", target,
                        "--outdir", tmp, str(src)], check=True, capture_output=True, timeout=120)
        return (Path(tmp) / f"in.{target.split(':')[0]}").read_bytes()


def _pin_odf(data: bytes, settings: bytes | None = None) -> bytes:
    """An OpenDocument zip with pinned dates and the stored `mimetype` first, as ODF requires."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "meta.xml":
                body = re.sub(rb"(<(?:meta:creation-date|dc:date)>)[^<]*", rb"\g<1>2026-01-01T00:00:00", body)
                body = re.sub(rb"<meta:generator>[^<]*</meta:generator>", b"", body)
            if info.filename == "settings.xml" and settings is not None:
                body = settings
            if info.filename.startswith("Thumbnails/"):
                continue
            kind = zipfile.ZIP_STORED if info.filename == "mimetype" else zipfile.ZIP_DEFLATED
            dst.writestr(zipfile.ZipInfo(info.filename, FIXED), body, kind)
    return out.getvalue()


ODS_SETTINGS = ('<?xml version="1.0" encoding="UTF-8"?><office:document-settings '
                'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
                'xmlns:config="urn:oasis:names:tc:opendocument:xmlns:config:1.0" office:version="1.3"><office:settings>'
                '<config:config-item-set config:name="ooo:view-settings"><config:config-item-map-indexed config:name="Views">'
                '<config:config-item-map-entry><config:config-item config:name="ViewId" config:type="string">view1'
                '</config:config-item><config:config-item config:name="ActiveTable" config:type="string">情况清单'
                '</config:config-item></config:config-item-map-entry></config:config-item-map-indexed>'
                '</config:config-item-set></office:settings></office:document-settings>').encode()


def official_ods() -> bytes:
    """The filled template saved as OpenDocument (LibreOffice; WPS saves the same format)."""
    return _pin_odf(_soffice(template_filled(), ".xlsx", "ods"), ODS_SETTINGS)


def official_et() -> bytes:
    """WPS表格's own .et: the BIFF8 workbook of an .xls in an OLE file (written here by xlwt: WPS
    itself does not run on Debian), with the header fields in one cell."""
    return _xls([[TITLE], [f"单位：{DEPT}  报送人：{PERSON}  报送日期：2026年11月20日"], list(HEADER), *ROWS],
                merges=["A1:E1", "A2:E2"])


def word97_doc() -> bytes:
    """A healthy Word 97-2003 document (the official layout as a Word table): not a format we read."""
    return _soffice(official_docx(), ".docx", "doc:MS Word 97")


# TNEF (MS-OXTNEF): a signature, then attributes: level, id, length, data, 16-bit sum of the data.
def _tnef_attribute(level: int, attribute: int, data: bytes) -> bytes:
    return struct.pack("<BII", level, attribute, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def tnef(files: list[tuple[str, bytes]], codepage: int = 936) -> bytes:
    """winmail.dat as Outlook on Chinese Windows writes it: each file's 8.3 title in the ANSI code
    page (GBK) and its long name as a Unicode MAPI property."""
    out = struct.pack("<IH", 0x223E9F78, 0x2A1C)
    out += _tnef_attribute(1, 0x00089006, struct.pack("<I", 0x00010000))  # attTnefVersion
    out += _tnef_attribute(1, 0x00069007, struct.pack("<II", codepage, 0))  # attOemCodepage
    out += _tnef_attribute(1, 0x00078008, b"IPM.Microsoft Mail.Note\x00")  # attMessageClass
    for i, (name, data) in enumerate(files, 1):
        stem, _, ext = name.rpartition(".")
        short = f"{stem[:3]}~{i}.{ext[:3]}".upper()
        long = name.encode("utf-16-le") + b"\x00\x00"
        mapi = struct.pack("<IHHII", 1, 0x001F, 0x3707, 1, len(long)) + long + bytes(-len(long) % 4)
        out += _tnef_attribute(2, 0x00069002, struct.pack("<HIHHI", 1, 0xFFFFFFFF, 0xFFFF, 0xFFFF, 0))  # attAttachRendData
        out += _tnef_attribute(2, 0x00018010, short.encode("gbk") + b"\x00")  # attAttachTitle
        out += _tnef_attribute(2, 0x0006800F, data)  # attAttachData
        out += _tnef_attribute(2, 0x00069005, mapi)  # attAttachment: PR_ATTACH_LONG_FILENAME
    return out


def winmail_dat() -> bytes:
    """Outlook's wrapper holding the filled template and a picture."""
    return tnef([("市场监管局2026年11月情况清单.xlsx", template_filled()), ("图片1.png", b"\x89PNG\r\n\x1a\n" + bytes(32))])


PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
XLSX = ("application", "vnd.openxmlformats-officedocument.spreadsheetml.sheet")


def _mail(sender: str, subject: str, body: str, message_id: str, date: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "office@example.test"
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg


def _pin_boundaries(msg: EmailMessage) -> bytes:
    for i, part in enumerate(msg.walk()):
        if part.get_content_maintype() == "multipart":
            part.set_boundary(f"==mailbot-fixture-{i}==")
    return msg.as_bytes(policy=email.policy.SMTP)


def forwarded_eml() -> bytes:
    """The clerk's mail, forwarded by the department's registered address as message/rfc822."""
    inner = _mail("张三 <zhangsan_clerk@qq.com>", "2026年11月信用记录使用情况清单", "附件为本月情况清单。",
                  "<inner-1@qq.com>", "Thu, 19 Nov 2026 16:00:00 +0800")
    inner.add_attachment(header_one_cell(), maintype=XLSX[0], subtype=XLSX[1], filename="市场监管局11月清单.xlsx")
    outer = _mail("scjgj@example.gov.cn", "转发：2026年11月信用记录使用情况清单", "转发本单位情况清单，请查收。",
                  "<forward-1@example.gov.cn>", "Fri, 20 Nov 2026 10:00:00 +0800")
    outer.add_attachment(inner)
    return _pin_boundaries(outer)


def with_scan_eml() -> bytes:
    """The workbook with the stamped PDF scan beside it (the scan first)."""
    msg = _mail("scjgj@example.gov.cn", "2026年11月信用记录使用情况清单", "您好，附件为本单位情况清单及盖章扫描件，请查收。",
                "<scan-1@example.gov.cn>", "Fri, 20 Nov 2026 10:00:00 +0800")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="盖章扫描件.pdf")
    msg.add_attachment(template_filled(), maintype=XLSX[0], subtype=XLSX[1], filename="情况清单.xlsx")
    return _pin_boundaries(msg)


def tnef_eml() -> bytes:
    """Outlook in rich-text mode: the checklist arrives inside winmail.dat (application/ms-tnef)."""
    msg = _mail("scjgj@example.gov.cn", "2026年11月信用记录使用情况清单", "附件为本单位情况清单，请查收。",
                "<tnef-1@example.gov.cn>", "Fri, 20 Nov 2026 10:00:00 +0800")
    msg.add_attachment(winmail_dat(), maintype="application", subtype="ms-tnef", filename="winmail.dat")
    return _pin_boundaries(msg)


def doc_only_eml() -> bytes:
    """The checklist as a Word 97 .doc: not read, and the receipt says why, naming the format."""
    msg = _mail("scjgj@example.gov.cn", "2026年11月信用记录使用情况清单", "附件为本单位情况清单，请查收。",
                "<doc-1@example.gov.cn>", "Fri, 20 Nov 2026 10:00:00 +0800")
    msg.add_attachment(word97_doc(), maintype="application", subtype="msword", filename="情况清单.doc")
    return _pin_boundaries(msg)


def scan_only_eml() -> bytes:
    """Only the stamped scan, no workbook."""
    msg = _mail("scjgj@example.gov.cn", "2026年11月信用记录使用情况清单", "附件为本单位盖章扫描件。",
                "<scanonly-1@example.gov.cn>", "Fri, 20 Nov 2026 10:00:00 +0800")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="盖章扫描件.pdf")
    msg.add_attachment(b"\xff\xd8\xff\xe0\x00\x10JFIF" + bytes(64), maintype="image", subtype="jpeg", filename="照片.jpg")
    return _pin_boundaries(msg)


def _subject_mail(subject: str, filename: str, data: bytes, key: str) -> bytes:
    msg = _mail("scjgj@example.gov.cn", subject, "附件为本单位情况清单，请查收。", f"<{key}@example.gov.cn>",
                "Fri, 20 Nov 2026 10:00:00 +0800")
    msg.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename=filename)
    return _pin_boundaries(msg)


def year_sheets_eml() -> bytes:
    """The year's workbook, the subject naming no month: the sheet of the month it came in."""
    return _subject_mail("信用记录使用情况清单", "2026年情况清单.xlsx", year_sheets(), "year-1")


def year_late_eml() -> bytes:
    """October's sheet filled late, November's still empty, no month in the subject: filed for October."""
    return _subject_mail("信用记录使用情况清单（补报）", "2026年情况清单.xlsx", year_late(), "year-2")


def october_only_eml() -> bytes:
    """The subject says November, the only sheet is October's with October's rows: not accepted silently."""
    return _subject_mail("2026年11月信用记录使用情况清单", "情况清单.xlsx", october_only(), "year-3")


def _mail_with(subject: str, files: list[tuple[str, bytes]], key: str, body="附件为本单位情况清单，请查收。") -> bytes:
    msg = _mail("scjgj@example.gov.cn", subject, body, f"<{key}@example.gov.cn>", "Fri, 20 Nov 2026 10:00:00 +0800")
    for filename, data in files:
        msg.add_attachment(data, maintype=XLSX[0], subtype=XLSX[1], filename=filename)
    return _pin_boundaries(msg)


def our_annotated_copy(data: bytes) -> bytes:
    """The marked-up copy mailbot's error receipt carries, made by mailbot itself."""
    from mailbot import annotate, checklist, rules, workbook
    from mailbot.config import Limits

    parsed = checklist.parse(workbook.read(data, "情况清单.xlsx", Limits()), "2026-11", firm=True)
    checked = rules.check(parsed, rules.Context(None, "2026-11", dt.date(2026, 11, 25)))
    return normalise_zip(annotate.annotate(data, "xlsx", parsed, checked.problems, Limits()))


def reply_with_annotated_eml() -> bytes:
    """Foxmail/QQ "reply with attachments": our marked-up copy goes back with the corrected file."""
    return _mail_with("回复：回执：【未通过，请修改后重新报送】2026年11月信用记录使用情况清单",
                      [("情况清单（问题标注）.xlsx", our_annotated_copy(row_problems())), ("情况清单.xlsx", template_filled())],
                      "reply-1", "已按要求修改，请查收。")


def two_months_eml() -> bytes:
    """October (late) and November in one mail: each its own submission."""
    return _mail_with("10月、11月信用记录使用情况清单", [("10月情况清单.xlsx", october_only()), ("11月情况清单.xlsx", template_filled())],
                      "two-1")


def same_month_twice_eml() -> bytes:
    """Two files for November, the first with mistakes, the second corrected: the valid one counts."""
    return _mail_with("2026年11月信用记录使用情况清单", [("情况清单.xlsx", row_problems()), ("情况清单（修改）.xlsx", template_filled())],
                      "twice-1")


FIXTURES = {
    "template_filled.xlsx": template_filled,
    "instructions_first.xlsx": instructions_first,
    "header_one_cell.xlsx": header_one_cell,
    "short_names_reordered.xlsx": short_names_reordered,
    "labels_next_cell.xlsx": labels_next_cell,
    "footer_notes.xlsx": footer_notes,
    "two_row_header.xlsx": two_row_header,
    "codes_spaced.xlsx": codes_spaced,
    "other_months.xlsx": other_months,
    "year_sheets.xlsx": year_sheets,
    "year_sheets.eml": year_sheets_eml,
    "year_late.eml": year_late_eml,
    "october_only.eml": october_only_eml,
    "reply_with_annotated.eml": reply_with_annotated_eml,
    "two_months.eml": two_months_eml,
    "same_month_twice.eml": same_month_twice_eml,
    "nil_merged.xlsx": nil_merged,
    "nil_wu.xlsx": nil_wu,
    "nil_seq_column.xlsx": nil_seq_column,
    "nil_above_table.xlsx": nil_above_table,
    "formulas.xlsx": formulas,
    "missing_column.xlsx": missing_column,
    "wrong_template.xlsx": wrong_template,
    "row_problems.xlsx": row_problems,
    "official.xls": official_xls,
    "variants.xls": variants_xls,
    "nil_merged.xls": nil_merged_xls,
    "official_utf8bom.csv": official_csv,
    "variants_gb18030.csv": variants_csv,
    "nil.csv": nil_csv,
    "official.docx": official_docx,
    "header_in_table.docx": header_in_table_docx,
    "nil_letter.docx": nil_letter_docx,
    "nil_table.docx": nil_table_docx,
    "zipped.zip": zipped,
    "official.ods": official_ods,
    "official.et": official_et,
    "word97.doc": word97_doc,
    "winmail.dat": winmail_dat,
    "tnef.eml": tnef_eml,
    "doc_only.eml": doc_only_eml,
    "scan_only.eml": scan_only_eml,
    "forwarded.eml": forwarded_eml,
    "with_scan.eml": with_scan_eml,
}


def main() -> None:
    """Write every fixture, or only those named on the command line."""
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in FIXTURES.items():
        if sys.argv[1:] and name not in sys.argv[1:]:
            continue
        data = make()
        (OUT / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
