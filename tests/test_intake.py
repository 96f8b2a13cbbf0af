"""The intake loop end to end: real Dovecot, real SMTP capture, a SQLite file."""
from __future__ import annotations

import email
import email.policy


from mailbot import store
from mailbot.cli import main
from mailbot.models import Message, Outgoing, Row, Submission
from tests import factory


def body_text(captured) -> str:
    msg = captured.message
    return msg.get_body(preferencelist=("plain",)).get_content()


def test_valid_checklist_gets_acceptance_receipt(setup):
    raw = factory.mail(message_id="<dept-1@example.gov.cn>")
    setup.account.append(raw)
    result = setup.poll()
    assert result.handled == 1 and result.sent == 1

    [receipt] = setup.smtp.messages
    assert receipt.rcpt_tos == ("scjgj@example.gov.cn",)
    msg = receipt.message
    assert msg["Subject"].startswith("回执：【已受理】")
    assert msg["In-Reply-To"] == "<dept-1@example.gov.cn>"
    assert "<dept-1@example.gov.cn>" in msg["References"]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"].startswith("<mailbot.") and msg["Message-ID"].endswith("@example.test>")
    text = body_text(receipt)
    assert "已收到贵单位2026年11月报送" in text and "共3条记录" in text and "已予受理" in text
    assert msg.get_body(preferencelist=("html",)) is not None

    [sub] = setup.rows(Submission)
    assert sub.accepted and sub.department_id == "scjgj" and sub.period == "2026-11" and sub.row_count == 3
    rows = setup.rows(Row)
    assert [r.row_no for r in rows] == [7, 8, 9]
    assert rows[1].date.isoformat() == "2026-11-05"
    assert rows[0].derived["measures"][0]["canonical"] == "告知承诺"

    assert setup.account.uids("INBOX") == []
    assert setup.account.messages("已处理") == [raw]
    [m] = setup.rows(Message)
    assert m.status == "accepted" and m.moved_at is not None
    assert (setup.var / "archive" / m.sha256[:2] / m.sha256[2:4] / f"{m.sha256}.eml").read_bytes() == raw


def test_checklist_with_errors_gets_error_receipt_naming_rows(setup):
    bad_rows = [
        ("", "食品经营许可证核发", "2026-11-03", "经信用中国查询，无失信记录", "无"),
        ("某公司", "食品经营许可证核发", "2026-13-40", "经信用中国查询", "无"),
        ("某个体户", "个体工商户登记", "2026-11-04", "", "无"),
    ]
    setup.account.append(factory.mail(attachments=(("清单.xlsx", factory.checklist_xlsx(bad_rows), factory.XLSX),)))
    setup.poll()
    [receipt] = setup.smtp.messages
    assert receipt.message["Subject"].startswith("回执：【未通过")
    text = body_text(receipt)
    assert "第7行“市场主体（自然人）名称”列（A7）" in text
    assert "第8行“日期”列（C8）" in text
    assert "第9行“使用信用记录或报告情况”列（D9）" in text
    assert "未予受理" in text
    [annotated] = [a for a in receipt.message.iter_attachments()]
    assert annotated.get_filename() == "清单（问题标注）.xlsx"
    import io
    import openpyxl
    sheet = openpyxl.load_workbook(io.BytesIO(annotated.get_content()))["情况清单"]
    assert sheet["A7"].comment is not None and sheet["C8"].fill.fgColor.rgb.endswith("FFC7CE")
    [sub] = setup.rows(Submission)
    assert not sub.accepted and sub.row_count == 0 and len(sub.problems) == 3
    assert setup.rows(Row) == []
    status = {d["id"]: d for d in _status(setup, "2026-11")}
    assert status["scjgj"]["state"] == "rejected"


def test_blank_header_fields_are_accepted_with_a_warning_in_the_receipt(setup):
    xlsx = factory.checklist_xlsx(unit="", submitter="", report_date=None)
    setup.account.append(factory.mail(attachments=(("清单.xlsx", xlsx, factory.XLSX),)))
    setup.poll()
    [receipt] = setup.smtp.messages
    assert receipt.message["Subject"].startswith("回执：【已受理】")
    text = body_text(receipt)
    warned = text[text.index("以下内容请核实（不影响本次受理）："):]
    assert "表头“单位”未填写，请在“单位：”后填写“赞皇县市场监督管理局”。" in warned
    assert "表头“报送人”未填写，请在“报送人：”后填写经办人姓名" in warned
    assert "表头“报送日期”未填写，请在“报送日期：”后填写报送当天的日期" in warned
    [sub] = setup.rows(Submission)
    assert sub.accepted and {p["code"] for p in sub.problems} == {"unit_missing", "submitter_missing", "report_date_missing"}


def _status(setup, period):
    from mailbot.status import status
    return status(setup.engine, setup.office, period)


def test_same_message_twice_gives_one_submission_and_one_receipt(setup):
    raw = factory.mail()
    setup.account.append(raw)
    setup.account.append(raw)
    setup.poll()
    setup.poll()  # a second poll must not answer again either
    assert len(setup.smtp.messages) == 1
    assert len(setup.rows(Submission)) == 1
    statuses = sorted(m.status for m in setup.rows(Message))
    assert statuses == ["accepted", "duplicate"]
    assert setup.account.uids("INBOX") == []
    assert len(setup.account.messages("已处理")) == 2


def test_unregistered_sender_is_quarantined_and_not_stored(setup):
    setup.account.append(factory.mail(sender="stranger@qq.com"))
    setup.poll()
    assert setup.smtp.messages == []
    assert setup.rows(Submission) == []
    [m] = setup.rows(Message)
    assert m.status == "quarantined" and m.reason == "unknown_sender" and m.department_id is None
    assert len(setup.account.messages("待人工处理")) == 1


def test_unexpected_error_quarantines_one_message_and_the_next_is_processed(setup, monkeypatch):
    from mailbot import checklist

    real_parse = checklist.parse

    def exploding(book, *args, **kwargs):  # a reader bug, for one attachment only
        if book.filename == "boom.xlsx":
            raise RuntimeError("reader bug")
        return real_parse(book, *args, **kwargs)

    monkeypatch.setattr(checklist, "parse", exploding)
    setup.account.append(factory.mail(attachments=(("boom.xlsx", None, factory.XLSX),)))
    setup.account.append(factory.mail(sender="czj@example.gov.cn",
                                      attachments=(("清单.xlsx", factory.checklist_xlsx(unit="赞皇县财政局"), factory.XLSX),)))
    setup.poll()
    messages = {m.sender: m for m in setup.rows(Message)}
    assert messages["scjgj@example.gov.cn"].status == "quarantined"
    assert "reader bug" in messages["scjgj@example.gov.cn"].detail
    assert messages["czj@example.gov.cn"].status == "accepted"
    assert len(setup.account.messages("待人工处理")) == 1
    assert len(setup.account.messages("已处理")) == 1
    assert [m.rcpt_tos for m in setup.smtp.messages] == [("czj@example.gov.cn",)]


def test_poll_once_and_status_from_the_command_line(setup, capsys):
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    assert main(["--config", str(setup.config_path), "poll", "--once"]) == 0
    assert len(setup.smtp.wait_for(1)) == 1
    setup.account.append(factory.mail(sender="czj@example.gov.cn", attachments=(
        ("清单.xlsx", factory.checklist_xlsx(unit="赞皇县财政局"), factory.XLSX),)), date=factory.ON_TIME)
    assert main(["--config", str(setup.config_path), "poll"]) == 0  # without --once: one poll, too
    assert [m.rcpt_tos for m in setup.smtp.wait_for(2)] == [("scjgj@example.gov.cn",), ("czj@example.gov.cn",)]
    assert setup.account.uids("INBOX") == []
    capsys.readouterr()
    assert main(["--config", str(setup.config_path), "status", "--period", "2026-11", "--json"]) == 0
    import json
    data = json.loads(capsys.readouterr().out)
    by_id = {d["id"]: d for d in data}
    assert by_id["scjgj"] | {"sent": None, "filed_at": None} == {
        "id": "scjgj", "name": "赞皇县市场监督管理局", "state": "filed", "rows": 3, "submissions": 1,
        "nil_report": False, "sent": None, "filed_at": None}
    assert by_id["czj"]["state"] == "filed" and by_id["czj"]["submissions"] == 1


def test_receipt_is_queued_in_the_same_transaction_and_delivered_once(setup):
    setup.account.append(factory.mail())
    setup.smtp.down()
    setup.poll()
    [queued] = setup.rows(Outgoing)
    assert queued.status == "pending" and queued.attempts == 1
    assert setup.rows(Submission)[0].accepted
    setup.smtp.up()
    with store.writing(setup.engine) as s:  # skip the backoff wait
        s.get(Outgoing, queued.id).next_attempt_at = queued.created_at
    setup.poll()
    setup.poll()
    assert len(setup.smtp.messages) == 1
    raw_id = email.message_from_bytes(setup.smtp.messages[0].raw, policy=email.policy.default)["Message-ID"]
    assert raw_id == f"<{queued.message_id}>"


def test_receipt_names_the_sheet_of_a_workbook_kept_for_the_year(setup):
    from pathlib import Path

    data = Path(__file__).parent / "data" / "checklists"
    setup.account.append((data / "year_sheets.eml").read_bytes(), date=factory.ON_TIME)
    setup.poll()
    [receipt] = setup.smtp.messages
    text = body_text(receipt)
    assert "（附件“2026年情况清单.xlsx”，工作表“11月”），共3条记录" in text
    assert "附件中有3个工作表填有清单表格，本次读取的是与报送月份对应的工作表“11月”，其他工作表未予读取。" in text
    assert "本次报送按工作表名称计入2026年11月。" in text
    [sub] = setup.rows(Submission)
    assert (sub.sheet, sub.period, sub.period_source, sub.row_count) == ("11月", "2026-11", "sheet", 3)


def test_rows_of_other_months_are_one_line_in_the_receipt(setup):
    from pathlib import Path

    data = (Path(__file__).parent / "data" / "checklists" / "other_months.xlsx").read_bytes()
    setup.account.append(factory.mail(attachments=(("全年清单.xlsx", data, factory.XLSX),)))
    setup.poll()
    text = body_text(setup.smtp.messages[0])
    assert "已予受理" in text and "共7条记录" in text
    assert ("1. 工作表“清单”中有4行记录的日期不在本次报送所属的2026年11月内：2026年9月1行（第6行）；"
            "2026年10月3行（第7、8、9行）。请核对这些日期；") in text
    assert "不在本次报送所属的2026年11月内，请核对" not in text  # no line per row
    [sub] = setup.rows(Submission)
    assert [p["row"] for p in sub.problems] == [6, 7, 8, 9]  # stored per row, for the annotated copy and digests


CHECKLISTS = __import__("pathlib").Path(__file__).parent / "data" / "checklists"


def test_two_months_in_one_mail_are_two_submissions_and_one_receipt(setup):
    setup.account.append((CHECKLISTS / "two_months.eml").read_bytes(), date=factory.ON_TIME)
    setup.poll()
    subs = sorted(setup.rows(Submission), key=lambda s: s.period)
    assert [(s.period, s.filename, s.accepted, s.late, s.row_count) for s in subs] == [
        ("2026-10", "10月情况清单.xlsx", True, True, 2), ("2026-11", "11月情况清单.xlsx", True, False, 3)]
    [receipt] = setup.smtp.messages
    text = body_text(receipt)
    assert receipt.message["Subject"].startswith("回执：【已受理】")
    assert "其中有2份情况清单，已分别登记如下：" in text
    assert "1. 附件“10月情况清单.xlsx”（工作表“10月”），按附件名称计入2026年10月：已予受理，共2条记录；晚于2026年10月25日的截止时间，已记为逾期报送。" in text
    assert "2. 附件“11月情况清单.xlsx”（工作表“情况清单”），按附件名称计入2026年11月：已予受理，共3条记录。" in text
    [msg] = setup.rows(Message)
    assert msg.status == "accepted"


def test_of_two_files_for_one_month_the_valid_one_is_filed_and_the_receipt_says_so(setup):
    setup.account.append((CHECKLISTS / "same_month_twice.eml").read_bytes(), date=factory.ON_TIME)
    setup.poll()
    [sub] = setup.rows(Submission)
    assert (sub.filename, sub.accepted, sub.row_count) == ("情况清单（修改）.xlsx", True, 3)
    text = body_text(setup.smtp.messages[0])
    assert ("附件“情况清单.xlsx”、“情况清单（修改）.xlsx”均为2026年11月的清单，本次采用通过校验的附件“情况清单（修改）.xlsx”，"
            "另一份未予登记。") in text


def test_our_annotated_copy_sent_back_with_the_correction_is_not_read(setup):
    setup.account.append((CHECKLISTS / "reply_with_annotated.eml").read_bytes(), date=factory.ON_TIME)
    setup.poll()
    [sub] = setup.rows(Submission)
    assert (sub.filename, sub.accepted) == ("情况清单.xlsx", True)
    [receipt] = setup.smtp.messages
    assert "附件“情况清单（问题标注）.xlsx”是本系统此前发回的问题标注版，未作为清单读取。" in body_text(receipt)
    assert [p.get_filename() for p in receipt.message.iter_attachments()] == []
