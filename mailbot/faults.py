"""Test-only fault points, driven by the environment, read once at import:

- `MAILBOT_CRASH_AT=<name>`: the process SIGKILLs itself at `crash_point(name)`;
- `MAILBOT_HANG_AT=<name>`: it sleeps for an hour there instead;
- `MAILBOT_FAULT_MARK=<text>`: only when the data passed to the point contains that text.

The fault-injection suite uses these to prove that a power cut or a stuck parser at any step
loses nothing. Unset (always, in production) they cost one string comparison.
"""
from __future__ import annotations

import os
import signal
import time

_CRASH = os.environ.get("MAILBOT_CRASH_AT", "")
_HANG = os.environ.get("MAILBOT_HANG_AT", "")
_MARK = os.environ.get("MAILBOT_FAULT_MARK", "").encode()


def _marked(data: bytes | None) -> bool:
    return not _MARK or (data is not None and _MARK in data)


def crash_point(name: str, data: bytes | None = None) -> None:
    if _CRASH == name and _marked(data):
        os.kill(os.getpid(), signal.SIGKILL)
    if _HANG == name and _marked(data):
        time.sleep(3600)
