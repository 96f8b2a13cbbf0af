"""The office mailbox over IMAP (imap-tools), as the flow needs it.

A UID SEARCH is the source of truth (above the high-water mark, mailbot.watch); a header and
BODYSTRUCTURE FETCH tells what is mailbot's before any body is downloaded; \\Seen is never
relied on nor changed (BODY.PEEK); mail that is not ours is never moved.
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
from typing import Callable, Iterator

from imap_tools import BaseMailBox
from imap_tools.errors import MailboxStarttlsError
from imap_tools.utils import check_command_status, encode_folder

from . import bodystructure
from .config import Imap
from .deadline import Watch

log = logging.getLogger("mailbot.mailbox")
imaplib.Commands.setdefault("ID", ("NONAUTH", "AUTH", "SELECTED", "LOGOUT"))
_FETCH_UID = re.compile(rb"UID (\d+)")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


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
    again: bool = False  # the clerk asked for it to be handled again (the reprocess folder)


@dataclass
class Glance:
    """What a header FETCH tells about one mail: enough to know whether it is ours."""

    uid: int
    arrived: dt.datetime
    size: int
    header: bytes
    parts: list  # claim.Part per attachment, from BODYSTRUCTURE (no data)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Watched:
    """imaplib whose socket the connection's Watch holds from the moment it exists, and lets go
    of with the session."""

    watch: Watch

    def shutdown(self):
        try:
            super().shutdown()
        finally:
            self.watch.close()


class _Plain(_Watched, imaplib.IMAP4):
    def __init__(self, watch: Watch, host: str, port: int, timeout: float):
        self.watch = watch
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout):
        sock = self.watch.connect(self.host or None, self.port, timeout)
        self.watch.at = "greeting"
        return sock


class _Tls(_Watched, imaplib.IMAP4_SSL):
    def __init__(self, watch: Watch, host: str, port: int, timeout: float, ssl_context):
        self.watch = watch
        super().__init__(host, port, ssl_context=ssl_context, timeout=timeout)

    def _create_socket(self, timeout):
        sock = self.watch.connect(self.host or None, self.port, timeout)
        self.watch.at = "TLS handshake"  # inside the deadline: the watch holds the TCP socket already
        sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
        self.watch.at = "greeting"
        return sock


class _Session(BaseMailBox):
    """imap-tools over a client made beforehand, inside the connect deadline."""

    def __init__(self, client: imaplib.IMAP4):
        self._client = client
        super().__init__()

    def _get_mailbox_client(self) -> imaplib.IMAP4:
        return self._client


class Mailbox:
    """One logged-in IMAP session on the watched folder."""

    def __init__(self, cfg: Imap):
        self.cfg = cfg
        self.box: BaseMailBox | None = None
        self.watch = Watch(f"IMAP {cfg.user}@{cfg.host}:{cfg.port}")
        self.capabilities: set[str] = set()
        self.uidvalidity = 0
        self.uidnext: int | None = None
        self.exists = 0  # messages in the selected folder when it was selected
        self.selected = cfg.folder
        self.readonly = False
        self.id_sent = False
        # the lease's fence (mailbot.lease.Keeper.fence): the seconds this process may still touch
        # the mailbox, or LeaseLost; asked before every MOVE, whose deadline ends with the lease
        self.fence: Callable[[], float] | None = None

    # -- session -------------------------------------------------------------------------------
    def open(self, *, readonly: bool = False) -> "Mailbox":
        """Log in, send ID, select the watched folder. `readonly` (the dry run): EXAMINE, and
        create no folder."""
        cfg = self.cfg
        password = cfg.password() or ""
        watch = self.watch = Watch(self.watch.peer)  # a fresh connection: a fresh watch
        with watch.stage("connect, LOGIN, ID, SELECT", cfg.deadline_seconds):
            try:
                if cfg.security == "ssl":
                    client = _Tls(watch, cfg.host, cfg.port, cfg.timeout_seconds, cfg.ssl_context())
                else:
                    client = _Plain(watch, cfg.host, cfg.port, cfg.timeout_seconds)
                watch.bind(client)
                if cfg.security == "starttls":
                    watch.at = "STARTTLS"
                    check_command_status(client.starttls(cfg.ssl_context()), MailboxStarttlsError)
            except BaseException:
                watch.close()
                raise
            box = self.box = _Session(client)
            try:
                watch.at = "LOGIN"
                box.login(cfg.user, password, initial_folder=None)
                watch.at = "CAPABILITY"
                self._refresh_capabilities()
                watch.at = "ID"
                self._send_id()
                folders = [cfg.processed_folder, cfg.quarantine_folder, cfg.reprocess_folder] + \
                    ([cfg.sent_folder] if cfg.sent_folder else [])
                watch.at = "LIST/CREATE"
                for folder in [] if readonly else folders:
                    if not box.folder.exists(folder):
                        box.folder.create(folder)
                self.readonly = readonly
                watch.at = "SELECT"
                self._select(cfg.folder)
            except BaseException:
                self.close()
                raise
        return self

    def _stage(self, name: str, size: int = 0, within: float | None = None):
        """One command's deadline: `imap.deadline_seconds`, longer by the bytes it carries;
        `within` (the lease's seconds left) at the most."""
        seconds = self.cfg.deadline_seconds + size / self.cfg.min_bytes_per_second
        return self.watch.stage(name, seconds if within is None else min(seconds, within))

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

    def select(self, folder: str | None = None) -> int:
        """SELECT (EXAMINE when read-only) `folder`, by default the watched one; its UIDVALIDITY."""
        folder = folder or self.cfg.folder
        with self._stage("SELECT"):
            return self._select(folder)

    def _select(self, folder: str) -> int:
        typ, counted = self.box.folder.set(folder, readonly=self.readonly)
        self.selected = folder
        self.exists = int(counted[0]) if counted and (counted[0] or b"").isdigit() else 0
        client = self.box.client
        typ, data = client.response("UIDVALIDITY")
        typ, following = client.response("UIDNEXT")
        if not (data and data[0]):
            status = self.box.folder.status(folder, ["UIDVALIDITY", "UIDNEXT"])
            data, following = [status["UIDVALIDITY"]], [status.get("UIDNEXT")]
        self.uidvalidity = int(data[0])
        self.uidnext = int(following[-1]) if following and following[-1] else None
        for key in ("EXISTS", "RECENT"):  # counts of what is there now: the UID SEARCH that follows sees it
            client.untagged_responses.pop(key, None)
        return self.uidvalidity

    def count(self, folder: str) -> int:
        """How many messages `folder` holds (STATUS: the selected folder stays selected)."""
        with self._stage("STATUS"):
            return int(self.box.folder.status(folder, ["MESSAGES"])["MESSAGES"])

    def close(self) -> None:
        if self.box is None:
            return
        try:
            with self.watch.stage("LOGOUT", min(self.cfg.deadline_seconds, 10)):
                self.box.logout()
        except Exception:  # the connection may already be gone; nothing to save
            pass
        finally:
            self.watch.close()
            self.box = None

    def __enter__(self) -> "Mailbox":
        return self if self.box is not None else self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------
    def pending(self) -> list[int]:
        """Every UID now in the selected folder, oldest first."""
        with self._stage("SEARCH"):
            return sorted(int(u) for u in self.box.uids("ALL"))

    def _search(self, criteria: str) -> list[int]:
        with self._stage("SEARCH"):
            typ, data = self.box.client.uid("SEARCH", criteria)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"SEARCH {criteria} failed: {data!r}")
        return sorted({int(u) for line in data if line for u in line.split()})

    def since(self, day: dt.date) -> list[int]:
        """UIDs whose INTERNALDATE falls on `day` or later (the server's date: filter exactly after)."""
        return self._search(f"SINCE {day.day}-{_MONTHS[day.month - 1]}-{day.year}")

    def above(self, uid: int) -> list[int]:
        """UIDs above `uid`. (`n:*` also returns the highest UID when it is below n: dropped.)"""
        return [u for u in self._search(f"UID {uid + 1}:*") if u > uid]

    def glance(self, uids: list[int]) -> list[Glance]:
        """Header, arrival, size and BODYSTRUCTURE of `uids`: never the bodies (BODY.PEEK: no \\Seen)."""
        if not uids:
            return []
        with self._stage(f"FETCH of {len(uids)} header(s)"):
            typ, data = self.box.client.uid("FETCH", ",".join(map(str, uids)),
                                            "(UID INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER])")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH failed: {data!r}")
        out = []
        for item in bodystructure.responses(data):
            header = item.get("BODY[HEADER]")
            if "UID" not in item or header is None:  # an unsolicited FETCH (flags changed meanwhile)
                continue
            out.append(Glance(int(item["UID"]), _internaldate(b'INTERNALDATE "' + item.get("INTERNALDATE", b"") + b'"'),
                              int(item.get("RFC822.SIZE", 0)), header, bodystructure.parts(item.get("BODYSTRUCTURE"))))
        return sorted(out, key=lambda g: g.uid)

    def fetch(self, uids: list[int], again: bool = False, size: int = 0) -> Iterator[Fetched]:
        """Raw bytes of `uids`, one FETCH per batch; leaves \\Seen alone. `size` (their
        RFC822.SIZE together) lengthens the deadline by what a slow link needs to carry them."""
        if not uids:
            return
        with self._stage(f"FETCH of {len(uids)} message(s), {size / 1e6:.1f} MB", size):
            typ, data = self.box.client.uid("FETCH", ",".join(map(str, uids)), "(UID INTERNALDATE BODY.PEEK[])")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH failed: {data!r}")
        for item in data:
            if isinstance(item, tuple):
                uid = _FETCH_UID.search(item[0])
                if uid:
                    yield Fetched(self.selected, self.uidvalidity, int(uid.group(1)), item[1],
                                  _internaldate(item[0]), again=again)

    # -- writing ------------------------------------------------------------------------------
    def move(self, uids: list[int], folder: str) -> None:
        """MOVE `uids` (one command) where offered; else COPY, flag \\Deleted and expunge only
        these UIDs (UIDPLUS)."""
        if self.readonly:
            raise imaplib.IMAP4.error("read-only session: no move")
        within = self.fence() if self.fence is not None else None  # LeaseLost: the mail stays where it is
        with self._stage(f"MOVE of {len(uids)} message(s)", within=within):
            self._move(",".join(map(str, uids)), folder)

    def _move(self, uids: str, folder: str) -> None:
        client = self.box.client
        target = encode_folder(folder)
        if "MOVE" in self.capabilities:
            typ, data = client.uid("MOVE", uids, target)
            if typ == "OK":
                return
            raise imaplib.IMAP4.error(f"MOVE failed: {data!r}")
        typ, data = client.uid("COPY", uids, target)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"COPY failed: {data!r}")
        client.uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)")
        if "UIDPLUS" in self.capabilities:
            client.uid("EXPUNGE", uids)
        else:
            client.expunge()

    def append(self, folder: str, raw: bytes) -> None:
        with self._stage("APPEND", len(raw)):
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
        with self._stage("IDLE"):
            self.box.idle.start()
        try:
            if self._buffered():
                return True
            readable, _, _ = select.select([sock] + ([wake] if wake else []), [], [], seconds)
            return sock in readable
        finally:
            with self._stage("IDLE DONE"):
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
