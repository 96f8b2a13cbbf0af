"""`mailbot run`: poll, handle, sleep only when idle; deliver beside it; SIGTERM ends it in seconds.

A lost connection or an unreachable server is logged and retried with backoff, never fatal;
every network operation has a deadline (mailbot.deadline). Each office has a polling thread
and a sending thread, so filing never waits for SMTP; beside them APScheduler fires one job a
minute: the schedule's idempotent tick (reminders, notices, 通报), which wakes the senders. On
SQLite only one daemon may run against a database (a file lock); on PostgreSQL several may,
and each office is polled by the one holding its lease. SIGTERM ends the daemon within
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
from sqlalchemy.exc import OperationalError

from . import deadline, health, outbox, runner, schedule, store
from .health import Health
from .workers import Deciders
from .config import Config, OfficeConfig
from .errors import MailbotError
from .mailbox import Mailbox
from .models import utcnow

log = logging.getLogger("mailbot.daemon")
MAX_BACKOFF_SECONDS = 300
TICK_SECONDS = 60
LEASE_RETRY_SECONDS = 20  # a standby daemon takes an office over within this (plus one poll)
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
def sole(engine: Engine, offices: list[OfficeConfig]) -> Iterator[None]:
    """`poll --once` beside no daemon: the database's lock on SQLite, each office's lease on
    PostgreSQL. A poll beside a running daemon ended in `MOVE failed: EXPUNGEISSUED`."""
    with exclusive(engine, "poll"):
        leases = [store.Lease(engine, office.id) for office in offices]
        try:
            held = [lease.office_id for lease in leases if not lease.acquire()]
            if held:
                who = f"办公室 {'、'.join(held)} 的邮箱正由另一个 mailbot 守护进程处理"
                raise AlreadyRunning(_BUSY["poll"].format(who=who))
            yield
        finally:
            for lease in leases:
                lease.release()


class OfficeLoop:
    """One office's mailbox: poll, handle, sleep until IDLE or a wake-up; its Sender delivers.

    Polls only while it holds the office's lease: with several daemons on PostgreSQL exactly
    one polls each office, and another takes over within a minute if that one dies.
    """

    def __init__(self, daemon: "Daemon", office: OfficeConfig):
        self.daemon, self.office = daemon, office
        self.engine, self.config, self.stopping = daemon.engine, daemon.config, daemon.stopping
        self.box: Mailbox | None = None
        self.failures = 0
        self._wake_r, self._wake_w = socket.socketpair()  # wakes the loop's wait: to stop
        self._wake_r.setblocking(False)
        self.health = Health(self.engine, office)
        self.lease = store.Lease(self.engine, office.id)
        self.holding = False
        self.sender = Sender(self)

    def scheduled(self) -> None:
        """The tick job: queue what the schedule says is due and wake the sender."""
        if not self.holding or self.daemon.lost is not None:
            return
        try:
            if schedule.tick(self.engine, self.office, utcnow()):  # logs each mail it queues
                self.sender.nudge()
        except Exception as exc:  # the next tick retries; nothing is lost, it is all in the database
            log.error("office=%s scheduled tick failed (%s: %s)", self.office.id, type(exc).__name__, exc, exc_info=True)

    def nudge(self, why: bytes) -> None:
        try:
            self._wake_w.send(why)
        except OSError:
            pass

    def _session(self) -> Mailbox:
        if self.box is None:
            self.box = Mailbox(self.office.imap).open()
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
                              stop=self.stopping.is_set, committed=self.sender.nudge)
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
        woke it through the wake socket (b"x" stop, b"" nothing)."""
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
        while not self.stopping.is_set() and (left := until - time.monotonic()) > 0:
            self.wait(left, idle=False)

    def _claim(self) -> bool:
        """Hold the office's lease, or learn that another daemon does."""
        try:
            holding = self.lease.acquire()
        except Exception as exc:  # the database is unreachable: nobody may poll
            log.warning("office=%s cannot reach the database for the lease (%s)", self.office.id, exc)
            holding = False
        if holding != self.holding:
            log.info("office=%s %s", self.office.id, "taken: this daemon polls it" if holding
                     else "held by another daemon: standing by")
            self.holding = holding
            if holding:
                self.scheduled()  # the first tick may have come before the office was ours
                self.sender.nudge()
            else:
                self._drop_session()
        return holding

    def _stopped_taking_mail(self) -> None:
        """The database file is lost: no mail leaves INBOX until a person has looked."""
        self._drop_session()
        log.error("office=%s not taking mail: %s", self.office.id, self.daemon.lost)
        self.wait(LOST_REMINDER_SECONDS, idle=False)

    def run(self) -> None:
        log.info("office=%s mailbot running (%s)", self.office.id, self.office.office.address)
        while not self.stopping.is_set():
            if self.daemon.lost is not None:
                self._stopped_taking_mail()
                continue
            if not self._claim():
                self.wait(LEASE_RETRY_SECONDS, idle=False)
                continue
            try:
                self.cycle()
                self.failures = 0
                self.health.ok()
                if not self.stopping.is_set():
                    self.wait()
            except store.DatabaseLost as exc:
                self.daemon.lose(exc)
            except Exception as exc:  # never fatal: log, back off, reconnect
                if self.stopping.is_set():  # cut short by the stop: nothing to retry now
                    log.info("office=%s stopped during the poll (%s)", self.office.id, exc)
                    break
                try:
                    store.check_file(self.engine)  # "no such table": the file may be gone
                except store.DatabaseLost as lost:
                    self.daemon.lose(lost)
                    continue
                self.failures += 1
                delay = min(self.office.imap.poll_seconds * 2 ** (self.failures - 1), MAX_BACKOFF_SECONDS)
                expected = isinstance(exc, (*runner.NETWORK_ERRORS, OperationalError))
                log.log(logging.WARNING if expected else logging.ERROR,
                        "office=%s poll failed (%s: %s); retrying in %.0f s", self.office.id,
                        type(exc).__name__, exc, delay, exc_info=not expected)
                self._drop_session()
                self._alert(exc)
                self._back_off(delay)
        self._drop_session()
        self.lease.release()


class Sender:
    """One office's delivery, beside its polling: filing never waits for SMTP. It sends what is
    due, then sleeps until the next mail falls due or the loop (a committed batch, a tick) wakes
    it. The outbox claim is a lease, so another sender beside it (a `mailbot tick`) is safe."""

    def __init__(self, loop: OfficeLoop):
        self.loop = loop
        self._wake = threading.Event()
        self.failures = 0

    def nudge(self) -> None:
        self._wake.set()

    def run(self) -> None:
        loop, stopping = self.loop, self.loop.stopping
        while not stopping.is_set():
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
                                type(exc).__name__, exc, pause)
            self._wake.wait(pause)


class Daemon:
    """`mailbot run`: per office a polling loop and a sender thread; one scheduler; one pool of
    deciding workers."""

    def __init__(self, config: Config, engine: Engine, offices: list[OfficeConfig] | None = None):
        self.config, self.engine = config, engine
        self.offices = offices or config.offices
        self.stopping = threading.Event()
        self.deciders = Deciders(max(self.offices, key=lambda o: o.limits.workers), config.archive.dir)
        self.loops = [OfficeLoop(self, office) for office in self.offices]
        self.scheduler: BackgroundScheduler | None = None
        self.lost: store.DatabaseLost | None = None
        self._lost_lock = threading.Lock()
        self._stop_requested: float | None = None

    def scheduled(self) -> None:
        for loop in self.loops:
            loop.scheduled()

    def lose(self, exc: store.DatabaseLost) -> None:
        """The database file is gone or replaced: every office stops taking mail, and each is
        told by mail sent directly (the outbox is in the lost database)."""
        with self._lost_lock:
            if self.lost is not None:
                return
            self.lost = exc
        log.critical("%s", exc)
        for loop in self.loops:
            loop.nudge(b"l")
            health.database_lost(loop.office, exc)

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
        for loop in self.loops:
            loop.nudge(b"x")
            loop.sender.nudge()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> None:
        with exclusive(self.engine):
            threads = [threading.Thread(target=loop.run, name=f"office-{loop.office.id}", daemon=True)
                       for loop in self.loops]
            threads += [threading.Thread(target=loop.sender.run, name=f"sender-{loop.office.id}", daemon=True)
                        for loop in self.loops]
            self.start_scheduler()
            try:
                for thread in threads:
                    thread.start()
                while any(t.is_alive() for t in threads):
                    for thread in threads:
                        thread.join(timeout=0.2)
                    if self._stop_requested and time.monotonic() - self._stop_requested > STOP_SECONDS:
                        busy = [t.name for t in threads if t.is_alive()]
                        log.warning("still busy after %d s: %s; exiting anyway (nothing of theirs is committed "
                                    "half-way: each transaction is whole or not at all)", STOP_SECONDS, ", ".join(busy))
                        break
            finally:
                self.stopping.set()
                self.deciders.kill()
                self.scheduler.shutdown(wait=True)
                deadline.calm()
        log.info("mailbot stopped")
