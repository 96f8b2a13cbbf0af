"""Reminders, notices and the 通报: time frozen with time-machine, mail through the real SMTP
capture, a SQLite file; submissions through the real intake path (Dovecot) in the month walk."""
from __future__ import annotations

import datetime as dt
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import types
from pathlib import Path

import docx
import openpyxl
import pytest
import time_machine
from rich.console import Console
from sqlalchemy import select

from mailbot import config as config_mod, letters, obligations, runner, schedule, store, workdays
from mailbot.cli import main
from mailbot.daemon import Daemon, OfficeLoop, exclusive
from mailbot.models import Message, Outgoing, Submission
from mailbot.status import print_table, status
from tests import factory

CST = dt.timezone(dt.timedelta(hours=8))
HOUR = dt.timedelta(hours=1)
DEPARTMENTS = factory.DEPARTMENTS + [
    {"id": "jtj", "name": "赞皇县交通运输局", "emails": ["jtj@example.gov.cn"]},
    {"id": "old", "name": "赞皇县原粮食局", "emails": ["old@example.gov.cn"], "until": "2026-10"},
    {"id": "new", "name": "赞皇县数据和政务服务局", "emails": ["new@example.gov.cn"], "since": "2026-12"},
]
ADDRESS = {d["id"]: tuple(d["emails"]) for d in DEPARTMENTS}
LEADER = ("leader@example.test",)
NAME = {d["id"]: d["name"] for d in DEPARTMENTS}


def at(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=CST)


def _config(account, smtp, var, weekly: bool = False, **schedule_cfg) -> dict:
    """Weekly digests only where a test asks for them: the other tests count the deadline mail."""
    data = factory.config_dict(account, smtp, var, departments=DEPARTMENTS,
                               recipients={"digest": list(LEADER), "escalation": ["xwb@example.gov.cn"]})
    data["schedule"] = {"weekly_digest_day": "monday" if weekly else None, **schedule_cfg}
    return data


def kind_of(captured) -> str:
    return captured.message["X-Mailbot"]


def text_of(captured) -> str:
    return captured.message.get_body(preferencelist=("plain",)).get_content()


def attachments(captured) -> dict[str, bytes]:
    return {a.get_filename(): a.get_content() for a in captured.message.iter_attachments()}


class World:
    """One office against a SQLite file and the SMTP capture; `step(t)` is one tick at t."""

    def __init__(self, data: dict, smtp, var: Path, traveller, since: dt.datetime | None = None):
        self.data, self.smtp, self.var, self.traveller = data, smtp, var, traveller
        self.log: list[tuple[dt.datetime, str, tuple]] = []
        self.restart()
        if since is not None:
            self.watch(since)

    def watch(self, since: dt.datetime) -> None:
        """The start line, as if the mailbox had been polled from `since` on."""
        factory.watching(self.engine, self.office, since)

    def restart(self) -> None:
        """As a new process would: config parsed again, a new engine."""
        self.config = config_mod.parse(self.data)
        self.office = self.config.office()
        self.engine = store.connect(self.config.database.url)

    def step(self, t: dt.datetime, repeat: int = 1) -> list:
        self.traveller.move_to(t)
        queued = []
        for _ in range(repeat):
            queued += schedule.tick(self.engine, self.office, t)
            runner.deliver_all_due(self.engine, self.office)
        self.record(t)
        return queued

    def record(self, t: dt.datetime) -> None:
        for m in self.smtp.messages[len(self.log):]:
            self.log.append((t, kind_of(m), m.rcpt_tos))

    def sent(self, kind: str | None = None) -> list[tuple]:
        return [e for e in self.log if kind is None or e[1] == kind]

    def file(self, dept: str, period: str, when: dt.datetime, accepted: bool = True, problems=()) -> None:
        """A submission row as intake would leave it (pure schedule tests)."""
        with store.writing(self.engine) as s:
            msg = Message(office=self.office.id, folder="INBOX", uidvalidity=1, uid=int(when.timestamp()),
                          sha256=f"{dept}{when.timestamp()}", received_at=when, status="accepted" if accepted else "rejected",
                          department_id=dept)
            s.add(msg)
            s.flush()
            s.add(Submission(office=self.office.id, message_pk=msg.id, department_id=dept, period=period,
                             received_at=when, accepted=accepted, row_count=1 if accepted else 0,
                             problems=[dict(code="x", message=p, severity="error") for p in problems]))

    def keys(self) -> list[str]:
        with store.reading(self.engine) as s:
            return sorted(s.exec(select(Outgoing.key)).scalars().all())


NO_IMAP = types.SimpleNamespace(port=1, user="office@example.test")  # tick and delivery never touch IMAP


@pytest.fixture
def frozen():
    with time_machine.travel(at(2026, 11, 1), tick=False) as traveller:
        yield traveller


@pytest.fixture
def world(smtp_server, tmp_var, frozen):
    """A World whose start line is 1 November (installed then), unless `since` says otherwise."""
    def make(since=at(2026, 11, 1), **schedule_cfg):
        return World(_config(NO_IMAP, smtp_server, tmp_var, **schedule_cfg), smtp_server, tmp_var, frozen, since)
    return make


# --- the month walk -------------------------------------------------------------------------------

BAD_ROWS = [
    ("", "食品经营许可证核发", "2026-11-03", "经信用中国查询，无失信记录", "无"),
    ("张某（110105194912310021）", "个体工商户登记", "2026-11-04", "经信用中国查询，无失信记录", "无"),
]


def test_a_whole_month_of_ticks(mailbox_account, smtp_server, tmp_var, frozen, monkeypatch):
    """November 2026, hour by hour, ticking twice each hour and restarting every midnight."""
    monkeypatch.setenv("TEST_IMAP_PASSWORD", mailbox_account.password)
    data = _config(mailbox_account, smtp_server, tmp_var, weekly=True)
    data["imap"]["since"] = "2026-11-18"  # installed on the 18th: the week before is not one it watched
    w = World(data, smtp_server, tmp_var, frozen)
    arrivals = {
        at(2026, 11, 18, 10): factory.mail(attachments=(("清单.xlsx", factory.checklist_xlsx(
            report_date=dt.date(2026, 11, 18)), factory.XLSX),)),
        at(2026, 11, 19, 10): factory.mail(sender="czj@example.gov.cn", attachments=(("清单.xlsx", factory.checklist_xlsx(
            BAD_ROWS, unit="赞皇县财政局", report_date=dt.date(2026, 11, 19)), factory.XLSX),)),
        at(2026, 11, 26, 8): factory.mail(sender="jtj@example.gov.cn", attachments=(("清单.xlsx", factory.checklist_xlsx(
            unit="赞皇县交通运输局", report_date=dt.date(2026, 11, 26)), factory.XLSX),)),
    }
    t = at(2026, 11, 1)
    while t < at(2026, 12, 1):
        if t.hour == 0:
            w.restart()
        if t in arrivals:
            frozen.move_to(t)
            mailbox_account.append(arrivals[t], date=t)
            runner.poll_once(w.engine, w.config, w.office)
        w.step(t, repeat=2)
        t += HOUR

    reminders = [(d, "reminder", ADDRESS[x]) for d in (at(2026, 11, 20, 9), at(2026, 11, 24, 9)) for x in ("czj", "zhz", "jtj")]
    assert w.log == [
        (at(2026, 11, 18, 10), "receipt", ("scjgj@example.gov.cn",)),
        (at(2026, 11, 19, 10), "receipt", ("czj@example.gov.cn",)),
        *reminders[:3],
        (at(2026, 11, 23, 9), "weekly", LEADER),  # the first Monday mailbot watched a whole morning
        *reminders[3:],
        (at(2026, 11, 26, 8), "receipt", ("jtj@example.gov.cn",)),
        (at(2026, 11, 26, 9), "tongbao", LEADER),
        (at(2026, 11, 26, 9), "digest", LEADER),
        (at(2026, 11, 26, 9), "notice", ADDRESS["czj"]),
        (at(2026, 11, 26, 9), "notice", ADDRESS["zhz"]),
        (at(2026, 11, 30, 9), "weekly", LEADER),
    ]
    mails = {(kind_of(m), m.rcpt_tos, i): m for i, m in enumerate(smtp_server.messages)}
    by = lambda kind, dept, n=0: [m for (k, r, _i), m in mails.items() if k == kind and r == ADDRESS.get(dept, dept)][n]  # noqa: E731

    # the rejected department is told what is still wrong, with the ID number masked
    rejected = text_of(by("reminder", "czj"))
    assert "贵单位于2026年11月19日报送的2026年11月情况清单未通过校验" in rejected
    assert "第7行“市场主体（自然人）名称”列（A7）" in rejected
    assert "110105********0021" in rejected and "110105194912310021" not in rejected
    assert "请按上述提示修改后，于2026年11月25日（含当日）前重新报送" in rejected

    missing = by("reminder", "zhz", 1)
    assert missing.message["Subject"] == "提醒：请于2026年11月25日前报送2026年11月情况清单（赞皇镇人民政府）"
    assert "截至2026年11月24日，我办尚未收到贵单位2026年11月的情况清单" in text_of(missing)
    assert missing.message["Message-ID"] == f"<{letters.message_id_for(w.office, 'reminder:zhz:2026-11:24')}>"
    assert missing.message["Auto-Submitted"] == "auto-generated"
    blank = openpyxl.load_workbook(io.BytesIO(attachments(missing)["情况清单模板.xlsx"]))
    assert blank.sheetnames[0] == "情况清单"

    notice = by("notice", "zhz")
    assert notice.message["Subject"] == "关于未按时报送2026年11月情况清单的通知（赞皇镇人民政府）"
    assert "截至报送截止时间（2026年11月25日），我办未收到贵单位2026年11月的情况清单" in text_of(notice)
    assert "并将通报结果上报县委、县政府" in text_of(notice)
    assert "视为未按要求报送" in text_of(by("notice", "czj"))

    tb = by("tongbao", LEADER)
    body = text_of(tb)
    assert "应报送单位4个，按时报送1个；未按要求报送3个，其中未报送1个、逾期报送1个、报送未通过1个。" in body
    assert "1. 赞皇镇人民政府：未报送（截至通报时未报送）" in body
    assert "2. 赞皇县财政局：报送未通过" in body
    assert "3. 赞皇县交通运输局：逾期报送（11月26日报送，逾期1天）" in body
    assert "并转发至：xwb@example.gov.cn" in body
    draft = docx.Document(io.BytesIO(attachments(tb)[
        "关于2026年11月行政管理事项中使用信用记录和信用报告情况清单报送情况的通报（草稿）.docx"]))
    table, _colophon = draft.tables  # the list, the 版记
    assert [[c.text for c in row.cells][1:3] for row in table.rows[1:]] == [
        [NAME["zhz"], "未报送"], [NAME["czj"], "报送未通过"], [NAME["jtj"], "逾期报送"]]

    # nobody else was written to: not the retired or the new department, not the escalation address
    everyone = {r for _t, _k, rcpts in w.log for r in rcpts}
    assert everyone == {"scjgj@example.gov.cn", "czj@example.gov.cn", "zhz@qq.com", "jtj@example.gov.cn", *LEADER}

    sent = {d["id"]: [m["kind"] for m in d["sent"]] for d in status(w.engine, w.office, "2026-11")}
    assert sent == {"scjgj": ["receipt"], "czj": ["receipt", "reminder", "reminder", "notice"],
                    "zhz": ["reminder", "reminder", "notice"], "jtj": ["reminder", "reminder", "receipt"]}


def test_status_table_shows_the_mail_sent_to_each_department(world, capsys):
    w = world()
    w.file("scjgj", "2026-11", at(2026, 11, 2, 10))
    w.step(at(2026, 11, 20, 9))
    print_table(w.office, status(w.engine, w.office, "2026-11"), "2026-11", Console(width=200))
    out = capsys.readouterr().out
    assert "催报提醒 11-20 09:00 已发送" in out
    assert out.count("催报提醒") == 3  # czj, zhz, jtj; scjgj filed


# --- catch-up after downtime ----------------------------------------------------------------------

def test_downtime_from_the_24th_to_the_27th_sends_the_notice_not_the_reminder(world):
    w = world()
    for t in (at(2026, 11, 20, 9), at(2026, 11, 23, 23)):
        w.step(t)
    assert [k for _t, k, _r in w.sent()] == ["reminder"] * 4  # scjgj, czj, zhz, jtj
    w.file("scjgj", "2026-11", at(2026, 11, 21, 10))
    w.restart()
    w.step(at(2026, 11, 27, 10))
    assert w.sent()[4:] == [
        (at(2026, 11, 27, 10), "tongbao", LEADER),
        (at(2026, 11, 27, 10), "digest", LEADER),
        (at(2026, 11, 27, 10), "notice", ADDRESS["czj"]),
        (at(2026, 11, 27, 10), "notice", ADDRESS["zhz"]),
        (at(2026, 11, 27, 10), "notice", ADDRESS["jtj"]),
    ]
    assert not any(k.startswith("reminder:") and k.endswith(":24") for k in w.keys())


def test_of_several_missed_reminders_only_the_latest_goes_out(world):
    w = world()
    w.step(at(2026, 11, 19, 12))
    assert w.step(at(2026, 11, 24, 15)) != []
    assert w.keys() == [f"reminder:{d}:2026-11:24" for d in sorted(("scjgj", "czj", "zhz", "jtj"))]
    assert w.step(at(2026, 11, 25, 23, 59)) == []


def test_a_late_reminder_is_still_sent_before_the_deadline(world):
    w = world()
    w.step(at(2026, 11, 18, 9))
    w.file("czj", "2026-11", at(2026, 11, 18, 10))
    w.step(at(2026, 11, 22, 15))  # down over the 20th; the 20th's reminder still means something
    assert [e[2] for e in w.sent("reminder")] == [ADDRESS[d] for d in ("scjgj", "zhz", "jtj")]
    assert w.keys() == [f"reminder:{d}:2026-11:20" for d in ("jtj", "scjgj", "zhz")]


@pytest.mark.parametrize("back_at, notices", [
    (at(2026, 12, 21, 10), ["2026-11"]),  # before December's notice: November's is still sent
    (at(2026, 12, 26, 10), ["2026-11"]),  # December's notice day is a Saturday: it waits for Monday the 28th
    (at(2026, 12, 28, 10), ["2026-12"]),  # after it: November's is dropped, December's goes
])
def test_the_previous_period_notice_is_caught_up_until_the_next_notice(world, back_at, notices):
    w = world()
    w.step(at(2026, 11, 20, 9))
    w.restart()
    queued = w.step(back_at)
    assert sorted({q.period for q in queued if q.kind in ("notice", "tongbao")}) == notices
    assert [q.key for q in queued if q.kind == "tongbao"] == [f"tongbao:{p}" for p in notices]
    reminders = [q.key for q in queued if q.kind == "reminder"]
    if back_at.day == 21:  # December's 20th reminder (moved to Friday the 18th) is still ahead of the deadline
        assert reminders == [f"reminder:{d}:2026-12:20" for d in ("scjgj", "czj", "zhz", "jtj", "new")]
    else:
        assert reminders == []


def test_without_digest_recipients_notices_go_and_the_tongbao_waits(world):
    w = world()
    w.data["recipients"] = {"digest": [], "escalation": ["xwb@example.gov.cn"]}
    w.restart()
    w.step(at(2026, 11, 20, 9))
    w.step(at(2026, 11, 26, 9))
    assert [k for _t, k, _r in w.sent("notice")] == ["notice"] * 4
    assert "tongbao:2026-11" not in w.keys()
    assert {r for _t, _k, rcpts in w.sent() for r in rcpts}.isdisjoint({"xwb@example.gov.cn", *LEADER})


def test_a_fresh_database_does_not_accuse_anyone_of_a_month_it_never_saw(world):
    w = world(since=None)
    assert w.step(at(2026, 11, 27, 10)) == []
    assert w.keys() == []
    w.watch(at(2026, 12, 1))  # installed on 1 December: the start line
    w.file("scjgj", "2026-12", at(2026, 12, 1, 10))
    w.step(at(2026, 12, 28, 10))
    assert "tongbao:2026-12" in w.keys() and "tongbao:2026-11" not in w.keys()


# --- working days ---------------------------------------------------------------------------------

def test_reminders_and_notices_around_the_national_day_week_of_2026(world):
    """Sunday 20 September and Saturday 10 October are 调休 workdays; 1-7 October is off."""
    w = world(reminder_days=[3, 10, 20, 24])
    sched = w.office.schedule
    assert obligations.reminder_dates("2026-09", sched) == {
        3: dt.date(2026, 9, 3), 10: dt.date(2026, 9, 10), 20: dt.date(2026, 9, 20), 24: dt.date(2026, 9, 24)}
    assert obligations.reminder_dates("2026-10", sched) == {
        3: dt.date(2026, 10, 8),  # the previous workday is in September: the first workday after the holiday
        10: dt.date(2026, 10, 10), 20: dt.date(2026, 10, 20), 24: dt.date(2026, 10, 23)}
    assert obligations.notice_date("2026-09", sched) == dt.date(2026, 9, 28)  # Saturday the 26th -> Monday
    w.watch(at(2026, 8, 31))  # installed on 31 August
    w.file("scjgj", "2026-09", at(2026, 8, 31, 10))  # scjgj filed September early
    t = at(2026, 9, 1)
    while t < at(2026, 10, 31):
        w.step(t.replace(hour=8, minute=59))
        w.step(t.replace(hour=9))
        t += dt.timedelta(days=1)
    days = sorted({(when.date(), when.hour, kind) for when, kind, rcpt in w.sent() if rcpt != LEADER})
    assert days == [
        (dt.date(2026, 9, 3), 9, "reminder"), (dt.date(2026, 9, 10), 9, "reminder"),
        (dt.date(2026, 9, 20), 9, "reminder"), (dt.date(2026, 9, 24), 9, "reminder"),
        (dt.date(2026, 9, 28), 9, "notice"),
        (dt.date(2026, 10, 8), 9, "reminder"), (dt.date(2026, 10, 10), 9, "reminder"),
        (dt.date(2026, 10, 20), 9, "reminder"), (dt.date(2026, 10, 23), 9, "reminder"),
        (dt.date(2026, 10, 26), 9, "notice"),
    ]
    # the retired department owed September and October; the new one neither
    assert ADDRESS["old"] in {r for _t, _k, r in w.sent()} and ADDRESS["new"] not in {r for _t, _k, r in w.sent()}


def test_a_weekend_20th_moves_to_friday(world):
    w = world(since=at(2026, 12, 1))
    assert obligations.reminder_dates("2026-12", w.office.schedule) == {20: dt.date(2026, 12, 18), 24: dt.date(2026, 12, 24)}
    assert w.step(at(2026, 12, 18, 8, 59)) == []
    queued = w.step(at(2026, 12, 18, 9))
    assert [q.key for q in queued] == [f"reminder:{d}:2026-12:20" for d in ("scjgj", "czj", "zhz", "jtj", "new")]
    assert w.step(at(2026, 12, 20, 9)) == []


def test_a_deadline_moved_past_a_holiday_moves_the_notice_too(world):
    moved = world(deadline_moves_on_holiday=True).office.schedule
    fixed = world().office.schedule
    assert obligations.notice_date("2026-10", fixed) == dt.date(2026, 10, 26)  # Sunday 25th stays the deadline
    assert obligations.notice_date("2026-10", moved) == dt.date(2026, 10, 27)  # deadline Monday 26th


def test_a_digest_sent_by_hand_on_a_saturday_notice_day_leaves_mondays_scheduled_digest(world, capsys):
    """Saturday 26 December 2026: the notices, the 通报 and the monthly digest move to Monday the
    28th. A clerk's `digest --send` on the Saturday is an interim digest (its own key); the
    scheduled one still goes out on Monday, built as of Monday."""
    w = world(since=at(2026, 12, 1))  # installed on 1 December
    w.file("scjgj", "2026-12", at(2026, 12, 1, 10))
    w.file("czj", "2026-12", at(2026, 12, 27, 15))  # late, over the weekend
    assert obligations.notice_date("2026-12", w.office.schedule) == dt.date(2026, 12, 28)
    saturday = at(2026, 12, 26, 10)
    w.traveller.move_to(saturday)
    path = factory.write_config(w.var / "mailbot.yaml", w.data)
    assert main(["--config", str(path), "digest", "--period", "2026-12", "--out", str(w.var / "out"), "--send"]) == 0
    assert "queued digest:2026-12:2026-12-26 -> leader@example.test" in capsys.readouterr().out.splitlines()
    w.record(saturday)
    assert w.step(at(2026, 12, 26, 10, 5)) == []  # the weekend: nothing scheduled is due
    queued = w.step(at(2026, 12, 28, 9))
    assert "digest:2026-12" in [q.key for q in queued]
    with store.reading(w.engine) as s:
        digests = s.exec(select(Outgoing).where(Outgoing.kind == "digest").order_by(Outgoing.id)).scalars().all()
    assert [(d.key, d.status) for d in digests] == [("digest:2026-12:2026-12-26", "sent"), ("digest:2026-12", "sent")]
    assert "（截至2026年12月26日）" in digests[0].subject and "截至" not in digests[1].subject
    assert "逾期1个" in digests[1].subject and "逾期0个" in digests[0].subject  # Monday's counts czj's Sunday filing


def test_a_year_the_calendar_does_not_know_falls_back_to_monday_friday(world, caplog, monkeypatch):
    monkeypatch.setattr(workdays, "_warned_years", set())
    caplog.set_level(logging.WARNING, logger="mailbot.workdays")
    w = world()
    assert obligations.reminder_dates("2027-03", w.office.schedule) == {20: dt.date(2027, 3, 19), 24: dt.date(2027, 3, 24)}
    w.file("scjgj", "2027-03", at(2027, 3, 1, 10))
    w.step(at(2027, 3, 19, 9))
    assert [r for _t, _k, r in w.sent("reminder")] == [ADDRESS[d] for d in ("czj", "zhz", "jtj", "new")]
    [warning] = [r for r in caplog.records if r.name == "mailbot.workdays"]
    assert "2027" in warning.getMessage() and "needs an update" in warning.getMessage()


# --- at most once ---------------------------------------------------------------------------------

def test_racing_ticks_queue_each_mail_once(world):
    w = world()
    w.file("scjgj", "2026-11", at(2026, 11, 2, 10))  # scjgj filed
    w.traveller.move_to(at(2026, 11, 26, 9))
    engines = [store.connect(w.config.database.url) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    results = []

    def race(engine):
        barrier.wait()
        results.append(schedule.tick(engine, w.office, at(2026, 11, 26, 9)))

    threads = [threading.Thread(target=race, args=(e,)) for e in engines]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(q.key for r in results for q in r) == [
        "digest:2026-11", "notice:czj:2026-11", "notice:jtj:2026-11", "notice:zhz:2026-11", "tongbao:2026-11"]
    runner.deliver_all_due(w.engine, w.office)
    assert len(w.smtp.messages) == 5


def test_a_key_another_database_inserted_first_is_skipped(world, monkeypatch):
    """Without BEGIN IMMEDIATE two ticks may both pass the existence checks; the unique key decides."""
    w = world()
    w.step(at(2026, 11, 20, 9))
    assert len(w.keys()) == 4
    monkeypatch.setattr(schedule, "_queued_keys", lambda *a: set())  # a stale read ...
    monkeypatch.setattr(store, "enqueue", lambda session, mail: (session.add(mail), session.flush()))  # ... and insert
    assert schedule.tick(w.engine, w.office, at(2026, 11, 20, 10)) == []
    assert len(w.keys()) == 4


def test_a_checklist_that_arrives_while_the_tick_runs_stops_its_reminder(world, monkeypatch):
    w = world()
    w.file("czj", "2026-11", at(2026, 11, 20, 8, 59))
    monkeypatch.setattr(schedule, "_submissions", lambda *a: {})  # the tick read before czj's checklist was committed
    queued = schedule.tick(w.engine, w.office, at(2026, 11, 20, 9))
    assert [q.department_id for q in queued] == ["scjgj", "zhz", "jtj"]


def test_a_tick_in_the_past_ignores_checklists_that_came_later(world):
    w = world()
    w.file("czj", "2026-11", at(2026, 11, 21, 10))
    replay = schedule.tick(w.engine, w.office, at(2026, 11, 20, 9), dry_run=True)
    assert [q.department_id for q in replay] == ["scjgj", "czj", "zhz", "jtj"]
    assert [q.department_id for q in schedule.tick(w.engine, w.office, at(2026, 11, 24, 9))] == ["scjgj", "zhz", "jtj"]


def test_dry_run_queues_nothing(world):
    w = world()
    w.file("scjgj", "2026-11", at(2026, 11, 2, 10))
    planned = schedule.tick(w.engine, w.office, at(2026, 11, 26, 9), dry_run=True)
    assert [q.key for q in planned] == ["tongbao:2026-11", "digest:2026-11", "notice:czj:2026-11",
                                        "notice:zhz:2026-11", "notice:jtj:2026-11"]
    assert w.keys() == []


# --- the command line and the daemon --------------------------------------------------------------

def test_tick_command_dry_run_then_real(smtp_server, tmp_var, capsys):
    path = factory.write_config(tmp_var / "mailbot.yaml", _config(NO_IMAP, smtp_server, tmp_var))
    cfg = config_mod.parse(_config(NO_IMAP, smtp_server, tmp_var))
    factory.watching(store.connect(cfg.database.url), cfg.office(), at(2026, 11, 1))
    assert main(["--config", str(path), "tick", "--at", "2026-11-20T09:00", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"would queue reminder 2026-11 {d} -> {', '.join(ADDRESS[d])}: 提醒：请于2026年11月25日前报送2026年11月情况清单（{NAME[d]}）"
        for d in ("scjgj", "czj", "zhz", "jtj")]
    assert smtp_server.messages == []
    assert main(["--config", str(path), "tick", "--at", "2026-11-20T09:00"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("queued reminder 2026-11 scjgj -> scjgj@example.gov.cn, scj_clerk@163.com: 提醒：")
    assert out[-1] == "default: sent 4 mail(s)"
    assert len(smtp_server.messages) == 4
    assert main(["--config", str(path), "tick", "--at", "2026-11-20T01:30+00:00"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "default: nothing due at 2026-11-20T09:30+08:00 (Asia/Shanghai)", "default: sent 0 mail(s)"]


def test_tick_command_rejects_a_bad_time(smtp_server, tmp_var, capsys):
    path = factory.write_config(tmp_var / "mailbot.yaml", _config(NO_IMAP, smtp_server, tmp_var))
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(path), "tick", "--at", "20th of November"])
    assert exc.value.code == 2
    assert "“20th of November”不是时间：请写成如 2026-11-20T09:00" in capsys.readouterr().err


def test_daemon_scheduler_job_ticks_and_delivers(smtp_server, tmp_var, frozen):
    cfg = config_mod.parse(_config(NO_IMAP, smtp_server, tmp_var))
    daemon = Daemon(cfg, store.connect(cfg.database.url))
    factory.watching(daemon.engine, cfg.office(), at(2026, 11, 1))
    scheduler = daemon.start_scheduler()
    try:
        [job] = scheduler.get_jobs()
        assert (job.trigger.interval, job.coalesce, job.max_instances) == (dt.timedelta(seconds=60), True, 1)
    finally:
        scheduler.shutdown()
    frozen.move_to(at(2026, 11, 20, 9, 0, 30))
    daemon.scheduled()  # an office this daemon does not hold has no loop here, and no tick
    assert w_keys(daemon) == []
    loop = daemon.loops[cfg.office().id] = OfficeLoop(daemon, cfg.office())
    daemon.scheduled()  # a loop not (or no longer) holding its office's lease does not tick it
    assert w_keys(daemon) == []
    loop.holding = True  # as once the daemon has taken the office
    daemon.scheduled()
    daemon.scheduled()
    sender = loop.sender
    assert sender._wake.is_set()  # the sender was woken, to deliver what the first tick queued
    assert smtp_server.messages == []  # the job only queues: the sender's thread sends
    runner.deliver_all_due(daemon.engine, loop.office)
    assert sorted(m.rcpt_tos for m in smtp_server.messages) == sorted(ADDRESS[d] for d in ("scjgj", "czj", "zhz", "jtj"))


def w_keys(daemon) -> list[str]:
    with store.reading(daemon.engine) as session:
        return list(session.exec(select(Outgoing.key)).scalars())


def test_a_second_daemon_refuses_to_start(mailbox_account, smtp_server, tmp_var):
    path = factory.write_config(tmp_var / "mailbot.yaml", _config(mailbox_account, smtp_server, tmp_var))
    env = {**os.environ, "TEST_IMAP_PASSWORD": mailbox_account.password}
    cmd = [sys.executable, "-m", "mailbot", "--config", str(path), "run"]
    log_path = tmp_var / "first.log"
    with open(log_path, "wb") as log:
        first = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        assert factory.wait_until(lambda: "holding the lock" in log_path.read_text()), log_path.read_text()
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=30)
        assert second.returncode == 1
        assert second.stderr.strip().endswith(f"mailbot run：另一个 mailbot（进程 {first.pid}）正在使用数据库 {tmp_var}/mailbot.db，不能再启动一个守护进程。")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=15) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    cfg = config_mod.parse(_config(mailbox_account, smtp_server, tmp_var))
    with exclusive(store.connect(cfg.database.url)):  # released when the first one exited
        assert (tmp_var / "mailbot.db.lock").exists()
