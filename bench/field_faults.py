"""The faults of issue 14 (items 4 data part, 7-11), each tried as an operator meets it, with
what it blocked, logged and lost. Run it on this tree, then on an older one to compare:

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
from tests.servers import Dovecot, SmtpCapture  # noqa: E402

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


CASES = [nul_message_id, odd_paths, sender_tricks, poll_beside_daemon, shared_address, at_rest]


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
