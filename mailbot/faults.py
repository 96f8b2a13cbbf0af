"""Test-only crash points: `MAILBOT_CRASH_AT=<name>` makes the process SIGKILL itself there.

The fault-injection suite uses this to prove that a power cut at any step loses nothing.
"""
from __future__ import annotations

import os
import signal

_AT = os.environ.get("MAILBOT_CRASH_AT", "")


def crash_point(name: str) -> None:
    if _AT and _AT == name:
        os.kill(os.getpid(), signal.SIGKILL)
