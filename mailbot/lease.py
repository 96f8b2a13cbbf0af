"""Which process touches which office's mailbox: leases renewed by a heartbeat, shared evenly.

Every running mailbot has a heartbeat row, every office a lease row that at most one of them
holds until it expires (the database's clock, so the hosts' clocks do not matter). A process's
Keeper beats every BEAT_SECONDS: it renews its leases and, once settled, evens the offices out
among the live daemons: with N alive each holds at most ⌈offices/N⌉ + 1. One over its share
gives offices back gracefully (the office's loop finishes the message in hand, then the lease is
freed); one under it claims free offices with a conditional UPDATE (healthchecks' habit), so
that of two claims on one office exactly one succeeds. A daemon that dies stops beating: its
leases run out after LEASE_SECONDS and the others take its offices over.

The fence: a process counts a lease good only until LEASE_SECONDS - FENCE_MARGIN_SECONDS after
it *sent* the renewal (its own monotonic clock), so it stops touching the mailbox at least
FENCE_MARGIN_SECONDS before anybody else may claim the office, whatever happened meanwhile
(a database restart, a network partition, a process frozen). Every MOVE asks the fence first
and is given a deadline that ends with the lease (mailbot.mailbox.Mailbox.fence).

On SQLite only one process runs at all (the file lock, mailbot.daemon.exclusive): it takes every
lease whoever held it last, and its fence never closes.
"""
from __future__ import annotations

import datetime as dt
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine

from . import store
from .guard import Infrastructure
from .models import Heartbeat, Lease, utcnow

log = logging.getLogger("mailbot.lease")
LEASE_SECONDS = 30  # a lease not renewed for this long is free (the database's clock)
BEAT_SECONDS = 5  # how often a keeper renews its leases and looks at the others
FENCE_MARGIN_SECONDS = 10  # a holder stops touching the mailbox this long before its lease can be claimed
SETTLE_SECONDS = 2 * BEAT_SECONDS  # after (re)connecting, only renew this long: every live daemon beats meanwhile
ORPHAN_SECONDS = 3 * BEAT_SECONDS  # a free office nobody under their share took: one at its share may (share + 1)
FORGET_DAYS = 7  # heartbeat rows of processes gone this long are deleted


class LeaseLost(Infrastructure):
    """The office's lease is no longer good: this process must not touch its mailbox."""

    def __init__(self, office: str):
        self.office = office
        super().__init__(f"办公室 {office} 的租约已失效（数据库暂时无法连接，或已由另一个 mailbot 进程接管）："
                         "本进程不再移动该邮箱中的邮件")


def share(offices: int, daemons: int) -> int:
    """The offices one of `daemons` live daemons should hold: ⌈offices/daemons⌉."""
    return math.ceil(offices / max(daemons, 1))


def is_free(lease: tuple[str | None, dt.datetime] | None, now: dt.datetime) -> bool:
    """What the claim's UPDATE requires: no holder, or a lease run out."""
    return lease is None or lease[0] is None or lease[1] <= now


@dataclass(frozen=True)
class Plan:
    claim: list[str]  # to try, in this order (another may be quicker)
    release: list[str]  # to give back gracefully
    share: int


def plan(me: str, offices: list[str], mine: set[str], live: set[str],
         leases: dict[str, tuple[str | None, dt.datetime]], now: dt.datetime,
         releasing: set[str] = frozenset(), busy: set[str] = frozenset(), rng: random.Random | None = None) -> Plan:
    """What `me`, holding `mine` of `offices`, claims and gives back, seeing `live` daemons and
    `leases` (office -> (holder, expires_at)); `busy` are not to be claimed (their loop here has
    not ended yet). Pure: the database is read before and written after.

    Claims free offices up to the share; at the share, one office free for ORPHAN_SECONDS (a
    daemon under its share would have taken it: their views differ, e.g. `run --office`), never
    past share + 1. Gives back what is over the share only when the free offices cannot fill the
    daemons under theirs, so offices do not move for nothing; at the share, one office when
    another daemon holds two or more fewer and nothing free would make it up (14, 14, 12 of 40
    becomes 13, 14, 13: max - min at most 1)."""
    rng = rng or random.Random()
    live = set(live) | {me}
    quota = share(len(offices), len(live))
    keeping = sorted(mine - set(releasing))
    free = [o for o in offices if o not in mine and o not in busy and is_free(leases.get(o), now)]
    rng.shuffle(free)
    claim: list[str] = []
    if len(keeping) < quota:
        claim = free[:quota - len(keeping)]
    elif len(keeping) == quota:
        claim = [o for o in free if leases.get(o) is None or leases[o][1] <= now - dt.timedelta(seconds=ORPHAN_SECONDS)][:1]
    release: list[str] = []
    if len(keeping) >= quota:
        held = {d: 0 for d in live if d != me}
        for holder, expires in leases.values():
            if holder in held and expires > now:
                held[holder] += 1
        coming = len(free) + len(mine & set(releasing))  # free now, or once their loops here have ended
        need = sum(max(0, quota - n) for n in held.values()) - coming
        short = sum(max(0, quota - 1 - n) for n in held.values()) - coming  # two or more fewer than the share
        if len(keeping) > quota and need > 0:
            release = rng.sample(keeping, min(len(keeping) - quota, need))
        elif keeping and short > 0 and not claim:
            release = rng.sample(keeping, 1)
    return Plan(claim, release, quota)


@dataclass
class Held:
    epoch: int
    until: float  # the keeper's clock (monotonic): the fence closes then
    releasing: bool = False


@dataclass
class Beat:
    """What one beat changed: the keeper's owner starts, stops or hurries the offices' loops."""
    claimed: list[str] = field(default_factory=list)
    release: list[str] = field(default_factory=list)  # over the share: finish the message in hand, then stop
    lost: list[str] = field(default_factory=list)  # another holds it now: stop at once
    share: int = 0
    live: int = 1


class Keeper:
    """This process's heartbeat row and leases. `beat()` is called by one thread (the daemon's
    heartbeat); `remaining`, `fence` and `done` by the offices' loops."""

    def __init__(self, engine: Engine, offices: list[str], kind: str = "daemon",
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None):
        self.engine, self.offices, self.kind = engine, list(offices), kind
        self.exclusive = engine.dialect.name != "postgresql"  # SQLite: the file lock already made us the only one
        self.id = uuid.uuid4().hex[:12]
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.clock, self.rng = clock, rng or random.Random()
        self.held: dict[str, Held] = {}
        self.settled_at: float | None = None  # the first good beat since the last failed one
        self._lock = threading.Lock()
        self._done: set[str] = set()  # offices whose loop has ended: freed at the next beat
        self._freed: dict[str, float] = {}  # office -> when this process freed it (its clock)
        self._registered = False

    # -- for the loops ----------------------------------------------------------------------
    def remaining(self, office: str) -> float:
        """Seconds this process may still touch `office`'s mailbox (0: not at all)."""
        held = self.held.get(office)
        if held is None:
            return 0.0
        return math.inf if self.exclusive else max(0.0, held.until - self.clock())

    def fence(self, office: str) -> Callable[[], float]:
        """For Mailbox.fence: the seconds left, or LeaseLost."""
        def check() -> float:
            left = self.remaining(office)
            if left <= 0:
                raise LeaseLost(office)
            return left
        return check

    def done(self, office: str) -> None:
        """The office's loop has ended and touches the mailbox no more: free its lease."""
        with self._lock:
            self._done.add(office)

    # -- the heartbeat ------------------------------------------------------------------------
    def _now(self, session) -> dt.datetime:
        if self.exclusive:
            return utcnow()
        return session.execute(select(func.now())).scalar_one()  # the transaction's start: one clock for all

    def _register(self, session, now: dt.datetime) -> None:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        session.execute(insert(Lease).values([{"office": o, "epoch": 0, "expires_at": now} for o in self.offices])
                        .on_conflict_do_nothing())
        session.execute(delete(Heartbeat).where(Heartbeat.beat_at < now - dt.timedelta(days=FORGET_DAYS)))
        session.add(Heartbeat(id=self.id, kind=self.kind, host=self.host, pid=self.pid, started_at=now, beat_at=now,
                              offices=[]))
        session.flush()
        self._registered = True

    def beat(self, balance: bool | None = None, busy: set[str] = frozenset()) -> Beat:
        """Renew, and (a daemon, once settled) even the offices out; `busy`: offices not to claim
        (their previous loop has not ended yet). Raises what the database raises: nothing of the
        beat is then changed here, and the fences close on their own."""
        balance = self.kind == "daemon" if balance is None else balance
        sent = self.clock()  # before the renewal leaves: the lease lasts at least LEASE_SECONDS from here
        with self._lock:
            done = set(self._done)
        keep = set(self.held) - done
        ttl = dt.timedelta(seconds=LEASE_SECONDS)
        with store.writing(self.engine) as session:
            now = self._now(session)
            if not self._registered:
                self._register(session, now)
            if done:
                session.execute(update(Lease).where(Lease.office.in_(done), Lease.holder == self.id)
                                .values(holder=None, expires_at=now))
            if keep:  # ours even if it ran out meanwhile: nobody else claimed it, so nobody touched the mailbox
                session.execute(update(Lease).where(Lease.office.in_(keep), Lease.holder == self.id)
                                .values(expires_at=now + ttl))
            leases = {o: (h, e) for o, h, e in session.execute(
                select(Lease.office, Lease.holder, Lease.expires_at).where(Lease.office.in_(self.offices)))}
            mine = {o for o in keep if leases.get(o, (None,))[0] == self.id}
            live = set(session.execute(select(Heartbeat.id).where(
                Heartbeat.kind == "daemon", Heartbeat.stopped_at.is_(None), Heartbeat.beat_at > now - ttl)).scalars())
            session.execute(update(Heartbeat).where(Heartbeat.id == self.id).values(beat_at=now, offices=sorted(mine)))
        until = sent + LEASE_SECONDS - FENCE_MARGIN_SECONDS
        out = Beat(lost=sorted(keep - mine), live=len(live | {self.id}))
        with self._lock:
            self._done -= done
            for office in done | set(out.lost):
                self.held.pop(office, None)
            for office in mine:
                if office in self.held:  # not stopped meanwhile
                    self.held[office].until = until
        self._freed = {o: t for o, t in self._freed.items() if sent - t < ORPHAN_SECONDS}
        self._freed.update({o: sent for o in done})
        busy = set(busy) | set(self._freed)  # given back for another to take: not taken back at once
        if self.settled_at is None:
            self.settled_at = sent
        settled = sent - self.settled_at >= SETTLE_SECONDS
        if balance and self.exclusive:
            chosen = Plan([o for o in self.offices if o not in mine | done | busy], [], len(self.offices))
        elif balance and settled:
            releasing = {o for o, h in self.held.items() if h.releasing}
            chosen = plan(self.id, self.offices, mine, live, leases, now, releasing, busy, self.rng)
        else:
            chosen = Plan([], [], share(len(self.offices), out.live))
        out.share = chosen.share
        for office in sorted(chosen.claim):  # one transaction each, in one order: claims never deadlock
            epoch = self._claim(office)
            if epoch is not None:
                self.held[office] = Held(epoch, until)
                out.claimed.append(office)
        for office in chosen.release:
            if office in self.held:
                self.held[office].releasing = True
        out.release = sorted(chosen.release)
        if out.claimed:
            with store.writing(self.engine) as session:
                session.execute(update(Heartbeat).where(Heartbeat.id == self.id).values(offices=sorted(self.held)))
        return out

    def _claim(self, office: str) -> int | None:
        """The conditional UPDATE: the office's new epoch if it was free (and is ours now)."""
        with store.writing(self.engine) as session:
            now = self._now(session)
            free = Lease.office == office if self.exclusive else \
                (Lease.office == office) & (Lease.holder.is_(None) | (Lease.expires_at <= now))
            got = session.execute(update(Lease).where(free).values(
                holder=self.id, epoch=Lease.epoch + 1, claimed_at=now,
                expires_at=now + dt.timedelta(seconds=LEASE_SECONDS))).rowcount
            if got != 1:
                return None
            return session.execute(select(Lease.epoch).where(Lease.office == office)).scalar_one()

    def unsettle(self) -> None:
        """A beat failed: after the next good one, only renew for SETTLE_SECONDS (the others
        reconnect too; until they have beaten, their offices look abandoned)."""
        self.settled_at = None

    def take(self) -> list[str]:
        """Claim every office now, for `poll --once`: returns the offices another process holds."""
        sent = self.clock()
        with store.writing(self.engine) as session:
            self._register(session, self._now(session))
        busy = []
        for office in self.offices:
            epoch = self._claim(office)
            if epoch is None:
                busy.append(office)
            else:
                self.held[office] = Held(epoch, sent + LEASE_SECONDS - FENCE_MARGIN_SECONDS)
        with store.writing(self.engine) as session:
            session.execute(update(Heartbeat).where(Heartbeat.id == self.id).values(offices=sorted(self.held)))
        self.settled_at = sent
        return busy

    def stop(self, offices: set[str] | None = None) -> None:
        """Free the leases (all, or `offices`: those whose loops have ended) and say this process
        has stopped; the others take the offices over at their next beat. A database that cannot
        be reached is left alone: the leases run out by themselves."""
        with self._lock:
            held = set(self.held) if offices is None else set(offices) & set(self.held)
            self.held = {o: h for o, h in self.held.items() if o not in held}
        if not self._registered:
            return
        try:
            with store.writing(self.engine) as session:
                now = self._now(session)
                if held:
                    session.execute(update(Lease).where(Lease.office.in_(held), Lease.holder == self.id)
                                    .values(holder=None, expires_at=now))
                session.execute(update(Heartbeat).where(Heartbeat.id == self.id).values(
                    beat_at=now, stopped_at=now, offices=sorted(self.held)))
        except Exception as exc:  # they run out within LEASE_SECONDS
            log.warning("could not free the leases (%s: %s); they run out within %d s", type(exc).__name__, exc,
                        LEASE_SECONDS)


def fleet(engine: Engine, offices: list[str], recent: dt.timedelta = dt.timedelta(days=1)) -> dict:
    """Who holds which office, for `mailbot status --daemons`: the processes seen within `recent`
    (each `alive`, `silent` - no beat for LEASE_SECONDS: dead or cut off - or `stopped`) and every
    office's lease (`held` by whom until when, or `free`), as of the database's clock."""
    with store.reading(engine) as session:
        now = utcnow() if engine.dialect.name != "postgresql" else session.execute(select(func.now())).scalar_one()
        beats = session.execute(select(Heartbeat).where(Heartbeat.beat_at > now - recent)
                                .order_by(Heartbeat.started_at)).scalars().all()
        leases = {row.office: row for row in session.execute(select(Lease)).scalars()}
    ttl = dt.timedelta(seconds=LEASE_SECONDS)
    holding: dict[str, list[str]] = {}
    rows = []
    for office in offices:
        row = leases.get(office)
        held = row is not None and row.holder is not None and row.expires_at > now
        if held:
            holding.setdefault(row.holder, []).append(office)
        rows.append({"office": office, "state": "held" if held else "free", "holder": row.holder if held else None,
                     "epoch": row.epoch if row else 0, "expires_at": row.expires_at.isoformat() if held else None})
    daemons = []
    for beat in beats:
        state = "stopped" if beat.stopped_at else "alive" if beat.beat_at > now - ttl else "silent"
        daemons.append({"id": beat.id, "kind": beat.kind, "host": beat.host, "pid": beat.pid,
                        "started_at": beat.started_at.isoformat(), "beat_at": beat.beat_at.isoformat(),
                        "stopped_at": beat.stopped_at.isoformat() if beat.stopped_at else None, "state": state,
                        "offices": sorted(holding.get(beat.id, []))})
    live = [d for d in daemons if d["state"] == "alive" and d["kind"] == "daemon"]
    return {"now": now.isoformat(), "live": len(live), "share": share(len(offices), len(live)) if live else 0,
            "daemons": daemons, "offices": rows}
