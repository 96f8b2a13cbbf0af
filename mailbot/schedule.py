"""Scheduled mail: reminders before the deadline, non-compliance notices and the 通报 after it.

Nothing is remembered between ticks: what is due follows from the calendar, the submissions
and the outbox keys already written (healthchecks' sendalerts is the model). Every mail is
keyed on (kind, department, period[, day]) and written once, each in its own transaction, so a
restart, a double tick, two racing ticks or a week of downtime neither repeats nor loses one.

Catch-up sends only what still means something: of several missed reminders only the latest,
and none once the deadline has passed (the notice replaces it); a period's notices and 通报 go
out until the next period's notices are due, but only if mailbot's start line (mailbot.watch) lies
before that period's deadline: it must not accuse every department of a month it never saw. No
reminder goes out before the first poll has read the mailbox.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from . import codes, digest, faults, guard, letters, store, tongbao, watch
from .config import OfficeConfig
from .models import Outgoing, Submission, utcnow
from .obligations import (MISSING, REJECTED, Standing, deadline, deadline_day, notice_at, period_of, reminder_dates,
                          send_at, shift_period, standing, week_window, weekly_key)
from .template import FILENAME as TEMPLATE_FILE, build_template

log = logging.getLogger("mailbot.schedule")

REMINDER, NOTICE, TONGBAO, DIGEST, WEEKLY = "reminder", "notice", "tongbao", "digest", "weekly"
UNFILED = (MISSING, REJECTED)
MAX_PROBLEMS = 5
_warned: set[tuple[str, str]] = set()


# --- what is due (pure; the dates come from the calendar in obligations) --------------------------

def periods_in_view(now: dt.datetime, tz) -> list[str]:
    """The periods whose mail can still be due: a notice moved past a holiday may fall two months on."""
    current = period_of(now, tz)
    return [shift_period(current, -2), shift_period(current, -1), current]


@dataclass(frozen=True)
class Due:
    kind: str
    period: str
    key: str
    department_id: str | None = None
    day: int | None = None  # the configured reminder day


def due(office: OfficeConfig, now: dt.datetime, standings: dict[str, dict[str, Standing]],
        watching_since: dt.datetime | None) -> list[Due]:
    """Everything that should be in the outbox as of `now`, given {period: {department: Standing}}
    for the departments that owe each period and the first thing mailbot recorded (None: nothing
    yet). The caller drops keys already queued."""
    sched, tz = office.schedule, office.office.tz
    out: list[Due] = []
    for period, by_dept in standings.items():
        unfiled = [dept for dept, st in by_dept.items() if st.state in UNFILED]
        if now < deadline(period, sched, tz):
            if watching_since is None:  # the mailbox was never read: who has filed is not known yet
                continue
            passed = [day for day, date in reminder_dates(period, sched).items() if send_at(date, sched, tz) <= now]
            if passed:
                day = max(passed)
                out += [Due(REMINDER, period, f"reminder:{d}:{period}:{day:02d}", d, day) for d in unfiled]
        elif watching_since is not None and watching_since < deadline(period, sched, tz) and \
                notice_at(period, sched, tz) <= now < notice_at(shift_period(period, 1), sched, tz):
            if by_dept:  # a period nobody owed has nothing to report
                out.append(Due(TONGBAO, period, f"tongbao:{period}"))
                out.append(Due(DIGEST, period, f"digest:{period}"))
            out += [Due(NOTICE, period, f"notice:{d}:{period}", d) for d in unfiled]
    if sched.weekly_digest_day and watching_since is not None:
        anchor = week_window(now, sched, tz)[2]
        if watching_since < send_at(anchor, sched, tz) <= now:  # not a week mailbot did not watch
            out.append(Due(WEEKLY, period_of(now, tz), weekly_key(now, sched, tz)))
    return out


# --- reading the database ----------------------------------------------------------------------

@dataclass(frozen=True)
class Queued:
    """One mail tick queued (or, in a dry run, would queue)."""

    kind: str
    period: str
    key: str
    department_id: str | None
    recipients: tuple[str, ...]
    subject: str


def _submissions(session, office: OfficeConfig, periods: list[str], now: dt.datetime) -> dict[tuple, list]:
    """{(department, period): submissions received by `now`, oldest first}."""
    rows = session.exec(select(Submission).where(
        Submission.office == office.id, Submission.period.in_(periods)).order_by(Submission.id)).scalars().all()
    out: dict[tuple, list] = {}
    for s in rows:
        if s.received_at <= now:
            out.setdefault((s.department_id, s.period), []).append(s)
    return out


def _watching_since(session, office: OfficeConfig) -> dt.datetime | None:
    """The start line, once the first poll has read everything after it (mailbot.watch): not
    the oldest mail in the database, which may be years of history."""
    return watch.watching_since(session, office)


def _queued_keys(session, office: OfficeConfig, periods: list[str]) -> set[str]:
    return set(session.exec(select(Outgoing.key).where(
        Outgoing.office == office.id, Outgoing.period.in_(periods))).scalars().all())


def _standings(office: OfficeConfig, periods: list[str], subs: dict) -> dict[str, dict[str, Standing]]:
    sched, tz = office.schedule, office.office.tz
    return {p: {d.id: standing(subs.get((d.id, p), []), p, sched, tz) for d in office.departments if d.owes(p)}
            for p in periods}


# --- composing the mail --------------------------------------------------------------------------

def _problems(latest: Submission | None) -> tuple[list[str], int]:
    """The errors of the latest rejected version, masked (a reminder is not the receipt)."""
    errors = [p for p in (latest.problems if latest else []) if p.get("severity", "error") == "error"]
    shown = [codes.mask_ids(p["message"]) for p in errors[:MAX_PROBLEMS]]
    return shown, len(errors) - len(shown)


def _department_mail(office: OfficeConfig, item: Due, st: Standing, subs: list, now: dt.datetime,
                     blank: bytes) -> Outgoing:
    dept = office.department(item.department_id)
    problems, more = _problems(subs[-1] if subs and st.state == REJECTED else None)
    context = {
        "department": dept, "period": item.period, "state": st.state, "now": now.astimezone(office.office.tz),
        "deadline": deadline_day(item.period, office.schedule), "deadline_day": office.schedule.deadline_day,
        "rejected_at": subs[-1].received_at.astimezone(office.office.tz) if subs else None,
        "problems": problems, "more": more,
    }
    return letters.build(office, kind=item.kind, key=item.key, template=item.kind, to=list(dept.emails),
                         context=context, department_id=dept.id, period=item.period,
                         attachments=[(TEMPLATE_FILE, blank, letters.XLSX)], now=now)


def _tongbao_mail(office: OfficeConfig, item: Due, by_dept: dict[str, Standing], now: dt.datetime) -> Outgoing:
    data = tongbao.compose(office, item.period, by_dept, now)
    attachments = []
    if data.entries:
        attachments.append((f"{tongbao.title(item.period)}（草稿）.docx", tongbao.build(data), letters.DOCX))
    context = {
        "period": item.period, "now": now.astimezone(office.office.tz), "data": data,
        "title": tongbao.title(item.period), "deadline": deadline_day(item.period, office.schedule),
        "escalation": list(office.recipients.escalation),
    }
    return letters.build(office, kind=TONGBAO, key=item.key, template=TONGBAO, to=list(office.recipients.digest),
                         context=context, period=item.period, attachments=attachments, now=now)


# --- the tick ------------------------------------------------------------------------------------

def _still_unfiled(session, office: OfficeConfig, item: Due, now: dt.datetime) -> bool:
    """Re-read inside the write transaction: a checklist may have arrived since we looked."""
    subs = [s for s in store.submissions_for(session, office.id, item.department_id, item.period)
            if s.received_at <= now]
    return standing(subs, item.period, office.schedule, office.office.tz).state in UNFILED


def tick(engine: Engine, office: OfficeConfig, now: dt.datetime, *, dry_run: bool = False) -> list[Queued]:
    """Queue every scheduled mail due as of `now` (aware) that is not queued yet; one
    transaction per mail. Returns what was queued (dry run: what would be, queuing nothing)."""
    if now.tzinfo is None:
        raise ValueError("tick needs an aware datetime")
    now = now.astimezone(dt.timezone.utc)
    periods = periods_in_view(now, office.office.tz)
    with store.reading(engine) as session:
        subs = _submissions(session, office, periods, now)
        since = _watching_since(session, office)
        queued_keys = _queued_keys(session, office, periods)
    standings = _standings(office, periods, subs)
    todo = [item for item in due(office, now, standings, since) if item.key not in queued_keys]
    blank = build_template(office.office.name, office.office.address, office.schedule.deadline_day) if todo else b""
    done: list[Queued] = []
    for item in todo:  # each item guarded: one bad department or digest does not stop the others
        try:
            with guard.step(item.kind):
                faults.crash_point("tick_item", item.key.encode())
                queued = _queue(engine, office, item, standings, subs, now, blank, dry_run)
        except guard.StepFailed as failure:
            first = _failing.setdefault((office.id, item.key), 0) == 0
            _failing[(office.id, item.key)] += 1
            log.error("office=%s %s not queued: unexpected error (%s); the next tick tries again", office.id,
                      item.key, failure, exc_info=failure.cause if first else None)
            continue
        _failing.pop((office.id, item.key), None)
        if queued is not None:
            done.append(queued)
    return done


_failing: dict[tuple[str, str], int] = {}  # (office, key) -> ticks it failed in: the traceback logged once


def _queue(engine: Engine, office: OfficeConfig, item: Due, standings, subs, now: dt.datetime, blank: bytes,
           dry_run: bool) -> Queued | None:
    """Queue one due mail (dry run: say what it would be); None when nothing was queued."""
    if item.kind in (DIGEST, WEEKLY):  # built and queued (idempotently) by the digest module
        if dry_run:
            return Queued(item.kind, item.period, item.key, None, tuple(office.recipients.digest), "")
        if (digest.queue_monthly(engine, office, item.period, now) if item.kind == DIGEST
                else digest.queue_weekly(engine, office, now)):
            log.info("queued %s for the office (%s)", item.kind, item.period)
            return Queued(item.kind, item.period, item.key, None, tuple(office.recipients.digest), "")
        return None
    if item.kind == TONGBAO:
        if not office.recipients.digest:
            if (office.id, item.period) not in _warned:  # once, not every minute for a month
                _warned.add((office.id, item.period))
                log.warning("通报 for %s not queued: no recipients.digest configured", item.period)
            return None
        mail = _tongbao_mail(office, item, standings[item.period], now)
    else:
        mail = _department_mail(office, item, standings[item.period][item.department_id],
                                subs.get((item.department_id, item.period), []), now, blank)
    if not dry_run:
        try:
            with store.writing(engine) as session:
                fresh = item.department_id is None or _still_unfiled(session, office, item, now)
                queued = fresh and store.enqueue(session, mail)
        except IntegrityError:  # another tick inserted the same key first (databases without BEGIN IMMEDIATE)
            queued = False
        if not queued:
            return None
        log.info("queued %s for %s (%s)", item.kind, item.department_id or "the office", item.period)
    return Queued(item.kind, item.period, item.key, item.department_id, tuple(mail.recipients), mail.subject)


@dataclass
class Ticked:
    """What `mailbot tick` did for one office: when it ran, what it queued (dry run: would),
    and whether the mailbox was ever polled (without a start line nothing is sent)."""

    now: dt.datetime
    queued: list[Queued]
    watched: bool


def tick_at(engine: Engine, office: OfficeConfig, at: dt.datetime | None, *, dry_run: bool = False) -> Ticked:
    """`mailbot tick`: the scheduled work as of `at` (a naive time is office time; None is now)."""
    now = utcnow() if at is None else at if at.tzinfo else at.replace(tzinfo=office.office.tz)
    queued = tick(engine, office, now, dry_run=dry_run)
    with store.reading(engine) as session:
        watched = _watching_since(session, office) is not None
    return Ticked(now, queued, watched)
