"""`mailbot run`: poll, handle, sleep only when idle; deliver beside it; SIGTERM ends it in seconds.

A lost connection or an unreachable server is logged and retried with backoff, never fatal;
every network operation has a deadline (mailbot.deadline). Each office has a polling thread
and a sending thread, so filing never waits for SMTP; beside them APScheduler fires one job a
minute: the schedule's idempotent tick (reminders, notices, 通报), which wakes the senders. On
SQLite only one daemon may run against a database (a file lock); on PostgreSQL several may:
a heartbeat thread keeps this daemon's share of the offices' leases (mailbot.lease) and runs a
loop only for each office it holds. SIGTERM ends the daemon within
STOP_SECONDS in any state: a network operation under way is cut after STOP_GRACE_SECONDS,
a wait for the workers is given up, and nothing is committed half-way. A database file deleted
or replaced under the daemon stops it taking mail before any message leaves INBOX.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import select
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine

from . import deadline, guard, health, lease, outbox, runner, schedule, store
from .health import Health
from .workers import Deciders
from .config import Config, OfficeConfig
from .errors import MailbotError
from .mailbox import Mailbox
from .models import utcnow

log = logging.getLogger("mailbot.daemon")
MAX_BACKOFF_SECONDS = 300
TICK_SECONDS = 60
SENDER_IDLE_SECONDS = 60  # the longest a sender sleeps without looking at the outbox
STOP_GRACE_SECONDS = 3  # after SIGTERM, what a network operation under way may still take
STOP_SECONDS = 8  # after SIGTERM the daemon exits, whatever a thread is still doing
LOST_REMINDER_SECONDS = 3600  # how often a daemon whose database file was lost says so again


class AlreadyRunning(MailbotError):
    """Another mailbot holds the database's lock (SQLite) or an office's lease (PostgreSQL)."""


_BUSY = {  # what the command refused says, {who} being the other process and what it holds
    "run": "{who}，不能再启动一个守护进程。",
    "poll": "{who}，本次 poll --once 未执行，以免两个进程同时移动同一封邮件。守护进程会自动处理新邮件；"
            "如确需手工处理，请先停止守护进程（systemctl stop mailbot）。",
}


@contextlib.contextmanager
def exclusive(engine: Engine, command: str = "run") -> Iterator[None]:
    """Hold the one-daemon-per-database lock: flock on `<db>.lock` beside a SQLite file.

    The lock dies with the process (no stale lock file to clean up after a crash)."""
    url = engine.url
    if url.get_backend_name() != "sqlite":  # several daemons may share it: each office has a Lease
        yield
        return
    if not url.database or url.database == ":memory:":
        yield
        return
    path = Path(url.database + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        who = f"另一个 mailbot（进程 {holder or '?'}）正在使用数据库 {url.database}"
        raise AlreadyRunning(_BUSY[command].format(who=who)) from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        log.info("holding the lock %s", path)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def sole(engine: Engine, offices: list[OfficeConfig]) -> Iterator[lease.Keeper]:
    """`poll --once` beside no daemon: the database's lock on SQLite, each office's lease on
    PostgreSQL, renewed while the poll runs (its MOVEs ask the fence, `keeper.fence(office)`).
    A poll beside a running daemon ended in `MOVE failed: EXPUNGEISSUED`."""
    with exclusive(engine, "poll"):
        keeper = lease.Keeper(engine, [office.id for office in offices], kind="poll")
        done = threading.Event()
        renewing = threading.Thread(target=_renew, args=(keeper, done), name="heartbeat", daemon=True)
        try:
            held = keeper.take()
            if held:
                who = f"办公室 {'、'.join(held)} 的邮箱正由另一个 mailbot 守护进程处理"
                raise AlreadyRunning(_BUSY["poll"].format(who=who))
            renewing.start()
            yield keeper
        finally:
            done.set()
            if renewing.is_alive():
                renewing.join(timeout=STOP_SECONDS)
            keeper.stop()


def _renew(keeper: lease.Keeper, done: threading.Event) -> None:
    while not done.wait(lease.BEAT_SECONDS):
        try:
            keeper.beat(balance=False)
        except Exception as exc:  # the fence closes by itself if this goes on
            log.warning("could not renew the leases (%s: %s)", type(exc).__name__, exc)


class OfficeLoop:
    """One office's mailbox while this daemon holds its lease: poll, handle, sleep until IDLE or
    a wake-up; its Sender delivers. It ends when the lease is given back (after the message in
    hand), lost to another daemon, or the daemon stops. Every MOVE asks the lease's fence first,
    and while the fence is closed (the lease could not be renewed) nothing is polled."""

    def __init__(self, daemon: "Daemon", office: OfficeConfig, epoch: int = 0):
        self.daemon, self.office, self.epoch = daemon, office, epoch
        self.engine, self.config, self.stopping = daemon.engine, daemon.config, daemon.stopping
        self.box: Mailbox | None = None
        self.failures = 0
        self._wake_r, self._wake_w = socket.socketpair()  # wakes the loop's wait: to stop, to leave
        self._wake_r.setblocking(False)
        self.health = Health(self.engine, office)
        self.fence = daemon.keeper.fence(office.id)
        self.holding = False  # set when the daemon starts it, cleared when it has ended
        self.leaving: str | None = None  # "release" (over the share: finish the message in hand) or "lost"
        self.finished = threading.Event()
        self.sender = Sender(self)

    def scheduled(self) -> None:
        """The tick job: queue what the schedule says is due and wake the sender."""
        if not self.holding or self.daemon.lost is not None:
            return
        try:
            if schedule.tick(self.engine, self.office, utcnow()):  # logs each mail it queues
                self.sender.nudge()
        except guard.DATABASE_ERRORS as exc:  # an outage the heartbeat logs and alerts: the next tick retries
            log.warning("office=%s scheduled tick skipped: database unreachable (%s)", self.office.id,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        except Exception as exc:  # the next tick retries; nothing is lost, it is all in the database
            log.error("office=%s scheduled tick failed (%s: %s)", self.office.id, type(exc).__name__, exc, exc_info=True)

    def nudge(self, why: bytes) -> None:
        try:
            self._wake_w.send(why)
        except OSError:
            pass

    def leave(self, why: str) -> None:
        """End the loop: "release" after the message in hand, "lost" at once (the fence is closed)."""
        self.leaving = self.leaving or why
        self.nudge(b"r")

    def _must_stop(self) -> bool:
        """Asked by the drain before each message and batch."""
        return self.stopping.is_set() or self.leaving is not None or self.daemon.keeper.remaining(self.office.id) <= 0

    def _session(self) -> Mailbox:
        if self.box is None:
            self.box = Mailbox(self.office.imap).open()
            self.box.fence = self.fence
            log.info("office=%s connected to %s as %s (ID sent: %s)", self.office.id, self.office.imap.host,
                     self.office.imap.user, self.box.id_sent)
        return self.box

    def _drop_session(self) -> None:
        if self.box is not None:
            self.box.close()
            self.box = None

    def cycle(self) -> None:
        """One pass: drain the mailbox; the sender is woken after each committed batch."""
        store.check_file(self.engine)  # a connection opened on a deleted path would find no tables
        box = self._session()
        box.select()
        result = runner.drain(box, self.engine, self.office, self.daemon.deciders,
                              stop=self._must_stop, committed=self.sender.nudge)
        if result.handled:
            log.info("office=%s handled %d message(s)", self.office.id, result.handled)

    def _alert(self, exc: Exception) -> None:
        """Tell the office when polling has failed for too long (the SMTP side may still work)."""
        try:
            if self.health.failed(exc):
                self.sender.nudge()
        except Exception as inner:  # the next failure tries again
            log.warning("office=%s could not queue the alert (%s: %s)", self.office.id, type(inner).__name__, inner)

    def wait(self, seconds: float | None = None, idle: bool = True) -> bytes:
        """Sleep until the next poll, woken early by IDLE where offered, or by stop; returns what
        woke it through the wake socket (b"x" stop, b"r" leave, b"d" the database back, b"" nothing)."""
        seconds = self.office.imap.poll_seconds if seconds is None else seconds
        if idle and self.box is not None and self.office.imap.idle and "IDLE" in self.box.capabilities:
            self.box.idle(min(seconds, 9 * 60), self._wake_r)  # renewed before the 10-minute mark
        else:
            select.select([self._wake_r], [], [], seconds)
        woke = b""
        try:
            while chunk := self._wake_r.recv(64):
                woke += chunk
        except BlockingIOError:
            pass
        return woke

    def _back_off(self, seconds: float) -> None:
        """Wait out a failed poll's backoff (the sender goes on delivering meanwhile: SMTP may
        work while IMAP does not); polling the dead server early would only lengthen it."""
        until = time.monotonic() + seconds
        while not self.stopping.is_set() and self.leaving is None and (left := until - time.monotonic()) > 0:
            self.wait(left, idle=False)

    def _stopped_taking_mail(self) -> None:
        """The database file is lost: no mail leaves INBOX until a person has looked."""
        self._drop_session()
        log.error("office=%s not taking mail: %s", self.office.id, self.daemon.lost)
        self.wait(LOST_REMINDER_SECONDS, idle=False)

    def run(self) -> None:
        try:
            self.scheduled()  # the first tick may have come before the office was ours
            self.sender.nudge()
            self._run()
        finally:
            self._drop_session()
            self.holding = False
            self.finished.set()
            self.sender.nudge()
            self.daemon.ended(self)

    def _run(self) -> None:
        fenced = False
        while not self.stopping.is_set() and self.leaving is None:
            if self.daemon.lost is not None:
                self._stopped_taking_mail()
                continue
            if self.daemon.keeper.remaining(self.office.id) <= 0:
                if not fenced:
                    log.warning("office=%s lease not renewed in time (is the database unreachable?): not touching "
                                "the mailbox until it is", self.office.id)
                fenced = True
                self.wait(lease.BEAT_SECONDS, idle=False)
                continue
            if fenced:
                log.info("office=%s lease renewed: polling again", self.office.id)
                fenced = False
            try:
                self.cycle()
                self.failures = 0
                self.health.ok()
                if not self._must_stop():
                    self.wait()
            except store.DatabaseLost as exc:
                self.daemon.lose(exc)
            except lease.LeaseLost:  # the fence closed before a MOVE: the top of the loop says why
                continue
            except Exception as exc:  # never fatal: log, back off, reconnect
                if self.stopping.is_set() or self.leaving is not None:  # cut short: nothing to retry now
                    log.info("office=%s stopped during the poll (%s)", self.office.id, exc)
                    break
                try:
                    store.check_file(self.engine)  # "no such table": the file may be gone
                except store.DatabaseLost as lost:
                    self.daemon.lose(lost)
                    continue
                if isinstance(exc, guard.DATABASE_ERRORS) and not self.daemon.keeper.exclusive:
                    # PostgreSQL away: the heartbeat logs and alerts the outage, and wakes us (SQLite's file
                    # refusing a write - read-only, a full disk - is this office's failed poll, below)
                    log.warning("office=%s database unreachable (%s: %s); waiting for it", self.office.id,
                                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
                    self.wait(lease.LEASE_SECONDS, idle=False)
                    continue
                self.failures += 1
                delay = min(self.office.imap.poll_seconds * 2 ** (self.failures - 1), MAX_BACKOFF_SECONDS)
                expected = isinstance(exc, runner.NETWORK_ERRORS)
                log.log(logging.WARNING if expected else logging.ERROR,
                        "office=%s poll failed (%s: %s); retrying in %.0f s", self.office.id,
                        type(exc).__name__, exc, delay, exc_info=not expected)
                self._drop_session()
                self._alert(exc)
                self._back_off(delay)


class Sender:
    """One office's delivery, beside its polling: filing never waits for SMTP. It sends what is
    due, then sleeps until the next mail falls due or the loop (a committed batch, a tick) wakes
    it. The outbox claim is a lease, so another sender beside it (a `mailbot tick`) is safe.
    It ends with its loop."""

    def __init__(self, loop: OfficeLoop):
        self.loop = loop
        self._wake = threading.Event()
        self.failures = 0

    def nudge(self) -> None:
        self._wake.set()

    def run(self) -> None:
        loop, stopping = self.loop, self.loop.stopping
        while not stopping.is_set() and not loop.finished.is_set():
            self._wake.clear()
            pause = SENDER_IDLE_SECONDS
            if loop.holding and loop.daemon.lost is None:
                try:
                    runner.deliver_all_due(loop.engine, loop.office, stop=stopping.is_set)
                    self.failures = 0
                    pause = outbox.wait_seconds(loop.engine, loop.office, SENDER_IDLE_SECONDS)
                except store.DatabaseLost as exc:
                    loop.daemon.lose(exc)
                    continue
                except Exception as exc:  # it is all in the database; the next round sends it
                    self.failures += 1
                    pause = min(5 * 2 ** (self.failures - 1), MAX_BACKOFF_SECONDS)
                    log.warning("office=%s delivery failed (%s: %s); trying again in %.0f s", loop.office.id,
                                type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "", pause)
            self._wake.wait(pause)


class Daemon:
    """`mailbot run`: a heartbeat thread that keeps this daemon's leases (mailbot.lease) and
    starts a polling loop and a sender thread for each office it holds; one scheduler; one pool
    of deciding workers. An office not held costs nothing here."""

    def __init__(self, config: Config, engine: Engine, offices: list[OfficeConfig] | None = None):
        self.config, self.engine = config, engine
        self.offices = offices or config.offices
        self._by_id = {office.id: office for office in self.offices}
        self.stopping = threading.Event()
        self.deciders = Deciders(max(self.offices, key=lambda o: o.limits.workers), config.archive.dir)
        self.keeper = lease.Keeper(engine, list(self._by_id))
        self.loops: dict[str, OfficeLoop] = {}  # the offices held, by id
        self._threads: list[threading.Thread] = []
        self._heartbeat = threading.Event()  # wakes the heartbeat early: a loop ended, or stop
        self.outage = health.DatabaseOutage(engine.url.render_as_string(hide_password=True))
        self.scheduler: BackgroundScheduler | None = None
        self.lost: store.DatabaseLost | None = None
        self._lost_lock = threading.Lock()
        self._stop_requested: float | None = None

    def scheduled(self) -> None:
        for loop in list(self.loops.values()):
            loop.scheduled()

    def lose(self, exc: store.DatabaseLost) -> None:
        """The database file is gone or replaced: every office stops taking mail, and each is
        told by mail sent directly (the outbox is in the lost database)."""
        with self._lost_lock:
            if self.lost is not None:
                return
            self.lost = exc
        log.critical("%s", exc)
        for loop in list(self.loops.values()):
            loop.nudge(b"l")
            health.database_lost(loop.office, exc)

    # -- the heartbeat ------------------------------------------------------------------------
    def keep(self) -> None:
        """The heartbeat thread: renew the leases, start and end the offices' loops as the shares
        say, tell the database's outages. Stopping, it frees the leases once their loops ended."""
        while not self.stopping.is_set():
            self._heartbeat.clear()
            if self.lost is None:
                self._beat()
            self._heartbeat.wait(lease.BEAT_SECONDS)
        until = (self._stop_requested or time.monotonic()) + STOP_SECONDS - 1
        while self.loops and time.monotonic() < until:
            self._heartbeat.wait(0.1)
            self._heartbeat.clear()
        running = set(self.loops)
        if running:
            log.warning("office(s) %s still busy: their leases run out by themselves", ", ".join(sorted(running)))
        self.keeper.stop(set(self.keeper.held) - running)

    def _beat(self) -> None:
        try:
            store.check_file(self.engine)
            beat = self.keeper.beat(busy=set(self.loops))
        except store.DatabaseLost as exc:
            self.lose(exc)
            return
        except Exception as exc:  # the fences close by themselves; the loops wait for the database
            self.keeper.unsettle()
            if not isinstance(exc, guard.DATABASE_ERRORS):
                log.error("heartbeat failed (%s: %s)", type(exc).__name__, exc, exc_info=True)
            elif self.keeper.exclusive:  # SQLite: its leases need no renewal; the polls say what fails
                log.warning("heartbeat not recorded (%s)", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
                return
            self.outage.failed(exc, [loop.office for loop in list(self.loops.values())])
            return
        if self.outage.since is not None:
            try:
                self.outage.ok(self.engine)
            except Exception as exc:  # recorded at the next beat
                log.warning("could not record the end of the database outage (%s: %s)", type(exc).__name__, exc)
            for loop in list(self.loops.values()):
                loop.nudge(b"d")
                loop.sender.nudge()
        held = len(self.keeper.held)
        for office_id in beat.lost:
            log.warning("office=%s lease lost: another mailbot holds it now", office_id)
            if office_id in self.loops:
                self.loops[office_id].leave("lost")
        for office_id in beat.release:
            log.info("office=%s given back: this daemon holds %d, its share is %d (%d daemon(s)); finishing the "
                     "message in hand", office_id, held, beat.share, beat.live)
            if office_id in self.loops:
                self.loops[office_id].leave("release")
            else:  # no loop (it ended meanwhile): free it at the next beat
                self.keeper.done(office_id)
        for office_id in beat.claimed:
            self._start(self._by_id[office_id], beat, held)

    def _start(self, office: OfficeConfig, beat: lease.Beat, held: int) -> None:
        loop = OfficeLoop(self, office, self.keeper.held[office.id].epoch)
        log.info("office=%s taken: this daemon polls it (lease epoch %d; %d held, share %d of %d daemon(s))",
                 office.id, loop.epoch, held, beat.share, beat.live)
        loop.holding = True
        self.loops[office.id] = loop
        for target, name in ((loop.run, f"office-{office.id}"), (loop.sender.run, f"sender-{office.id}")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def ended(self, loop: OfficeLoop) -> None:
        """A loop has ended and touches its mailbox no more: its lease is freed now."""
        if self.loops.get(loop.office.id) is loop:
            del self.loops[loop.office.id]
        self.keeper.done(loop.office.id)
        if loop.leaving == "release":
            log.info("office=%s released (lease epoch %d): another daemon may take it", loop.office.id, loop.epoch)
        self._heartbeat.set()

    # -- the process --------------------------------------------------------------------------
    def start_scheduler(self) -> BackgroundScheduler:
        self.scheduler = BackgroundScheduler(timezone=self.offices[0].office.tz)
        self.scheduler.add_job(self.scheduled, "interval", seconds=TICK_SECONDS, id="tick", next_run_time=utcnow(),
                               coalesce=True, max_instances=1, misfire_grace_time=TICK_SECONDS)
        self.scheduler.start()
        return self.scheduler

    def stop(self, *_args) -> None:
        """SIGTERM: what is under way gets STOP_GRACE_SECONDS to finish (a network operation is
        then cut: nothing of it is committed, it is done again at the next start)."""
        log.info("stop requested: finishing the current message")
        self._stop_requested = self._stop_requested or time.monotonic()
        deadline.hurry(STOP_GRACE_SECONDS)
        self.stopping.set()
        self._heartbeat.set()
        for loop in list(self.loops.values()):
            loop.nudge(b"x")
            loop.sender.nudge()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> None:
        with exclusive(self.engine):
            self.start_scheduler()
            heartbeat = threading.Thread(target=self.keep, name="heartbeat", daemon=True)
            heartbeat.start()
            try:
                while not self.stopping.is_set():
                    self.stopping.wait(0.2)
                    self._threads = [t for t in self._threads if t.is_alive()]
                until = (self._stop_requested or time.monotonic()) + STOP_SECONDS
                while time.monotonic() < until and any(t.is_alive() for t in [heartbeat, *self._threads]):
                    time.sleep(0.05)
                busy = [t.name for t in [heartbeat, *self._threads] if t.is_alive()]
                if busy:
                    log.warning("still busy after %d s: %s; exiting anyway (nothing of theirs is committed "
                                "half-way: each transaction is whole or not at all)", STOP_SECONDS, ", ".join(busy))
            finally:
                self.stopping.set()
                self.deciders.kill()
                self.scheduler.shutdown(wait=True)
                deadline.calm()
        log.info("mailbot stopped")
