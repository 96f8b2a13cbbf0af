"""Nothing holds the daemon (issue 14 items 1-3): slow and silent peers are cut at a deadline for
the whole operation, filing never waits for SMTP, and SIGTERM ends `mailbot run` within 10 s in
every state. Real servers throughout: Dovecot, aiosmtpd, and the slow peers of tests/servers.py
(a tarpit that accepts TCP and never answers, a banner dripped a byte at a time, a proxy in
front of Dovecot dripping a message body). Deadlines are small here so the tests are quick."""
from __future__ import annotations

import email
import email.policy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from mailbot import runner, store
from mailbot.mailbox import Mailbox
from mailbot.models import Message, Outgoing
from tests import factory
from tests.servers import Dripper, DripProxy, Tarpit, free_port

REPO = Path(__file__).resolve().parent.parent
PROCESSED = "已处理"


class Run:
    """`mailbot run` as its own process on the test servers, its log in a file."""

    def __init__(self, account, capture, var: Path, env: dict | None = None, **overrides):
        self.account, self.var = account, var
        self.data = factory.config_dict(account, capture, var, **overrides)
        self.path = factory.write_config(var / "mailbot.yaml", self.data)
        self.env = {**os.environ, "TEST_IMAP_PASSWORD": account.password, **(env or {})}
        self.log_path = var / "daemon.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Run":
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(self.path), "run"],
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = 30) -> float:
        """Seconds until `text` appears in the log."""
        began = time.monotonic()
        assert factory.wait_until(lambda: text in self.log() or self.proc.poll() is not None, timeout), \
            f"{text!r} not logged in {timeout} s:\n{self.log()[-3000:]}"
        assert text in self.log(), f"the daemon exited ({self.proc.returncode}):\n{self.log()[-3000:]}"
        return time.monotonic() - began

    def stop(self) -> float:
        """SIGTERM; the seconds until the process had exited (it must, with 0, within 10 s)."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running 15 s after SIGTERM:\n{self.log()[-3000:]}") from None
        took = time.monotonic() - began
        assert code == 0, self.log()[-3000:]
        return took

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def rows(self, model, *where) -> list:
        engine = store.open_engine(self.data["database"]["url"])
        try:
            with store.reading(engine) as session:
                return list(session.exec(select(model).where(*where)).scalars().all())
        finally:
            engine.dispose()


@pytest.fixture
def runs():
    made: list[Run] = []

    def make(*args, **kwargs) -> Run:
        made.append(Run(*args, **kwargs))
        return made[-1]

    yield make
    for run in made:
        run.kill()


def _ids(raws: list[bytes]) -> list[str]:
    return [email.message_from_bytes(r, policy=email.policy.default)["Message-ID"].strip("<>") for r in raws]


# --- item 1: a deadline for the whole operation ----------------------------------------------------

def test_a_banner_dripped_a_byte_at_a_time_is_cut_at_the_deadline(setup):
    """An SMTP server sending its banner one byte every 0.3 s never trips a 30-s read timeout:
    the whole greeting would take 18 s, then EHLO waits again. The connect deadline (2 s) cuts
    it; the mail is retried later, and the error names the peer, the stage and the deadline."""
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    with Dripper(b"220 " + b"x" * 56 + b"\r\n", interval=0.3) as dripper:
        smtp = setup.office.smtp.model_copy(update={"port": dripper.port, "timeout_seconds": 30,
                                                    "deadline_seconds": 2})
        office = setup.office.model_copy(update={"smtp": smtp})
        runner.poll_once(setup.engine, setup.config, office)
        began = time.monotonic()
        with store.writing(setup.engine) as s:  # due again now
            for out in s.exec(select(Outgoing)).scalars():
                out.next_attempt_at = out.created_at
        assert runner.deliver_all_due(setup.engine, office) == 0
        took = time.monotonic() - began
    [out] = setup.rows(Outgoing)
    assert 1.5 < took < 5, f"the dripped banner held delivery {took:.1f} s"
    assert out.status == "pending" and out.attempts == 2, out.last_error
    assert f"SMTP 127.0.0.1:{dripper.port}: connect, banner, EHLO, AUTH (banner) exceeded its deadline of 2 s" \
        in out.last_error


@pytest.mark.parametrize("peer", ["a greeting dripped a byte at a time", "a TLS handshake never answered"])
def test_an_imap_login_that_never_completes_is_cut_at_the_deadline(setup, peer):
    """connect+login(+ID+SELECT) is one operation with one deadline, the TLS handshake included."""
    from mailbot.deadline import DeadlineExceeded

    server = Dripper(b"* OK " + b"x" * 60 + b"\r\n", interval=0.3) if peer.startswith("a greeting") else Tarpit()
    with server:
        cfg = setup.office.imap.model_copy(update={
            "port": server.port, "timeout_seconds": 30, "deadline_seconds": 2,
            "security": "none" if peer.startswith("a greeting") else "ssl"})
        began = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            Mailbox(cfg).open()
        took = time.monotonic() - began
    assert 1.5 < took < 5, f"held {took:.1f} s"
    where = "(greeting)" if peer.startswith("a greeting") else "(TLS handshake)"
    assert str(caught.value) == (f"IMAP {cfg.user}@127.0.0.1:{server.port}: connect, LOGIN, ID, SELECT {where} "
                                 "exceeded its deadline of 2 s; connection dropped")


def test_an_smtp_tarpit_costs_one_deadline_per_attempt_and_filing_never_waits(runs, mailbox_account, smtp_server,
                                                                              tmp_var):
    """An SMTP server that accepts TCP and never answers: filing went on only after each inline
    delivery attempt timed out (44-109 s in the issue). Now the sender thread waits for it, cut
    at smtp.deadline_seconds; a mail arriving meanwhile is filed within the poll interval, and
    the log names the peer, the stage and the deadline; the receipts wait, retried."""
    with Tarpit() as tarpit:
        run = runs(mailbox_account, smtp_server, tmp_var,
                   smtp={"port": tarpit.port, "timeout_seconds": 60, "deadline_seconds": 2, "retry_base_seconds": 1}
                   ).start()
        run.wait_log("connected to")
        mailbox_account.append(factory.mail(message_id="<first@example.gov.cn>"), date=factory.ON_TIME)
        assert factory.wait_until(lambda: tarpit.accepted >= 1, 15), "the sender never tried the tarpit"
        arrived = time.monotonic()
        mailbox_account.append(factory.mail(message_id="<second@example.gov.cn>", sender="czj@example.gov.cn"),
                               date=factory.ON_TIME)
        assert factory.wait_until(lambda: not mailbox_account.uids("INBOX"), 15)
        filed = time.monotonic() - arrived
        run.wait_log(f"SMTP 127.0.0.1:{tarpit.port}: connect, banner, EHLO, AUTH (banner) exceeded its deadline "
                     "of 2 s; connection dropped")
        assert filed < 5, f"the second mail waited {filed:.1f} s for the SMTP tarpit"
        assert sorted(_ids(mailbox_account.messages(PROCESSED))) == ["first@example.gov.cn", "second@example.gov.cn"]
        assert factory.wait_until(lambda: all(o.attempts >= 2 for o in run.rows(Outgoing)), 15)
        assert {o.status for o in run.rows(Outgoing)} == {"pending"}
        stopped = run.stop()
    assert stopped < 10
    print(f"\nDEADLINES SMTP tarpit: second mail filed {filed:.1f} s after it arrived; SIGTERM to exit {stopped:.1f} s")


def test_a_message_body_dripped_by_a_proxy_is_cut_and_handled_once_it_flows(runs, dovecot_server, mailbox_account,
                                                                            smtp_server, tmp_var):
    """A proxy in front of Dovecot delivers the message body one byte every 0.5 s: the FETCH
    never ended (each read returns in time). Cut at imap.deadline_seconds, logged with the peer,
    the stage and the deadline, retried with backoff; handled as soon as the body flows again."""
    with DripProxy(dovecot_server.host, dovecot_server.port, interval=0.5, trigger=rb"BODY\.PEEK\[\]") as proxy:
        mailbox_account.append(factory.mail(message_id="<dripped@example.gov.cn>"), date=factory.ON_TIME)
        run = runs(mailbox_account, smtp_server, tmp_var,
                   imap={"port": proxy.port, "timeout_seconds": 30, "deadline_seconds": 3,
                         "min_bytes_per_second": 10_000_000}).start()
        cut = run.wait_log(f"IMAP {mailbox_account.user}@127.0.0.1:{proxy.port}: FETCH of 1 message(s)", 30)
        assert "exceeded its deadline of 3 s; connection dropped" in run.log()
        assert "poll failed (DeadlineExceeded" in run.log()
        assert mailbox_account.uids("INBOX") and run.rows(Message) == [], "nothing taken while the body drips"
        proxy.dripping = False
        began = time.monotonic()
        smtp_server.wait_for(1, timeout=30)
        recovered = time.monotonic() - began
        assert not mailbox_account.uids("INBOX")
        assert [m.status for m in run.rows(Message)] == ["accepted"]
        stopped = run.stop()
    assert stopped < 10
    print(f"\nDEADLINES dripped FETCH: cut {cut:.1f} s after the start; handled {recovered:.1f} s after the body "
          f"flowed again; SIGTERM to exit {stopped:.1f} s")


def test_the_health_alert_counts_the_polls_a_deadline_cut_short(setup):
    import datetime as dt

    from mailbot.deadline import DeadlineExceeded
    from mailbot.health import Health

    health = Health(setup.engine, setup.office)
    began = dt.datetime(2026, 11, 20, 1, 0, tzinfo=dt.timezone.utc)
    cut = DeadlineExceeded("IMAP x@127.0.0.1:143", "FETCH of 1 message(s), 0.0 MB", 120)
    assert not health.failed(cut, began)
    assert not health.failed(ConnectionRefusedError(111, "Connection refused"), began + dt.timedelta(minutes=10))
    assert health.failed(cut, began + dt.timedelta(minutes=31))
    [alert] = setup.rows(Outgoing, Outgoing.kind == "alert")
    text = email.message_from_bytes(alert.raw, policy=email.policy.default).get_body(("plain",)).get_content()
    assert "其间有2次收件因服务器响应过慢、超过规定时限而中断" in text
    assert "exceeded its deadline of 120 s" in text


# --- item 2: filing never waits for delivery --------------------------------------------------------

def test_the_sent_copy_goes_over_a_connection_of_its_own(runs, mailbox_account, smtp_server, tmp_var):
    """The sender thread appends the Sent copy over its own short IMAP connection, never over
    the polling thread's session."""
    run = runs(mailbox_account, smtp_server, tmp_var, imap={"sent_folder": "已发送"}).start()
    run.wait_log("connected to")
    mailbox_account.append(factory.mail(), date=factory.ON_TIME)
    smtp_server.wait_for(1, timeout=15)
    assert factory.wait_until(lambda: len(mailbox_account.messages("已发送")) == 1, 15)
    run.stop()
    sessions = mailbox_account.wait_for_sessions(2, timeout=10)
    polling = [s for s in sessions if "UID FETCH" in s.verbs]
    appending = [s for s in sessions if "APPEND" in s.verbs]
    assert polling and appending and not set(map(id, polling)) & set(map(id, appending))


def test_a_mail_goes_out_without_waiting_for_a_delayed_ack(setup):
    """The end of DATA is written apart from the body (the durable `sending` mark goes in
    between) and an APPEND's CRLF apart from its literal: with Nagle's algorithm on, each of
    those small writes waited for the peer's delayed ACK, 40 ms a mail (the backlog benchmark
    ran at 13 msg/s instead of 35). Both kinds of connection send at once (TCP_NODELAY)."""
    import socket

    from mailbot import outbox

    smtp = outbox.connect(setup.office.smtp)
    try:
        assert smtp.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        outbox.close(smtp, setup.office.smtp)
    with Mailbox(setup.office.imap).open() as box:
        assert box.box.client.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


# --- item 3: SIGTERM within 10 s in every state --------------------------------------------------

def _in_idle(runs, account, smtp, var, dovecot):
    run = runs(account, smtp, var).start()
    run.wait_log("connected to")
    time.sleep(1.5)  # in IDLE (poll_seconds 1 renews it each second)
    return run, None


def _mid_fetch(runs, account, smtp, var, dovecot):
    proxy = DripProxy(dovecot.host, dovecot.port, interval=0.5, trigger=rb"BODY\.PEEK\[\]")
    account.append(factory.mail(message_id="<fetch@example.gov.cn>"), date=factory.ON_TIME)
    run = runs(account, smtp, var, imap={"port": proxy.port, "timeout_seconds": 300, "deadline_seconds": 300}).start()
    assert factory.wait_until(lambda: proxy.dripped >= 1, 30)
    time.sleep(1)
    return run, proxy


def _mid_smtp(runs, account, smtp, var, dovecot):
    tarpit = Tarpit()
    run = runs(account, smtp, var, smtp={"port": tarpit.port, "timeout_seconds": 300, "deadline_seconds": 300}).start()
    account.append(factory.mail(message_id="<smtp@example.gov.cn>"), date=factory.ON_TIME)
    assert factory.wait_until(lambda: tarpit.accepted >= 1, 30)
    time.sleep(1)
    return run, tarpit


def _in_backoff(runs, account, smtp, var, dovecot):
    run = runs(account, smtp, var, imap={"port": free_port(), "poll_seconds": 60}).start()
    run.wait_log("poll failed")
    return run, None


def _in_worker_wait(runs, account, smtp, var, dovecot):
    account.append(factory.mail(message_id="<hang@example.gov.cn>"), date=factory.ON_TIME)
    run = runs(account, smtp, var, env={"MAILBOT_HANG_AT": "in_decide"}, limits={"workers": 1}).start()
    assert factory.wait_until(lambda: any((var / "archive").rglob("*.eml")), 30), "the worker never got the mail"
    time.sleep(1)
    return run, None


STATES = {"in IDLE": _in_idle, "mid-FETCH": _mid_fetch, "mid-SMTP": _mid_smtp, "in backoff": _in_backoff,
          "in a worker wait": _in_worker_wait}


@pytest.mark.parametrize("state", list(STATES))
def test_sigterm_ends_the_daemon_within_10_s_in_every_state(state, runs, dovecot_server, mailbox_account, smtp_server,
                                                            tmp_var):
    """SIGTERM in each state the daemon can be in; it exits 0 within 10 s (mid-FETCH and mid-SMTP
    with 300-s deadlines: the stop cuts them, not the deadline), and nothing is half-committed:
    each mail is in INBOX with no record, or recorded and moved; no mail is left `sending`."""
    run, server = STATES[state](runs, mailbox_account, smtp_server, tmp_var, dovecot_server)
    try:
        stopped = run.stop()
    finally:
        if server is not None:
            server.close()
    assert stopped < 10, f"{state}: {stopped:.1f} s"
    assert "mailbot stopped" in run.log()
    inbox = set(_ids(mailbox_account.messages("INBOX")))
    recorded = {m.message_id for m in run.rows(Message)}
    assert not inbox & recorded, "a mail both recorded and still in INBOX"
    assert not recorded or recorded <= set(_ids(mailbox_account.messages(PROCESSED)))
    assert not run.rows(Outgoing, Outgoing.status == "sending")
    print(f"\nDEADLINES SIGTERM {state}: exited after {stopped:.1f} s; in INBOX {len(inbox)}, recorded {len(recorded)}")
