"""Faults found in the field (issue 14, items 4 data, 7-11): a header PostgreSQL refuses, paths
that are not files, sender identity tricks, a poll beside a running daemon, an address in two
offices, and data at rest readable by other users."""
from __future__ import annotations

import base64
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from mailbot import archive, config as config_mod, digest, message, runner, store
from mailbot.models import Message, Outgoing, Row, Submission
from tests import factory


# ---------------------------------------------------------------- item 4: NUL in a header

def _pg_setup(postgres_server, mailbox_account, smtp_server, tmp_var, monkeypatch):
    monkeypatch.setenv("TEST_IMAP_PASSWORD", mailbox_account.password)
    url = postgres_server.create_database(f"nul_{uuid.uuid4().hex[:8]}")
    data = factory.config_dict(mailbox_account, smtp_server, tmp_var, database={"url": url}, limits={"workers": 0})
    cfg = config_mod.parse(data)
    return cfg, store.connect(cfg.database.url)


def test_a_nul_in_a_header_or_a_cell_is_stripped_and_the_next_mail_is_handled_on_postgres(
        postgres_server, mailbox_account, smtp_server, tmp_var, monkeypatch):
    """`<=?utf-8?q?a=00b?=@x.test>` decodes to a NUL, which PostgreSQL refuses in text: the
    commit raised DataError, the office backed off and re-fetched the same UID every cycle.
    An .xls cell can hold a NUL too (BIFF strings are UTF-16)."""
    cfg, engine = _pg_setup(postgres_server, mailbox_account, smtp_server, tmp_var, monkeypatch)
    nul = "=?utf-8?q?a=00b?="
    raw = factory.mail(message_id="<placeholder@x.test>", subject="placeholder", attachments=(
        ("placeholder.xlsx", None, factory.XLSX),))
    raw = raw.replace(b"<placeholder@x.test>", f"<{nul}@x.test>".encode()).replace(
        b"Subject: placeholder", f"Subject: 2026{nul}11".encode()).replace(
        b'filename="placeholder.xlsx"', f'filename="{nul}.xlsx"'.encode())
    assert raw.count(nul.encode()) == 3
    mailbox_account.append(raw, date=factory.ON_TIME)
    xls = (Path(__file__).parent / "data" / "checklists" / "official.xls").read_bytes()
    at = xls.index("李四".encode("utf-16-le"))
    xls = xls[:at] + "李\x00".encode("utf-16-le") + xls[at + 4:]  # same length: the file stays valid
    mailbox_account.append(factory.mail(message_id="<xls@example.gov.cn>", attachments=(
        ("清单.xls", xls, "application/vnd.ms-excel"),)), date=factory.ON_TIME)
    result = runner.poll_once(engine, cfg, cfg.office())
    assert result.handled == 2
    with store.reading(engine) as s:
        rows = {m.message_id: m for m in s.exec(select(Message)).scalars()}
        assert sorted(s.exec(select(Submission.filename)).scalars()) == ["ab.xlsx", "清单.xls"]
        assert "李" in s.exec(select(Row.entity)).scalars().all()
    assert sorted(rows) == ["ab@x.test", "xls@example.gov.cn"] and rows["ab@x.test"].subject == "2026ab11"
    assert {m.status for m in rows.values()} == {"accepted"} and mailbox_account.uids("INBOX") == []
    receipts = smtp_server.wait_for(2)
    assert {m.message["In-Reply-To"] for m in receipts} == {"<ab@x.test>", "<xls@example.gov.cn>"}
    assert not any(b"\x00" in m.raw for m in receipts)


# ---------------------------------------------------------------- item 8: who sent it

def _from(sender: bytes, checklist: bytes | None = None, extra: bytes = b"", **kw) -> bytes:
    """A department's mail whose From line is exactly `sender` (raw bytes, however malformed)."""
    raw = factory.mail(sender="placeholder@example.gov.cn", attachments=(
        ("清单.xlsx", checklist or factory.checklist_xlsx(), factory.XLSX),), **kw)
    head, sep, body = raw.partition(b"\r\n\r\n")
    head = head.replace(b"From: placeholder@example.gov.cn", b"From: " + sender)
    return extra + head + sep + body


@pytest.mark.parametrize("sender, address, name, error", [
    (b"zhtjj@126.com <attacker@evil.example>", "attacker@evil.example", "zhtjj@126.com", ""),
    (b"=?gbk?B?zfXEsw==?= <Scjgj@Example.gov.cn>", "scjgj@example.gov.cn", "王某", ""),
    (b'"Wang, Mou" <w@x.cn>', "w@x.cn", "Wang, Mou", ""),
    (b'"a <b@c.cn>" <w@x.cn>', "w@x.cn", "a <b@c.cn>", ""),
    (b"scjgj@example.gov.cn (evil@x.cn)", "scjgj@example.gov.cn", "evil@x.cn", ""),
    (b"MAILER-DAEMON", "mailer-daemon", "", ""),
    (b"a@reg@evil", "", "", "invalid"),
    (b"undisclosed-recipients:;", "", "", "invalid"),
    (b'"unterminated <a@b.cn>', "", "", "invalid"),
    (b"", "", "", "empty"),
    (b"<>", "", "", "empty"),
    (b"a@x.cn, b@y.cn", "", "", "several"),
    (b"x <a@b.cn>, y <d@e.cn>", "", "", "several"),
])
def test_from_is_read_from_the_raw_header(sender, address, name, error):
    mail = message.parse(_from(sender))
    assert (mail.sender, mail.sender_name, mail.sender_error) == (address, name, error)


ATTACKER_ROWS = [("赞皇县某诈骗有限公司", "政府采购供应商资格审查", "2026-11-03", "经信用中国查询，无失信记录", "无")]


def test_the_actual_address_decides_and_a_registered_display_name_over_another_is_quarantined(setup):
    """An unquoted `From: scjgj@... <attacker@...>` read as the department: the attacker's file
    replaced its accepted submission and was answered to the department's address."""
    setup.account.append(factory.mail(message_id="<genuine@example.gov.cn>"), date=factory.ON_TIME)
    setup.poll()
    forged = factory.checklist_xlsx(ATTACKER_ROWS)
    tricks = [b"scjgj@example.gov.cn <attacker@evil.example>",
              b'"scjgj@example.gov.cn" <attacker@evil.example>',
              b"=?utf-8?b?" + base64.b64encode("市场监管局 scjgj@example.gov.cn".encode()) + b"?= <attacker@evil.example>",
              b"office@example.test <attacker@evil.example>",  # the office's own address as the name
              b"czj@example.gov.cn <scjgj@example.gov.cn>"]  # another department's address as the name
    for i, sender in enumerate(tricks):
        setup.account.append(_from(sender, forged, message_id=f"<trick{i}@evil.example>"), date=factory.ON_TIME)
    setup.poll()
    rows = {m.message_id: m for m in setup.rows(Message)}
    assert [(rows[f"trick{i}@evil.example"].status, rows[f"trick{i}@evil.example"].kind) for i in range(5)] == \
        [("quarantined", "suspicious_sender")] * 5
    assert [rows[f"trick{i}@evil.example"].sender for i in range(5)] == ["attacker@evil.example"] * 4 + ["scjgj@example.gov.cn"]
    [submission] = setup.rows(Submission)  # the genuine one, still in force: nothing replaced it
    assert submission.accepted and submission.message_pk == rows["genuine@example.gov.cn"].id
    assert len(setup.smtp.wait_for(1)) == 1  # the genuine receipt only: the forgeries got no answer
    assert len(setup.account.uids("待人工处理")) == 5 and setup.account.uids("INBOX") == []


def test_a_display_name_naming_the_senders_own_address_or_a_colleagues_is_no_trick(setup):
    setup.account.append(_from(b'"SCJGJ@example.gov.cn" <scjgj@example.gov.cn>'), date=factory.ON_TIME)
    setup.account.append(_from(b"scj_clerk@163.com <scjgj@example.gov.cn>", message_id="<b@example.gov.cn>"),
                         date=factory.ON_TIME)  # both addresses are the same department's
    setup.poll()
    assert sorted(m.status for m in setup.rows(Message)) == ["accepted", "accepted"]


def test_an_unparseable_from_is_quarantined_not_ignored_as_a_bounce_and_real_bounces_stay_bounces(setup):
    """`From: a@reg@evil` (and an empty or several-address From) was ignored as a bounce: moved
    to 已处理, named nowhere. Real bounces come from MAILER-DAEMON/postmaster or with an empty
    Return-Path, whatever their From says."""
    unusable = {"invalid": b"a@reg@evil", "empty": b"", "several": b"scjgj@example.gov.cn, attacker@evil.example",
                "two angles": b"scjgj <scjgj@example.gov.cn> <attacker@evil.example>"}
    for i, sender in enumerate(unusable.values()):
        setup.account.append(_from(sender, message_id=f"<bad{i}@example.gov.cn>"), date=factory.ON_TIME)
    bounces = [_from(b"MAILER-DAEMON", message_id="<bounce0@mx.example>", subject="Undelivered Mail Returned to Sender"),
               _from(b"a@reg@evil", message_id="<bounce1@mx.example>", subject="Delivery failure",
                     extra=b"Return-Path: <>\r\n"),
               _from(b"Mail Delivery System <postmaster@mx.example>", message_id="<bounce2@mx.example>",
                     subject="Delivery failure")]
    for raw in bounces:
        setup.account.append(raw, date=factory.ON_TIME)
    setup.poll()
    rows = {m.message_id: m for m in setup.rows(Message)}
    assert [(rows[f"bad{i}@example.gov.cn"].status, rows[f"bad{i}@example.gov.cn"].kind) for i in range(4)] == \
        [("quarantined", "bad_sender")] * 4
    assert "a@reg@evil" in rows["bad0@example.gov.cn"].detail
    assert [rows[f"bad{i}@example.gov.cn"].sender for i in range(2)] == ["a@reg@evil", ""]  # what From said
    # bounces of no mail of ours: recognised as bounces, and left in INBOX for the clerk (issue 13)
    assert [(rows[f"bounce{i}@mx.example"].status, rows[f"bounce{i}@mx.example"].kind) for i in range(3)] == \
        [("left", "bounce_not_ours")] * 3
    assert setup.rows(Submission) == [] and setup.smtp.messages == []
    assert len(setup.account.uids("待人工处理")) == 4 and len(setup.account.uids("INBOX")) == 3

    # the office reads both kinds, in Chinese, in the weekly digest's quarantine section
    setup.account.append(_from(b"czj@example.gov.cn <attacker@evil.example>", message_id="<trick@evil.example>"),
                         date=factory.ON_TIME)
    setup.poll()
    monday = dt.datetime(2026, 11, 23, 9, 0, tzinfo=factory.CST)
    assert digest.queue_weekly(setup.engine, setup.office, monday)
    runner.deliver_all_due(setup.engine, setup.office)
    [weekly] = setup.smtp.wait_for(1)
    html = weekly.message.get_body(preferencelist=("html",)).get_content()
    assert html.count("发件人地址缺失、有多个或格式错误") == 4 and "，a@reg@evil，" in html and "，（无发件人地址），" in html
    assert html.count("发件人名称显示为已登记邮箱，但实际发件邮箱不同（疑似冒用）") == 1 and "attacker@evil.example" in html


# ---------------------------------------------------------------- item 7: paths that are not files

def _cli(*args: str, env_extra: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """`mailbot ARGS` as a process with a deadline: a regression that hangs on a FIFO or reads
    /dev/zero without end fails the test instead of holding the suite."""
    env = {**os.environ, **(env_extra or {})}
    env.pop("MAILBOT_CONFIG", None)
    try:
        return subprocess.run([sys.executable, "-m", "mailbot", *args], capture_output=True, text=True,
                              timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"mailbot {' '.join(args)} still running after {timeout} s")


def _limited(cmd: list[str]) -> list[str]:
    """A child capped at 1 GB of address space: reading /dev/zero ends at once, not at 3.7 GB."""
    return ["prlimit", f"--as={1 << 30}", "--", *cmd] if shutil.which("prlimit") else cmd


@pytest.fixture
def odd_paths(tmp_path):
    fifo = tmp_path / "x.xlsx"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.xlsx"
    zero.symlink_to("/dev/zero")
    folder = tmp_path / "folder.xlsx"
    folder.mkdir()
    return {"a FIFO": (fifo, "命名管道"), "a symlink to /dev/zero": (zero, "字符设备"), "a directory": (folder, "目录")}


@pytest.mark.parametrize("case", ["a FIFO", "a symlink to /dev/zero", "a directory"])
def test_check_refuses_what_is_not_a_regular_file(odd_paths, case):
    """A FIFO named x.xlsx hung `mailbot check`; a symlink to /dev/zero ended in a MemoryError at 3.7 GB."""
    path, kind = odd_paths[case]
    done = subprocess.run(_limited([sys.executable, "-m", "mailbot", "check", str(path), "--json"]),
                          capture_output=True, text=True, timeout=30, env={k: v for k, v in os.environ.items()
                                                                               if k != "MAILBOT_CONFIG"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"无法读取“{path}”：不是普通文件，而是{kind}" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_check_never_reads_past_the_attachment_limit(setup, tmp_path):
    big = tmp_path / "大.xlsx"
    with open(big, "wb") as fh:
        fh.truncate(setup.office.limits.max_attachment_bytes + 1)  # sparse: nothing is written
    done = _cli("--config", str(setup.config_path), "check", str(big))
    assert done.returncode == 2 and "超过系统可读取的上限20MB" in done.stderr, done.stderr
    ok = tmp_path / "清单.xlsx"
    ok.write_bytes(factory.checklist_xlsx())
    link = tmp_path / "link.xlsx"
    link.symlink_to(ok)  # a symlink to a regular file is that file
    assert _cli("--config", str(setup.config_path), "check", str(link)).returncode == 0
    missing = _cli("check", str(tmp_path / "没有这个文件.xlsx"))
    assert missing.returncode == 2 and "文件不存在" in missing.stderr


def test_import_refuses_a_folder_holding_what_is_not_a_mail_file(setup, tmp_path):
    exported = tmp_path / "old"
    exported.mkdir()
    (exported / "a.eml").write_bytes(factory.mail(message_id="<old-a@example.gov.cn>"))
    os.mkfifo(exported / "b.eml")
    (exported / "c.eml").symlink_to("/dev/zero")
    with open(exported / "d.eml", "wb") as fh:
        fh.truncate(setup.office.limits.max_message_bytes + 1)
    env = {"TEST_IMAP_PASSWORD": setup.account.password}
    done = _cli("--config", str(setup.config_path), "import", str(exported), env_extra=env)
    assert done.returncode == 2, done.stderr[-2000:]
    for name, why in (("b.eml", "命名管道"), ("c.eml", "字符设备"), ("d.eml", "超过系统可读取的上限50MB")):
        assert f"“{exported / name}”" in done.stderr and why in done.stderr
    assert setup.rows(Message) == []  # nothing half-imported: the admin removes those files and runs it again
    for name in ("b.eml", "c.eml", "d.eml"):
        (exported / name).unlink()
    done = _cli("--config", str(setup.config_path), "import", str(exported), env_extra=env)
    assert (done.returncode, done.stdout.strip()) == (0, "accepted: 1"), done.stderr[-2000:]
    not_a_folder = _cli("--config", str(setup.config_path), "import", str(exported / "a.eml"), env_extra=env)
    assert not_a_folder.returncode == 2 and "不是文件夹" in not_a_folder.stderr


def test_replay_refuses_an_archive_file_replaced_by_a_fifo(setup):
    setup.account.append(factory.mail(message_id="<replayed@example.gov.cn>"), date=factory.ON_TIME)
    setup.poll()
    [row] = setup.rows(Message)
    path = archive.path_for(setup.config.archive.dir, row.sha256)
    path.unlink()
    os.mkfifo(path)
    env = {"TEST_IMAP_PASSWORD": setup.account.password}
    done = _cli("--config", str(setup.config_path), "replay", "<replayed@example.gov.cn>", "--dry-run", env_extra=env)
    assert done.returncode == 2 and f"无法读取“{path}”：不是普通文件，而是命名管道" in done.stderr, done.stderr[-2000:]


# ---------------------------------------------------------------- item 9: a poll beside the daemon

@pytest.fixture
def running(tmp_var):
    """Start `mailbot run` on a config; wait for `ready` in its log; SIGTERM it at the end."""
    procs = []

    def start(path: Path, env: dict, ready: str) -> subprocess.Popen:
        log_path = tmp_var / f"daemon{len(procs)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(path), "run"],
                                    stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env})
        proc.log_path = log_path
        procs.append(proc)
        assert factory.wait_until(lambda: ready in log_path.read_text(), timeout=30), log_path.read_text()[-3000:]
        return proc
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_poll_once_beside_a_running_daemon_is_refused_on_sqlite(setup, running):
    """It ended in a traceback (`MOVE failed: EXPUNGEISSUED`) when both took the same mail."""
    env = {"TEST_IMAP_PASSWORD": setup.account.password}
    daemon = running(setup.config_path, env, "holding the lock")
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    done = _cli("--config", str(setup.config_path), "poll", "--once", env_extra=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"另一个 mailbot（进程 {daemon.pid}）正在使用数据库" in done.stderr and "poll --once 未执行" in done.stderr
    setup.smtp.wait_for(1, timeout=20)  # the daemon, alone, answered the mail
    assert [m.status for m in setup.rows(Message)] == ["accepted"] and daemon.poll() is None


def test_poll_once_beside_a_running_daemon_is_refused_on_postgres(
        postgres_server, mailbox_account, smtp_server, tmp_var, running):
    url = postgres_server.create_database(f"poll_{uuid.uuid4().hex[:8]}")
    path = factory.write_config(tmp_var / "mailbot.yaml", factory.config_dict(
        mailbox_account, smtp_server, tmp_var, database={"url": url}))
    env = {"TEST_IMAP_PASSWORD": mailbox_account.password}
    running(path, env, "taken: this daemon polls it")
    done = _cli("--config", str(path), "poll", "--once", env_extra=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "办公室 default 的邮箱正由另一个 mailbot 守护进程处理" in done.stderr


# ---------------------------------------------------------------- item 10: one address, two offices

def _two_offices(tmp_var, shared: str) -> dict:
    offices = []
    for office_id in ("zanhuang", "yuanshi"):
        depts = [{"id": "d0", "name": f"{office_id}县财政局", "emails": [f"d0@{office_id}.gov.cn"]},
                 {"id": "d1", "name": f"{office_id}县教育局", "emails": [f"d1@{office_id}.gov.cn", shared]}]
        offices.append({"office": {"id": office_id, "name": f"{office_id}县信用办", "address": f"xyb@{office_id}.example"},
                        "imap": {"host": "127.0.0.1", "user": "u", "security": "none"},
                        "smtp": {"host": "127.0.0.1", "security": "none"}, "departments": depts})
    return {"database": {"url": f"sqlite:///{tmp_var}/mailbot.db"}, "archive": {"dir": str(tmp_var / "archive")},
            "offices": offices}


def test_config_check_warns_about_an_address_registered_in_two_offices(tmp_var):
    path = factory.write_config(tmp_var / "mailbot.yaml", _two_offices(tmp_var, "clerk@163.com"))
    os.chmod(path, 0o600)
    done = _cli("--config", str(path), "config", "check")
    assert done.returncode == 0, done.stdout + done.stderr  # a warning, not an error
    assert "! 邮箱登记 clerk@163.com：该邮箱同时登记在 2 个办公室：zanhuang（zanhuang县教育局）、yuanshi（yuanshi县教育局）" \
        in done.stdout.replace("\n", "")
    data = _two_offices(tmp_var, "clerk@163.com")
    data["offices"] = data["offices"][:1]
    alone = factory.write_config(tmp_var / "alone.yaml", data)
    os.chmod(alone, 0o600)
    assert "邮箱登记" not in _cli("--config", str(alone), "config", "check").stdout


# ---------------------------------------------------------------- item 11: data at rest, and the log

ID_NUMBER = "11010519491231002X"


def _modes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(p.stat().st_mode & 0o777) for p in [root, *root.rglob("*")]}


def test_what_mailbot_writes_is_owner_only_whatever_the_umask(setup, tmp_path):
    """The database, the archive and the digests were created 0644 (umask 022): every local
    user could read names and ID numbers."""
    env = {"TEST_IMAP_PASSWORD": setup.account.password}
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    old = os.umask(0o022)
    try:
        assert _cli("--config", str(setup.config_path), "poll", "--once", env_extra=env).returncode == 0
        out = tmp_path / "digests"
        assert _cli("--config", str(setup.config_path), "digest", "--period", "2026-11", "--out", str(out),
                    env_extra=env).returncode == 0
        engine = store.connect(f"sqlite:///{tmp_path}/lib/fresh.db")  # the library alone, without the CLI's umask
        archive.put(tmp_path / "lib" / "archive", b"From: a@b.cn\r\n\r\nx")
        engine.dispose()
    finally:
        os.umask(old)
    var = _modes(setup.var)
    var.pop(".")  # the test made var/ itself
    assert var.pop("mailbot.yaml") and var.pop("mailbot.db.lock", "0o600") == "0o600"
    assert {k for k, m in var.items() if m != ("0o700" if (setup.var / k).is_dir() else "0o600")} == set(), var
    assert any(k.endswith(".eml") for k in var) and "mailbot.db" in var
    digests = _modes(out)
    assert len(digests) == 3 and set(digests.values()) == {"0o700", "0o600"}, digests
    lib = _modes(tmp_path / "lib")
    assert {m for k, m in lib.items() if k != "."} == {"0o700", "0o600"} and lib["fresh.db"] == "0o600", lib
    unit = (Path(__file__).parent.parent / "config" / "mailbot.service").read_text()
    assert re.search(r"(?m)^UMask=0077$", unit)


def test_config_check_warns_when_other_users_can_read_the_data_the_config_or_the_secrets(setup, tmp_path):
    secrets = tmp_path / "secrets.env"
    secrets.write_text("TEST_IMAP_PASSWORD=x\n")
    data = yaml.safe_load(setup.config_path.read_text(encoding="utf-8"))
    data["secrets_file"] = str(secrets)
    path = factory.write_config(setup.var / "mailbot.yaml", data)
    setup.account.append(factory.mail(), date=factory.ON_TIME)
    setup.poll()  # the database and the archive exist
    for p in (setup.var, setup.var / "archive", setup.var / "mailbot.db", path, secrets):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    done = _cli("--config", str(path), "config", "check")
    assert done.returncode == 0, done.stdout + done.stderr
    shown = done.stdout.replace("\n", "")
    for what, fix in ((setup.var, f"chmod -R go-rwx {setup.var}"), (setup.var / "mailbot.db", "chmod go-rwx"),
                      (setup.var / "archive", f"chmod -R go-rwx {setup.var / 'archive'}"),
                      (path, f"chmod o-rwx {path}"), (secrets, f"chmod 600 {secrets}")):
        assert f"! 文件权限 {what}：" in shown and fix in shown, (what, shown)
    subprocess.run(["chmod", "-R", "go-rwx", str(setup.var), str(secrets)], check=True)
    assert "文件权限" not in _cli("--config", str(path), "config", "check").stdout


def test_no_log_line_carries_an_id_number_or_the_password(setup):
    """A bounce's subject quoting our receipt, and a Message-ID, put ID numbers in the journal."""
    env = {"TEST_IMAP_PASSWORD": setup.account.password}
    rows = [(f"张某（{ID_NUMBER}）", "个体工商户登记", dt.date(2026, 11, 3), "经信用中国查询，无失信记录", "无")]
    setup.account.append(factory.mail(subject=f"2026年11月清单 张某{ID_NUMBER}", message_id=f"<{ID_NUMBER}.x@qq.com>",
                                      attachments=(("清单.xlsx", factory.checklist_xlsx(rows), factory.XLSX),)),
                         date=factory.ON_TIME)
    first = _cli("--config", str(setup.config_path), "-v", "poll", "--once", env_extra=env)
    [receipt] = setup.smtp.wait_for(1)
    assert ID_NUMBER in receipt.message["Subject"]  # the department's own receipt shows it whole
    bounce = (f"From: postmaster@qq.com\r\nTo: office@example.test\r\nSubject: 退信：{receipt.message['Subject']}\r\n"
              f"Message-ID: <bounce-{uuid.uuid4().hex}@qq.com>\r\nIn-Reply-To: {receipt.message['Message-ID']}\r\n"
              "Content-Type: text/plain; charset=utf-8\r\n\r\n很抱歉，您的邮件未能送达。\r\n").encode()
    setup.account.append(bounce, date=factory.ON_TIME)
    second = _cli("--config", str(setup.config_path), "-v", "poll", "--once", env_extra=env)
    log = first.stderr + second.stderr
    assert first.returncode == second.returncode == 0, log[-3000:]
    leaks = [line for line in log.splitlines() if ID_NUMBER in line or setup.account.password in line]
    assert leaks == []
    assert re.search(r"bounced: .*110105\*{8}002X", log) and "message=<110105********002X.x@qq.com>" in log  # masked
    [out] = setup.rows(Outgoing)
    assert out.status == "bounced" and ID_NUMBER not in out.last_error
