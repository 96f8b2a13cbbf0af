"""The office's digests: each month a workbook, a one-minute mail and the 通报 draft; each week a short mail.

Reading the database (one query per table shown) is kept apart from the pure tables
(standings, statistics, bars), and both apart from writing the workbook (report.py). The
scheduler calls `queue_monthly` and `queue_weekly`; both are idempotent by outbox key, and
both take their keys and windows from the one calendar in obligations. Digests go only to
`recipients.digest`, never to a department.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from . import export, letters, report, store, tongbao, watch
from .config import OfficeConfig
from .export import KINDS, Record, safe_text
from .models import Message, Outgoing, Submission, utcnow
from .obligations import (FILED, LATE, MISSING, REJECTED, STATE_ZH, Standing, days_late, deadline, deadline_day,
                          is_open, last_closed_period, month_window, monthly_key, parse_period, period_of,
                          standing, week_window, weekly_key)
from .report import GROUPS, NIL, NOT_OWED

log = logging.getLogger("mailbot.digest")

STATES = (FILED, LATE, REJECTED, MISSING)
QUARANTINE_ZH = {"unknown_sender": "发件人邮箱未登记", "auth_failed": "发件人身份验证未通过（疑似冒用）",
                 "error": "系统处理出错",
                 "suspicious_sender": "发件人名称显示为已登记邮箱，但实际发件邮箱不同（疑似冒用）",
                 "bad_sender": "发件人地址缺失、有多个或格式错误，无法确认发件单位"}
MAIL_KIND_ZH = {"receipt": "回执", "reminder": "催报提醒", "notice": "未按时报送通知", "tongbao": "通报",
                "digest": "月报", "weekly": "周报", "alert": "告警"}


def _local(moment: dt.datetime | None, tz) -> dt.datetime | None:
    """Office time without tzinfo and seconds: what a spreadsheet cell and a reader want."""
    return moment.astimezone(tz).replace(tzinfo=None, second=0, microsecond=0) if moment else None


# --- pure tables ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filing:
    """One department's line in 报送情况."""

    department_id: str
    name: str
    standing: Standing
    submitted_at: dt.datetime | None  # office time: the first valid version, else the last attempt
    days_late: int  # late: days after the deadline day it arrived; unfiled: days overdue so far

    state = property(lambda self: self.standing.state)
    rows = property(lambda self: self.standing.rows)
    submissions = property(lambda self: self.standing.submissions)
    nil_report = property(lambda self: self.standing.nil_report)
    state_zh = property(lambda self: STATE_ZH[self.standing.state])


def filings(office: OfficeConfig, period: str, subs: dict[str, list], today: dt.date) -> list[Filing]:
    """Each department owing `period` or having filed for it, in config order. `subs` maps
    department ids to their submissions (id, accepted, received_at, row_count, nil_report), oldest first."""
    sched, tz = office.schedule, office.office.tz
    last_day = deadline_day(period, sched)
    out = []
    for dept in office.departments:
        mine = subs.get(dept.id, [])
        if not dept.owes(period) and not mine:
            continue
        st = standing(mine, period, sched, tz)
        when = st.filed_at or (mine[-1].received_at if mine else None)
        if st.state == LATE:
            late = days_late(period, st.filed_at, sched, tz)
        elif st.state in (MISSING, REJECTED):
            late = max(0, (today - last_day).days)
        else:
            late = 0
        out.append(Filing(dept.id, dept.name, st, _local(when, tz), late))
    return out


@dataclass(frozen=True)
class YearLine:
    """One department's year so far: a mark per period (a state, NIL or NOT_OWED)."""

    name: str
    marks: dict[str, str | None]


def year_lines(office: OfficeConfig, periods: list[str], subs: dict[tuple[str, str], list],
               watched: set[str]) -> list[YearLine]:
    """Each department's mark for each of `periods`; `subs` maps (department, period) to its
    submissions, `watched` holds the periods mailbot saw before their deadline (the others are
    NOT_OWED: a month before it started is no department's fault)."""
    sched, tz = office.schedule, office.office.tz
    lines = []
    for dept in office.departments:
        marks = {}
        for p in periods:
            mine = subs.get((dept.id, p), [])
            if p not in watched or (not dept.owes(p) and not mine):
                marks[p] = NOT_OWED
                continue
            st = standing(mine, p, sched, tz)
            marks[p] = NIL if st.state == FILED and st.nil_report else st.state
        if any(m is not NOT_OWED for m in marks.values()):
            lines.append(YearLine(dept.name, marks))
    return lines


@dataclass
class Stats:
    total: int = 0
    overall: Counter = field(default_factory=Counter)  # (group, item) -> rows
    rows: Counter = field(default_factory=Counter)  # department -> rows
    by_department: dict[str, Counter] = field(default_factory=dict)


def tally(records: list[Record]) -> Stats:
    """Rows per measure kind, canonical measure, query channel and field; a row with two
    measures of one kind counts once for that kind."""
    stats = Stats()
    for r in records:
        keys = [("措施类别", k) for k in r.kinds] + [("规范措施", m) for m in r.measures] + \
               [("查询渠道", c) for c in r.channels] + [("领域", r.field)]
        stats.total += 1
        stats.rows[r.department_id] += 1
        stats.overall.update(keys)
        stats.by_department.setdefault(r.department_id, Counter()).update(keys)
    return stats


def bars(items: list[tuple[str, int]]) -> list[dict]:
    """Label, count and width in percent of the largest, for an HTML bar chart."""
    top = max((n for _l, n in items), default=0) or 1
    return [{"label": label, "count": n, "width": round(100 * n / top)} for label, n in items]


# --- reading the database -------------------------------------------------------------------------

def _submissions(session, office: OfficeConfig, period: str, until: dt.datetime) -> dict[str, list]:
    """{department: its submissions for `period` received by `until`, oldest first}."""
    rows = session.execute(select(Submission.id, Submission.department_id, Submission.accepted,
                                  Submission.received_at, Submission.row_count, Submission.nil_report).where(
        Submission.office == office.id, Submission.period == period, Submission.received_at <= until)
        .order_by(Submission.id)).all()
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r.department_id, []).append(r)
    return out


def _year(session, office: OfficeConfig, period: str, until: dt.datetime) -> tuple[list[str], dict, set[str]]:
    """(January to `period`, {(department, period): submissions by `until`}, the periods mailbot
    was recording before their deadline: since the start line, or the first mail it holds if
    that is older, as after `mailbot import`): one query for the year, one for the first mail."""
    year, month = parse_period(period)
    periods = [f"{year:04d}-{m:02d}" for m in range(1, month + 1)]
    rows = session.execute(select(Submission.id, Submission.department_id, Submission.period, Submission.accepted,
                                  Submission.received_at, Submission.row_count, Submission.nil_report).where(
        Submission.office == office.id, Submission.period.in_(periods), Submission.received_at <= until)
        .order_by(Submission.id)).all()
    subs: dict[tuple[str, str], list] = {}
    for r in rows:
        subs.setdefault((r.department_id, r.period), []).append(r)
    first = session.execute(select(func.min(Message.received_at)).where(Message.office == office.id)).scalar()
    if first is not None and first.tzinfo is None:
        first = first.replace(tzinfo=dt.timezone.utc)  # SQLite hands back naive UTC
    first = min((t for t in (first, watch.watching_since(session, office)) if t is not None), default=None)
    sched, tz = office.schedule, office.office.tz
    watched = {p for p in periods if first is not None and first < deadline(p, sched, tz)}
    return periods, subs, watched


def _quarantined(session, office: OfficeConfig, start: dt.datetime, end: dt.datetime) -> list[dict]:
    rows = session.execute(select(Message.received_at, Message.sender, Message.subject, Message.kind,
                                  Message.reason).where(
        Message.office == office.id, Message.status == "quarantined",
        Message.received_at >= start, Message.received_at < end).order_by(Message.received_at)).all()
    tz = office.office.tz
    return [{"at": _local(r.received_at, tz), "sender": safe_text(r.sender) or "（无发件人地址）", "subject": safe_text(r.subject),
             "why": QUARANTINE_ZH.get(r.kind, r.reason or r.kind), "kind": r.kind} for r in rows]


SEND_ZH = {"failed": "发送失败", "bounced": "被退回", "uncertain": "发送结果不明"}


def _failed(session, office: OfficeConfig, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """Mail that did not (or may not have) reached its recipients. An `uncertain` one is never
    sent again by itself: the reader is told how to resend it once the recipient says it is missing."""
    rows = session.execute(select(Outgoing.id, Outgoing.created_at, Outgoing.kind, Outgoing.department_id,
                                  Outgoing.recipients, Outgoing.subject, Outgoing.status, Outgoing.last_error).where(
        Outgoing.office == office.id, Outgoing.status.in_(tuple(SEND_ZH)),
        Outgoing.created_at >= start, Outgoing.created_at < end).order_by(Outgoing.created_at)).all()
    names = {d.id: d.name for d in office.departments}
    return [{"at": _local(r.created_at, office.office.tz), "kind": MAIL_KIND_ZH.get(r.kind, r.kind),
             "to": "、".join(r.recipients), "department": names.get(r.department_id, ""),
             "subject": safe_text(r.subject), "status": SEND_ZH[r.status], "uncertain": r.status == "uncertain",
             "error": f"编号 {r.id}：服务器可能已收到，也可能没有" if r.status == "uncertain"
             else safe_text(r.last_error)[:200]} for r in rows]


@dataclass
class Month:
    period: str
    as_of: dt.datetime  # office time
    filings: list[Filing]
    records: list[Record]
    stats: Stats
    quarantined: list[dict]
    failed: list[dict]
    office_name: str = ""
    open: bool = False  # the deadline had not passed at `as_of`: an interim picture
    periods: list[str] = field(default_factory=list)  # the year so far, January to `period`
    year: list[YearLine] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for f in self.filings if f.state == state)

    @property
    def nil_reports(self) -> int:
        """零报告 among the departments that filed (on time or late)."""
        return sum(1 for f in self.filings if f.state in (FILED, LATE) and f.nil_report)

    @property
    def on_time_nil(self) -> int:
        return sum(1 for f in self.filings if f.state == FILED and f.nil_report)

    def named(self) -> list[Filing]:
        """Departments a 通报 names: missing, rejected or late."""
        return [f for f in self.filings if f.state != FILED]


def load_month(engine: Engine, office: OfficeConfig, period: str, now: dt.datetime) -> Month:
    sched, tz = office.schedule, office.office.tz
    start, end = month_window(period, sched, tz)
    with store.reading(engine) as session:
        subs = _submissions(session, office, period, now)
        quarantined = _quarantined(session, office, start, min(end, now))
        failed = _failed(session, office, start, min(end, now))
        periods, year_subs, watched = _year(session, office, period, now)
    records = export.in_force_rows(engine, office, period, until=now)
    local_now = now.astimezone(tz)
    return Month(period, local_now, filings(office, period, subs, local_now.date()), records, tally(records),
                 quarantined, failed, office.office.name, is_open(period, now, sched, tz), periods,
                 year_lines(office, periods, year_subs, watched))


# --- the files ------------------------------------------------------------------------------------

def workbook_name(period: str) -> str:
    return f"{tongbao.period_zh(period)}情况清单汇总.xlsx"


def tongbao_draft(office: OfficeConfig, month: Month, force: bool = False) -> tuple[str, bytes] | None:
    """The 通报 draft when there are departments to name, else None; never for a period still
    open (it would name every department that may yet file on time) unless `force`."""
    if not month.named() or (month.open and not force):
        return None
    data = tongbao.compose(office, month.period, {f.department_id: f.standing for f in month.filings}, month.as_of)
    return f"{tongbao.title(month.period)}（草稿）.docx", tongbao.build(data)


# --- the monthly mail -----------------------------------------------------------------------------

@dataclass
class Monthly:
    month: Month
    files: list[tuple[str, bytes, str]]  # (name, data, mimetype): the workbook, then the 通报 draft if any


def build_monthly(engine: Engine, office: OfficeConfig, period: str, now: dt.datetime,
                  force: bool = False) -> Monthly:
    month = load_month(engine, office, period, now)
    files = [(workbook_name(period), report.workbook(month), letters.XLSX)]
    draft = tongbao_draft(office, month, force)
    if draft:
        files.append((*draft, letters.DOCX))
    return Monthly(month, files)


def monthly_context(office: OfficeConfig, month: Month, interim: bool, draft: bool) -> dict:
    states = [{"state": s, "label": STATE_ZH[s], "count": month.count(s),
               "names": [f.name for f in month.filings if f.state == s]} for s in STATES]
    for row, bar in zip(states, bars([(s["label"], s["count"]) for s in states])):
        row["width"] = bar["width"]
    kinds = bars([(k, month.stats.overall[("措施类别", k)]) for k in KINDS])
    measures = [(m, month.stats.overall[("规范措施", m)]) for m in GROUPS[1][1]]
    return {
        "period": month.period, "as_of": month.as_of, "interim": interim, "owed": len(month.filings),
        "nil": month.nil_reports, "draft": draft,
        "deadline": deadline_day(month.period, office.schedule), "states": states,
        "attention": month.named(), "total_rows": month.stats.total, "kinds": kinds,
        "measures": bars([(m, n) for m, n in measures if n]),
        "quarantined": month.quarantined, "failed": month.failed,
    }


def _queued(engine: Engine, office: OfficeConfig, key: str) -> bool:
    with store.reading(engine) as session:
        return session.execute(select(Outgoing.id).where(Outgoing.office == office.id, Outgoing.key == key)).first() \
            is not None


def _enqueue(engine: Engine, office: OfficeConfig, *, kind: str, key: str, period: str, context: dict,
             now: dt.datetime, attachments=()) -> bool:
    mail = letters.build(office, kind=kind, key=key, template=kind, to=list(office.recipients.digest),
                         context=context, period=period, attachments=list(attachments), now=now)
    with store.writing(engine) as session:
        return store.enqueue(session, mail)


def queue_monthly(engine: Engine, office: OfficeConfig, period: str, now: dt.datetime,
                  built: Monthly | None = None) -> bool:
    """Queue the monthly digest for `period` as of `now` (aware); True when queued now, False when
    it already was or no `recipients.digest` is configured."""
    key, interim = monthly_key(period, now, office.schedule, office.office.tz)
    if not office.recipients.digest:
        log.warning("monthly digest for %s not queued: no recipients.digest configured", period)
        return False
    if _queued(engine, office, key):
        return False
    built = built or build_monthly(engine, office, period, now)
    return _enqueue(engine, office, kind="digest", key=key, period=period,
                    context=monthly_context(office, built.month, interim, draft=len(built.files) > 1),
                    now=now, attachments=built.files)


# --- the weekly mail ------------------------------------------------------------------------------

def weekly_context(engine: Engine, office: OfficeConfig, now: dt.datetime) -> dict:
    start, end, anchor = week_window(now, office.schedule, office.office.tz)
    tz, period = office.office.tz, period_of(now, office.office.tz)
    names = {d.id: d.name for d in office.departments}
    with store.reading(engine) as session:
        arrived = session.execute(select(Submission.department_id, Submission.period, Submission.received_at,
                                         Submission.accepted, Submission.late, Submission.row_count).where(
            Submission.office == office.id, Submission.received_at >= start, Submission.received_at < end)
            .order_by(Submission.received_at)).all()
        subs = _submissions(session, office, period, now)
        quarantined = _quarantined(session, office, start, end)
    unfiled = [f for f in filings(office, period, subs, now.astimezone(tz).date()) if f.state in (MISSING, REJECTED)]
    return {
        "start": start.astimezone(tz), "end": (end - dt.timedelta(days=1)).astimezone(tz), "week": anchor.isocalendar(),
        "period": period, "deadline": deadline_day(period, office.schedule),
        "arrived": [{"name": names.get(a.department_id, a.department_id), "period": a.period,
                     "at": _local(a.received_at, tz), "accepted": a.accepted, "late": a.late, "rows": a.row_count}
                    for a in arrived],
        "accepted": sum(1 for a in arrived if a.accepted), "rejected": sum(1 for a in arrived if not a.accepted),
        "departments": len({a.department_id for a in arrived}),
        "unfiled": unfiled, "quarantined": quarantined,
        "quarantine_folder": office.imap.quarantine_folder, "reprocess_folder": office.imap.reprocess_folder,
    }


def queue_weekly(engine: Engine, office: OfficeConfig, now: dt.datetime) -> bool:
    """Queue this week's digest as of `now` (aware); True when queued now."""
    key = weekly_key(now, office.schedule, office.office.tz)
    if not office.recipients.digest:
        log.warning("weekly digest %s not queued: no recipients.digest configured", key)
        return False
    if _queued(engine, office, key):
        return False
    return _enqueue(engine, office, kind="weekly", key=key, period=period_of(now, office.office.tz),
                    context=weekly_context(engine, office, now), now=now)


# --- `mailbot digest` -----------------------------------------------------------------------------

def write_files(built: Monthly, out_dir: Path) -> list[Path]:
    """The digest workbook (and the 通报 draft, when there is one) written into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data, _mimetype in built.files:
        paths.append(out_dir / name)
        paths[-1].write_bytes(data)
    return paths


@dataclass
class Made:
    """What `mailbot digest` made: the period, the files written, what to say about a period
    still open (no 通报 draft), and with `send` the digest mail's key and whether it was queued
    now (False: already queued before)."""

    period: str
    paths: list[Path]
    still_open: str = ""
    key: str = ""
    queued: bool = False


def make(engine: Engine, office: OfficeConfig, period: str | None, out_dir: Path, *, send: bool = False,
         now: dt.datetime | None = None, force: bool = False) -> Made:
    """Write the workbook (and the 通报 draft) into `out_dir`; with `send`, queue the digest mail.
    Without `period`: the last period whose deadline has passed. A period still open gets its
    workbook but no 通报 draft unless `force`."""
    now = now or utcnow()
    sched, tz = office.schedule, office.office.tz
    period = period or last_closed_period(now, sched, tz)
    still_open = ""
    if is_open(period, now, sched, tz) and not force:
        still_open = (f"{tongbao.period_zh(period)}的报送截止日（{_ymd(deadline_day(period, sched))}）尚未过去，"
                      "各单位仍可按时报送，本次只生成截至目前的汇总表，不生成通报草稿；"
                      "确需生成通报草稿的，请加 --force。")
    built = build_monthly(engine, office, period, now, force)
    made = Made(period, write_files(built, out_dir), still_open)
    if send:
        made.key, _interim = monthly_key(period, now, sched, tz)
        made.queued = queue_monthly(engine, office, period, now, built)
    return made


def _ymd(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"
