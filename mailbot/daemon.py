"""`mailbot run`: poll, handle, deliver, sleep only when idle; SIGTERM ends it between messages.

A lost connection or an unreachable server is logged and retried with backoff, never fatal.
Each office has its own loop thread; beside them APScheduler fires one job a minute: the
schedule's idempotent tick (reminders, notices, 通报), after which the loops deliver. On
SQLite only one daemon may run against a database (a file lock); on PostgreSQL several may,
and each office is polled by the one holding its lease.
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

from . import runner, schedule, store
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
    """One office's mailbox: poll, handle, deliver, sleep until IDLE or a tick wakes it.

    Polls only while it holds the office's lease: with several daemons on PostgreSQL exactly
    one polls each office, and another takes over within a minute if that one dies.
    """

    def __init__(self, daemon: "Daemon", office: OfficeConfig):
        self.daemon, self.office = daemon, office
        self.engine, self.config, self.stopping = daemon.engine, daemon.config, daemon.stopping
        self.box: Mailbox | None = None
        self.failures = 0
        self._wake_r, self._wake_w = socket.socketpair()  # wakes the loop's wait: to stop, or to deliver
        self._wake_r.setblocking(False)
        self.health = Health(self.engine, office)
        self.lease = store.Lease(self.engine, office.id)
        self.holding = False

    def scheduled(self) -> None:
        """The tick job: queue what the schedule says is due and wake the loop, which delivers
        (all sending happens in the loop's thread, with its IMAP session for the Sent copy)."""
        if not self.holding:
            return
        try:
            if schedule.tick(self.engine, self.office, utcnow()):  # logs each mail it queues
                self.nudge(b"t")
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
        """One pass: drain the mailbox and deliver the outbox."""
        box = self._session()
        box.select()
        result = runner.drain(box, self.engine, self.config, self.office, self.daemon.deciders,
                              stop=self.stopping.is_set)
        sent = result.sent + runner.deliver(self.engine, self.office, box)
        if result.handled or sent:
            log.info("office=%s handled %d message(s), sent %d mail(s)", self.office.id, result.handled, sent)

    def _alert(self, exc: Exception) -> None:
        """Tell the office when polling has failed for too long (the SMTP side may still work)."""
        try:
            self.health.failed(exc)
            runner.deliver(self.engine, self.office)  # SMTP may work while IMAP does not
        except Exception as inner:  # it is all queued in the database; the next attempt sends it
            log.warning("office=%s could not deliver while the mailbox is down (%s: %s)",
                        self.office.id, type(inner).__name__, inner)

    def wait(self, seconds: float | None = None, idle: bool = True) -> bytes:
        """Sleep until the next poll, woken early by IDLE where offered, by a tick or by stop;
        returns what woke it through the wake socket (b"t" a tick, b"x" stop, b"" neither)."""
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
        """Wait out a failed poll's backoff: a tick meanwhile only delivers (SMTP may work
        while IMAP does not); polling the dead server early would only lengthen the backoff."""
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set() and (left := deadline - time.monotonic()) > 0:
            if b"t" in self.wait(left, idle=False):
                try:
                    runner.deliver(self.engine, self.office)
                except Exception as exc:  # queued in the database; the next attempt sends it
                    log.warning("office=%s delivery failed (%s: %s)", self.office.id, type(exc).__name__, exc)

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
            else:
                self._drop_session()
        return holding

    def run(self) -> None:
        log.info("office=%s mailbot running (%s)", self.office.id, self.office.office.address)
        while not self.stopping.is_set():
            if not self._claim():
                self.wait(LEASE_RETRY_SECONDS, idle=False)
                continue
            try:
                self.cycle()
                self.failures = 0
                self.health.ok()
                if not self.stopping.is_set():
                    self.wait()
            except Exception as exc:  # never fatal: log, back off, reconnect
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


class Daemon:
    """`mailbot run`: one loop thread per office, one scheduler, one pool of deciding workers."""

    def __init__(self, config: Config, engine: Engine, offices: list[OfficeConfig] | None = None):
        self.config, self.engine = config, engine
        self.offices = offices or config.offices
        self.stopping = threading.Event()
        self.deciders = Deciders(max(self.offices, key=lambda o: o.limits.workers), config.archive.dir)
        self.loops = [OfficeLoop(self, office) for office in self.offices]
        self.scheduler: BackgroundScheduler | None = None

    def scheduled(self) -> None:
        for loop in self.loops:
            loop.scheduled()

    def start_scheduler(self) -> BackgroundScheduler:
        self.scheduler = BackgroundScheduler(timezone=self.offices[0].office.tz)
        self.scheduler.add_job(self.scheduled, "interval", seconds=TICK_SECONDS, id="tick", next_run_time=utcnow(),
                               coalesce=True, max_instances=1, misfire_grace_time=TICK_SECONDS)
        self.scheduler.start()
        return self.scheduler

    def stop(self, *_args) -> None:
        log.info("stop requested: finishing the current message")
        self.stopping.set()
        for loop in self.loops:
            loop.nudge(b"x")

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> None:
        with exclusive(self.engine):
            threads = [threading.Thread(target=loop.run, name=f"office-{loop.office.id}", daemon=True)
                       for loop in self.loops]
            self.start_scheduler()
            try:
                for thread in threads:
                    thread.start()
                while any(t.is_alive() for t in threads):
                    for thread in threads:
                        thread.join(timeout=0.5)
            finally:
                self.stopping.set()
                self.scheduler.shutdown(wait=True)
                self.deciders.close()
        log.info("mailbot stopped")
