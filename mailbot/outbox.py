"""Deliver queued mail by SMTP and record each outcome on its outbox row.

Connection errors and 4xx replies are retried with exponential backoff; a 5xx reply marks
the mail failed. The send rate is throttled from what the database says was sent in the last
minute, because NetEase refuses bursts of similar automated mail as spam (554 DT:SPM).
"""
from __future__ import annotations

import datetime as dt
import logging
import smtplib
import socket

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from . import faults, store
from .config import OfficeConfig, Smtp
from .models import Outgoing, utcnow

log = logging.getLogger("mailbot.outbox")
MAX_BACKOFF = dt.timedelta(hours=6)
CLAIM_BATCH = 5  # mails claimed at a time: what a sender that dies leaves waiting for its lease


def connect(cfg: Smtp) -> smtplib.SMTP:
    if cfg.security == "ssl":
        smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_seconds, context=cfg.ssl_context())
    else:
        smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
        if cfg.security == "starttls":
            smtp.starttls(context=cfg.ssl_context())
    if cfg.user:
        smtp.login(cfg.user, cfg.password() or "")
    return smtp


def _sent_last_minute(engine: Engine, office: OfficeConfig, now: dt.datetime) -> int:
    with store.reading(engine) as session:
        return session.exec(select(func.count(Outgoing.id)).where(
            Outgoing.office == office.id, Outgoing.status == "sent",
            Outgoing.sent_at > now - dt.timedelta(minutes=1))).one()[0]


def _claim(engine: Engine, office: OfficeConfig, limit: int) -> list[Outgoing]:
    """Take up to `limit` due mails for sending, in one transaction, so two senders (the daemon
    and a `mailbot tick` beside it) never both send one: the claim is a lease on next_attempt_at,
    and the writers are serialised (BEGIN IMMEDIATE on SQLite, SKIP LOCKED on PostgreSQL)."""
    now = utcnow()
    # long enough to send the whole batch at the worst SMTP timeout, so no one else takes a mail
    # still being sent; a claimed mail not marked sent by then (its sender died) is due again
    lease = dt.timedelta(seconds=CLAIM_BATCH * office.smtp.timeout_seconds + 30)
    with store.writing(engine) as session:
        query = select(Outgoing).where(
            Outgoing.office == office.id, Outgoing.status == "pending", Outgoing.next_attempt_at <= now,
        ).order_by(Outgoing.id).limit(min(limit, CLAIM_BATCH))
        if engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        mails = list(session.exec(query).scalars().all())
        for mail in mails:
            mail.next_attempt_at = now + lease
    return mails


def _record(engine: Engine, mail_id: int, **changes) -> None:
    with store.writing(engine) as session:
        mail = session.get(Outgoing, mail_id)
        for key, value in changes.items():
            setattr(mail, key, value)


def _retry(engine: Engine, office: OfficeConfig, mail: Outgoing, error: str) -> None:
    attempts = mail.attempts + 1
    if attempts >= office.smtp.max_attempts:
        log.error("outbox=<%s> giving up after %d attempts: %s", mail.message_id, attempts, error)
        _record(engine, mail.id, attempts=attempts, status="failed", last_error=error)
        return
    delay = min(dt.timedelta(seconds=office.smtp.retry_base_seconds * 2 ** (attempts - 1)), MAX_BACKOFF)
    log.warning("outbox=<%s> attempt %d failed (%s); retrying in %s", mail.message_id, attempts, error, delay)
    _record(engine, mail.id, attempts=attempts, last_error=error, next_attempt_at=utcnow() + delay)


def deliver(engine: Engine, office: OfficeConfig, *, sent_copy=None, clock=utcnow) -> int:
    """Send what is due, within the rate limit; returns how many were sent.

    `sent_copy(raw)` (optional) appends each sent mail to the Sent folder. `clock` stamps
    sent_at (the demo's own month); leases and retries keep to real time.
    """
    budget = office.smtp.rate_per_minute - _sent_last_minute(engine, office, clock())
    if budget <= 0:
        return 0
    due = _claim(engine, office, budget)
    if not due:
        return 0
    sent = 0
    try:
        smtp = connect(office.smtp)
    except (OSError, smtplib.SMTPException) as exc:
        for mail in due:
            _retry(engine, office, mail, f"connect: {exc}")
        return 0
    try:
        for mail in due:
            try:
                refused = smtp.sendmail(office.office.address, mail.recipients, mail.raw)
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _msg in exc.recipients.values()]
                error = f"recipients refused: {exc.recipients!r}"
                if all(400 <= c < 500 for c in codes):
                    _retry(engine, office, mail, error)
                else:
                    _record(engine, mail.id, status="failed", attempts=mail.attempts + 1, last_error=error)
                continue
            except smtplib.SMTPResponseException as exc:
                error = f"{exc.smtp_code} {exc.smtp_error!r}"
                if 400 <= exc.smtp_code < 500:
                    _retry(engine, office, mail, error)
                    continue
                log.error("outbox=<%s> refused permanently: %s", mail.message_id, error)
                _record(engine, mail.id, status="failed", attempts=mail.attempts + 1, last_error=error)
                continue
            except (OSError, smtplib.SMTPException) as exc:
                _retry(engine, office, mail, f"{type(exc).__name__}: {exc}")
                for rest in due[due.index(mail) + 1:]:
                    _retry(engine, office, rest, "connection lost")
                return sent
            faults.crash_point("after_smtp")
            error = f"some recipients refused: {refused!r}" if refused else ""
            _record(engine, mail.id, status="sent", sent_at=clock(), attempts=mail.attempts + 1, last_error=error)
            sent += 1
            log.info("outbox=<%s> kind=%s sent to=%s", mail.message_id, mail.kind, ",".join(mail.recipients))
            if sent_copy is not None:
                try:
                    sent_copy(mail.raw)
                except Exception as exc:  # a missing Sent copy must not resend the mail
                    log.warning("outbox=<%s> could not append to the Sent folder: %s", mail.message_id, exc)
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException, socket.error):
            pass
    return sent
