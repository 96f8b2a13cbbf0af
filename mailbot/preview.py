"""`mailbot poll --dry-run`: what a poll would do with each message now, changing nothing.

The check before going live on the office's own mailbox: it logs in as the daemon would
(ID, then EXAMINE: read-only), reads only BODY.PEEK, decides in this process without
archiving, and opens the database read-only (a database that does not exist is not created:
the first poll's start line is computed, not recorded). No flag, no move, no mail, no row.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import select

from . import archive, claim, decision as decision_mod, intake, message, store, watch
from .config import Config, OfficeConfig
from .digest import QUARANTINE_ZH
from .mailbox import Mailbox
from .models import Outgoing, StartLine, utcnow

LEFT_ZH = {
    "own": "本系统发给本办的邮件，如汇总、通报、告警，留给经办人阅读",
    "auto_reply": "自动回复，与本系统的邮件无关",
    "list": "邮件列表或订阅邮件",
    "bounce_not_ours": "退信，与本系统的邮件无关",
    "reply_without_attachment": "对本系统邮件的回复，没有附件，不回复，留给经办人阅读",
    "other_matter": "涉及其他事项：行政许可、行政处罚、奖惩或信用修复",
    "not_submission": "不是情况清单报送邮件",
}
IGNORED_ZH = {"auto_reply": "对本系统邮件的自动回复", "list": "与情况清单有关的邮件列表邮件",
              "bounce": "本系统邮件的退信，记为投递失败", "own": "本系统自己的邮件"}
SOURCE_ZH = {"period": "首次收件时所在月份的第一天", "config": "配置 imap.since", "test": "测试"}
TAKE, LEAVE, QUARANTINE, IGNORE, DUPLICATE, MOVE = "take", "leave", "quarantine", "ignore", "duplicate", "move"


@dataclass
class Plan:
    """One message and what a poll would do with it."""

    folder: str
    uid: int
    arrived: dt.datetime
    sender: str
    subject: str
    action: str  # take, leave, quarantine, ignore, duplicate, move
    what: str  # in Chinese, for the admin
    receipt: str = ""  # the receipt's kind in Chinese (已受理, 未通过, 已收到相同内容), "" for none
    department: str = ""
    accepted: bool = False


@dataclass
class Preview:
    line: watch.Line
    recorded: bool  # the start line is already in the database (else the first poll would fix it now)
    database: bool  # the database exists
    inbox: int  # messages in the watched folder
    past: int  # of them after the start line and not yet read: each one is planned
    plans: list[Plan] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for p in self.plans if p.action == action)

    @property
    def receipts(self) -> int:
        return sum(1 for p in self.plans if p.receipt)


class _Answers:
    """What intake.commit would answer, from the database as it is plus this run's own plans."""

    def __init__(self, session, office: OfficeConfig):
        self.session, self.office = session, office
        self.rejected: dict[str, int] = {}  # sender -> error receipts planned in this run
        self.files: dict[tuple, str] = {}  # (department, period) -> the file this run would put in force
        self.keys: set[str] = set()
        self.seen: dict[tuple[str, str], dt.datetime] = {}  # (Message-ID, sha256) -> arrival

    def duplicate(self, d: decision_mod.Decision, sha: str, arrived: dt.datetime, again: bool) -> bool:
        if d.mail is None:
            return False
        key = (d.mail.message_id, sha)
        first = store.same_message(self.session, self.office.id, *key) if self.session else None
        earlier = self.seen.setdefault(key, arrived)
        if again:
            return False
        if first is not None:
            return not intake.moved_back(first, arrived)
        return earlier != arrived

    def receipt(self, d: decision_mod.Decision, arrived: dt.datetime) -> tuple[str, str]:
        """(the receipt a poll would send, why not)."""
        sender = d.mail.sender
        if d.status == "rejected":
            sent = (intake.replies_today(self.session, self.office, sender, utcnow()) if self.session else 0) + \
                self.rejected.get(sender, 0)
            if sent >= self.office.replies.daily_cap_per_sender:
                return "", "已达每日回复上限，不再回复"
            self.rejected[sender] = self.rejected.get(sender, 0) + 1
            return "未通过", ""
        slot = (d.department.id, d.period)
        in_force = self.files.get(slot)
        if in_force is None and self.session is not None:
            current = store.in_force(self.session, self.office.id, *slot)
            in_force = current.file_sha256 if current is not None else None
        self.files[slot] = d.file_sha256
        if not d.file_sha256 or in_force != d.file_sha256:
            return "已受理", ""
        day = arrived.astimezone(self.office.office.tz).date().isoformat()
        key = f"same:{d.department.id}:{d.period}:{d.file_sha256[:16]}:{day}"
        queued = key in self.keys or (self.session is not None and self.session.exec(
            select(Outgoing.id).where(Outgoing.office == self.office.id, Outgoing.key == key)).first())
        self.keys.add(key)
        return ("", "与已受理的文件完全相同，今日已回复过") if queued else ("已收到相同内容", "")


def _plan(office: OfficeConfig, answers: _Answers, item, d: decision_mod.Decision) -> Plan:
    mail = d.mail
    plan = Plan(item.folder, item.uid, item.arrived, mail.sender if mail else "", mail.subject if mail else "",
                TAKE, "", department=d.department.name if d.department else "")
    imap = office.imap
    if d.status == "left":
        plan.action, plan.what = LEAVE, f"保留在收件箱，不改动（{LEFT_ZH.get(d.reason, d.reason)}）"
    elif answers.duplicate(d, archive.digest(item.raw) if not item.truncated else "", item.arrived, item.again):
        plan.action, plan.what = DUPLICATE, f"与已处理的邮件重复，移入“{imap.processed_folder}”，不回复"
    elif d.status == "ignored":
        plan.action, plan.what = IGNORE, f"移入“{imap.processed_folder}”，不回复（{IGNORED_ZH.get(d.kind, d.kind)}）"
    elif d.status == "quarantined":
        plan.action = QUARANTINE
        plan.what = f"移入“{imap.quarantine_folder}”，不回复（{QUARANTINE_ZH.get(d.kind, d.reason or d.kind)}）"
    else:
        plan.receipt, why_not = answers.receipt(d, item.arrived)
        plan.accepted = d.status == "accepted"
        problem = (d.problems[0].message if d.problems else d.reason).rstrip("。")
        verdict = "通过校验" if d.status == "accepted" else f"未通过校验：{problem}。"
        sent = f"发送回执【{plan.receipt}】给 {mail.sender}" if plan.receipt else f"不发回执（{why_not}）"
        plan.what = f"接收（{plan.department}），{verdict}{'' if verdict.endswith('。') else '；'}{sent}；" \
                    f"移入“{imap.processed_folder}”"
    return plan


def _left(item, verdict: claim.Verdict) -> Plan:
    mail = message.parse(item.header)
    return Plan("", item.uid, item.arrived, mail.sender, mail.subject, LEAVE,
                f"保留在收件箱，不改动（{LEFT_ZH.get(verdict.reason, verdict.reason)}）")


def _considered(box: Mailbox, office: OfficeConfig, answers: _Answers, uids: list[int], floor: dt.datetime | None,
                known: set[int]) -> tuple[list[Plan], int]:
    """Plans for `uids` (the reprocess folder: `floor` None); and how many were past the floor."""
    plans, past = [], 0
    again = floor is None
    size = office.imap.batch_size
    for start in range(0, len(uids), size):
        batch = [u for u in uids[start:start + size] if u not in known]
        for g in box.glance(batch):
            if floor is not None and g.arrived < floor:
                continue  # history
            past += 1
            verdict = None if again else claim.from_header(office, g.header, g.parts)
            if verdict is not None and verdict.ours is False:
                plan = _left(g, verdict)
                plan.folder = box.selected
                plans.append(plan)
                continue
            if g.size > office.limits.max_message_bytes:
                items = [_item(box, g.uid, g.header, g.arrived, True, again)]
            else:
                items = list(box.fetch([g.uid], again=again, size=g.size))
            for item in items:
                d = decision_mod.decide(office, item.raw, item.arrived, item.truncated,
                                        claim="all" if again else None)
                plans.append(_plan(office, answers, item, d))
    return plans, past


def _item(box: Mailbox, uid: int, raw: bytes, arrived: dt.datetime, truncated: bool, again: bool):
    from .mailbox import Fetched

    return Fetched(box.selected, box.uidvalidity, uid, raw, arrived, truncated=truncated, again=again)


def preview(config: Config, office: OfficeConfig, now: dt.datetime | None = None) -> Preview:
    now = now or utcnow()
    engine = store.open_readonly(config.database.url)
    with contextlib.ExitStack() as stack:
        if engine is not None:
            stack.callback(engine.dispose)
        session = None
        if engine is not None and store.has_table(engine, StartLine.__tablename__):  # else: from before the start line
            session = stack.enter_context(store.reading(engine))
        stored = watch.current(session, office) if session is not None else None
        box = stack.enter_context(Mailbox(office.imap).open(readonly=True))
        line = watch.planned(office, box.uidvalidity, now, stored)
        inbox = box.exists
        uids = watch.unread(box, line)
        answers = _Answers(session, office)
        plans = []
        recorded = set(store.messages_at(session, office.id, box.selected, box.uidvalidity, uids)) if session else set()
        for m in store.unmoved(session, office.id, box.selected, box.uidvalidity) if session else []:
            plans.append(Plan(box.selected, m.uid, m.received_at, m.sender, m.subject, MOVE,
                              f"已处理完毕（{m.status}），尚未移走：移入“{m.destination}”"))
        found, past = _considered(box, office, answers, uids, line.floor, recorded)
        plans += found
        folder = office.imap.reprocess_folder
        if box.box.folder.exists(folder) and box.count(folder):
            box.select(folder)
            pending = box.pending()
            known = set(store.messages_at(session, office.id, folder, box.uidvalidity, pending)) if session else set()
            plans += _considered(box, office, answers, pending, None, known)[0]
        return Preview(line, stored is not None, engine is not None, inbox, past, plans)


def when(moment: dt.datetime, office: OfficeConfig) -> str:
    local = moment.astimezone(office.office.tz)
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"


def start_line_zh(office: OfficeConfig, line: watch.Line, recorded: bool) -> str:
    source = SOURCE_ZH.get(line.source, line.source)
    fixed = "已记录于数据库" if recorded else "将在首次收件时记录"
    return f"{when(line.since, office)}（{source}；{fixed}）"


def print_preview(office: OfficeConfig, result: Preview, out=print) -> None:
    imap = office.imap
    out(f"试运行（不改动邮箱、不写数据库、不发送邮件）：{office.office.name}  {imap.user}")
    out(f"收件箱 {imap.folder} 共 {result.inbox} 封。起始线：{start_line_zh(office, result.line, result.recorded)}。")
    if not result.database:
        out("数据库尚不存在：将在首次收件时创建。")
    out(f"起始线之后、尚未读取的邮件 {result.past} 封：")
    for p in sorted(result.plans, key=lambda p: (p.folder != imap.folder, p.uid)):
        where = "" if p.folder == imap.folder else f"[{p.folder}] "
        out(f"  {where}UID {p.uid}  {p.arrived.astimezone(office.office.tz):%m-%d %H:%M}  {p.sender or '（无发件人）'}"
            f"  “{message_text(p.subject)}”：{p.what}")
    taken = result.count(TAKE)
    accepted = sum(1 for p in result.plans if p.accepted)
    out(f"合计：接收 {taken} 封（通过 {accepted} 封，未通过 {taken - accepted} 封），"
        f"移入“{imap.quarantine_folder}” {result.count(QUARANTINE)} 封，不回复移入“{imap.processed_folder}” "
        f"{result.count(IGNORE) + result.count(DUPLICATE) + result.count(MOVE)} 封，"
        f"保留在收件箱 {result.count(LEAVE)} 封；将发送回执 {result.receipts} 封。")
    untouched = max(result.inbox - result.past, 0)
    out(f"收件箱其余 {untouched} 封（起始线之前的历史邮件，或已读取过、保留在收件箱的邮件）不读取、不移动、不标记已读、不回复。")


def message_text(subject: str, limit: int = 40) -> str:
    subject = " ".join(subject.split())
    return subject if len(subject) <= limit else subject[:limit - 1] + "…"


def command(config: Config, offices: list[OfficeConfig], out=print) -> int:
    for office in offices:
        print_preview(office, preview(config, office), out)
    return 0
