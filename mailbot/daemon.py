"""`mailbot run`: poll, handle, deliver, sleep only when idle; SIGTERM ends it between messages.

A lost connection or an unreachable server is logged and retried with backoff, never fatal.
"""
from __future__ import annotations

import logging
import signal
import socket
import threading

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from . import runner
from .config import Config, OfficeConfig
from .mailbox import Mailbox

log = logging.getLogger("mailbot.daemon")
MAX_BACKOFF_SECONDS = 300


class Daemon:
    def __init__(self, config: Config, office: OfficeConfig, engine: Engine):
        self.config, self.office, self.engine = config, office, engine
        self.stopping = threading.Event()
        self.box: Mailbox | None = None
        self.failures = 0
        self._wake_r, self._wake_w = socket.socketpair()  # wakes an IDLE wait on stop

    def stop(self, *_args) -> None:
        log.info("stop requested: finishing the current message")
        self.stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def _session(self) -> Mailbox:
        if self.box is None:
            self.box = Mailbox(self.office.imap).open()
            log.info("connected to %s as %s (ID sent: %s)", self.office.imap.host, self.office.imap.user, self.box.id_sent)
        return self.box

    def _drop_session(self) -> None:
        if self.box is not None:
            self.box.close()
            self.box = None

    def cycle(self) -> None:
        """One pass: drain the mailbox and deliver the outbox."""
        box = self._session()
        box.select()
        result = runner.drain(box, self.engine, self.config, self.office, stop=self.stopping.is_set)
        sent = runner.deliver(self.engine, self.office, box)
        if result.handled or sent:
            log.info("handled %d message(s), sent %d mail(s)", result.handled, sent)

    def wait(self) -> None:
        """Sleep until the next poll, woken early by IDLE where the server offers it."""
        seconds = self.office.imap.poll_seconds
        if self.box is not None and self.office.imap.idle and "IDLE" in self.box.capabilities:
            self.box.idle(min(seconds, 9 * 60), self._wake_r)  # renewed before the 10-minute mark
            return
        self.stopping.wait(seconds)

    def run(self) -> None:
        log.info("mailbot running for office %s (%s)", self.office.id, self.office.office.address)
        while not self.stopping.is_set():
            try:
                self.cycle()
                self.failures = 0
                if not self.stopping.is_set():
                    self.wait()
            except Exception as exc:  # never fatal: log, back off, reconnect
                self.failures += 1
                delay = min(self.office.imap.poll_seconds * 2 ** (self.failures - 1), MAX_BACKOFF_SECONDS)
                expected = isinstance(exc, (*runner.NETWORK_ERRORS, OperationalError))
                log.log(logging.WARNING if expected else logging.ERROR, "poll failed (%s: %s); retrying in %.0f s",
                        type(exc).__name__, exc, delay, exc_info=not expected)
                self._drop_session()
                self.stopping.wait(delay)
        self._drop_session()
        log.info("mailbot stopped")
