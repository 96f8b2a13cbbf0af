"""Real mail servers for tests, benchmarks and fault-injection scripts.

Nothing here depends on pytest, so ``bench/`` and ad-hoc scripts can reuse it:

    from tests.servers import Dovecot, SmtpCapture

    with Dovecot(Path(tempfile.mkdtemp())) as imap, SmtpCapture() as smtp:
        account = imap.add_user("office@example.test", "secret")
        account.append(raw_bytes)
        ...

``Dovecot`` runs the Debian ``dovecot`` binary with a private config whose every path
(base_dir, state_dir, log, maildirs, passwd-file) lives under the given root, listening on
127.0.0.1 only. ``SmtpCapture`` is an aiosmtpd server on 127.0.0.1 that keeps every message
it accepts and can be told to misbehave (4xx/5xx replies, dropped connections, down, and
NetEase's ``554 DT:SPM`` to a burst). ``NetEaseFront`` is a loopback proxy in front of Dovecot
that refuses SELECT with ``NO SELECT Unsafe Login`` until the client has sent ID, as 126.com does.
Slow and silent peers: ``Tarpit`` accepts TCP and never answers, ``Dripper`` drips a banner one
byte every N s, ``DripProxy`` sits in front of Dovecot and drips its answers (e.g. a message body).

Observing what an IMAP client sent: the config logs every post-login command
(``log_debug = event=imap_command_finished``, one ``Command finished: SELECT INBOX`` line
each) and every ID command's fields (``imap_id_log = *``, ``ID sent: name=mailbot`` -- logged
by imap-login when sent before LOGIN, by the imap process after). ``Dovecot.sessions(user)``
parses that log into one ``ImapSession`` per connection. Helper connections opened by this
module come from 127.0.0.2 and are left out of ``sessions()`` by default.
"""

from __future__ import annotations

import atexit
import datetime as dt
import email
import email.policy
import grp
import imaplib
import ipaddress
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from imap_tools import MailBoxUnencrypted

# aiosmtpd logs a deprecation warning of its own making on every successful AUTH.
logging.getLogger("mail.log").addFilter(
    lambda record: "login_data is deprecated" not in record.getMessage())

DOVECOT_BINARY = Path("/usr/sbin/dovecot")
LOOPBACK = "127.0.0.1"
HELPER_SOURCE_IP = "127.0.0.2"  # test-side IMAP connections come from here


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- Dovecot

_live_dovecots: set[Dovecot] = set()


@atexit.register
def _stop_leftover_dovecots() -> None:
    for server in list(_live_dovecots):
        try:
            server.stop()
        except Exception:
            server.kill()


@dataclass
class ImapSession:
    """One IMAP connection as seen in Dovecot's log."""

    session_id: str
    user: str
    remote_ip: str
    pre_login_ids: list[str] = field(default_factory=list)  # ID fields sent before LOGIN
    commands: list[str] = field(default_factory=list)  # post-login, e.g. 'SELECT INBOX'
    ids: list[str] = field(default_factory=list)  # ID fields sent after LOGIN
    disconnected: bool = False

    @property
    def verbs(self) -> list[str]:
        """Command names in the order sent, LOGIN included: ['ID', 'LOGIN', 'SELECT', 'UID FETCH']."""
        names = ["ID"] * len(self.pre_login_ids) + ["LOGIN"]
        for line in self.commands:
            words = line.split()
            if not words:
                continue
            name = words[0].upper()
            if name == "UID" and len(words) > 1:
                name = f"UID {words[1].upper()}"
            names.append(name)
        return names


_LOGIN_RE = re.compile(
    r"imap-login: Info: Login: user=<(?P<user>[^>]*)>.*?rip=(?P<rip>[^,]+),.*session=<(?P<sid>[^>]+)>"
)
_PRELOGIN_ID_RE = re.compile(
    r"imap-login: Info: ID sent: (?P<fields>.*): user=<[^>]*>,.*session=<(?P<sid>[^>]+)>"
)
_IMAP_RE = re.compile(
    r"imap\((?P<user>[^)]*)\)<\d+><(?P<sid>[^>]+)>: \w+: (?P<msg>.*)$"
)


class _HelperIMAP4(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(HELPER_SOURCE_IP, 0)
        )


class HelperMailBox(MailBoxUnencrypted):
    """MailBoxUnencrypted whose connection comes from 127.0.0.2, so ``sessions()`` can tell it apart."""

    def _get_mailbox_client(self) -> imaplib.IMAP4:
        return _HelperIMAP4(self._host, self._port, self._timeout)


class Account:
    """A Dovecot user plus test-side helpers; every helper call opens its own connection."""

    def __init__(self, server: Dovecot, user: str, password: str):
        self.server = server
        self.user = user
        self.password = password

    host = property(lambda self: self.server.host)
    port = property(lambda self: self.server.port)
    tls_port = property(lambda self: self.server.tls_port)

    def __repr__(self) -> str:
        return f"Account({self.user!r} @ {self.host}:{self.port})"

    def client(self, folder: str | None = "INBOX") -> HelperMailBox:
        return self.server.client(self.user, folder)

    def append(self, raw: bytes, folder: str = "INBOX", flags: tuple[str, ...] = (), date=None) -> int:
        """APPEND ``raw`` to ``folder`` (created if missing); returns the new UID.

        ``date`` (an aware datetime) becomes the INTERNALDATE: when the mail "arrived"."""
        with self.client(None) as mb:
            if folder.upper() != "INBOX" and not mb.folder.exists(folder):
                mb.folder.create(folder)
            _, data = mb.append(raw, folder, dt=date, flag_set=flags or None)
        match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
        return int(match.group(1)) if match else -1

    def append_many(self, raws, folder: str = "INBOX", date=None) -> list[int]:
        """APPEND each of ``raws`` over ONE connection (a backlog of hundreds in a fraction of
        the time ``append`` takes, which logs in per message); returns the new UIDs."""
        uids = []
        with self.client(None) as mb:
            if folder.upper() != "INBOX" and not mb.folder.exists(folder):
                mb.folder.create(folder)
            for raw in raws:
                _, data = mb.append(raw, folder, dt=date)
                match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                uids.append(int(match.group(1)) if match else -1)
        return uids

    def append_all(self, items, folder: str = "INBOX") -> list[int]:
        """APPEND each (raw, date, flags) of ``items`` over ONE connection, in order: a lived-in
        mailbox of hundreds of mails, each with its own INTERNALDATE and flags."""
        uids = []
        with self.client(None) as mb:
            if folder.upper() != "INBOX" and not mb.folder.exists(folder):
                mb.folder.create(folder)
            for raw, date, flags in items:
                _, data = mb.append(raw, folder, dt=date, flag_set=list(flags) or None)
                match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
                uids.append(int(match.group(1)) if match else -1)
        return uids

    def listing(self) -> dict[str, list[tuple[str, tuple[str, ...], str]]]:
        """{folder: sorted (Message-ID, flags, INTERNALDATE)} of every folder, read without
        changing anything (BODY.PEEK, EXAMINE); \\Recent, which is per session, left out."""
        out = {}
        with self.client(None) as mb:
            for folder in [f.name for f in mb.folder.list()]:
                mb.folder.set(folder, readonly=True)
                typ, data = mb.client.uid("FETCH", "1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                found = []
                for item in data:
                    if not isinstance(item, tuple):
                        continue
                    flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()
                    date = re.search(rb'INTERNALDATE "([^"]+)"', item[0]).group(1).decode()
                    mid = item[1].decode(errors="replace").partition(":")[2].strip()
                    found.append((mid, tuple(sorted(f for f in flags if f != "\\Recent")), date))
                out[folder] = sorted(found)
        return out

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.client(folder) as mb:
            return sorted(int(uid) for uid in mb.uids())

    def messages(self, folder: str = "INBOX") -> list[bytes]:
        """Raw bytes of the messages now in ``folder``, in UID order (does not set \\Seen)."""
        with self.client(folder) as mb:
            _, data = mb.client.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
        found = []
        for item in data:
            if isinstance(item, tuple):
                uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
                found.append((uid, item[1]))
        return [raw for _, raw in sorted(found)]

    def folders(self) -> list[str]:
        with self.client(None) as mb:
            return [f.name for f in mb.folder.list()]

    def create_folder(self, name: str) -> None:
        with self.client(None) as mb:
            if not mb.folder.exists(name):
                mb.folder.create(name)

    def sessions(self, include_helpers: bool = False) -> list[ImapSession]:
        return self.server.sessions(self.user, include_helpers=include_helpers)

    def wait_for_sessions(self, count: int = 1, timeout: float = 5.0) -> list[ImapSession]:
        return self.server.wait_for_sessions(self.user, count, timeout)


class Dovecot:
    """A private Dovecot instance rooted at ``root`` (config, sockets, log and mail all inside).

    ``tls=True`` adds an implicit-TLS listener (``tls_port``) with a self-signed cert for
    ``localhost``/127.0.0.1; ``ssl_context()`` trusts it. The plain port then also offers STARTTLS.
    ``rawlog=True`` additionally records each post-login session's raw traffic under
    ``root/rawlog/<user>/`` (bodies included, so it is off by default).
    """

    host = LOOPBACK

    def __init__(self, root: Path, *, port: int | None = None, tls: bool = False,
                 rawlog: bool = False, binary: Path = DOVECOT_BINARY):
        self.root = Path(root).resolve()
        self.binary = Path(binary)
        self.tls = tls
        self.rawlog = rawlog
        self._pinned_port = port is not None
        self.port: int = port or 0
        self.tls_port: int | None = None
        self.users: dict[str, str] = {}
        self.conf_path = self.root / "dovecot.conf"
        self.log_path = self.root / "dovecot.log"
        self.mail_dir = self.root / "mail"
        self.passwd_dir = self.root / "passwd.d"  # one passwd-file per user, see _write_passwd
        self.cert_path = self.root / "cert.pem"
        self.key_path = self.root / "key.pem"
        self._stderr_path = self.root / "dovecot.stderr"
        self._proc: subprocess.Popen | None = None
        self._lock = threading.RLock()
        run_dir = self.root / "run"
        # Unix socket paths are limited to 108 bytes; keep base_dir short.
        if len(str(run_dir)) <= 70:
            self.base_dir = run_dir
        else:
            self.base_dir = Path(tempfile.mkdtemp(prefix="dovecot-run-"))
            self.base_dir.chmod(0o755)  # Dovecot's unprivileged processes use its sockets
        if os.geteuid() == 0:  # Dovecot refuses to run its login/mail processes as root
            self.login_user, self.internal_user, self.mail_user = "dovenull", "dovecot", "dovecot"
            self.internal_group = "dovecot"
        else:  # unprivileged: everything runs as ourselves
            me = pwd.getpwuid(os.geteuid()).pw_name
            self.login_user = self.internal_user = self.mail_user = me
            self.internal_group = grp.getgrgid(os.getegid()).gr_name
        entry = pwd.getpwnam(self.mail_user)
        self._mail_uid, self._mail_gid = entry.pw_uid, entry.pw_gid

    # -- lifecycle ---------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> Dovecot:
        """Start and wait until the IMAP greeting arrives. Keeps the ports of an earlier start."""
        with self._lock:
            if self.running:
                return self
            if not self.binary.exists():
                raise FileNotFoundError(f"{self.binary} not found: apt-get install dovecot-imapd")
            self._prepare_dirs()
            self._kill_stale()
            for attempt in range(5):
                if not self.port:
                    self.port = free_port()
                if self.tls and not self.tls_port:
                    self.tls_port = free_port()
                self._write_config()
                self._spawn()
                try:
                    self._wait_ready(timeout)
                    return self
                except _PortTaken:
                    if self._pinned_port or attempt == 4:
                        raise
                    self.port, self.tls_port = 0, None
            raise AssertionError("unreachable")

    def stop(self, grace: float = 2.0) -> None:
        """Stop cleanly and wait (~10-30 ms): every Dovecot process gets SIGTERM, so connected
        clients read ``* BYE Server shutting down.`` and mail processes close their mailboxes.
        Once no mail process is left (at most ``grace`` s) the rest of the process group is
        killed: the master would otherwise idle ~3 s in its shutdown wait."""
        with self._lock:
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                deadline = time.monotonic() + grace
                while time.monotonic() < deadline and proc.poll() is None:
                    if not [p for p in _group_members(proc.pid) if _comm(p) == "imap"]:
                        break
                    time.sleep(0.01)
            self._reap()

    def kill(self) -> None:
        """SIGKILL every Dovecot process: a crash, for fault injection (clients get no BYE)."""
        with self._lock:
            if self._proc is not None:
                self._reap()

    def restart(self, timeout: float = 10.0) -> Dovecot:
        self.stop()
        return self.start(timeout)

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        _live_dovecots.discard(self)
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        deadline = time.monotonic() + 5
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # orphans are reaped by init; wait until they are gone
        self._remove_locks()

    def _remove_locks(self) -> None:
        """Only call with no process of this instance alive."""
        (self.base_dir / "master.pid").unlink(missing_ok=True)
        # A master killed while updating its instance list leaves a dotlock that would stall
        # the next start until the lock goes stale.
        (self.root / "state" / "instances.lock").unlink(missing_ok=True)

    def _spawn(self) -> None:
        argv = [str(self.binary), "-F", "-c", str(self.conf_path)]
        setpriv = shutil.which("setpriv")
        if setpriv and threading.current_thread() is threading.main_thread():
            # If the test process dies without running atexit (SIGKILL), take Dovecot with it.
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self._stderr_path, "ab") as err:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        _live_dovecots.add(self)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            new_log = self._log_since(self._log_start)
            if self._proc.poll() is not None or "Fatal: " in new_log:
                output = self._stderr_path.read_text(errors="replace")[-2000:] + new_log[-3000:]
                self.kill()
                if "Address already in use" in output:
                    raise _PortTaken(output)
                raise RuntimeError(f"dovecot failed to start:\n{output}")
            if _greets(self.host, self.port) and (not self.tls_port or _accepts(self.host, self.tls_port)):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"dovecot did not greet on {self.host}:{self.port}:\n{self._log_tail()}")
            time.sleep(0.01)

    def _kill_stale(self) -> None:
        """A master left over from a crashed run with this very config (stale pid file)."""
        try:
            pid = int((self.base_dir / "master.pid").read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            cmdline = b""
        if str(self.conf_path).encode() in cmdline:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            deadline = time.monotonic() + 5
            while _group_members(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        self._remove_locks()

    # -- configuration -------------------------------------------------------------

    def _prepare_dirs(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # The mail and auth processes run as the mail user and must reach files under root
        # (tempfile.mkdtemp makes 0700 dirs). Grant traversal only, not listing.
        self.root.chmod(self.root.stat().st_mode | 0o111)
        for parent in self.root.parents:
            if os.geteuid() == 0 and not parent.stat().st_mode & 0o001:
                raise PermissionError(
                    f"{parent} is not traversable by the '{self.mail_user}' user; put the Dovecot "
                    f"root somewhere like tempfile.mkdtemp() under /tmp")
        for d in (self.base_dir, self.root / "state", self.mail_dir, self.root / "rawlog"):
            d.mkdir(exist_ok=True)
        for d in (self.mail_dir, self.root / "rawlog"):
            os.chown(d, self._mail_uid, self._mail_gid)
        self.passwd_dir.mkdir(exist_ok=True)
        self.passwd_dir.chmod(0o755)
        if self.tls and not self.cert_path.exists():
            _write_self_signed_cert(self.cert_path, self.key_path)

    def _write_config(self) -> None:
        if self.tls:
            tls_listener = f"""
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port}
    ssl = yes
  }}"""
        else:
            tls_listener = """
  inet_listener imaps {
    port = 0
  }"""
        ssl_settings = (f"ssl = yes\nssl_cert = <{self.cert_path}\nssl_key = <{self.key_path}"
                        if self.tls else "ssl = no")
        rawlog = f"rawlog_dir = {self.root}/rawlog/%u" if self.rawlog else ""
        chroot = "" if os.geteuid() == 0 else "\n  chroot ="  # only root may chroot
        self.conf_path.write_text(f"""\
# Written by tests/servers.py -- a private, loopback-only Dovecot for tests.
protocols = imap
listen = {self.host}
base_dir = {self.base_dir}
state_dir = {self.root}/state
log_path = {self.log_path}
info_log_path = {self.log_path}
debug_log_path = {self.log_path}
log_timestamp = "%Y-%m-%d %H:%M:%S "
default_login_user = {self.login_user}
default_internal_user = {self.internal_user}
default_internal_group = {self.internal_group}
first_valid_uid = 1
{ssl_settings}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd_dir}/%u
}}
userdb {{
  driver = static
  args = uid={self._mail_uid} gid={self._mail_gid} home={self.mail_dir}/%u
}}
mail_location = maildir:~/Maildir
mail_plugins =
mail_fsync = never
{rawlog}
# Log every ID the client sends, and every post-login command ("Command finished: ...").
imap_id_log = *
log_debug = event=imap_command_finished
protocol imap {{
  mail_max_userip_connections = 200
}}
service imap-login {{{chroot}
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}{tls_listener}
}}
# A socket nobody can use: the auth process then skips its brute-force penalty (2-15 s per
# failed login from one IP), logging one "net_connect_unix(anvil-auth-penalty)" Error line.
# A failed login still takes ~0.5 s (auth failures are flushed on a 0.5 s timer).
service anvil {{{chroot}
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")

    def _write_passwd(self, user: str, password: str) -> None:
        # One file per user: Dovecot did not see users added to one shared passwd-file in
        # quick succession (it re-checks a file's stat about once a second); a new path is
        # always read. (A password *change* may likewise take a second to be seen.)
        path = self.passwd_dir / user
        tmp = path.with_name(f".{user}.tmp")
        tmp.write_text(f"{user}:{{PLAIN}}{password}::::::\n")
        tmp.chmod(0o644)
        os.replace(tmp, path)

    # -- users and clients ----------------------------------------------------------

    def add_user(self, user: str, password: str) -> Account:
        """Create (or re-password) a user; effective immediately, no restart."""
        if re.search(r"[:/\s%]", user) or user.startswith(".") or re.search(r"[:\n]", password):
            raise ValueError("user may not contain ':', '/', '%', spaces; password no ':' or newline")
        with self._lock:
            self.users[user] = password
            self.passwd_dir.mkdir(parents=True, exist_ok=True)
            self._write_passwd(user, password)
            if self.rawlog:
                d = self.root / "rawlog" / user
                d.mkdir(parents=True, exist_ok=True)
                os.chown(d, self._mail_uid, self._mail_gid)
        return Account(self, user, password)

    def account(self, user: str) -> Account:
        return Account(self, user, self.users[user])

    def client(self, user: str, folder: str | None = "INBOX") -> HelperMailBox:
        """A logged-in imap_tools mailbox for test-side work; connects from 127.0.0.2."""
        return HelperMailBox(self.host, self.port, timeout=10).login(user, self.users[user], folder)

    def ssl_context(self) -> ssl.SSLContext:
        """Client context trusting this server's self-signed certificate (tls=True only)."""
        return ssl.create_default_context(cafile=str(self.cert_path))

    # -- log -------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match:
        """Block until a log line matches ``pattern`` (Dovecot's log process writes asynchronously)."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text())
            if match:
                return match
            if time.monotonic() > deadline:
                raise TimeoutError(f"no log line matching {pattern!r}:\n{self._log_tail()}")
            time.sleep(0.02)

    def sessions(self, user: str | None = None, include_helpers: bool = False) -> list[ImapSession]:
        """IMAP connections that logged in, oldest first, parsed from the log.

        A session still open, or closed a moment ago, may lack its last lines; wait for
        ``s.disconnected`` (or use ``wait_for_log``) before asserting on a finished one.
        """
        by_id: dict[str, ImapSession] = {}
        pre_login: dict[str, list[str]] = {}
        for line in self.log_text().splitlines():
            if m := _PRELOGIN_ID_RE.search(line):
                pre_login.setdefault(m["sid"], []).append(m["fields"])
            elif m := _LOGIN_RE.search(line):
                by_id[m["sid"]] = ImapSession(m["sid"], m["user"], m["rip"],
                                              pre_login.pop(m["sid"], []))
            elif (m := _IMAP_RE.search(line)) and m["sid"] in by_id:
                session, msg = by_id[m["sid"]], m["msg"]
                if msg.startswith("Command finished: "):
                    session.commands.append(msg.removeprefix("Command finished: ").rstrip())
                elif msg.startswith("ID sent: "):
                    session.ids.append(msg.removeprefix("ID sent: "))
                elif msg.startswith("Disconnected"):
                    session.disconnected = True
        return [s for s in by_id.values()
                if (user is None or s.user == user)
                and (include_helpers or s.remote_ip != HELPER_SOURCE_IP)]


    def wait_for_sessions(self, user: str, count: int = 1, timeout: float = 5.0,
                          include_helpers: bool = False) -> list[ImapSession]:
        """Block until ``count`` sessions of ``user`` have disconnected; returns those finished."""
        deadline = time.monotonic() + timeout
        while True:
            done = [s for s in self.sessions(user, include_helpers) if s.disconnected]
            if len(done) >= count:
                return done
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)} of {count} sessions of {user} finished:\n{self._log_tail()}")
            time.sleep(0.02)


class _PortTaken(RuntimeError):
    pass


def _greets(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            return s.recv(64).startswith(b"* OK")
    except OSError:
        return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # fields after "(comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


def _can_bind(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _write_self_signed_cert(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


# --------------------------------------------------------------------------- a NetEase-like front


UNSAFE_LOGIN = "NO SELECT Unsafe Login. Please contact kefu@188.com for help"
_TAGGED = re.compile(rb"^(?P<tag>[^\s(){%*\"\\\]]+) (?P<verb>[A-Za-z]+)(?: (?P<rest>.*))?$", re.S)
_LITERAL = re.compile(rb"\{(\d+)\+?\}$")


@dataclass
class FrontSession:
    """One client connection through a NetEaseFront: the verbs it sent, and what was refused."""

    verbs: list[str] = field(default_factory=list)
    id_sent: bool = False
    refused: list[str] = field(default_factory=list)  # verbs answered "Unsafe Login"


# --------------------------------------------------------------------------- fronts, slow and silent peers


class _Loopback:
    """A loopback listener with an accept thread; ``close()`` ends every connection at once."""

    host = LOOPBACK

    def __init__(self, port: int | None = None):
        self._listener = socket.create_server((self.host, port or 0))
        self.port = self._listener.getsockname()[1]
        self.accepted = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=type(self).__name__, daemon=True)
        self._thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _addr = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._open.add(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError

    def _upstream(self, client: socket.socket) -> socket.socket | None:
        """A proxy's second leg, to ``self.upstream``; None (and the client hung up) if it is down."""
        try:
            server = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            self._forget(client)
            return None
        server.settimeout(None)
        with self._lock:
            self._open.add(server)
        return server

    def _forget(self, *socks: socket.socket) -> None:
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            for sock in socks:
                if sock in self._open:
                    self._open.discard(sock)
                    sock.close()

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (Linux)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            socks = list(self._open)
        self._forget(*socks)
        self._thread.join(timeout=5)


class NetEaseFront(_Loopback):
    """A loopback IMAP proxy in front of Dovecot that behaves as imap.126.com / imap.163.com do:
    SELECT and EXAMINE are refused with ``NO SELECT Unsafe Login. Please contact kefu@188.com for
    help`` until the client has sent the RFC 2971 ID command. Everything else passes through.

    ``host``/``port`` are the front's; point the client there. ``sessions`` lists each connection.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, port: int | None = None):
        self.upstream = (upstream_host, upstream_port)
        self.sessions: list[FrontSession] = []
        super().__init__(port)

    def _serve(self, client: socket.socket) -> None:
        server = self._upstream(client)
        if server is None:
            return
        session = FrontSession()
        with self._lock:
            self.sessions.append(session)
        write_lock = threading.Lock()
        threading.Thread(target=self._down, args=(server, client, write_lock), daemon=True).start()
        self._up(client, server, session, write_lock)

    def _down(self, server: socket.socket, client: socket.socket, write_lock: threading.Lock) -> None:
        """Server to client, as it comes."""
        try:
            while chunk := server.recv(65536):
                with write_lock:
                    client.sendall(chunk)
        except OSError:
            pass
        finally:
            self._forget(client, server)

    def _up(self, client: socket.socket, server: socket.socket, session: FrontSession,
            write_lock: threading.Lock) -> None:
        """Client to server, line by line (literals passed through), refusing SELECT before ID."""
        reader = client.makefile("rb")
        try:
            while line := reader.readline():
                literal = _LITERAL.search(line.rstrip(b"\r\n"))
                match = _TAGGED.match(line.rstrip(b"\r\n"))
                verb = match["verb"].decode().upper() if match else ""
                if verb == "UID" and match["rest"]:
                    verb = "UID " + match["rest"].split(b" ", 1)[0].decode().upper()
                if match:
                    session.verbs.append(verb)
                if verb == "ID":
                    session.id_sent = True
                if verb in ("SELECT", "EXAMINE") and not session.id_sent:
                    session.refused.append(verb)
                    with write_lock:
                        client.sendall(match["tag"] + b" " + UNSAFE_LOGIN.encode() + b"\r\n")
                    continue
                server.sendall(line)
                if literal:
                    server.sendall(reader.read(int(literal.group(1))))
        except OSError:
            pass
        finally:
            self._forget(client, server)


class Tarpit(_Loopback):
    """A server that accepts TCP connections and then says nothing, ever, reading nothing: an
    SMTP (or IMAP) server hung after accept. A client with only a per-read timeout waits for
    its banner until that timeout, and again on every retry. ``accepted`` counts connections."""

    def _serve(self, client: socket.socket) -> None:
        self._closed.wait()


class Dripper(_Loopback):
    """A server that answers each connection with ``payload`` one byte every ``interval``
    seconds, then holds it open in silence: an SMTP banner dripped, so that every read returns
    within any per-read timeout and the whole greeting takes len(payload) x interval."""

    def __init__(self, payload: bytes = b"220 slow.test ESMTP ready\r\n", interval: float = 1.0,
                 port: int | None = None):
        self.payload, self.interval = payload, interval
        self.sent = 0  # bytes dripped so far, all connections together
        super().__init__(port)

    def _serve(self, client: socket.socket) -> None:
        try:
            for byte in self.payload:
                client.sendall(bytes([byte]))
                self.sent += 1
                if self._closed.wait(self.interval):
                    return
        except OSError:
            return
        self._closed.wait()


class DripProxy(_Loopback):
    """A TCP proxy in front of a server (Dovecot) that passes the client's bytes on as they come
    and drips the server's back one byte every ``interval`` seconds: from the first byte
    (``trigger=None``), or once the client has sent something matching ``trigger`` (e.g.
    ``rb"BODY\\.PEEK\\[\\]"``: a message body delivered a byte at a time, after a normal login).
    Set ``dripping = False`` and new connections pass at full speed. ``dripped`` counts the
    connections that dripped."""

    def __init__(self, upstream_host: str, upstream_port: int, *, interval: float = 1.0,
                 trigger: bytes | None = None, port: int | None = None):
        self.upstream = (upstream_host, upstream_port)
        self.interval = interval
        self.trigger = re.compile(trigger) if trigger else None
        self.dripping = True
        self.dripped = 0
        super().__init__(port)

    def _serve(self, client: socket.socket) -> None:
        server = self._upstream(client)
        if server is None:
            return
        drip = threading.Event()
        if self.dripping and self.trigger is None:
            drip.set()
            self.dripped += 1
        threading.Thread(target=self._down, args=(server, client, drip), daemon=True).start()
        self._up(client, server, drip)

    def _up(self, client: socket.socket, server: socket.socket, drip: threading.Event) -> None:
        seen = b""
        try:
            while chunk := client.recv(65536):
                if self.dripping and self.trigger is not None and not drip.is_set():
                    seen = (seen + chunk)[-4096:]
                    if self.trigger.search(seen):
                        drip.set()
                        self.dripped += 1
                server.sendall(chunk)
        except OSError:
            pass
        finally:
            self._forget(client, server)

    def _down(self, server: socket.socket, client: socket.socket, drip: threading.Event) -> None:
        try:
            while chunk := server.recv(65536):
                if not drip.is_set():
                    client.sendall(chunk)
                    continue
                for byte in chunk:
                    client.sendall(bytes([byte]))
                    if self._closed.wait(self.interval):
                        return
        except OSError:
            pass
        finally:
            self._forget(client, server)


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class CapturedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    message: EmailMessage  # parsed with email.policy.default
    auth_user: str | None  # login used with AUTH, None without


@dataclass
class _Fault:
    kind: str  # "reply" or "drop"
    stage: str  # "connect", "mail", "rcpt", "data"
    reply: str = ""
    only: frozenset[str] | None = None  # rcpt stage: only these recipients
    remaining: int | None = None  # None: until normal()


class _Handler:
    def __init__(self, capture: SmtpCapture):
        self.capture = capture

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if reply := self.capture._fault_reply("mail"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if reply := self.capture._fault_reply("rcpt", address):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.capture._take_fault("drop", "data"):
            server.transport.close()  # the reply below goes nowhere
            return "421 closing"
        if reply := self.capture._fault_reply("data") or self.capture._burst_reply():
            return reply
        if self.capture.before_accept is not None:  # e.g. fill the client's disk before it hears "250"
            self.capture.before_accept(envelope)
        self.capture._record(session, envelope)
        return "250 OK: queued"


class _Controller(Controller):
    def __init__(self, capture: SmtpCapture, port: int):
        self.capture = capture
        super().__init__(_Handler(capture), hostname=LOOPBACK, port=port,
                         server_hostname="smtp.test", ready_timeout=10)

    def factory(self):
        capture = self.capture
        kwargs = dict(self.SMTP_kwargs, auth_require_tls=False, auth_required=capture.auth_required)
        if capture.auth is not None:
            kwargs["authenticator"] = capture._authenticate
        return _SMTP(self.handler, capture, **kwargs)


class _SMTP(SMTP):
    def __init__(self, handler, capture: SmtpCapture, *, auth_required: bool, **kwargs):
        super().__init__(handler, auth_required=False, **kwargs)
        # Set after construction: aiosmtpd warns (UserWarning) about AUTH without TLS, which
        # is what we want on loopback.
        self._auth_required = auth_required
        self._capture = capture

    def connection_made(self, transport):
        super().connection_made(transport)
        self._capture.connections += 1
        if self._capture._take_fault("drop", "connect"):
            transport.close()


class SmtpCapture:
    """aiosmtpd on 127.0.0.1 keeping every accepted message; fault modes switch at runtime.

    ``auth=(user, password)`` advertises AUTH PLAIN/LOGIN (no TLS needed) accepting only that
    pair; ``auth_required`` makes MAIL fail with 530 before AUTH. Starts on construction.
    """

    host = LOOPBACK

    def __init__(self, *, port: int | None = None, auth: tuple[str, str] | None = None,
                 auth_required: bool = False):
        self.port = port or free_port()
        self.auth = auth
        self.auth_required = auth_required
        self._messages: list[CapturedMessage] = []
        self._cond = threading.Condition()
        self._fault: _Fault | None = None
        self._burst: tuple[int, float, str] | None = None  # (messages, seconds, reply)
        self._accepted_at: list[float] = []
        self.spam_refused = 0  # DATA commands refused by the burst mode
        self.connections = 0  # SMTP connections accepted so far
        self.before_accept = None  # called with the envelope just before a message is accepted
        self._controller: _Controller | None = None
        self.up()

    def __enter__(self) -> SmtpCapture:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- captured mail ---------------------------------------------------------------

    @property
    def messages(self) -> list[CapturedMessage]:
        with self._cond:
            return list(self._messages)

    def wait_for(self, n: int = 1, timeout: float = 5.0) -> list[CapturedMessage]:
        """Block until at least ``n`` messages were captured; returns them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= n, timeout):
                raise TimeoutError(f"expected {n} message(s), got {len(self._messages)} in {timeout}s")
            return list(self._messages)

    def clear(self) -> None:
        with self._cond:
            self._messages.clear()

    def _record(self, session, envelope) -> None:
        raw = envelope.original_content or envelope.content
        auth_user = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            auth_user = session.auth_data.login.decode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        with self._cond:
            self._accepted_at.append(time.time())
            self._messages.append(CapturedMessage(envelope.mail_from, tuple(envelope.rcpt_tos),
                                                  raw, message, auth_user))
            self._cond.notify_all()

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and (auth_data.login.decode(), auth_data.password.decode()) == self.auth)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    # -- fault modes -------------------------------------------------------------------

    def normal(self) -> None:
        """Accept everything again (does not bring a down() server back; use up())."""
        with self._cond:
            self._fault = None
            self._burst = None

    def refuse_temporarily(self, code: int = 451, text: str = "4.3.0 Try again later", *,
                           stage: str = "rcpt", only=None, times: int | None = None) -> None:
        """Answer ``code text`` at MAIL, RCPT or DATA (after the content was sent).

        smtplib.sendmail then raises SMTPSenderRefused / SMTPRecipientsRefused (all recipients
        refused) / SMTPDataError. ``only`` limits a RCPT fault to those addresses; ``times``
        makes it apply to that many commands, then accept again.
        """
        self._set_reply(code, text, stage, only, times, range(400, 500))

    def refuse_permanently(self, code: int = 554, text: str = "DT:SPM 163 smtp, message rejected as spam", *,
                           stage: str = "data", only=None, times: int | None = None) -> None:
        """Like refuse_temporarily with a 5xx; the default imitates 126.com/163.com's spam rejection."""
        self._set_reply(code, text, stage, only, times, range(500, 600))

    def refuse_bursts(self, messages: int, seconds: float = 60, code: int = 554,
                      text: str = "DT:SPM 126 smtp2, message rejected as spam") -> None:
        """NetEase's outbound spam rule: once ``messages`` mails were accepted within ``seconds``,
        each further DATA is answered ``code text`` until the window has room again. Counted in
        wall-clock time (time.time), so a test may move it with time-machine."""
        with self._cond:
            self._burst = (messages, seconds, f"{code} {text}")

    def _burst_reply(self) -> str | None:
        with self._cond:
            if self._burst is None:
                return None
            limit, seconds, reply = self._burst
            now = time.time()
            if sum(1 for t in self._accepted_at if now - seconds < t <= now) < limit:
                return None
            self.spam_refused += 1
            return reply

    def drop_connections(self, stage: str = "connect", times: int | None = None) -> None:
        """Close the socket right after accepting it (``connect``: smtplib.SMTP() raises
        SMTPServerDisconnected) or after the message content was received (``data``: sendmail
        raises SMTPServerDisconnected; nothing is captured)."""
        if stage not in ("connect", "data"):
            raise ValueError("stage must be 'connect' or 'data'")
        with self._cond:
            self._fault = _Fault("drop", stage, remaining=times)

    def down(self) -> None:
        """Stop listening (connects get ConnectionRefusedError); up() reopens the same port."""
        with self._cond:
            controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def up(self) -> None:
        with self._cond:
            if self._controller is not None:
                return
        deadline = time.monotonic() + 5
        while not _can_bind(self.host, self.port):  # e.g. a connection from before down()
            if time.monotonic() > deadline:
                raise OSError(f"SMTP capture port {self.port} is taken")
            time.sleep(0.05)
        controller = _Controller(self, self.port)
        controller.start()
        with self._cond:
            self._controller = controller

    def stop(self) -> None:
        self.down()

    @property
    def is_up(self) -> bool:
        return self._controller is not None

    def _set_reply(self, code, text, stage, only, times, allowed) -> None:
        if code not in allowed:
            raise ValueError(f"code {code} not in {allowed.start}..{allowed.stop - 1}")
        if stage not in ("mail", "rcpt", "data"):
            raise ValueError("stage must be 'mail', 'rcpt' or 'data'")
        only_set = frozenset(only) if only is not None else None
        with self._cond:
            self._fault = _Fault("reply", stage, f"{code} {text}", only_set, times)

    def _take_fault(self, kind: str, stage: str, address: str | None = None) -> _Fault | None:
        with self._cond:
            fault = self._fault
            if fault is None or fault.kind != kind or fault.stage != stage:
                return None
            if fault.only is not None and address not in fault.only:
                return None
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._fault = None
            return fault

    def _fault_reply(self, stage: str, address: str | None = None) -> str | None:
        fault = self._take_fault("reply", stage, address)
        return fault.reply if fault else None
