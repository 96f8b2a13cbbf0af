"""The office's digests: each month a workbook, a one-minute mail and the 通报 draft; each week a short mail.

Reading the database (one query per table shown) is kept apart from the pure tables
(standings, statistics, bars) and both apart from writing the workbook. The scheduler calls
`queue_monthly` and `queue_weekly`; both are idempotent by outbox key. Digests go only to
`recipients.digest`, never to a department.
"""
from __future__ import annotations

import datetime as dt
import io
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import openpyxl
from openpyxl.chart import BarChart, Reference
from sqlalchemy import select
from sqlalchemy.engine import Engine

from . import export, letters, store, tongbao, vocabulary
from .config import OfficeConfig
from .export import KINDS, UNKNOWN_FIELD, Record, safe_text
from .models import Message, Outgoing, Submission, utcnow
from .obligations import FILED, LATE, MISSING, REJECTED, STATE_ZH, Standing, days_late, deadline_day, \
    parse_period, period_of, shift_period, standing

log = logging.getLogger("mailbot.digest")

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
STATES = (FILED, LATE, REJECTED, MISSING)
GROUPS = (
    ("措施类别", KINDS),
    ("规范措施", (*vocabulary.INCENTIVES, *vocabulary.PUNISHMENTS)),
    ("查询渠道", tuple(vocabulary.CHANNELS)),
    ("领域", (*vocabulary.FIELDS, UNKNOWN_FIELD)),
)
STAT_KEYS = tuple((group, item) for group, items in GROUPS for item in items)
QUARANTINE_ZH = {"unknown_sender": "发件人邮箱未登记", "auth_failed": "发件人身份验证未通过（疑似冒用）",
                 "error": "系统处理出错",
                 "suspicious_sender": "发件人名称显示为已登记邮箱，但实际发件邮箱不同（疑似冒用）",
                 "bad_sender": "发件人地址缺失、有多个或格式错误，无法确认发件单位"}
MAIL_KIND_ZH = {"receipt": "回执", "reminder": "催报提醒", "notice": "未按时报送通知", "tongbao": "通报",
                "digest": "月报", "weekly": "周报", "alert": "告警"}
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


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
    state_zh = property(lambda self: STATE_ZH[self.standing.state])


def filings(office: OfficeConfig, period: str, subs: dict[str, list], today: dt.date) -> list[Filing]:
    """Each department owing `period` or having filed for it, in config order. `subs` maps
    department ids to their submissions (id, accepted, received_at, row_count), oldest first."""
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


def month_window(office: OfficeConfig, period: str) -> tuple[dt.datetime, dt.datetime]:
    """From the previous period's notice day to this one's (office midnight): each quarantined
    mail or failed delivery appears in exactly one monthly digest."""
    def notice(p: str) -> dt.datetime:
        year, month = parse_period(p)
        day = dt.date(year, month, office.schedule.notice_day)
        return dt.datetime.combine(day, dt.time(), tzinfo=office.office.tz).astimezone(dt.timezone.utc)
    return notice(shift_period(period, -1)), notice(period)


def week_window(office: OfficeConfig, now: dt.datetime) -> tuple[dt.datetime, dt.datetime, dt.date]:
    """The seven days before the configured weekday (the latest one not after `now`), office time;
    a late run in the same week reports the same window."""
    tz = office.office.tz
    today = now.astimezone(tz).date()
    day = office.schedule.weekly_digest_day
    anchor = today - dt.timedelta(days=(today.weekday() - WEEKDAYS.index(day)) % 7) if day else today
    end = dt.datetime.combine(anchor, dt.time(), tzinfo=tz).astimezone(dt.timezone.utc)
    return end - dt.timedelta(days=7), end, anchor


# --- reading the database -------------------------------------------------------------------------

def _submissions(session, office: OfficeConfig, period: str, until: dt.datetime) -> dict[str, list]:
    """{department: its submissions for `period` received by `until`, oldest first}."""
    rows = session.execute(select(Submission.id, Submission.department_id, Submission.accepted,
                                  Submission.received_at, Submission.row_count).where(
        Submission.office == office.id, Submission.period == period, Submission.received_at <= until)
        .order_by(Submission.id)).all()
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r.department_id, []).append(r)
    return out


def _quarantined(session, office: OfficeConfig, start: dt.datetime, end: dt.datetime) -> list[dict]:
    rows = session.execute(select(Message.received_at, Message.sender, Message.subject, Message.kind,
                                  Message.reason).where(
        Message.office == office.id, Message.status == "quarantined",
        Message.received_at >= start, Message.received_at < end).order_by(Message.received_at)).all()
    tz = office.office.tz
    return [{"at": _local(r.received_at, tz), "sender": safe_text(r.sender) or "（无发件人地址）", "subject": safe_text(r.subject),
             "why": QUARANTINE_ZH.get(r.kind, r.reason or r.kind), "kind": r.kind} for r in rows]


def _failed(session, office: OfficeConfig, start: dt.datetime, end: dt.datetime) -> list[dict]:
    rows = session.execute(select(Outgoing.created_at, Outgoing.kind, Outgoing.department_id, Outgoing.recipients,
                                  Outgoing.subject, Outgoing.status, Outgoing.last_error).where(
        Outgoing.office == office.id, Outgoing.status.in_(("failed", "bounced")),
        Outgoing.created_at >= start, Outgoing.created_at < end).order_by(Outgoing.created_at)).all()
    names = {d.id: d.name for d in office.departments}
    return [{"at": _local(r.created_at, office.office.tz), "kind": MAIL_KIND_ZH.get(r.kind, r.kind),
             "to": "、".join(r.recipients), "department": names.get(r.department_id, ""),
             "subject": safe_text(r.subject), "status": "被退回" if r.status == "bounced" else "发送失败",
             "error": safe_text(r.last_error)[:200]} for r in rows]


@dataclass
class Month:
    period: str
    as_of: dt.datetime  # office time
    filings: list[Filing]
    records: list[Record]
    stats: Stats
    quarantined: list[dict]
    failed: list[dict]

    def count(self, state: str) -> int:
        return sum(1 for f in self.filings if f.state == state)

    def named(self) -> list[Filing]:
        """Departments a 通报 names: missing, rejected or late."""
        return [f for f in self.filings if f.state != FILED]


def load_month(engine: Engine, office: OfficeConfig, period: str, now: dt.datetime) -> Month:
    start, end = month_window(office, period)
    with store.reading(engine) as session:
        subs = _submissions(session, office, period, now)
        quarantined = _quarantined(session, office, start, min(end, now))
        failed = _failed(session, office, start, min(end, now))
    records = export.in_force_rows(engine, office, period, until=now)
    local_now = now.astimezone(office.office.tz)
    return Month(period, local_now, filings(office, period, subs, local_now.date()), records, tally(records),
                 quarantined, failed)


# --- the workbook ---------------------------------------------------------------------------------

FILING_COLUMNS = (("单位", 30), ("状态", 12), ("报送时间", 17), ("逾期天数", 9), ("记录数", 8), ("报送次数", 9))
STAT_COLUMNS = (("分类", 10), ("项目", 20), ("记录数", 9), ("占比", 9))


def _filing_sheet(wb, month: Month) -> None:
    ws = export.start_sheet(wb, "报送情况", FILING_COLUMNS)
    for f in month.filings:
        stamp = export.WriteOnlyCell(ws, value=f.submitted_at)
        stamp.number_format = export.DATETIME_FORMAT
        ws.append([export.xlsx_value(ws, f.name), f.state_zh, stamp, f.days_late, f.rows, f.submissions])
    export.finish_sheet(ws, len(FILING_COLUMNS), len(month.filings))


def _chart(ws, kind: str, title: str, first: int, last: int, height: float):
    chart = BarChart()
    chart.type, chart.title, chart.legend = kind, title, None
    chart.height, chart.width = height, 16
    chart.add_data(Reference(ws, min_col=3, min_row=first, max_row=last))
    chart.set_categories(Reference(ws, min_col=2, min_row=first, max_row=last))
    chart.x_axis.delete = chart.y_axis.delete = False  # Excel hides axes openpyxl leaves undecided
    if kind == "bar":
        chart.x_axis.scaling.orientation = "maxMin"  # keep the table's order top to bottom
    return chart


def _stats_sheet(wb, stats: Stats) -> None:
    """Overall counts, one line per item, with a chart of the measure kinds and one of the measures."""
    ws = export.start_sheet(wb, "统计", STAT_COLUMNS)
    for group, item in STAT_KEYS:
        share = export.WriteOnlyCell(ws, value=stats.overall[(group, item)] / stats.total if stats.total else 0)
        share.number_format = "0.0%"
        ws.append([group, item, stats.overall[(group, item)], share])
    export.finish_sheet(ws, len(STAT_COLUMNS), len(STAT_KEYS))
    kinds, measures = len(GROUPS[0][1]), len(GROUPS[1][1])
    ws.add_chart(_chart(ws, "col", "措施类别（条）", 2, 1 + kinds, 7.5), "F2")
    ws.add_chart(_chart(ws, "bar", "激励和惩戒措施（条）", 2 + kinds, 1 + kinds + measures, 11), "F18")


def _department_stats_sheet(wb, month: Month) -> None:
    """The same counts per department (rows), with the county total last."""
    ws = wb.create_sheet("分单位统计")
    ws.column_dimensions["A"].width = 30
    ws.freeze_panes = "B3"
    groups, seen = [], set()
    for group, _item in STAT_KEYS:
        groups.append("" if group in seen else group)
        seen.add(group)
    ws.append(export.header(ws, ["", ""] + groups))
    ws.append(export.header(ws, ["单位", "记录数"] + [item for _g, item in STAT_KEYS]))
    names = {f.department_id: f.name for f in month.filings}
    for r in month.records:
        names.setdefault(r.department_id, r.department)
    for dept, name in names.items():
        counts = month.stats.by_department.get(dept, Counter())
        ws.append([export.xlsx_value(ws, name), month.stats.rows[dept], *(counts[k] for k in STAT_KEYS)])
    export.finish_sheet(ws, 2 + len(STAT_KEYS), len(names), header_row=2)
    ws.append(export.header(ws, ["合计", month.stats.total, *(month.stats.overall[k] for k in STAT_KEYS)]))


def workbook(month: Month) -> bytes:
    wb = openpyxl.Workbook(write_only=True)
    ws = export.start_sheet(wb, "汇总", export.COLUMNS)
    export.finish_sheet(ws, len(export.COLUMNS), export.write_records(ws, month.records))
    _filing_sheet(wb, month)
    _stats_sheet(wb, month.stats)
    _department_stats_sheet(wb, month)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def workbook_name(period: str) -> str:
    return f"{tongbao.period_zh(period)}情况清单汇总.xlsx"


def tongbao_draft(office: OfficeConfig, month: Month) -> tuple[str, bytes] | None:
    """The 通报 draft (issue 6's builder) when there are departments to name, else None."""
    if not month.named():
        return None
    from .schedule import tongbao_data  # here: the scheduler may import this module

    data = tongbao_data(office, month.period, {f.department_id: f.standing for f in month.filings}, month.as_of)
    return f"{tongbao.title(month.period)}（草稿）.docx", tongbao.build(data)


# --- the monthly mail -----------------------------------------------------------------------------

@dataclass
class Monthly:
    month: Month
    files: list[tuple[str, bytes, str]]  # (name, data, mimetype): the workbook, then the 通报 draft if any


def build_monthly(engine: Engine, office: OfficeConfig, period: str, now: dt.datetime) -> Monthly:
    month = load_month(engine, office, period, now)
    files = [(workbook_name(period), workbook(month), XLSX)]
    draft = tongbao_draft(office, month)
    if draft:
        files.append((*draft, DOCX))
    return Monthly(month, files)


def monthly_context(office: OfficeConfig, month: Month, interim: bool) -> dict:
    states = [{"state": s, "label": STATE_ZH[s], "count": month.count(s),
               "names": [f.name for f in month.filings if f.state == s]} for s in STATES]
    for row, bar in zip(states, bars([(s["label"], s["count"]) for s in states])):
        row["width"] = bar["width"]
    kinds = bars([(k, month.stats.overall[("措施类别", k)]) for k in KINDS])
    measures = [(m, month.stats.overall[("规范措施", m)]) for m in GROUPS[1][1]]
    return {
        "period": month.period, "as_of": month.as_of, "interim": interim, "owed": len(month.filings),
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


def monthly_key(office: OfficeConfig, period: str, now: dt.datetime) -> tuple[str, bool]:
    """(key, interim): `digest:{period}` from the notice day on (the one the scheduler sends);
    before it an on-demand digest is an interim one, at most one a day, so it never takes that key."""
    today = now.astimezone(office.office.tz).date()
    year, month = parse_period(period)
    if today >= dt.date(year, month, office.schedule.notice_day):
        return f"digest:{period}", False
    return f"digest:{period}:{today.isoformat()}", True


def queue_monthly(engine: Engine, office: OfficeConfig, period: str, now: dt.datetime,
                  built: Monthly | None = None) -> bool:
    """Queue the monthly digest for `period` as of `now` (aware); True when queued now, False when
    it already was or no `recipients.digest` is configured."""
    key, interim = monthly_key(office, period, now)
    if not office.recipients.digest:
        log.warning("monthly digest for %s not queued: no recipients.digest configured", period)
        return False
    if _queued(engine, office, key):
        return False
    built = built or build_monthly(engine, office, period, now)
    return _enqueue(engine, office, kind="digest", key=key, period=period,
                    context=monthly_context(office, built.month, interim), now=now, attachments=built.files)


# --- the weekly mail ------------------------------------------------------------------------------

def weekly_context(engine: Engine, office: OfficeConfig, now: dt.datetime) -> dict:
    start, end, anchor = week_window(office, now)
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
    }


def weekly_key(office: OfficeConfig, now: dt.datetime) -> str:
    year, week, _day = week_window(office, now)[2].isocalendar()
    return f"weekly:{year}-W{week:02d}"


def queue_weekly(engine: Engine, office: OfficeConfig, now: dt.datetime) -> bool:
    """Queue this week's digest as of `now` (aware); True when queued now."""
    key = weekly_key(office, now)
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


def command(engine: Engine, office: OfficeConfig, period: str | None, out_dir: Path, send: bool,
            now: dt.datetime | None = None, out=print) -> int:
    """Write the workbook (and the 通报 draft) into `out_dir` and print their paths; with `send`,
    queue the digest mail and deliver the outbox."""
    now = now or utcnow()
    period = period or period_of(now, office.office.tz)
    if send and not office.recipients.digest:
        out("mailbot digest: recipients.digest is not configured; nothing sent")
        return 1
    built = build_monthly(engine, office, period, now)
    for path in write_files(built, out_dir):
        out(str(path))
    if send:
        from . import runner

        key, _interim = monthly_key(office, period, now)
        if queue_monthly(engine, office, period, now, built):
            out(f"queued {key} -> {', '.join(office.recipients.digest)}")
        else:
            out(f"{key} was already queued; not queued again")
        out(f"sent {runner.deliver(engine, office)} mail(s)")
    return 0
