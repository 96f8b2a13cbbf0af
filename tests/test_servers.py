"""The test servers themselves: real round trips through Dovecot and the SMTP capture."""

import email.policy
import imaplib
import shutil
import smtplib
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.errors import MailboxLoginError
from imap_tools.imap_utf7 import utf7_encode

from tests.servers import Dovecot, _group_members

PROCESSED = "已处理"


def make_mail(subject="月度报表", to="office@example.test") -> bytes:
    msg = EmailMessage()
    msg["From"] = "财务科 <caiwu@dept.example.test>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = "<test-1@dept.example.test>"
    msg.set_content("见附件。\n")
    return msg.as_bytes(policy=email.policy.SMTP)  # CRLF, as on the wire


def login(account) -> MailBoxUnencrypted:
    """A plain client connection like the bot's own (from 127.0.0.1, not a helper)."""
    return MailBoxUnencrypted(account.host, account.port, timeout=10).login(account.user, account.password)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited, awaiting its reaper


# ----------------------------------------------------------------------------- IMAP


def test_append_and_fetch_back(mailbox_account):
    raw = make_mail()
    uid = mailbox_account.append(raw)

    assert mailbox_account.uids() == [uid]
    assert mailbox_account.messages() == [raw]
    with login(mailbox_account) as mb:
        [msg] = list(mb.fetch(mark_seen=False))
    assert msg.subject == "月度报表"
    assert msg.from_ == "caiwu@dept.example.test"


def test_capabilities_include_what_the_bot_uses(mailbox_account):
    with login(mailbox_account) as mb:
        _, data = mb.client.capability()
    capabilities = set(data[0].decode().split())
    assert {"IDLE", "MOVE", "UIDPLUS", "ID"} <= capabilities


def test_each_test_gets_an_empty_mailbox(mailbox_account):
    assert mailbox_account.uids() == []
    assert mailbox_account.folders() == ["INBOX"]


def test_chinese_folder_and_move(mailbox_account, dovecot_server):
    raw = make_mail()
    uid = mailbox_account.append(raw)

    with login(mailbox_account) as mb:
        mb.folder.create(PROCESSED)
        # imaplib keeps the pre-login CAPABILITY, which lacks MOVE on Dovecot; imap_tools
        # would then fall back to COPY + STORE \Deleted + EXPUNGE. Re-read it after login.
        _, data = mb.client.capability()
        mb.client.capabilities = tuple(data[-1].decode().upper().split())
        mb.move(str(uid), PROCESSED)

    assert PROCESSED in mailbox_account.folders()
    assert mailbox_account.uids("INBOX") == []
    assert mailbox_account.messages(PROCESSED) == [raw]
    # On the wire the name is modified UTF-7, as the log shows.
    encoded = utf7_encode(PROCESSED).decode()
    assert encoded == "&XfJZBHQG-"
    dovecot_server.wait_for_log(rf'Command finished: UID MOVE {uid} "{encoded}"')


def test_failed_login_is_fast(mailbox_account):
    # The auth penalty (2-15 s per failure from one IP) is switched off in the test config.
    for _ in range(3):
        started = time.monotonic()
        with pytest.raises(MailboxLoginError):
            MailBoxUnencrypted(mailbox_account.host, mailbox_account.port).login(mailbox_account.user, "wrong")
        assert time.monotonic() - started < 1.5


def test_tls_and_starttls(mailbox_account, dovecot_server):
    mailbox_account.append(make_mail())
    context = dovecot_server.ssl_context()
    with MailBox(dovecot_server.host, dovecot_server.tls_port, ssl_context=context).login(
            mailbox_account.user, mailbox_account.password) as mb:
        assert len(mb.uids()) == 1
    with MailBoxStartTls(dovecot_server.host, dovecot_server.port, ssl_context=context).login(
            mailbox_account.user, mailbox_account.password) as mb:
        assert len(mb.uids()) == 1


def test_restart_and_crash_keep_the_mail(mailbox_account, dovecot_server):
    raw = make_mail()
    mailbox_account.append(raw)
    mailbox_account.create_folder(PROCESSED)
    port = dovecot_server.port
    connected = login(mailbox_account)

    dovecot_server.restart()
    assert dovecot_server.port == port
    assert mailbox_account.messages() == [raw]
    with pytest.raises(imaplib.IMAP4.abort, match="Server shutting down"):  # an untagged BYE
        connected.client.noop()

    dovecot_server.kill()
    with pytest.raises(ConnectionRefusedError):
        MailBoxUnencrypted(dovecot_server.host, port)
    dovecot_server.start()
    assert mailbox_account.messages() == [raw]
    assert PROCESSED in mailbox_account.folders()


def test_a_private_instance_starts_fast_and_leaves_no_processes():
    root = Path(tempfile.mkdtemp(prefix="dovecot-test-"))
    started = time.monotonic()
    server = Dovecot(root).start()
    elapsed = time.monotonic() - started
    account = server.add_user("office@example.test", "pw")
    account.append(make_mail())
    pids = _group_members(server._proc.pid)
    assert len(pids) >= 4  # master, log, config, anvil, auth, ...

    server.stop()

    assert not server.running
    assert [p for p in pids if _alive(p)] == []
    assert elapsed < 2, f"dovecot took {elapsed:.2f}s to start"
    shutil.rmtree(root)


@pytest.mark.parametrize("when", ["after_login", "before_login"])
def test_id_command_is_visible_in_the_log(mailbox_account, dovecot_server, monkeypatch, when):
    """How a test proves a client sent RFC 2971 ID before SELECT: ``dovecot_server.sessions(user)``."""
    mailbox_account.append(make_mail())  # helper sessions (from 127.0.0.2) are not reported
    monkeypatch.setitem(imaplib.Commands, "ID", ("NONAUTH", "AUTH", "SELECTED"))

    client = imaplib.IMAP4(mailbox_account.host, mailbox_account.port)
    if when == "before_login":
        client._simple_command("ID", '("name" "mailbot" "version" "0.1")')
    client.login(mailbox_account.user, mailbox_account.password)
    if when == "after_login":
        client._simple_command("ID", '("name" "mailbot" "version" "0.1")')
    client.select("INBOX")
    client.logout()

    [session] = mailbox_account.wait_for_sessions(1)  # the log is written asynchronously
    assert session.remote_ip == "127.0.0.1"
    if when == "after_login":
        assert session.verbs == ["LOGIN", "ID", "SELECT", "LOGOUT"]
        assert session.commands[:2] == ['ID ("name" "mailbot" "version" "0.1")', "SELECT INBOX"]
        assert session.ids == ["name=mailbot, version=0.1"]
    else:
        assert session.verbs == ["ID", "LOGIN", "SELECT", "LOGOUT"]
        assert session.pre_login_ids == ["name=mailbot, version=0.1"]
    assert session.verbs.index("ID") < session.verbs.index("SELECT")
    assert len(mailbox_account.sessions(include_helpers=True)) == 2


# ----------------------------------------------------------------------------- SMTP


def send(smtp_server, rcpts=("office@example.test",), auth=True, raw=None):
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as client:
        if auth:
            client.login(*smtp_server.auth)
        return client.sendmail("bot@example.test", list(rcpts), raw or make_mail())


def test_smtp_capture_receives_mail(smtp_server):
    raw = make_mail("催报：请于25日前提交")
    assert send(smtp_server, ["a@x.test", "b@x.test"], raw=raw) == {}

    [captured] = smtp_server.wait_for(1)
    assert captured.mail_from == "bot@example.test"
    assert captured.rcpt_tos == ("a@x.test", "b@x.test")
    assert captured.raw == raw
    assert captured.message["Subject"] == "催报：请于25日前提交"
    assert captured.message.get_content().rstrip() == "见附件。"
    assert captured.auth_user == "mailbot"
    smtp_server.clear()
    assert smtp_server.messages == []


def test_smtp_without_auth_and_with_auth_required(smtp_server):
    send(smtp_server, auth=False)
    assert smtp_server.wait_for(1)[0].auth_user is None

    smtp_server.auth_required = True
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(smtp_server, auth=False)
    assert refused.value.smtp_code == 530
    with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("mailbot", "wrong")
    send(smtp_server)
    assert len(smtp_server.messages) == 2


def test_refuse_temporarily(smtp_server):
    smtp_server.refuse_temporarily(451)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp_server)
    assert refused.value.recipients["office@example.test"][0] == 451

    smtp_server.refuse_temporarily(451, stage="data")
    with pytest.raises(smtplib.SMTPDataError) as data_error:
        send(smtp_server)
    assert data_error.value.smtp_code == 451
    assert smtp_server.messages == []

    smtp_server.normal()
    send(smtp_server)
    assert len(smtp_server.wait_for(1)) == 1


def test_refuse_once_then_accept(smtp_server):
    smtp_server.refuse_temporarily(421, stage="mail", times=1)
    with pytest.raises(smtplib.SMTPSenderRefused):
        send(smtp_server)
    send(smtp_server)
    assert len(smtp_server.messages) == 1


def test_refuse_permanently(smtp_server):
    smtp_server.refuse_permanently()  # 554 DT:SPM at end of DATA, as 126.com does
    with pytest.raises(smtplib.SMTPDataError) as data_error:
        send(smtp_server)
    assert data_error.value.smtp_code == 554
    assert b"DT:SPM" in data_error.value.smtp_error

    smtp_server.refuse_permanently(550, "5.1.1 User unknown", stage="rcpt", only={"gone@x.test"})
    refused = send(smtp_server, ["gone@x.test", "here@x.test"])
    assert refused == {"gone@x.test": (550, b"5.1.1 User unknown")}
    assert smtp_server.wait_for(1)[0].rcpt_tos == ("here@x.test",)


def test_drop_connections(smtp_server):
    smtp_server.drop_connections()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtp_server)

    smtp_server.drop_connections("data")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(smtp_server)
    assert smtp_server.messages == []

    smtp_server.normal()
    send(smtp_server)
    assert len(smtp_server.messages) == 1


def test_down_and_up(smtp_server):
    port = smtp_server.port
    smtp_server.down()
    with pytest.raises(ConnectionRefusedError):
        send(smtp_server)
    smtp_server.up()
    assert smtp_server.port == port
    send(smtp_server)
    assert len(smtp_server.wait_for(1)) == 1


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")} \
        if root.exists() else {}


def test_a_configured_office_writes_only_into_its_own_tmp_var(setup):
    """A whole poll (database, archive, receipt) writes into the test's own directory, never into
    var/ of the working directory, where the config's defaults point: that is a developer's own
    database and mail archive (relative paths are relative to the cwd)."""
    from tests import factory

    home = Path.cwd()
    before, names = _tree(home / "var"), sorted(p.name for p in home.iterdir())
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    setup.poll()
    assert len(setup.smtp.messages) == 1  # the mail went all the way: stored, archived, answered
    assert (setup.var / "mailbot.db").is_file() and any(p.is_file() for p in (setup.var / "archive").rglob("*"))
    assert _tree(home / "var") == before and sorted(p.name for p in home.iterdir()) == names


# --------------------------------------------------------------------------- the NetEase-like front

def test_netease_front_refuses_select_until_id_was_sent(mailbox_account):
    from tests.servers import NetEaseFront, UNSAFE_LOGIN

    mailbox_account.append(b"Subject: hi\r\n\r\nbody\r\n")
    with NetEaseFront(mailbox_account.host, mailbox_account.port) as front:
        client = imaplib.IMAP4(front.host, front.port)
        client.login(mailbox_account.user, mailbox_account.password)
        typ, data = client.select("INBOX")
        assert typ == "NO" and data == [UNSAFE_LOGIN.removeprefix("NO ").encode()]
        imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED", "LOGOUT"))
        typ, _ = client._simple_command("ID", '("name" "test")')
        assert typ == "OK"
        typ, data = client.select("INBOX")
        assert typ == "OK" and data == [b"1"]
        client.logout()
        [session] = front.sessions
        assert session.refused == ["SELECT"] and session.id_sent
        assert session.verbs[:4] == ["CAPABILITY", "LOGIN", "SELECT", "ID"]


def test_netease_front_passes_literals_through(mailbox_account):
    """APPEND sends its message as a literal; the front must pass it whole."""
    from tests.servers import NetEaseFront

    with NetEaseFront(mailbox_account.host, mailbox_account.port) as front:
        with MailBoxUnencrypted(front.host, front.port).login(mailbox_account.user, mailbox_account.password,
                                                             initial_folder=None) as mb:
            mb.append(b"Subject: literal\r\n\r\n" + b"x" * 5000 + b"\r\n", "INBOX")
    [raw] = mailbox_account.messages()
    assert raw.endswith(b"x" * 5000 + b"\r\n")


def test_smtp_refuses_a_burst_as_spam(smtp_server):
    import time_machine

    smtp_server.refuse_bursts(2, seconds=60)
    with time_machine.travel("2026-11-20 10:00:00+08:00", tick=False) as traveller:
        with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
            for i in range(2):
                client.sendmail("a@x.test", ["b@x.test"], f"Subject: {i}\r\n\r\nx\r\n")
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("a@x.test", ["b@x.test"], "Subject: 3\r\n\r\nx\r\n")
        assert refused.value.smtp_code == 554 and b"DT:SPM" in refused.value.smtp_error
        traveller.shift(61)
        with smtplib.SMTP(smtp_server.host, smtp_server.port) as client:
            client.sendmail("a@x.test", ["b@x.test"], "Subject: later\r\n\r\nx\r\n")
    assert len(smtp_server.messages) == 3 and smtp_server.spam_refused == 1
