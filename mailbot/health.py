"""The daemon watches itself: when polling has failed for too long, or the login is refused
(a revoked 授权码), the office gets one mail; and one more when it works again.

Whether an alert is open is read from the outbox, not kept in memory, so a restart while the
mailbox is down neither repeats the alert nor forgets to announce the recovery.
"""
from __future__ import annotations

import datetime as dt
import logging

from imap_tools.errors import MailboxLoginError
from sqlalchemy import select
from sqlalchemy.engine import Engine

from . import letters, outbox, store
from .config import OfficeConfig
from .deadline import DeadlineExceeded
from .models import Outgoing, utcnow

log = logging.getLogger("mailbot.health")
DB_KEY = "alert:db:"  # the database's outages, told apart from the mailbox's


def _open_alert(session, office: OfficeConfig) -> Outgoing | None:
    last = session.exec(select(Outgoing).where(Outgoing.office == office.id, Outgoing.kind == "alert",
                                               Outgoing.key.not_like(DB_KEY + "%"))  # the database's are apart
                        .order_by(Outgoing.id.desc()).limit(1)).scalars().first()
    return last if last is not None and last.key.startswith("alert:down:") else None


class Health:
    def __init__(self, engine: Engine, office: OfficeConfig):
        self.engine, self.office = engine, office
        self.failing_since: dt.datetime | None = None
        self.last_error = ""
        self.deadlines = 0  # failed polls in this outage that a server too slow to answer cut short

    def failed(self, exc: BaseException, now: dt.datetime | None = None) -> bool:
        """Record a failed poll; returns True when an alert was queued now."""
        now = now or utcnow()
        self.failing_since = self.failing_since or now
        self.last_error = f"{type(exc).__name__}: {exc}"[:500]
        if isinstance(exc, DeadlineExceeded):
            self.deadlines += 1
        login = isinstance(exc, MailboxLoginError)
        if not login and now - self.failing_since < dt.timedelta(minutes=self.office.health.alert_after_minutes):
            return False
        with store.writing(self.engine) as session:
            if _open_alert(session, self.office) is not None:
                return False
            context = {"since": self.failing_since.astimezone(self.office.office.tz), "error": self.last_error,
                       "login": login, "host": self.office.imap.host, "user": self.office.imap.user,
                       "deadlines": self.deadlines}
            mail = letters.build(self.office, kind="alert", key=f"alert:down:{self.failing_since.isoformat()}",
                                 template="alert_down", to=list(self.office.recipients.digest), context=context,
                                 now=now)
            queued = bool(self.office.recipients.digest) and store.enqueue(session, mail)
        log.error("mailbox unavailable since %s (%s; %d poll(s) cut short by a deadline); office alerted: %s",
                  self.failing_since.isoformat(), self.last_error, self.deadlines, queued)
        return queued

    def ok(self, now: dt.datetime | None = None) -> bool:
        """Record a good poll; returns True when a recovery notice was queued now."""
        now = now or utcnow()
        self.failing_since, self.deadlines = None, 0
        with store.writing(self.engine) as session:
            down = _open_alert(session, self.office)
            if down is None:
                return False
            since = down.key.removeprefix("alert:down:")
            mail = letters.build(self.office, kind="alert", key=f"alert:up:{since}", template="alert_up",
                                 to=list(self.office.recipients.digest),
                                 context={"since": dt.datetime.fromisoformat(since).astimezone(self.office.office.tz),
                                          "now_local": now.astimezone(self.office.office.tz),
                                          "host": self.office.imap.host}, now=now)
            store.enqueue(session, mail)
        log.info("mailbox available again (down since %s); office told", since)
        return True


def database_lost(office: OfficeConfig, exc: BaseException, now: dt.datetime | None = None) -> bool:
    """Tell the office that the database file is gone, by SMTP directly: the outbox is in the
    lost database, and mail may still work. Not recorded anywhere; True when the mail went."""
    if not office.recipients.digest:
        log.error("office=%s database lost; no recipients.digest to tell", office.id)
        return False
    now = now or utcnow()
    mail = letters.build(office, kind="alert", key=f"alert:lost:{now.isoformat()}", template="alert_lost",
                         to=list(office.recipients.digest), context={"error": getattr(exc, "what", str(exc)), "now_local": now.astimezone(
                             office.office.tz)}, now=now)
    if _send_directly(office, mail, "that the database is lost"):
        log.error("office=%s told that the database is lost (%s)", office.id, ", ".join(mail.recipients))
        return True
    return False


def _send_directly(office: OfficeConfig, mail: Outgoing, what: str) -> bool:
    """Send `mail` over SMTP now, without the outbox (which is in the database)."""
    cfg = office.smtp
    try:
        smtp = outbox.connect(cfg)
        try:
            with smtp.watch.stage("sending the alert", cfg.deadline_seconds + len(mail.raw) / cfg.min_bytes_per_second):
                smtp.sendmail(office.office.address, mail.recipients, mail.raw)
        finally:
            outbox.close(smtp, cfg)
    except Exception as exc2:  # the log says it all the same
        log.error("office=%s could not mail the alert %s (%s: %s)", office.id, what, type(exc2).__name__, exc2)
        return False
    return True


class DatabaseOutage:
    """The database unreachable (PostgreSQL restarted or down, the network): logged when it
    begins and ends; the offices this daemon held when it began are told, like a mailbox outage,
    once it has lasted `health.alert_after_minutes` - by SMTP directly, as the outbox is in the
    database - and when it is over, through the outbox, where the alert sent is recorded too.
    Only the holder of an office's lease tells it: one alert per office, however many daemons."""

    def __init__(self, where: str = ""):
        self.where = where  # the database, for the alert (no password)
        self.since: dt.datetime | None = None
        self.offices: list[OfficeConfig] = []
        self.alerted: dict[str, Outgoing] = {}  # office id -> the alert that went
        self.error = ""

    def failed(self, exc: BaseException, offices: list[OfficeConfig], now: dt.datetime | None = None) -> list[str]:
        """A beat failed; returns the offices alerted now."""
        now = now or utcnow()
        self.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        if self.since is None:
            self.since, self.offices = now, list(offices)
            log.error("database unreachable (%s): no mail leaves INBOX until it is back; %d office(s) held: %s",
                      self.error, len(offices), ", ".join(o.id for o in offices) or "-")
        told = []
        for office in self.offices:
            if office.id in self.alerted or not office.recipients.digest or \
                    now - self.since < dt.timedelta(minutes=office.health.alert_after_minutes):
                continue
            mail = letters.build(office, kind="alert", key=f"{DB_KEY}down:{self.since.isoformat()}",
                                 template="alert_db_down", to=list(office.recipients.digest), now=now,
                                 context={"since": self.since.astimezone(office.office.tz), "error": self.error,
                                          "database": self.where})
            if _send_directly(office, mail, "that the database is unreachable"):
                mail.status, mail.sent_at, mail.attempts = "sent", now, 1
                self.alerted[office.id] = mail
                told.append(office.id)
                log.error("office=%s told that the database is unreachable since %s (%s)", office.id,
                          self.since.isoformat(), ", ".join(mail.recipients))
        return told

    def ok(self, engine: Engine, now: dt.datetime | None = None) -> bool:
        """A beat succeeded; True when it ended an outage. The alerts sent are recorded now, each
        with the notice that it is over (queued: the office's sender delivers it)."""
        if self.since is None:
            return False
        now = now or utcnow()
        for office_id, down in list(self.alerted.items()):
            office = next(o for o in self.offices if o.id == office_id)
            up = letters.build(office, kind="alert", key=f"{DB_KEY}up:{self.since.isoformat()}", template="alert_db_up",
                               to=list(office.recipients.digest), now=now,
                               context={"since": self.since.astimezone(office.office.tz),
                                        "now_local": now.astimezone(office.office.tz)})
            with store.writing(engine) as session:
                store.enqueue(session, down)
                store.enqueue(session, up)
            del self.alerted[office_id]
        log.warning("database reachable again after %.0f s (unreachable since %s)",
                    (now - self.since).total_seconds(), self.since.isoformat())
        self.since, self.offices = None, []
        return True
