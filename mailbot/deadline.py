"""Whole-operation deadlines on IMAP and SMTP connections.

imaplib and smtplib time out per read only: a peer that drips a byte every 10 s never trips a
30-s timeout, and held `mailbot run` for as long as it liked. Here one watchdog thread shuts
down the socket of any operation that overruns its deadline; the blocked call then fails at
once, whatever it was doing (TCP, TLS handshake, banner, a FETCH literal, DATA). The watchdog
holds its own duplicate of the connection's descriptor, so it reaches the socket through TLS
wrapping and STARTTLS alike, and never a descriptor reused by someone else.

When the daemon stops, `hurry` caps every deadline, running or to come, at a few seconds away.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import socket
import threading
import time
import weakref
from typing import Iterator

log = logging.getLogger("mailbot.deadline")


class DeadlineExceeded(TimeoutError):
    """An operation ran past its deadline and its connection was dropped. A TimeoutError, so
    an OSError: every caller already treats it as the network failure it is (retried)."""

    def __init__(self, peer: str, stage: str, seconds: float, stopping: bool = False):
        self.peer, self.stage, self.seconds, self.stopping = peer, stage, seconds, stopping
        why = "cut short: mailbot is stopping" if stopping else f"exceeded its deadline of {seconds:.0f} s"
        super().__init__(f"{peer}: {stage} {why}; connection dropped")


class _Watchdog:
    """One thread for the process: the armed deadlines, the earliest first."""

    def __init__(self):
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, "Watch", str, float]] = {}
        self._tokens = itertools.count(1)
        self._cap: float | None = None  # stopping: nothing may run past this (monotonic)
        self._thread: threading.Thread | None = None

    def arm(self, watch: "Watch", stage: str, seconds: float) -> int:
        with self._cond:
            due = time.monotonic() + seconds
            if self._cap is not None:
                due = min(due, self._cap)
            token = next(self._tokens)
            self._armed[token] = (due, watch, stage, seconds)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="deadlines", daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._cond:
            self._armed.pop(token, None)

    def remaining(self, token: int) -> float:
        with self._cond:
            entry = self._armed.get(token)
            return max(0.0, entry[0] - time.monotonic()) if entry else 0.0

    def hurry(self, grace: float) -> None:
        with self._cond:
            self._cap = time.monotonic() + grace
            for token, (due, watch, stage, seconds) in list(self._armed.items()):
                self._armed[token] = (min(due, self._cap), watch, stage, seconds)
            self._cond.notify()

    def calm(self) -> None:
        with self._cond:
            self._cap = None

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (due, watch, stage, seconds) in list(self._armed.items()):
                    if due <= now:
                        del self._armed[token]
                        stopping = self._cap is not None and due >= self._cap
                        watch._expire(stage, seconds, stopping)
                upcoming = [entry[0] for entry in self._armed.values()]
                self._cond.wait(min(upcoming) - now if upcoming else None)


_watchdog = _Watchdog()


def hurry(grace: float) -> None:
    """Stopping: every operation, running or to come, ends within `grace` seconds."""
    _watchdog.hurry(grace)


def calm() -> None:
    """Stopped: deadlines are the configured ones again (a test runs several daemons)."""
    _watchdog.calm()


class Watch:
    """The deadlines of one connection. `attach` it to the socket as soon as the socket exists
    (before TLS); run each operation in `stage`; `close` it with the connection."""

    def __init__(self, peer: str):
        self.peer = peer
        self.at = ""  # the step inside the stage, for the log: banner, EHLO, AUTH, ...
        self.expired: DeadlineExceeded | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()
        self._token: int | None = None

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._close_fd()
            self._fd = os.dup(sock.fileno())

    def connect(self, host: str, port: int, timeout: float | None, source_address=None) -> socket.socket:
        """TCP connect within what is left of the deadline, then attach."""
        self.at = "TCP connect"
        left = self.remaining()
        if left != float("inf"):
            timeout = max(min(timeout or left, left), 0.001)
        sock = socket.create_connection((host, port), timeout, source_address)
        # smtplib and imaplib write a mail in two pieces (the end of DATA on its own, outbox;
        # an APPEND's literal, then its CRLF): with Nagle's algorithm the second waited for the
        # ACK of the first, which the peer delays (40 ms a mail on Linux)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.attach(sock)
        return sock

    def remaining(self) -> float:
        return _watchdog.remaining(self._token) if self._token is not None else float("inf")

    @contextlib.contextmanager
    def stage(self, name: str, seconds: float) -> Iterator["Watch"]:
        """Run one operation within `seconds`; past it the connection is dropped and the
        operation's failure surfaces as DeadlineExceeded (an operation that still completed
        returns normally; the connection is dead all the same)."""
        if self.expired is not None:
            raise self.expired
        outer, self.at = self._token, ""
        token = self._token = _watchdog.arm(self, name, seconds)
        try:
            yield self
        except BaseException as exc:
            _watchdog.disarm(token)
            if self.expired is not None and exc is not self.expired:
                raise self.expired from exc
            raise
        finally:
            _watchdog.disarm(token)
            self._token = outer  # a stage inside another (LOGOUT while a failed connect cleans up)

    def _expire(self, stage: str, seconds: float, stopping: bool) -> None:
        """In the watchdog's thread: drop the connection."""
        where = f"{stage} ({self.at})" if self.at and self.at != stage else stage
        self.expired = DeadlineExceeded(self.peer, where, seconds, stopping)
        with self._lock:
            if self._fd is None:
                return
            sock = socket.socket(fileno=self._fd)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.detach()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """The connection is closed: let go of the watchdog's descriptor (until then the
        peer would not see the connection end)."""
        with self._lock:
            self._close_fd()

    def bind(self, owner: object) -> None:
        """Close with `owner` at the latest, should nobody call close()."""
        weakref.finalize(owner, self.close)
