"""`mailbot run` as a real process: it answers mail, survives a server restart, stops on SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from mailbot import store
from mailbot.models import Outgoing
from tests import factory


@pytest.fixture
def daemon(mailbox_account, smtp_server, tmp_var):
    path = factory.write_config(tmp_var / "mailbot.yaml", factory.config_dict(mailbox_account, smtp_server, tmp_var))
    env = {**os.environ, "TEST_IMAP_PASSWORD": mailbox_account.password}
    log = open(tmp_var / "daemon.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(path), "run"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    proc.log_path = tmp_var / "daemon.log"
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


def test_daemon_answers_new_mail_and_stops_on_sigterm(daemon, mailbox_account, smtp_server):
    assert factory.wait_until(lambda: mailbox_account.sessions()), "the daemon never logged in"
    mailbox_account.append(factory.mail(), date=factory.ON_TIME)
    smtp_server.wait_for(1, timeout=15)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=10) == 0
    log = daemon.log_path.read_text()
    assert "mailbot stopped" in log
    assert mailbox_account.uids("INBOX") == []


def test_daemon_reconnects_after_the_imap_server_restarts(daemon, mailbox_account, smtp_server, dovecot_server):
    mailbox_account.append(factory.mail(), date=factory.ON_TIME)
    smtp_server.wait_for(1, timeout=15)
    dovecot_server.restart()
    mailbox_account.append(factory.mail(sender="czj@example.gov.cn"), date=factory.ON_TIME)
    smtp_server.wait_for(2, timeout=30)
    assert {m.rcpt_tos for m in smtp_server.messages} == {("scjgj@example.gov.cn",), ("czj@example.gov.cn",)}
    assert daemon.poll() is None, "the daemon must survive a server restart"
    assert "poll failed" in daemon.log_path.read_text()


@pytest.mark.slow
def test_idle_never_misses_a_mail_that_arrives_between_commands(mailbox_account, smtp_server, tmp_var):
    """With a 5-minute poll, only IDLE can wake the daemon: every mail, each sent as soon as
    the previous receipt arrived, is still answered within seconds."""
    data = factory.config_dict(mailbox_account, smtp_server, tmp_var, imap={"poll_seconds": 300},
                               replies={"daily_cap_per_sender": 1000})
    path = factory.write_config(tmp_var / "mailbot.yaml", data)
    env = {**os.environ, "TEST_IMAP_PASSWORD": mailbox_account.password}
    proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(path), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        assert factory.wait_until(lambda: mailbox_account.sessions())
        for i in range(30):
            mailbox_account.append(factory.mail(message_id=f"<idle{i}@example.gov.cn>"), date=factory.ON_TIME)
            smtp_server.wait_for(i + 1, timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_sender_delivers_while_the_poll_loop_backs_off(setup):
    """IMAP is down and the loop waits out its backoff; mail queued meanwhile goes out (SMTP
    works: the sender thread is not the polling thread), and the loop does not cut its
    backoff short to poll again."""
    import threading

    from mailbot.daemon import Daemon, OfficeLoop
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    setup.smtp.down()
    setup.poll()  # the receipt is queued, its delivery failed
    setup.smtp.up()
    with store.writing(setup.engine) as s:
        for out in s.exec(select(Outgoing)).scalars():
            out.next_attempt_at = out.created_at
    daemon = Daemon(setup.config, setup.engine)
    loop = OfficeLoop(daemon, setup.office)
    loop.holding = True  # as when the daemon has taken the office
    sender = threading.Thread(target=loop.sender.run)
    sender.start()
    try:
        started = time.monotonic()
        waiter = threading.Thread(target=loop._back_off, args=(2.0,))
        waiter.start()
        loop.sender.nudge()
        assert factory.wait_until(lambda: len(setup.smtp.messages) == 1, timeout=5)
        waiter.join()
        assert time.monotonic() - started >= 2.0
    finally:
        daemon.stopping.set()
        loop.sender.nudge()
        sender.join(timeout=10)
    assert not sender.is_alive()


_RUN_AND_LIST_IMPORTS = r'''
import atexit, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\n".join(sorted(sys.modules))))
sys.argv[0] = "mailbot"
runpy.run_module("mailbot", run_name="__main__", alter_sys=True)  # as `python -m mailbot`
'''


def test_a_daemon_that_files_mail_never_loads_the_document_writers(mailbox_account, smtp_server, tmp_var):
    """openpyxl, python-docx and lxml (some 10 MB of the daemon's main process) are imported
    where the digest's workbook, an export or a 通报 draft is written: filing a checklist and
    answering it needs none of them."""
    path = factory.write_config(tmp_var / "mailbot.yaml", factory.config_dict(mailbox_account, smtp_server, tmp_var))
    env = {**os.environ, "TEST_IMAP_PASSWORD": mailbox_account.password}
    listed = tmp_var / "modules.txt"
    proc = subprocess.Popen([sys.executable, "-c", _RUN_AND_LIST_IMPORTS, str(listed), "--config", str(path), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        mailbox_account.append(factory.mail(), date=factory.ON_TIME)
        smtp_server.wait_for(1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    modules = set(listed.read_text().split())
    assert {"mailbot.daemon", "mailbot.intake", "mailbot.schedule", "mailbot.digest"} <= modules
    assert smtp_server.messages[0].rcpt_tos == ("scjgj@example.gov.cn",)
    assert not {"openpyxl", "docx", "lxml"} & {m.split(".")[0] for m in modules}
