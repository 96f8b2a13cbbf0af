"""The start line: since when mailbot watches a folder, and how far it has read it.

At the first poll of an office's folder the start line is recorded (`imap.since`, else the
start of the period in progress, office time), and the folder is searched once with
`UID SEARCH SINCE`; from then on only UIDs above the high-water mark are read, so years of
history cost one search. The mark passes a UID only after its outcome is committed.

A new UIDVALIDITY (the server renumbered the folder) does not re-read history: the new
numbering is searched from a day before the last completed scan, so mail that arrived meanwhile
is handled, what was already handled is recognised (Message-ID and bytes), and nothing older
than that is read again, let alone answered.
"""
from __future__ import annotations

import datetime as dt
import logging
import dataclasses
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from . import store
from .config import OfficeConfig
from .models import StartLine, utcnow
from .obligations import parse_period, period_of

log = logging.getLogger("mailbot.watch")
RESCAN_MARGIN = dt.timedelta(days=1)  # after a UIDVALIDITY change: read again from this before the last scan
_warned: set[str] = set()


def start_line(office: OfficeConfig, now: dt.datetime) -> tuple[dt.datetime, str]:
    """(the start line in UTC, where it comes from) for a first poll at `now`."""
    tz = office.office.tz
    if office.imap.since is not None:
        day, source = office.imap.since, "config"
    else:
        year, month = parse_period(period_of(now, tz))
        day, source = dt.date(year, month, 1), "period"
    return dt.datetime.combine(day, dt.time(), tzinfo=tz).astimezone(dt.timezone.utc), source


@dataclass
class Line:
    """A StartLine row as one poll works with it (a plain copy, free of any session)."""

    id: int | None
    folder: str
    since: dt.datetime
    source: str
    uidvalidity: int
    high_water: int
    floor: dt.datetime
    scanned: bool
    caught_up_at: dt.datetime | None

    @classmethod
    def of(cls, row: StartLine) -> "Line":
        return cls(row.id, row.folder, row.since, row.source, row.uidvalidity, row.high_water, row.floor,
                   row.scanned, row.caught_up_at)


def current(session, office: OfficeConfig) -> Line | None:
    """The stored start line of the office's watched folder, if the first poll has happened."""
    row = session.exec(select(StartLine).where(
        StartLine.office == office.id, StartLine.folder == office.imap.folder)).scalars().first()
    return Line.of(row) if row is not None else None


def planned(office: OfficeConfig, uidvalidity: int, now: dt.datetime, stored: Line | None) -> Line:
    """The line a poll at `now` works with, not yet written: the stored one (moved to a new
    UIDVALIDITY if the server changed it), or the first poll's. The dry run uses it as is."""
    if stored is None:
        since, source = start_line(office, now)
        return Line(None, office.imap.folder, since, source, uidvalidity, 0, since, False, None)
    line = dataclasses.replace(stored)
    if line.uidvalidity != uidvalidity:
        last = line.caught_up_at or line.floor
        line.floor = max(line.since, last - RESCAN_MARGIN)
        line.uidvalidity, line.high_water, line.scanned = uidvalidity, 0, False
    return line


def begin(engine: Engine, office: OfficeConfig, uidvalidity: int, now: dt.datetime) -> Line:
    """The start line for this poll, recorded (the first poll's; a new UIDVALIDITY's)."""
    with store.reading(engine) as session:
        stored = current(session, office)
    line = planned(office, uidvalidity, now, stored)
    if stored is None:
        try:
            with store.writing(engine) as session:
                row = StartLine(office=office.id, folder=line.folder, since=line.since, source=line.source,
                                uidvalidity=uidvalidity, high_water=0, floor=line.floor, scanned=False)
                session.add(row)
                session.flush()
                line.id = row.id
        except IntegrityError:  # another daemon's first poll recorded it first
            return begin(engine, office, uidvalidity, now)
        log.info("office=%s folder=%s start line %s (%s)", office.id, line.folder,
                 line.since.astimezone(office.office.tz).isoformat(timespec="minutes"), line.source)
        return line
    if stored.uidvalidity != uidvalidity:
        log.warning("office=%s folder=%s UIDVALIDITY changed from %s to %s: reading again from %s, not history",
                    office.id, line.folder, stored.uidvalidity, uidvalidity, line.floor.isoformat(timespec="minutes"))
        with store.writing(engine) as session:
            session.execute(update(StartLine).where(StartLine.id == stored.id).values(
                uidvalidity=line.uidvalidity, high_water=0, floor=line.floor, scanned=False))
    elif office.imap.since is not None and start_line(office, now)[0] != stored.since and office.id not in _warned:
        _warned.add(office.id)  # once a process, not every poll
        log.warning("office=%s imap.since is %s but the start line was fixed at the first poll (%s); "
                    "use `mailbot import` for older mail", office.id, office.imap.since,
                    stored.since.astimezone(office.office.tz).date())
    return line


def unread(box, line: Line) -> list[int]:
    """The UIDs a poll reads (a mailbox.Mailbox on the watched folder): those above the mark;
    until this UIDVALIDITY's first scan is done, only those SINCE the day before the floor (the
    server's calendar: the caller keeps what arrived at or after the floor exactly)."""
    if line.scanned:
        return box.above(line.high_water)
    return [u for u in box.since((line.floor - dt.timedelta(days=1)).date()) if u > line.high_water]


def advance(engine: Engine, line: Line, high_water: int, *, scanned: bool = False) -> None:
    """Move the mark to `high_water` (every outcome up to it is committed); `scanned`: a whole
    scan is done, so the first search is not needed again and the scheduler may trust the line."""
    values: dict = {"high_water": max(high_water, line.high_water)}
    if scanned:
        values.update(scanned=True, caught_up_at=utcnow())
    with store.writing(engine) as session:
        session.execute(update(StartLine).where(StartLine.id == line.id,
                                                StartLine.uidvalidity == line.uidvalidity).values(**values))
    line.high_water = values["high_water"]
    if scanned:
        line.scanned, line.caught_up_at = True, values["caught_up_at"]


def watching_since(session, office: OfficeConfig) -> dt.datetime | None:
    """Since when mailbot has been watching the office's mail: the start line, once the first
    scan has read everything after it (before that, a tick would accuse departments whose
    checklists are still waiting in INBOX)."""
    line = current(session, office)
    return line.since if line is not None and line.caught_up_at is not None else None
