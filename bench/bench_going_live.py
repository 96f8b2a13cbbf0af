"""Going live on a lived-in mailbox (issue 13): the first poll over years of history, and later polls.

    .venv/bin/python bench/bench_going_live.py [--old 3000] [--new 40] [--skip-all]

In one run, against Dovecot and aiosmtpd on loopback, each `mailbot poll --once` a fresh process
(its peak RSS sampled with its workers):
  A. an INBOX of --old mails from 2024-2025 (60% read; a third of them old checklists from
     registered departments) plus --new mails of this month: the first poll (start line: the
     start of this month);
  B. baseline: the same --new mails in an INBOX without the history, first poll — the ratio A/B
     is what the history costs;
  A2/B2. a later poll of each, after one more checklist arrived;
  C. what going live used to mean (unless --skip-all): `imap.claim: all` and `imap.since: 2020-01-01`,
     every mail of the same INBOX taken and answered.
Goal (issue 13): A <= 10 s; the later poll costs no more than the baseline's.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_pipeline import run_timed  # noqa: E402
from tests import factory  # noqa: E402
from tests.servers import Dovecot, SmtpCapture  # noqa: E402

CST = dt.timezone(dt.timedelta(hours=8))


def history(n: int, xlsx: bytes) -> list[tuple[bytes, dt.datetime, tuple[str, ...]]]:
    rnd = random.Random(13)
    senders = [d["emails"][0] for d in factory.DEPARTMENTS]
    out = []
    for i in range(n):
        when = dt.datetime(2024, 1, 1, 9, tzinfo=CST) + dt.timedelta(minutes=rnd.randrange(0, 2 * 365 * 24 * 60))
        if i % 3 == 0:
            raw = factory.mail(sender=rnd.choice(senders), subject=f"{when.year}年{when.month}月情况清单", date=when,
                               message_id=f"<old{i}@example.gov.cn>", attachments=(("情况清单.xlsx", xlsx, factory.XLSX),))
        elif i % 3 == 1:
            raw = factory.mail(sender="sjzxyb@sjz.gov.cn", subject=f"关于{when.month}月工作的通知", date=when,
                               message_id=f"<old{i}@sjz.gov.cn>", attachments=(("通知.pdf", b"%PDF-1.4" + b"0" * 20_000,
                                                                                "application/pdf"),))
        else:
            raw = factory.mail(sender=f"p{i}@163.com", subject="咨询", date=when, message_id=f"<old{i}@163.com>",
                               attachments=())
        out.append((raw, when, ("\\Seen",) if rnd.random() < 0.6 else ()))
    return out


def this_month(n: int, now: dt.datetime) -> list[tuple[bytes, dt.datetime, tuple[str, ...]]]:
    """`n` mails of the month in progress: a quarter checklists (each its own file), the rest letters."""
    start = now.astimezone(CST).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = max((now - start).total_seconds(), 3600)
    xlsx = factory.checklist_xlsx()
    out = []
    for i in range(n):
        when = start + dt.timedelta(seconds=span * (i + 1) / (n + 1))
        if i % 4 == 0:
            raw = factory.mail(sender=factory.DEPARTMENTS[i % 3]["emails"][0], message_id=f"<new{i}@example.gov.cn>",
                               attachments=(("情况清单.xlsx", factory.another_file(xlsx, str(i)), factory.XLSX),))
        else:
            raw = factory.mail(sender=f"n{i}@qq.com", subject="来函", message_id=f"<new{i}@qq.com>", attachments=())
        out.append((raw, when, ()))
    return out


def poll(config: Path, env: dict) -> tuple[float, float, float]:
    wall, main_rss, tree_rss, _ = run_timed([sys.executable, "-m", "mailbot", "--config", str(config), "poll", "--once"],
                                            env)
    return wall, main_rss, tree_rss


def setup(dovecot, smtp, tmp: Path, name: str, items, **imap) -> tuple[object, Path]:
    account = dovecot.add_user(f"{name}@example.test", "pw")
    account.append_all(items)
    var = tmp / name
    var.mkdir()
    data = factory.config_dict(account, smtp, var, replies={"daily_cap_per_sender": 100000},
                               imap={"batch_size": 50, **imap})
    if "since" not in imap:
        data["imap"].pop("since")  # the default start line
    return account, factory.write_config(var / "mailbot.yaml", data)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=int, default=3000)
    ap.add_argument("--new", type=int, default=40)
    ap.add_argument("--skip-all", action="store_true", help="skip case C (every mail taken; about a minute)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mailbot-bench-live-", dir="/tmp"))
    tmp.chmod(0o755)
    env = {**os.environ, "TEST_IMAP_PASSWORD": "pw"}
    now = dt.datetime.now(dt.timezone.utc)
    old, new = history(args.old, factory.checklist_xlsx()), this_month(args.new, now)
    print(f"{args.old} old mails (2024-2025) + {args.new} of this month; Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with Dovecot(tmp / "dovecot") as dovecot, SmtpCapture() as smtp:
        a, a_cfg = setup(dovecot, smtp, tmp, "a", old + new)
        b, b_cfg = setup(dovecot, smtp, tmp, "b", new)
        receipts = sum(1 for i in range(args.new) if i % 4 == 0)

        wall_a, main_a, tree_a = poll(a_cfg, env)
        assert len(smtp.messages) == receipts, (len(smtp.messages), receipts)
        assert len(a.uids("INBOX")) == args.old + args.new - receipts, "history or letters were moved"
        print(f"A.  first poll, {args.old} old + {args.new} new  {wall_a:6.2f} s  peak RSS main {main_a:5.1f} MB, "
              f"tree {tree_a:5.1f} MB  ({receipts} receipts)")
        smtp.clear()
        wall_b, main_b, tree_b = poll(b_cfg, env)
        assert len(smtp.messages) == receipts
        print(f"B.  first poll, {args.new} new only      {wall_b:6.2f} s  peak RSS main {main_b:5.1f} MB, "
              f"tree {tree_b:5.1f} MB")
        print(f"    ratio A/B                    {wall_a / wall_b:6.2f}")

        more = factory.mail(message_id="<later@example.gov.cn>", attachments=(
            ("情况清单.xlsx", factory.another_file(factory.checklist_xlsx(), "later"), factory.XLSX),))
        for account in (a, b):
            account.append(more)
        smtp.clear()
        wall_a2, main_a2, _ = poll(a_cfg, env)
        wall_b2, main_b2, _ = poll(b_cfg, env)
        assert len(smtp.messages) == 2
        searches = [c for c in a.wait_for_sessions(2)[-1].commands if c.startswith("UID SEARCH")]
        print(f"A2. later poll (1 new mail)      {wall_a2:6.2f} s  peak RSS main {main_a2:5.1f} MB  IMAP: {searches}")
        print(f"B2. later poll, baseline         {wall_b2:6.2f} s  peak RSS main {main_b2:5.1f} MB")
        print(f"    ratio A2/B2                  {wall_a2 / wall_b2:6.2f}")

        if not args.skip_all:
            c, c_cfg = setup(dovecot, smtp, tmp, "c", old + new, claim="all", since="2020-01-01")
            smtp.clear()
            wall_c, main_c, tree_c = poll(c_cfg, env)
            print(f"C.  every mail taken (claim: all, since 2020)  {wall_c:6.2f} s  peak RSS tree {tree_c:5.1f} MB  "
                  f"{len(smtp.messages)} mails answered, {len(c.uids('INBOX'))} left in INBOX  (ratio C/A {wall_c / wall_a:.1f})")


if __name__ == "__main__":
    main()
