"""The generated blank checklist, read back the way a department's Excel/WPS would see it."""
from __future__ import annotations

import re
from io import BytesIO

import pytest
from openpyxl import load_workbook
from openpyxl.styles.numbers import is_date_format

from mailbot import template
from mailbot.template import (
    COLUMNS,
    FIRST_DATA_ROW,
    HEADER_FIELDS,
    HEADER_ROW,
    LAST_DATA_ROW,
    MEASURE_CHOICES,
    NIL_REPORT,
    TITLE,
    build_template,
)


@pytest.fixture(scope="module")
def wb():
    return load_workbook(BytesIO(build_template("赞皇县信用办", "zhxxyt@126.com", 25)))


@pytest.fixture(scope="module")
def ws(wb):
    return wb["情况清单"]


def _validation_for(ws, coordinate: str):
    found = [dv for dv in ws.data_validations.dataValidation if coordinate in dv.sqref]
    assert len(found) == 1, coordinate
    return found[0]


def test_constants_match_the_official_template():
    assert TITLE == "行政管理事项中使用信用记录和信用报告的情况清单"
    assert HEADER_FIELDS == ("单位", "报送人", "报送日期")
    assert COLUMNS == ("市场主体（自然人）名称", "行政管理事项名称", "日期",
                       "使用信用记录或报告情况", "使用的激励或惩戒措施")
    assert "(" not in "".join(COLUMNS)  # full-width parentheses only


def test_returns_xlsx_bytes():
    data = build_template()
    assert isinstance(data, bytes) and data[:4] == b"PK\x03\x04"


def test_sheets_present_ordered_and_first_active(wb):
    assert wb.sheetnames == ["情况清单", "填报说明"]
    assert wb.active.title == "情况清单"


def test_title_merged_bold_large_centered(ws):
    assert ws["A1"].value == TITLE
    assert "A1:E1" in {str(r) for r in ws.merged_cells.ranges}
    assert ws["A1"].font.b and ws["A1"].font.sz > ws.cell(HEADER_ROW, 1).font.sz
    assert ws["A1"].alignment.horizontal == "center"


def test_header_fields(ws):
    assert [ws.cell(r, 1).value for r in (2, 3, 4)] == ["单位：", "报送人：", "报送日期："]
    merged = {str(r) for r in ws.merged_cells.ranges}
    assert {"B2:C2", "B3:C3", "B4:C4"} <= merged
    assert ws["B2"].value is None and ws["B2"].border.bottom.style == "thin"
    assert ws["B4"].number_format == 'yyyy"年"m"月"d"日"'
    assert is_date_format(ws["B4"].number_format)


def test_table_header_exact_in_order_and_styled(ws):
    assert HEADER_ROW == 6 and FIRST_DATA_ROW == 7
    cells = [ws.cell(HEADER_ROW, c) for c in range(1, 7)]
    assert [c.value for c in cells] == [*COLUMNS, None]
    for cell in cells[:5]:
        assert cell.font.b and cell.alignment.wrap_text
        assert cell.border.left.style and cell.border.bottom.style
    widths = [ws.column_dimensions[letter].width for letter in "ABCDE"]
    assert widths == [32, 28, 14, 40, 28]


def test_data_rows_preformatted(ws):
    assert LAST_DATA_ROW == 206
    for row in (FIRST_DATA_ROW, 100, LAST_DATA_ROW):
        for col in range(1, 6):
            cell = ws.cell(row, col)
            assert cell.value is None
            assert cell.border.top.style == "thin" and cell.alignment.wrap_text
        assert ws.cell(row, 3).number_format == "yyyy-mm-dd"
        assert is_date_format(ws.cell(row, 3).number_format)
    assert not is_date_format(ws.cell(FIRST_DATA_ROW, 1).number_format)


def test_date_validation_warns_but_accepts_text(ws):
    dv = _validation_for(ws, "C7")
    assert "C206" in dv.sqref and "C207" not in dv.sqref
    assert dv.type == "date"
    assert dv.errorStyle in ("warning", "information") or not dv.showErrorMessage
    assert dv.showInputMessage and "2026-11-05 或 2026/11/5" in dv.prompt
    assert len(dv.prompt) <= 255 and len(dv.promptTitle) <= 32 and len(dv.error) <= 255 and len(dv.errorTitle) <= 32


def _suggested(text: str) -> list[str]:
    """The date forms a text suggests: those it names before any “不要” (don't)."""
    return re.findall(r"\d{4}[-/.年]\d{1,2}[-/.月]\d{1,2}日?", text.split("不要")[0])


def test_the_date_forms_suggested_are_ones_excel_stores_as_dates(ws):
    """2026.11.5 is kept as text by Excel: the template must not suggest it (issue 17)."""
    prompt = _validation_for(ws, "C7").prompt
    line = next(line for line in template.instructions() if line.startswith("6. “日期”"))
    for text in (prompt, line):
        assert _suggested(text) == ["2026-11-05", "2026/11/5"], text
        assert "不要写成 2026.11.5" in text


def test_measure_dropdown_allows_free_text(ws):
    dv = _validation_for(ws, "E7")
    assert "E206" in dv.sqref
    assert dv.type == "list"
    assert not dv.showDropDown  # openpyxl: True would *hide* the in-cell arrow
    assert dv.errorStyle == "information" or not dv.showErrorMessage
    assert not dv.showErrorMessage
    choices = dv.formula1.strip('"').split(",")
    assert choices == list(MEASURE_CHOICES)
    assert "无" in choices and "容缺受理" in choices and "限制参与政府采购" in choices
    assert len(dv.formula1) <= 257


def test_only_date_and_measure_columns_validated(ws):
    for coordinate in ("A7", "B7", "D7"):
        assert not [dv for dv in ws.data_validations.dataValidation if coordinate in dv.sqref]


def test_freeze_and_print_setup(ws):
    assert ws.freeze_panes == "A7"
    assert ws.page_setup.orientation == "landscape"
    assert ws.page_setup.fitToWidth == 1 and ws.page_setup.fitToHeight == 0
    assert ws.sheet_properties.pageSetUpPr.fitToPage
    assert ws.print_title_rows.replace("$", "") == "6:6"


def _instruction_text(data: bytes) -> str:
    sheet = load_workbook(BytesIO(data))["填报说明"]
    return "\n".join(str(c.value) for row in sheet.iter_rows() for c in row if c.value)


def test_instructions_content(wb):
    text = "\n".join(str(c.value) for row in wb["填报说明"].iter_rows() for c in row if c.value)
    for needle in ("各乡镇人民政府、经开区管委会、县直有关部门", "每月25日前", "zhxxyt@126.com",
                   "赞皇县信用办", NIL_REPORT, "“无”", "安全保密", "身份证号码", "1. ", "11. "):
        assert needle in text, needle
    assert "(" not in text and ")" not in text  # full-width parentheses in Chinese text


def test_instructions_use_parameters():
    text = _instruction_text(build_template("某某县信用办", "credit@example.cn", 20))
    assert "每月20日前" in text and "每月25日前" not in text
    assert "某某县信用办邮箱 credit@example.cn" in text


def test_instructions_without_office_details():
    text = _instruction_text(build_template())
    assert "县信用办邮箱" in text and "@" not in text and "每月25日前" in text


@pytest.mark.parametrize("bad", [0, 32, True, "25"])
def test_rejects_impossible_deadline_day(bad):
    with pytest.raises(ValueError):
        build_template(deadline_day=bad)


def test_readable_by_calamine():
    python_calamine = pytest.importorskip("python_calamine")
    book = python_calamine.CalamineWorkbook.from_filelike(BytesIO(build_template()))
    assert book.sheet_names == ["情况清单", "填报说明"]
    rows = book.get_sheet_by_index(0).to_python()
    assert rows[0][0] == TITLE
    assert tuple(rows[HEADER_ROW - 1][:5]) == COLUMNS


def test_module_is_importable_as_parser_contract():
    for name in ("TITLE", "HEADER_FIELDS", "COLUMNS"):
        assert hasattr(template, name)
