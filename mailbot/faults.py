"""Test-only fault points, driven by the environment, read once at import:

- `MAILBOT_CRASH_AT=<name>`: the process SIGKILLs itself at `crash_point(name)`;
- `MAILBOT_HANG_AT=<name>`: it sleeps for an hour there instead;
- `MAILBOT_RAISE_AT=<name>`: it raises `Injected` there (an unexpected error, as a bug would);
- `MAILBOT_DISK_FULL_AT=<name>`: it raises the error SQLite gives when the disk is full;
- `MAILBOT_FAULT_MARK=<text>`: only when the data passed to the point contains that text.

The fault-injection suite uses these to prove that a power cut, a stuck parser or a bug at any
step loses nothing. Unset (always, in production) they cost one string comparison.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import time

_CRASH = os.environ.get("MAILBOT_CRASH_AT", "")
_HANG = os.environ.get("MAILBOT_HANG_AT", "")
_RAISE = os.environ.get("MAILBOT_RAISE_AT", "")
_DISK_FULL = os.environ.get("MAILBOT_DISK_FULL_AT", "")
_MARK = os.environ.get("MAILBOT_FAULT_MARK", "").encode()


class Injected(RuntimeError):
    """The error MAILBOT_RAISE_AT puts at a fault point."""


def _marked(data: bytes | None) -> bool:
    return not _MARK or (data is not None and _MARK in data)


def crash_point(name: str, data: bytes | None = None) -> None:
    if _CRASH == name and _marked(data):
        os.kill(os.getpid(), signal.SIGKILL)
    if _HANG == name and _marked(data):
        time.sleep(3600)
    if _RAISE == name and _marked(data):
        raise Injected(f"fault injected at {name}")
    if _DISK_FULL == name and _marked(data):
        from sqlalchemy.exc import OperationalError

        raise OperationalError("(fault point)", None, sqlite3.OperationalError("database or disk is full"))
