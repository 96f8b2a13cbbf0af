"""Never stall, never lose the record (issue 14 items 4-6): each message guarded around every
step, each item of the tick too; a database file deleted or replaced under the daemon noticed
before a mail leaves INBOX; a send whose outcome could not be recorded (the disk full) never
sent again by itself. Real Dovecot, aiosmtpd and SQLite; faults put in with mailbot/faults.py
(its module switches set here, in-process, as MAILBOT_RAISE_AT / MAILBOT_DISK_FULL_AT /
MAILBOT_FAULT_MARK would), and a real full filesystem (a tmpfs in a mount namespace)."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from mailbot import digest, faults, runner, schedule, status, store
from mailbot.models import Message, Outgoing, Submission, utcnow
from mailbot.obligations import period_of
from tests import factory

REPO = Path(__file__).resolve().parent.parent
PROCESSED, QUARANTINE = "已处理", "待人工处理"


_SWITCH = {"raise_at": "_RAISE", "disk_full_at": "_DISK_FULL", "mark": "_MARK"}


def _inject(monkeypatch, **switches) -> None:
    """Set faults' switches as the environment would at import (MAILBOT_RAISE_AT=... etc.)."""
    for name, value in switches.items():
        monkeypatch.setattr(faults, _SWITCH[name], value.encode() if name == "mark" else value, raising=False)


def _ids(raws: list[bytes]) -> list[str]:
    return [email.message_from_bytes(r, policy=email.policy.default)["Message-ID"].strip("<>") for r in raws]


def _three(setup) -> None:
    """A good checklist from each of three departments; the middle one carries the fault mark."""
    for i, (sender, unit) in enumerate((("scjgj@example.gov.cn", "赞皇县市场监督管理局"),
                                        ("czj@example.gov.cn", "赞皇县财政局"), ("zhz@qq.com", "赞皇镇人民政府"))):
        mid = "<poison-pill@example.gov.cn>" if i == 1 else f"<ok{i}@example.gov.cn>"
        setup.account.append(factory.mail(sender=sender, message_id=mid, attachments=(
            ("情况清单.xlsx", factory.checklist_xlsx(unit=unit), factory.XLSX),)), date=factory.ON_TIME)


# --- item 4: the guard --------------------------------------------------------------------------------

@pytest.mark.parametrize("point, step", [("in_transaction", "store"), ("in_receipt", "receipt")])
def test_an_unexpected_error_in_any_step_quarantines_that_message_and_the_poll_goes_on(setup, monkeypatch,
                                                                                     point, step):
    """A bug striking one message while it is stored or its receipt rendered: its transaction
    rolls back, a quarantined row naming the step is committed, the mail goes to 待人工处理,
    and the mails after it are handled in the same poll (before: the poll failed, the office
    backed off and fetched the same mail again every cycle)."""
    _three(setup)
    _inject(monkeypatch, raise_at=point, mark="poison-pill")
    result = setup.poll()
    assert result.handled == 3
    rows = {m.message_id: m for m in setup.rows(Message)}
    bad = rows.pop("poison-pill@example.gov.cn")
    assert (bad.status, bad.kind, bad.destination) == ("quarantined", "error", QUARANTINE)
    assert bad.reason == f"{step}:Injected" and "fault injected at " + point in bad.detail
    assert bad.sender == "czj@example.gov.cn" and bad.sha256  # cleaned, but what could be kept is kept
    assert {m.status for m in rows.values()} == {"accepted"}
    assert [s.message_pk for s in setup.rows(Submission)] == sorted(m.id for m in rows.values()), "rolled back"
    assert _ids(setup.account.messages(QUARANTINE)) == ["poison-pill@example.gov.cn"]
    assert sorted(_ids(setup.account.messages(PROCESSED))) == ["ok0@example.gov.cn", "ok2@example.gov.cn"]
    assert sorted(m.rcpt_tos for m in setup.smtp.messages) == [("scjgj@example.gov.cn",), ("zhz@qq.com",)]
    month = digest.load_month(setup.engine, setup.office, "2026-11", utcnow())
    assert [q["why"] for q in month.quarantined] == ["系统处理出错"]


def test_a_move_that_fails_unexpectedly_sends_the_mail_to_quarantine_its_outcome_standing(setup, monkeypatch):
    _three(setup)
    _inject(monkeypatch, raise_at="before_move", mark="poison-pill")
    assert setup.poll().handled == 3
    bad = {m.message_id: m for m in setup.rows(Message)}["poison-pill@example.gov.cn"]
    assert (bad.status, bad.destination) == ("accepted", QUARANTINE) and bad.moved_at is not None
    assert f"move to {PROCESSED} failed: move: Injected" in bad.detail
    assert _ids(setup.account.messages(QUARANTINE)) == ["poison-pill@example.gov.cn"]
    assert len(setup.smtp.messages) == 3, "its receipt was committed with it, and goes out"
    assert setup.poll().handled == 0 and setup.account.uids("INBOX") == []


def test_an_infrastructure_error_still_backs_the_office_off(setup, monkeypatch):
    """The disk full (SQLite's OperationalError) is nobody's message's fault: no quarantine, the
    poll fails, the mail stays in INBOX untouched, and is handled once the disk has room."""
    _three(setup)
    _inject(monkeypatch, disk_full_at="in_transaction", mark="poison-pill")
    with pytest.raises(OperationalError):
        setup.poll()
    assert "poison-pill@example.gov.cn" in _ids(setup.account.messages("INBOX"))
    assert "poison-pill@example.gov.cn" not in {m.message_id for m in setup.rows(Message)}
    _inject(monkeypatch, disk_full_at="")
    setup.poll()
    assert {m.status for m in setup.rows(Message)} == {"accepted"} and setup.account.uids("INBOX") == []


def test_one_bad_department_does_not_stop_the_tick(setup, monkeypatch, caplog):
    """Each item of schedule.tick is guarded: a reminder that cannot be built for one department
    leaves the others queued; the next tick queues it."""
    factory.watching(setup.engine, setup.office, dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc))
    when = dt.datetime(2026, 11, 20, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    _inject(monkeypatch, raise_at="tick_item", mark="reminder:czj")
    queued = schedule.tick(setup.engine, setup.office, when)
    assert sorted(q.department_id for q in queued if q.kind == "reminder") == ["scjgj", "zhz"]
    assert "reminder:czj:2026-11:20 not queued: unexpected error" in caplog.text
    _inject(monkeypatch, raise_at="")
    assert [q.department_id for q in schedule.tick(setup.engine, setup.office, when)] == ["czj"]


# --- item 5: the database file deleted or replaced ------------------------------------------------------

@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_file_lost_under_the_daemon_stops_it_taking_mail(how, mailbox_account, smtp_server, tmp_var):
    """The daemon went on writing into the deleted file, moved 3 mails out of INBOX and answered
    them; after a restart every record was gone. Now: noticed before any mail leaves INBOX,
    logged, the office told by mail (sent directly: the outbox is in the lost file), no mail
    taken, and the daemon keeps running (restarting it would make a fresh empty database)."""
    data = factory.config_dict(mailbox_account, smtp_server, tmp_var)
    path = factory.write_config(tmp_var / "mailbot.yaml", data)
    log_path = tmp_var / "daemon.log"
    env = {**os.environ, "TEST_IMAP_PASSWORD": mailbox_account.password}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(path), "run"], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        mailbox_account.append(factory.mail(message_id="<before@example.gov.cn>"), date=factory.ON_TIME)
        smtp_server.wait_for(1, timeout=30)
        db = tmp_var / "mailbot.db"
        if how == "deleted":
            for name in ("mailbot.db", "mailbot.db-wal", "mailbot.db-shm"):
                (tmp_var / name).unlink(missing_ok=True)
        else:  # a copy put in its place (e.g. an old backup restored with mv)
            shutil.copy(db, tmp_var / "copy.db")
            os.replace(tmp_var / "copy.db", db)
        lost = ["<lost1@example.gov.cn>", "<lost2@example.gov.cn>", "<lost3@example.gov.cn>"]
        mailbox_account.append_many([factory.mail(message_id=m) for m in lost], date=factory.ON_TIME)
        alert = smtp_server.wait_for(2, timeout=30)[-1]
        assert alert.message["Subject"] == "【情况清单收件系统】数据库文件丢失，系统已停止收件，请尽快处理"
        assert alert.rcpt_tos == ("office@example.test",)
        text = alert.message.get_body(("plain",)).get_content()
        assert f"数据库文件 {db} {'已被删除' if how == 'deleted' else '已被另一个文件替换'}" in text
        time.sleep(3)  # several polls' worth
        assert sorted(_ids(mailbox_account.messages("INBOX"))) == [m.strip("<>") for m in lost]
        assert len(smtp_server.messages) == 2, "no receipt for a mail recorded in the lost file"
        assert proc.poll() is None, "it keeps running: a restart would begin an empty database"
        log_text = log_path.read_text()
        assert "CRITICAL mailbot.daemon: 数据库文件" in log_text and "not taking mail" in log_text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- item 6: a send whose outcome could not be recorded -----------------------------------------------

def _expire_leases(engine) -> None:
    with store.writing(engine) as s:
        for out in s.exec(select(Outgoing).where(Outgoing.status.in_(("pending", "sending")))).scalars():
            out.next_attempt_at = utcnow() - dt.timedelta(seconds=1)


def test_a_send_whose_outcome_could_not_be_recorded_is_not_sent_again_by_itself(setup, monkeypatch):
    """The disk full at the moment a send is recorded: the receipt went out twice (72 s apart,
    same Message-ID, when its lease expired). Now the attempt was recorded `sending` before the
    end of DATA; once its lease has run out it is `uncertain`: not sent again, shown as 发送结果不明
    in status and the digest; `mailbot resend` sends it by hand."""
    setup.account.append(factory.mail(message_id="<full@example.gov.cn>"), date=factory.ON_TIME)
    _inject(monkeypatch, disk_full_at="after_smtp")
    with pytest.raises(OperationalError, match="database or disk is full"):
        setup.poll()
    assert len(setup.smtp.messages) == 1
    [out] = setup.rows(Outgoing)
    assert out.status == "sending" and out.attempted_at is not None
    _inject(monkeypatch, disk_full_at="")
    assert runner.deliver_all_due(setup.engine, setup.office) == 0, "leased: nothing to send yet"
    _expire_leases(setup.engine)
    assert runner.deliver_all_due(setup.engine, setup.office) == 0
    [out] = setup.rows(Outgoing)
    assert out.status == "uncertain" and "发送结果不明" in out.last_error
    time.sleep(1)
    assert runner.deliver_all_due(setup.engine, setup.office) == 0 and len(setup.smtp.messages) == 1, "sent again"
    [dept] = [d for d in status.status(setup.engine, setup.office, "2026-11") if d["id"] == "scjgj"]
    shown = io.StringIO()
    status.print_table(setup.office, [dept], "2026-11", Console(file=shown, width=200))
    assert f"发送结果不明（编号 {out.id}）" in shown.getvalue() and "mailbot resend" in shown.getvalue()
    assert dept["sent"] == [{"id": out.id, "kind": "receipt", "status": "uncertain", "at": dept["sent"][0]["at"]}]
    now = utcnow()
    month = digest.load_month(setup.engine, setup.office, period_of(now, setup.office.office.tz), now)
    [failed] = month.failed
    assert failed["status"] == "发送结果不明" and f"编号 {out.id}" in failed["error"]
    from mailbot.cli import main

    assert main(["--config", str(setup.config_path), "resend", str(out.id)]) == 0
    assert [m.message["Message-ID"] for m in setup.smtp.messages] == [f"<{out.message_id}>"] * 2
    assert {o.status for o in setup.rows(Outgoing)} == {"sent"}


def test_a_connection_lost_after_the_end_of_data_is_uncertain_and_one_lost_before_is_retried(setup):
    """The server has the whole mail when the connection drops before its reply: nobody knows
    whether it took it (uncertain, not sent again). Dropped at connect: simply retried."""
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    setup.smtp.drop_connections("connect", times=1)
    setup.poll()
    [out] = setup.rows(Outgoing)
    assert out.status == "pending" and out.attempts == 1
    setup.smtp.drop_connections("data", times=1)
    _expire_leases(setup.engine)
    assert runner.deliver_all_due(setup.engine, setup.office) == 0
    [out] = setup.rows(Outgoing)
    assert out.status == "uncertain" and "SMTPServerDisconnected" in out.last_error
    _expire_leases(setup.engine)
    assert runner.deliver_all_due(setup.engine, setup.office) == 0 and setup.smtp.messages == []


def _mount_namespaces() -> str | None:
    """Why a daemon cannot run on a small tmpfs of its own here (None when it can)."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "unshare and nsenter are not installed (util-linux)"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt && umount /mnt"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a mount namespace ({probe.stderr.strip()}): it needs CAP_SYS_ADMIN"
    return None


@pytest.mark.slow
def test_the_disk_full_when_a_send_is_recorded_on_a_real_full_filesystem(mailbox_account, smtp_server, tmp_path):
    """`mailbot run` with its database on an 8 MB tmpfs of its own (a mount namespace, so nothing
    outside sees it); the SMTP server fills that filesystem just before it accepts the receipt.
    The outcome cannot be recorded (SQLite: database or disk is full); once the lease has run out
    the receipt is uncertain and is not sent again; the mail itself is recorded and moved."""
    if why := _mount_namespaces():
        pytest.skip(why)
    var = tmp_path / "var"
    var.mkdir()
    data = factory.config_dict(mailbox_account, smtp_server, var, smtp={"deadline_seconds": 2})
    path = factory.write_config(tmp_path / "mailbot.yaml", data)
    env = {**os.environ, "TEST_IMAP_PASSWORD": mailbox_account.password}
    log_path = tmp_path / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                                 f'mount -t tmpfs -o size=8m,mode=0700 tmpfs "{var}" && exec "$@"', "sh",
                                 sys.executable, "-m", "mailbot", "--config", str(path), "run"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    filler = Path(f"/proc/{proc.pid}/root{var}") / "filler"  # in the daemon's var/, as its namespace sees it

    def query(sql: str) -> list:
        """Read the daemon's database from inside its mount namespace (SQLite resolves the
        /proc/PID/root link to our own root, so the path alone does not reach it)."""
        code = ("import json, sqlite3, sys; db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True); "
                "print(json.dumps(db.execute(sys.argv[2]).fetchall()))")
        out = subprocess.run(["nsenter", "--target", str(proc.pid), "--mount", "--", sys.executable, "-c", code,
                              str(var / "mailbot.db"), sql], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def fill(_envelope) -> None:
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:  # ENOSPC: the filesystem is full
            pass
        finally:
            os.close(fd)

    try:
        assert factory.wait_until(lambda: "connected to" in log_path.read_text(), 30), log_path.read_text()
        smtp_server.before_accept = fill
        mailbox_account.append(factory.mail(message_id="<fullfs@example.gov.cn>"), date=factory.ON_TIME)
        smtp_server.wait_for(1, timeout=30)
        smtp_server.before_accept = None
        assert factory.wait_until(lambda: "database or disk is full" in log_path.read_text(), 15), \
            log_path.read_text()[-3000:]
        filler.unlink()  # room again: whatever comes next can be recorded
        receipt = "select status from outbox where kind = 'receipt'"  # (a tick may queue other mail meanwhile)
        assert query(receipt) == [["sending"]]
        lease = 2 * 2 + 2 + 30 + 5  # outbox.lease_for with deadline_seconds 2, and the sender's next look
        assert factory.wait_until(lambda: query(receipt) == [["uncertain"]], lease + 30), log_path.read_text()[-3000:]
        time.sleep(3)
        receipts = [m for m in smtp_server.messages if m.message["X-Mailbot"] == "receipt"]
        assert len(receipts) == 1, "the receipt was sent again"
        assert query("select status, destination, moved_at is not null from message") == [["accepted", PROCESSED, 1]]
        assert mailbox_account.uids("INBOX") == []
        log_text = log_path.read_text()
        assert "marked uncertain, not sent again" in log_text
        print("\nFAULTS disk full when the send is recorded:", *[line for line in log_text.splitlines()
                                                              if "disk is full" in line or "uncertain" in line])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        smtp_server.before_accept = None
        if proc.poll() is None:
            proc.kill()
            proc.wait()
