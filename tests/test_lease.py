"""Daemons that share the offices: leases renewed by a heartbeat, balanced, fenced, taken over."""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from sqlalchemy import func, select

from mailbot import config as config_mod, lease, store
from mailbot.models import Message, Submission
from tests import factory
from tests.test_offices import _depts, _office, config_json

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc)
OFFICES = [f"o{i}" for i in range(1, 10)]


def _leases(now, **held):
    """office -> (holder, expires_at): `held` maps a holder to its offices, each lease good for 30 s."""
    return {o: (holder, now + dt.timedelta(seconds=30)) for holder, offices in held.items() for o in offices}


# -- the plan (pure) ------------------------------------------------------------------------------
def test_alone_a_daemon_claims_every_free_office():
    now = T0
    chosen = lease.plan("a", OFFICES, set(), {"a"}, {}, now, rng=random.Random(1))
    assert sorted(chosen.claim) == OFFICES and chosen.release == [] and chosen.share == 9


def test_a_daemon_over_its_share_gives_back_what_a_newcomer_needs_and_no_more():
    now = T0
    leases = _leases(now, a=OFFICES)
    chosen = lease.plan("a", OFFICES, set(OFFICES), {"a", "b"}, leases, now, rng=random.Random(1))
    assert chosen.share == 5 and chosen.claim == [] and len(chosen.release) == 4
    # a third arrives while b holds 4: a (5) and b (4) each give back only what is over the share
    leases = _leases(now, a=OFFICES[:5], b=OFFICES[5:])
    for me, mine in (("a", set(OFFICES[:5])), ("b", set(OFFICES[5:]))):
        chosen = lease.plan(me, OFFICES, mine, {"a", "b", "c"}, leases, now, rng=random.Random(1))
        assert chosen.share == 3 and len(chosen.release) == len(mine) - 3 and chosen.claim == []


def test_offices_do_not_move_for_nothing():
    """5 and 4 of 9 with two daemons: the one with 4 is under its share, but the one at its share
    keeps what it has (moving one would only make it 4 and 5)."""
    now = T0
    leases = _leases(now, a=OFFICES[:5], b=OFFICES[5:])
    for me, mine in (("a", set(OFFICES[:5])), ("b", set(OFFICES[5:]))):
        chosen = lease.plan(me, OFFICES, mine, {"a", "b"}, leases, now)
        assert chosen.claim == [] and chosen.release == []


def test_one_two_short_of_its_share_is_given_one_by_each_at_its_share():
    """14, 14, 12 of 40: each at its share gives one back (one each beat), so it ends 13, 13, 14
    or 13, 14, 13 and stays so."""
    now = T0
    offices = [f"p{i:02d}" for i in range(40)]
    leases = _leases(now, a=offices[:14], b=offices[14:28], c=offices[28:])
    chosen = lease.plan("a", offices, set(offices[:14]), {"a", "b", "c"}, leases, now, rng=random.Random(1))
    assert chosen.share == 14 and len(chosen.release) == 1 and chosen.claim == []
    leases = _leases(now, a=offices[:13], b=offices[13:27], c=offices[27:])  # 13, 14, 13
    for me, mine in (("a", offices[:13]), ("b", offices[13:27]), ("c", offices[27:])):
        chosen = lease.plan(me, offices, set(mine), {"a", "b", "c"}, leases, now)
        assert chosen.release == [] and chosen.claim == []
    for b_holds, c_holds, gives in ((13, 12, 0), (14, 11, 1), (14, 10, 1)):  # the rest just freed: c takes them
        b, c = offices[14:14 + b_holds], offices[14 + b_holds:14 + b_holds + c_holds]
        leases = _leases(now, a=offices[:14], b=b, c=c)
        leases.update({o: (None, now - dt.timedelta(seconds=1)) for o in offices[14 + b_holds + c_holds:]})
        chosen = lease.plan("a", offices, set(offices[:14]), {"a", "b", "c"}, leases, now)
        assert len(chosen.release) == gives and chosen.claim == []


def test_a_dead_daemons_offices_are_claimed_once_its_leases_ran_out():
    now = T0
    leases = _leases(now - dt.timedelta(seconds=31), c=OFFICES[6:])  # c stopped beating 31 s ago
    leases.update(_leases(now, a=OFFICES[:3], b=OFFICES[3:6]))
    chosen = lease.plan("a", OFFICES, set(OFFICES[:3]), {"a", "b"}, leases, now, rng=random.Random(1))
    assert chosen.share == 5 and len(chosen.claim) == 2 and set(chosen.claim) <= set(OFFICES[6:])
    # still alive by its heartbeat but its leases good: nothing to claim
    leases.update(_leases(now, c=OFFICES[6:]))
    chosen = lease.plan("a", OFFICES, set(OFFICES[:3]), {"a", "b", "c"}, leases, now)
    assert chosen.claim == [] and chosen.release == []


def test_at_its_share_a_daemon_takes_one_orphan_and_never_more():
    """An office nobody under their share took (they see fewer offices: `run --office`) is taken
    by one at its share after ORPHAN_SECONDS, making it share + 1 at most."""
    now = T0
    leases = _leases(now, a=OFFICES[:5], b=OFFICES[5:8])
    leases["o9"] = (None, now - dt.timedelta(seconds=1))
    chosen = lease.plan("a", OFFICES, set(OFFICES[:5]), {"a", "b"}, leases, now)
    assert chosen.claim == []  # freed just now: b, under its share, takes it
    leases["o9"] = (None, now - dt.timedelta(seconds=lease.ORPHAN_SECONDS + 1))
    chosen = lease.plan("a", OFFICES, set(OFFICES[:5]), {"a", "b"}, leases, now)
    assert chosen.claim == ["o9"]
    leases = _leases(now, a=OFFICES[:6])
    leases.update({o: (None, now - dt.timedelta(minutes=5)) for o in OFFICES[6:]})
    chosen = lease.plan("a", OFFICES, set(OFFICES[:6]), {"a", "b"}, leases, now)
    assert chosen.claim == []  # already share + 1


def test_busy_and_releasing_offices_are_neither_claimed_nor_counted():
    now = T0
    chosen = lease.plan("a", OFFICES, set(), {"a"}, {}, now, busy={"o1"})
    assert "o1" not in chosen.claim and len(chosen.claim) == 8
    leases = _leases(now, a=OFFICES[:6], b=OFFICES[6:])
    chosen = lease.plan("a", OFFICES, set(OFFICES[:6]), {"a", "b"}, leases, now, releasing={"o1"})
    assert chosen.release == []  # o1 on its way out already brings a to its share


# -- the keeper, on PostgreSQL ----------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _set_expiry(engine, office: str, seconds_ago: float) -> None:
    from sqlalchemy import text
    with engine.begin() as conn:
        conn.execute(text("UPDATE lease SET expires_at = now() - make_interval(secs => :s) WHERE office = :o"),
                     {"s": seconds_ago, "o": office})


@pytest.fixture
def pg(postgres_server):
    url = postgres_server.create_database(f"lease_{uuid.uuid4().hex[:8]}")
    engine = store.connect(url)
    yield engine
    engine.dispose()


def test_of_two_keepers_exactly_one_holds_each_office_and_the_fence_closes_before_the_lease_ends(pg):
    clock = Clock()
    a = lease.Keeper(pg, OFFICES[:3], clock=clock)
    b = lease.Keeper(pg, OFFICES[:3], clock=clock)
    assert a.take() == [] and b.take() == OFFICES[:3]  # the second's claims all fail
    assert set(a.held) == set(OFFICES[:3]) and b.held == {}
    assert a.remaining("o1") == lease.LEASE_SECONDS - lease.FENCE_MARGIN_SECONDS and b.remaining("o1") == 0
    with pytest.raises(lease.LeaseLost):
        b.fence("o1")()
    clock.now += lease.LEASE_SECONDS - lease.FENCE_MARGIN_SECONDS  # a could not renew meanwhile
    with pytest.raises(lease.LeaseLost):
        a.fence("o1")()  # closed, though the database's lease has FENCE_MARGIN_SECONDS left
    a.beat(balance=False)  # renewed: open again
    assert a.fence("o1")() == lease.LEASE_SECONDS - lease.FENCE_MARGIN_SECONDS
    _set_expiry(pg, "o1", 1)  # as if a had not beaten for LEASE_SECONDS
    assert b._claim("o1") is not None and b._claim("o2") is None
    out = a.beat(balance=False)
    assert out.lost == ["o1"] and "o1" not in a.held and a.remaining("o1") == 0
    a.stop()
    view = lease.fleet(pg, OFFICES[:3])
    assert {o["office"]: o["holder"] for o in view["offices"]} == {"o1": b.id, "o2": None, "o3": None}
    assert {d["id"]: d["state"] for d in view["daemons"]} == {a.id: "stopped", b.id: "alive"}
    assert [o["epoch"] for o in view["offices"]] == [2, 1, 1]  # each holder's term has its own number
    from rich.console import Console

    from mailbot.status import print_daemons
    console = Console(record=True, width=200)
    print_daemons(view, dt.timezone(dt.timedelta(hours=8)), console)
    table = console.export_text()
    assert "运行中" in table and "已停止" in table and "1 个：o1" in table
    assert "运行中的守护进程 1 个，办公室 3 个：每个守护进程应持有 3 个，最多 4 个。" in table
    assert "暂无守护进程处理的办公室：o2、o3" in table


def test_a_keeper_that_could_not_beat_renews_its_leases_nobody_claimed(pg):
    """A database restart: nobody could claim meanwhile, so the holder keeps its offices, and
    balances only after SETTLE_SECONDS (the others beat meanwhile)."""
    clock = Clock()
    a = lease.Keeper(pg, OFFICES[:2], clock=clock)
    out = a.beat()
    assert out.claimed == [] and a.held == {}  # not settled yet: only renews
    clock.now += lease.SETTLE_SECONDS
    out = a.beat()
    assert out.claimed == OFFICES[:2]
    for office in OFFICES[:2]:
        _set_expiry(pg, office, 5)  # ran out while the database was away
    a.unsettle()
    clock.now += 40
    out = a.beat()
    assert out.lost == [] and set(a.held) == set(OFFICES[:2]) and a.remaining("o1") > 0
    a.done("o2")  # its loop ended: freed at the next beat
    a.beat()
    assert set(a.held) == {"o1"}
    assert {o["office"]: o["state"] for o in lease.fleet(pg, OFFICES[:2])["offices"]} == {"o1": "held", "o2": "free"}
    clock.now += lease.SETTLE_SECONDS
    assert a.beat().claimed == []  # under its share, but o2 was given back for another to take
    clock.now += lease.ORPHAN_SECONDS - lease.SETTLE_SECONDS
    assert a.beat().claimed == ["o2"]  # nobody did


# -- three daemons, nine offices ---------------------------------------------------------------------
@pytest.mark.slow
def test_three_daemons_share_nine_offices_through_joins_a_kill_and_a_database_restart(
        postgres_server, dovecot_server, smtp_server, tmp_var):
    """Real `mailbot run` processes on one PostgreSQL and one Dovecot with nine office
    mailboxes, mail arriving all along: daemons join one by one and get their share, one is
    SIGKILLed and its offices are taken over within 60 s, one joins again, and PostgreSQL is
    stopped for 30 s and started again; then every mail was handled once and answered once."""
    url = postgres_server.create_database(f"province_{uuid.uuid4().hex[:8]}")
    accounts, env, offices = {}, {**os.environ}, []
    for tag in OFFICES:
        accounts[tag] = dovecot_server.add_user(f"{tag}-{uuid.uuid4().hex[:6]}@example.test", "pw")
        env[f"PW_{tag.upper()}"] = "pw"
        data = _office(accounts[tag], smtp_server, tag, f"xyb@{tag}.example", _depts(tag, 3),
                       replies={"daily_cap_per_sender": 1000})
        data["departments"] = [{**d, "since": "2099-01"} for d in data["departments"]]  # no scheduled mail
        data["schedule"] = {"weekly_digest_day": None}
        data["smtp"]["timeout_seconds"] = 5
        data["imap"]["poll_seconds"] = 5
        offices.append(data)
    cfg = config_mod.parse({"database": {"url": url}, "archive": {"dir": str(tmp_var / "archive")},
                            "offices": offices})
    engine = store.connect(cfg.database.url)
    path = tmp_var / "mailbot.json"
    path.write_text(config_json(cfg), encoding="utf-8")
    sent: list[tuple[str, str]] = []
    feed_errors: list[str] = []
    feeding = threading.Event()
    feeding.set()

    def append(n: int) -> None:
        tag, dept = OFFICES[n % 9], n // 9 % 3
        mid = f"<{uuid.uuid4().hex}@{tag}.gov.cn>"
        workbook = factory.checklist_xlsx(unit=f"{tag}县第{dept}局", submitter=f"王{n}")  # each a new version
        accounts[tag].append(factory.mail(sender=f"d{dept}@{tag}.gov.cn", to=f"xyb@{tag}.example",
                                          message_id=mid, attachments=(("清单.xlsx", workbook, factory.XLSX),)),
                             date=factory.ON_TIME)
        sent.append((tag, mid.strip("<>")))

    def feed() -> None:  # a mail every 0.3 s, to the offices in turn: load all along
        n = 0
        while feeding.is_set():
            time.sleep(0.3)
            try:
                append(n)
            except Exception as exc:  # told when a wait fails; a mail not appended is not counted
                feed_errors.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
            n += 1

    procs: list[subprocess.Popen] = []
    logs = []

    def spawn() -> subprocess.Popen:
        log = open(tmp_var / f"daemon{len(procs)}.log", "wb")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "mailbot", "--config", str(path), "run"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT))
        return procs[-1]

    def view() -> dict:
        return lease.fleet(engine, OFFICES)

    def balanced(n: int) -> dict | None:
        """n daemons alive, every office held by one of them, none over share + 1, none under share - 1."""
        try:
            v = view()
        except Exception:  # the database is still starting
            return None
        alive = [d for d in v["daemons"] if d["state"] == "alive"]
        held = [o["holder"] for o in v["offices"]]
        counts = [len(d["offices"]) for d in alive]
        if len(alive) != n or None in held or not set(held) <= {d["id"] for d in alive}:
            return None
        return v if max(counts) <= v["share"] + 1 and min(counts) >= v["share"] - 1 else None

    def wait_for(what: str, check, timeout: float):
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if (got := check()) is not None:
                return got
            time.sleep(0.5)
        tails = "\n".join(f"--- daemon{i}\n" + (tmp_var / f"daemon{i}.log").read_text()[-3000:]
                          for i in range(len(procs)))
        pytest.fail(f"not {what} within {timeout} s: {view()}\nmail appended {len(sent)}, handled {handled()}, "
                    f"feeder alive {feeder.is_alive()}, its errors {feed_errors[-5:]}\n{tails}")

    def receipts() -> set[str]:  # a receipt sent twice (its sending cut by the kill) has one Message-ID
        return {m.message["Message-ID"] for m in smtp_server.messages if m.message["X-Mailbot"] == "receipt"}

    def handled() -> int:
        with store.reading(engine) as s:
            return s.execute(select(func.count(Message.id))).scalar()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        spawn()
        v = wait_for("one daemon holding all nine", lambda: balanced(1), 60)
        assert v["share"] == 9
        for n in (2, 3):  # each joiner gets its share within 2 minutes (here: well within)
            joined = time.monotonic()
            spawn()
            v = wait_for(f"balanced among {n}", lambda n=n: balanced(n), 120)
            print(f"join of daemon {n}: balanced in {time.monotonic() - joined:.1f} s")
            newest = max((d for d in v["daemons"] if d["state"] == "alive"), key=lambda d: d["started_at"])
            assert len(newest["offices"]) >= v["share"] - 1
        busiest = max((d for d in v["daemons"] if d["state"] == "alive"), key=lambda d: len(d["offices"]))
        victim = next(p for p in procs if p.pid == busiest["pid"])
        victim.send_signal(signal.SIGKILL)  # mid-run, holding offices and mail in hand
        killed = time.monotonic()
        v = wait_for("its offices taken over", lambda: balanced(2), 60)
        takeover = time.monotonic() - killed
        print(f"takeover after SIGKILL: {takeover:.1f} s")
        assert takeover < 60
        assert busiest["id"] in {d["id"] for d in v["daemons"] if d["state"] == "silent"}
        spawn()
        wait_for("balanced among 3 after a rejoin", lambda: balanced(3), 120)
        before = handled()
        postgres_server.halt()  # an administrator's restart, under load
        try:
            time.sleep(30)
        finally:
            postgres_server.resume()
        restarted = time.monotonic()
        v = wait_for("balanced among 3 after the database restart", lambda: balanced(3), 120)
        print(f"after the database restart: balanced in {time.monotonic() - restarted:.1f} s")
        wait_for("mail handled again", lambda: True if handled() > before + 9 else None, 60)
        feeding.clear()
        feeder.join()
        wait_for("every mail handled", lambda: True if handled() >= len(sent) else None, 120)
        wait_for("every mail answered", lambda: True if len(receipts()) >= len(sent) else None, 120)
        status = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(path), "status", "--daemons"],
                                env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        (tmp_var / "status.txt").write_text(status.stdout, encoding="utf-8")  # to look at
        assert "运行中" in status.stdout and "失联" in status.stdout and "每个守护进程应持有 3 个" in status.stdout
        as_json = subprocess.run([sys.executable, "-m", "mailbot", "--config", str(path), "status", "--daemons",
                                  "--json"], env=env, capture_output=True, text=True, timeout=60)
        daemons = json.loads(as_json.stdout)["daemons"]
        assert sorted(d["state"] for d in daemons) == ["alive", "alive", "alive", "silent"]
        time.sleep(2)  # anything doubled would show up now
    finally:
        feeding.clear()
        if postgres_server.halted:
            postgres_server.resume()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(timeout=60)
        for f in logs:
            f.close()
    assert [p.returncode for p in procs].count(-signal.SIGKILL) == 1
    with store.reading(engine) as s:
        messages = s.execute(select(Message.office, Message.message_id, Message.status)).all()
        subs = s.execute(select(func.count(Submission.id))).scalar()
    assert sorted((o, m) for o, m, _s in messages) == sorted(sent)  # none lost, none twice
    assert {s for _o, _m, s in messages} == {"accepted"} and subs == len(sent)
    for tag in OFFICES:
        assert accounts[tag].uids("INBOX") == []
    assert len(receipts()) == len(sent)  # every mail answered; a repeat may only be the same Message-ID
    text = "".join((tmp_var / f"daemon{i}.log").read_text() for i in range(len(procs)))
    assert "EXPUNGEISSUED" not in text and "Traceback" not in text
    assert "database unreachable" in text and "database reachable again" in text
    view_after = view()  # the daemons stopped by SIGTERM freed their leases and said so
    assert all(o["state"] == "free" for o in view_after["offices"])
    assert sorted(d["state"] for d in view_after["daemons"]) == ["silent", "stopped", "stopped", "stopped"]


# -- the database's outage, told like a mailbox's ------------------------------------------------------
def test_a_long_database_outage_is_mailed_directly_once_and_its_end_through_the_outbox(setup):
    from sqlalchemy.exc import OperationalError

    from mailbot import health
    from mailbot.models import Outgoing
    down = OperationalError("SELECT now()", {}, ConnectionRefusedError("Connection refused"))
    outage = health.DatabaseOutage("postgresql+psycopg://mailbot:***@db.example/mailbot")
    assert outage.failed(down, [setup.office], now=T0) == []
    assert outage.failed(down, [], now=T0 + dt.timedelta(minutes=29)) == []  # the offices held when it began
    assert outage.failed(down, [], now=T0 + dt.timedelta(minutes=31)) == [setup.office.id]
    assert outage.failed(down, [], now=T0 + dt.timedelta(minutes=45)) == []  # once
    [alert] = setup.smtp.wait_for(1)
    assert alert.message["Subject"] == "【情况清单收件系统】数据库暂时无法连接，系统已暂停收件，请处理"
    assert alert.rcpt_tos == ("office@example.test",)
    text = alert.message.get_body(("plain",)).get_content()
    assert "2026年12月01日 17:00" in text and "db.example" in text and "***" in text and "不会丢失" in text
    assert setup.rows(Outgoing, Outgoing.kind == "alert") == []  # the outbox was out of reach
    assert outage.ok(setup.engine, now=T0 + dt.timedelta(hours=1))
    assert not outage.ok(setup.engine, now=T0 + dt.timedelta(hours=2))
    rows = setup.rows(Outgoing, Outgoing.kind == "alert")
    assert sorted((r.key.split(":")[2], r.status) for r in rows) == [("down", "sent"), ("up", "pending")]
    setup.poll()  # the notice that it is over goes like any mail; the one sent is not sent again
    assert [m.message["Subject"] for m in setup.smtp.messages][1:] == ["【情况清单收件系统】数据库已恢复，系统已恢复收件"]
    assert health.Health(setup.engine, setup.office).ok() is False  # no mailbox outage was opened by it


def test_a_short_database_outage_is_only_logged(setup, caplog):
    from sqlalchemy.exc import OperationalError

    from mailbot import health
    outage = health.DatabaseOutage()
    down = OperationalError("SELECT now()", {}, ConnectionRefusedError("Connection refused"))
    assert outage.failed(down, [setup.office], now=T0) == []
    assert outage.ok(setup.engine, now=T0 + dt.timedelta(seconds=30))
    assert setup.smtp.messages == [] and "database reachable again after 30 s" in caplog.text
