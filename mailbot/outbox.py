"""Deliver queued mail by SMTP and record each outcome on its outbox row.

The connection (TLS, banner, EHLO, AUTH) and each mail's transaction have a deadline
(mailbot.deadline). Just before the end of a mail's DATA goes out, its row is marked `sending`
with the attempt's time, durably: if the outcome can then not be recorded (the process dies,
the disk is full, the connection drops before the reply) the mail is `uncertain`, shown to the
office as 发送结果不明 and never sent again by itself (`mailbot resend` does it). A send that
never reached the end of its DATA was not delivered, and is simply retried.

Connection errors and 4xx replies are retried with exponential backoff; so is NetEase's
554 DT:SPM (a burst of automated mail taken for spam), after a pause of the office's whole
outbox; any other 5xx marks the mail failed. The send rate is throttled from what the database
says was sent in the last minute.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import smtplib
import time

from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine

from . import faults, guard, store
from .config import OfficeConfig, Smtp
from .deadline import Watch
from .errors import MailbotError
from .models import Outgoing, utcnow

log = logging.getLogger("mailbot.outbox")
MAX_BACKOFF = dt.timedelta(hours=6)
CLAIM_BATCH = 5  # mails claimed at a time: what a sender that dies leaves waiting for its lease
_TABLE = Outgoing.__table__
MAILS_PER_LINE = 100  # mails over one SMTP connection before it is renewed
LEASE_MARGIN_SECONDS = 30
RECORD_SENT_SECONDS = 120  # how long a sent mail's record waits for the database (a restart takes less)
SPAM = re.compile(r"\bDT:SPM\b", re.I)  # NetEase: "554 DT:SPM 126 smtp2, message rejected as spam"
UNCERTAIN = "发送结果不明：邮件内容已发给服务器，但未能确认或记录服务器是否接收"


class _Taken(Exception):
    """The claim ran out and another sender holds the mail now: this one must not send it."""


class _Watched(smtplib.SMTP):
    """smtplib whose socket the connection's Watch holds from the moment it exists. `before_end`
    (set per mail) runs just before the end of DATA goes out; `end_sent` says it went."""

    watch: Watch
    before_end = None
    end_sent = False

    def _get_socket(self, host, port, timeout):
        sock = self.watch.connect(host, port, timeout, self.source_address)
        self.watch.at = "banner"
        return sock

    def send(self, s):
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n") and self.before_end is not None:
            super().send(s[:-3])
            try:
                self.before_end()
            except BaseException:
                self.close()  # in the middle of DATA: without its end the server discards the mail
                raise
            super().send(s[-3:])
            self.end_sent = True
            return
        super().send(s)

    def close(self):
        try:
            super().close()
        finally:
            self.watch.close()


class _WatchedSSL(smtplib.SMTP_SSL, _Watched):
    def _get_socket(self, host, port, timeout):
        sock = _Watched._get_socket(self, host, port, timeout)
        self.watch.at = "TLS handshake"  # inside the deadline: the watch holds the TCP socket already
        sock = self.context.wrap_socket(sock, server_hostname=self._host)
        self.watch.at = "banner"
        return sock


def connect(cfg: Smtp) -> _Watched:
    """Connected, greeted and logged in within `smtp.deadline_seconds` (raises DeadlineExceeded
    past it); `smtp.watch` bounds what the caller does next."""
    password = cfg.password() if cfg.user else None
    if cfg.security == "ssl":
        smtp = _WatchedSSL(timeout=cfg.timeout_seconds, context=cfg.ssl_context())
    else:
        smtp = _Watched(timeout=cfg.timeout_seconds)
    smtp.watch = Watch(f"SMTP {cfg.user + '@' if cfg.user else ''}{cfg.host}:{cfg.port}")
    smtp._host = cfg.host  # what TLS checks the certificate against (set by the constructor we skip)
    try:
        with smtp.watch.stage("connect, banner, EHLO, AUTH", cfg.deadline_seconds):
            code, msg = smtp.connect(cfg.host, cfg.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, msg)
            smtp.watch.at = "EHLO"
            smtp.ehlo()
            if cfg.security == "starttls":
                smtp.watch.at = "STARTTLS"
                smtp.starttls(context=cfg.ssl_context())
                smtp.ehlo()
            if cfg.user:
                smtp.watch.at = "AUTH"
                smtp.login(cfg.user, password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def close(smtp: _Watched, cfg: Smtp) -> None:
    """QUIT, briefly; the connection is closed either way."""
    try:
        if smtp.sock is not None:
            with smtp.watch.stage("QUIT", min(cfg.deadline_seconds, 10)):
                smtp.quit()
    except (OSError, smtplib.SMTPException):
        pass
    finally:
        smtp.close()


def _sent_last_minute(engine: Engine, office: OfficeConfig, now: dt.datetime) -> int:
    with store.reading(engine) as session:
        return session.exec(select(func.count(Outgoing.id)).where(
            Outgoing.office == office.id, Outgoing.status == "sent",
            Outgoing.sent_at > now - dt.timedelta(minutes=1))).one()[0]


def paused_until(engine: Engine, office: OfficeConfig, now: dt.datetime | None = None) -> dt.datetime | None:
    """After NetEase refused a mail as spam (DT:SPM), the office sends nothing for
    `smtp.spam_pause_seconds`: the end of that pause, or None. Read from the database (the
    refused mail keeps its error and attempt time until it is retried), so a restart keeps it."""
    now = now or utcnow()
    pause = dt.timedelta(seconds=office.smtp.spam_pause_seconds)
    with store.reading(engine) as session:
        last = session.exec(select(func.max(Outgoing.attempted_at)).where(
            Outgoing.office == office.id, Outgoing.status == "pending", Outgoing.last_error.like("%DT:SPM%"),
            Outgoing.attempted_at > now - pause)).one()[0]
    return None if last is None else _aware(last) + pause  # SQLite hands back naive UTC


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.replace(tzinfo=dt.timezone.utc) if moment is not None and moment.tzinfo is None else moment


def wait_seconds(engine: Engine, office: OfficeConfig, cap: float) -> float:
    """How long a sender may sleep before anything can be sent (at most `cap`): until the next
    pending mail is due, the rate limit has room again and a DT:SPM pause is over."""
    now = utcnow()
    with store.reading(engine) as session:
        due = _aware(session.exec(select(func.min(Outgoing.next_attempt_at)).where(
            Outgoing.office == office.id, Outgoing.status.in_(("pending", "sending")))).one()[0])
        recent = [_aware(t) for t in session.exec(select(Outgoing.sent_at).where(
            Outgoing.office == office.id, Outgoing.status == "sent",
            Outgoing.sent_at > now - dt.timedelta(minutes=1)).order_by(Outgoing.sent_at)).scalars().all()]
    if due is None:
        return cap
    rate = office.smtp.rate_per_minute
    if len(recent) >= rate:  # room again once the oldest of the last minute's sends leaves the window
        due = max(due, recent[len(recent) - rate] + dt.timedelta(minutes=1))
    pause = paused_until(engine, office, now)
    if pause is not None:
        due = max(due, pause)
    return min(cap, max(0.05, (due - now).total_seconds()))


def lease_for(cfg: Smtp, mails: list[Outgoing]) -> dt.timedelta:
    """Longer than a sender can hold the batch with every deadline run out (connect, each mail
    by its size, QUIT): a claimed mail not finished by then has lost its sender."""
    seconds = 2 * cfg.deadline_seconds + sum(cfg.deadline_seconds + len(m.raw) / cfg.min_bytes_per_second
                                             for m in mails)
    return dt.timedelta(seconds=seconds + LEASE_MARGIN_SECONDS)


def _claim(engine: Engine, office: OfficeConfig, limit: int) -> list[Outgoing]:
    """Take up to `limit` due mails for sending, in one transaction, so two senders (the daemon
    and a `mailbot tick` beside it) never both send one: the claim is a lease on next_attempt_at,
    the writers are serialised (BEGIN IMMEDIATE on SQLite, SKIP LOCKED on PostgreSQL), and a
    mail is sent only by the holder of its lease (`_begin`). A mail left `sending` past its
    lease (its sender died, or could not record the outcome) becomes `uncertain` here."""
    now = utcnow()
    with store.writing(engine) as session:
        lost = session.exec(select(Outgoing).where(
            Outgoing.office == office.id, Outgoing.status == "sending", Outgoing.next_attempt_at <= now)).scalars().all()
        for mail in lost:
            log.warning("outbox=<%s> kind=%s to=%s: the send begun at %s has no recorded outcome; marked uncertain, "
                        "not sent again (mailbot resend sends it by hand)", mail.message_id, mail.kind,
                        ",".join(mail.recipients), mail.attempted_at)
            mail.status, mail.last_error = "uncertain", UNCERTAIN
        query = select(Outgoing).where(
            Outgoing.office == office.id, Outgoing.status == "pending", Outgoing.next_attempt_at <= now,
        ).order_by(Outgoing.id).limit(min(limit, CLAIM_BATCH))
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        mails = list(session.exec(query).scalars().all())
        until = now + lease_for(office.smtp, mails)
        for mail in mails:
            mail.next_attempt_at = until
    return mails


def _begin(engine: Engine, mail: Outgoing) -> None:
    """Durably: this mail's end of DATA is about to go out (raises _Taken if the lease was lost)."""
    with store.updating(engine) as conn:
        taken = conn.execute(update(_TABLE).where(
            _TABLE.c.id == mail.id, _TABLE.c.status == "pending", _TABLE.c.next_attempt_at == mail.next_attempt_at,
        ).values(status="sending", attempted_at=utcnow())).rowcount
    if taken != 1:
        raise _Taken(mail.message_id)
    faults.crash_point("before_end_of_data", mail.raw)


def _record(engine: Engine, mail_id: int, **changes) -> None:
    """One UPDATE, no ORM round trip: after the end of DATA every instant until it is committed
    is one in which a kill leaves the mail `uncertain`."""
    with store.updating(engine) as conn:
        conn.execute(update(_TABLE).where(_TABLE.c.id == mail_id).values(**changes))


def _retry(engine: Engine, office: OfficeConfig, mail: Outgoing, error: str, *, spam: bool = False) -> None:
    attempts = mail.attempts + 1
    if attempts >= office.smtp.max_attempts:
        log.error("outbox=<%s> giving up after %d attempts: %s", mail.message_id, attempts, error)
        _record(engine, mail.id, attempts=attempts, status="failed", last_error=error)
        return
    delay = min(dt.timedelta(seconds=office.smtp.retry_base_seconds * 2 ** (attempts - 1)), MAX_BACKOFF)
    if spam:  # NetEase's spam suspicion lasts a while: retrying sooner only prolongs it
        delay = max(delay, dt.timedelta(seconds=office.smtp.spam_pause_seconds))
    log.warning("outbox=<%s> attempt %d failed (%s); retrying in %s", mail.message_id, attempts, error, delay)
    now = utcnow()
    _record(engine, mail.id, status="pending", attempts=attempts, last_error=error, attempted_at=now,
            next_attempt_at=now + delay)


def _release(engine: Engine, mails: list[Outgoing], at: dt.datetime | None = None) -> None:
    """Give claimed mails back unattempted (due again at `at`, default now)."""
    if mails:
        with store.writing(engine) as session:
            session.execute(update(Outgoing).where(Outgoing.id.in_([m.id for m in mails]), Outgoing.status == "pending")
                            .values(next_attempt_at=at or utcnow()))


def _refused(engine: Engine, office: OfficeConfig, mail: Outgoing, codes: list[int], error: str) -> bool:
    """The server answered no: retried (4xx, DT:SPM) or failed (5xx). True when it was DT:SPM."""
    if SPAM.search(error):
        log.warning("outbox=<%s> refused as spam (DT:SPM); the office's outbox pauses for %.0f s",
                    mail.message_id, office.smtp.spam_pause_seconds)
        _retry(engine, office, mail, error, spam=True)
        return True
    if codes and all(400 <= c < 500 for c in codes):
        _retry(engine, office, mail, error)
    else:
        log.error("outbox=<%s> refused permanently: %s", mail.message_id, error)
        _record(engine, mail.id, status="failed", attempts=mail.attempts + 1, last_error=error, attempted_at=utcnow())
    return False


class Line:
    """One SMTP connection for batch after batch (runner.deliver_all_due): opened when a batch
    has mail, given up after an error, renewed after MAILS_PER_LINE mails. A connection a
    batch (of CLAIM_BATCH) spent a connect, EHLO and QUIT on every fifth mail of a backlog."""

    def __init__(self, cfg: Smtp):
        self.cfg, self.smtp, self.mails = cfg, None, 0

    def open(self) -> _Watched:
        if self.smtp is not None and self.mails >= MAILS_PER_LINE:
            self.close()
        if self.smtp is None:
            self.smtp, self.mails = connect(self.cfg), 0
        return self.smtp

    def close(self) -> None:
        if self.smtp is not None:
            smtp, self.smtp = self.smtp, None
            close(smtp, self.cfg)

    def __enter__(self) -> "Line":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def deliver_batch(engine: Engine, office: OfficeConfig, *, line: Line | None = None, sent_copy=None, clock=utcnow,
                  stop=None) -> int:
    """Send one batch of what is due (at most CLAIM_BATCH mails, within the rate limit) over
    `line` (default: a connection of its own, closed after the batch); returns how many were
    sent (runner.deliver_all_due repeats it until none is due, over one Line).

    `sent_copy(raw)` (optional) appends each sent mail to the Sent folder, once the batch is
    sent. `clock` stamps sent_at (the demo's own month); leases and retries keep to real time.
    `stop()` (optional) ends the batch between two mails.
    """
    if line is None:
        with Line(office.smtp) as own:
            return deliver_batch(engine, office, line=own, sent_copy=sent_copy, clock=clock, stop=stop)
    if paused_until(engine, office) is not None:
        return 0
    budget = office.smtp.rate_per_minute - _sent_last_minute(engine, office, clock())
    if budget <= 0:
        return 0
    due = _claim(engine, office, budget)
    if not due:
        return 0
    try:
        smtp = line.open()
    except (OSError, smtplib.SMTPException) as exc:
        for mail in due:
            _retry(engine, office, mail, f"connect: {exc}")
        return 0
    done: list[Outgoing] = []
    try:
        for index, mail in enumerate(due):
            if stop is not None and stop():
                _release(engine, due[index:])
                break
            outcome = _send(engine, office, smtp, mail, due[index + 1:], clock, stop)
            line.mails += 1
            if outcome == SENT:
                done.append(mail)
            elif outcome == STOP:
                line.close()  # the connection is gone, or the office pauses
                break
    except BaseException:
        line.close()
        raise
    for mail in done if sent_copy is not None else []:
        try:
            sent_copy(mail.raw)
        except Exception as exc:  # a missing Sent copy must not resend the mail
            log.warning("outbox=<%s> could not append to the Sent folder: %s", mail.message_id, exc)
    return len(done)


SENT, REFUSED, STOP = "sent", "refused", "stop"  # what became of one mail, and whether the batch goes on


def _record_sent(engine: Engine, mail: Outgoing, stop, **changes) -> None:
    """The server took the mail: that is known here and nowhere else, so a database server away
    for a while (PostgreSQL restarting) is waited for, up to RECORD_SENT_SECONDS or the stop,
    rather than leaving the mail `uncertain`. (SQLite's file refusing the write - a full disk -
    is no outage to wait for.)"""
    until = time.monotonic() + RECORD_SENT_SECONDS
    while True:
        try:
            _record(engine, mail.id, **changes)
            return
        except guard.DATABASE_ERRORS as exc:
            if engine.dialect.name != "postgresql" or time.monotonic() >= until or (stop is not None and stop()):
                raise
            log.warning("outbox=<%s> sent; recording it waits for the database (%s)", mail.message_id,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            time.sleep(1)


def _send(engine: Engine, office: OfficeConfig, smtp: _Watched, mail: Outgoing, rest: list[Outgoing], clock,
          stop=None) -> str:
    """One mail's transaction and its outcome: SENT; REFUSED (the server said no, the next mail
    may go); STOP (the connection is gone or the office pauses: the rest is given back or retried)."""
    cfg = office.smtp
    smtp.end_sent, smtp.before_end = False, lambda: _begin(engine, mail)
    try:
        with smtp.watch.stage(f"sending <{mail.message_id}> ({len(mail.raw) / 1e6:.1f} MB)",
                              cfg.deadline_seconds + len(mail.raw) / cfg.min_bytes_per_second):
            smtp.watch.at = "MAIL FROM, RCPT TO, DATA"
            refused = smtp.sendmail(office.office.address, mail.recipients, mail.raw)
    except _Taken:
        log.warning("outbox=<%s> its claim ran out; another sender has it now", mail.message_id)
        _release(engine, rest)
        return STOP
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes, error = [code for code, _msg in exc.recipients.values()], f"recipients refused: {exc.recipients!r}"
        else:
            codes, error = [exc.smtp_code], f"{exc.smtp_code} {exc.smtp_error!r}"
        if _refused(engine, office, mail, codes, error):
            _release(engine, rest, paused_until(engine, office))  # DT:SPM: the whole outbox waits
            return STOP
        return REFUSED
    except (OSError, smtplib.SMTPException) as exc:
        error = f"{type(exc).__name__}: {exc}"
        if smtp.end_sent:  # the server has the whole mail; whether it took it, nobody knows
            log.error("outbox=<%s> kind=%s to=%s: connection lost after the end of DATA (%s); marked uncertain, "
                      "not sent again (mailbot resend sends it by hand)", mail.message_id, mail.kind,
                      ",".join(mail.recipients), error)
            _record(engine, mail.id, status="uncertain", attempts=mail.attempts + 1,
                    last_error=f"{UNCERTAIN}（{error}）"[:500])
        else:
            _retry(engine, office, mail, error)
        for other in rest:
            _retry(engine, office, other, "connection lost")
        return STOP
    finally:
        smtp.before_end = None
    faults.crash_point("after_smtp", mail.raw)
    error = f"some recipients refused: {refused!r}" if refused else ""
    _record_sent(engine, mail, stop, status="sent", sent_at=clock(), attempts=mail.attempts + 1, last_error=error)
    log.info("outbox=<%s> kind=%s sent to=%s", mail.message_id, mail.kind, ",".join(mail.recipients))
    return SENT


RESENDABLE = ("uncertain", "failed")


def unsent(engine: Engine, office: OfficeConfig) -> list[Outgoing]:
    """The mails a person may send again by hand: result unknown, or given up on."""
    with store.reading(engine) as session:
        return list(session.exec(select(Outgoing).where(
            Outgoing.office == office.id, Outgoing.status.in_(RESENDABLE)).order_by(Outgoing.id)).scalars().all())


def resend(engine: Engine, office: OfficeConfig, ids: list[int]) -> list[Outgoing]:
    """Queue the mails `ids` again, by hand (`mailbot resend`): only one whose result is unknown
    or that was given up on; the same Message-ID goes out, so a copy that did arrive is known
    for the same mail."""
    with store.writing(engine) as session:
        mails = list(session.exec(select(Outgoing).where(Outgoing.office == office.id, Outgoing.id.in_(ids)))
                     .scalars().all())
        unknown = sorted(set(ids) - {m.id for m in mails})
        if unknown:
            raise MailbotError(f"没有编号为 {'、'.join(map(str, unknown))} 的邮件（不带编号运行 mailbot resend 可列出可重发的邮件）。")
        other = [m for m in mails if m.status not in RESENDABLE]
        if other:
            raise MailbotError("、".join(f"编号 {m.id}" for m in other) +
                               " 的邮件不是“发送结果不明”或“发送失败”的邮件，不能重发。")
        now = utcnow()
        for mail in mails:
            log.info("outbox=<%s> queued again by hand (was %s)", mail.message_id, mail.status)
            mail.status, mail.next_attempt_at, mail.last_error = "pending", now, ""
    return mails
