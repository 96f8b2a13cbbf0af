"""Decisions in worker processes: every core reads workbooks, and a parser that crashes (C
code, memory) or hangs costs one message, which is quarantined, never the daemon.

The raw mail is archived here, before anything is committed about it: by the worker that
decides it, or (the worker died on it) by the daemon. `workers: 0` decides in the calling
process (tests, tiny installations).
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import queue
import resource
import signal
import sys
import threading
import time
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

from . import archive, message
from .config import OfficeConfig
from .decision import Decision, decide

log = logging.getLogger("mailbot.workers")
FAILURES = (BrokenProcessPool, FutureTimeout, CancelledError)


def _start_worker(max_bytes: int, parent: int) -> None:
    """Cap the worker's memory, and make it die with its parent: a daemon killed by SIGKILL
    (kill -9, the OOM killer) would otherwise leave its workers running forever, holding
    memory and the daemon's stdout/stderr open (whoever reads its log never sees the end)."""
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    if sys.platform.startswith("linux"):  # sent when the thread that started the worker ends: the loop's
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)


def _lost(office: OfficeConfig, item, exc: BaseException) -> Decision:
    """The worker died or hung on this message: quarantine it, as the one failure place would."""
    reason = "timeout" if isinstance(exc, FutureTimeout) else "worker_died"
    try:
        mail = message.parse(item.raw)
    except Exception:  # the parse may be what killed the worker
        mail = None
    log.error("message=<%s> uid=%s %s in the worker; quarantined",
              mail.message_id if mail else "?", item.uid, reason)
    return Decision("quarantined", "error", reason=reason, mail=mail,
                           detail=f"{reason}: the worker deciding this message {'hung' if reason == 'timeout' else 'died'}")


def _archived_decision(archive_dir: Path, office: OfficeConfig, item) -> tuple[str, Decision]:
    """The worker's job: keep the raw mail durably (before anything is committed about it),
    then decide; both off the daemon's thread."""
    return archive.put(archive_dir, item.raw), decide(office, item.raw, item.arrived, item.truncated,
                                                      claim="all" if item.again else None)


class _Stopped(Exception):
    pass


def _result(future, seconds: float, stop=None):
    """future.result(timeout=seconds), given up at once when stop() says so."""
    if stop is None:
        return future.result(timeout=seconds)
    deadline = time.monotonic() + seconds
    while True:
        if stop():
            raise _Stopped
        left = deadline - time.monotonic()
        try:
            return future.result(timeout=max(0.0, min(left, 0.2)))
        except FutureTimeout:
            if left <= 0.2:
                raise


class Deciders:
    """One pool for the whole daemon, shared by every office's loop (each call says which office).

    The workers are started by one thread of its own, which lives as long as the daemon: a
    worker is killed when the *thread* that started it ends (PR_SET_PDEATHSIG), and an office's
    loop ends whenever its lease is given back - that killed the workers under every other
    office's feet. A pool found broken when a job is handed to it (a worker killed while idle)
    is rebuilt there and then."""

    def __init__(self, office: OfficeConfig, archive_dir: Path):
        self.archive_dir = archive_dir
        self.count = office.limits.workers
        self.memory = office.limits.worker_memory_bytes
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()  # office loops share the pool; one of them may rebuild it
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()  # (office, item, handed) for the starter
        self._starter: threading.Thread | None = None

    def _submit(self, office: OfficeConfig, item):
        handed: Future = Future()  # becomes the pool's future for this job
        self._jobs.put((office, item, handed))
        with self._lock:
            if self._starter is None:
                self._starter = threading.Thread(target=self._start_jobs, name="deciders", daemon=True)
                self._starter.start()
        return handed.result()

    def _start_jobs(self) -> None:
        """The starter thread: hands each job to the pool (which starts its workers from here)."""
        while True:
            office, item, handed = self._jobs.get()
            try:
                handed.set_result(self._hand(office, item))
            except BaseException as exc:  # the caller sees it, as if it had submitted itself
                handed.set_exception(exc)

    def _hand(self, office: OfficeConfig, item):
        for attempt in (1, 2):
            with self._lock:
                if self._pool is None:
                    self._pool = ProcessPoolExecutor(
                        self.count, mp_context=multiprocessing.get_context("spawn"),
                        initializer=_start_worker, initargs=(self.memory, os.getpid()))
                pool = self._pool
            try:
                return pool.submit(_archived_decision, self.archive_dir, office, item)
            except BrokenProcessPool:
                if attempt == 2:
                    raise
                log.warning("the deciding workers' pool was broken (a worker was killed while idle); rebuilt")
                self._reset()

    def _reset(self) -> None:
        """Throw the pool away, killing a hung worker (the executor has no public way to)."""
        with self._lock:
            if self._pool is not None:
                for process in list(getattr(self._pool, "_processes", {}).values()):
                    process.kill()
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def decide(self, office: OfficeConfig, items: list) -> list[tuple[str, Decision]]:
        """(sha256 of the archived raw mail, decision) for `items`, in order."""
        return self.start(office, items)()

    def start(self, office: OfficeConfig, items: list) -> Callable[..., list[tuple[str, Decision]] | None]:
        """Hand `items` to the workers now; the returned function waits for their results, so
        the caller can commit one batch while the workers decide the next. Given `stop`, it
        gives up waiting (returns None) as soon as stop() says so."""
        if self.count == 0:
            return lambda stop=None: [_archived_decision(self.archive_dir, office, i) for i in items]
        futures = [self._submit(office, item) for item in items]
        return lambda stop=None: self._collect(office, items, futures, stop)

    def _collect(self, office: OfficeConfig, items: list, futures: list, stop=None):
        """After a worker failure every unfinished item is decided again alone, so only the
        message that caused it is quarantined."""
        out: list[tuple[str, Decision] | None] = []
        for future in futures:
            try:
                out.append(_result(future, office.limits.seconds_per_message, stop))
            except FAILURES:
                self._reset()
                out.append(None)
            except _Stopped:
                return None
        for index, result in enumerate(out):
            if result is None:
                try:
                    out[index] = self._alone(office, items[index], stop)
                except _Stopped:
                    return None
        return out

    def _alone(self, office: OfficeConfig, item, stop=None) -> tuple[str, Decision]:
        try:
            return _result(self._submit(office, item), office.limits.seconds_per_message, stop)
        except FAILURES as exc:
            self._reset()
            return archive.put(self.archive_dir, item.raw), _lost(office, item, exc)

    def kill(self) -> None:
        """Stopping: the workers' pending decisions are thrown away (nothing of them is
        committed; the mails are decided again at the next start), a hung worker with them."""
        self._reset()

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
