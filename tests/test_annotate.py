"""The annotated copy for the error receipt, opened again with openpyxl; and masking in `mailbot check`."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from pathlib import Path

import openpyxl
from openpyxl.comments import Comment

from mailbot import annotate, checklist as checklist_mod, rules, verdict, workbook
from mailbot.config import Department, Limits
from mailbot.errors import Problem
from tests import factory

WORKBOOKS = Path(__file__).parent / "data" / "workbooks"
SCJGJ = Department(id="scjgj", name="赞皇县市场监督管理局", aliases=["县市场监管局"], emails=["scjgj@example.gov.cn"])
CZJ = Department(id="czj", name="赞皇县财政局", emails=["czj@example.gov.cn"])
ID_OK = "11010519491231002X"  # domain.md's sample
ID_BAD = "110105194912310021"  # the same with a wrong check digit (should be X)

BAD_ROWS = [
    factory.GOOD_ROWS[0],  # row 7: fine
    ("某建筑公司（91350100M000100Y44）", "政府采购供应商资格审查", 9.2, "经信用中国查询，无失信记录", "无"),  # row 8: A8, C8
    (f"张某（{ID_BAD}）", "个体工商户登记", "2026.11.9", "", None),  # row 9: A9, D9, E9
]
RED = "FFFFC7CE"


def judged(data: bytes, filename: str, dept=SCJGJ, today=dt.date(2026, 11, 20)):
    cl = checklist_mod.parse(workbook.read(data, filename, Limits()))
    checked = rules.check(cl, rules.Context(dept, "2026-11", today, {}, (SCJGJ, CZJ)))
    return cl, checked.problems


def opened(data: bytes) -> openpyxl.Workbook:
    assert data is not None and data.startswith(b"PK\x03\x04")
    return openpyxl.load_workbook(io.BytesIO(data))


def marked(ws) -> dict[str, str]:
    """coordinate -> comment text of every cell we filled red."""
    out = {}
    for row in ws.iter_rows():
        for cell in row:
            if cell.fill.fill_type == "solid" and cell.fill.fgColor.rgb == RED:
                assert cell.comment is not None and cell.comment.author == "县信用办"
                out[cell.coordinate] = cell.comment.text
            else:
                assert cell.comment is None or cell.comment.author != "县信用办", cell.coordinate
    return out


def listed(wb) -> list[tuple]:
    """The rows of 问题清单 under its header row."""
    rows = list(wb["问题清单"].iter_rows(values_only=True))
    head = rows.index(("级别", "工作表", "单元格", "问题说明"))
    return rows[head + 1:]


def test_xlsx_cells_with_problems_are_red_with_the_message_and_all_are_listed():
    data = factory.checklist_xlsx(rows=BAD_ROWS, unit="赞皇县财政局")  # + a header-level problem
    cl, problems = judged(data, "清单.xlsx")
    assert sorted((p.code, p.column, p.row) for p in problems) == sorted([
        ("unit_mismatch", None, None), ("uscc_invalid", "A", 8), ("date_bare_number", "C", 8),
        ("id_invalid", "A", 9), ("usage_empty", "D", 9), ("measure_empty", "E", 9)])

    wb = opened(annotate.annotate(data, "xlsx", cl, problems))
    assert wb.sheetnames == ["问题清单", "情况清单", "填报说明"] and wb.active.title == "问题清单"
    marks = marked(wb["情况清单"])
    assert set(marks) == {"A8", "C8", "A9", "D9", "E9"}
    assert marks["A8"] == "【错误】统一社会信用代码“91350100M000100Y44”有误：第18位校验码应为“3”，实为“4”。请对照营业执照核对后更正。"
    assert marks["C8"].startswith("【错误】“9.2”是一个数字而不是日期")
    assert marks["E9"] == "【提示】使用的激励或惩戒措施未填写；未采取措施的请填写“无”。"

    rows = listed(wb)
    assert len(rows) == len(problems) == 6
    assert {r[3] for r in rows} == {p.message for p in problems}
    assert [r[:3] for r in rows] == [  # errors first, then warnings; the header problem in the list only
        ("错误", "情况清单", "表头"), ("错误", "情况清单", "C8"), ("错误", "情况清单", "A8"),
        ("错误", "情况清单", "D9"), ("错误", "情况清单", "A9"), ("提示", "情况清单", "E9")]
    assert "赞皇县财政局" in rows[0][3] and "赞皇县市场监督管理局" in rows[0][3]
    sheet = wb["问题清单"]
    assert sheet.column_dimensions["D"].width == 90 and sheet[f"D{sheet.max_row}"].alignment.wrap_text


def test_xlsx_keeps_the_departments_data_and_formatting():
    data = factory.checklist_xlsx(rows=BAD_ROWS)
    cl, problems = judged(data, "清单.xlsx")
    before = openpyxl.load_workbook(io.BytesIO(data))
    after = opened(annotate.annotate(data, "xlsx", cl, problems))
    shown_as_held = {("情况清单", "C8")}  # 9.2 under the date format: the number again (next test)
    for title in before.sheetnames:
        old, new = before[title], after[title]
        assert [[c.value for c in r if (title, c.coordinate) not in shown_as_held] for r in old.iter_rows()] == \
            [[c.value for c in r if (title, c.coordinate) not in shown_as_held] for r in new.iter_rows()]
        assert set(map(str, old.merged_cells.ranges)) == set(map(str, new.merged_cells.ranges))
        assert {k: d.width for k, d in old.column_dimensions.items()} == {k: d.width for k, d in new.column_dimensions.items()}
    old, new = before["情况清单"], after["情况清单"]
    assert "A1:E1" in set(map(str, new.merged_cells.ranges))
    assert (new["A1"].font.b, new["A1"].font.sz) == (old["A1"].font.b, old["A1"].font.sz) == (True, 16)
    assert new["C7"].number_format == old["C7"].number_format and new["C7"].value == dt.datetime(2026, 11, 3)
    assert repr(new["A7"].fill) == repr(old["A7"].fill)  # an unmarked cell keeps its own fill
    assert repr(new["A8"].font) == repr(old["A8"].font) and repr(new["A8"].border) == repr(old["A8"].border)
    assert new["A8"].alignment.wrap_text and old["A8"].alignment.wrap_text  # a marked cell: only the fill changes


def test_the_copy_shows_what_the_cell_holds_as_the_receipt_quotes_it():
    """9.2 typed under the template's date format displays as 1900-01-09 in Excel; the receipt
    says "9.2", and so does the marked cell now (the number, in the General format)."""
    data = factory.checklist_xlsx(rows=BAD_ROWS)
    before = openpyxl.load_workbook(io.BytesIO(data))["情况清单"]["C8"]
    assert before.is_date and before.value == dt.datetime(1900, 1, 9, 4, 48)  # what the clerk saw
    cl, problems = judged(data, "清单.xlsx")
    ws = opened(annotate.annotate(data, "xlsx", cl, problems))["情况清单"]
    assert (ws["C8"].value, ws["C8"].number_format, ws["C8"].is_date) == (9.2, "General", False)
    assert "“9.2”" in ws["C8"].comment.text
    assert ws["C7"].is_date and ws["C7"].value == dt.datetime(2026, 11, 3)  # a real date stays a date


def test_marked_cells_wrap_in_rows_tall_enough_to_read():
    long_usage = "经信用中国、国家企业信用信息公示系统、中国执行信息公开网查询，" * 3
    rows = [(f"张某（{ID_BAD}）", "个体工商户登记", "2026.11.9", long_usage, "无")]  # A7 is wrong
    data = factory.checklist_xlsx(rows=rows)
    template = openpyxl.load_workbook(io.BytesIO(data))["情况清单"]
    cl, problems = judged(data, "清单.xlsx")
    ws = opened(annotate.annotate(data, "xlsx", cl, problems))["情况清单"]
    assert set(marked(ws)) == {"A7"}
    assert ws["A7"].alignment.wrap_text and ws["D7"].alignment.wrap_text
    lines = max(-(-len(ws[f"{c}7"].value.encode("gb18030")) // int(ws.column_dimensions[c].width - 1)) for c in "AD")
    assert lines >= 3  # the long usage text in the same row, not the marked cell, sets the height
    assert ws.row_dimensions[7].height >= annotate.LINE_HEIGHT * lines > (template.row_dimensions[7].height or 15)
    assert ws.row_dimensions[8].height == template.row_dimensions[8].height  # unmarked rows as they were


def test_the_problem_list_comes_first_and_prints_one_page_wide():
    data = factory.checklist_xlsx(rows=BAD_ROWS)
    cl, problems = judged(data, "清单.xlsx")
    wb = opened(annotate.annotate(data, "xlsx", cl, problems))
    ws = wb.worksheets[0]
    assert ws.title == "问题清单" and wb.active is ws and ws.sheet_view.tabSelected
    assert not any(other.sheet_view.tabSelected for other in wb.worksheets[1:])
    setup = ws.page_setup
    assert (setup.paperSize, setup.orientation, setup.fitToWidth, setup.fitToHeight) == (9, "portrait", 1, 0)
    assert ws.sheet_properties.pageSetUpPr.fitToPage and ws.oddFooter.center.text == "第&P页 共&N页"
    head = [r for r in range(1, ws.max_row + 1) if ws.cell(r, 1).value == "级别"][0]
    assert ws.print_title_rows == f"${head}:${head}"
    for r in range(head + 1, ws.max_row + 1):
        assert ws.row_dimensions[r].height >= annotate.LINE_HEIGHT


def test_an_id_number_is_whole_in_the_copy_for_the_sender():
    data = factory.checklist_xlsx(rows=BAD_ROWS)
    cl, problems = judged(data, "清单.xlsx")
    wb = opened(annotate.annotate(data, "xlsx", cl, problems))
    assert wb["情况清单"]["A9"].value == f"张某（{ID_BAD}）"
    assert f"身份证号码“{ID_BAD}”有误：第18位校验码应为“X”，实为“1”" in wb["情况清单"]["A9"].comment.text
    assert any(ID_BAD in r[3] for r in listed(wb))


def test_several_problems_in_one_cell_share_one_comment_and_a_departments_comment_is_kept():
    wb = openpyxl.load_workbook(io.BytesIO(factory.checklist_xlsx(rows=BAD_ROWS)))
    wb["情况清单"]["A8"].comment = Comment("请财务核对", "李四")
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    cl, problems = judged(data, "清单.xlsx")
    problems = problems + [Problem("duplicate_row", "工作表“情况清单”第8行“市场主体（自然人）名称”列（A8）：本行与第7行内容完全相同。",
                                 "warning", "情况清单", 8, "A")]
    marks = marked(opened(annotate.annotate(data, "xlsx", cl, problems))["情况清单"])
    assert marks["A8"].split("\n") == [
        "【错误】统一社会信用代码“91350100M000100Y44”有误：第18位校验码应为“3”，实为“4”。请对照营业执照核对后更正。",
        "【提示】本行与第7行内容完全相同。",
        "（原批注：请财务核对）"]


def test_a_problem_inside_a_merged_range_marks_its_top_left_cell():
    data = factory.checklist_xlsx(rows=BAD_ROWS)
    cl, _ = judged(data, "清单.xlsx")
    problem = Problem("x", "工作表“情况清单”第2行：某问题，请更正。", "error", "情况清单", 2, "C")  # B2:C2 is merged
    marks = marked(opened(annotate.annotate(data, "xlsx", cl, [problem]))["情况清单"])
    assert marks == {"B2": "【错误】某问题，请更正。"}


def test_a_copy_sent_back_is_annotated_afresh():
    data = factory.checklist_xlsx(rows=BAD_ROWS)
    cl, problems = judged(data, "清单.xlsx")
    first = annotate.annotate(data, "xlsx", cl, problems)
    wb = opened(first)  # the clerk fixes C8 and sends our copy back
    wb["情况清单"]["C8"] = "2026年11月8日"
    buf = io.BytesIO()
    wb.save(buf)
    cl, problems = judged(buf.getvalue(), "清单（问题标注）.xlsx")
    again = opened(annotate.annotate(buf.getvalue(), "xlsx", cl, problems))
    assert again.sheetnames.count("问题清单") == 1 and len(listed(again)) == len(problems) == 4
    assert set(marked(again["情况清单"])) == {"A8", "A9", "D9", "E9"}  # C8 is no longer red


def test_xls_input_becomes_an_xlsx_with_rows_where_the_messages_say():
    data = (WORKBOOKS / "official.xls").read_bytes()
    cl, problems = judged(data, "清单.xls", today=dt.date(2026, 11, 4))  # two dates now lie in the future
    assert [(p.code, p.column, p.row) for p in problems] == [("date_future", "C", 7), ("date_future", "C", 8)]
    wb = opened(annotate.annotate(data, "xls", cl, problems))
    assert wb.sheetnames == ["问题清单", "清单"]
    ws = wb["清单"]
    assert (ws["A2"].value, ws["B2"].value) == ("单位：", "赞皇县市场监督管理局")
    assert [c.value for c in ws[5]] == ["市场主体（自然人）名称", "行政管理事项名称", "日期", "使用信用记录或报告情况", "使用的激励或惩戒措施"]
    assert ws["C7"].value == "2026.11.5" and ws["A6"].value.startswith("赞皇县福源食品有限公司")
    assert ws["B4"].value == dt.datetime(2026, 11, 20) and ws["B4"].number_format == "yyyy-mm-dd"
    assert set(marked(ws)) == {"C7", "C8"}
    assert "A1:E1" in set(map(str, ws.merged_cells.ranges))
    assert "Excel 97-2003（.xls）" in wb["问题清单"]["A2"].value and "第N行”即本表的第N行" in wb["问题清单"]["A2"].value
    assert [r[2] for r in listed(wb)] == ["C7", "C8"]


def test_ods_input_becomes_an_xlsx_too():
    data = (Path(__file__).parent / "data" / "checklists" / "official.ods").read_bytes()
    cl, problems = judged(data, "清单.ods", today=dt.date(2026, 11, 4))
    assert problems and all(p.code == "date_future" for p in problems)
    wb = opened(annotate.annotate(data, "ods", cl, problems))
    assert wb.sheetnames == ["问题清单", "情况清单"]
    assert set(marked(wb["情况清单"])) == {f"{p.column}{p.row}" for p in problems}
    assert "OpenDocument" in wb["问题清单"]["A2"].value


FORMULA_LIKE = ["=1+1", "+8613800000000", "-5+3", "@SUM(A1:A2)", "=HYPERLINK(\"http://example.com\",\"点此\")"]


def test_csv_input_becomes_an_xlsx_and_formula_like_text_stays_text():
    lines = [["单位：赞皇县市场监督管理局  报送人：王某"], ["报送日期：", "2026-11-20"],  # both in one cell
             ["市场主体（自然人）名称", "行政管理事项名称", "日期", "使用信用记录或报告情况", "使用的激励或惩戒措施"]]
    lines += [[value, "食品经营许可证核发", "2026-11-03", "经信用中国查询，无失信记录", "无"] for value in FORMULA_LIKE]
    lines += [["某公司", "=cmd|' /C calc'!A0", "9.2", "\t=1+2", "无"]]
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(lines)
    data = text.getvalue().encode("gb18030")
    cl, problems = judged(data, "清单.csv")
    assert [(p.code, p.column, p.row) for p in problems] == [("date_bare_number", "C", 9)]
    out = annotate.annotate(data, "csv", cl, problems)
    wb = opened(out)
    ws = wb["清单"]
    assert wb.sheetnames == ["问题清单", "清单"] and set(marked(ws)) == {"C9"}
    assert [ws.cell(r, 1).value for r in range(4, 9)] == FORMULA_LIKE
    assert ws["B9"].value == "=cmd|' /C calc'!A0" and ws["D9"].value == "\t=1+2"
    for row in ws.iter_rows():
        for cell in row:
            assert cell.data_type != "f", cell.coordinate
            if isinstance(cell.value, str) and cell.value.startswith(("=", "+", "-", "@", "\t")):
                assert cell.data_type == "s" and cell.quotePrefix, cell.coordinate
    with zipfile.ZipFile(io.BytesIO(out)) as zf:
        sheets = [n for n in zf.namelist() if n.startswith("xl/worksheets/sheet")]
        assert sheets and not any(re.search(rb"<f[ >]", zf.read(n)) for n in sheets)


def test_docx_and_zip_input_become_an_xlsx_too():
    data = (WORKBOOKS / "official.docx").read_bytes()
    cl, problems = judged(data, "清单.docx", today=dt.date(2026, 11, 4))
    wb = opened(annotate.annotate(data, "docx", cl, problems))
    assert set(marked(wb["表格1"])) == {f"{p.column}{p.row}" for p in problems} and problems

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("清单.xlsx", factory.checklist_xlsx(rows=BAD_ROWS))
    cl, problems = judged(buf.getvalue(), "清单.zip")
    assert cl.sheet == "清单.xlsx:情况清单"
    wb = opened(annotate.annotate(buf.getvalue(), "zip", cl, problems))
    assert wb.sheetnames == ["问题清单", "清单.xlsx_情况清单"]  # ":" cannot stand in a sheet name
    assert set(marked(wb["清单.xlsx_情况清单"])) == {"A8", "C8", "A9", "D9", "E9"}
    assert "原工作表“清单.xlsx:情况清单”在本表中名为“清单.xlsx_情况清单”" in wb["问题清单"]["A2"].value
    assert {r[1] for r in listed(wb)} == {"清单.xlsx_情况清单"}


def test_a_file_that_cannot_be_reopened_gives_none():
    cl, problems = judged(factory.checklist_xlsx(rows=BAD_ROWS), "清单.xlsx")
    assert annotate.annotate(b"PK\x03\x04 not really a zip", "xlsx", cl, problems) is None
    assert annotate.annotate(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), "xls", cl, problems) is None
    assert annotate.annotate(b"whatever", "encrypted", cl, problems) is None
    assert annotate.annotate(b"whatever", "pdf", cl, problems) is None


def test_a_big_workbook_marks_the_first_cells_only_and_lists_everything():
    rows = [(f"某公司{i}", "食品经营许可证核发", "2026-11-03", "经信用中国查询，无失信记录", None) for i in range(5100)]
    data = factory.checklist_xlsx(rows=rows)
    cl, problems = judged(data, "清单.xlsx")
    assert len(problems) == 5100 and {p.code for p in problems} == {"measure_empty"}
    wb = opened(annotate.annotate(data, "xlsx", cl, problems))
    ws = wb["情况清单"]
    red = [c.coordinate for c in ws["E"] if c.fill.fgColor.rgb == RED]
    assert red == [f"E{r}" for r in range(7, 507)]
    assert sum(1 for c in ws["E"] if c.comment is not None) == 500
    assert len(listed(wb)) == 5100
    assert "仅在前500个有问题的单元格中标红并加批注，其余4600个单元格的问题请按本表逐条核对" in wb["问题清单"]["A2"].value


def test_an_xlsx_too_big_to_load_whole_is_rebuilt_from_the_table(monkeypatch):
    monkeypatch.setattr(annotate, "FULL_LOAD_MAX_XML", 1000)  # official template's sheet XML is larger
    data = factory.checklist_xlsx(rows=BAD_ROWS)
    cl, problems = judged(data, "清单.xlsx")
    wb = opened(annotate.annotate(data, "xlsx", cl, problems))
    assert wb.sheetnames == ["问题清单", "情况清单"]  # the 填报说明 sheet is not carried over
    assert set(marked(wb["情况清单"])) == {"A8", "C8", "A9", "D9", "E9"}
    assert wb["情况清单"]["A9"].value == f"张某（{ID_BAD}）"
    assert wb["问题清单"]["A2"].value.startswith("贵单位发送的是较大的Excel文件，系统按读取到的内容生成了本表（原文件的格式未保留）")


def test_annotated_filename():
    assert annotate.annotated_filename("情况清单.xls") == "情况清单（问题标注）.xlsx"
    assert annotate.annotated_filename("C:\\用户\\11月清单.csv") == "11月清单（问题标注）.xlsx"
    assert annotate.annotated_filename("") == "情况清单（问题标注）.xlsx"


# ---------------------------------------------------------------- `mailbot check` masks ID numbers

def test_check_json_masks_id_numbers_in_rows_codes_and_messages():
    rows = [(f"张某（{ID_OK}）", "个体工商户登记", "2026-11-03", f"核验身份证{ID_OK}，经信用中国查询无失信记录", "无"),
            (f"李某（{ID_BAD}）", "个体工商户登记", "2026-11-04", "经信用中国查询无失信记录", "无")]
    result = verdict.verdict(factory.checklist_xlsx(rows=rows), "清单.xlsx", None, dt.date(2026, 11, 20))
    out = json.dumps(result, ensure_ascii=False, default=str)
    assert ID_OK not in out and ID_BAD not in out
    assert result["rows"][0]["entity"] == "张某（110105********002X）"
    assert result["rows"][0]["usage"] == "核验身份证110105********002X，经信用中国查询无失信记录"
    assert result["rows"][1]["codes"] == [{"kind": "id", "value": "110105********0021", "valid": False}]
    [problem] = result["problems"]
    assert problem["code"] == "id_invalid" and "身份证号码“110105********0021”有误" in problem["message"]


def test_check_json_never_contains_an_unmasked_id_number_wherever_it_was_typed():
    rows = [(f"张某（{ID_OK}）", f"个体工商户登记（{ID_BAD}）", "2026-11-03", f"核验{ID_OK}", f"无（{ID_OK}）")]
    result = verdict.verdict(factory.checklist_xlsx(rows=rows, submitter=f"王某{ID_OK}"), "清单.xlsx", None,
                             dt.date(2026, 11, 20))
    out = json.dumps(result, ensure_ascii=False, default=str)
    assert ID_OK not in out and ID_BAD not in out


def test_the_annotated_copy_is_marked_ours_and_recognised_even_without_the_mark():
    import zipfile as _zipfile

    from mailbot import decision
    from mailbot.workbook import ANNOTATED_MARK, read

    data = (Path(__file__).parent / "data" / "checklists" / "row_problems.xlsx").read_bytes()
    parsed = checklist_mod.parse(read(data, "清单.xlsx", Limits()))
    checked = rules.check(parsed, rules.Context(None, "2026-11", dt.date(2026, 11, 25)))
    copy = annotate.annotate(data, "xlsx", parsed, checked.problems, Limits())
    book = read(copy, "清单（问题标注）.xlsx", Limits())
    assert book.marked and decision._ours(book)
    assert not read(data, "清单.xlsx", Limits()).marked
    again = annotate.annotate(copy, "xlsx", checklist_mod.parse(book), checked.problems, Limits())  # marked once only
    assert read(again, "a.xlsx", Limits()).marked
    buf = io.BytesIO()  # a copy saved again without custom properties (WPS): its 问题清单 sheet still tells
    with _zipfile.ZipFile(io.BytesIO(copy)) as src, _zipfile.ZipFile(buf, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "docProps/custom.xml":
                body = body.replace(ANNOTATED_MARK.encode(), b"something-else")
            dst.writestr(info, body)
    unmarked = read(buf.getvalue(), "a.xlsx", Limits())
    assert not unmarked.marked and decision._ours(unmarked)


def test_our_copy_alone_is_read_and_its_new_copy_is_not_named_twice():
    from mailbot import intake

    assert intake._annotated_name("情况清单（问题标注）.xlsx") == "情况清单（问题标注）.xlsx"
    assert intake._annotated_name("情况清单.xls") == "情况清单（问题标注）.xlsx"
