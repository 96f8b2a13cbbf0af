"""Golden tests for the validation rules: each rule with valid and invalid examples.

Checklists are built directly (the rules are pure), except where the reader's column
positions matter (extra code columns), which go through a real .xlsx.
"""
from __future__ import annotations

import datetime as dt
import io

import openpyxl
import pytest

from mailbot import checklist as checklist_mod, config, rules, workbook
from mailbot.checklist import Checklist, Row
from mailbot.config import Department, Limits
from mailbot.errors import Problem
from tests import factory
from tests.test_codes import with_id_check, with_uscc_check

SCJGJ = Department(id="scjgj", name="赞皇县市场监督管理局", aliases=["县市场监管局"], emails=["scjgj@example.gov.cn"])
CZJ = Department(id="czj", name="赞皇县财政局", emails=["czj@example.gov.cn"])
ZHZ = Department(id="zhz", name="赞皇镇人民政府", emails=["zhz@qq.com"])
DEPARTMENTS = (SCJGJ, CZJ, ZHZ)
COLUMNS = {"entity": 1, "matter": 2, "date": 3, "usage": 4, "measure": 5}  # A..E, as in the template
TODAY = dt.date(2026, 11, 20)

# Independent check characters (domain.md, Codes): the tests do not trust mailbot.codes.
uscc, id_number = with_uscc_check, with_id_check


def wrong_check(code: str) -> str:
    """The same code with another check character."""
    return code[:17] + next(c for c in "0123" if c != code[17])


def good(**cells) -> dict:
    row = {"entity": "赞皇县某食品有限公司", "matter": "食品经营许可证核发", "date": dt.datetime(2026, 11, 3),
           "usage": "经信用中国查询，无失信记录", "measure": "告知承诺"}
    row.update(cells)
    return row


def make(*rows: dict, unit="赞皇县市场监督管理局", submitter="王某", report_date=dt.datetime(2026, 11, 20), extras=(),
         extra_columns=None, first_row=7, **fields) -> Checklist:
    cl = Checklist(sheet="情况清单", header_row=first_row - 1, columns=dict(COLUMNS), unit=unit, submitter=submitter,
                   report_date=report_date, extra_columns=extra_columns or {}, **fields)
    cl.rows = [Row(first_row + i, cells, dict(extras[i]) if i < len(extras) else {}) for i, cells in enumerate(rows)]
    return cl


def check(cl: Checklist, dept=SCJGJ, period="2026-11", today=TODAY, severity=None) -> rules.Checked:
    return rules.check(cl, rules.Context(dept, period, today, severity or {}, DEPARTMENTS))


def found(checked: rules.Checked) -> list[tuple]:
    return [(p.code, p.severity, p.row, p.column) for p in checked.problems]


def test_a_good_checklist_has_no_problem():
    checked = check(make(good(), good(entity="张某", matter="个体工商户登记", date="2026.11.9", measure="无")))
    assert checked.problems == [] and checked.accepted
    assert checked.dates == {7: dt.date(2026, 11, 3), 8: dt.date(2026, 11, 9)}


def test_every_problem_is_located_and_coded():
    cl = make(good(entity="", date=9.2, measure=None), good())
    checked = check(cl)
    for p in checked.problems:
        assert p.sheet == "情况清单" and p.row == 7 and p.column in "ABCDE" and p.code in rules.DEFAULT_SEVERITY
        assert p.message.startswith("工作表“情况清单”第7行“") and f"（{p.column}7）：" in p.message
        assert p.message.endswith("。") and "请" in p.message  # says how to fix it
    assert found(checked) == [("entity_empty", "error", 7, "A"), ("measure_empty", "warning", 7, "E"),
                              ("date_bare_number", "error", 7, "C")]


# ---------------------------------------------------------------- dates

@pytest.mark.parametrize(("cell", "expected"), [
    (dt.datetime(2026, 11, 3), dt.date(2026, 11, 3)),
    (dt.date(2026, 11, 3), dt.date(2026, 11, 3)),
    ((dt.date(2026, 11, 3) - dt.date(1899, 12, 30)).days, dt.date(2026, 11, 3)),  # Excel serial 46329
    (46329.5, dt.date(2026, 11, 3)),  # a serial with a time of day
    ("2026.11.3", dt.date(2026, 11, 3)),
    ("2026年11月5日", dt.date(2026, 11, 5)),
    ("2026年11月5号", dt.date(2026, 11, 5)),
    ("2026/11/09", dt.date(2026, 11, 9)),
    ("2026-11-12", dt.date(2026, 11, 12)),
    ("20261116", dt.date(2026, 11, 16)),
    (20261116, dt.date(2026, 11, 16)),
    ("２０２６．１１．３", dt.date(2026, 11, 3)),
    ("２０２６年１１月１８日", dt.date(2026, 11, 18)),
    (" 2026 年 11 月 5 日 ", dt.date(2026, 11, 5)),
    ("11月5日", dt.date(2026, 11, 5)),  # the year comes from 报送日期
    ("11月5号", dt.date(2026, 11, 5)),
])
def test_dates_in_every_form_are_read(cell, expected):
    checked = check(make(good(date=cell)))
    assert checked.problems == []
    assert checked.dates[7] == expected


def test_year_less_date_takes_the_year_of_the_report_date_not_of_the_period():
    # Filed for 2025-11 (subject) but dated 2026: the year is the 报送日期's, so the date is outside.
    checked = check(make(good(date="11月5日"), report_date="2026年11月20日"), period="2025-11")
    assert checked.dates[7] == dt.date(2026, 11, 5)
    assert found(checked) == [("date_outside_period", "warning", 7, "C")]


def test_year_less_december_date_in_a_january_report_is_last_year():
    checked = check(make(good(date="12月28日"), report_date="2027年1月5日"), period="2026-12", today=dt.date(2027, 1, 5))
    assert checked.dates[7] == dt.date(2026, 12, 28) and checked.problems == []


def test_year_less_date_without_report_date_takes_the_year_of_the_period():
    checked = check(make(good(date="11月5日"), report_date=None))
    assert checked.dates[7] == dt.date(2026, 11, 5) and [p.code for p in checked.problems] == ["report_date_missing"]


@pytest.mark.parametrize(("cell", "code", "severity", "says"), [
    (None, "date_empty", "error", "日期未填写。请填写完整日期，如“2026年11月5日”或“2026-11-05”。"),
    ("  ", "date_empty", "error", "日期未填写。"),
    (9.2, "date_bare_number", "error",
     "“9.2”是一个数字而不是日期，无法确定年月日（单元格里输入的“9.20”会被存成数字9.2），"
     "请写成“2026年9月20日”这样的完整日期（系统不会猜测日期，请确认实际日期）。"),
    ("9.2", "date_bare_number", "error", "“9.2”是一个数字而不是日期"),
    (11.5, "date_bare_number", "error", "“11.5”是一个数字而不是日期"),
    (dt.datetime(1900, 1, 9), "date_bare_number", "error", "“9”是一个数字而不是日期"),  # 9.2 in a date-formatted cell
    ("2026年2月30日", "date_not_exist", "error", "2026年2月30日这一天不存在，请核对月份和日后填写正确的日期。"),
    ("2026-11-31", "date_not_exist", "error", "2026年11月31日这一天不存在"),
    ("11月31日", "date_not_exist", "error", "2026年11月31日这一天不存在"),
    ("上周五", "date_unparsed", "error", "无法把“上周五”识别为日期。请填写完整日期"),
    ("2026年11月", "date_unparsed", "error", "无法把“2026年11月”识别为日期。"),
    ("2026-11-21", "date_future", "error", "日期2026-11-21晚于今天（2026-11-20），请核对后填写实际使用信用记录的日期。"),
    (dt.datetime(2027, 1, 1), "date_future", "error", "日期2027-01-01晚于今天"),
    ("2026-10-31", "date_outside_period", "warning",
     "日期2026-10-31不在本次报送所属的2026年11月内，请核对；如为补报其他月份，请在邮件主题中注明月份（如“2026年10月”）。"),
    ("2025.11.3", "date_outside_period", "warning", "日期2025-11-03不在本次报送所属的2026年11月内"),
])
def test_bad_dates(cell, code, severity, says):
    checked = check(make(good(date=cell)))
    [problem] = checked.problems
    assert (problem.code, problem.severity, problem.row, problem.column) == (code, severity, 7, "C")
    assert problem.message.startswith("工作表“情况清单”第7行“日期”列（C7）：" + says)
    assert checked.accepted is (severity == "warning")
    assert (checked.dates[7] is None) is (code not in ("date_future", "date_outside_period"))


def test_today_is_not_the_future():
    assert check(make(good(date=TODAY))).problems == []


# ---------------------------------------------------------------- required cells

@pytest.mark.parametrize(("name", "code", "column", "says"), [
    ("entity", "entity_empty", "A", "市场主体（自然人）名称未填写，请填写企业或个人名称。"),
    ("matter", "matter_empty", "B", "行政管理事项名称未填写，请填写所办理的事项名称（如“食品经营许可证核发”）。"),
    ("usage", "usage_empty", "D", "使用信用记录或报告情况未填写，请说明查询渠道和查询结果（如“经信用中国查询，无失信记录”）。"),
])
def test_required_cells(name, code, column, says):
    for empty in (None, "", "  \n"):
        checked = check(make(good(**{name: empty})))
        [problem] = checked.problems
        assert (problem.code, problem.severity, problem.column, problem.row) == (code, "error", column, 7)
        assert problem.message.endswith(says)
        assert not checked.accepted


def test_measure_may_be_none_but_not_empty():
    for none in ("无", "/", "—", "未采取", "正常办理"):
        assert check(make(good(measure=none))).problems == []
    checked = check(make(good(measure=None)))
    assert found(checked) == [("measure_empty", "warning", 7, "E")] and checked.accepted
    assert checked.problems[0].message.endswith("使用的激励或惩戒措施未填写；未采取措施的请填写“无”。")


# ---------------------------------------------------------------- codes

VALID_CODES = [
    "91350100M000100Y43",  # domain.md samples
    "91110000802100433B",
    "11010519491231002X",
    uscc("92130129MA0C12345"),  # 个体工商户, computed
    uscc("12130129401234567"),  # 事业单位
    id_number("13012919800229123"),  # born on a leap day
]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_codes_in_the_name_cell(code):
    for entity in (f"某公司（{code}）", f"某公司({code.lower()})", f"张某 {code}",
                   "某公司（" + code.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}) + "）"):
        checked = check(make(good(entity=entity)))
        assert checked.problems == [], entity
        assert [(c["value"], c["valid"]) for c in checked.derived[7]["codes"]] == [(code, True)]


@pytest.mark.parametrize(("code", "problem_code", "says"), [
    ("91350100M000100Y44", "uscc_invalid", "统一社会信用代码“91350100M000100Y44”有误：第18位校验码应为“3”，实为“4”。请对照营业执照核对后更正。"),
    ("91110000802100433C", "uscc_invalid", "第18位校验码应为“B”，实为“C”"),
    (wrong_check(uscc("92130129MA0C12345")), "uscc_invalid", f"第18位校验码应为“{uscc('92130129MA0C12345')[17]}”"),
    (wrong_check(id_number("13012920001231001")), "id_invalid", f"第18位校验码应为“{id_number('13012920001231001')[17]}”"),
    ("91350100M0O0100Y43", "uscc_invalid", "第11位“O”不是统一社会信用代码允许的字符（不含I、O、Z、S、V）"),
    ("110105194912310021", "id_invalid", "身份证号码“110105194912310021”有误：第18位校验码应为“X”，实为“1”。请对照身份证核对后更正。"),
    ("110105194902301234", "id_invalid", "第7-14位出生日期“19490230”不存在"),
])
def test_wrong_codes_in_the_name_cell_are_errors_that_explain_the_position(code, problem_code, says):
    checked = check(make(good(entity=f"某公司（{code}）")))
    [problem] = checked.problems
    assert (problem.code, problem.severity, problem.row, problem.column) == (problem_code, "error", 7, "A")
    assert problem.message.startswith("工作表“情况清单”第7行“市场主体（自然人）名称”列（A7）：")
    assert says in problem.message
    assert checked.derived[7]["codes"][0]["valid"] is False


def test_codes_in_the_code_column_and_extra_columns_are_located_there():
    """Through a real .xlsx: 序号, a 统一社会信用代码 column (C) and an extra 身份证号码 column (I)."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "清单"
    ws.append(["单位：", "赞皇县市场监督管理局"])
    ws.append(["报送日期：", "2026年11月20日"])
    ws.append(["序号", "市场主体（自然人）名称", "统一社会信用代码", "行政管理事项名称", "日期",
               "使用信用记录或报告情况", "使用的激励或惩戒措施", "备注", "经办人身份证号码"])
    ws.append([1, "某食品公司", "91350100M000100Y43", "食品经营许可证核发", "2026-11-03", "经信用中国查询，无失信记录",
               "告知承诺", "ZHX2026CG110300012", "11010519491231002X"])
    ws.append([2, "某建筑公司", "91350100M000100Y44", "政府采购供应商资格审查", "2026-11-05", "经信用中国查询，无失信记录",
               "无", None, "110105194912310021"])
    ws.append([3, "某餐饮店", "91350100M000100Y", "食品经营许可证核发", "2026-11-06", "经信用中国查询，无失信记录",
               "无", None, None])
    buf = io.BytesIO()
    wb.save(buf)
    cl = checklist_mod.parse(workbook.read(buf.getvalue(), "清单.xlsx", Limits()))
    checked = check(cl, severity={"submitter_missing": "off"})  # the sheet has no 报送人 row
    assert found(checked) == [("uscc_invalid", "error", 5, "C"), ("id_invalid", "error", 5, "I"),
                              ("uscc_invalid", "error", 6, "C")]
    first, second, third = checked.problems
    assert "（C5）：统一社会信用代码“91350100M000100Y44”有误：第18位校验码应为“3”，实为“4”" in first.message
    assert second.message.startswith("工作表“清单”第5行“经办人身份证号码”列（I5）：身份证号码“110105194912310021”有误：第18位校验码应为“X”")
    assert "（C6）：统一社会信用代码“91350100M000100Y”有误：应为18位，实为16位" in third.message
    # the 备注 column is not a code column: its 18-character contract number is left alone
    assert [c["value"] for c in checked.derived[4]["codes"]] == ["91350100M000100Y43", "11010519491231002X"]


def test_a_short_id_number_in_an_id_column_says_its_length():
    cl = make(good(), extras=[{"身份证号码": "1101051949123100"}], extra_columns={"身份证号码": 7})
    [problem] = check(cl).problems
    assert (problem.code, problem.column) == ("id_invalid", "G")
    assert "身份证号码“1101051949123100”有误：应为18位，实为16位" in problem.message


# ---------------------------------------------------------------- measures, channels, lists, fields

def test_derived_fields_feed_the_digests():
    cl = make(good(matter="政府采购供应商资格审查", usage="经信用中国、中国执行信息公开网查询，该公司列入失信被执行人",
                   measure="限制参与政府采购；从严审核、约谈负责人"))
    checked = check(cl)
    assert checked.problems == []
    assert checked.derived[7] == {
        "measures": [{"raw": "限制参与政府采购", "canonical": "限制参与政府采购", "kind": "惩戒"},
                     {"raw": "从严审核", "canonical": "从严审核", "kind": "惩戒"},
                     {"raw": "约谈负责人", "canonical": "其他", "kind": "其他"}],
        "channels": ["信用中国", "中国执行信息公开网"],
        "lists": ["失信被执行人"],
        "field": "政府采购",
        "codes": [],
    }
    assert check(make(good(measure="无"))).derived[7]["measures"] == [{"raw": "无", "canonical": "无", "kind": "无"}]


# ---------------------------------------------------------------- header: 单位 and 报送日期

@pytest.mark.parametrize("unit", [
    "赞皇县市场监督管理局", "县市场监管局", "赞皇县市场监督管理局（盖章）", "赞皇县 市场监督管理局",
    "河北省赞皇县市场监督管理局", "市场监督管理局", "赞皇县市场监督管理局(公章)",
])
def test_unit_matches_the_sender_by_name_or_alias(unit):
    assert check(make(good(), unit=unit)).problems == []
    assert rules.unit_matches(unit, SCJGJ)


def test_a_checklist_for_another_department_is_rejected_naming_both_units():
    checked = check(make(good(), unit="赞皇县财政局"))
    [problem] = checked.problems
    assert (problem.code, problem.severity, problem.row, problem.column) == ("unit_mismatch", "error", None, None)
    assert problem.message == (
        "工作表“情况清单”：表头“单位”填写的是“赞皇县财政局”，与发件邮箱登记的单位“赞皇县市场监督管理局”不一致，"
        "本次报送不计入“赞皇县财政局”。如确为本单位清单，请将“单位”改为“赞皇县市场监督管理局”后重新发送；"
        "如为“赞皇县财政局”的清单，请由“赞皇县财政局”使用其登记的邮箱报送。")
    assert not checked.accepted


def test_a_checklist_for_another_department_never_counts_for_it():
    """Through the decision: filed by the sender, rejected, and stored for the sender only."""
    from mailbot.decision import decide

    raw = factory.mail(sender="scjgj@example.gov.cn", attachments=(
        ("情况清单.xlsx", factory.checklist_xlsx(unit="赞皇县财政局"), factory.XLSX),))
    decision = decide(office(), raw, factory.ON_TIME)
    assert (decision.status, decision.department.id, decision.period) == ("rejected", "scjgj", "2026-11")
    [problem] = [p for p in decision.problems if p.is_error]
    assert problem.code == "unit_mismatch"
    assert "“赞皇县财政局”" in problem.message and "“赞皇县市场监督管理局”" in problem.message


def test_a_mismatch_by_alias_names_the_registered_department():
    [problem] = check(make(good(), unit="县市场监管局"), dept=CZJ).problems
    assert "“县市场监管局”即已登记的“赞皇县市场监督管理局”" in problem.message
    assert "与发件邮箱登记的单位“赞皇县财政局”不一致" in problem.message


def test_an_unknown_unit_is_a_mismatch_too():
    [problem] = check(make(good(), unit="赞皇县某某协会")).problems
    assert problem.code == "unit_mismatch"
    assert problem.message == (
        "工作表“情况清单”：表头“单位”填写的是“赞皇县某某协会”，与发件邮箱登记的单位“赞皇县市场监督管理局”不一致。"
        "如确为本单位清单，请将“单位”改为“赞皇县市场监督管理局”后重新发送；其他单位的清单请由该单位使用其登记的邮箱报送。")


def test_an_exact_match_with_another_department_beats_a_loose_one_with_the_sender():
    sender = Department(id="zfb", name="赞皇县人民政府办公室", emails=["zfb@example.gov.cn"])
    county = Department(id="zf", name="赞皇县人民政府", emails=["zf@example.gov.cn"])
    cl = make(good(), unit="赞皇县人民政府")
    [problem] = rules.check(cl, rules.Context(sender, "2026-11", TODAY, {}, (sender, county))).problems
    assert problem.code == "unit_mismatch" and "本次报送不计入“赞皇县人民政府”" in problem.message


def test_a_missing_unit_is_a_warning_and_offline_checks_do_not_compare_units():
    [problem] = check(make(good(), unit="")).problems
    assert (problem.code, problem.severity) == ("unit_missing", "warning")
    assert problem.message == "工作表“情况清单”：表头“单位”未填写，请在“单位：”后填写“赞皇县市场监督管理局”。"
    assert check(make(good(), unit="赞皇县财政局"), dept=None).problems == []
    [offline] = check(make(good(), unit=""), dept=None).problems  # `mailbot check`: no department known
    assert (offline.code, offline.severity) == ("unit_missing", "warning")
    assert offline.message == "工作表“情况清单”：表头“单位”未填写，请在“单位：”后填写本单位全称。"


@pytest.mark.parametrize("dept", [SCJGJ, None], ids=["receipt", "offline"])
def test_blank_header_fields_are_warnings_that_do_not_reject(dept):
    checked = check(make(good(), unit="", submitter="", report_date=None), dept=dept)
    assert [(p.code, p.severity, p.row, p.column) for p in checked.problems] == [
        ("unit_missing", "warning", None, None), ("submitter_missing", "warning", None, None),
        ("report_date_missing", "warning", None, None)]
    assert checked.accepted
    by_code = {p.code: p.message for p in checked.problems}
    assert by_code["submitter_missing"] == "工作表“情况清单”：表头“报送人”未填写，请在“报送人：”后填写经办人姓名，以便我办核实情况时联系。"
    assert by_code["report_date_missing"] == "工作表“情况清单”：表头“报送日期”未填写，请在“报送日期：”后填写报送当天的日期，如 2026-11-05。"
    assert check(make(nil_report=True, unit="", submitter=""), dept=dept).accepted  # a nil report too


@pytest.mark.parametrize(("severity", "expected"), [
    ({"submitter_missing": "error"}, [("submitter_missing", "error")]),
    ({"submitter_missing": "off", "report_date_missing": "off"}, []),
])
def test_blank_header_fields_are_configurable_like_the_others(severity, expected):
    checked = check(make(good(), submitter="", report_date=None), severity={"report_date_missing": "off", **severity})
    assert [(p.code, p.severity) for p in checked.problems] == expected
    assert checked.accepted is (expected == [] or expected[0][1] != "error")


@pytest.mark.parametrize(("value", "expected"), [
    (dt.datetime(2026, 11, 20), dt.date(2026, 11, 20)),
    ("2026年11月20日", dt.date(2026, 11, 20)),
    ("２０２６.１１.２０", dt.date(2026, 11, 20)),
    ((dt.date(2026, 11, 20) - dt.date(1899, 12, 30)).days, dt.date(2026, 11, 20)),
    (None, None),
])
def test_report_date_is_parsed(value, expected):
    cl = make(good(), report_date=value)
    assert rules.report_date(cl) == expected
    assert [p.code for p in check(cl).problems] == ([] if expected else ["report_date_missing"])


@pytest.mark.parametrize(("value", "says"), [
    ("11月20日", "报送日期“11月20日”没有写年份。请填写完整日期"),
    ("上旬", "报送日期无法把“上旬”识别为日期。"),
    (11.2, "报送日期“11.2”是一个数字而不是日期"),
])
def test_an_unreadable_report_date_is_a_warning(value, says):
    checked = check(make(good(), report_date=value))
    [problem] = checked.problems
    assert (problem.code, problem.severity, problem.row) == ("report_date_unparsed", "warning", None)
    assert problem.message.startswith("工作表“情况清单”：" + says)
    assert checked.accepted


# ---------------------------------------------------------------- duplicates, empty tables

def test_duplicate_rows_are_a_warning_located_on_the_later_row():
    checked = check(make(good(), good(entity="张某"), good(date="2026年11月3日")))
    assert found(checked) == [("duplicate_row", "warning", 9, "A")]
    assert checked.problems[0].message.endswith("本行与第7行内容完全相同，请确认是否重复填写；如确属重复，请删除其中一行。")
    # the same company and matter with another code or on another day is not a duplicate
    assert check(make(good(), good(date="2026-11-04"))).problems == []
    assert check(make(good(), good(), extras=[{"身份证号码": "11010519491231002X"}, {"身份证号码": id_number("13012919800229123")}],
                      extra_columns={"身份证号码": 6})).problems == []


def test_an_empty_table_is_an_error_but_a_nil_report_is_not():
    [problem] = check(make()).problems
    assert (problem.code, problem.severity, problem.row, problem.column) == ("empty_checklist", "error", 7, "A")
    assert "本月无使用信用记录和信用报告情况" in problem.message
    assert check(make(nil_report=True)).problems == []


def test_reader_problems_get_the_configured_severity():
    cl = make(good())
    cl.problems.append(Problem("missing_column", "表头缺少“日期”列，请按模板补齐该列后重新发送。", sheet="情况清单", row=6))
    assert found(check(cl)) == [("missing_column", "error", 6, None)]
    assert found(check(cl, severity={"missing_column": "warning"})) == [("missing_column", "warning", 6, None)]
    assert found(check(cl, severity={"missing_column": "off"})) == []


# ---------------------------------------------------------------- severity from config

def office(severity: dict | None = None) -> config.OfficeConfig:
    data = {"office": {"name": "赞皇县社会信用体系建设领导小组办公室", "address": "office@example.test"},
            "imap": {"host": "127.0.0.1", "user": "office"}, "smtp": {"host": "127.0.0.1"},
            "departments": factory.DEPARTMENTS}
    if severity is not None:
        data["rules"] = {"severity": severity}
    return config.parse(data).offices[0]


@pytest.mark.parametrize(("severity", "expected", "accepted"), [
    (None, [("date_bare_number", "error"), ("date_outside_period", "warning")], False),
    ({"date_bare_number": "warning"}, [("date_bare_number", "warning"), ("date_outside_period", "warning")], True),
    ({"date_bare_number": "off"}, [("date_outside_period", "warning")], True),
    ({"date_bare_number": "off", "date_outside_period": "error"}, [("date_outside_period", "error")], False),
    ({"date_outside_period": "off", "date_bare_number": "off"}, [], True),
])
def test_severity_comes_from_config(severity, expected, accepted):
    cfg = office(severity)
    checked = check(make(good(date=9.2), good(date="2026-10-31")), severity=cfg.rules.severity)
    assert [(p.code, p.severity) for p in checked.problems] == expected
    assert checked.accepted is accepted


def test_defaults_cover_every_code_and_are_sensible():
    assert set(rules.DEFAULT_SEVERITY.values()) == {"error", "warning"}
    warnings = {c for c, s in rules.DEFAULT_SEVERITY.items() if s == "warning"}
    assert warnings == {"measure_empty", "date_outside_period", "unit_missing", "submitter_missing", "report_date_missing",
                        "report_date_unparsed", "duplicate_row"}


# ---------------------------------------------------------------- the reporting period

@pytest.mark.parametrize(("subject", "report_date", "received", "expected"), [
    ("2026年11月信用记录使用情况清单", dt.datetime(2026, 12, 1), dt.date(2026, 12, 2), ("2026-11", "subject")),
    ("补报2026-10情况清单", None, dt.date(2026, 11, 20), ("2026-10", "subject")),
    ("11月份情况清单", dt.datetime(2026, 12, 1), dt.date(2026, 12, 2), ("2026-11", "subject")),
    ("12月份情况清单", None, dt.date(2027, 1, 5), ("2026-12", "subject")),  # year-less: the nearest past December
    ("情况清单", dt.datetime(2026, 10, 30), dt.date(2026, 11, 2), ("2026-10", "report_date")),
    ("情况清单", "2026年10月30日", dt.date(2026, 11, 2), ("2026-10", "report_date")),
    ("情况清单", None, dt.date(2026, 11, 2), ("2026-11", "received")),
    ("情况清单", "11月20日", dt.date(2026, 11, 20), ("2026-11", "received")),  # unreadable 报送日期
    ("情况清单", dt.datetime(2026, 12, 20), dt.date(2026, 11, 20), ("2026-11", "received")),  # dated after arrival
    ("2026年11月5日报送", None, dt.date(2026, 12, 1), ("2026-12", "received")),  # a date is not a month
])
def test_reporting_period_subject_then_report_date_then_received(subject, report_date, received, expected):
    assert rules.reporting_period(subject, make(good(), report_date=report_date), received) == expected


def test_reporting_period_without_a_checklist():
    assert rules.reporting_period("回复：通知", None, dt.date(2026, 11, 20)) == ("2026-11", "received")
    assert rules.reporting_period("10月份清单", None, dt.date(2026, 11, 20)) == ("2026-10", "subject")


def test_rows_of_other_months_summarised_in_one_problem():
    from mailbot.errors import Problem

    def late(row):
        return Problem("date_outside_period", f"第{row}行……", "warning", "清单", row, "C")
    other = Problem("measure_empty", "措施未填写", "warning", "清单", 3, "E")
    days = {r: dt.date(2026, 10 if r < 15 else 9, 1) for r in range(2, 20)}
    [summary, kept] = rules.summarise_other_months([late(r) for r in range(2, 14)] + [other], days, "2026-11")
    assert kept == other and summary.row is None and summary.severity == "warning"
    assert "有12行记录的日期不在本次报送所属的2026年11月内：2026年10月12行（第2、3、4、5、6、7、8、9、10、11行等）" in summary.message
    assert rules.summarise_other_months([late(2), other], days, "2026-11") == [late(2), other]  # one row: as it is
