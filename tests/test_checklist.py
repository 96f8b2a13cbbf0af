"""Reading every checklist departments send: golden files, hostile files through `mailbot check`,
and random sheets that must give rows or problems, never an exception.

Golden files live in tests/data/checklists/ (inputs from make_checklists.py): each input beside
`<name>.expected.json`, the parse a person checked by hand. The JSON holds a subset of
`mailbot check --json` (for .eml: of the decision); only the keys it names are compared.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import struct
import types
import zipfile
import zlib
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbot import checklist, config as config_mod, decision as decision_mod, rules
from mailbot.cli import main
from mailbot.config import Limits
from mailbot.errors import Rejected
from mailbot.verdict import verdict
from mailbot.workbook import Sheet, Workbook, read
from tests import factory

DATA = Path(__file__).parent / "data" / "checklists"
TODAY = dt.date(2026, 11, 25)
ROW_KEYS = ("row", "entity", "matter", "date", "usage", "measure")
PROBLEM_KEYS = ("sheet", "row", "column", "code", "severity")
INPUTS = sorted(p.name for p in DATA.iterdir() if not p.name.endswith(".expected.json"))


def expected(name: str) -> dict:
    return json.loads((DATA / f"{name}.expected.json").read_text(encoding="utf-8"))


def view(result: dict, keys) -> dict:
    """The part of a result the golden file names; rows and problems cut to their golden keys."""
    out = {k: result.get(k) for k in keys}
    if "rows" in out:
        out["rows"] = [{k: r[k] for k in ROW_KEYS} for r in result["rows"]]
    if "problems" in out:
        out["problems"] = [{k: p[k] for k in PROBLEM_KEYS} for p in result["problems"]]
    return out


def office():
    account, smtp = types.SimpleNamespace(port=1143, user="office"), types.SimpleNamespace(port=1025)
    return config_mod.parse(factory.config_dict(account, smtp, Path("/nonexistent"))).office()


def decision_view(decision: decision_mod.Decision) -> dict:
    """A decision in the shape of `mailbot check --json`, plus where the mail went."""
    parsed, checked = decision.checklist, decision.checked
    out = {"status": decision.status, "kind": decision.kind, "filename": decision.filename,
           "department": decision.department.id if decision.department else None,
           "period": decision.period, "period_source": decision.period_source,
           "problems": [p.as_dict() for p in decision.problems], "rows": []}
    if parsed is not None:
        day = rules.report_date(parsed)
        out.update(unit=parsed.unit, submitter=parsed.submitter, report_date=day.isoformat() if day else None,
                   nil_report=parsed.nil_report, sheet=parsed.sheet, header_row=parsed.header_row)
        for row in parsed.rows:
            date = checked.dates.get(row.row_no)
            out["rows"].append({"row": row.row_no, "entity": row.text("entity"), "matter": row.text("matter"),
                                "date": date.isoformat() if date else None, "usage": row.text("usage"),
                                "measure": row.text("measure")})
    out["others"] = [{"status": o.status, "filename": o.filename, "period": o.period, "period_source": o.period_source,
                      "sheet": o.checklist.sheet, "rows": len(o.checklist.rows),
                      "problems": [p.code for p in o.problems]} for o in decision.others]
    out["notes"] = decision.notes
    return out


# ---------------------------------------------------------------- golden files

def test_every_input_has_its_golden_file_and_the_generator_knows_it():
    import sys

    sys.path.insert(0, str(DATA.parent))
    from make_checklists import FIXTURES

    assert sorted(FIXTURES) == INPUTS
    assert len(INPUTS) >= 27
    for name in INPUTS:
        assert (DATA / f"{name}.expected.json").exists(), name


@pytest.mark.parametrize("name", [n for n in INPUTS if not n.endswith(".eml")])
def test_golden_checklist(name):
    want = expected(name)
    got = verdict((DATA / name).read_bytes(), name, None, today=TODAY)
    assert view(got, want) == want


@pytest.mark.parametrize("name", [n for n in INPUTS if n.endswith(".eml")])
def test_golden_mail(name):
    want = expected(name)
    decision = decision_mod.decide(office(), (DATA / name).read_bytes(), factory.ON_TIME)
    assert view(decision_view(decision), want) == want


def test_forwarded_checklist_is_found_inside_the_attached_message():
    decision = decision_mod.decide(office(), (DATA / "forwarded.eml").read_bytes(), factory.ON_TIME)
    [attachment] = decision.mail.attachments
    assert attachment.forwarded and attachment.filename == "市场监管局11月清单.xlsx"
    assert decision.checklist.rows[0].cells["code"] == "91350100M000100Y43"
    assert decision.checklist.rows[0].extras == {"备注": "已办结"}


def test_pdf_scan_beside_the_workbook_is_ignored():
    decision = decision_mod.decide(office(), (DATA / "with_scan.eml").read_bytes(), factory.ON_TIME)
    assert [a.filename for a in decision.mail.attachments] == ["盖章扫描件.pdf", "情况清单.xlsx"]
    assert decision.status == "accepted" and decision.filename == "情况清单.xlsx"
    assert not any("pdf" in p.message.lower() for p in decision.problems)


def test_scan_photo_or_word_97_instead_of_the_table_are_named_in_the_receipt():
    for name, words in (("doc_only.eml", ["Word 97-2003文档（.doc）"]), ("scan_only.eml", ["PDF文件", "是图片"])):
        decision = decision_mod.decide(office(), (DATA / name).read_bytes(), factory.ON_TIME)
        assert decision.status == "rejected" and decision.kind == "no_checklist" and decision.attach_template
        assert decision.reason == "not_a_table"
        assert [any(w in p.message for p in decision.problems) for w in words] == [True] * len(words)
        assert not any("损坏" in p.message for p in decision.problems)


def test_a_picture_in_the_body_is_not_a_file_to_talk_about():
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "scjgj@example.gov.cn", "office@example.test", "2026年11月情况清单"
    msg["Message-ID"] = "<inline-1@example.gov.cn>"
    msg.set_content("附件为本单位情况清单。")
    msg.add_alternative('<p>附件为本单位情况清单。<img src="cid:logo1"></p>', subtype="html")
    msg.get_payload()[1].add_related(b"\x89PNG\r\n\x1a\n" + bytes(32), "image", "png", cid="<logo1>", filename="image001.png",
                                    disposition="inline")  # as Outlook sends a signature logo
    decision = decision_mod.decide(office(), msg.as_bytes(), factory.ON_TIME)
    assert [a.inline for a in decision.mail.attachments] == [True]
    assert [p.code for p in decision.problems] == ["no_checklist"]  # forgot the file: not "your picture is no table"


# ---------------------------------------------------------------- parse details

def sheet(*rows, merged=(), name="清单", hidden=False) -> Sheet:
    return Sheet(name, [tuple(r) for r in rows], list(merged), hidden)


def parse(*sheets: Sheet) -> checklist.Checklist:
    return checklist.parse(Workbook("xlsx", list(sheets)))


TITLE = "行政管理事项中使用信用记录和信用报告的情况清单"
HEADER = ("市场主体（自然人）名称", "行政管理事项名称", "日期", "使用信用记录或报告情况", "使用的激励或惩戒措施")
ROW = ("赞皇县某公司", "食品经营许可证核发", "2026-11-03", "经信用中国查询，无失信记录", "无")


@pytest.mark.parametrize("title, field", [
    ("市场主体（自然人）名称", "entity"), ("市场主体(自然人)\n名称", "entity"), ("市场主体名称", "entity"),
    ("企业名称", "entity"), ("*市场主体名称", "entity"), ("行政管理事项名称", "matter"), ("事项名称", "matter"),
    ("日　期", "date"), ("日期（年月日）", "date"), ("使用日期", "date"), ("使用信用记录日期", "date"),
    ("事项办理时间", "date"), ("名称", "entity"), ("使用信用记录或\n报告情况", "usage"),
    ("使用的激励或惩戒措施", "measure"), ("激励惩戒措施", "measure"), ("序号", "seq"), ("统一社会信用代码", "code"),
    ("统一社会信用代码（身份证号）", "code"), ("市场主体名称及统一社会信用代码", "entity"),
    ("备注", None), ("报送日期", None), ("单位：赞皇县财政局", None), (TITLE, None),
    ("当月无相关情况的，请在表格第一行填写本月无使用信用记录和信用报告情况", None), (None, None), (46329, None),
])
def test_column_names_and_their_variants(title, field):
    assert checklist.column_field(title) == field


@pytest.mark.parametrize("cells, unit, submitter, report_date", [
    ([("单位：赞皇县财政局",), ("报送人：王五",), ("报送日期：2026年11月20日",)], "赞皇县财政局", "王五", "2026年11月20日"),
    ([("单位：", "赞皇县财政局"), ("报送人：", None, "王五"), ("报送日期：", dt.datetime(2026, 11, 20))],
     "赞皇县财政局", "王五", dt.datetime(2026, 11, 20)),
    ([("单位：赞皇县财政局  报送人：王五\n报送日期：2026.11.20",)], "赞皇县财政局", "王五", "2026.11.20"),
    ([("单 位", "赞皇县财政局", "报送人：", "王五", "报送日期：", "2026-11-20")], "赞皇县财政局", "王五", "2026-11-20"),
    ([("填报单位（盖章）：赞皇县财政局",), ("填报人：王五  联系电话：0311-1234567",)], "赞皇县财政局", "王五", None),
    ([("单位：", "报送人：", "王五"), ("报送日期：   年  月  日",)], "", "王五", None),  # blank 单位, blank form date
])
def test_header_fields_wherever_they_stand(cells, unit, submitter, report_date):
    parsed = parse(sheet((TITLE,), *cells, HEADER, ROW))
    assert (parsed.unit, parsed.submitter, parsed.report_date) == (unit, submitter, report_date)
    assert [r.row_no for r in parsed.rows] == [len(cells) + 3]


@pytest.mark.parametrize("nil", [
    "本月无使用信用记录和信用报告情况", "本月无使用信用记录和信用报告情况。", "无", "本月未使用信用记录和信用报告",
    "本月无", "2026年11月无使用信用记录和信用报告情况", "本单位本月无相关情况", "11月份无使用信用记录和信用报告的情况",
    "／",
])
def test_nil_report_sentences(nil):
    parsed = parse(sheet(("单位：赞皇县财政局",), HEADER, (nil,), merged=[(3, 1, 3, 5)]))
    assert parsed.nil_report and parsed.rows == [] and parsed.problems == []


@pytest.mark.parametrize("row", [
    ("无锡某公司",), ("无失信记录",), (None, None, None, "无不良记录", "无"),
    ("注：当月无相关情况的，请在表格第一行填写“本月无使用信用记录和信用报告情况”",),
])
def test_not_nil_reports(row):
    parsed = parse(sheet(HEADER, row))
    assert not parsed.nil_report


def test_nil_sentence_merged_over_several_rows():
    parsed = parse(sheet(HEADER, ("本月无使用信用记录和信用报告情况",), (), (), merged=[(2, 1, 4, 5)]))
    assert parsed.nil_report and parsed.rows == []


def test_nil_row_among_real_rows_is_a_row():
    parsed = parse(sheet(HEADER, ROW, ("本月无使用信用记录和信用报告情况",)))
    assert not parsed.nil_report and [r.row_no for r in parsed.rows] == [2, 3]


def test_instructions_quoting_the_nil_sentence_are_no_nil_report():
    text = "当月无相关情况的，请在表格第一行填写“本月无使用信用记录和信用报告情况”，并按时报送。"
    with pytest.raises(Rejected) as info:
        parse(sheet((text,), name="Sheet1"))
    assert info.value.attach_template and [p.code for p in info.value.problems] == ["wrong_template"]
    with pytest.raises(Rejected):  # only a bare placeholder, no table: not a statement either
        parse(sheet(("单位：赞皇县财政局",), ("无",)))


def test_hidden_and_instruction_sheets_are_a_last_resort():
    old = sheet(HEADER, ("旧公司", *ROW[1:]), name="10月", hidden=True)
    assert parse(old).sheet == "10月"  # nothing else: read it
    assert parse(old, sheet(("单位：x",), HEADER, ROW, name="11月")).sheet == "11月"
    assert parse(sheet(HEADER, ROW, name="填报说明"), sheet(HEADER, ROW, name="Sheet2")).sheet == "Sheet2"


def test_best_header_wins_and_partial_header_names_missing_columns():
    parsed = parse(sheet(("其他", "日期", "事项名称"), HEADER[:2] + HEADER[3:], ROW[:2] + ROW[3:]))
    assert parsed.header_row == 2
    assert [(p.code, p.row) for p in parsed.problems] == [("missing_column", 2)]
    assert "“日期”列" in parsed.problems[0].message


def test_header_over_two_rows_with_a_group_title():
    upper = ("序号", "市场主体\n（自然人）名称", "行政管理事项名称", "信用记录和信用报告使用", None, None, "备 注")
    lower = (None, None, None, "日　期", "使用信用记录或\n报告情况", "使用的激励或惩戒措施", None)
    parsed = parse(sheet(("单位：赞皇县财政局",), upper, lower, (1, *ROW, "已办结"),
                         merged=[(2, 1, 3, 1), (2, 2, 3, 2), (2, 3, 3, 3), (2, 4, 2, 6), (2, 7, 3, 7)]))
    assert (parsed.header_top, parsed.header_row) == (2, 3) and parsed.problems == []
    assert parsed.columns == {"seq": 1, "entity": 2, "matter": 3, "date": 4, "usage": 5, "measure": 6}
    assert [r.row_no for r in parsed.rows] == [4] and parsed.rows[0].extras == {"备注": "已办结"}
    assert parsed.unit == "赞皇县财政局"


def test_a_data_row_under_a_group_title_is_data():
    """Values under titles of their own: the row under the header is the first data row."""
    upper = (*HEADER[:3], "信用记录或报告情况及措施", None)
    row = ("赞皇县某公司", "食品经营许可证核发", "2026-11-03", "使用信用记录或报告情况", "无")
    parsed = parse(sheet(upper, row, merged=[(1, 4, 1, 5)]))
    assert parsed.header_row == 1 and [r.row_no for r in parsed.rows] == [2]
    assert [p.code for p in parsed.problems] == ["missing_column"]  # 措施 is truly missing: said so


def test_extra_columns_keep_their_titles_and_positions():
    parsed = parse(sheet(("序号", *HEADER, "备注", "备注", None), (1, *ROW, "甲", "乙", "丙")))
    [row] = parsed.rows
    assert row.extras == {"备注": "甲", "备注（H列）": "乙", "I": "丙"}
    assert parsed.extra_columns == {"备注": 7, "备注（H列）": 8, "I": 9}
    assert "seq" not in row.cells and row.cells["entity"] == ROW[0]


def test_vertical_merge_in_the_table_fills_down():
    parsed = parse(sheet(HEADER, ROW, (None, "招标投标资格审查", "2026-11-04", "同上", "无"), merged=[(2, 1, 3, 1)]))
    assert [r.text("entity") for r in parsed.rows] == [ROW[0], ROW[0]]


def test_rows_after_a_note_that_hold_one_value_are_notes():
    parsed = parse(sheet(HEADER, ROW, ("注：",), ("1.本表每月25日前报送；",), ("2.日期填写完整。",)))
    assert [r.row_no for r in parsed.rows] == [2]


# ---------------------------------------------------------------- which sheet: a workbook kept for the year

@pytest.mark.parametrize("name, month", [
    ("11月", (None, 11)), ("2026年11月", (2026, 11)), ("2026.11", (2026, 11)), ("2026-11", (2026, 11)),
    ("十一月", (None, 11)), ("11月份", (None, 11)), ("Nov", (None, 11)), ("November 2026", (2026, 11)),
    ("Sept", (None, 9)), ("清单.xlsx:12月", (None, 12)),
    ("Sheet1", None), ("清单", None), ("novel", None), ("2026年11月5日", None), ("填报说明", None),
])
def test_sheet_names_that_name_a_month(name, month):
    assert checklist.sheet_month(name) == month


def month_sheet(name: str, day: str, active=False, hidden=False, rows=1) -> Sheet:
    body = [("某公司", "食品经营许可证核发", day, "经信用中国查询，无失信记录", "无")] * rows
    return Sheet(name, [("单位：赞皇县财政局",), HEADER, *body], [], hidden, active)


def test_the_sheet_of_the_period_before_the_active_one_before_the_dates_before_the_first():
    oct_, nov = month_sheet("10月", "2026-10-09", active=True), month_sheet("11月", "2026-11-03")
    parsed = checklist.parse(Workbook("xlsx", [oct_, nov]), "2026-11")
    assert (parsed.sheet, parsed.sheet_reason, parsed.sheets, parsed.period) == ("11月", "period", 2, "2026-11")
    a, b = month_sheet("甲", "2026-10-09"), month_sheet("乙", "2026-11-03", active=True)
    assert checklist.parse(Workbook("xlsx", [a, b]), "2026-11").sheet_reason == "active"
    b.active = False
    dated = checklist.parse(Workbook("xlsx", [a, b]), "2026-11")
    assert (dated.sheet, dated.sheet_reason) == ("乙", "dates")  # its rows are dated in November
    assert checklist.parse(Workbook("xlsx", [a, b]), "2026-12").sheet_reason == "best"


def test_an_empty_sheet_of_the_month_is_passed_over_unless_the_subject_names_it():
    oct_, nov = month_sheet("10月", "2026-10-09", active=True), month_sheet("11月", "2026-11-03", rows=0)
    late = checklist.parse(Workbook("xlsx", [oct_, nov]), "2026-11")
    assert (late.sheet, late.period, late.problems) == ("10月", "2026-10", [])  # October, filed late
    named = checklist.parse(Workbook("xlsx", [oct_, nov]), "2026-11", firm=True)
    assert named.sheet == "11月" and named.rows == []  # the subject says November: its (empty) sheet


def test_a_sheet_of_another_month_is_never_read_silently():
    oct_ = month_sheet("10月", "2026-10-09")
    parsed = checklist.parse(Workbook("xlsx", [oct_]), "2026-11", firm=True)
    [problem] = parsed.problems
    assert problem.code == "sheet_other_month" and "2026年10月" in problem.message and parsed.period is None
    stale = checklist.parse(Workbook("xlsx", [month_sheet("10月", "2026-11-03")]), "2026-11", firm=True)
    assert stale.problems == []  # last month's file with this month's rows: the name is only stale
    guessed = checklist.parse(Workbook("xlsx", [month_sheet("10月", "2026-11-03")]), "2026-11")
    assert guessed.period is None  # nor does a stale name move the period
    assert rules.DEFAULT_SEVERITY["sheet_other_month"] == "error"


def test_the_period_from_the_sheet_comes_after_the_subject_and_before_the_report_date():
    parsed = checklist.parse(Workbook("xlsx", [month_sheet("10月", "2026-10-09"), month_sheet("11月", "2026-11-03", rows=0)]),
                             "2026-11")
    day = dt.date(2026, 11, 3)
    assert rules.reporting_period("情况清单", parsed, day) == ("2026-10", "sheet")
    assert rules.reporting_period("2026年11月情况清单", parsed, day) == ("2026-11", "subject")


# ---------------------------------------------------------------- hostile files through `mailbot check`

def check(tmp_path: Path, capsys, data: bytes, name: str) -> tuple[int, dict]:
    path = tmp_path / name
    path.write_bytes(data)
    code = main(["check", str(path), "--json"])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, json.loads(out.out)


def official() -> bytes:
    return (DATA / "template_filled.xlsx").read_bytes()


def zeros_bomb(mib: int) -> bytes:
    """template_filled.xlsx with its sheet replaced by `mib` MiB of deflated zeros (honest sizes)."""
    block = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    raw, crc = segment * mib + c.flush(), 0
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    out, central = bytearray(), bytearray()
    with zipfile.ZipFile(io.BytesIO(official())) as zf:
        infos = zf.infolist()
        for info in infos:
            body = zf.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                data, body_crc, size = raw, crc, mib << 20
            else:
                d = zlib.compressobj(9, zlib.DEFLATED, -15)
                data, body_crc, size = d.compress(body) + d.flush(), zlib.crc32(body), len(body)
            name, offset = info.filename.encode(), len(out)
            out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, body_crc, len(data), size, len(name), 0)
            out += name + data
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, body_crc, len(data), size,
                                   len(name), 0, 0, 0, 0, 0, offset) + name
    n = len(infos)
    return bytes(out + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(central), len(out), 0))


def encrypted() -> bytes:
    import msoffcrypto.format.ooxml

    out = io.BytesIO()
    msoffcrypto.format.ooxml.OOXMLFile(io.BytesIO(official())).encrypt("1234", out)
    return out.getvalue()


def xxe() -> bytes:
    """template_filled.xlsx whose sheet declares an external entity and uses it in a cell."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(official())) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                body = (b'<?xml version="1.0"?><!DOCTYPE worksheet [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                        + body.replace(b"<t>", b"<t>&e;", 1))
            dst.writestr(info, body)
    return out.getvalue()


def too_many(rows: int, columns: int) -> bytes:
    lines = ["单位：赞皇县财政局", ",".join(HEADER)] + [",".join(ROW + ("x",) * (columns - 5))] * rows
    return "\n".join(lines).encode()


RESAVE = "请在Excel或WPS中打开该文件，“另存为”.xlsx格式后重新发送。"
HOSTILE = {  # name -> (bytes, code, message)
    "encrypted": (encrypted, "加密.xlsx", "encrypted", "附件“加密.xlsx”设置了打开密码，系统无法读取，请取消文件密码后重新发送。"),
    "truncated": (lambda: official()[:5000], "截断.xlsx", "unreadable",
                  "附件“截断.xlsx”无法读取，文件可能已损坏或不是受支持的表格格式。" + RESAVE),
    "corrupt": (lambda: b"PK\x03\x04" + bytes(range(256)) * 8, "损坏.xlsx", "unreadable",
                "附件“损坏.xlsx”无法读取，文件可能已损坏或不是受支持的表格格式。" + RESAVE),
    "rows": (lambda: too_many(50_001, 5), "多行.csv", "too_many_rows",
             "附件“多行.csv”的工作表“多行”超过50000行，超出系统处理上限。请只保留本月清单内容，删除多余的行后重新发送。"),
    "columns": (lambda: too_many(3, 51), "多列.csv", "too_many_columns",
                "附件“多列.csv”的工作表“多列”超过50列，超出系统处理上限。请按模板的列填写，删除多余的列后重新发送。"),
    "zip bomb": (lambda: zeros_bomb(1024), "炸弹.xlsx", "zip_bomb",
                 "附件“炸弹.xlsx”解压后体积异常（超过100MB或压缩比例异常），系统已停止读取。请确认发送的是清单原件，" + RESAVE[1:]),
    "xxe": (xxe, "外部实体.xlsx", "unreadable",
            "附件“外部实体.xlsx”无法读取，文件可能已损坏或不是受支持的表格格式。" + RESAVE),
    "wrong template": (lambda: (DATA / "wrong_template.xlsx").read_bytes(), "通讯录.xlsx", "wrong_template",
                       "附件中未找到情况清单的表头（应包含“市场主体（自然人）名称”“行政管理事项名称”“日期”"
                       "“使用信用记录或报告情况”“使用的激励或惩戒措施”等列）。请使用随本回执附上的空白模板填写后重新发送。"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_file_gets_a_clear_problem(tmp_path, capsys, case):
    make, name, code, message = HOSTILE[case]
    exit_code, result = check(tmp_path, capsys, make(), name)
    assert exit_code == 1
    assert result["accepted"] is False and result["rows"] == []
    assert [(p["code"], p["severity"], p["message"]) for p in result["problems"]] == [(code, "error", message)]


def test_wrong_template_attaches_the_blank_template():
    with pytest.raises(Rejected) as info:
        checklist.parse(read((DATA / "wrong_template.xlsx").read_bytes(), "通讯录.xlsx", Limits()))
    assert info.value.attach_template is True
    decision = decision_mod.decide(office(), factory.mail(attachments=(
        ("通讯录.xlsx", (DATA / "wrong_template.xlsx").read_bytes(), factory.XLSX),)), factory.ON_TIME)
    assert decision.status == "rejected" and decision.attach_template


def test_check_exit_codes(tmp_path, capsys):
    assert main(["check", str(tmp_path / "没有这个文件.xlsx"), "--json"]) == 2
    assert "文件不存在" in capsys.readouterr().err
    code, result = check(tmp_path, capsys, official(), "清单.xlsx")
    assert code == 0 and result["accepted"] and len(result["rows"]) == 3


# ---------------------------------------------------------------- property: never an exception

_HEADERISH = st.sampled_from([*HEADER, "序号", "统一社会信用代码", "备注", "日 期", "市场主体名称", "事项名称", "单位：",
                              "报送人：", "报送日期：", "单位：赞皇县财政局 报送人：王五", "注：", "本月无使用信用记录和信用报告情况",
                              "无", "/", "1", "2026-11-03", "9.2", "11月5日", "91350100M000100Y43", "11010519491231002X"])
_CELL = st.one_of(
    st.none(), _HEADERISH, st.text(max_size=12),
    st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)),
    st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2100, 1, 1)), st.times(),
)
_ROWS = st.lists(st.lists(_CELL, max_size=8).map(tuple), max_size=12)


@st.composite
def _sheets(draw):
    rows = draw(_ROWS)
    if draw(st.booleans()):  # a header somewhere, so that the data rows are read too
        header = draw(st.permutations([*HEADER, "序号", "备注", None]))[:draw(st.integers(2, 8))]
        rows.insert(draw(st.integers(0, len(rows))), tuple(header))
    merged = draw(st.lists(st.tuples(st.integers(1, 14), st.integers(1, 9), st.integers(0, 3), st.integers(0, 3))
                           .map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3])), max_size=3))
    return Sheet(draw(st.sampled_from(["清单", "填报说明", "Sheet1", "a.xlsx:表"])), rows, merged, draw(st.booleans()))


def _check(book: Workbook) -> None:
    try:
        parsed = checklist.parse(book)
    except Rejected as exc:
        assert exc.problems and all(p.message for p in exc.problems)
        return
    ctx = rules.Context(department=None, period="2026-11", today=TODAY)
    checked = rules.check(parsed, ctx)
    assert all(p.code and p.message for p in checked.problems)
    assert set(checked.dates) == {r.row_no for r in parsed.rows}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_sheets(), min_size=1, max_size=3))
def test_random_sheets_give_rows_or_problems(sheets):
    _check(Workbook("xlsx", sheets))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ROWS, st.lists(st.sampled_from(["A1:E1", "A2:B2", "B3:B5", "A6:F6", "C4:C9"]), max_size=3, unique=True))
def test_random_xlsx_files_give_rows_or_problems(rows, merges):
    wb = openpyxl.Workbook()
    ws = wb.active
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row, start=1):
            if isinstance(value, str):
                value = "".join(ch for ch in value if ch.isprintable())  # openpyxl refuses control characters
            if isinstance(value, float) and value != value or value in (float("inf"), float("-inf")):
                value = None  # xlsx has no NaN or infinity
            if isinstance(value, dt.date) and value.year < 1900:
                value = None  # nor dates before its epoch
            ws.cell(r, c, value)
    for ref in merges:
        ws.merge_cells(ref)
    buf = io.BytesIO()
    wb.save(buf)
    try:
        book = read(buf.getvalue(), "随机.xlsx", Limits())
    except Rejected:
        return
    _check(book)


_CODEISH = st.text(alphabet=st.sampled_from("0123456789XABCDGMN１２３９Ｘ 　赞皇县（）()，-·①²"), max_size=40)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_CODEISH, st.sampled_from(["91350100M000100Y43", "11010519491231002X", "张三", "公司"])),
                max_size=5).map("".join))
def test_code_prefilter_never_hides_a_code(value):
    """rules.may_hold_code lets check and verdict skip codes.find_codes: it must never skip a code."""
    from mailbot import codes

    if codes.find_codes(value):
        assert rules.may_hold_code(value)
    assert rules.may_hold_code("张三11010519491231002X") and not rules.may_hold_code("赞皇县第123号商贸有限公司")


def test_codes_with_spaces_full_width_or_lower_case_are_found_and_checked():
    result = verdict((DATA / "codes_spaced.xlsx").read_bytes(), "codes_spaced.xlsx", None, today=TODAY)
    found = {r["row"]: [(c["kind"], c["value"], c["valid"]) for c in r["codes"]] for r in result["rows"]}
    assert found == {6: [("uscc", "91350100M000100Y43", True)], 7: [("uscc", "91110000802100433B", True)],
                     8: [("id", "110105********002X", True)], 9: [("uscc", "91350100M000100Y44", False)],
                     10: [("id", "110105********0021", False)]}
