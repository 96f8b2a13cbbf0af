"""Many offices, one PostgreSQL, several daemons: a city's (or a province's) month of mail.

    .venv/bin/python bench/bench_offices.py [--offices 20] [--departments 60] [--seconds 120] [--daemons 2]
    .venv/bin/python bench/bench_offices.py --province [--offices 200] [--daemons 4] [--seconds 600] [--kill-at 300]
    .venv/bin/python bench/bench_offices.py --memory [--offices 40]

20 offices x 60 departments on one PostgreSQL and one Dovecot (one mailbox per office). The
`mailbot run` daemons share the work (each office polled by exactly one, its lease balanced by
the heartbeat: mailbot.lease). The month's mail - one checklist from every department plus a
correction from one in ten - is appended at an even pace over `--seconds`; each receipt is timed
from the APPEND of its mail to its arrival at the SMTP server. Reports the total time, each
office's latency, the offices each daemon holds at the end (max - min) and each daemon's peak
memory (its RSS and its deciding workers').

`--province`: the issue-18 case (200 offices x 60 departments, 4 daemons by default; scale it
down with --offices/--daemons on a small machine), one daemon SIGKILLed at `--kill-at` seconds:
the takeover time is from the kill until every office is held by a live daemon again.

`--memory`: the cost of an office held. One daemon, `--offices` offices configured, their leases
first held by this script (so the daemon holds none: its base), then given up in steps; at each
step, once the daemon holds them all and has connected every mailbox, its RSS is read. The slope
is the memory per office held.
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbot import config as config_mod, lease, store  # noqa: E402
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


def rss_mb(pid: int) -> tuple[float, float]:
    """(the process's resident memory, its children's - the deciding workers), in MB."""
    def one(p) -> float:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0
    children = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children += one(int(stat.parent.name))
    return one(pid), children


def held_by(engine, tags: list[str]) -> dict:
    """The fleet as `mailbot status --daemons --json` shows it, or {} while it cannot be read."""
    try:
        return lease.fleet(engine, tags)
    except Exception:
        return {}


def setup(args, tmp: Path):
    pg = Postgres(Path(tempfile.mkdtemp(prefix="mailbot-pg-", dir="/tmp"))).start()
    dovecot = Dovecot(tmp / "dovecot").start()
    smtp = SmtpCapture().__enter__()
    tags = [f"o{i:03d}" for i in range(args.offices)]
    accounts = {t: dovecot.add_user(f"{t}@example.test", "pw") for t in tags}
    offices = []
    for t in tags:
        data = office_config(t, accounts[t], smtp, args.departments)
        data["imap"]["poll_seconds"] = args.poll_seconds
        offices.append(data)
    cfg = config_mod.parse({"database": {"url": pg.create_database("city")}, "archive": {"dir": str(tmp / "archive")},
                            "offices": offices})
    engine = store.connect(cfg.database.url)
    path = tmp / "mailbot.json"
    path.write_text(cfg.model_dump_json(exclude_none=True), encoding="utf-8")
    return pg, dovecot, smtp, tags, accounts, engine, path


def spawn(path: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(path), "run"],
                            env={**os.environ, "BENCH_PW": "pw"}, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def memory(args) -> None:
    """The memory per office held: one daemon's RSS as it takes over the offices in steps."""
    tmp = Path(tempfile.mkdtemp(prefix="mailbot-offices-", dir="/tmp"))
    tmp.chmod(0o755)
    pg, dovecot, smtp, tags, accounts, engine, path = setup(args, tmp)
    print(f"memory per office held: 1 daemon, {args.offices} offices x {args.departments} departments configured, "
          f"poll {args.poll_seconds} s; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    blocker = lease.Keeper(engine, tags, kind="poll")  # holds every office until it gives them up
    assert blocker.take() == []
    renew = threading.Event()

    def keep_blocking():
        while not renew.wait(lease.BEAT_SECONDS):
            blocker.beat(balance=False)
    threading.Thread(target=keep_blocking, daemon=True).start()
    daemon = spawn(path, tmp / "daemon.log")
    steps = sorted({0, 1, args.offices // 4, args.offices // 2, args.offices})
    points = []
    try:
        for n in steps:
            blocker.stop(set(tags[:n]))  # the daemon, alone, claims what is free at its next beat
            until = time.monotonic() + 180
            while time.monotonic() < until:
                view = held_by(engine, tags)
                mine = [d for d in view.get("daemons", []) if d["pid"] == daemon.pid]
                log = (tmp / "daemon.log").read_text()
                if mine and len(mine[0]["offices"]) == n and log.count("connected to") >= n:
                    break
                time.sleep(0.5)
            else:
                raise SystemExit(f"the daemon did not take {n} offices within 180 s")
            time.sleep(args.settle)  # the loops are in IDLE, the senders asleep
            samples = [rss_mb(daemon.pid) for _ in range(5) if time.sleep(0.2) is None]
            own = statistics.median(s[0] for s in samples)
            workers = statistics.median(s[1] for s in samples)
            threads = len(list(Path(f"/proc/{daemon.pid}/task").iterdir()))
            points.append((n, own))
            print(f"offices held {n:4d}: daemon RSS {own:7.1f} MB, threads {threads:4d}, deciding workers {workers:6.1f} MB")
    finally:
        renew.set()
        daemon.terminate()
        daemon.wait(timeout=60)
        smtp.stop()
        dovecot.stop()
        pg.stop()
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x in xs)
    print(f"memory per office held (least squares over {len(points)} steps): {slope:.2f} MB; "
          f"base (none held) {points[0][1]:.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--province", action="store_true", help="issue 18: 200 offices, 4 daemons, one killed mid-run")
    ap.add_argument("--memory", action="store_true", help="the memory per office held, one daemon")
    ap.add_argument("--offices", type=int)
    ap.add_argument("--departments", type=int, default=60)
    ap.add_argument("--seconds", type=float, help="the month's mail arrives over this many seconds")
    ap.add_argument("--daemons", type=int)
    ap.add_argument("--kill-at", type=float, help="SIGKILL the daemon holding most offices this many seconds in")
    ap.add_argument("--poll-seconds", type=int, help="imap.poll_seconds (new mail wakes IDLE at once anyway)")
    ap.add_argument("--settle", type=float, default=10, help="--memory: seconds to wait before reading the RSS")
    args = ap.parse_args()
    province = args.province
    args.offices = args.offices or (200 if province else 40 if args.memory else 20)
    args.daemons = args.daemons or (4 if province else 2)
    args.seconds = 600 if args.seconds is None and province else 120 if args.seconds is None else args.seconds
    args.kill_at = args.kill_at if args.kill_at is not None or not province else args.seconds / 2
    args.poll_seconds = args.poll_seconds or (60 if province or args.memory else 1)
    if args.memory:
        return memory(args)
    tmp = Path(tempfile.mkdtemp(prefix="mailbot-offices-", dir="/tmp"))
    tmp.chmod(0o755)
    pg, dovecot, smtp, tags, accounts, engine, path = setup(args, tmp)

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
          f"{args.daemons} daemons, poll {args.poll_seconds} s" +
          (f", one killed at {args.kill_at:.0f} s" if args.kill_at is not None else "") +
          f"; Python {platform.python_version()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")

    logs = [tmp / f"daemon{i}.log" for i in range(args.daemons)]
    begun = time.perf_counter()
    daemons = [spawn(path, log) for log in logs]
    while True:  # the daemons start and share out the offices
        view = held_by(engine, tags)
        if view and all(o["state"] == "held" for o in view["offices"]) and view["live"] == args.daemons:
            counts = [len(d["offices"]) for d in view["daemons"] if d["state"] == "alive"]
            if max(counts) <= view["share"] + 1:
                break
        time.sleep(0.5)
    print(f"{args.daemons} daemons started together: every office held, shares {sorted(counts)}, "
          f"after {time.perf_counter() - begun:.1f} s")

    appended: dict[str, tuple[str, float]] = {}
    answered: dict[str, float] = {}
    peak = {p.pid: (0.0, 0.0) for p in daemons}
    done = threading.Event()
    takeover: dict[str, float] = {}

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

    def sample():
        while not done.wait(1):
            for p in daemons:
                if p.poll() is None:
                    own, workers = rss_mb(p.pid)
                    peak[p.pid] = (max(peak[p.pid][0], own), max(peak[p.pid][1], workers))

    def kill():
        view = held_by(engine, tags)
        victim_id, pid = max(((d["id"], d["pid"]) for d in view["daemons"] if d["state"] == "alive"),
                             key=lambda x: len(next(d for d in view["daemons"] if d["id"] == x[0])["offices"]))
        held = len(next(d for d in view["daemons"] if d["id"] == victim_id)["offices"])
        os.kill(pid, signal.SIGKILL)
        killed = time.perf_counter()
        takeover.update(at=killed - started, held=held)
        while not done.is_set():
            view = held_by(engine, tags)
            alive = {d["id"] for d in view.get("daemons", []) if d["state"] == "alive" and d["id"] != victim_id}
            if view and all(o["holder"] in alive for o in view["offices"]):
                takeover["seconds"] = time.perf_counter() - killed
                return
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    killer = threading.Timer(args.kill_at, kill) if args.kill_at is not None else None
    if killer:
        killer.start()
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
    view = held_by(engine, tags)
    done.set()
    for p in daemons:
        if p.poll() is None:
            p.terminate()
    for p in daemons:
        p.wait(timeout=120)

    by_office: dict[str, list[float]] = {}
    for mid, (t, at) in appended.items():
        if mid in answered:
            by_office.setdefault(t, []).append(answered[mid] - at)
    lat = [x for v in by_office.values() for x in v]
    counts = sorted(len(d["offices"]) for d in view["daemons"] if d["state"] == "alive")
    print(f"answered {len(answered)}/{len(mail)} in {total:.1f} s (the last mail was appended at {args.seconds:.0f} s); "
          f"offices held per live daemon at the end: {counts} (max - min {counts[-1] - counts[0]}, "
          f"share {view['share']})")
    if takeover:
        print(f"killed at {takeover['at']:.0f} s a daemon holding {takeover['held']} offices: every office held by a "
              f"live daemon again {takeover.get('seconds', float('nan')):.1f} s later")
    print("peak memory per daemon (RSS, MB): " + ", ".join(f"{own:.0f} (+ workers {w:.0f})" for own, w in peak.values()))
    print(f"all offices: latency median {statistics.median(lat):.2f} s, p95 {statistics.quantiles(lat, n=20)[18]:.2f} s, "
          f"max {max(lat):.2f} s")
    medians = [statistics.median(v) for v in by_office.values()]
    p95s = [sorted(v)[int(0.95 * (len(v) - 1))] for v in by_office.values()]
    print(f"per office: median {min(medians):.2f}-{max(medians):.2f} s, p95 {min(p95s):.2f}-{max(p95s):.2f} s")
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
