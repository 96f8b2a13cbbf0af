"""Decisions in worker processes: every core reads workbooks, and a parser that crashes (C
code, memory) or hangs costs one message, which is quarantined, never the daemon.

`workers: 0` decides in the calling process (tests, tiny installations).
"""
from __future__ import annotations

import logging
import multiprocessing
import resource
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from . import intake, message
from .config import OfficeConfig

log = logging.getLogger("mailbot.workers")
FAILURES = (BrokenProcessPool, FutureTimeout, CancelledError)


def _limit_memory(max_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def _lost(office: OfficeConfig, item, exc: BaseException) -> intake.Decision:
    """The worker died or hung on this message: quarantine it, as the one failure place would."""
    reason = "timeout" if isinstance(exc, FutureTimeout) else "worker_died"
    try:
        mail = message.parse(item.raw)
    except Exception:  # the parse may be what killed the worker
        mail = None
    log.error("message=<%s> uid=%s %s in the worker; quarantined",
              mail.message_id if mail else "?", item.uid, reason)
    return intake.Decision("quarantined", "error", reason=reason, mail=mail,
                           detail=f"{reason}: the worker deciding this message {'hung' if reason == 'timeout' else 'died'}")


class Deciders:
    def __init__(self, office: OfficeConfig):
        self.office = office
        self.count = office.limits.workers
        self.seconds = office.limits.seconds_per_message
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.count, mp_context=multiprocessing.get_context("spawn"),
                initializer=_limit_memory, initargs=(self.office.limits.worker_memory_bytes,))
        return self._pool

    def _reset(self) -> None:
        """Throw the pool away, killing a hung worker (the executor has no public way to)."""
        if self._pool is not None:
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.kill()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _submit(self, item):
        return self._executor().submit(intake.decide, self.office, item.raw, item.arrived, item.truncated)

    def decide(self, items: list) -> list[intake.Decision]:
        """Decisions for `items`, in order. After a worker failure every unfinished item is
        decided again alone, so only the message that caused it is quarantined."""
        if self.count == 0:
            return [intake.decide(self.office, i.raw, i.arrived, i.truncated) for i in items]
        futures = [self._submit(item) for item in items]
        out: list[intake.Decision | None] = []
        for future in futures:
            try:
                out.append(future.result(timeout=self.seconds))
            except FAILURES:
                self._reset()
                out.append(None)
        for index, decision in enumerate(out):
            if decision is None:
                out[index] = self._alone(items[index])
        return out

    def _alone(self, item) -> intake.Decision:
        try:
            return self._submit(item).result(timeout=self.seconds)
        except FAILURES as exc:
            self._reset()
            return _lost(self.office, item, exc)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
