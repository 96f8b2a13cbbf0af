"""The store: migrations match the models, SQLite is set up for a reader beside a writer."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text
from sqlmodel import SQLModel

from mailbot import store
from mailbot.models import Message, Submission


def test_migrations_build_exactly_the_models(tmp_var):
    engine = store.connect(f"sqlite:///{tmp_var}/m.db")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    store.migrate(engine)  # a second run is harmless
    with engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == "0004_leases"


def test_head_is_the_newest_migration():
    """store.HEAD lets a migrated database be recognised without importing alembic: it must be
    the revision alembic upgrades to (a new migration changes both)."""
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(store.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(cfg).get_heads() == [store.HEAD]


_DAEMON_START = """
import sys
from mailbot import store
engine = store.connect(sys.argv[1], apart=sys.argv[2] == "apart")
print(store.revision(engine), sorted({m.split(".")[0] for m in sys.modules} & {"alembic", "mako", "pygments"}))
"""


def test_the_daemon_migrates_in_a_process_of_its_own_and_never_holds_alembic(tmp_var):
    """alembic (with mako and pygments) cost the daemon 15 MB for the rest of its life
    (bench_pipeline): `mailbot run` migrates a new database in a child process, and a database
    already at the newest revision is recognised without alembic."""
    def start(name, how):
        run = subprocess.run([sys.executable, "-c", _DAEMON_START, f"sqlite:///{tmp_var}/{name}", how],
                             capture_output=True, text=True, cwd=Path(store.__file__).parent.parent)
        assert run.returncode == 0, run.stderr
        return run.stdout.strip(), run.stderr

    out, err = start("new.db", "apart")
    assert out == "0004_leases []" and err == "", (out, err)
    assert start("new.db", "apart") == ("0004_leases []", ""), "at the newest revision: nothing to run"
    assert start("new.db", "in-process")[0] == "0004_leases []", "recognised without alembic"
    assert start("other.db", "in-process")[0] == "0004_leases ['alembic', 'mako', 'pygments']", \
        "the short commands migrate in their own process"


def test_a_database_of_the_first_schema_is_migrated_with_its_rows(tmp_var):
    from alembic import command
    from alembic.config import Config as AlembicConfig

    engine = store.open_engine(f"sqlite:///{tmp_var}/old.db")
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(store.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.execute(text("insert into message (office, folder, uidvalidity, uid, message_id, sha256, size, sender, "
                          "subject, received_at, kind, status, reason, detail, destination) values ('default', 'INBOX', "
                          "1, 1, 'm', 'x', 0, '', '', '2026-11-20 02:00:00+00:00', 'checklist', 'accepted', '', '', '')"))
        conn.execute(text("insert into submission (office, message_pk, department_id, period, period_source, "
                          "received_at, accepted, late, version, unit, submitter, nil_report, filename, sheet, "
                          "row_count, problems) values ('default', 1, 'scjgj', '2026-11', '', "
                          "'2026-11-20 02:00:00+00:00', 1, 0, 1, '', '', 0, '', '', 0, '[]')"))
    store.migrate(engine)
    with store.reading(engine) as s:
        [sub] = s.exec(select(Submission)).scalars().all()
    assert sub.file_sha256 == "" and sub.accepted


def test_sqlite_pragmas(tmp_var):
    engine = store.connect(f"sqlite:///{tmp_var}/m.db")
    with engine.connect() as conn:
        assert conn.execute(text("pragma journal_mode")).scalar() == "wal"
        assert conn.execute(text("pragma synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("pragma busy_timeout")).scalar() == store.BUSY_TIMEOUT_MS


def test_readers_never_see_database_locked_while_writers_write(tmp_var):
    """Two writers and a reader hammer one file: every transaction succeeds."""
    url = f"sqlite:///{tmp_var}/m.db"
    store.connect(url)
    errors: list[BaseException] = []

    def writer(offset):
        engine = store.open_engine(url)  # a separate engine, as a second process would have
        try:
            for i in range(150):
                with store.writing(engine) as s:
                    # read first, then write: with a deferred BEGIN this fails with "database is locked"
                    s.exec(text("select count(*) from message")).one()
                    m = Message(office="o", folder="INBOX", uidvalidity=1, uid=offset + i, sha256="x")
                    s.add(m)
                    s.flush()
                    s.add(Submission(office="o", message_pk=m.id, department_id="d", period="2026-11"))
        except BaseException as exc:
            errors.append(exc)

    def reader():
        engine = store.open_engine(url)
        try:
            for _ in range(300):
                with store.reading(engine) as s:
                    s.exec(text("select count(*) from submission")).one()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(0,)), threading.Thread(target=writer, args=(10_000,)),
               threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.reading(store.open_engine(url)) as s:
        assert s.exec(text("select count(*) from submission")).one()[0] == 300


def test_versions_is_the_count_and_the_version_in_force(tmp_var):
    """`versions` (one query for intake) answers as `count_submissions` and `in_force` do, before
    any version, with only rejected ones, and as versions are accepted and rejected, per slot."""
    engine = store.connect(f"sqlite:///{tmp_var}/m.db")
    slot = ("o", "d", "2026-11")
    with store.writing(engine) as s:
        m = Message(office="o", folder="INBOX", uidvalidity=1, uid=1, sha256="x")
        s.add(m)
        s.flush()
        s.add(Submission(office="o", message_pk=m.id, department_id="d", period="2026-10", accepted=True))
        s.add(Submission(office="o", message_pk=m.id, department_id="e", period="2026-11", accepted=True))
        s.add(Submission(office="p", message_pk=m.id, department_id="d", period="2026-11", accepted=True))
    seen = []
    for accepted in (None, False, True, False, True, False):
        with store.writing(engine) as s:
            if accepted is not None:
                s.add(Submission(office="o", message_pk=m.id, department_id="d", period="2026-11", accepted=accepted))
                s.flush()
            count, current = store.versions(s, *slot)
            want = store.in_force(s, *slot)
            assert count == store.count_submissions(s, *slot)
            assert (current.id if current else None) == (want.id if want else None)
            seen.append((count, current is not None))
    assert seen == [(0, False), (1, False), (2, True), (3, True), (4, True), (5, True)]
