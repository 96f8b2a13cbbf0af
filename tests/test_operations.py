"""Operations: config check against real servers, import of a back catalogue, replay, self-watch."""
from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from imap_tools.errors import MailboxLoginError

from mailbot import config as config_mod, preflight, replay
from mailbot.health import Health
from mailbot.models import Message, Outgoing, Submission
from tests import factory


def _office(setup, **overrides):
    return config_mod.parse(factory.config_dict(setup.account, setup.smtp, setup.var, **overrides)).office()


# --- config check --connect ---------------------------------------------------------------------

def test_config_check_connects_to_imap_and_smtp(setup):
    checks = [c for c in preflight.run(setup.config, connect=True) if not c.warning]  # tmp_var is 0755
    assert [c.ok for c in checks] == [True, True, True]
    assert "ID 命令已发送" in checks[1].detail and "UIDVALIDITY" in checks[1].detail


def test_config_check_explains_a_wrong_authorization_code(setup, monkeypatch):
    monkeypatch.setenv("TEST_IMAP_PASSWORD", "wrong")
    check = preflight.check_imap(setup.office)
    assert not check.ok and "客户端授权码" in check.detail


def test_config_check_explains_a_missing_folder_and_a_closed_port(setup):
    check = preflight.check_imap(_office(setup, imap={"folder": "不存在的文件夹"}))
    assert not check.ok and "无法打开文件夹" in check.detail
    from tests.servers import free_port
    check = preflight.check_imap(_office(setup, imap={"port": free_port()}))
    assert not check.ok and "无法连接" in check.detail


def test_config_check_explains_smtp_authentication(setup, monkeypatch):
    setup.smtp.auth_required = True
    monkeypatch.setenv("SMTP_PW", "not-the-password")
    office = _office(setup, smtp={"user": "mailbot", "password_env": "SMTP_PW"})
    check = preflight.check_smtp(office)
    assert not check.ok and "授权码" in check.detail
    monkeypatch.setenv("SMTP_PW", "smtp-secret")
    assert preflight.check_smtp(office).ok


# --- import and replay -----------------------------------------------------------------------

def test_import_ingests_a_folder_of_eml_once_without_answering(setup, tmp_path):
    exported = tmp_path / "exported"
    exported.mkdir()
    (exported / "a.eml").write_bytes(factory.mail(message_id="<old1@example.gov.cn>"))
    (exported / "sub").mkdir()
    (exported / "sub" / "b.eml").write_bytes(factory.mail(sender="czj@example.gov.cn", message_id="<old2@example.gov.cn>",
                                                          attachments=(("c.xlsx", factory.checklist_xlsx(unit="赞皇县财政局"), factory.XLSX),)))
    (exported / "notes.txt").write_text("not mail")
    counts = replay.import_dir(setup.engine, setup.config, setup.office, exported, progress=False)
    assert counts == {"accepted": 2}
    again = replay.import_dir(setup.engine, setup.config, setup.office, exported, progress=False)
    assert again == {"accepted": 2}  # the same rows, found again: nothing new
    assert len(setup.rows(Submission)) == 2 and setup.rows(Outgoing) == []
    received = {m.message_id: m.received_at for m in setup.rows(Message)}
    assert received["old1@example.gov.cn"] == dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.timezone.utc)  # its Date header


def test_replay_reruns_an_archived_message_with_the_current_rules(setup, monkeypatch):
    from mailbot import checklist

    real = checklist.parse
    monkeypatch.setattr(checklist, "parse", lambda book, *a, **k: (_ for _ in ()).throw(RuntimeError("old bug")))
    setup.account.append(factory.mail(message_id="<bug@example.gov.cn>"), date=factory.ON_TIME)
    setup.poll()
    [m] = setup.rows(Message)
    assert m.status == "quarantined"
    monkeypatch.setattr(checklist, "parse", real)  # the bug is fixed in a new release

    original, decision, committed = replay.replay(setup.engine, setup.config, setup.office, "<bug@example.gov.cn>")
    assert decision.status == "accepted" and committed is None and setup.rows(Submission) == []

    _, _, committed = replay.replay(setup.engine, setup.config, setup.office, "bug@example.gov.cn", dry_run=False)
    assert committed.status == "accepted" and committed.reason == f"replay_of:{original.id}"
    setup.poll()  # delivers the receipt the department never got
    assert len(setup.smtp.messages) == 1 and len(setup.rows(Submission)) == 1
    _, _, again = replay.replay(setup.engine, setup.config, setup.office, "bug@example.gov.cn", dry_run=False)
    assert again.id == committed.id and len(setup.smtp.messages) == 1


def test_replay_refuses_a_handled_message_without_force(setup):
    setup.account.append(factory.mail(message_id="<ok@example.gov.cn>"), date=factory.ON_TIME)
    setup.poll()
    from mailbot.errors import MailbotError
    with pytest.raises(MailbotError, match="use --force"):
        replay.replay(setup.engine, setup.config, setup.office, "ok@example.gov.cn", dry_run=False)


# --- the daemon watches itself ---------------------------------------------------------------

def _alerts(setup):
    return [o for o in setup.rows(Outgoing) if o.kind == "alert"]


def test_long_outage_alerts_once_and_recovery_is_announced(setup):
    start = dt.datetime(2026, 11, 26, 1, 0, tzinfo=dt.timezone.utc)
    health = Health(setup.engine, setup.office)
    assert not health.failed(ConnectionRefusedError("down"), start)
    assert not health.failed(ConnectionRefusedError("down"), start + dt.timedelta(minutes=29))
    assert health.failed(ConnectionRefusedError("down"), start + dt.timedelta(minutes=31))
    assert not health.failed(ConnectionRefusedError("down"), start + dt.timedelta(minutes=45))
    restarted = Health(setup.engine, setup.office)  # the daemon restarts while still down
    assert not restarted.failed(ConnectionRefusedError("down"), start + dt.timedelta(hours=2))
    assert restarted.ok(start + dt.timedelta(hours=3))
    assert not restarted.ok(start + dt.timedelta(hours=4))
    alerts = _alerts(setup)
    assert [a.key.split(":")[1] for a in alerts] == ["down", "up"]
    assert all(a.recipients == ["office@example.test"] for a in alerts)
    setup.poll()
    subjects = [m.message["Subject"] for m in setup.smtp.messages]
    assert subjects == ["【情况清单收件系统】邮箱暂时无法连接，请处理", "【情况清单收件系统】邮箱已恢复正常"]


def test_refused_login_alerts_at_once(setup):
    health = Health(setup.engine, setup.office)
    exc = MailboxLoginError(command_result=("NO", [b"[AUTHENTICATIONFAILED]"]), expected="OK")
    with time_machine.travel("2026-11-26 10:00:00+08:00", tick=False):
        assert health.failed(exc)
    [alert] = _alerts(setup)
    assert alert.key == "alert:down:2026-11-26T02:00:00+00:00"
    setup.poll()
    assert "授权码" in setup.smtp.messages[0].message.get_body(("plain",)).get_content()


# --- the same through the command line -------------------------------------------------------

def test_operations_from_the_command_line(setup, tmp_path, capsys):
    import json

    from mailbot.cli import main
    base = ["--config", str(setup.config_path)]
    assert main(base + ["config", "check", "--connect"]) == 0
    assert "登录成功" in capsys.readouterr().out

    exported = tmp_path / "old"
    exported.mkdir()
    (exported / "a.eml").write_bytes(factory.mail(message_id="<cli-old@example.gov.cn>"))
    assert main(["import", str(exported)] + base) == 0  # options may follow the command too
    assert capsys.readouterr().out.strip() == "accepted: 1"

    assert main(base + ["replay", "<cli-old@example.gov.cn>", "--dry-run"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["stored"]["status"] == "accepted" and shown["now"]["status"] == "accepted" and not shown["committed"]
    assert main(base + ["replay", "nobody@example.gov.cn", "--dry-run"]) == 1
