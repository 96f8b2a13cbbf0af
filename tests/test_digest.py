"""Digests and the export: a November walked through the real intake path (Dovecot, SMTP
capture, SQLite), then the workbook, the mail and the files read back and checked against the
database."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
import types
from collections import Counter

import docx
import openpyxl
import pytest
import time_machine

from mailbot import codes, digest, export, obligations, report, runner, store
from mailbot.cli import main
from mailbot.models import Message, Outgoing, Row
from mailbot.status import status
from tests import factory

CST = factory.CST
PERIOD = "2026-11"
NOW = dt.datetime(2026, 11, 27, 11, 0, tzinfo=CST)  # the day after the notice day, after czj's late filing
DIGEST_TO = ["office@example.test", "leader@example.test"]
DEPARTMENTS = factory.DEPARTMENTS + [{"id": "jyj", "name": "赞皇县教育局", "emails": ["jyj@example.gov.cn"]}]
ID_NUMBER = "11010519491231002X"
MASKED = codes.mask_id(ID_NUMBER)
HOSTILE = ['=HYPERLINK("http://evil.example/x","点击查看")', "+1 食品经营许可证核发", "-1 经信用中国查询，无失信记录",
           "@SUM(A1)"]
ROWS = [
    (HOSTILE[0], HOSTILE[1], dt.date(2026, 11, 3), HOSTILE[2], "告知承诺"),
    (f"张某（{ID_NUMBER}）", "个体工商户登记", "2026.11.9",
     f"经国家企业信用信息公示系统查询，身份证号{ID_NUMBER}无异常", HOSTILE[3]),
    ("赞皇县某建筑有限公司", "政府采购供应商资格审查", "2026年11月5日",
     "经信用中国、中国执行信息公开网查询，该公司列入失信被执行人", "限制参与政府采购、从严审核"),
]
BAD_ROWS = [("", "食品经营许可证核发", "2026-11-03", "经信用中国查询，无失信记录", "无")]
SHEETS = ["汇总", "报送情况", "年度报送情况", "统计", "图表", "分单位统计"]
UNMASKED_ID = re.compile(r"(?<![0-9*])[0-9]{17}[0-9Xx](?![0-9])")


def hostile_xlsx(rows, unit) -> bytes:
    """The official template filled with text cells, so `=...` arrives as text, not a formula."""
    wb = openpyxl.load_workbook(io.BytesIO(factory.checklist_xlsx([], unit=unit)))
    ws = wb["情况清单"]
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            cell = ws.cell(7 + i, 1 + j, value)
            if isinstance(value, str):
                cell.data_type = "s"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def arrive(setup, sender, rows, unit, at, message_id):
    data = hostile_xlsx(rows, unit)
    setup.account.append(factory.mail(sender=sender, date=at, message_id=message_id,
                                      attachments=(("情况清单.xlsx", data, factory.XLSX),)), date=at)


@pytest.fixture
def november(setup):
    """filed (scjgj, with hostile text and an ID number), rejected (zhz, whose receipt fails),
    late (czj), missing (jyj), and one mail from an unregistered address."""
    on_time = dt.datetime(2026, 11, 20, 10, 0, tzinfo=CST)
    arrive(setup, "scjgj@example.gov.cn", ROWS, "赞皇县市场监督管理局", on_time, "<s1@example.gov.cn>")
    arrive(setup, "zhz@qq.com", BAD_ROWS, "赞皇镇人民政府", on_time, "<z1@qq.com>")
    setup.account.append(factory.mail(sender="stranger@qq.com", message_id="<x1@qq.com>"), date=on_time)
    setup.smtp.refuse_permanently(550, "5.1.1 mailbox unavailable", stage="rcpt", only={"zhz@qq.com"})
    with time_machine.travel(on_time + dt.timedelta(minutes=5), tick=False):
        setup.poll()
    late = dt.datetime(2026, 11, 26, 9, 30, tzinfo=CST)  # Dovecot keeps no future INTERNALDATE
    arrive(setup, "czj@example.gov.cn", factory.GOOD_ROWS, "赞皇县财政局", late, "<c1@example.gov.cn>")
    with time_machine.travel(late + dt.timedelta(minutes=5), tick=False):
        setup.poll()
    setup.smtp.normal()
    setup.smtp.clear()
    return setup


def in_force_from_db(setup) -> dict[str, list[Row]]:
    with store.reading(setup.engine) as s:
        out = {}
        for d in setup.office.departments:
            sub = store.in_force(s, setup.office.id, d.id, PERIOD)
            if sub:
                out[d.id] = store.rows_of(s, sub.id)
        return out


def all_cells(wb):
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            yield from row


pytestmark = pytest.mark.config(departments=DEPARTMENTS, recipients={"digest": DIGEST_TO})


# --- the pure parts -------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_formula_looking_text_is_written_as_text(text):
    assert export.csv_value(text) == "'" + text
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("x")
    ws.append([export.xlsx_value(ws, text)])
    out = io.BytesIO()
    wb.save(out)
    [[cell]] = openpyxl.load_workbook(out).active.iter_rows()
    assert cell.value == text and cell.data_type == "s" and cell.quotePrefix


def test_plain_text_is_left_alone_and_id_numbers_are_masked():
    assert export.csv_value("经信用中国查询") == "经信用中国查询"
    assert export.safe_text(f"身份证{ID_NUMBER}，代码91350100M000100Y43") == f"身份证{MASKED}，代码91350100M000100Y43"
    assert export.safe_text("身份证１１０１０５１９４９１２３１００２Ｘ") == f"身份证{MASKED}"  # full-width too
    assert export.safe_text("bell\x07 ok") == "bell ok"


def test_the_characters_dropped_are_those_openpyxl_refuses():
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    every = "".join(map(chr, range(0x20000)))
    assert export.ILLEGAL_CHARACTERS_RE.sub("", every) == ILLEGAL_CHARACTERS_RE.sub("", every)


def test_week_window_is_anchored_on_the_configured_day(setup):
    monday = dt.datetime(2026, 11, 23, 9, 0, tzinfo=CST)
    wednesday = dt.datetime(2026, 11, 25, 18, 0, tzinfo=CST)
    sched, tz = setup.office.schedule, setup.office.office.tz
    start, end, anchor = obligations.week_window(monday, sched, tz)
    assert (start.astimezone(CST), end.astimezone(CST)) == (dt.datetime(2026, 11, 16, tzinfo=CST),
                                                             dt.datetime(2026, 11, 23, tzinfo=CST))
    assert obligations.week_window(wednesday, sched, tz) == (start, end, anchor)
    assert obligations.weekly_key(wednesday, sched, tz) == "weekly:2026-W48"


def test_monthly_key_is_interim_before_the_notice_time(setup):
    sched, tz = setup.office.schedule, setup.office.office.tz
    assert obligations.monthly_key(PERIOD, dt.datetime(2026, 11, 10, 9, tzinfo=CST), sched, tz) == \
        ("digest:2026-11:2026-11-10", True)
    assert obligations.monthly_key(PERIOD, dt.datetime(2026, 11, 26, 8, 59, tzinfo=CST), sched, tz) == \
        ("digest:2026-11:2026-11-26", True)  # the scheduled one goes at 09:00 and takes the month's key
    assert obligations.monthly_key(PERIOD, NOW, sched, tz) == ("digest:2026-11", False)
    # the window each quarantined mail is counted in ends where the next begins: at the notice time
    assert obligations.month_window(PERIOD, sched, tz)[1] == obligations.month_window("2026-12", sched, tz)[0] == \
        dt.datetime(2026, 11, 26, 9, tzinfo=CST)


@pytest.mark.parametrize("now, period", [
    (dt.datetime(2026, 12, 1, 10, tzinfo=CST), "2026-11"),  # the 1 December
    (dt.datetime(2026, 11, 25, 23, 59, tzinfo=CST), "2026-10"),  # November's deadline day is not over
    (dt.datetime(2026, 11, 26, 0, 0, tzinfo=CST), "2026-11"),
    (dt.datetime(2026, 1, 10, 9, tzinfo=CST), "2025-12"),
])
def test_the_default_digest_period_is_the_last_one_whose_deadline_has_passed(setup, now, period):
    assert obligations.last_closed_period(now, setup.office.schedule, setup.office.office.tz) == period


# --- the workbook ---------------------------------------------------------------------------------

def test_workbook_matches_the_database(november):
    month = digest.load_month(november.engine, november.office, PERIOD, NOW)
    wb = openpyxl.load_workbook(io.BytesIO(report.workbook(month)))
    assert wb.sheetnames == SHEETS

    # 汇总: exactly the rows in force, department by department, dates as dates
    rows = in_force_from_db(november)
    assert sorted(rows) == ["czj", "scjgj"]
    ws = wb["汇总"]
    assert ws["A1"].value == "赞皇县社会信用体系建设领导小组办公室 2026年11月情况清单汇总（截至2026年11月27日11时）"
    assert [c.value for c in ws[2]] == [t for t, _w in export.COLUMNS]
    data = list(ws.iter_rows(min_row=3))
    assert len(data) == sum(len(r) for r in rows.values()) == 6
    assert [c.value for c in data[0][:3]] == ["赞皇县市场监督管理局", HOSTILE[0], HOSTILE[1]]
    assert Counter(r[0].value for r in data) == {"赞皇县市场监督管理局": 3, "赞皇县财政局": 3}
    assert [r[3].value for r in data] == [dt.datetime(2026, 11, d) for d in (3, 9, 5, 3, 5, 9)]
    assert all(r[3].is_date and r[3].number_format == "yyyy-mm-dd" for r in data)
    assert data[0][10].value == dt.datetime(2026, 11, 20, 10, 0) and data[0][10].is_date
    assert data[3][10].value == dt.datetime(2026, 11, 26, 9, 30)
    assert [r[6].value for r in data[:3]] == ["激励", "其他", "惩戒"]
    assert data[2][7].value == "限制参与政府采购、从严审核"
    assert ws.freeze_panes == "A3" and ws.auto_filter.ref == "A2:K8"
    assert data[1][4].alignment.wrap_text and ws.row_dimensions[4].height >= 2 * report.LINE_HEIGHT  # two lines

    # 报送情况: the same answer as `mailbot status`
    expected = {d["name"]: d for d in status(november.engine, november.office, PERIOD)}
    got = {r[0]: r for r in wb["报送情况"].iter_rows(min_row=3, max_row=6, values_only=True)}
    assert {name: (r[1], r[4], r[5]) for name, r in got.items()} == {
        "赞皇县市场监督管理局": ("已按时报送", 3, 1), "赞皇县财政局": ("逾期报送", 3, 1),
        "赞皇镇人民政府": ("报送未通过", 0, 1), "赞皇县教育局": ("未报送", 0, 0)}
    assert {n: d["state"] for n, d in expected.items()} == {
        "赞皇县市场监督管理局": "filed", "赞皇县财政局": "late", "赞皇镇人民政府": "rejected", "赞皇县教育局": "missing"}
    assert got["赞皇县财政局"][2] == dt.datetime(2026, 11, 26, 9, 30) and got["赞皇县财政局"][3] == 1
    assert got["赞皇县教育局"][3] == 2  # days overdue as of the 27th

    # 统计: counts recomputed from the stored derived fields, a note under each group whose shares
    # need not add up (a record may name several channels)
    kinds = Counter(k for rs in rows.values() for r in rs for k in {m["kind"] for m in r.derived["measures"]})
    lines = list(wb["统计"].iter_rows(min_row=3, values_only=True))
    stats = {(g, i): n for g, i, n, _share in lines if g}
    shares = Counter()
    for g, _i, _n, share in lines:
        shares[g] += share or 0
    notes = [i for g, i, _n, _s in lines if g is None and i.startswith("注：")]
    assert len(notes) == 3 and "一条记录可涉及多个查询渠道" in notes[2] and "不一定为100%" in notes[2]
    assert round(shares["领域"], 6) == 1  # one field per record: these add up
    assert lines[-1][1:3] == ("合计（在用记录）", 6)
    assert {k: stats[("措施类别", k)] for k in export.KINDS} == {"激励": 2, "惩戒": 2, "无": 1, "其他": 1}
    assert {k: stats[("措施类别", k)] for k in kinds} == dict(kinds)
    assert stats[("规范措施", "限制参与政府采购")] == 2 and stats[("规范措施", "告知承诺")] == 2
    assert stats[("查询渠道", "信用中国")] == 4 and stats[("领域", "政府采购")] == 2
    by_dept = list(wb["分单位统计"].iter_rows(min_row=4, values_only=True))
    assert [r[:4] for r in by_dept] == [("赞皇县市场监督管理局", 3, 1, 1), ("赞皇县财政局", 3, 1, 1),
                                        ("赞皇镇人民政府", 0, 0, 0), ("赞皇县教育局", 0, 0, 0), ("合计", 6, 2, 2)]
    items = [c.value for c in wb["分单位统计"][3]][2:]
    assert all(by_dept[-1][2 + n] for n in range(len(items)))  # only the items that occur this month
    assert "限制参与政府采购" in items and "优先办理" not in items
    assert wb["分单位统计"].freeze_panes == "C4"


def test_workbook_has_no_live_formula_and_no_unmasked_id_number(november):
    month = digest.load_month(november.engine, november.office, PERIOD, NOW)
    wb = openpyxl.load_workbook(io.BytesIO(report.workbook(month)))
    cells = list(all_cells(wb))
    assert [c for c in cells if c.data_type == "f"] == []
    texts = [c.value for c in cells if isinstance(c.value, str)]
    for hostile in HOSTILE:
        assert hostile in texts or any(t.startswith(hostile) for t in texts)
    assert [t for t in texts if UNMASKED_ID.search(t)] == []
    assert f"张某（{MASKED}）" in texts
    assert any(MASKED in t and t.startswith("经国家企业信用信息公示系统") for t in texts)


# --- the mail -------------------------------------------------------------------------------------

def html_of(captured) -> str:
    return captured.message.get_body(preferencelist=("html",)).get_content()


def table_numbers(html: str, table_id: str) -> dict[str, int]:
    table = re.search(rf'<table id="{table_id}".*?</table>\n', html, re.S).group()
    return {label: int(n) for label, n in re.findall(r"<td[^>]*>([^<]+)</td><td[^>]*>(\d+)</td>", table)}


def test_monthly_mail_goes_only_to_the_digest_recipients_and_matches_the_database(november):
    assert digest.queue_monthly(november.engine, november.office, PERIOD, NOW)
    assert not digest.queue_monthly(november.engine, november.office, PERIOD, NOW)  # idempotent
    assert runner.deliver_all_due(november.engine, november.office) == 1
    [mail] = november.smtp.messages
    assert sorted(mail.rcpt_tos) == sorted(DIGEST_TO)
    [queued] = november.rows(Outgoing, Outgoing.kind == "digest")
    assert queued.key == "digest:2026-11" and queued.period == PERIOD and queued.status == "sent"
    assert mail.message["Subject"] == "2026年11月情况清单报送月报：按时1个，逾期1个，未通过1个，未报送1个"

    html = html_of(mail)
    by_state = Counter(d["state"] for d in status(november.engine, november.office, PERIOD))
    assert table_numbers(html, "states") == {"已按时报送": by_state["filed"], "逾期报送": by_state["late"],
                                             "报送未通过": by_state["rejected"], "未报送": by_state["missing"]}
    assert table_numbers(html, "kinds") == {"激励": 2, "惩戒": 2, "无": 1, "其他": 1}
    assert "赞皇县教育局" in html and "赞皇镇人民政府" in html
    # what needs a person: the unregistered address, and the receipt that could not be delivered
    [stranger] = november.rows(Message, Message.status == "quarantined")
    assert stranger.sender == "stranger@qq.com" and "stranger@qq.com" in html and "发件人邮箱未登记" in html
    [failed] = november.rows(Outgoing, Outgoing.status == "failed")
    assert failed.recipients == ["zhz@qq.com"]
    failed_table = re.search(r'<table id="failed".*?</table>', html, re.S).group()
    assert "zhz@qq.com" in failed_table and "发送失败" in failed_table and "回执" in failed_table
    # the chart is HTML: no image at all, let alone a remote one
    assert "<img" not in html and not re.search(r"src=[\"']?https?:", html)
    assert "http://evil" not in html and ID_NUMBER not in html

    parts = {p.get_filename(): p for p in mail.message.iter_attachments()}
    assert sorted(parts) == ["2026年11月情况清单汇总.xlsx",
                             "关于2026年11月行政管理事项中使用信用记录和信用报告情况清单报送情况的通报（草稿）.docx"]
    book = openpyxl.load_workbook(io.BytesIO(parts["2026年11月情况清单汇总.xlsx"].get_content()))
    assert book.sheetnames == SHEETS and book["汇总"].max_row == 8
    draft = docx.Document(io.BytesIO(parts[sorted(parts)[1]].get_content()))
    listed = [row.cells[1].text for row in draft.tables[0].rows[1:]]  # tables[1] is the 版记
    assert sorted(listed) == sorted(["赞皇县财政局", "赞皇镇人民政府", "赞皇县教育局"])


@pytest.mark.config(departments=DEPARTMENTS, recipients={"digest": []})
def test_no_digest_without_configured_recipients(november):
    assert not digest.queue_monthly(november.engine, november.office, PERIOD, NOW)
    assert not digest.queue_weekly(november.engine, november.office, NOW)
    assert november.rows(Outgoing, Outgoing.kind.in_(("digest", "weekly"))) == []


def test_weekly_mail_reports_the_week_and_who_is_still_missing(november):
    monday = dt.datetime(2026, 11, 23, 9, 0, tzinfo=CST)
    assert digest.queue_weekly(november.engine, november.office, monday)
    assert not digest.queue_weekly(november.engine, november.office, monday + dt.timedelta(days=2))
    runner.deliver_all_due(november.engine, november.office)
    [mail] = november.smtp.messages
    assert sorted(mail.rcpt_tos) == sorted(DIGEST_TO)
    assert mail.message["Subject"] == "情况清单收件周报（2026年11月16日至2026年11月22日）：收到2份，2026年11月尚有3个单位未报送"
    html = html_of(mail)
    arrived = re.search(r'<table id="arrived".*?</table>', html, re.S).group()
    assert "赞皇县市场监督管理局" in arrived and "赞皇镇人民政府" in arrived and "赞皇县财政局" not in arrived
    unfiled = re.findall(r"<td[^>]*>(赞皇[^<]+)</td><td[^>]*>(未报送|报送未通过)</td>",
                         re.search(r'<table id="unfiled".*?</table>', html, re.S).group())
    # as of Monday: czj filed only on the 26th
    assert unfiled == [("赞皇县财政局", "未报送"), ("赞皇镇人民政府", "报送未通过"), ("赞皇县教育局", "未报送")]
    assert "stranger@qq.com" in html
    assert "把该邮件拖入“重新处理”文件夹" in html  # the clerk's lever, once the address is registered
    [queued] = november.rows(Outgoing, Outgoing.kind == "weekly")
    assert queued.key == "weekly:2026-W48"


# --- the command line -----------------------------------------------------------------------------

def test_digest_command_writes_files_and_sends_only_when_asked(november, tmp_path, capsys):
    out = tmp_path / "out"
    with time_machine.travel(NOW, tick=False):
        assert main(["--config", str(november.config_path), "digest", "--period", PERIOD, "--out", str(out)]) == 0
        printed = capsys.readouterr().out.split()
        assert sorted(p.rsplit("/", 1)[1] for p in printed) == sorted(f.name for f in out.iterdir())
        assert len(printed) == 2 and printed[0].endswith("2026年11月情况清单汇总.xlsx") and printed[1].endswith(".docx")
        assert november.rows(Outgoing, Outgoing.kind == "digest") == []
        assert november.smtp.messages == []

        assert main(["--config", str(november.config_path), "digest", "--period", PERIOD, "--out", str(out),
                     "--send"]) == 0
        assert "sent 1 mail(s)" in capsys.readouterr().out
        assert main(["--config", str(november.config_path), "digest", "--period", PERIOD, "--out", str(out),
                     "--send"]) == 0
        assert "already queued" in capsys.readouterr().out
    [mail] = november.smtp.messages
    assert sorted(mail.rcpt_tos) == sorted(DIGEST_TO)


@pytest.mark.config(recipients={"digest": []})
def test_digest_send_without_recipients_writes_and_sends_nothing(setup, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--config", str(setup.config_path), "digest", "--period", PERIOD, "--out", str(out), "--send"]) == 1
    assert capsys.readouterr().out == "mailbot digest: recipients.digest is not configured; nothing sent\n"
    assert not out.exists() and setup.rows(Outgoing) == [] and setup.smtp.messages == []


def test_export_xlsx_and_csv(november, tmp_path, capsys):
    rows = in_force_from_db(november)
    xlsx, csv_path = tmp_path / "export.xlsx", tmp_path / "export.csv"
    assert main(["--config", str(november.config_path), "export", "--period", PERIOD, "--out", str(xlsx)]) == 0
    assert main(["--config", str(november.config_path), "export", "--period", "2026", "--format", "csv",
                 "--out", str(csv_path)]) == 0
    assert capsys.readouterr().out.split() == [str(xlsx), str(csv_path)]

    wb = openpyxl.load_workbook(xlsx)
    data = list(wb.active.iter_rows(min_row=2))
    assert len(data) == sum(len(r) for r in rows.values())
    assert {c.value for c in data[0][:2]} == {PERIOD, "赞皇县市场监督管理局"}
    assert data[0][2].value == HOSTILE[0] and data[0][4].is_date
    assert [c for c in all_cells(wb) if c.data_type == "f"] == []
    assert [c.value for c in all_cells(wb) if isinstance(c.value, str) and UNMASKED_ID.search(c.value)] == []

    raw = csv_path.read_bytes()
    assert raw.startswith("\ufeff".encode())
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert lines[0][:3] == ["所属期", "单位", "市场主体（自然人）名称"] and len(lines) == 1 + 6
    first = lines[1]
    assert first[2] == "'" + HOSTILE[0] and first[3] == "'" + HOSTILE[1] and first[5] == "'" + HOSTILE[2]
    assert first[4] == "2026-11-03" and first[-1] == "2026-11-20 10:00"
    assert lines[2][2] == f"张某（{MASKED}）" and lines[2][6] == "'" + HOSTILE[3]
    assert not UNMASKED_ID.search(raw.decode("utf-8-sig"))


# --- printing -------------------------------------------------------------------------------------

def test_every_sheet_prints_on_a4_one_page_wide_with_its_title_and_page_numbers(november):
    month = digest.load_month(november.engine, november.office, PERIOD, NOW)
    wb = openpyxl.load_workbook(io.BytesIO(report.workbook(month)))
    orientation = {"汇总": "landscape", "报送情况": "portrait", "年度报送情况": "landscape", "统计": "portrait",
                   "图表": "landscape", "分单位统计": "landscape"}
    titles = {"汇总": "$1:$2", "报送情况": "$1:$2", "年度报送情况": "$1:$2", "统计": "$1:$2", "图表": "$1:$1",
              "分单位统计": "$1:$3"}
    for ws in wb.worksheets:
        setup = ws.page_setup
        assert (setup.paperSize, setup.orientation, setup.fitToWidth, setup.fitToHeight) == \
            (9, orientation[ws.title], 1, 0), ws.title
        assert ws.sheet_properties.pageSetUpPr.fitToPage, ws.title
        assert ws.print_title_rows == titles[ws.title], ws.title
        assert ws.oddFooter.center.text == "第&P页 共&N页", ws.title
        heading = ws["A1"].value
        assert heading.startswith("赞皇县社会信用体系建设领导小组办公室 2026年") and "截至2026年11月27日11时" in heading
        assert ws["A1"].font.bold and "A1" in {str(r).split(":")[0] for r in ws.merged_cells.ranges}, ws.title
        if ws.title != "图表":
            assert ws.print_options.gridLines, ws.title


def test_the_cutoff_and_an_open_period_are_named_in_the_title(november):
    month = digest.load_month(november.engine, november.office, PERIOD, dt.datetime(2026, 11, 20, 10, 5, tzinfo=CST))
    assert month.open and report.cutoff(month) == "截至2026年11月20日10时5分"
    assert report.title(month, "情况清单汇总") == \
        "赞皇县社会信用体系建设领导小组办公室 2026年11月情况清单汇总（截至2026年11月20日10时5分，报送截止日前的统计）"


@pytest.mark.config(departments=DEPARTMENTS, recipients={"digest": DIGEST_TO}, imap={"since": "2026-11-01"})
def test_the_year_sheet_shows_each_department_month_by_month(november):
    """Only November was watched (the start line is 1 November): the months before are no
    department's fault and show —; the totals count only months whose deadline has passed."""
    month = digest.load_month(november.engine, november.office, PERIOD, NOW)
    ws = openpyxl.load_workbook(io.BytesIO(report.workbook(month)))["年度报送情况"]
    assert [c.value for c in ws[2]] == ["单位", *(f"{m}月" for m in range(1, 12)),
                                        "按时报送", "其中零报告", "逾期报送", "报送未通过", "未报送"]
    lines = {r[0]: r[1:] for r in ws.iter_rows(min_row=3, max_row=6, values_only=True)}
    assert lines == {
        "赞皇县市场监督管理局": ("—",) * 10 + ("按时", 1, 0, 0, 0, 0),
        "赞皇县财政局": ("—",) * 10 + ("逾期", 0, 0, 1, 0, 0),
        "赞皇镇人民政府": ("—",) * 10 + ("未通过", 0, 0, 0, 1, 0),
        "赞皇县教育局": ("—",) * 10 + ("未报送", 0, 0, 0, 0, 1),
    }
    assert ws["L6"].fill.fgColor.rgb.endswith("FFC7CE")  # 未报送 in light red
    assert ws.freeze_panes == "B3"
    legend = [r[0] for r in ws.iter_rows(min_row=7, values_only=True) if r[0]]
    assert legend[0].startswith("说明：按时＝截止日前报送合格清单；零报告＝")


def test_year_marks_count_a_nil_report_apart_and_skip_months_not_owed_or_not_watched(setup):
    office = setup.office  # scjgj, czj, zhz
    sub = lambda day, accepted=True, nil=False: types.SimpleNamespace(  # noqa: E731
        id=day, accepted=accepted, received_at=dt.datetime(2026, 10, day, 9, tzinfo=CST), row_count=0, nil_report=nil)
    periods = ["2026-09", "2026-10"]
    subs = {("scjgj", "2026-10"): [sub(20, nil=True)], ("czj", "2026-10"): [sub(27, nil=True)],
            ("zhz", "2026-10"): [sub(20, accepted=False), sub(21)]}
    lines = digest.year_lines(office, periods, subs, watched={"2026-10"})
    assert [(line.name, line.marks) for line in lines] == [
        ("赞皇县市场监督管理局", {"2026-09": None, "2026-10": "nil"}),
        ("赞皇县财政局", {"2026-09": None, "2026-10": "late"}),  # a late 零报告 is late
        ("赞皇镇人民政府", {"2026-09": None, "2026-10": "filed"}),  # the corrected version counts
        ("赞皇县教育局", {"2026-09": None, "2026-10": "missing"}),
    ]


def test_charts_have_a_page_each_only_the_categories_that_occur_and_whole_number_axes(november):
    month = digest.load_month(november.engine, november.office, PERIOD, NOW)
    ws = openpyxl.load_workbook(io.BytesIO(report.workbook(month)))["图表"]
    charts = ws._charts
    assert [c.type for c in charts] == ["col", "col", "bar", "bar", "bar"]
    assert [r.id for r in ws.row_breaks.brk] == [report.CHART_ROWS * n + 1 for n in range(1, 5)]
    blocks = {}
    for row in ws.iter_rows(min_row=2, values_only=True):
        if row[0] and row[1] is None:
            current = blocks.setdefault(row[0], [])
        elif row[0] and row[0] != "项目":
            current.append(row[:2])
    assert blocks["各单位报送情况"] == [("按时报送", 1), ("逾期报送", 1), ("报送未通过", 1), ("未报送", 1)]
    assert blocks["激励和惩戒措施"] == [("告知承诺", 2), ("限制参与政府采购", 2), ("从严审核", 1)]
    assert all(n > 0 for rows in blocks.values() for _label, n in rows)
    for chart in charts:
        axis = chart.y_axis
        assert axis.majorUnit == int(axis.majorUnit) >= 1 and axis.number_format.formatCode == "0"
        assert axis.scaling.min == 0 and axis.scaling.max % axis.majorUnit == 0
        assert chart.dataLabels.showVal and not chart.dataLabels.showCatName
        assert (chart.anchor.ext.width, chart.anchor.ext.height) == (20 * 360_000, 15 * 360_000)  # cm, in EMU


@pytest.mark.parametrize("top, step", [(1, 1), (8, 1), (9, 2), (17, 5), (43, 10), (100, 20), (1300, 200)])
def test_axis_steps_are_whole_numbers_with_at_most_eight_ticks(top, step):
    assert report.nice_step(top) == step


# --- 零报告 and the defaults --------------------------------------------------------------------------

NIL = [("本月无使用信用记录和信用报告情况",)]


@pytest.mark.config(recipients={"digest": DIGEST_TO})
def test_a_nil_report_is_counted_apart_everywhere(setup, tmp_path, capsys):
    """czj files 零报告: it has filed on time, and every summary says how many of those were nil."""
    on_time = dt.datetime(2026, 11, 20, 10, 0, tzinfo=CST)
    for sender, rows, unit in (("scjgj@example.gov.cn", factory.GOOD_ROWS, "赞皇县市场监督管理局"),
                               ("czj@example.gov.cn", NIL, "赞皇县财政局")):
        setup.account.append(factory.mail(sender=sender, date=on_time, attachments=(
            ("情况清单.xlsx", factory.checklist_xlsx(rows, unit=unit), factory.XLSX),)), date=on_time)
    with time_machine.travel(on_time + dt.timedelta(minutes=5), tick=False):
        setup.poll()
    setup.smtp.clear()
    now = dt.datetime(2026, 11, 26, 9, 0, tzinfo=CST)
    assert {d["id"]: (d["state"], d["nil_report"]) for d in status(setup.engine, setup.office, PERIOD)} == \
        {"scjgj": ("filed", False), "czj": ("filed", True), "zhz": ("missing", False)}

    month = digest.load_month(setup.engine, setup.office, PERIOD, now)
    assert (month.count("filed"), month.nil_reports) == (2, 1)
    wb = openpyxl.load_workbook(io.BytesIO(report.workbook(month)))
    filings = {r[0]: r for r in wb["报送情况"].iter_rows(min_row=3, max_row=5, values_only=True)}
    assert (filings["赞皇县财政局"][1], filings["赞皇县财政局"][6]) == ("已按时报送", "是")
    assert filings["赞皇县市场监督管理局"][6] is None
    assert any(r[0] and "已报送的单位中零报告1个" in r[0] for r in wb["报送情况"].iter_rows(min_row=6, values_only=True))
    year = {r[0]: r for r in wb["年度报送情况"].iter_rows(min_row=3, max_row=5, values_only=True)}
    assert year["赞皇县财政局"][11:14] == ("零报告", 1, 1)
    charts = {r[0]: r[1] for r in wb["图表"].iter_rows(min_row=4, max_row=8, values_only=True) if r[0]}
    assert (charts["按时报送"], charts["零报告"], charts["未报送"]) == (1, 1, 1)

    draft = digest.tongbao_draft(setup.office, month)
    paragraphs = [p.text for p in docx.Document(io.BytesIO(draft[1])).paragraphs]
    assert "截至2026年11月26日，应报送单位3个，按时报送2个（其中零报告1个）；未按要求报送1个，其中未报送1个。" \
        in paragraphs  # kinds with no department are not read out
    assert digest.queue_monthly(setup.engine, setup.office, PERIOD, now)
    runner.deliver_all_due(setup.engine, setup.office)
    [mail] = setup.smtp.messages
    assert "已报送的单位中，零报告（当月无使用信用记录和信用报告情况）1个。" in html_of(mail)

    assert main(["--config", str(setup.config_path), "status", "--period", PERIOD]) == 0
    assert "其中零报告1个" in capsys.readouterr().out


def test_digest_on_the_first_of_december_is_novembers(november, tmp_path, capsys):
    """The issue's case: `mailbot digest` on 1 December without --period meant December, whose
    draft named every department before any deadline."""
    out = tmp_path / "out"
    with time_machine.travel(dt.datetime(2026, 12, 1, 10, 0, tzinfo=CST), tick=False):
        assert main(["--config", str(november.config_path), "digest", "--out", str(out)]) == 0
    assert sorted(f.name for f in out.iterdir()) == [
        "2026年11月情况清单汇总.xlsx", "关于2026年11月行政管理事项中使用信用记录和信用报告情况清单报送情况的通报（草稿）.docx"]
    assert capsys.readouterr().err == ""


def test_a_tongbao_for_a_month_still_open_is_refused_unless_forced(november, tmp_path, capsys):
    out, forced = tmp_path / "out", tmp_path / "forced"
    with time_machine.travel(dt.datetime(2026, 11, 23, 10, 0, tzinfo=CST), tick=False):
        assert main(["--config", str(november.config_path), "digest", "--period", PERIOD, "--out", str(out)]) == 0
        err = capsys.readouterr().err
        assert [f.name for f in out.iterdir()] == ["2026年11月情况清单汇总.xlsx"]
        assert "2026年11月的报送截止日（2026年11月25日）尚未过去" in err and "不生成通报草稿" in err
        assert "--force" in err
        assert main(["--config", str(november.config_path), "digest", "--period", PERIOD, "--out", str(forced),
                     "--force"]) == 0
        assert capsys.readouterr().err == ""
    assert len(list(forced.iterdir())) == 2
    wb = openpyxl.load_workbook(out / "2026年11月情况清单汇总.xlsx")
    assert wb["汇总"]["A1"].value.endswith("（截至2026年11月23日10时，报送截止日前的统计）")
    assert [c.value for c in wb["年度报送情况"][2]][11] == "11月（未截止）"
