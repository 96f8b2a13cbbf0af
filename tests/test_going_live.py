"""Going live on the office's own mailbox (issue 13): a lived-in INBOX against Dovecot.

The mailbox holds two years of the office's history (mixed \\Seen) and the month in progress;
mailbot is installed on 22 November. Only what arrived after the start line and is mailbot's
is taken; everything else keeps its folder and flags; history is never answered; the dry
run changes nothing; the clerk's reprocess folder works after a config change.
"""
from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import time_machine
from sqlalchemy import select

from mailbot import claim, config as config_mod, letters, message, runner, schedule, store, watch
from mailbot.cli import main
from mailbot.mailbox import Mailbox
from mailbot.models import Message, Outgoing, StartLine, Submission
from tests import factory

CST = dt.timezone(dt.timedelta(hours=8))
INSTALLED = dt.datetime(2026, 11, 22, 10, 0, tzinfo=CST)
START = dt.datetime(2026, 11, 1, tzinfo=CST)  # the start of the period in progress
DEPARTMENTS = factory.DEPARTMENTS + [{"id": "jtj", "name": "赞皇县交通运输局", "emails": ["jtj@example.gov.cn"]}]
XLSX = factory.checklist_xlsx()
OLD_MAILS = 300


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=CST)


NIL = [("本月无使用信用记录和信用报告情况",) * 5]


def checklist(sender: str, unit: str, when: dt.datetime, message_id: str, subject: str | None = None,
              rows=factory.GOOD_ROWS) -> bytes:
    data = factory.checklist_xlsx(rows, unit=unit, report_date=when.date())
    return factory.mail(sender=sender, message_id=message_id, date=when,
                        subject=subject or f"{when.year}年{when.month}月情况清单",
                        attachments=(("情况清单.xlsx", data, factory.XLSX),))


def history(n: int = OLD_MAILS) -> list[tuple[bytes, dt.datetime, tuple[str, ...]]]:
    """Two years of the office's mail: departments' old checklists (answered by hand at the
    time), letters, the city's notices, newsletters; 60% read."""
    rnd = random.Random(13)
    items = []
    for i in range(n):
        when = at(2024, 1, 1, 9) + dt.timedelta(hours=rnd.randrange(0, 2 * 365 * 24))
        kind = i % 5
        if kind in (0, 1):
            raw = factory.mail(sender=rnd.choice(["scjgj@example.gov.cn", "czj@example.gov.cn", "zhz@qq.com"]),
                               subject=f"{when.year}年{when.month}月情况清单", message_id=f"<old{i}@example.gov.cn>",
                               date=when, attachments=(("情况清单.xlsx", XLSX, factory.XLSX),))
        elif kind == 2:
            raw = factory.mail(sender="sjzxyb@sjz.gov.cn", subject=f"关于报送{when.month}月信用工作信息的通知",
                               message_id=f"<old{i}@sjz.gov.cn>", date=when, attachments=())
        elif kind == 3:
            raw = factory.mail(sender="xinyong@163.com", subject="咨询信用修复流程", message_id=f"<old{i}@163.com>",
                               date=when, attachments=())
        else:
            raw = factory.mail(sender="news@creditchina.example", subject="信用周刊", message_id=f"<old{i}@news>",
                               date=when, attachments=(), headers={"List-Id": "<weekly.creditchina.example>"})
        items.append((raw, when, ("\\Seen",) if rnd.random() < 0.6 else ()))
    return items


def month_in_progress(office) -> dict[str, tuple[bytes, dt.datetime, tuple[str, ...]]]:
    """November so far, by what each mail is; the first two lie either side of the start line."""
    ours = letters.message_id_for(office, "receipt:earlier")
    return {
        "before_start": (checklist("jtj@example.gov.cn", "赞皇县交通运输局", at(2026, 10, 31, 23, 30), "<jtj-oct@x>",
                                   "2026年11月情况清单"), at(2026, 10, 31, 23, 30), ()),
        "after_start": (checklist("zhz@qq.com", "赞皇镇人民政府", at(2026, 11, 1, 0, 30), "<zhz-nov@qq.com>", rows=NIL),
                        at(2026, 11, 1, 0, 30), ()),
        "filed_on_10th": (checklist("czj@example.gov.cn", "赞皇县财政局", at(2026, 11, 10, 9), "<czj-nov@x>"),
                          at(2026, 11, 10, 9), ("\\Seen",)),  # the clerk had already opened it
        "filed_on_21st": (checklist("scjgj@example.gov.cn", "赞皇县市场监督管理局", at(2026, 11, 21, 15), "<scj-nov@x>"),
                          at(2026, 11, 21, 15), ()),
        "no_attachment": (factory.mail(sender="scj_clerk@163.com", subject="11月清单", attachments=(),
                                       message_id="<scj-noatt@163.com>"), at(2026, 11, 21, 16), ()),
        "other_matter": (factory.mail(sender="czj@example.gov.cn", subject="关于报送2026年行政处罚信息的函",
                                      message_id="<czj-xzcf@x>", attachments=(
                                          ("行政处罚信息.xlsx", XLSX, factory.XLSX),)), at(2026, 11, 12, 10), ()),
        "thanks": (factory.mail(sender="czj@example.gov.cn", subject="回复：回执：【已受理】2026年11月情况清单",
                                body="收到，谢谢！", attachments=(), message_id="<czj-thanks@x>",
                                headers={"In-Reply-To": f"<{ours}>", "References": f"<{ours}>"}),
                   at(2026, 11, 10, 10), ()),
        "city_notice": (factory.mail(sender="sjzxyb@sjz.gov.cn", subject="关于召开全市社会信用体系建设工作会议的通知",
                                     message_id="<city-nov@sjz.gov.cn>", attachments=(
                                         ("会议通知.pdf", b"%PDF-1.4 notice", "application/pdf"),)),
                        at(2026, 11, 5, 8), ("\\Seen",)),
        "repair_question": (factory.mail(sender="xinyong@163.com", subject="信用修复申请材料",
                                         message_id="<repair@163.com>", attachments=(
                                             ("申请书.docx", b"PK\x03\x04 not really", "application/octet-stream"),)),
                            at(2026, 11, 6, 8), ()),
        "stranger_checklist": (checklist("newclerk@qq.com", "赞皇镇人民政府", at(2026, 11, 15, 10), "<new-clerk@qq.com>"),
                               at(2026, 11, 15, 10), ()),
        "newsletter": (factory.mail(sender="news@creditchina.example", subject="信用周刊第46期", attachments=(),
                                    message_id="<news46@news>", headers={"List-Id": "<weekly.creditchina.example>"}),
                       at(2026, 11, 16, 7), ()),
        "own_digest": (factory.mail(sender="office@example.test", to="office@example.test",
                                    subject="2026年10月情况清单报送月报", attachments=(),
                                    message_id=f"<{letters.message_id_for(office, 'digest:2026-10')}>",
                                    headers={"X-Mailbot": "digest", "Auto-Submitted": "auto-generated"}),
                       at(2026, 11, 20, 9), ()),
    }


TAKEN = {"after_start": "已处理", "filed_on_10th": "已处理", "filed_on_21st": "已处理", "no_attachment": "已处理",
         "stranger_checklist": "待人工处理"}


@pytest.fixture
def office_mailbox(mailbox_account, smtp_server, tmp_var, monkeypatch):
    """The office's INBOX as it is on 22 November, mailbot configured but never run."""
    monkeypatch.setenv("TEST_IMAP_PASSWORD", mailbox_account.password)
    data = factory.config_dict(mailbox_account, smtp_server, tmp_var, departments=DEPARTMENTS,
                               limits={"workers": 0}, schedule={"weekly_digest_day": None})
    data["imap"].pop("since")  # the default start line: the start of the period in progress
    cfg = config_mod.parse(data)
    new = month_in_progress(cfg.office())
    mailbox_account.append_all(history() + list(new.values()))

    class Office:
        account, smtp, var, config, office, mails = mailbox_account, smtp_server, tmp_var, cfg, cfg.office(), new
        path = factory.write_config(tmp_var / "mailbot.yaml", data)

        def where(self, listing, name):
            mid = message.parse(self.mails[name][0]).message_id
            return [(folder, flags) for folder, found in listing.items() for m, flags, _d in found if m == f"<{mid}>"]
    return Office()


def test_first_poll_takes_only_our_mail_after_the_start_line(office_mailbox, dovecot_server):
    o = office_mailbox
    before = o.account.listing()
    with time_machine.travel(INSTALLED, tick=False):
        engine = store.connect(o.config.database.url)
        runner.poll_once(engine, o.config, o.office)

    receipts = sorted((m.rcpt_tos[0], m.message["Subject"][:8]) for m in o.smtp.messages)
    assert receipts == [("czj@example.gov.cn", "回执：【已受理】"), ("scj_clerk@163.com", "回执：【未通过，"),
                        ("scjgj@example.gov.cn", "回执：【已受理】"), ("zhz@qq.com", "回执：【已受理】")]
    after = o.account.listing()
    for name in o.mails:  # every mail: where it is, with the flags it had
        folder = TAKEN.get(name, "INBOX")
        flags = tuple(sorted(o.mails[name][2]))
        assert o.where(after, name) == [(folder, flags)], name
    untouched = [m for m in before["INBOX"] if all(m[0] != f"<{message.parse(o.mails[n][0]).message_id}>" for n in TAKEN)]
    assert after["INBOX"] == untouched  # history and the clerk's other mail: exactly as they were
    assert len(untouched) == OLD_MAILS + len(o.mails) - len(TAKEN)

    with store.reading(engine) as s:
        [line] = s.exec(select(StartLine)).scalars().all()
        rows = s.exec(select(Message)).scalars().all()
    assert line.since == START and line.source == "period" and line.scanned and line.caught_up_at
    assert len(rows) == len(o.mails) - 1  # every mail after the start line is recorded; history is not
    left = {r.message_id: r.reason for r in rows if r.status == "left"}
    assert left == {"czj-xzcf@x": "other_matter", "czj-thanks@x": "reply_without_attachment",
                    "city-nov@sjz.gov.cn": "not_submission", "repair@163.com": "other_matter",
                    "news46@news": "list", letters.message_id_for(o.office, "digest:2026-10"): "own"}

    # the mail that is not ours was judged from its header: only what was taken was downloaded
    [session] = o.account.wait_for_sessions(1)
    bodies = {int(u) for c in session.commands if c.startswith("UID FETCH") and "BODY.PEEK[]" in c
              for u in c.split()[2].split(",")}
    with store.reading(engine) as s:
        taken_uids = {r.uid for r in s.exec(select(Message).where(Message.status != "left")).scalars()}
    assert bodies == taken_uids
    assert any(c.startswith("UID SEARCH SINCE 30-Oct-2026") for c in session.commands)

    # a later poll searches only above the high-water mark: nothing of history is read again
    o.account.append(checklist("jtj@example.gov.cn", "赞皇县交通运输局", at(2026, 11, 22, 11), "<jtj-nov@x>"),
                     date=at(2026, 11, 22, 11))
    with time_machine.travel(INSTALLED + dt.timedelta(hours=1), tick=False):
        runner.poll_once(engine, o.config, o.office)
    second = o.account.wait_for_sessions(2)[1]
    assert [c for c in second.commands if c.startswith("UID SEARCH")] == [f"UID SEARCH UID {line.high_water + 1}:*"]
    fetched = [c for c in second.commands if c.startswith("UID FETCH")]
    assert all(c.split()[2] == str(line.high_water + 1) for c in fetched), fetched
    assert len(o.smtp.messages) == 5


def test_the_first_tick_queues_nothing_for_periods_closed_before_the_start_line(office_mailbox, capsys):
    o = office_mailbox
    with time_machine.travel(INSTALLED, tick=False):
        engine = store.connect(o.config.database.url)
        assert schedule.tick(engine, o.office, INSTALLED) == []  # the mailbox was never read: nothing yet
        runner.poll_once(engine, o.config, o.office)
        queued = schedule.tick(engine, o.office, INSTALLED + dt.timedelta(minutes=1))
    # October's deadline passed before mailbot watched: no notice, 通报 or digest for it; of
    # November only the department whose checklist came before the start line is reminded
    # (czj filed on the 10th, zhz just after the start line)
    assert [q.key for q in queued] == ["reminder:jtj:2026-11:20"]
    capsys.readouterr()
    assert main(["--config", str(o.path), "status", "--period", "2026-11"]) == 0
    assert "起始线：2026年11月1日 00:00，此前到达的邮件不处理" in capsys.readouterr().out


def _database(engine) -> dict[str, list]:
    with store.reading(engine) as s:
        return {model.__tablename__: sorted(repr(sorted(r.model_dump().items())) for r in s.exec(select(model)).scalars())
                for model in (Message, Submission, Outgoing, StartLine)}


def test_the_dry_run_changes_nothing(office_mailbox, capsys):
    o = office_mailbox
    before = o.account.listing()
    with time_machine.travel(INSTALLED, tick=False):
        assert main(["--config", str(o.path), "poll", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert o.account.listing() == before  # no folder, no flag, no move
    assert not (o.var / "mailbot.db").exists() and not (o.var / "archive").exists()
    assert o.smtp.messages == []
    assert f"收件箱 INBOX 共 {OLD_MAILS + len(o.mails)} 封。起始线：2026年11月1日 00:00（首次收件时所在月份的第一天；将在首次收件时记录）" in out
    lines = [line for line in out.splitlines() if line.startswith("  UID")]
    assert len(lines) == len(o.mails) - 1  # the mail before the start line is not even listed

    def line(sender, subject):
        [found] = [x for x in lines if f"  {sender}  “{subject}”：" in x]
        return found
    assert line("czj@example.gov.cn", "2026年11月情况清单").endswith(
        "：接收（赞皇县财政局），通过校验；发送回执【已受理】给 czj@example.gov.cn；移入“已处理”")
    assert line("scj_clerk@163.com", "11月清单").endswith(
        "未通过校验：邮件中未找到情况清单附件。请将填写好的情况清单（Excel表格）作为附件发送。"
        "发送回执【未通过】给 scj_clerk@163.com；移入“已处理”")
    assert line("czj@example.gov.cn", "关于报送2026年行政处罚信息的函").endswith(
        "保留在收件箱，不改动（涉及其他事项：行政许可、行政处罚、奖惩或信用修复）")
    assert line("newclerk@qq.com", "2026年11月情况清单").endswith("移入“待人工处理”，不回复（发件人邮箱未登记）")
    assert line("office@example.test", "2026年10月情况清单报送月报").endswith(
        "保留在收件箱，不改动（本系统发给本办的邮件，如汇总、通报、告警，留给经办人阅读）")
    assert "合计：接收 4 封（通过 3 封，未通过 1 封），移入“待人工处理” 1 封，不回复移入“已处理” 0 封，保留在收件箱 6 封；将发送回执 4 封。" in out

    # and once mailbot is live, a dry run still writes nothing: database rows, folders, mail
    with time_machine.travel(INSTALLED, tick=False):
        engine = store.connect(o.config.database.url)
        runner.poll_once(engine, o.config, o.office)
    o.account.append(checklist("jtj@example.gov.cn", "赞皇县交通运输局", at(2026, 11, 22, 11), "<jtj-nov@x>"),
                     date=at(2026, 11, 22, 11))
    sent, rows, listing = len(o.smtp.messages), _database(engine), o.account.listing()
    db_bytes = (o.var / "mailbot.db").read_bytes()
    with time_machine.travel(INSTALLED + dt.timedelta(hours=1), tick=False):
        assert main(["--config", str(o.path), "poll", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "起始线之后、尚未读取的邮件 1 封" in out and "jtj@example.gov.cn" in out
    assert _database(engine) == rows and (o.var / "mailbot.db").read_bytes() == db_bytes
    assert o.account.listing() == listing and len(o.smtp.messages) == sent
    session = o.account.wait_for_sessions(3)[2]
    assert 'EXAMINE "INBOX"' in session.commands and not any(c.startswith("SELECT") for c in session.commands)


def test_the_reprocess_folder_after_a_new_address_is_registered(office_mailbox):
    o = office_mailbox
    with time_machine.travel(INSTALLED, tick=False):
        engine = store.connect(o.config.database.url)
        runner.poll_once(engine, o.config, o.office)
    [quarantined] = o.account.messages("待人工处理")
    assert b"newclerk@qq.com" in quarantined and "重新处理" in o.account.folders()

    # the admin registers the new 经办人's address; the clerk drags the mail into 重新处理
    data = factory.config_dict(o.account, o.smtp, o.var, departments=[
        {**d, "emails": d["emails"] + ["newclerk@qq.com"]} if d["id"] == "zhz" else d for d in DEPARTMENTS],
        limits={"workers": 0})
    cfg = config_mod.parse(data)
    with o.account.client("待人工处理") as mb:
        mb.move(mb.uids(), "重新处理")
    sent = len(o.smtp.messages)
    with time_machine.travel(INSTALLED + dt.timedelta(hours=1), tick=False):
        runner.poll_once(engine, cfg, cfg.office())
    [receipt] = o.smtp.messages[sent:]
    assert receipt.rcpt_tos == ("newclerk@qq.com",) and receipt.message["Subject"].startswith("回执：【已受理】")
    assert o.account.uids("重新处理") == [] and o.account.messages("待人工处理") == []
    assert any(b"newclerk@qq.com" in raw for raw in o.account.messages("已处理"))
    with store.reading(engine) as s:
        again = s.exec(select(Message).where(Message.folder == "重新处理")).scalars().one()
    assert again.status == "accepted" and again.reason.startswith("replay_of:")


def test_a_mail_moved_back_into_inbox_by_hand_is_handled_again(setup):
    """Not silently dropped as a duplicate: the copy keeps its INTERNALDATE (a second delivery
    of the same mail has one of its own, and stays a duplicate)."""
    raw = factory.mail(sender="newclerk@qq.com", message_id="<back@qq.com>")
    setup.account.append(raw, date=factory.ON_TIME)
    setup.poll()
    assert [m.status for m in setup.rows(Message)] == ["quarantined"]
    data = factory.config_dict(setup.account, setup.smtp, setup.var, limits={"workers": 0}, departments=[
        {**d, "emails": d["emails"] + ["newclerk@qq.com"]} if d["id"] == "scjgj" else d for d in factory.DEPARTMENTS])
    cfg = config_mod.parse(data)
    with setup.account.client("待人工处理") as mb:
        mb.move(mb.uids(), "INBOX")
    runner.poll_once(setup.engine, cfg, cfg.office())
    assert [(m.status, m.folder) for m in setup.rows(Message)] == [("quarantined", "INBOX"), ("accepted", "INBOX")]
    [receipt] = setup.smtp.messages
    assert receipt.rcpt_tos == ("newclerk@qq.com",)
    setup.account.append(raw)  # the same mail delivered once more, today
    runner.poll_once(setup.engine, cfg, cfg.office())
    assert setup.rows(Message)[-1].status == "duplicate" and len(setup.smtp.messages) == 1


@pytest.mark.config(imap={"since": "2026-11-15"})
def test_an_explicit_since_is_the_start_line_and_stays_fixed(setup, caplog, monkeypatch):
    monkeypatch.setattr(watch, "_warned", set())
    setup.account.append(factory.mail(message_id="<before@x>"), date=at(2026, 11, 14, 23, 59))
    setup.account.append(factory.mail(message_id="<after@x>"), date=at(2026, 11, 15, 0, 1))
    setup.poll()
    assert [m.message_id for m in setup.rows(Message)] == ["after@x"]
    [line] = setup.rows(StartLine)
    assert line.since == at(2026, 11, 15) and line.source == "config"
    later = config_mod.parse(factory.config_dict(setup.account, setup.smtp, setup.var, imap={"since": "2026-11-01"},
                                                 limits={"workers": 0}))
    runner.poll_once(setup.engine, later, later.office())
    assert [m.message_id for m in setup.rows(Message)] == ["after@x"]  # fixed at the first poll
    assert "the start line was fixed at the first poll" in caplog.text


# --- what is ours: the header and the whole mail agree ------------------------------------------

FIXTURES = sorted(p.name for p in factory.MAIL_DIR.glob("*.eml"))


def test_judged_from_the_header_as_from_the_whole_mail(setup):
    """For every fixture and a few built mails, the verdict from header + BODYSTRUCTURE (Dovecot's)
    is the whole mail's, or "cannot tell" (then the body is fetched)."""
    raws = [(factory.MAIL_DIR / name).read_bytes() for name in FIXTURES] + [
        factory.mail(sender="stranger@qq.com", subject="请查收", attachments=(("2026年11月情况清单.xlsx", XLSX, factory.XLSX),)),
        factory.mail(subject="材料", attachments=(("data.bin", XLSX, "application/octet-stream"),)),
        factory.mail(subject="材料", attachments=(("照片.jpg", b"\xff\xd8\xff", "image/jpeg"),)),
        factory.mail(sender="czj@example.gov.cn", subject="周报", attachments=()),
    ]
    for raw in raws:
        setup.account.append(raw)
    with Mailbox(setup.office.imap).open(readonly=True) as box:
        glances = box.glance(box.pending())
        wholes = {f.uid: f.raw for f in box.fetch(box.pending())}
    assert len(glances) == len(raws)
    undecided = 0
    for g in glances:
        whole = claim.judge(setup.office, message.parse(wholes[g.uid]))
        early = claim.judge(setup.office, message.parse(g.header), g.parts)
        assert whole.ours is not None
        assert early.ours in (None, whole.ours), (g.uid, early, whole)
        undecided += early.ours is None
        names = sorted(a.filename for a in message.parse(wholes[g.uid]).attachments)
        assert sorted(p.filename for p in g.parts) == names  # BODYSTRUCTURE names, decoded as the parser does
    assert undecided <= 4  # bounces (their quoted Message-IDs are in the body) and an untyped attachment


@pytest.mark.parametrize("sender, subject, attachments, headers, ours, reason", [
    ("scjgj@example.gov.cn", "材料", [("清单.xlsx", factory.XLSX)], {}, True, "checklist_named"),
    ("scjgj@example.gov.cn", "材料", [("表.xlsx", factory.XLSX)], {}, True, "registered_table"),
    ("scjgj@example.gov.cn", "11月情况", [], {}, True, "registered_month"),
    ("scjgj@example.gov.cn", "关于行政许可信息的报送", [("表.xlsx", factory.XLSX)], {}, False, "other_matter"),
    ("scjgj@example.gov.cn", "材料", [("扫描件.pdf", "application/pdf")], {}, False, "not_submission"),
    ("stranger@qq.com", "情况清单", [], {}, True, "checklist_named"),
    ("stranger@qq.com", "11月份会议", [("议程.xlsx", factory.XLSX)], {}, False, "not_submission"),
    ("scjgj@example.gov.cn", "好的", [], {"In-Reply-To": "<mailbot.1@example.test>"}, False, "reply_without_attachment"),
    ("stranger@qq.com", "见附件", [("a.pdf", "application/pdf")], {"In-Reply-To": "<mailbot.1@example.test>"}, True, "reply"),
    ("scjgj@example.gov.cn", "回复", [("logo.png", "image/png")], {"References": "<mailbot.1@example.test>"},
     False, "reply_without_attachment"),
    ("office@example.test", "2026年11月情况清单报送月报", [], {"X-Mailbot": "digest"}, False, "own"),
    ("scjgj@example.gov.cn", "自动回复：回执：【已受理】11月情况清单", [], {"Auto-Submitted": "auto-replied"}, True, "auto_reply"),
    ("scjgj@example.gov.cn", "外出", [], {"Auto-Submitted": "auto-replied"}, False, "auto_reply"),
    # 清单 alone is a common word in the office's other mail: it needs a month, credit or a table beside it
    ("notice@city.example", "关于印发2026年权责清单的通知", [("通知.pdf", "application/pdf")], {}, False, "not_submission"),
    ("notice@city.example", "关于公布负面清单的函", [], {}, False, "not_submission"),
    ("stranger@qq.com", "清单", [("清单.xlsx", factory.XLSX)], {}, True, "checklist_named"),
    ("stranger@qq.com", "11月清单", [], {}, True, "checklist_named"),
    ("stranger@qq.com", "信用清单报送", [], {}, True, "checklist_named"),
    # a list is never a submission, whatever its subject says
    ("notices@city.example", "2026年11月情况清单", [], {"List-Id": "<notices.city.example>"}, False, "list"),
    ("notices@city.example", "Re: 回执", [], {"List-Id": "<notices.city.example>",
                                             "In-Reply-To": "<mailbot.1@example.test>"}, True, "list"),
])
def test_what_is_ours(sender, subject, attachments, headers, ours, reason):
    office = config_mod.parse(factory.config_dict(
        SimpleNamespace(port=1, user="office@example.test"), SimpleNamespace(port=1), Path("var"))).office()
    raw = factory.mail(sender=sender, subject=subject, headers=headers,
                       attachments=[(name, b"%PDF" if "pdf" in ctype else (b"\x89PNG" if "png" in ctype else XLSX), ctype)
                                    for name, ctype in attachments])
    assert claim.judge(office, message.parse(raw)) == claim.Verdict(ours, reason)
    all_office = office.model_copy(update={"imap": office.imap.model_copy(update={"claim": "all"})})
    if reason != "own":  # a mailbox of its own: everything is ours, but our own mail still is not
        assert claim.judge(all_office, message.parse(raw)).ours is True


# --- a NetEase-like front: ID before SELECT, 554 DT:SPM to a burst ----------------------------------

@pytest.fixture
def netease(office_mailbox):
    """The office mailbox behind a NetEase-like IMAP front, and an SMTP server that refuses a
    burst of more than 3 mails a minute as spam."""
    from tests.servers import NetEaseFront

    o = office_mailbox
    with NetEaseFront(o.account.host, o.account.port) as front:
        data = factory.config_dict(o.account, o.smtp, o.var, departments=DEPARTMENTS, limits={"workers": 0},
                                   schedule={"weekly_digest_day": None},
                                   imap={"port": front.port}, smtp={"rate_per_minute": 3})
        data["imap"].pop("since")
        o.path = factory.write_config(o.var / "netease.yaml", data)
        o.config = config_mod.parse(data)
        o.office = o.config.office()
        o.front = front
        o.smtp.refuse_bursts(3, seconds=60)
        yield o


def test_through_a_netease_front_check_dry_run_and_poll(netease, capsys):
    o = netease
    with time_machine.travel(INSTALLED, tick=False) as traveller:
        assert main(["--config", str(o.path), "config", "check", "--connect"]) == 0
        out = capsys.readouterr().out.replace("\n", "")
        assert "ID 命令已发送" in out and f"收件箱 INBOX 共 {OLD_MAILS + len(o.mails)} 封" in out
        assert "起始线之后尚未读取的邮件 11 封" in out
        assert main(["--config", str(o.path), "poll", "--dry-run"]) == 0
        assert "将发送回执 4 封" in capsys.readouterr().out
        assert main(["--config", str(o.path), "poll", "--once"]) == 0
        assert len(o.smtp.messages) == 3 and o.smtp.spam_refused == 0  # throttled below NetEase's limit
        traveller.shift(61)
        assert main(["--config", str(o.path), "poll", "--once"]) == 0
    assert len(o.smtp.messages) == 4 and o.smtp.spam_refused == 0
    assert all(s.id_sent and s.refused == [] for s in o.front.sessions)
    assert len(o.account.messages("已处理")) == 4


def test_without_id_the_front_refuses_select_and_config_check_says_what_to_do(netease, capsys):
    o = netease
    data = factory.config_dict(o.account, o.smtp, o.var, imap={"port": o.front.port, "id_command": {"enabled": "never"}})
    path = factory.write_config(o.var / "no-id.yaml", data)
    assert main(["--config", str(path), "config", "check", "--connect"]) == 1
    out = capsys.readouterr().out.replace("\n", "")
    assert "NO SELECT Unsafe Login" in out and "imap.id_command.enabled 设为 auto 或 always" in out
    assert o.front.sessions[-1].refused == ["SELECT"]


def test_workers_know_our_mail_without_loading_the_mail_builder():
    """claim runs in every worker: it must not pull jinja2 and the models in (20 MB a worker)."""
    import subprocess
    import sys

    office = config_mod.parse(factory.config_dict(
        SimpleNamespace(port=1, user="office@example.test"), SimpleNamespace(port=1), Path("var"))).office()
    for mid in (letters.message_id_for(office, "receipt:x"), "mailbot.1@other.test", "x@example.test", ""):
        assert claim._is_ours(office, mid) == letters.is_ours(office, mid)
    code = "import sys, mailbot.decision; print(sorted(m for m in ('mailbot.letters', 'jinja2', 'sqlmodel') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_bodystructure_with_literals_continuations_and_nested_mail():
    """A FETCH as imaplib hands it back: a file name sent as a literal, an RFC 2231 name in two
    encoded pieces, an RFC 2047 name, a forwarded message's attachment; an unsolicited FETCH."""
    from mailbot import bodystructure

    first, second = ("".join(f"%{b:02X}" for b in text.encode("gb18030")) for text in ("情况", "清单.xlsx"))
    data = [
        (b'1 (UID 7 INTERNALDATE "20-Nov-2026 10:00:00 +0800" RFC822.SIZE 1234 BODYSTRUCTURE (("text" "plain" '
         b'("charset" "utf-8") NIL NIL "7bit" 10 1 NIL NIL NIL NIL)("application" "octet-stream" ("name" {9}',
         "清单.xlsx".encode()[:9]),
        (b') NIL NIL "base64" 100 NIL ("attachment" ("filename*0*" "gb18030\'\'' + first.encode() + b'" "filename*1*" "'
         + second.encode() + b'")) NIL NIL)("message" "rfc822" NIL NIL NIL "7bit" 500 NIL '
         b'(("application" "pdf" ("name" "=?utf-8?B?5omr5o+P5Lu2LnBkZg==?=") NIL NIL "base64" 50 NIL NIL NIL NIL) '
         b'"mixed" ("boundary" "b2") NIL NIL NIL) 20 NIL NIL NIL NIL) "mixed" ("boundary" "b1") NIL NIL NIL) '
         b'BODY[HEADER] {20}', b"Subject: x\r\n\r\n      "),
        b")",
        b"3 (FLAGS (\\Seen))",
    ]
    [item, unsolicited] = bodystructure.responses(data)
    assert item["UID"] == b"7" and item["RFC822.SIZE"] == b"1234" and item["BODY[HEADER]"].startswith(b"Subject")
    assert unsolicited == {"FLAGS": [b"\\Seen"]}
    parts = bodystructure.parts(item["BODYSTRUCTURE"])
    assert [(p.filename, p.content_type) for p in parts] == [
        ("情况清单.xlsx", "application/octet-stream"), ("扫描件.pdf", "application/pdf")]
