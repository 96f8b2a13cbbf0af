"""The database: engine set-up, migrations, and the transactions the flow commits.

SQLite is tuned so the CLI can read while the daemon writes: WAL (readers never block the
writer), synchronous=FULL (a commit survives a power cut), a busy timeout, and write
transactions that start with BEGIN IMMEDIATE so two writers queue instead of failing.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import weakref
from pathlib import Path
from typing import Iterator

from sqlalchemy import event, func, inspect, select
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session, create_engine

from .errors import MailbotError
from .guard import Infrastructure
from .models import Message, Outgoing, Row, Submission

log = logging.getLogger("mailbot.store")
BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_SECONDS = 5
PG_UNACKED_MS = 10_000


def open_engine(url: str) -> Engine:
    """Create the engine (and the SQLite file's directory); does not migrate."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # a server gone away (restarted, unreachable) fails a connect within PG_CONNECT_SECONDS and a
        # statement the server no longer acknowledges within PG_UNACKED_MS, instead of the kernel's minutes
        args = {"connect_timeout": PG_CONNECT_SECONDS, "tcp_user_timeout": PG_UNACKED_MS} \
            if parsed.get_backend_name() == "postgresql" else {}
        return create_engine(url, pool_pre_ping=True, hide_parameters=True, connect_args=args)
    if parsed.database and parsed.database != ":memory:":
        _owner_only(Path(parsed.database))
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
                           hide_parameters=True)  # an error's text must not quote a row (names, ID numbers)
    if parsed.database and parsed.database != ":memory:":
        _remember_file(engine, Path(parsed.database))

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _owner_only(database: Path) -> None:
    """Create the SQLite file's directory 0700 and the file 0600 whatever the umask: SQLite
    gives its -wal and -shm files the database file's mode."""
    database.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass

class DatabaseLost(Infrastructure):
    """The SQLite file at the configured path is gone, or is another file than the one opened:
    whatever is written now is written where nobody will find it again."""

    def __init__(self, path: str, how: str):
        self.path, self.how = path, how
        self.what = f"数据库文件 {path} {how}"  # what the office's alert says
        super().__init__(f"{self.what}，与本进程打开的不是同一个文件：此后写入的记录都会丢失。"
                         "mailbot 已停止收件（邮件留在收件箱中，不会丢失）；请查明原因、恢复数据库文件后重启 mailbot。")


_FILES: "weakref.WeakKeyDictionary[Engine, tuple[Path, int, int]]" = weakref.WeakKeyDictionary()


def _remember_file(engine: Engine, path: Path) -> None:
    info = path.stat()
    _FILES[engine] = (path.absolute(), info.st_dev, info.st_ino)


def check_file(engine: Engine) -> None:
    """Raise DatabaseLost unless the SQLite file at the path is the one this engine opened (its
    device and inode): a database deleted or replaced under a running daemon went on taking
    writes into the deleted file, and every record vanished with it at the next start."""
    known = _FILES.get(engine)
    if known is None:  # PostgreSQL, or a database in memory
        return
    path, dev, ino = known
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DatabaseLost(str(path), "已被删除") from None
    if (info.st_dev, info.st_ino) != (dev, ino):
        raise DatabaseLost(str(path), "已被另一个文件替换")


def open_readonly(url: str) -> Engine | None:
    """The database for looking only (the dry run, `config check`): None when it does not
    exist yet; never created, never migrated, never written (SQLite mode=ro, PostgreSQL
    read-only transactions)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, connect_args={"options": "-c default_transaction_read_only=on"}, poolclass=NullPool)
    if not parsed.database or parsed.database == ":memory:" or not Path(parsed.database).is_file():
        return None
    path = Path(parsed.database).resolve()
    return create_engine(f"sqlite:///file:{path}?mode=ro&uri=true", poolclass=NullPool,
                         connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})


def has_table(engine: Engine, name: str) -> bool:
    """An older schema (a database not migrated since) lacks the newer tables."""
    return inspect(engine).has_table(name)


HEAD = "0004_leases"  # the newest migration's revision (tests/test_store.py checks it is alembic's head)


def revision(engine: Engine) -> str | None:
    """The schema's revision, read without alembic; None before the first migration."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


def migrate(engine: Engine, *, apart: bool = False) -> None:
    """Bring the schema to the newest revision (alembic); when it is there already, alembic is
    not even imported. `apart`: upgrade in a process of its own. alembic brings mako and
    pygments along, 15 MB that a long-running daemon never gives back."""
    was = revision(engine)
    if was == HEAD:
        return
    if not apart:
        _upgrade(engine)
        return
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(
        target=_upgrade_apart, args=(engine.url.render_as_string(hide_password=False),), name="mailbot-migrate")
    child.start()
    child.join()  # an error's traceback is on stderr, from the child
    if child.exitcode != 0 or revision(engine) != HEAD:
        raise MailbotError(f"数据库结构升级失败（升级进程退出码 {child.exitcode}），原因见上方日志；"
                           "请修复后重新启动 mailbot。")
    log.info("database schema upgraded from %s to %s (in a process of its own)", was or "nothing", HEAD)


def _upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _upgrade_apart(url: str) -> None:
    engine = open_engine(url)
    try:
        _upgrade(engine)
    finally:
        engine.dispose()


class NoDatabase(MailbotError):
    """A command that only reads found no database: it says so instead of creating an empty one."""


def exists(url: str) -> bool:
    """Does the database hold mailbot's tables? Asked without creating or writing anything."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(url, poolclass=NullPool, hide_parameters=True)
        try:
            return inspect(engine).has_table("alembic_version")
        finally:
            engine.dispose()
    if not parsed.database or parsed.database == ":memory:":
        return False
    path = Path(parsed.database)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as conn:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'").fetchone() \
            is not None


def connect(url: str, *, create: bool = True, apart: bool = False) -> Engine:
    """The database, migrated to the newest schema (`apart`: see migrate). `create=False`, for
    the commands that only read (status, digest, export): a database that does not exist yet
    raises NoDatabase, and no file, directory or table is made."""
    if not create and not exists(url):
        where = make_url(url).render_as_string(hide_password=True)
        raise NoDatabase(f"数据库 {where} 还不存在：mailbot 还没有在这里收取过邮件，没有可以查询的记录。"
                         "请确认 --config 指定的配置文件（database.url）和当前工作目录是否正确；"
                         "首次使用请先运行 mailbot poll 或启动服务（mailbot run）。")
    engine = open_engine(url)
    migrate(engine, apart=apart)
    return engine


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Session]:
    """One write transaction: committed when the block ends, rolled back if it raises. On SQLite
    the threads of this process take turns on a lock first: SQLite makes a writer that finds the
    file locked sleep and look again (1, 2, 5, 10 ms ...), so the sender thread lost up to 18 ms
    a mail to the filing thread's transactions; another process still waits in SQLite."""
    if engine.dialect.name != "sqlite":
        with Session(engine, expire_on_commit=False) as session:
            with session.begin():
                yield session
        return
    lock, immediate = _writer(engine)
    with lock:
        with Session(immediate, expire_on_commit=False) as session:
            with session.begin():
                yield session


@contextlib.contextmanager
def updating(engine: Engine) -> Iterator[Connection]:
    """`writing` for a statement or two of Core (no ORM session): the outbox's marks before and
    after each mail's end of DATA, which the ORM made three times as dear as the UPDATE."""
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    lock, immediate = _writer(engine)
    with lock:
        with immediate.begin() as conn:
            yield conn


_WRITERS: "weakref.WeakKeyDictionary[Engine, tuple[threading.RLock, Engine]]" = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def _writer(engine: Engine) -> tuple[threading.RLock, Engine]:
    """The SQLite engine's lock for the threads of this process, and the engine beginning with
    BEGIN IMMEDIATE (made once: execution_options builds a new engine object each call)."""
    with _WRITERS_LOCK:
        writer = _WRITERS.get(engine)
        if writer is None:
            writer = _WRITERS[engine] = (threading.RLock(), engine.execution_options(sqlite_immediate=True))
        return writer


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


# --- queries the flow uses -------------------------------------------------------------------

def message_at(session: Session, office: str, folder: str, uidvalidity: int, uid: int) -> Message | None:
    return session.exec(select(Message).where(
        Message.office == office, Message.folder == folder,
        Message.uidvalidity == uidvalidity, Message.uid == uid)).scalars().first()


def messages_at(session: Session, office: str, folder: str, uidvalidity: int, uids: list[int]) -> dict[int, Message]:
    rows = session.exec(select(Message).where(
        Message.office == office, Message.folder == folder,
        Message.uidvalidity == uidvalidity, Message.uid.in_(uids))).scalars().all()
    return {m.uid: m for m in rows}


def unmoved(session: Session, office: str, folder: str, uidvalidity: int) -> list[Message]:
    """Messages of `folder` whose outcome is committed but which are still there, to be moved."""
    return list(session.exec(select(Message).where(
        Message.office == office, Message.folder == folder, Message.uidvalidity == uidvalidity,
        Message.moved_at.is_(None), Message.destination != folder).order_by(Message.uid)).scalars().all())


def same_message(session: Session, office: str, message_id: str, sha256: str) -> Message | None:
    """The first handled copy of a mail: same Message-ID and the same bytes."""
    return session.exec(select(Message).where(
        Message.office == office, Message.message_id == message_id, Message.sha256 == sha256,
        Message.status != "duplicate").order_by(Message.id).limit(1)).scalars().first()


def in_force(session: Session, office: str, department_id: str, period: str) -> Submission | None:
    """The accepted submission that counts: the newest accepted version."""
    return session.exec(select(Submission).where(
        Submission.office == office, Submission.department_id == department_id,
        Submission.period == period, Submission.accepted.is_(True)).order_by(Submission.id.desc()).limit(1)).scalars().first()


def submissions_for(session: Session, office: str, department_id: str, period: str) -> list[Submission]:
    return list(session.exec(select(Submission).where(
        Submission.office == office, Submission.department_id == department_id,
        Submission.period == period).order_by(Submission.id)).scalars().all())


def count_submissions(session: Session, office: str, department_id: str, period: str) -> int:
    return session.exec(select(func.count(Submission.id)).where(
        Submission.office == office, Submission.department_id == department_id,
        Submission.period == period)).one()[0]


def versions(session: Session, office: str, department_id: str, period: str) -> tuple[int, Submission | None]:
    """`count_submissions` and `in_force` together, in one query once a version is in force."""
    same = (Submission.office == office, Submission.department_id == department_id, Submission.period == period)
    count = select(func.count(Submission.id)).where(*same).scalar_subquery()
    found = session.execute(select(Submission, count).where(*same, Submission.accepted.is_(True))
                            .order_by(Submission.id.desc()).limit(1)).first()
    if found is None:
        return count_submissions(session, office, department_id, period), None
    return found[1], found[0]


def rows_of(session: Session, submission_id: int) -> list[Row]:
    return list(session.exec(select(Row).where(Row.submission_id == submission_id).order_by(Row.row_no)).scalars().all())


def enqueue(session: Session, mail: Outgoing) -> bool:
    """Queue `mail` unless its key was already queued; True when queued now."""
    exists = session.exec(select(Outgoing.id).where(
        Outgoing.office == mail.office, Outgoing.key == mail.key)).first()
    if exists is not None:
        return False
    session.add(mail)
    session.flush()
    return True
