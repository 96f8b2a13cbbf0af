"""The loop: poll the mailbox, hand each message to intake, move it; deliver the outbox.

A message leaves the watched folder only after its outcome is committed; if the move fails
(or the process dies first) the next poll finds the UID already recorded and only moves it.
Each message is guarded around every step (mailbot.guard): an unexpected error quarantines
that one message and the loop goes on. Before any message leaves the folder the database file
is checked to be the one the process opened (mailbot.store.check_file).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import update
from sqlalchemy.engine import Engine

from . import claim, faults, guard, intake, outbox, store, watch
from .config import Config, OfficeConfig
from .mailbox import Fetched, Mailbox
from .models import Message, utcnow
from .workers import Deciders

log = logging.getLogger("mailbot.runner")
NETWORK_ERRORS = guard.NETWORK_ERRORS


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


def _move(box: Mailbox, engine: Engine, office: OfficeConfig, batch: list[tuple[int, Message]]) -> list[Message]:
    """Move messages whose outcomes are committed, (uid, row) pairs: one MOVE a folder (a MOVE a
    mail took a sixth of a backlog's time). Where a folder's MOVE fails unexpectedly (not the
    network's) its mails are moved one by one, and one that fails again goes to the quarantine
    folder instead, its outcome standing; failing that too, the next poll tries again. Returns
    the rows moved."""
    folders: dict[str, list[tuple[int, Message]]] = {}
    for uid, message in batch:
        if message.destination != box.selected:  # left where it is: not ours
            folders.setdefault(message.destination, []).append((uid, message))
    moved = []
    for folder, group in folders.items():
        store.check_file(engine)  # their outcomes went into the file this process opened: is that still the database?
        if len(group) > 1:
            try:
                with guard.step("move"):
                    for _uid, message in group:
                        faults.crash_point("before_move", message.message_id.encode())
                    box.move([uid for uid, _message in group], folder)
            except guard.StepFailed as failure:
                log.warning("MOVE of %d messages to %s failed (%s); moving them one by one", len(group), folder,
                            failure)
            else:
                faults.crash_point("after_move")
                moved += [message for _uid, message in group]
                continue
        moved += [message for uid, message in group if _move_one(box, engine, office, uid, message)]
    return moved


def _move_one(box: Mailbox, engine: Engine, office: OfficeConfig, uid: int, message: Message) -> bool:
    try:
        with guard.step("move"):
            faults.crash_point("before_move", message.message_id.encode())
            box.move([uid], message.destination)
    except guard.StepFailed as failure:
        quarantine = office.imap.quarantine_folder
        log.error("message=<%s> uid=%s move to %s failed (%s)%s", message.message_id, uid, message.destination,
                  failure, "; moving it to " + quarantine if message.destination != quarantine else "",
                  exc_info=failure.cause)
        if message.destination == quarantine:
            return False
        try:
            with guard.step("move"):
                box.move([uid], quarantine)
        except guard.StepFailed as again:
            log.error("message=<%s> uid=%s move to %s failed too (%s); the next poll tries again",
                      message.message_id, uid, quarantine, again)
            return False
        intake.moved_elsewhere(engine, message, quarantine, failure)
    faults.crash_point("after_move")
    return True


def _finish_moves(box: Mailbox, engine: Engine, office: OfficeConfig, result: PollResult, clock) -> None:
    """Move what was committed but not moved (the move failed, or the process died before it)."""
    with store.reading(engine) as session:
        unmoved = store.unmoved(session, office.id, box.selected, box.uidvalidity)
    moved = _move(box, engine, office, [(m.uid, m) for m in unmoved])
    _mark_moved(engine, moved, clock())
    result.moved += len(moved)


def drain(box: Mailbox, engine: Engine, office: OfficeConfig, deciders: Deciders,
          stop=lambda: False, clock: Callable[[], dt.datetime] = utcnow, committed=lambda: None) -> PollResult:
    """Handle the mail that arrived after the start line and above the high-water mark, batch
    by batch in UID order (while one batch is committed and moved, the workers already decide
    the next); then whatever the clerk put into the reprocess folder. Nothing here sends mail:
    `committed()` is called after each batch (the daemon wakes its sender). `clock` tells the
    time receipts are written at (the demo's own month)."""
    result = PollResult()
    _finish_moves(box, engine, office, result, clock)
    line = watch.begin(engine, office, box.uidvalidity, clock())
    uidnext = box.uidnext
    uids = watch.unread(box, line)
    if _batches(box, engine, office, deciders, uids, result, stop, clock, committed, line):
        watch.advance(engine, line, max([line.high_water, *uids, (uidnext or 1) - 1]), scanned=True)
        if not stop() and box.count(office.imap.reprocess_folder):
            box.select(office.imap.reprocess_folder)
            try:
                _finish_moves(box, engine, office, result, clock)
                _batches(box, engine, office, deciders, box.pending(), result, stop, clock, committed)
            finally:
                box.select()
    return result


def _batches(box, engine, office, deciders, uids, result, stop, clock, committed, line=None) -> bool:
    """True when every UID was handled (not stopped half-way)."""
    size = office.imap.batch_size
    ahead = None  # the batch the workers are deciding: (uids, fetched, results)
    for batch in [uids[i:i + size] for i in range(0, len(uids), size)] + [None]:
        if stop():
            return False
        following = (batch, _fetch(box, engine, office, deciders, batch, result, line)) if batch else None
        if ahead is not None:
            done, work = ahead
            if work is not None and not _commit(box, engine, office, *work, result, stop, clock):
                return False
            if line is not None:
                watch.advance(engine, line, max(done))
            committed()
        ahead = following
    return True


def _fetch(box: Mailbox, engine: Engine, office: OfficeConfig, deciders: Deciders, batch: list[int], result,
           line=None):
    """Glance at the batch (header and structure): history and mail that is not ours are left
    where they are (recorded, so they are not read again); the rest is fetched whole and
    handed to the workers. The one place that asks whether a UID is recorded already (a
    message left here, or whose move failed): nothing after it asks again."""
    again = line is None  # the reprocess folder: the clerk says these are ours
    with store.reading(engine) as session:
        known = store.messages_at(session, office.id, box.selected, box.uidvalidity, batch)
    glances = [g for g in box.glance([u for u in batch if u not in known])
               if line is None or g.arrived >= line.floor]  # older: the office's history, never touched
    take, left = [], []
    for g in glances:
        verdict = None if again else claim.from_header(office, g.header, g.parts)
        (left if verdict is not None and verdict.ours is False else take).append((g, verdict))
    if left:
        intake.leave(engine, office, box.selected, box.uidvalidity, left)
    if not take:
        return None
    large = {g.uid for g, _v in take if g.size > office.limits.max_message_bytes}
    fetched = [Fetched(box.selected, box.uidvalidity, g.uid, g.header, g.arrived, truncated=True, again=again)
               for g, _v in take if g.uid in large]
    whole = [g for g, _v in take if g.uid not in large]
    fetched += list(box.fetch([g.uid for g in whole], again=again, size=sum(g.size for g in whole)))
    fetched.sort(key=lambda f: f.uid)
    return fetched, deciders.start(office, fetched)


def _commit(box: Mailbox, engine: Engine, office: OfficeConfig, fetched, results, result, stop, clock) -> bool:
    decided = results(stop)
    if decided is None:  # stopping while the workers decide: nothing of the batch is committed
        return False
    done = []
    complete = True
    for item, (sha, decision) in zip(fetched, decided):
        if stop():
            complete = False
            break
        faults.crash_point("after_fetch")
        row = _handle(engine, office, item, decision, sha, clock)
        log.info("message=<%s> uid=%s from=%s status=%s reason=%s", row.message_id, item.uid, row.sender,
                 row.status, row.reason or "-")
        result.handled += 1
        done.append((item.uid, row))
    moved = _move(box, engine, office, done)
    _mark_moved(engine, moved, clock())
    result.moved += len(moved)
    return complete


def _handle(engine: Engine, office: OfficeConfig, item: Fetched, decision, sha: str, clock) -> Message:
    """intake.commit under the guard: an unexpected error quarantines this message, cleaned of
    what the database refused; an infrastructure error is raised (the office backs off)."""
    try:
        with guard.step("store"):
            return intake.commit(engine, office, item, sha, decision, now=clock())
    except guard.StepFailed as failure:
        log.error("message uid=%s: unexpected error in step %s (%s); quarantined", item.uid, failure.step,
                  failure, exc_info=failure.cause)
        return intake.quarantine(engine, office, item, sha, decision, failure)


def poll_once(engine: Engine, config: Config, office: OfficeConfig, fence=None) -> PollResult:
    """`mailbot poll --once`: the mailbox as it is now, then the outbox. What a batch queued is
    sent while the next is filed (beside, as the daemon does), what is left once all is filed.
    `fence`: the office's lease (mailbot.lease.Keeper.fence), asked before each mail leaves the folder."""
    deciders = Deciders(office, config.archive.dir)
    sender = _Beside(engine, office)
    try:
        with Mailbox(office.imap).open() as box:
            box.fence = fence
            try:
                result = drain(box, engine, office, deciders, committed=sender.nudge)
            except BaseException:
                sender.finish(hurry=True)
                raise
            result.sent += sender.finish() + deliver_all_due(engine, office, box)
    finally:
        deciders.close()
    return result


class _Beside(threading.Thread):
    """poll --once's sender: delivers whenever a batch is committed, over connections of its
    own (the sent copies too: the polling session is the drain's); the drain never waits for
    it. Its error, if any, is raised by finish()."""

    def __init__(self, engine: Engine, office: OfficeConfig):
        super().__init__(name=f"sender-{office.id}", daemon=True)
        self.engine, self.office = engine, office
        self.sent = 0
        self.error: BaseException | None = None
        self._wake = threading.Event()
        self._done = self._hurry = False

    def nudge(self) -> None:
        if self.ident is None:
            self.start()
        self._wake.set()

    def run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._done:
                return
            try:
                self.sent += deliver_all_due(self.engine, self.office, stop=lambda: self._hurry)
            except BaseException as exc:  # noqa: BLE001  (raised in the polling thread by finish)
                self.error = exc
                return

    def finish(self, hurry: bool = False) -> int:
        """Let the delivery under way end (between two mails when `hurry`); how many it sent."""
        self._done, self._hurry = True, hurry
        self._wake.set()
        if self.ident is not None:
            self.join()
        if self.error is not None and not hurry:
            raise self.error
        return self.sent


class _SentCopies:
    """Appends sent mail to `imap.sent_folder`: over `box` when the caller has a session in
    this thread, else over a short connection of its own (the daemon's sender thread never
    touches the polling thread's session)."""

    def __init__(self, office: OfficeConfig, box: Mailbox | None):
        self.office, self.box, self.own = office, box, None

    def __call__(self, raw: bytes) -> None:
        if self.box is None:
            self.box = self.own = Mailbox(self.office.imap).open()
        self.box.append(self.office.imap.sent_folder, raw)

    def close(self) -> None:
        if self.own is not None:
            self.own.close()


def deliver_all_due(engine: Engine, office: OfficeConfig, box: Mailbox | None = None,
                    clock: Callable[[], dt.datetime] = utcnow, stop=lambda: False) -> int:
    """Send everything due now, batch after batch (outbox.deliver_batch) over one connection,
    until none is due or `stop()`; returns how many mails were sent."""
    copies = _SentCopies(office, box) if office.imap.sent_folder else None
    total = 0
    try:
        with outbox.Line(office.smtp) as line:
            while not stop():
                store.check_file(engine)
                sent = outbox.deliver_batch(engine, office, line=line, sent_copy=copies, clock=clock, stop=stop)
                total += sent
                if sent == 0:
                    break
    finally:
        if copies is not None:
            copies.close()
    return total
