"""The demo's month, played against whatever IMAP and SMTP servers the config names.

Mail is appended with its arrival time (IMAP INTERNALDATE) and the schedule ticks at the
instants it would in real life, so deadlines, reminders and lateness come out as they would.
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

from imap_tools import MailBox, MailBoxUnencrypted
from rich.console import Console
from rich.table import Table

from . import store
from .config import Config
from .daemon import Daemon
from .obligations import period_of, shift_period
from .status import print_table, status


def _append(office, raw: bytes, when: dt.datetime) -> None:
    imap = office.imap
    cls = MailBoxUnencrypted if imap.security == "none" else MailBox
    with cls(imap.host, imap.port).login(imap.user, imap.password(), initial_folder=None) as box:
        box.append(raw, imap.folder, dt=when)


def _first_lines(raw: bytes, n: int = 4) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    body = msg.get_body(("plain",))
    lines = [line for line in (body.get_content() if body else "").splitlines() if line.strip()]
    return "\n".join(lines[:n])


def _show_mail(console: Console, sent: list[tuple[list[str], bytes]], start: int, when: dt.datetime) -> None:
    for rcpts, raw in sent[start:]:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        atts = [a.get_filename() for a in msg.iter_attachments()]
        console.print(f"  [cyan]→ {', '.join(rcpts)}[/cyan]  [bold]{msg['Subject']}[/bold]"
                      + (f"  [dim]附件：{'、'.join(atts)}[/dim]" if atts else ""))
        for line in _first_lines(raw).splitlines():
            console.print(f"      {line[:90]}")


def demo_period(now: dt.datetime, tz) -> str:
    """The last complete month: every day of the story lies in the past."""
    return shift_period(period_of(now, tz), -1)


def play(config: Config, root: Path, sent: list, console: Console, period: str | None = None) -> dict:
    from . import demo, digest, schedule

    office = config.office()
    tz = office.office.tz
    period = period or demo_period(dt.datetime.now(dt.timezone.utc), tz)
    year, month = map(int, period.split("-"))
    office = office.model_copy(update={"departments": [d.model_copy(update={"since": period})
                                                        for d in office.departments],
                                       # the story is a past month: mailbot was installed on its first day
                                       "imap": office.imap.model_copy(update={"since": dt.date(year, month, 1)})})
    config = config.model_copy(update={"offices": [office]})
    engine = store.connect(config.database.url)
    daemon = Daemon(config, engine)
    loop = daemon.loops[0]

    events = [(when, "mail", (sender, subject, att)) for when, sender, subject, att in demo.month_of_mail(period)]
    for day in sorted(set(office.schedule.reminder_days) | {office.schedule.notice_day}):
        when = dt.datetime(year, month, day, 9, 30, tzinfo=tz)
        events.append((when, "tick", None))
    events.sort(key=lambda e: e[0])
    console.rule(f"[bold]{office.office.name}：{year}年{month}月情况清单报送演示")
    for n, (when, kind, payload) in enumerate(events):
        start = len(sent)
        if kind == "mail":
            sender, subject, att = payload
            console.print(f"[yellow]{when:%m月%d日 %H:%M}[/yellow] 收到 {sender} 的邮件“{subject}”"
                          + (f"，附件“{att[0]}”" if att else ""))
            _append(office, demo._mail(sender, subject, when, att, n), when)
            loop.cycle()
        else:
            console.print(f"[yellow]{when:%m月%d日 %H:%M}[/yellow] 定时任务运行")
            schedule.tick(engine, office, when)
            loop.cycle()
        _show_mail(console, sent, start, when)

    daemon.deciders.close()
    console.rule("报送情况")
    print_table(office, status(engine, office, period), period, console)
    paths = digest.write_files(digest.build_monthly(engine, office, period, events[-1][0]), root)
    table = Table(show_header=False, box=None)
    for path in paths:
        table.add_row("通报草稿" if path.suffix == ".docx" else "汇总表", str(path))
    console.print(table)
    return {"period": period, "files": paths, "engine": engine}
