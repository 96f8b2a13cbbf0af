"""End-to-end throughput, latency and memory against Dovecot and aiosmtpd on loopback.

    .venv/bin/python bench/bench_pipeline.py [--messages 1000] [--latency 100]

In one run, each case in fresh processes:
  A. backlog: N department mails through `mailbot poll --once` (fetch, read, validate, store,
     receipt, move) — messages per second, peak RSS of the process tree;
  B. the minimal pipeline doing the same work with no checks (imap-tools fetch, openpyxl read,
     one SQLite insert per row, one SMTP send, IMAP move) on the same mails — the ratio A/B;
  C. latency with IDLE: `mailbot run` idle, one mail appended at a time, time until its receipt
     reaches the SMTP server — median and p95;
  D. memory of that daemon: idle, and while it drains the backlog (main process and tree).
Goals (issue 8, tightened by issue 16): >= 50 msg/s, A <= 1.2x B, median < 1 s, p95 < 3 s,
the daemon's tree (main + workers) <= 150 MB PSS while draining.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import factory  # noqa: E402
from tests.servers import Dovecot, SmtpCapture  # noqa: E402

DEPARTMENTS = 60
UNITS = [f"赞皇县第{i}局" for i in range(DEPARTMENTS)]

MINIMAL = r'''
import io, sqlite3, smtplib, sys, time
import openpyxl
from imap_tools import MailBoxUnencrypted
host, port, user, password, smtp_port, db = sys.argv[1:7]
conn = sqlite3.connect(db)
conn.execute("create table if not exists row (uid int, a text, b text, c text, d text, e text)")
smtp = smtplib.SMTP("127.0.0.1", int(smtp_port))
done = 0
with MailBoxUnencrypted(host, int(port)).login(user, password) as box:
    box.folder.create("done")
    for msg in box.fetch(mark_seen=False, bulk=20):
        att = msg.attachments[0]
        wb = openpyxl.load_workbook(io.BytesIO(att.payload), read_only=True, data_only=True)
        with conn:
            for row in wb.worksheets[0].iter_rows(min_row=7, values_only=True):
                if any(v is not None for v in row[:5]):
                    conn.execute("insert into row values (?,?,?,?,?,?)", (int(msg.uid), *[str(v) for v in row[:5]]))
        smtp.sendmail(user, [msg.from_], b"Subject: receipt\r\n\r\nok\r\n")
        box.move(msg.uid, "done")
        done += 1
smtp.quit()
print(done)
'''


def mails(n: int) -> list[bytes]:
    """n mails from 60 departments, each a filled official template of 1 to 3 rows."""
    files: dict[tuple[int, int], bytes] = {}
    raws = []
    for i in range(n):
        dept, variant = i % DEPARTMENTS, i % 3
        if (dept, variant) not in files:
            files[(dept, variant)] = factory.checklist_xlsx(factory.GOOD_ROWS[: variant + 1], unit=UNITS[dept])
        data = factory.another_file(files[(dept, variant)], str(i))  # not the very same file again: answered
        raws.append(factory.mail(sender=f"d{dept}@example.gov.cn", message_id=f"<bench{i}@example.gov.cn>",
                                 attachments=(("情况清单.xlsx", data, factory.XLSX),)))
    return raws


def config(account, smtp, var: Path) -> Path:
    departments = [{"id": f"d{i}", "name": UNITS[i], "emails": [f"d{i}@example.gov.cn"]} for i in range(DEPARTMENTS)]
    data = factory.config_dict(account, smtp, var, departments=departments,
                               replies={"daily_cap_per_sender": 100000},
                               imap={"batch_size": 50, "poll_seconds": 30})
    return factory.write_config(var / "mailbot.yaml", data)


def append(account, raws: list[bytes]) -> None:
    with account.client(None) as box:
        for raw in raws:
            box.append(raw, "INBOX", dt=factory.ON_TIME)


class Sampler(threading.Thread):
    """Peak RSS of a process and of its whole tree (the workers), and the tree's peak PSS (pages
    shared between processes counted once, split among them), sampled every 50 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.main = self.tree = self.pss = 0
        self.running = True

    def run(self):
        while self.running:
            try:
                procs = [self.proc] + self.proc.children(recursive=True)
                infos = [p.memory_full_info() for p in procs]
            except psutil.Error:
                break
            self.main = max(self.main, infos[0].rss)
            self.tree = max(self.tree, sum(i.rss for i in infos))
            self.pss = max(self.pss, sum(i.pss for i in infos))
            time.sleep(0.05)

    def stop(self):
        self.running = False
        self.join()
        return self.main / 2**20, self.tree / 2**20


def run_timed(cmd: list[str], env: dict) -> tuple[float, float, float, str]:
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sampler = Sampler(proc.pid)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    main, tree = sampler.stop()
    if proc.returncode:
        raise SystemExit(f"{cmd} failed: {err.decode()[-2000:]}")
    return wall, main, tree, out.decode()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--latency", type=int, default=100)
    args = ap.parse_args()
    n = args.messages
    tmp = Path(tempfile.mkdtemp(prefix="mailbot-bench-", dir="/tmp"))
    tmp.chmod(0o755)
    dovecot = Dovecot(tmp / "dovecot").start()
    smtp = SmtpCapture().__enter__()
    print(f"{n} mails, {DEPARTMENTS} departments; Python {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    raws = mails(n)
    results = {}

    # A. mailbot poll --once
    a = dovecot.add_user("a@example.test", "pw")
    append(a, raws)
    var = tmp / "a"
    var.mkdir()
    env = {**os.environ, "TEST_IMAP_PASSWORD": "pw"}
    wall, main_rss, tree_rss, _ = run_timed([sys.executable, "-m", "mailbot", "--config", str(config(a, smtp, var)),
                                             "poll", "--once"], env)
    assert len(smtp.messages) == n and a.uids("INBOX") == [], "not every mail was handled"
    results["A"] = wall
    print(f"A. mailbot poll --once      {wall:7.2f} s  {n / wall:6.1f} msg/s  peak RSS main {main_rss:5.1f} MB, tree {tree_rss:5.1f} MB")

    # B. the minimal pipeline
    smtp.clear()
    b = dovecot.add_user("b@example.test", "pw")
    append(b, raws)
    wall, main_rss, tree_rss, out = run_timed([sys.executable, "-c", MINIMAL, "127.0.0.1", str(b.port), b.user, "pw",
                                               str(smtp.port), str(tmp / "minimal.db")], os.environ.copy())
    assert int(out) == n
    results["B"] = wall
    print(f"B. minimal pipeline         {wall:7.2f} s  {n / wall:6.1f} msg/s  peak RSS {main_rss:5.1f} MB")
    print(f"   ratio A/B                {results['A'] / results['B']:7.2f}")

    # C + D. the daemon: idle memory, latency with IDLE, memory while draining a backlog
    smtp.clear()
    c = dovecot.add_user("c@example.test", "pw")
    var = tmp / "c"
    var.mkdir()
    daemon = subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(config(c, smtp, var)), "run"],
                              env=env, stdout=subprocess.DEVNULL, stderr=open(var / "daemon.log", "wb"))
    time.sleep(3)
    idle = Sampler(daemon.pid)
    idle.start()
    time.sleep(1)
    idle_main, idle_tree = idle.stop()
    print(f"D. daemon idle              RSS main {idle_main:5.1f} MB, tree {idle_tree:5.1f} MB (PSS {idle.pss / 2**20:5.1f} MB)")
    latencies = []
    for i in range(args.latency):
        start = time.perf_counter()
        append(c, [raws[i]])
        smtp.wait_for(i + 1, timeout=30)
        latencies.append(time.perf_counter() - start)
    q = statistics.quantiles(latencies, n=20)
    print(f"C. latency APPEND->receipt  median {statistics.median(latencies):.3f} s  p95 {q[18]:.3f} s  "
          f"max {max(latencies):.3f} s  ({args.latency} mails, one at a time)")
    busy = Sampler(daemon.pid)
    busy.start()
    started = time.perf_counter()
    append(c, raws[args.latency:])
    smtp.wait_for(n, timeout=600)
    wall = time.perf_counter() - started
    busy_main, busy_tree = busy.stop()
    print(f"D. daemon draining {n - args.latency} mails {wall:6.2f} s (incl. APPEND)  "
          f"peak RSS main {busy_main:5.1f} MB, tree {busy_tree:5.1f} MB (PSS {busy.pss / 2**20:5.1f} MB)")
    daemon.terminate()
    daemon.wait(timeout=60)
    smtp.stop()
    dovecot.stop()


if __name__ == "__main__":
    main()
