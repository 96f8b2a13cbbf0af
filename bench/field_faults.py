"""The faults of issue 14, each tried as an operator meets it, with what it blocked, logged and
lost: part 1 (items 4 data part, 7-11) and part 2 (slow and silent peers, filing beside a hung
SMTP server, SIGTERM in every state, a lost database file, the disk full when a send is
recorded). Run it on this tree, then on an older one to compare:

    .venv/bin/python bench/field_faults.py                      # the code of this checkout
    .venv/bin/python bench/field_faults.py --code /tmp/old      # e.g. `git archive main mailbot | tar -x -C /tmp/old`

Real servers on loopback: a private Dovecot and PostgreSQL (tests/servers.py, tests/postgres.py)
and an aiosmtpd capture; every mailbot runs as its own process with the given code first on
PYTHONPATH. Not a speed benchmark: the figures are seconds blocked and counts of what was lost.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import factory  # noqa: E402
from tests.postgres import Postgres  # noqa: E402
from tests.servers import Dovecot, Dripper, DripProxy, SmtpCapture, Tarpit, free_port  # noqa: E402

ID_NUMBER = "11010519491231002X"


class World:
    def __init__(self, code: Path):
        self.code = code
        self.dirs: list[Path] = []
        self.dovecot = Dovecot(self.tmpdir("ff-dovecot-")).start()
        self.pg = Postgres(self.tmpdir("ff-pg-")).start()
        self.smtp = SmtpCapture()

    def tmpdir(self, prefix: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=prefix))
        self.dirs.append(path)
        return path

    def office(self, postgres: bool = False, **extra):
        """A fresh mailbox and var/; returns (account, var, config path, env)."""
        account = self.dovecot.add_user(f"o-{uuid.uuid4().hex[:8]}@example.test", "pw")
        var = self.tmpdir("ff-var-")
        if postgres:
            extra["database"] = {"url": self.pg.create_database(f"ff_{uuid.uuid4().hex[:8]}")}
        path = factory.write_config(var / "mailbot.yaml", factory.config_dict(account, self.smtp, var, **extra))
        return account, var, path, {"TEST_IMAP_PASSWORD": "pw"}

    def env(self, extra: dict) -> dict:
        return {**os.environ, **extra, "PYTHONPATH": str(self.code)}

    def mailbot(self, path, env, *args, timeout=60, prefix=()):
        started = time.monotonic()
        try:
            done = subprocess.run([*prefix, sys.executable, "-m", "mailbot", "--config", str(path), *args],
                                  capture_output=True, text=True, env=self.env(env), timeout=timeout, cwd=path.parent)
            return done.returncode, time.monotonic() - started, done.stdout + done.stderr
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
            return "killed", time.monotonic() - started, out

    def daemon(self, path, env):
        log = path.parent / f"daemon-{uuid.uuid4().hex[:6]}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(path), "run"],
                                    stdout=fh, stderr=subprocess.STDOUT, env=self.env(env), cwd=path.parent)
        proc.log = log
        return proc

    def stop(self):
        self.smtp.stop()
        self.pg.stop()
        self.dovecot.stop()


def last_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if "alembic" not in x]
    return lines[-1][-160:] if lines else ""


def from_line(sender: bytes, **kw) -> bytes:
    raw = factory.mail(sender="placeholder@example.gov.cn", **kw)
    return raw.replace(b"From: placeholder@example.gov.cn", b"From: " + sender, 1)


def stop(proc) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the cases ----------------------------------------------------------------------------

def nul_message_id(w: World, seconds: float = 40):
    """Item 4: a NUL Message-ID on PostgreSQL, then an ordinary mail, under `mailbot run`."""
    account, _var, path, env = w.office(postgres=True)
    w.smtp.clear()
    raw = factory.mail(message_id="<ph@x.test>").replace(b"<ph@x.test>", b"<=?utf-8?q?a=00b?=@x.test>")
    account.append(raw, date=factory.ON_TIME)
    account.append(factory.mail(sender="czj@example.gov.cn", attachments=(
        ("清单.xlsx", factory.checklist_xlsx(unit="赞皇县财政局"), factory.XLSX),)), date=factory.ON_TIME)
    started = time.monotonic()
    proc = w.daemon(path, env)
    answered = None
    while time.monotonic() - started < seconds:
        if any(m.rcpt_tos == ("czj@example.gov.cn",) for m in w.smtp.messages):
            answered = time.monotonic() - started
            break
        time.sleep(0.2)
    stop(proc)
    log = proc.log.read_text()
    return (f"next mail answered after {answered:.1f} s" if answered else f"next mail NOT answered in {seconds:.0f} s") + \
        f"; 'poll failed' logged {log.count('poll failed')}x, DataError {log.count('DataError')}x; " \
        f"left in INBOX {len(account.uids('INBOX'))} of 2"


def odd_paths(w: World):
    """Item 7: `check` on a FIFO and a /dev/zero symlink, `import` of a folder holding them."""
    _account, var, path, env = w.office()
    tmp = w.tmpdir("ff-paths-")
    os.mkfifo(tmp / "x.xlsx")
    (tmp / "zero.xlsx").symlink_to("/dev/zero")
    out = []
    for name in ("x.xlsx", "zero.xlsx"):
        code, took, text = w.mailbot(path, env, "check", str(tmp / name), timeout=15,
                                     prefix=("prlimit", f"--as={4 << 30}", "--"))
        out.append(f"check {name}: exit {code} after {took:.1f} s ({last_line(text)})")
    folder = tmp / "export"
    folder.mkdir()
    (folder / "a.eml").write_bytes(factory.mail())
    os.mkfifo(folder / "b.eml")
    (folder / "c.eml").symlink_to("/dev/zero")
    code, took, text = w.mailbot(path, env, "import", str(folder), timeout=30)
    out.append(f"import (1 mail, a FIFO, a /dev/zero link): exit {code} after {took:.1f} s ({last_line(text)})")
    return "\n    ".join(out)


def sender_tricks(w: World):
    """Item 8: a registered address as the display name; an unparseable From."""
    account, _var, path, env = w.office()
    w.smtp.clear()
    account.append(factory.mail(message_id="<genuine@example.gov.cn>"), date=factory.ON_TIME)
    w.mailbot(path, env, "poll", "--once")
    forged = factory.checklist_xlsx([("某诈骗公司", "政府采购供应商资格审查", "2026-11-03", "经信用中国查询", "无")])
    account.append(from_line(b"scjgj@example.gov.cn <attacker@evil.example>", message_id="<forged@evil.example>",
                             attachments=(("清单.xlsx", forged, factory.XLSX),)), date=factory.ON_TIME)
    account.append(from_line(b"a@reg@evil", message_id="<badfrom@evil.example>"), date=factory.ON_TIME)
    _code, _took, text = w.mailbot(path, env, "poll", "--once")
    lines = [re.sub(r"^.*(message=<[^>]+>).*(from=\S*) (status=\S+ reason=\S+).*$", r"\1 \2 \3", x)
             for x in text.splitlines() if "message=<forged" in x or "message=<badfrom" in x]
    return "; ".join(lines) + f"; receipts sent {len(w.smtp.messages)} (to {sorted({m.rcpt_tos[0] for m in w.smtp.messages})})" \
        + f"; 待人工处理 {len(account.uids('待人工处理'))}"


def poll_beside_daemon(w: World):
    """Item 9: `poll --once` while `mailbot run` works on the same SQLite database."""
    account, _var, path, env = w.office(replies={"daily_cap_per_sender": 1000})
    w.smtp.clear()
    proc = w.daemon(path, env)
    factory.wait_until(lambda: "connected to" in proc.log.read_text(), 30)
    account.append_many([factory.mail(message_id=f"<beside{i}@example.gov.cn>") for i in range(40)], date=factory.ON_TIME)
    code, took, text = w.mailbot(path, env, "poll", "--once")
    factory.wait_until(lambda: not account.uids("INBOX") and len(w.smtp.messages) >= 40, 60)
    stop(proc)
    receipts = [m.message["In-Reply-To"] for m in w.smtp.messages]
    return f"poll --once: exit {code} after {took:.1f} s ({last_line(text)}); Traceback {text.count('Traceback')}x; " \
        f"then INBOX {len(account.uids('INBOX'))}, receipts {len(receipts)} for {len(set(receipts))} mails"


def shared_address(w: World):
    """Item 10: the same address in two offices' departments."""
    tmp = w.tmpdir("ff-two-")
    offices = [{"office": {"id": o, "name": f"{o}县信用办", "address": f"xyb@{o}.example"},
                "imap": {"host": "127.0.0.1", "user": "u", "security": "none"},
                "smtp": {"host": "127.0.0.1", "security": "none"},
                "departments": [{"id": "d", "name": f"{o}县教育局", "emails": ["clerk@163.com"]}]}
               for o in ("zanhuang", "yuanshi")]
    path = factory.write_config(tmp / "m.yaml", {"database": {"url": f"sqlite:///{tmp}/m.db"},
                                                 "archive": {"dir": str(tmp / "a")}, "offices": offices})
    code, _took, text = w.mailbot(path, {}, "config", "check")
    return f"config check: exit {code}, warnings naming clerk@163.com: {text.count('clerk@163.com')}"


def at_rest(w: World):
    """Item 11: the modes of what a poll and a digest create (umask 022), and the log."""
    account, var, path, env = w.office()
    rows = [(f"张某（{ID_NUMBER}）", "个体工商户登记", "2026-11-03", "经信用中国查询，无失信记录", "无")]
    account.append(factory.mail(message_id=f"<{ID_NUMBER}.x@qq.com>", subject=f"清单 张某{ID_NUMBER}",
                                attachments=(("清单.xlsx", factory.checklist_xlsx(rows), factory.XLSX),)),
                   date=factory.ON_TIME)
    old = os.umask(0o022)
    try:
        _c, _t, log = w.mailbot(path, env, "-v", "poll", "--once")
        w.mailbot(path, env, "digest", "--period", "2026-11", "--out", str(var / "out"))
    finally:
        os.umask(old)
    modes = {}
    for p in var.rglob("*"):
        if p.name != "mailbot.yaml":
            key = "dir" if p.is_dir() else "file"
            modes.setdefault(key, set()).add(stat.filemode(p.stat().st_mode))
    leaks = [x for x in log.splitlines() if ID_NUMBER in x]
    return f"modes {dict((k, sorted(v)) for k, v in modes.items())}; log lines with the whole ID number: {len(leaks)}"


# --- part 2 (items 1-3, 5, 6) -----------------------------------------------------------------------

def _deadlines(w: World, seconds: float = 20) -> dict:
    """The code under test has whole-operation deadlines: give it short ones (older code knows no
    such key and keeps only its per-read timeout_seconds, 60 s by default)."""
    if not (w.code / "mailbot" / "deadline.py").exists():
        return {}
    return {"imap": {"deadline_seconds": seconds}, "smtp": {"deadline_seconds": seconds}}


def _merge(*dicts: dict) -> dict:
    out: dict = {}
    for d in dicts:
        for key, value in d.items():
            out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return out


def _ids_in(account, folder: str) -> int:
    return len(account.uids(folder))


def _stop_timed(proc) -> str:
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "SIGTERM ignored for 90 s (killed)"
    return f"SIGTERM: exit {code} after {time.monotonic() - began:.1f} s"


def _logged(log: str, *needles: str) -> str:
    """The first line holding the first needle found (then the next needle, ...)."""
    for needle in needles:
        lines = [x for x in log.splitlines() if needle in x]
        if lines:
            return re.sub(r"^\S+ ", "", lines[0])[:260] + (f" (+{len(lines) - 1} more)" if len(lines) > 1 else "")
    return "nothing logged"


def slow_smtp(w: World, seconds: float = 60):
    """Items 1-2: an SMTP server dripping its banner a byte every 10 s, then one that accepts TCP
    and never answers; mail keeps arriving (a daemon, timeout_seconds 30)."""
    out = []
    for name, server in (("banner dripped 1 byte/10 s", Dripper(b"220 " + b"x" * 40 + b"\r\n", 10)),
                         ("tarpit (never answers)", Tarpit())):
        with server:
            account, _var, path, env = w.office(**_merge({"smtp": {"port": server.port, "timeout_seconds": 30}},
                                                         _deadlines(w)))
            proc = w.daemon(path, env)
            factory.wait_until(lambda: "connected to" in proc.log.read_text(), 30)
            account.append(factory.mail(message_id="<s1@example.gov.cn>"), date=factory.ON_TIME)
            factory.wait_until(lambda: server.accepted >= 1, 30)
            arrived = time.monotonic()
            account.append(factory.mail(message_id="<s2@example.gov.cn>", sender="czj@example.gov.cn"),
                           date=factory.ON_TIME)
            filed = factory.wait_until(lambda: _ids_in(account, "INBOX") == 0, seconds)
            waited = time.monotonic() - arrived
            time.sleep(max(0.0, 25 - waited))  # long enough for a 20-s deadline to show in the log
            log = proc.log.read_text()
            stopped = _stop_timed(proc)
        out.append(f"{name}: 2nd mail {'filed after %.1f s' % waited if filed else 'NOT filed in %.0f s' % seconds}; "
                   f"{stopped}; logged: {_logged(log, 'deadline', 'attempt 1 failed', 'poll failed')}; "
                   f"left in INBOX {_ids_in(account, 'INBOX')} of 2")
    return "\n    ".join(out)


def slow_imap(w: World, seconds: float = 60):
    """Item 1: a proxy in front of Dovecot delivering the message body a byte every 10 s."""
    proxy = DripProxy(w.dovecot.host, w.dovecot.port, interval=10, trigger=rb"BODY\.PEEK\[\]")
    with proxy:
        account, _var, path, env = w.office(**_merge({"imap": {"port": proxy.port, "timeout_seconds": 30}},
                                                     _deadlines(w)))
        account.append(factory.mail(message_id="<dripped@example.gov.cn>"), date=factory.ON_TIME)
        w.smtp.clear()
        proc = w.daemon(path, env)
        started = time.monotonic()
        cut = factory.wait_until(lambda: "FETCH of 1 message" in proc.log.read_text(), seconds)
        took = time.monotonic() - started
        proxy.dripping = False
        handled = factory.wait_until(lambda: _ids_in(account, "INBOX") == 0, 30 if cut else 1)
        log = proc.log.read_text()
        stopped = _stop_timed(proc)
    return (f"FETCH {'cut after %.1f s' % took if cut else 'still running after %.0f s' % seconds}; "
            f"{'handled once the body flowed again' if handled else 'not handled'}; {stopped}; "
            f"logged: {_logged(log, 'exceeded its deadline', 'poll failed')}; receipts {len(w.smtp.messages)}")


def sigterm_states(w: World):
    """Item 3: SIGTERM in each state; seconds to exit (limit 10), what was left half-done."""
    out = []
    for state in ("in IDLE", "mid-FETCH", "mid-SMTP", "in backoff", "in a worker wait"):
        server = None
        overrides, env_extra = {}, {}
        if state == "mid-FETCH":
            server = DripProxy(w.dovecot.host, w.dovecot.port, interval=1, trigger=rb"BODY\.PEEK\[\]")
            overrides = {"imap": {"port": server.port}}
        elif state == "mid-SMTP":
            server = Tarpit()
            overrides = {"smtp": {"port": server.port}}
        elif state == "in backoff":
            overrides = {"imap": {"port": free_port(), "poll_seconds": 60}}
        elif state == "in a worker wait":
            overrides, env_extra = {"limits": {"workers": 1}}, {"MAILBOT_HANG_AT": "in_decide"}
        account, var, path, env = w.office(**overrides)
        if state != "in IDLE" and state != "in backoff":
            account.append(factory.mail(message_id=f"<{state.replace(' ', '-')}@example.gov.cn>"), date=factory.ON_TIME)
        proc = w.daemon(path, {**env, **env_extra})
        ready = {"in IDLE": lambda: "connected to" in proc.log.read_text(),
                 "mid-FETCH": lambda: server.dripped >= 1, "mid-SMTP": lambda: server.accepted >= 1,
                 "in backoff": lambda: "poll failed" in proc.log.read_text(),
                 "in a worker wait": lambda: any((var / "archive").rglob("*.eml"))}[state]
        factory.wait_until(ready, 30)
        time.sleep(1.5)
        stopped = _stop_timed(proc)
        if server is not None:
            server.close()
        out.append(f"{state}: {stopped}; in INBOX {_ids_in(account, 'INBOX')}, "
                   f"moved {_ids_in(account, '已处理') if state not in ('in backoff',) else 0}")
    return "\n    ".join(out)


def lost_database(w: World):
    """Item 5: the SQLite file deleted under a running daemon, then 3 mails arrive."""
    account, var, path, env = w.office()
    w.smtp.clear()
    proc = w.daemon(path, env)
    account.append(factory.mail(message_id="<db-before@example.gov.cn>"), date=factory.ON_TIME)
    factory.wait_until(lambda: len(w.smtp.messages) >= 1, 30)
    for name in ("mailbot.db", "mailbot.db-wal", "mailbot.db-shm"):
        (var / name).unlink(missing_ok=True)
    account.append_many([factory.mail(message_id=f"<db-lost{i}@example.gov.cn>") for i in range(3)],
                        date=factory.ON_TIME)
    time.sleep(10)
    log = proc.log.read_text()
    alive = proc.poll() is None
    stopped = _stop_timed(proc)
    mails = [m.message["Subject"] for m in w.smtp.messages[1:]]
    receipts = sum(1 for m in w.smtp.messages[1:] if m.message["X-Mailbot"] == "receipt")
    code, _took, text = w.mailbot(path, env, "status", "--json", timeout=60)
    records = text.count('"submissions": 1')
    return (f"of the 3 mails after the deletion: moved {3 - _ids_in(account, 'INBOX')}, answered {receipts}; "
            f"alert mails {len([s for s in mails if '数据库' in s])}; daemon {'still running' if alive else 'exited'}; "
            f"{stopped}; logged: {_logged(log, '数据库文件', 'no such table')}; after a restart `status` shows "
            f"{records} department(s) with a submission (exit {code})")


def disk_full(w: World):
    """Item 6: the daemon's database on an 8 MB tmpfs of its own, filled just before the SMTP
    server accepts the receipt (smtp.timeout_seconds 10: the old lease is 80 s)."""
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        return "skipped: unshare/nsenter missing"
    var = w.tmpdir("ff-full-")
    account = w.dovecot.add_user(f"o-{uuid.uuid4().hex[:8]}@example.test", "pw")
    data = factory.config_dict(account, w.smtp, var, **_merge({"smtp": {"timeout_seconds": 10}}, _deadlines(w, 10)))
    path = factory.write_config(w.tmpdir("ff-full-cfg-") / "mailbot.yaml", data)
    log_path = path.parent / "daemon.log"
    w.smtp.clear()
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                                 f'mount -t tmpfs -o size=8m,mode=0700 tmpfs "{var}" && exec "$@"', "sh",
                                 sys.executable, "-m", "mailbot", "--config", str(path), "run"],
                                stdout=fh, stderr=subprocess.STDOUT, env=w.env({"TEST_IMAP_PASSWORD": "pw"}),
                                cwd=path.parent)
    filler = Path(f"/proc/{proc.pid}/root{var}") / "filler"

    def fill(_envelope):
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass
        finally:
            os.close(fd)

    try:
        factory.wait_until(lambda: "connected to" in log_path.read_text(), 30)
        w.smtp.before_accept = fill
        account.append(factory.mail(message_id="<full@example.gov.cn>"), date=factory.ON_TIME)
        factory.wait_until(lambda: len(w.smtp.messages) >= 1, 30)
        w.smtp.before_accept = None
        time.sleep(2)
        filler.unlink(missing_ok=True)
        began = time.monotonic()
        time.sleep(100)
        at = [t for m, t in zip(w.smtp.messages, w.smtp._accepted_at) if m.message["X-Mailbot"] == "receipt"]
        receipts = [m for m in w.smtp.messages if m.message["X-Mailbot"] == "receipt"]
        log = log_path.read_text()
    finally:
        w.smtp.before_accept = None
        stopped = _stop_timed(proc)
    apart = f", {at[1] - at[0]:.0f} s apart" if len(at) > 1 else ""
    return (f"receipt deliveries in the {time.monotonic() - began:.0f} s after: {len(receipts)}{apart} "
            f"(same Message-ID: {len({m.message['Message-ID'] for m in receipts}) == 1}); {stopped}; logged: "
            f"{_logged(log, 'disk is full')}; then: {_logged(log, 'marked uncertain', 'kind=receipt sent to=')}")


CASES = [nul_message_id, odd_paths, sender_tricks, poll_beside_daemon, shared_address, at_rest,
         slow_smtp, slow_imap, sigterm_states, lost_database, disk_full]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=REPO, help="directory holding the mailbot package to try")
    parser.add_argument("--case", action="append", choices=[c.__name__ for c in CASES], help="only these cases")
    args = parser.parse_args()
    w = World(args.code.resolve())
    print(f"code: {w.code}; Python {sys.version.split()[0]}, load {os.getloadavg()[0]:.2f}")
    try:
        for case in [c for c in CASES if not args.case or c.__name__ in args.case]:
            print(f"{case.__name__}: {case.__doc__.splitlines()[0]}\n    {case(w)}", flush=True)
    finally:
        w.stop()
        for path in w.dirs:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
