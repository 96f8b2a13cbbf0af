"""Mail handling that survives real mailboxes: every mail shape of tests/data/mail, end to end."""
from __future__ import annotations

import datetime as dt
import email.utils
import json
import time
from pathlib import Path

import pytest
import time_machine
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mailbot import intake, message, runner, store
from mailbot.mailbox import Mailbox
from mailbot.workers import Deciders
from mailbot.models import Message, Outgoing, Submission, utcnow
from tests import factory
from tests.data import expect_mails

MAIL = Path(__file__).parent / "data" / "mail"
NAME = "赞皇县市场监督管理局11月情况清单.xlsx"
OWN = dict(own_addresses=("office@example.test",), own_id_suffix="@example.test")


def fixture(name: str) -> bytes:
    return (MAIL / name).read_bytes()


# --- parsing and classification, no servers -------------------------------------------------

@pytest.mark.parametrize("name", expect_mails.names())
def test_golden_mail(name):
    """What parse, claim and decide make of the fixture is what its .eml.expected.json says.
    After an intended change: `.venv/bin/python tests/data/expect_mails.py`, then read its summary."""
    want = json.loads(expect_mails.expected_path(name).read_text(encoding="utf-8"))
    got = expect_mails.view(name)
    assert got == want, "\n".join(f"{path}: {old!r} -> {new!r}" for path, old, new in expect_mails.changes(want, got))


def test_every_mail_fixture_has_its_expectation_and_no_expectation_is_orphaned():
    fixtures = expect_mails.names()
    expectations = sorted(p.name.removesuffix(expect_mails.SUFFIX) for p in MAIL.glob(f"*{expect_mails.SUFFIX}"))
    assert expectations == fixtures and len(fixtures) >= 18


def _parsed_three_ways(raws: list[bytes]) -> tuple[list, list, list]:
    """Parsed; parsed again (the header objects from message._fetched); parsed with that cache
    bypassed (message._REMEMBERED below any length)."""
    cached = [message.parse(raw) for raw in raws]
    again = [message.parse(raw) for raw in raws]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(message, "_REMEMBERED", -1)
        plain = [message.parse(raw) for raw in raws]
    return cached, again, plain


def test_remembered_header_objects_change_nothing():
    """message._fetched keeps each parsed header (the email package parsed a Content-Type nine
    times a mail): every mail fixture parses to the same Mail without it."""
    cached, again, plain = _parsed_three_ways([fixture(n) for n in expect_mails.names()])
    assert cached == again == plain


_PRINTABLE = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)


@settings(max_examples=60, deadline=None)
@given(subject=_PRINTABLE, name=_PRINTABLE, filename=_PRINTABLE.filter(bool))
def test_remembered_header_objects_change_nothing_for_random_headers(subject, name, filename):
    raw = factory.mail(subject=subject, sender=email.utils.formataddr((name, "scjgj@example.gov.cn")),
                       attachments=((filename, b"x", factory.XLSX),))
    cached, again, plain = _parsed_three_ways([raw])
    assert cached == again == plain


GBK_ONLY = ("gb2312_label_rfc2047.eml", "gb2312_label_rfc2231.eml", "gbk_raw_8bit.eml")
GBK_NAME = "赞皇县市场监督管理局11月情况清单（王珺、李喆）.xlsx"
GBK_SUBJECT = "关于王珺、李喆报送2026年11月情况清单"


@pytest.mark.parametrize("name", GBK_ONLY)
def test_gbk_only_characters_under_a_gb2312_label_come_through(name):
    """镕, 珺, 喆 are GBK, not GB2312: RFC 2047 words, RFC 2231 sections cut inside a character, raw
    8-bit bytes and the body are all read as GB18030."""
    mail = message.parse(fixture(name))
    assert (mail.sender, mail.sender_name, mail.subject) == ("scjgj@example.gov.cn", "朱镕", GBK_SUBJECT)
    assert [a.filename for a in mail.attachments] == [GBK_NAME]
    assert mail.text == "您好，附件为王珺、李喆整理的11月份情况清单，请查收。朱镕"


def test_forwarded_attachment_is_marked_forwarded():
    [att] = message.parse(fixture("forwarded.eml")).attachments
    assert att.forwarded and att.data.startswith(b"PK\x03\x04")


def test_bounce_quotes_the_failed_message_and_reason():
    mail = message.parse(fixture("dsn_bounce.eml"))
    assert mail.quoted_ids == ["{OUR_MESSAGE_ID}"] and "550 5.1.1" in mail.diagnostic


def test_our_own_mail_coming_back_is_never_answered():
    mail = message.parse(factory.mail(sender="office@example.test"))
    assert message.classify(mail, **OWN) == "own"


@pytest.mark.parametrize("header, spoofed", [
    ("example.test; spf=fail smtp.mailfrom=x; dkim=fail header.d=x", True),
    ("example.test; spf=fail smtp.mailfrom=x", True),  # no DKIM at all
    ("example.test; spf=pass smtp.mailfrom=x; dkim=fail", False),
    ("example.test; spf=softfail smtp.mailfrom=x; dkim=none", False),
    ("attacker.example; spf=fail; dkim=fail", False),  # not our provider's header: ignored
])
def test_spoofing_is_judged_only_from_the_trusted_header(header, spoofed):
    mail = message.parse(factory.mail(headers={"Authentication-Results": header}))
    assert message.spoofed(mail, "example.test") is spoofed


# --- end to end through Dovecot and the SMTP capture -----------------------------------------

@pytest.mark.parametrize("name", ["foxmail_gbk_rfc2047.eml", "rfc2231_gb18030.eml", "raw_8bit_gbk.eml",
                                  "forwarded.eml", "with_pdf_scan.eml"])
def test_checklists_in_every_wrapping_are_accepted_with_their_original_name(setup, name):
    setup.account.append(fixture(name), date=factory.ON_TIME)
    setup.poll()
    [receipt] = setup.smtp.messages
    assert receipt.message["Subject"].startswith("回执：【已受理】")
    assert f"附件“{NAME}”" in receipt.message.get_body(("plain",)).get_content()
    [sub] = setup.rows(Submission)
    assert sub.accepted and sub.filename == NAME and sub.row_count == 3


@pytest.mark.parametrize("name", GBK_ONLY)
def test_gbk_only_names_are_intact_in_the_store_and_the_receipt(setup, name):
    setup.account.append(fixture(name), date=factory.ON_TIME)
    setup.poll()
    [receipt] = setup.smtp.messages
    assert receipt.message["Subject"] == f"回执：【已受理】{GBK_SUBJECT}"
    assert f"附件“{GBK_NAME}”" in receipt.message.get_body(("plain",)).get_content()
    assert receipt.message.get_body(("plain",)).get_content().count("\ufffd") == 0
    [sub] = setup.rows(Submission)
    [msg] = setup.rows(Message)
    assert (sub.filename, msg.subject, msg.sender) == (GBK_NAME, GBK_SUBJECT, "scjgj@example.gov.cn")


@pytest.mark.parametrize("name, reason, ours", [
    ("auto_reply.eml", "auto_reply", True),  # quotes our receipt's subject
    ("outlook_oof.eml", "auto_reply", False),  # about nothing of ours: the clerk's
    ("precedence_bulk.eml", "auto_reply", True),  # speaks of the checklist
    ("mailing_list.eml", "list", False),  # a list is never a submission: the clerk's
    ("qq_bounce.eml", "bounce", False),  # quotes no mail of ours
])
def test_robots_are_never_answered(setup, name, reason, ours):
    setup.account.append(fixture(name))
    setup.poll()
    assert setup.smtp.messages == []
    [m] = setup.rows(Message)
    if ours:  # taken: recorded and moved out of the clerk's way
        assert m.status == "ignored" and m.reason == reason
        assert len(setup.account.messages("已处理")) == 1
    else:  # not ours: recorded as read, left exactly where it was
        assert m.status == "left" and m.moved_at is None
        assert len(setup.account.messages("INBOX")) == 1 and setup.account.messages("已处理") == []


@pytest.mark.config(imap={"claim": "all"})
@pytest.mark.parametrize("name, reason", [("outlook_oof.eml", "auto_reply"), ("qq_bounce.eml", "bounce")])
def test_in_a_mailbox_of_its_own_robots_are_taken_and_never_answered(setup, name, reason):
    setup.account.append(fixture(name))
    setup.poll()
    assert setup.smtp.messages == []
    [m] = setup.rows(Message)
    assert m.status == "ignored" and m.reason == reason
    assert len(setup.account.messages("已处理")) == 1


def test_bounce_of_our_receipt_is_recorded_as_failed_delivery(setup):
    setup.account.append(factory.mail(sender="scj_clerk@163.com"), date=factory.ON_TIME)
    setup.poll()
    [receipt] = setup.rows(Outgoing)
    assert receipt.status == "sent"
    bounce = fixture("dsn_bounce.eml").replace(b"{OUR_MESSAGE_ID}", receipt.message_id.encode())
    setup.account.append(bounce)
    setup.poll()
    [receipt] = setup.rows(Outgoing)
    assert receipt.status == "bounced" and "550 5.1.1 user unknown" in receipt.last_error
    assert len(setup.smtp.messages) == 1  # the bounce itself got no answer


@pytest.mark.config(authentication={"trusted_authserv_id": "example.test"})
def test_registered_address_failing_spf_and_dkim_is_quarantined(setup):
    setup.account.append(fixture("failed_auth.eml"))
    setup.poll()
    assert setup.smtp.messages == [] and setup.rows(Submission) == []
    [m] = setup.rows(Message)
    assert m.status == "quarantined" and m.reason == "auth_failed" and "spf=fail" in m.detail
    assert len(setup.account.messages("待人工处理")) == 1


def test_unknown_sender_gets_nothing_and_is_quarantined(setup):
    setup.account.append(fixture("unknown_sender.eml"))
    setup.poll()
    assert setup.smtp.messages == [] and setup.rows(Submission) == []
    assert [m.reason for m in setup.rows(Message)] == ["unknown_sender"]


def test_no_checklist_gets_instructions_and_the_blank_template(setup):
    setup.account.append(fixture("no_attachment.eml"))
    setup.poll()
    [receipt] = setup.smtp.messages
    msg = receipt.message
    assert msg["Subject"].startswith("回执：【未通过")
    assert "未找到情况清单附件" in msg.get_body(("plain",)).get_content()
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "情况清单模板.xlsx"
    assert setup.rows(Submission) == []  # not a submission: the department is still "missing"


def test_large_attachment_link_gets_an_explanation(setup):
    setup.account.append(fixture("large_attachment_link.eml"))
    setup.poll()
    [receipt] = setup.smtp.messages
    assert receipt.rcpt_tos == ("scj_clerk@163.com",)
    assert "超大附件" in receipt.message.get_body(("plain",)).get_content()


def test_resubmission_replaces_the_version_in_force_and_says_what_changed(setup):
    setup.account.append(factory.mail(message_id="<v1@example.gov.cn>"), date=factory.ON_TIME)
    setup.poll()
    rows = list(factory.GOOD_ROWS)
    rows[0] = rows[0][:3] + ("经信用中国查询，无失信记录；经信用石家庄查询，无异常", rows[0][4])  # changed
    rows = rows[:2] + [("赞皇县某商贸有限公司", "食品经营许可证延续", "2026-11-12", "经信用中国查询，无失信记录", "无"),
                       ("赞皇县某药店", "药品经营许可证核发", "2026-11-13", "经信用中国查询，无失信记录", "容缺受理")]
    correction = factory.mail(message_id="<v2@example.gov.cn>", subject="Re: 回执：【已受理】2026年11月信用记录使用情况清单",
                              attachments=(("情况清单（修改）.xlsx", factory.checklist_xlsx(rows), factory.XLSX),),
                              headers={"In-Reply-To": "<mailbot.x@example.test>"})
    setup.account.append(correction, date=factory.ON_TIME)
    setup.poll()
    first, second = setup.rows(Submission)
    assert (first.version, second.version, second.replaces_id) == (1, 2, first.id)
    assert second.accepted and second.row_count == 4
    text = setup.smtp.messages[1].message.get_body(("plain",)).get_content()
    assert "第2次报送" in text and "已替代" in text and "新增2条，删除1条，修改1条" in text
    from mailbot.status import status
    [scj] = [d for d in status(setup.engine, setup.office, "2026-11") if d["id"] == "scjgj"]
    assert scj["rows"] == 4 and scj["submissions"] == 2 and scj["state"] == "filed"


def test_a_sender_that_writes_every_minute_is_stopped_by_the_daily_cap(setup):
    """A misbehaving robot (plain mails, no auto-reply headers) that provokes an error receipt
    each time gets `daily_cap_per_sender` of them; its accepted checklist is still answered."""
    cap = setup.office.replies.daily_cap_per_sender
    for i in range(cap + 3):
        setup.account.append(factory.mail(message_id=f"<loop{i}@example.gov.cn>", subject=f"情况清单 {i}",
                                          attachments=()), date=factory.ON_TIME)
    setup.poll()
    assert len(setup.smtp.messages) == cap
    assert sum(m.reason == "reply_cap" for m in setup.rows(Message)) == 3
    setup.account.append(factory.mail(message_id="<real@example.gov.cn>"), date=factory.ON_TIME)
    setup.poll()
    assert len(setup.smtp.messages) == cap + 1
    assert setup.smtp.messages[-1].message["Subject"].startswith("回执：【已受理】")
    assert setup.account.uids("INBOX") == []  # every mail still handled and moved


def test_the_same_file_again_gets_one_answer_a_day(setup):
    """A department that sends the very same checklist again and again (it did not see the
    receipt, or a robot re-sends it) gets one "已收到相同内容" answer a day, however many times."""
    xlsx = factory.checklist_xlsx()
    for i in range(4):
        setup.account.append(factory.mail(message_id=f"<again{i}@example.gov.cn>",
                                          attachments=(("情况清单.xlsx", xlsx, factory.XLSX),)), date=factory.ON_TIME)
    setup.poll()
    first, same = setup.smtp.messages
    assert first.message["Subject"].startswith("回执：【已受理】")
    assert same.message["Subject"].startswith("回执：【已收到相同内容】")
    assert "内容完全相同" in same.message.get_body(("plain",)).get_content()
    assert [m.reason for m in setup.rows(Message)] == ["", "", "same_content", "same_content"]
    assert all(s.accepted for s in setup.rows(Submission))
    setup.account.append(factory.mail(message_id="<again-next-day@example.gov.cn>", attachments=(
        ("情况清单.xlsx", xlsx, factory.XLSX),)), date=factory.ON_TIME + dt.timedelta(days=1))
    setup.poll()
    assert len(setup.smtp.messages) == 3  # a new day, one answer again


@pytest.mark.config(smtp={"rate_per_minute": 2})
def test_outgoing_mail_is_throttled_per_minute(setup):
    for i in range(5):
        setup.account.append(factory.mail(message_id=f"<t{i}@example.gov.cn>", attachments=(("清单.xlsx", factory.checklist_xlsx(
            report_date=dt.date(2026, 11, 10 + i)), factory.XLSX),)), date=factory.ON_TIME)
    with time_machine.travel("2026-11-26 10:00:00+08:00", tick=False) as traveller:
        setup.poll()
        assert len(setup.smtp.messages) == 2
        setup.poll()
        assert len(setup.smtp.messages) == 2  # still within the same minute
        traveller.shift(61)
        setup.poll()
        assert len(setup.smtp.messages) == 4
        traveller.shift(61)
        setup.poll()
    assert len(setup.smtp.messages) == 5
    assert len({m.message["Message-ID"] for m in setup.smtp.messages}) == 5


def test_smtp_refusals_are_retried_or_failed_as_the_code_says(setup):
    setup.account.append(factory.mail(message_id="<a@example.gov.cn>"), date=factory.ON_TIME)
    setup.smtp.refuse_temporarily(451, stage="rcpt")
    setup.poll()
    [out] = setup.rows(Outgoing)
    assert out.status == "pending" and out.attempts == 1 and "451" in out.last_error
    setup.smtp.refuse_permanently(550, "5.1.1 Mailbox unavailable", stage="data")
    with store.writing(setup.engine) as s:
        s.get(Outgoing, out.id).next_attempt_at = out.created_at
    setup.poll()
    [out] = setup.rows(Outgoing)
    assert out.status == "failed" and "5.1.1" in out.last_error
    assert setup.smtp.messages == []


def test_netease_spam_refusal_is_retried_after_the_whole_outbox_pauses(setup):
    """NetEase's 554 DT:SPM (a burst of automated mail taken for spam) is no permanent failure
    (domain.md: throttle, retry with backoff): the refused receipt waits out smtp.spam_pause_seconds,
    and so does every other mail of the office; afterwards they all go out."""
    from mailbot import outbox
    for sender in ("scjgj@example.gov.cn", "czj@example.gov.cn", "zhz@qq.com"):
        setup.account.append(factory.mail(sender=sender), date=factory.ON_TIME)
    setup.smtp.refuse_bursts(1, seconds=60)  # the second mail within a minute is "spam"
    setup.poll()
    first, refused, held = sorted(setup.rows(Outgoing), key=lambda o: o.id)
    assert len(setup.smtp.messages) == 1 and setup.smtp.spam_refused == 1
    assert first.status == "sent"
    assert refused.status == "pending" and refused.attempts == 1 and "DT:SPM" in refused.last_error
    pause = dt.timedelta(seconds=setup.office.smtp.spam_pause_seconds)
    resumes = outbox.paused_until(setup.engine, setup.office)
    assert resumes is not None and abs(resumes - (utcnow() + pause)).total_seconds() < 30
    assert held.status == "pending" and held.attempts == 0  # given back unattempted, behind the pause
    assert runner.deliver_all_due(setup.engine, setup.office) == 0, "nothing goes out while the outbox pauses"
    setup.smtp.normal()  # the suspicion lifted meanwhile
    with time_machine.travel(resumes + dt.timedelta(seconds=1), tick=True):
        assert runner.deliver_all_due(setup.engine, setup.office) == 2
    assert {o.status for o in setup.rows(Outgoing)} == {"sent"}
    assert len({m.message["Message-ID"] for m in setup.smtp.messages}) == 3


@pytest.mark.config(imap={"sent_folder": "已发送"})
def test_a_copy_of_each_sent_mail_goes_to_the_sent_folder(setup):
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    setup.poll()
    [copy] = setup.account.messages("已发送")
    assert copy == setup.smtp.messages[0].raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_id_command_is_sent_after_login_and_before_select(setup):
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    setup.poll()
    [session] = setup.account.wait_for_sessions(1)
    verbs = session.verbs
    assert verbs.index("LOGIN") < verbs.index("ID") < verbs.index("SELECT")
    assert session.ids and "mailbot" in str(session.ids[0])


@pytest.mark.config(imap={"folder": "清单"})
def test_folder_recreated_with_new_uidvalidity_gives_no_duplicates(setup):
    """The new numbering is read again from a day before the last scan: what arrived meanwhile
    is handled, a copy of mail already handled is a duplicate, older mail is not read again."""
    raw = factory.mail()
    now = dt.datetime.now(dt.timezone.utc)
    setup.account.append(raw, folder="清单", date=now - dt.timedelta(hours=1))
    setup.poll()
    with setup.account.client(None) as mb:  # the folder is deleted and made anew: new UIDVALIDITY
        mb.folder.delete("清单")
        mb.folder.create("清单")
    setup.account.append(raw, folder="清单", date=now)  # delivered again
    history = factory.mail(message_id="<history@example.gov.cn>")
    setup.account.append(history, folder="清单", date=factory.ON_TIME)  # restored from a backup: history now
    setup.poll()
    assert len(setup.smtp.messages) == 1 and len(setup.rows(Submission)) == 1
    first, again = setup.rows(Message)
    assert first.uidvalidity != again.uidvalidity and again.status == "duplicate"
    assert setup.account.messages("清单") == [history]


def test_uncommitted_move_is_finished_by_the_next_poll(setup):
    """The outcome is committed but the move did not happen (the process died): only move it."""
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    with Mailbox(setup.office.imap).open() as box:
        [item] = list(box.fetch(box.pending()))
        [(sha, decision)] = Deciders(setup.office, setup.config.archive.dir).decide(setup.office, [item])
        intake.commit(setup.engine, setup.office, item, sha, decision)
    assert setup.account.uids("INBOX") != []
    setup.poll()
    assert setup.account.uids("INBOX") == [] and len(setup.rows(Message)) == 1
    assert len(setup.smtp.messages) == 1


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_with_certificate_verification(setup, dovecot_server, security):
    """TLS to the IMAP server, verified against the configured CA; unverifiable is refused."""
    from mailbot import config as config_mod, runner
    from tests.factory import config_dict

    port = dovecot_server.tls_port if security == "ssl" else dovecot_server.port
    imap = {"security": security, "port": port, "ca_file": str(dovecot_server.cert_path)}
    data = config_dict(setup.account, setup.smtp, setup.var, imap=imap)
    cfg = config_mod.parse(data)
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    runner.poll_once(setup.engine, cfg, cfg.office())
    assert len(setup.smtp.messages) == 1

    unverified = config_mod.parse(config_dict(setup.account, setup.smtp, setup.var, imap={**imap, "ca_file": None}))
    import ssl
    with pytest.raises(ssl.SSLCertVerificationError):
        runner.poll_once(setup.engine, unverified, unverified.office())


@pytest.mark.config(limits={"max_message_bytes": 20_000})
def test_mail_over_the_size_limit_is_not_downloaded_and_the_sender_is_told(setup):
    big = factory.mail(attachments=(("清单.xlsx", None, factory.XLSX), ("扫描件.pdf", b"%PDF-1.4" + b"0" * 30_000, "application/pdf")))
    setup.account.append(big, date=factory.ON_TIME)
    setup.poll()
    [receipt] = setup.smtp.messages
    assert "超过" in receipt.message.get_body(("plain",)).get_content()
    [m] = setup.rows(Message)
    assert m.reason == "too_large" and m.size < 20_000  # only the header was fetched
    assert setup.account.messages("已处理") == [big]  # the mail itself is kept whole


@pytest.mark.config(replies={"daily_cap_per_sender": 100})
def test_two_senders_at_once_never_send_a_mail_twice(setup):
    """The daemon and a `mailbot tick` beside it both deliver: each mail is claimed by one."""
    import threading

    from mailbot import runner
    for i in range(12):
        setup.account.append(factory.mail(message_id=f"<c{i}@example.gov.cn>", attachments=(("清单.xlsx", factory.checklist_xlsx(
            report_date=dt.date(2026, 11, 1 + i)), factory.XLSX),)), date=factory.ON_TIME)
    setup.smtp.down()
    setup.poll()
    setup.smtp.up()
    with store.writing(setup.engine) as s:
        for out in s.exec(select(Outgoing)).scalars():
            out.next_attempt_at = out.created_at
    engines = [setup.engine, store.open_engine(setup.config.database.url)]
    threads = [threading.Thread(target=runner.deliver_all_due, args=(e, setup.office)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(setup.smtp.messages) == 12
    assert len({m.message["Message-ID"] for m in setup.smtp.messages}) == 12


@pytest.mark.config(replies={"daily_cap_per_sender": 100})
def test_a_backlog_goes_out_over_one_connection_and_one_move_a_folder(setup, monkeypatch):
    """bench_pipeline: a connection (connect, EHLO, QUIT) for every claim of five mails and a
    MOVE for every mail were a fifth of a backlog's time. Now the sender keeps its connection from
    batch to batch (renewed after outbox.MAILS_PER_LINE mails) and a batch's mails leave INBOX
    in one MOVE for each folder."""
    from mailbot import mailbox, outbox
    moves = []
    real_move = mailbox.Mailbox._move
    monkeypatch.setattr(mailbox.Mailbox, "_move", lambda self, uids, folder: (moves.append((uids, folder)),
                                                                              real_move(self, uids, folder)))
    for i in range(12):
        setup.account.append(factory.mail(message_id=f"<b{i}@example.gov.cn>", attachments=(("清单.xlsx", factory.checklist_xlsx(
            report_date=dt.date(2026, 11, 1 + i)), factory.XLSX),)), date=factory.ON_TIME)
    setup.account.append(factory.mail(message_id="<stranger@example.com>", sender="stranger@example.com"),
                         date=factory.ON_TIME)
    setup.smtp.down()
    setup.poll()
    assert moves == [(",".join(map(str, range(1, 13))), "已处理"), ("13", "待人工处理")], moves
    assert setup.account.uids("INBOX") == []
    setup.smtp.up()
    connections = setup.smtp.connections
    with store.writing(setup.engine) as s:
        for out in s.exec(select(Outgoing)).scalars():
            out.next_attempt_at = out.created_at
    assert runner.deliver_all_due(setup.engine, setup.office) == 12
    assert setup.smtp.connections - connections == 1, "12 mails, claimed five at a time, over one connection"
    monkeypatch.setattr(outbox, "MAILS_PER_LINE", 5)
    for i in range(12, 24):
        setup.account.append(factory.mail(message_id=f"<b{i}@example.gov.cn>", attachments=(("清单.xlsx", factory.checklist_xlsx(
            report_date=dt.date(2026, 11, i - 11), unit=f"第{i}单位"), factory.XLSX),)), date=factory.ON_TIME)
    connections = setup.smtp.connections
    setup.poll()
    assert len(setup.smtp.messages) == 24 and setup.smtp.connections - connections == 3, "renewed after five"


def test_idle_wakes_for_mail_that_arrived_before_it_started(setup):
    """Mail appended between our last command and IDLE is announced as IDLE starts; it may sit
    in imaplib's buffer, where select() cannot see it: IDLE must still return at once."""
    with Mailbox(setup.office.imap).open() as box:
        assert box.pending() == []
        for _ in range(5):
            setup.account.append(factory.mail(), date=factory.ON_TIME)
            started = time.monotonic()
            assert box.idle(10) is True
            assert time.monotonic() - started < 2
            box.select()
        assert len(box.pending()) == 5
        assert box.idle(0.5) is False  # nothing new: it waits, and says so
