"""The demo's month: a small county, the mail its departments send, and the story told as it plays.

The mail is appended with its arrival time (IMAP INTERNALDATE) and the schedule ticks at the
instants it would in real life, on the story's own clock, so deadlines, reminders, lateness and
every date a mail or the database shows come out as they would in that month. Played against
whatever IMAP and SMTP servers the config names (`mailbot.demo` starts embedded ones).
"""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import io
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parsedate_to_datetime

import openpyxl
from imap_tools import MailBox, MailBoxUnencrypted
from rich.console import Console
from sqlalchemy import func, select

from . import letters, runner, schedule, store
from .config import Config, OfficeConfig
from .digest import MAIL_KIND_ZH, QUARANTINE_ZH
from .mailbox import Mailbox
from .models import Message, Submission
from .obligations import STATE_ZH, period_of, shift_period
from .status import print_table, start_line, status
from .template import build_template
from .tongbao import period_zh
from .terminal import cells, hanging, paragraphs, wrap
from .workers import Deciders

OFFICE = "zhxxyt@demo.example"
DEPARTMENTS = [
    {"id": "scjgj", "name": "赞皇县市场监督管理局", "aliases": ["县市场监管局"], "emails": ["scjgj@zanhuang.example", "scj_wang@163.example"]},
    {"id": "czj", "name": "赞皇县财政局", "emails": ["czj@zanhuang.example"]},
    {"id": "zjj", "name": "赞皇县住房和城乡建设局", "emails": ["zjj@zanhuang.example"]},
    {"id": "jyj", "name": "赞皇县教育局", "emails": ["jyj@zanhuang.example"]},
    {"id": "zhz", "name": "赞皇镇人民政府", "emails": ["zhz@qq.example"]},
]
WEEKDAYS_ZH = "一二三四五六日"


def filled_checklist(rows, unit: str, submitter: str = "王某", report_date: dt.date | None = None) -> bytes:
    """The official template filled in as a department would."""
    wb = openpyxl.load_workbook(io.BytesIO(build_template()))
    ws = wb["情况清单"]
    ws["B2"], ws["B3"], ws["B4"] = unit, submitter, report_date
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            ws.cell(7 + i, 1 + j, value)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def mail(sender: str, subject: str, when: dt.datetime, attachment: tuple[str, bytes] | None, n: int) -> bytes:
    """A department's mail with its checklist attached."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, OFFICE, subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<demo-{n}@zanhuang.example>"
    msg.set_content("您好，附件为本单位情况清单，请查收。")
    if attachment:
        msg.add_attachment(attachment[1], maintype="application", subtype=letters.XLSX.split("/")[1],
                           filename=attachment[0])
    return msg.as_bytes(policy=SMTP_POLICY)


@dataclass(frozen=True)
class Letter:
    """One mail a department sends in the story, and what the reader should know about it."""

    when: dt.datetime
    sender: str
    subject: str
    attachment: tuple[str, bytes] | None
    note: str


def month_of_mail(period: str) -> list[Letter]:
    """One month of a small county's mail: valid, wrong then corrected, a nil report, an
    unknown sender, a late one."""
    year, month = map(int, period.split("-"))
    tz = dt.timezone(dt.timedelta(hours=8))

    def at(day, hour=10):
        return dt.datetime(year, month, day, hour, 0, tzinfo=tz)

    def d(day):
        return dt.date(year, month, day)

    label = f"{year}年{month}月"
    good = [
        ("赞皇县某食品有限公司（91350100M000100Y43）", "食品经营许可证核发", d(3), "经“信用中国”查询，无失信记录", "告知承诺"),
        ("赞皇县某建筑工程有限公司", "政府采购供应商资格审查", f"{year}年{month}月5日",
         "经“信用中国”、中国执行信息公开网查询，该公司被列入失信被执行人名单", "限制参与政府采购"),
        ("张某（个体工商户）", "个体工商户设立登记", f"{year}.{month}.9", "经国家企业信用信息公示系统查询，无经营异常", "容缺受理"),
    ]
    wrong = [
        ("赞皇县某商贸有限公司（91130129MA0ABCDE1X）", "政府采购供应商资格审查", 9.2, "经信用中国查询，无失信记录", "无"),
        ("", "评标专家抽取", d(6), "经信用中国查询", "无"),
    ]
    fixed = [
        ("赞皇县某商贸有限公司", "政府采购供应商资格审查", d(9), "经信用中国查询，无失信记录", "无"),
        ("赞皇县某物业服务有限公司", "政府采购评审", d(6), "经“信用中国（河北石家庄）”查询，无失信记录", "信用加分"),
    ]
    late = [("赞皇县某建设集团有限公司", "建筑业企业资质核准", d(21), "经信用中国查询，无失信记录", "优先办理")]
    return [
        Letter(at(10), "scjgj@zanhuang.example", f"{label}信用记录使用情况清单",
               ("市场监管局情况清单.xlsx", filled_checklist(good, "赞皇县市场监督管理局", report_date=d(10))),
               "市场监管局按模板填好3条记录，在截止日前报送。"),
        Letter(at(12), "czj@zanhuang.example", f"{label}情况清单",
               ("财政局清单.xlsx", filled_checklist(wrong, "赞皇县财政局", report_date=d(12))),
               "财政局的清单有错：一个日期写成了数字 9.2，一个统一社会信用代码的校验位不对，一行没有填市场主体名称。"),
        Letter(at(15), "czj@zanhuang.example", f"回复：{label}情况清单（已修改）",
               ("财政局清单（修改）.xlsx", filled_checklist(fixed, "赞皇县财政局", report_date=d(15))),
               "财政局按回执改好后，直接回复回执邮件重新报送。"),
        Letter(at(18), "zhz@qq.example", f"赞皇镇{label}情况清单",
               ("赞皇镇.xlsx", filled_checklist([("本月无使用信用记录和信用报告情况",) * 5], "赞皇镇人民政府", report_date=d(18))),
               "赞皇镇本月没有使用信用记录的情况，按要求报送“本月无使用信用记录和信用报告情况”。"),
        Letter(at(22), "someone@unknown.example", "情况清单", ("清单.xlsx", filled_checklist(good[:1], "某单位")),
               "一个没有登记的邮箱也发来一份清单（比如某位经办人用了自己的私人邮箱）。"),
        Letter(at(27), "zjj@zanhuang.example", f"{label}情况清单（补报）",
               ("住建局情况清单.xlsx", filled_checklist(late, "赞皇县住房和城乡建设局", report_date=d(27))),
               "住建局收到未按时报送通知后，在截止日之后补报。"),
    ]


def demo_period(now: dt.datetime, tz) -> str:
    """The last complete month: every day of the story lies in the past."""
    return shift_period(period_of(now, tz), -1)


class StoryClock:
    """The story's time: set to each event's instant, it runs on from there in real time, so a
    receipt is written and sent a moment after its mail arrived, in the month of the story."""

    def __init__(self):
        self.at = dt.datetime.now(dt.timezone.utc)
        self.started = time.monotonic()

    def set(self, when: dt.datetime) -> None:
        self.at, self.started = when.astimezone(dt.timezone.utc), time.monotonic()

    def __call__(self) -> dt.datetime:
        return self.at + dt.timedelta(seconds=time.monotonic() - self.started)


@dataclass
class Story:
    """What the month produced, for `mailbot demo --keep` to write out."""

    period: str
    office: OfficeConfig
    received: list[tuple[dt.datetime, str, bytes]] = field(default_factory=list)  # (arrival, sender, raw)
    sent: list[tuple[list[str], bytes]] = field(default_factory=list)  # (recipients, raw), in sending order
    engine: object = None


# --- telling it -------------------------------------------------------------------------------------

class _Teller:
    """Prints the story: wrapped to the terminal, every mail in full, never cut mid-sentence."""

    def __init__(self, console: Console, office: OfficeConfig):
        self.console, self.office, self.tz = console, office, office.office.tz
        self.width = max(console.width, 40)

    def lines(self, lines: list[str], style: str | None = None) -> None:
        for line in lines:
            self.console.print(line, style=style, soft_wrap=True, highlight=False, markup=False)

    def say(self, text: str, indent: int = 0, style: str | None = None) -> None:
        self.lines([" " * indent + line for line in wrap(text, self.width - indent)], style)

    def heading(self, when: dt.datetime, what: str) -> None:
        local = when.astimezone(self.tz)
        stamp = f"{local.month}月{local.day}日（周{WEEKDAYS_ZH[local.weekday()]}）{local:%H:%M}"
        self.console.print()
        first, *rest = hanging(" " * (cells(stamp) + 2), what, self.width)
        self.console.print(f"{stamp}  ", style="bold yellow", end="", highlight=False, markup=False)
        self.lines([first.lstrip()] + rest, "bold")

    def mail_sent(self, rcpts: list[str], raw: bytes) -> None:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        kind = kind_zh(raw)
        self.console.print()
        self.lines(hanging(f"  → mailbot 发出{kind}：", "、".join(rcpts), self.width), "cyan")
        self.lines(hanging("    主题：", str(msg["Subject"]), self.width), "bold")
        names = [a.get_filename() for a in msg.iter_attachments()]
        if names:
            self.lines(hanging("    附件：", "、".join(names), self.width))
        body = msg.get_body(("plain",))
        text = body.get_content() if body else ""
        shown, blank = [], False
        for line in paragraphs(text.strip("\n"), self.width - 6):
            if not line.strip():
                if not blank:
                    shown.append("    │")
                blank = True
                continue
            shown.append("    │ " + line)
            blank = False
        self.lines(shown)

    def outcome(self, row: Message, sub: Submission | None) -> None:
        imap = self.office.imap
        if row.status == "accepted" and sub is not None:
            said = (f"通过校验，已受理，计入{period_zh(sub.period)}，"
                    + ("报告本月无使用信用记录和信用报告的情况" if sub.nil_report else f"共{sub.row_count}条记录"))
            if sub.version > 1:
                said += f"；这是本月第{sub.version}次报送，替代此前的版本"
            if sub.late:
                said += "；晚于截止日，记为逾期报送"
            warnings = [p for p in sub.problems if p.get("severity") == "warning"]
            if warnings:
                said += f"；回执中提示{len(warnings)}处需要核实"
            said += f"。邮件移入“{imap.processed_folder}”文件夹，回复回执："
        elif row.status == "rejected" and sub is not None:
            errors = [p for p in sub.problems if p.get("severity") == "error"]
            said = (f"未通过校验（{len(errors)}个错误），本次不予受理；回执逐条说明每个问题在哪个单元格、怎样改，"
                    f"并附问题标注表。邮件移入“{imap.processed_folder}”文件夹，回复回执：")
        elif row.status == "quarantined":
            why = QUARANTINE_ZH.get(row.reason, row.reason)
            said = (f"{why}，不自动处理，也不回复；邮件移入“{imap.quarantine_folder}”文件夹，"
                    "等县信用办人工查看（周报和月报也会列出）。如确是某单位的邮箱，把它登记到该单位的 emails 后用 "
                    "mailbot replay 重新处理即可。")
        else:
            said = f"{row.kind}：不需要回复（{row.reason or row.status}）。"
        self.lines(hanging("  mailbot：", said, self.width), "green" if row.status == "accepted" else
                   "red" if row.status == "rejected" else "magenta")


def _introduce(teller: _Teller, office: OfficeConfig, period: str) -> None:
    sched = office.schedule
    year, month = map(int, period.split("-"))
    console = teller.console
    console.rule(f"{office.office.name}：{year}年{month}月情况清单报送演示", style="bold")
    teller.say(f"这是在本机演示的一个月（{year}年{month}月）。县信用办的邮箱 {office.office.address} 由本机内置的 "
               "IMAP 服务器模拟，mailbot 发出的邮件由本机的 SMTP 服务器接收，不会发到外面。下面按时间顺序讲述这个月："
               "各单位发来什么，mailbot 怎样处理，发出了哪些邮件（每封邮件都完整列出）。")
    console.print()
    teller.say(f"应报送的单位有{len(office.departments)}个，每个单位登记了发送清单用的邮箱：")
    for dept in office.departments:
        teller.lines(hanging(f"  · {dept.name}：", "、".join(dept.emails), teller.width))
    console.print()
    days = "、".join(f"{d}日" for d in sched.reminder_days)
    teller.say(f"规则：每月{sched.deadline_day}日（含当日）前报送；{days}向尚未报送的单位发提醒（遇节假日提前）；"
               f"{sched.notice_day}日向仍未报送的单位发未按时报送通知，并把通报草稿和月报发给县信用办；"
               f"每周一给县信用办发周报。这些定时邮件在当天 {sched.send_time} 之后发出；演示只在提醒日和通知日的 09:30 "
               "运行定时任务，所以周一的周报会在随后的那一次补发。")


def _summary(teller: _Teller, office: OfficeConfig, period: str, rows: list[dict], story: Story,
             quarantined: int) -> None:
    console = teller.console
    console.print()
    console.rule("本月小结", style="bold")
    by_state: dict[str, list[str]] = {}
    for r in rows:
        by_state.setdefault(r["state"], []).append(r["name"])
    parts = [f"{STATE_ZH[s]}{len(names)}个（{'、'.join(names)}）" for s, names in by_state.items()]
    teller.say(f"{period_zh(period)}应报送单位{len(rows)}个：" + "；".join(parts) + "。")
    if quarantined:
        teller.say(f"另有{quarantined}封邮件来自未登记的邮箱，留在“{office.imap.quarantine_folder}”文件夹等人工处理，没有回复。")
    kinds: dict[str, int] = {}
    for _rcpts, raw in story.sent:
        kinds[kind_zh(raw)] = kinds.get(kind_zh(raw), 0) + 1
    teller.say(f"mailbot 共发出邮件{len(story.sent)}封：" + "、".join(f"{k}{n}封" for k, n in kinds.items())
               + "。各单位的数据只发给该单位登记的邮箱；周报、月报和通报草稿只发给县信用办。")
    console.print()


# --- playing it ---------------------------------------------------------------------------------------

def play(config: Config, sent: list, console: Console, period: str | None = None) -> Story:
    """Play the month against the servers `config` names; `sent` is where the SMTP capture puts
    what mailbot sends. Tells the story on `console` and returns what it produced."""
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
    clock = StoryClock()
    story = Story(period, office, engine=engine)
    teller = _Teller(console, office)

    events: list[tuple[dt.datetime, Letter | None]] = [(letter.when, letter) for letter in month_of_mail(period)]
    for day in sorted(set(office.schedule.reminder_days) | {office.schedule.notice_day}):
        events.append((dt.datetime(year, month, day, 9, 30, tzinfo=tz), None))
    events.sort(key=lambda e: e[0])
    _introduce(teller, office, period)
    deciders = Deciders(office, config.archive.dir)
    try:
        with Mailbox(office.imap).open() as box:
            for n, (when, letter) in enumerate(events):
                clock.set(when)
                start, last = len(sent), _last_message(engine)
                if letter is not None:
                    _arrives(teller, office, letter, when)
                    raw = mail(letter.sender, letter.subject, when, letter.attachment, n)
                    _deliver_to_office(office, raw, when)
                    story.received.append((when, letter.sender, raw))
                    clock.set(when + dt.timedelta(minutes=1))  # mailbot's next poll
                    box.select()
                    runner.drain(box, engine, office, deciders, clock=clock)
                    for row, sub in _handled(engine, last):
                        teller.outcome(row, sub)
                else:
                    _ticks(teller, office, when)
                    schedule.tick(engine, office, clock())
                runner.deliver_all_due(engine, office, box, clock=clock)
                for rcpts, raw in sent[start:]:
                    teller.mail_sent(rcpts, raw)
                    story.sent.append((rcpts, raw))
    finally:
        deciders.close()
    rows = status(engine, office, period)
    _summary(teller, office, period, rows, story, _quarantined(engine, office))
    print_table(office, rows, period, console, since=start_line(engine, office))
    return story


def _arrives(teller: _Teller, office: OfficeConfig, letter: Letter, when: dt.datetime) -> None:
    dept = office.department_for(letter.sender)
    who = f"{dept.name}（{letter.sender}）" if dept else f"{letter.sender}（未登记的邮箱）"
    teller.heading(when, f"收到邮件：{who}")
    teller.lines(hanging("    主题：", letter.subject, teller.width))
    if letter.attachment:
        teller.lines(hanging("    附件：", letter.attachment[0], teller.width))
    teller.lines(hanging("    说明：", letter.note, teller.width), "dim")


def _ticks(teller: _Teller, office: OfficeConfig, when: dt.datetime) -> None:
    sched, day = office.schedule, when.astimezone(office.office.tz).day
    if day == sched.notice_day:
        what = (f"定时任务：今天是通知日，{sched.deadline_day}日的截止时间已过。mailbot 向仍未报送的单位发未按时报送通知，"
                "把通报草稿和本月月报发给县信用办。")
    else:
        what = f"定时任务：今天是提醒日，mailbot 向尚未报送（或报送未通过）的单位发提醒，附空白模板。"
    teller.heading(when, what)


def _deliver_to_office(office: OfficeConfig, raw: bytes, when: dt.datetime) -> None:
    """The mail reaches the office mailbox as the department's server would put it there."""
    imap = office.imap
    cls = MailBoxUnencrypted if imap.security == "none" else MailBox
    with cls(imap.host, imap.port).login(imap.user, imap.password(), initial_folder=None) as box:
        box.append(raw, imap.folder, dt=when)


def _last_message(engine) -> int:
    with store.reading(engine) as session:
        return session.exec(select(func.max(Message.id))).scalar() or 0


def _handled(engine, after: int) -> list[tuple[Message, Submission | None]]:
    with store.reading(engine) as session:
        rows = session.exec(select(Message).where(Message.id > after).order_by(Message.id)).scalars().all()
        subs = {s.message_pk: s for s in session.exec(
            select(Submission).where(Submission.message_pk.in_([r.id for r in rows]))).scalars().all()}
    return [(r, subs.get(r.id)) for r in rows]


def _quarantined(engine, office: OfficeConfig) -> int:
    with store.reading(engine) as session:
        return session.exec(select(func.count(Message.id)).where(
            Message.office == office.id, Message.status == "quarantined")).one()[0]


def kind_zh(raw: bytes) -> str:
    """What a mail mailbot sent is, in Chinese (its X-Mailbot header)."""
    kind = str(email.message_from_bytes(raw, policy=email.policy.default).get("X-Mailbot", ""))
    return "通报草稿" if kind == "tongbao" else MAIL_KIND_ZH.get(kind, "邮件")


def sent_at(raw: bytes) -> dt.datetime:
    """When a mail says it was written (its Date header: the story's clock)."""
    return parsedate_to_datetime(email.message_from_bytes(raw, policy=email.policy.default)["Date"])

