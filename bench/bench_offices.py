"""Many offices, one PostgreSQL, two daemons: a city's month of mail.

    .venv/bin/python bench/bench_offices.py [--offices 20] [--departments 60] [--seconds 120]

20 offices x 60 departments on one PostgreSQL and one Dovecot (one mailbox per office). Two
`mailbot run` daemons share the work (each office polled by exactly one, PostgreSQL advisory
locks). The month's mail - one checklist from every department plus a correction from one in
ten - is appended at an even pace over `--seconds`; each receipt is timed from the APPEND of
its mail to its arrival at the SMTP server. Reports the total time and each office's latency.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbot import config as config_mod, store  # noqa: E402
from tests import factory  # noqa: E402
from tests.postgres import Postgres  # noqa: E402
from tests.servers import Dovecot, SmtpCapture  # noqa: E402


def office_config(tag: str, account, smtp, departments: int) -> dict:
    data = factory.config_dict(account, smtp, Path("/unused"),
                               departments=[{"id": f"d{i}", "name": f"{tag}县第{i}局", "emails": [f"d{i}@{tag}.gov.cn"],
                                             "since": "2099-01"}  # no reminders or notices: only receipts
                                            for i in range(departments)],
                               replies={"daily_cap_per_sender": 1000}, schedule={"weekly_digest_day": None})
    data["office"] = {**data["office"], "id": tag, "address": f"xyb@{tag}.example", "name": f"{tag}县信用办"}
    data["imap"]["password_env"] = "BENCH_PW"
    for key in ("database", "archive"):
        data.pop(key)
    return data


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--offices", type=int, default=20)
    ap.add_argument("--departments", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=120, help="the month's mail arrives over this many seconds")
    ap.add_argument("--daemons", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mailbot-offices-", dir="/tmp"))
    tmp.chmod(0o755)
    pg = Postgres(Path(tempfile.mkdtemp(prefix="mailbot-pg-", dir="/tmp"))).start()
    dovecot = Dovecot(tmp / "dovecot").start()
    smtp = SmtpCapture().__enter__()
    tags = [f"o{i:02d}" for i in range(args.offices)]
    accounts = {t: dovecot.add_user(f"{t}@example.test", "pw") for t in tags}
    cfg = config_mod.parse({
        "database": {"url": pg.create_database("city")}, "archive": {"dir": str(tmp / "archive")},
        "offices": [office_config(t, accounts[t], smtp, args.departments) for t in tags]})
    store.connect(cfg.database.url)
    path = tmp / "mailbot.json"
    path.write_text(cfg.model_dump_json(exclude_none=True), encoding="utf-8")

    mail = []  # (office, message-id, raw): every department once, one in ten twice (a correction)
    for t in tags:
        for d in range(args.departments):
            sheet = factory.checklist_xlsx(factory.GOOD_ROWS[: 1 + d % 3], unit=f"{t}县第{d}局")
            for version in range(2 if d % 10 == 0 else 1):
                mid = f"{t}-{d}-{version}@{t}.gov.cn"
                mail.append((t, mid, factory.mail(sender=f"d{d}@{t}.gov.cn", message_id=f"<{mid}>",
                                                  attachments=(("清单.xlsx", sheet, factory.XLSX),))))
    random.Random(7).shuffle(mail)
    print(f"{args.offices} offices x {args.departments} departments, {len(mail)} mails over {args.seconds:.0f} s, "
          f"{args.daemons} daemons; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")

    env = {**os.environ, "BENCH_PW": "pw"}
    logs = [open(tmp / f"daemon{i}.log", "wb") for i in range(args.daemons)]
    daemons = [subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(path), "run"], env=env,
                                stdout=logs[i], stderr=subprocess.STDOUT) for i in range(args.daemons)]
    time.sleep(5)  # the daemons start and share out the offices

    appended: dict[str, tuple[str, float]] = {}
    answered: dict[str, float] = {}

    def watch():
        seen = 0
        while len(answered) < len(mail):
            messages = smtp.messages
            now = time.perf_counter()
            for m in messages[seen:]:
                if m.message["X-Mailbot"] == "receipt":
                    answered.setdefault(m.message["In-Reply-To"].strip("<>"), now)
            seen = len(messages)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.perf_counter()
    clients = {t: accounts[t].client(None) for t in tags}
    gap = args.seconds / len(mail)
    for i, (t, mid, raw) in enumerate(mail):
        delay = started + i * gap - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        clients[t].append(raw, "INBOX", dt=factory.ON_TIME)
        appended[mid] = (t, time.perf_counter())
    watcher.join(timeout=600)
    total = time.perf_counter() - started
    for p in daemons:
        p.terminate()
    for p in daemons:
        p.wait(timeout=120)
    held = [log.name for log in logs]
    taken = [Path(h).read_text().count("taken: this daemon polls it") for h in held]

    by_office: dict[str, list[float]] = {}
    for mid, (t, at) in appended.items():
        if mid in answered:
            by_office.setdefault(t, []).append(answered[mid] - at)
    lat = [x for v in by_office.values() for x in v]
    print(f"answered {len(answered)}/{len(mail)} in {total:.1f} s (the last mail was appended at {args.seconds:.0f} s); "
          f"offices held per daemon: {taken}")
    print(f"all offices: latency median {statistics.median(lat):.2f} s, p95 {statistics.quantiles(lat, n=20)[18]:.2f} s, "
          f"max {max(lat):.2f} s")
    print("office  mails  median s  p95 s  max s")
    for t in tags:
        v = sorted(by_office.get(t, []))
        if v:
            print(f"{t:6s}  {len(v):5d}  {statistics.median(v):8.2f}  {v[int(0.95 * (len(v) - 1))]:5.2f}  {v[-1]:5.2f}")
    smtp.stop()
    dovecot.stop()
    pg.stop()


if __name__ == "__main__":
    main()
