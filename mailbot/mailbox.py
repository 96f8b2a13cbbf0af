"""The office mailbox over IMAP (imap-tools), as the flow needs it.

The UID SEARCH of the watched folder is the source of truth: handled mail is moved out, so
what remains is what still needs handling; \\Seen is never relied on nor changed (BODY.PEEK).
NetEase (126/163) refuses SELECT from a client that has not sent the RFC 2971 ID command.
"""
from __future__ import annotations

import datetime as dt
import imaplib
import logging
import time
import re
import select
import socket
import ssl
from dataclasses import dataclass
from typing import Iterator

from imap_tools import MailBox, MailBoxStartTls, MailBoxUnencrypted
from imap_tools.utils import encode_folder

from .config import Imap

log = logging.getLogger("mailbot.mailbox")
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED", "LOGOUT"))
_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


def _internaldate(line: bytes) -> dt.datetime:
    parsed = imaplib.Internaldate2tuple(line)
    if parsed is None:
        return dt.datetime.now(dt.timezone.utc)
    return dt.datetime.fromtimestamp(time.mktime(parsed), dt.timezone.utc)


@dataclass
class Fetched:
    folder: str
    uidvalidity: int
    uid: int
    raw: bytes
    arrived: dt.datetime  # the server's INTERNALDATE: when the mail reached the mailbox
    truncated: bool = False  # only the header was fetched: the mail is over the size limit


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Mailbox:
    """One logged-in IMAP session on the watched folder."""

    def __init__(self, cfg: Imap):
        self.cfg = cfg
        self.box: MailBox | None = None
        self.capabilities: set[str] = set()
        self.uidvalidity = 0
        self.id_sent = False

    # -- session -------------------------------------------------------------------------------
    def open(self) -> "Mailbox":
        cfg = self.cfg
        if cfg.security == "ssl":
            box = MailBox(cfg.host, cfg.port, timeout=cfg.timeout_seconds, ssl_context=cfg.ssl_context())
        elif cfg.security == "starttls":
            box = MailBoxStartTls(cfg.host, cfg.port, timeout=cfg.timeout_seconds, ssl_context=cfg.ssl_context())
        else:
            box = MailBoxUnencrypted(cfg.host, cfg.port, timeout=cfg.timeout_seconds)
        self.box = box
        box.login(cfg.user, cfg.password() or "", initial_folder=None)
        self._refresh_capabilities()
        self._send_id()
        for folder in {cfg.processed_folder, cfg.quarantine_folder} | ({cfg.sent_folder} if cfg.sent_folder else set()):
            if not box.folder.exists(folder):
                box.folder.create(folder)
        self.select()
        return self

    def _refresh_capabilities(self) -> None:
        typ, data = self.box.client.capability()
        words = b" ".join(d for d in data if d).decode("ascii", "replace").upper().split()
        self.capabilities = set(words)

    def _send_id(self) -> None:
        """RFC 2971 ID, after LOGIN and before SELECT (NetEase: `NO SELECT Unsafe Login` otherwise)."""
        mode = self.cfg.id_command.enabled
        if mode == "never" or (mode == "auto" and "ID" not in self.capabilities):
            return
        fields = " ".join(f"{_quote(k)} {_quote(v)}" for k, v in self.cfg.id_command.fields.items())
        client = self.box.client
        typ, data = client._simple_command("ID", f"({fields})")
        client._untagged_response(typ, data, "ID")
        self.id_sent = typ == "OK"
        log.debug("IMAP ID sent: %s", typ)

    def select(self) -> int:
        self.box.folder.set(self.cfg.folder)
        typ, data = self.box.client.response("UIDVALIDITY")
        self.uidvalidity = int(data[0]) if data and data[0] else int(
            self.box.folder.status(self.cfg.folder, ["UIDVALIDITY"])["UIDVALIDITY"])
        for key in ("EXISTS", "RECENT"):  # counts of what is there now: the UID SEARCH that follows sees it
            self.box.client.untagged_responses.pop(key, None)
        return self.uidvalidity

    def close(self) -> None:
        if self.box is None:
            return
        try:
            self.box.logout()
        except Exception:  # the connection may already be gone; nothing to save
            pass
        self.box = None

    def __enter__(self) -> "Mailbox":
        return self if self.box is not None else self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------
    def pending(self) -> list[int]:
        """Every UID now in the watched folder, oldest first."""
        return sorted(int(u) for u in self.box.uids("ALL"))

    def sizes(self, uids: list[int]) -> dict[int, int]:
        typ, data = self.box.client.uid("FETCH", ",".join(map(str, uids)), "(UID RFC822.SIZE)")
        out = {}
        for item in data:
            line = item[0] if isinstance(item, tuple) else item
            uid, size = _FETCH_UID.search(line or b""), _FETCH_SIZE.search(line or b"")
            if uid and size:
                out[int(uid.group(1))] = int(size.group(1))
        return out

    def fetch(self, uids: list[int]) -> Iterator[Fetched]:
        """Raw bytes of `uids`, one FETCH per batch; leaves \\Seen alone."""
        if not uids:
            return
        typ, data = self.box.client.uid("FETCH", ",".join(map(str, uids)), "(UID INTERNALDATE BODY.PEEK[])")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH failed: {data!r}")
        for item in data:
            if isinstance(item, tuple):
                uid = _FETCH_UID.search(item[0])
                if uid:
                    yield Fetched(self.cfg.folder, self.uidvalidity, int(uid.group(1)), item[1],
                                  _internaldate(item[0]))

    def headers(self, uid: int) -> bytes:
        typ, data = self.box.client.uid("FETCH", str(uid), "(UID BODY.PEEK[HEADER])")
        return next((item[1] for item in data if isinstance(item, tuple)), b"")

    # -- writing ------------------------------------------------------------------------------
    def move(self, uid: int, folder: str) -> None:
        """MOVE where offered; else COPY, flag \\Deleted and expunge only this UID (UIDPLUS)."""
        client = self.box.client
        target = encode_folder(folder)
        if "MOVE" in self.capabilities:
            typ, data = client.uid("MOVE", str(uid), target)
            if typ == "OK":
                return
            raise imaplib.IMAP4.error(f"MOVE failed: {data!r}")
        typ, data = client.uid("COPY", str(uid), target)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"COPY failed: {data!r}")
        client.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
        if "UIDPLUS" in self.capabilities:
            client.uid("EXPUNGE", str(uid))
        else:
            client.expunge()

    def append(self, folder: str, raw: bytes) -> None:
        self.box.append(raw, folder, flag_set=[r"\Seen"])

    def idle(self, seconds: float, wake: socket.socket | None = None) -> bool:
        """Wait up to `seconds` for the server to announce new mail, or for `wake` to be readable.

        Returns True when the server said something (new mail, probably); the caller then polls.
        """
        client = self.box.client
        # mail that arrived during our last commands was announced in their responses, which
        # imaplib kept aside; IDLE would not announce it again
        if client.untagged_responses.pop("EXISTS", None) or client.untagged_responses.pop("RECENT", None):
            return True
        sock = client.sock
        self.box.idle.start()
        try:
            if self._buffered():
                return True
            readable, _, _ = select.select([sock] + ([wake] if wake else []), [], [], seconds)
            return sock in readable
        finally:
            self.box.idle.stop()

    def _buffered(self) -> bool:
        """Has the server already said something that sits in a buffer select() cannot see
        (imaplib's reader may have read past the IDLE continuation, TLS may hold a record)?"""
        client = self.box.client
        sock = client.sock
        if getattr(sock, "pending", lambda: 0)():
            return True
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            return bool(client.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError, OSError):
            return False
        finally:
            sock.settimeout(timeout)
