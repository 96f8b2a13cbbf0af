"""Many offices in one deployment: nothing mixes between them; PostgreSQL with several daemons."""
from __future__ import annotations

import datetime as dt
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import openpyxl
import pytest
from sqlalchemy import func, select

from mailbot import city, config as config_mod, digest, export, runner, status, store
from mailbot.cli import main
from mailbot.models import Message, Outgoing, Submission
from tests import factory


def _office(account, smtp, office_id, address, departments, **extra):
    data = factory.config_dict(account, smtp, Path("/unused"), departments=departments, **extra)
    data["office"] = {**data["office"], "id": office_id, "address": address,
                      "name": f"{office_id}县社会信用体系建设领导小组办公室"}
    data["imap"]["password_env"] = f"PW_{office_id.upper()}"
    data["recipients"] = {"digest": [address]}
    for key in ("database", "archive"):
        data.pop(key)
    data["limits"] = {"workers": 0}
    return data


def _depts(tag: str, n: int = 3) -> list[dict]:
    return [{"id": f"d{i}", "name": f"{tag}县第{i}局", "emails": [f"d{i}@{tag}.gov.cn"]} for i in range(n)]


@pytest.fixture
def two_offices(dovecot_server, smtp_server, tmp_var, monkeypatch):
    accounts = {}
    for office_id in ("zanhuang", "yuanshi"):
        accounts[office_id] = dovecot_server.add_user(f"{office_id}-{uuid.uuid4().hex[:6]}@example.test", "pw")
        monkeypatch.setenv(f"PW_{office_id.upper()}", "pw")

    def build(url: str | None = None, **shared) -> config_mod.Config:
        return config_mod.parse({
            "database": {"url": url or f"sqlite:///{tmp_var}/mailbot.db"},
            "archive": {"dir": str(tmp_var / "archive")},
            **shared,
            "offices": [_office(accounts[o], smtp_server, o, f"xyb@{o}.example", _depts(o)) for o in accounts],
        })
    build.accounts = accounts
    return build


def checklist_from(office_id: str, dept: int, rows=factory.GOOD_ROWS) -> bytes:
    return factory.mail(sender=f"d{dept}@{office_id}.gov.cn", to=f"xyb@{office_id}.example",
                        message_id=f"<{uuid.uuid4().hex}@{office_id}.gov.cn>",
                        attachments=(("清单.xlsx", factory.checklist_xlsx(rows, unit=f"{office_id}县第{dept}局"), factory.XLSX),))


def test_a_single_office_file_and_a_list_of_offices_both_load(two_offices):
    cfg = two_offices()
    assert [o.id for o in cfg.offices] == ["zanhuang", "yuanshi"]
    with pytest.raises(config_mod.ConfigError, match="每个办公室都需要各自不同的 office.id"):
        config_mod.parse({"offices": [_office(two_offices.accounts["zanhuang"], type("S", (), {"port": 1}), "a", "a@x.cn",
                                              _depts("a"))] * 2})


def test_offices_never_mix(two_offices, smtp_server):
    cfg = two_offices(city={"name": "石家庄市社会信用体系建设领导小组办公室", "recipients": ["city@sjz.example"]})
    engine = store.connect(cfg.database.url)
    zanhuang, yuanshi = cfg.offices
    two_offices.accounts["zanhuang"].append(checklist_from("zanhuang", 0), date=factory.ON_TIME)
    two_offices.accounts["zanhuang"].append(checklist_from("yuanshi", 1), date=factory.ON_TIME)  # sent to the wrong county
    two_offices.accounts["yuanshi"].append(checklist_from("yuanshi", 2), date=factory.ON_TIME)
    for office in cfg.offices:
        runner.poll_once(engine, cfg, office)

    # the yuanshi department writing to zanhuang's mailbox is a stranger there: quarantined, unanswered
    with store.reading(engine) as s:
        rows = s.execute(select(Message.office, Message.sender, Message.status)).all()
    assert sorted(rows) == [("yuanshi", "d2@yuanshi.gov.cn", "accepted"),
                            ("zanhuang", "d0@zanhuang.gov.cn", "accepted"),
                            ("zanhuang", "d1@yuanshi.gov.cn", "quarantined")]
    # each receipt comes from its own office's address and goes to its own department
    assert sorted((m.message["From"].addresses[0].addr_spec, m.rcpt_tos) for m in smtp_server.messages) == [
        ("xyb@yuanshi.example", ("d2@yuanshi.gov.cn",)), ("xyb@zanhuang.example", ("d0@zanhuang.gov.cn",))]
    # the same department ids exist in both offices: status, digest and export keep them apart
    by_office = {o.id: {d["id"]: d["state"] for d in status.status(engine, o, "2026-11")} for o in cfg.offices}
    assert by_office == {"zanhuang": {"d0": "filed", "d1": "missing", "d2": "missing"},
                         "yuanshi": {"d0": "missing", "d1": "missing", "d2": "filed"}}
    assert {r.department for r in export.in_force_rows(engine, yuanshi, "2026-11")} == {"yuanshi县第2局"}
    month = digest.load_month(engine, zanhuang, "2026-11", factory.ON_TIME.replace(day=26))
    assert [q["sender"] for q in month.quarantined] == ["d1@yuanshi.gov.cn"]
    assert {f.name for f in month.filings if f.state == "filed"} == {"zanhuang县第0局"}

    # the city digest: one row per office, to the city's recipients only
    assert city.queue(engine, cfg, "2026-11", factory.ON_TIME.replace(day=26))
    runner.deliver_all_due(engine, city.sender(cfg))
    [mail] = [m for m in smtp_server.messages if m.message["X-Mailbot"] == "city"]
    assert mail.rcpt_tos == ("city@sjz.example",)
    [attachment] = list(mail.message.iter_attachments())
    sheet = openpyxl.load_workbook(io.BytesIO(attachment.get_content()))["各县报送情况"]
    rows = [[c.value for c in r] for r in sheet.iter_rows(min_row=2)]
    assert [(r[0], r[1], r[2], r[5]) for r in rows] == [
        ("zanhuang县社会信用体系建设领导小组办公室", 3, 1, 2), ("yuanshi县社会信用体系建设领导小组办公室", 3, 1, 2)]


def test_postgres_runs_the_same_migrations_and_the_whole_intake(postgres_server, two_offices, smtp_server):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    url = postgres_server.create_database(f"intake_{uuid.uuid4().hex[:8]}")
    cfg = two_offices(url)
    engine = store.connect(cfg.database.url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    two_offices.accounts["zanhuang"].append(checklist_from("zanhuang", 0), date=factory.ON_TIME)
    raw = checklist_from("zanhuang", 1)
    two_offices.accounts["zanhuang"].append(raw, date=factory.ON_TIME)
    two_offices.accounts["zanhuang"].append(raw, date=factory.ON_TIME)  # the same mail twice
    runner.poll_once(engine, cfg, cfg.offices[0])
    with store.reading(engine) as s:
        assert s.execute(select(func.count(Submission.id))).scalar() == 2
        assert sorted(s.execute(select(Message.status)).scalars()) == ["accepted", "accepted", "duplicate"]
    assert len(smtp_server.messages) == 2


def test_racing_ticks_on_postgres_queue_each_reminder_once(postgres_server, two_offices, smtp_server, tmp_var):
    """Three `mailbot tick` processes at the same instant against one PostgreSQL."""
    url = postgres_server.create_database(f"ticks_{uuid.uuid4().hex[:8]}")
    cfg = two_offices(url)
    engine = store.connect(cfg.database.url)  # migrate once, before the race
    for office in cfg.offices:  # as if each mailbox had been polled since the 20th
        factory.watching(engine, office, dt.datetime(2026, 11, 20, tzinfo=office.office.tz))
    path = tmp_var / "mailbot.json"
    path.write_text(config_json(cfg), encoding="utf-8")
    env = {**os.environ, "PW_ZANHUANG": "pw", "PW_YUANSHI": "pw"}
    cmd = [sys.executable, "-m", "mailbot", "--config", str(path), "tick", "--at", "2026-11-20T09:30"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1].decode()[-800:] for o in outs]
    engine = store.open_engine(url)
    with store.reading(engine) as s:
        keys = list(s.execute(select(Outgoing.office, Outgoing.key).where(Outgoing.kind == "reminder")).all())
    assert len(keys) == len(set(keys)) == 6  # 3 departments x 2 offices
    sent = [(m.message["X-Mailbot"], m.rcpt_tos) for m in smtp_server.messages]
    assert sorted(sent) == sorted(("reminder", (f"d{i}@{o}.gov.cn",)) for o in ("zanhuang", "yuanshi") for i in range(3))


def config_json(cfg: config_mod.Config) -> str:
    return cfg.model_dump_json(exclude_none=True)


@pytest.mark.slow
@pytest.mark.parametrize("daemons", [2, 3])
def test_several_daemons_on_postgres_each_office_polled_once_and_taken_over(
        postgres_server, dovecot_server, smtp_server, tmp_var, daemons):
    """Daemons share one PostgreSQL and one Dovecot with three office mailboxes; the one polling
    is killed mid-run: another takes its offices over, and no mail is lost or handled twice."""
    url = postgres_server.create_database(f"daemons_{uuid.uuid4().hex[:8]}")
    offices, env = [], {**os.environ}
    for tag in ("a", "b", "c"):
        account = dovecot_server.add_user(f"{tag}-{uuid.uuid4().hex[:6]}@example.test", "pw")
        env[f"PW_{tag.upper()}"] = "pw"
        data = _office(account, smtp_server, tag, f"xyb@{tag}.example", _depts(tag, 10),
                       replies={"daily_cap_per_sender": 1000})
        data["departments"] = [{**d, "since": "2099-01"} for d in data["departments"]]  # no scheduled mail here
        data["schedule"] = {"weekly_digest_day": None}
        data["limits"] = {"workers": 1}
        data["smtp"]["timeout_seconds"] = 5  # a receipt the killed daemon had claimed is free again within 55 s
        offices.append((tag, account, data))
    cfg = config_mod.parse({"database": {"url": url}, "archive": {"dir": str(tmp_var / "archive")},
                            "offices": [d for _t, _a, d in offices]})
    store.connect(cfg.database.url)
    path = tmp_var / "mailbot.json"
    path.write_text(config_json(cfg), encoding="utf-8")
    per_office = 40
    for tag, account, _data in offices:
        for i in range(per_office):
            account.append(checklist_from(tag, i % 10), date=factory.ON_TIME)
    logs = [open(tmp_var / f"daemon{i}.log", "wb") for i in range(daemons)]
    procs = [subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(path), "run"], env=env,
                              stdout=logs[i], stderr=subprocess.STDOUT) for i in range(daemons)]
    engine = store.open_engine(url)

    def handled() -> int:
        with store.reading(engine) as s:
            return s.execute(select(func.count(Message.id))).scalar()
    try:
        deadline = time.monotonic() + 60
        while handled() < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        busiest = max(range(daemons), key=lambda i: (tmp_var / f"daemon{i}.log").read_text().count("taken"))
        procs[busiest].send_signal(signal.SIGKILL)  # mid-run: it holds at least one office
        deadline = time.monotonic() + 120
        while handled() < 3 * per_office and time.monotonic() < deadline:
            time.sleep(0.2)
        smtp_server.wait_for(3 * per_office, timeout=120)
        time.sleep(2)  # anything doubled would show up now
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(timeout=60)
        for f in logs:
            f.close()
    with store.reading(engine) as s:
        messages = s.execute(select(Message.office, Message.message_id, Message.status)).all()
        subs = s.execute(select(func.count(Submission.id))).scalar()
    assert len(messages) == 3 * per_office == len({(o, m) for o, m, _s in messages})  # none lost, none twice
    assert {s for _o, _m, s in messages} == {"accepted"} and subs == 3 * per_office
    for tag, account, _data in offices:
        assert account.uids("INBOX") == []
    receipts = [m.message["Message-ID"] for m in smtp_server.messages if m.message["X-Mailbot"] == "receipt"]
    assert len(set(receipts)) == 3 * per_office  # every mail answered; a repeat may only be the same Message-ID
    taken = [(tmp_var / f"daemon{i}.log").read_text().count("taken: this daemon polls it") for i in range(daemons)]
    assert sum(taken) > 3  # the killed daemon's offices were taken over by another


def test_the_city_digest_from_the_command_line(two_offices, smtp_server, tmp_var, capsys):
    """`digest --city` writes the city workbook; with --send it mails it once, from the sending office."""
    city_cfg = {"name": "石家庄市社会信用体系建设领导小组办公室", "recipients": ["city@sjz.example"]}
    cfg = two_offices(city=city_cfg)
    store.connect(cfg.database.url)
    data = {"database": {"url": cfg.database.url}, "archive": {"dir": str(tmp_var / "archive")}, "city": city_cfg,
            "offices": [_office(two_offices.accounts[o], smtp_server, o, f"xyb@{o}.example", _depts(o))
                        for o in ("zanhuang", "yuanshi")]}
    path = factory.write_config(tmp_var / "city.yaml", data)
    argv = ["--config", str(path), "digest", "--city", "--period", "2026-11", "--out", str(tmp_var / "out")]
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [str(tmp_var / "out" / city.filename("2026-11"))]
    assert smtp_server.messages == []
    assert main(argv + ["--send"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["queued", "sent 1 mail(s)"]
    assert main(argv + ["--send"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["city:2026-11 was already queued; not queued again",
                                                        "sent 0 mail(s)"]
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == ("city@sjz.example",) and mail.message["From"].addresses[0].addr_spec == "xyb@zanhuang.example"
