"""The loop: poll the mailbox, hand each message to intake, move it, deliver the outbox.

A message leaves the watched folder only after its outcome is committed; if the move fails
(or the process dies first) the next poll finds the UID already recorded and only moves it.
"""
from __future__ import annotations

import datetime as dt
import imaplib
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Callable

from imap_tools.errors import ImapToolsError
from sqlalchemy import update
from sqlalchemy.engine import Engine

from . import faults, intake, outbox, store
from .config import Config, OfficeConfig
from .mailbox import Fetched, Mailbox
from .models import Message, utcnow
from .workers import Deciders

log = logging.getLogger("mailbot.runner")
NETWORK_ERRORS = (OSError, socket.timeout, ssl.SSLError, imaplib.IMAP4.error, imaplib.IMAP4.abort, ImapToolsError)


@dataclass
class PollResult:
    handled: int = 0
    moved: int = 0
    sent: int = 0


def _mark_moved(engine: Engine, messages: list[Message], now: dt.datetime) -> None:
    if not messages:
        return
    with store.writing(engine) as session:
        session.execute(update(Message).where(Message.id.in_([m.id for m in messages])).values(moved_at=now))


def _move(box: Mailbox, uid: int, message: Message) -> bool:
    try:
        box.move(uid, message.destination)
    except NETWORK_ERRORS:
        raise
    except Exception as exc:  # the outcome is committed; the next poll retries the move
        log.error("message=<%s> uid=%s move to %s failed: %s", message.message_id, uid, message.destination, exc)
        return False
    faults.crash_point("after_move")
    return True


def _oversized(box: Mailbox, uid: int) -> Fetched:
    """Only the header of a mail over the size limit: enough to answer the sender."""
    return Fetched(box.cfg.folder, box.uidvalidity, uid, box.headers(uid), utcnow(), truncated=True)


def drain(box: Mailbox, engine: Engine, config: Config, office: OfficeConfig, deciders: Deciders,
          stop=lambda: False, clock: Callable[[], dt.datetime] = utcnow) -> PollResult:
    """Handle every message now in the watched folder, batch by batch, in UID order: while one
    batch is committed, moved and answered, the workers already decide the next. `clock` tells
    the time receipts are written and sent at (the demo's own month)."""
    result = PollResult()
    uids = box.pending()
    size = office.imap.batch_size
    ahead = None  # the batch the workers are deciding: (fetched, results)
    for batch in [uids[i:i + size] for i in range(0, len(uids), size)] + [None]:
        if stop():
            break
        following = _fetch(box, engine, office, deciders, batch, result, clock) if batch else None
        if ahead is not None:
            _commit(box, engine, config, office, *ahead, result, stop, clock)
            result.sent += deliver(engine, office, box, clock)
        ahead = following
    return result


def _fetch(box: Mailbox, engine: Engine, office: OfficeConfig, deciders: Deciders, batch: list[int], result, clock):
    """Finish the moves of messages already handled; fetch the rest and hand them to the workers."""
    with store.reading(engine) as session:
        known = store.messages_at(session, office.id, office.imap.folder, box.uidvalidity, batch)
    moved = [known[uid] for uid in batch if uid in known and _move(box, uid, known[uid])]
    _mark_moved(engine, moved, clock())
    result.moved += len(moved)
    todo = [u for u in batch if u not in known]
    if not todo:
        return None
    sizes = box.sizes(todo)
    large = [u for u in todo if sizes.get(u, 0) > office.limits.max_message_bytes]
    fetched = [_oversized(box, u) for u in large] + list(box.fetch([u for u in todo if u not in large]))
    fetched.sort(key=lambda f: f.uid)
    return fetched, deciders.start(office, fetched)


def _commit(box: Mailbox, engine: Engine, config: Config, office: OfficeConfig, fetched, results, result, stop,
            clock) -> None:
    moved = []
    for item, (sha, decision) in zip(fetched, results()):
        if stop():
            break
        faults.crash_point("after_fetch")
        row = intake.handle(engine, office, config.archive.dir, item, decision, sha, now=clock())
        log.info("message=<%s> uid=%s from=%s status=%s reason=%s", row.message_id, item.uid, row.sender,
                 row.status, row.reason or "-")
        result.handled += 1
        if _move(box, item.uid, row):
            moved.append(row)
    _mark_moved(engine, moved, clock())
    result.moved += len(moved)


def poll_once(engine: Engine, config: Config, office: OfficeConfig) -> PollResult:
    """`mailbot poll --once`: the mailbox as it is now, then the outbox."""
    deciders = Deciders(office, config.archive.dir)
    try:
        with Mailbox(office.imap).open() as box:
            result = drain(box, engine, config, office, deciders)
            result.sent += deliver(engine, office, box)
    finally:
        deciders.close()
    return result


def deliver(engine: Engine, office: OfficeConfig, box: Mailbox | None = None,
            clock: Callable[[], dt.datetime] = utcnow) -> int:
    sent_copy = None
    if box is not None and office.imap.sent_folder:
        sent_copy = lambda raw: box.append(office.imap.sent_folder, raw)  # noqa: E731
    total = 0
    while True:
        sent = outbox.deliver(engine, office, sent_copy=sent_copy, clock=clock)
        total += sent
        if sent == 0:
            return total


def open_store(config: Config) -> Engine:
    return store.connect(config.database.url)
