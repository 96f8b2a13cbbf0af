"""The one place that tells a bad message from a broken world (Mailman's runner is the model).

Handling a message passes named steps (archive, decide, store, receipt, move). An unexpected
error in any of them is that message's fault: it is quarantined with the step named and the
loop goes on. An error of the infrastructure (the network, the database unreachable, the disk)
is nobody's message's fault: it backs the office off, and the message is tried again later.
"""
from __future__ import annotations

import contextlib
import imaplib
import ssl
from typing import Iterator

from imap_tools.errors import ImapToolsError
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, TimeoutError as PoolTimeout

from .errors import MailbotError

NETWORK_ERRORS = (OSError, ssl.SSLError, imaplib.IMAP4.error, imaplib.IMAP4.abort, ImapToolsError)
DATABASE_ERRORS = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)
STEPS_ZH = {"archive": "保存原始邮件", "decide": "读取和校验", "store": "登记入库", "receipt": "生成回执",
            "move": "移动邮件"}


class Infrastructure(MailbotError):
    """Base for conditions of the world, not of a message (e.g. the database file vanished)."""


def infrastructure(exc: BaseException) -> bool:
    return isinstance(exc, (*NETWORK_ERRORS, *DATABASE_ERRORS, Infrastructure))


class StepFailed(MailbotError):
    """An unexpected error in one named step of handling one message."""

    def __init__(self, step: str, cause: BaseException):
        self.step, self.cause = step, cause
        super().__init__(f"{step}: {type(cause).__name__}: {cause}")


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name the step whatever unexpected error escapes it; infrastructure errors pass as they are."""
    try:
        yield
    except StepFailed:
        raise
    except Exception as exc:
        if infrastructure(exc):
            raise
        raise StepFailed(name, exc) from exc
