"""Write the committed fixtures under tests/data/workbooks/ (run: .venv/bin/python tests/data/make_workbooks.py).

Needs openpyxl, python-docx and xlwt (dev only, for the .xls). Zip timestamps are pinned so a
re-run gives the same bytes unless the libraries change.
"""
from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from pathlib import Path

import openpyxl

OUT = Path(__file__).parent / "workbooks"

TITLE = "行政管理事项中使用信用记录和信用报告的情况清单"
DEPT = "赞皇县市场监督管理局"
PERSON = "张三"
SENT = dt.datetime(2026, 11, 20)
HEADER = ["市场主体（自然人）名称", "行政管理事项名称", "日期", "使用信用记录或报告情况", "使用的激励或惩戒措施"]
ROWS = [
    ["赞皇县福源食品有限公司（91350100M000100Y43）", "食品经营许可证核发", dt.datetime(2026, 11, 3),
     "通过信用中国查询，无失信记录", "容缺受理"],
    ["石家庄恒达建筑工程有限公司", "政府采购供应商资格审查", "2026.11.5",
     "查询中国执行信息公开网，列入失信被执行人名单", "限制参与政府采购"],
    ["李四", "个体工商户登记", "2026年11月12日", "查询信用石家庄，无不良记录", "无"],
]
ZIP_MEMBER = "赞皇县信用清单.xlsx"  # stored under its GBK bytes without the UTF-8 flag


def normalise_zip(data: bytes, edits: dict | None = None) -> bytes:
    """Rewrite a zip with fixed timestamps, applying `edits` {member: fn(bytes) -> bytes}."""
    edits = {"docProps/core.xml": _pin_dates, **(edits or {})}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename in edits:
                body = edits[info.filename](body)
            dst.writestr(zipfile.ZipInfo(info.filename, (2026, 1, 1, 0, 0, 0)), body, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _pin_dates(xml: bytes) -> bytes:
    """openpyxl stamps the save time into docProps/core.xml."""
    return re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>2026-01-01T00:00:00Z", xml)


def _save(wb) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return normalise_zip(buf.getvalue())


def official_xlsx() -> bytes:
    """The template as departments fill it: merged title, header fields split over A/B, five columns."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "清单"
    ws.append([TITLE])
    ws.merge_cells("A1:E1")
    ws.append(["单位：", DEPT])
    ws.append(["报送人：", PERSON])
    ws.append(["报送日期：", SENT])
    ws["B4"].number_format = "yyyy-mm-dd"
    ws.append(HEADER)
    for row in ROWS:
        ws.append(row)
    ws["C6"].number_format = "yyyy-mm-dd"
    return _save(wb)


def official_xls() -> bytes:
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet("清单")
    date = xlwt.easyxf(num_format_str="yyyy-mm-dd")
    ws.write_merge(0, 0, 0, 4, TITLE)
    for r, (label, value) in enumerate([("单位：", DEPT), ("报送人：", PERSON), ("报送日期：", SENT)], 1):
        ws.write(r, 0, label)
        ws.write(r, 1, value, date if isinstance(value, dt.datetime) else xlwt.Style.default_style)
    for c, text in enumerate(HEADER):
        ws.write(4, c, text)
    for r, row in enumerate(ROWS, 5):
        for c, value in enumerate(row):
            ws.write(r, c, value, date if isinstance(value, dt.datetime) else xlwt.Style.default_style)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def _csv_lines() -> list[list[str]]:
    rows = [[TITLE], ["单位：", DEPT], ["报送人：", PERSON], ["报送日期：", "2026-11-20"], HEADER]
    return rows + [[v.strftime("%Y-%m-%d") if isinstance(v, dt.datetime) else v for v in row] for row in ROWS]


def csv_text(delimiter: str) -> str:
    import csv

    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(_csv_lines())
    return buf.getvalue()


def official_docx() -> bytes:
    """Header fields as paragraphs above the table; a vertical merge and a merged footnote row."""
    import docx

    doc = docx.Document()
    doc.core_properties.created = doc.core_properties.modified = dt.datetime(2026, 1, 1)
    doc.add_paragraph(TITLE)
    doc.add_paragraph(f"单位：{DEPT}")
    doc.add_paragraph(f"报送人：{PERSON}    报送日期：2026年11月20日")
    doc.add_paragraph("说明：按月报送。")  # no header word: not carried into the sheet
    table = doc.add_table(rows=1, cols=5)
    for cell, text in zip(table.rows[0].cells, HEADER, strict=True):
        cell.text = text
    extra = ["石家庄恒达建筑工程有限公司", "招标投标资格审查", "2026/11/18", "同上", "限制参与招投标"]
    for row in ROWS[:2] + [extra] + ROWS[2:]:
        cells = table.add_row().cells
        for cell, value in zip(cells, row, strict=True):
            cell.text = value.strftime("%Y-%m-%d") if isinstance(value, dt.datetime) else value
    a, b = table.rows[2].cells[0], table.rows[3].cells[0]  # same company on two rows
    b.text = ""
    a.merge(b)
    note = table.add_row().cells
    note[0].merge(note[4]).text = "注：本表每月25日前报送。"
    buf = io.BytesIO()
    doc.save(buf)
    return normalise_zip(buf.getvalue())


def gbk_zip() -> bytes:
    """A zip as made by Chinese Windows: the member name in GBK bytes, no UTF-8 flag."""
    gbk = ZIP_MEMBER.encode("gbk")
    placeholder = "x" * (len(gbk) - len(".xlsx")) + ".xlsx"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo(placeholder, (2026, 1, 1, 0, 0, 0)), official_xlsx(), zipfile.ZIP_DEFLATED)
        zf.writestr(zipfile.ZipInfo("__MACOSX/._x.xlsx", (2026, 1, 1, 0, 0, 0)), b"\x00\x05\x16\x07junk")
    data = buf.getvalue()
    assert data.count(placeholder.encode()) == 2  # local header and central directory
    return data.replace(placeholder.encode(), gbk)


def wps_dimension_xlsx() -> bytes:
    """WPS declares <dimension ref="A1"/> whatever the sheet holds."""
    return normalise_zip(official_xlsx(), {
        "xl/worksheets/sheet1.xml": lambda b: re.sub(rb'<dimension ref="[^"]*"/>', b'<dimension ref="A1"/>', b),
    })


def formulas_xlsx() -> bytes:
    """Formula cells with the cached values Excel stores next to them (openpyxl writes none)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["数量", "单价", "合计", "说明", "日期"])
    ws.append([1, 2, "=A2+B2", '=TEXT(E3,"yyyy年m月d日")', "=DATE(2026,11,3)"])
    ws.append([None, None, None, None, dt.datetime(2026, 11, 3)])
    ws["E2"].number_format = "yyyy-mm-dd"

    def cache(xml: bytes) -> bytes:
        xml = xml.replace(b"<f>A2+B2</f><v></v>", b"<f>A2+B2</f><v>3</v>")
        xml = re.sub(rb'<c r="D2"([^>]*)t="str"><f>(.*?)</f><v></v>', '<c r="D2"\\1t="str"><f>\\2</f><v>2026年11月3日</v>'.encode(), xml)
        xml = re.sub(rb'<c r="D2"([^>]*)><f>(.*?)</f><v></v>', '<c r="D2"\\1 t="str"><f>\\2</f><v>2026年11月3日</v>'.encode(), xml)
        xml = xml.replace(b"<f>DATE(2026,11,3)</f><v></v>", b"<f>DATE(2026,11,3)</f><v>46329</v>")
        assert xml.count(b"<v></v>") == 0, xml
        return xml

    return normalise_zip(_save(wb), {"xl/worksheets/sheet1.xml": cache})


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    files = {
        "official.xlsx": official_xlsx(),
        "official.xls": official_xls(),
        "official_utf8bom.csv": b"\xef\xbb\xbf" + csv_text(",").encode("utf-8"),
        "official_gb18030.csv": csv_text(",").encode("gb18030"),
        "official_tab.csv": csv_text("\t").encode("utf-8"),
        "official.docx": official_docx(),
        "gbk_member.zip": gbk_zip(),
        "wps_dimension.xlsx": wps_dimension_xlsx(),
        "formulas.xlsx": formulas_xlsx(),
    }
    for name, data in files.items():
        (OUT / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
