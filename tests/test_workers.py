"""Deciding in worker processes: same answers as in-process, and a crashing or hanging parser
costs one message (quarantined), never the daemon nor the messages around it."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mailbot import archive, config as config_mod
from mailbot.decision import decide
from mailbot.mailbox import Fetched
from mailbot.workers import Deciders
from tests import factory

MAIL = Path(__file__).parent / "data" / "mail"


def _office(tmp_var, **limits):
    class Account:
        port, user = 143, "office@example.test"

    class Smtp:
        port = 25

    return config_mod.parse(factory.config_dict(Account, Smtp, tmp_var, limits=limits)).office()


def _items(raws):
    return [Fetched("INBOX", 1, i, raw, factory.ON_TIME) for i, raw in enumerate(raws)]


def _summary(decision):
    return (decision.status, decision.kind, decision.reason, decision.filename, decision.period,
            [(p.code, p.row, p.column) for p in decision.problems])


def test_workers_decide_exactly_as_the_daemon_would(tmp_var):
    raws = [p.read_bytes() for p in sorted(MAIL.glob("*.eml"))] + [factory.mail()]
    office = _office(tmp_var, workers=2)
    deciders = Deciders(office, tmp_var / "archive")
    try:
        results = deciders.decide(office, _items(raws))
    finally:
        deciders.close()
    pooled = [d for _sha, d in results]
    for (sha, _d), raw in zip(results, raws):  # each raw mail kept, by its content, before any commit
        assert sha == archive.digest(raw) and archive.get(tmp_var / "archive", sha, office.limits.max_message_bytes) == raw
    inline = [decide(office, raw, factory.ON_TIME) for raw in raws]
    assert [_summary(d) for d in pooled] == [_summary(d) for d in inline]
    assert {d.status for d in pooled} >= {"accepted", "rejected", "ignored", "quarantined"}


@pytest.mark.parametrize("fault, reason", [("MAILBOT_CRASH_AT", "worker_died"), ("MAILBOT_HANG_AT", "timeout")])
def test_a_worker_that_dies_or_hangs_costs_only_its_own_message(tmp_var, monkeypatch, fault, reason):
    monkeypatch.setenv(fault, "in_decide")
    monkeypatch.setenv("MAILBOT_FAULT_MARK", "poison-pill")
    raws = [factory.mail(message_id=f"<m{i}@example.gov.cn>") for i in range(3)]
    raws.insert(1, factory.mail(message_id="<poison-pill@example.gov.cn>"))
    office = _office(tmp_var, workers=2, seconds_per_message=5)
    deciders = Deciders(office, tmp_var / "archive")
    try:
        started = dt.datetime.now()
        decisions = [d for _sha, d in deciders.decide(office, _items(raws))]
        again = [d for _sha, d in deciders.decide(office, _items([factory.mail(message_id="<after@example.gov.cn>")]))]
    finally:
        deciders.close()
    assert [d.status for d in decisions] == ["accepted", "quarantined", "accepted", "accepted"]
    assert decisions[1].reason == reason and decisions[1].mail.message_id == "poison-pill@example.gov.cn"
    assert again[0].status == "accepted"  # the pool was rebuilt
    assert dt.datetime.now() - started < dt.timedelta(seconds=60)


def test_the_workers_outlive_the_thread_that_first_needed_them(tmp_var):
    """An office's loop ends when its lease is given back (mailbot.lease); the workers it had
    started were killed with it (PR_SET_PDEATHSIG goes with the thread), and every other
    office's loop then failed with BrokenProcessPool at each poll, the pool never rebuilt."""
    import threading
    import time

    office = _office(tmp_var, workers=1)
    deciders = Deciders(office, tmp_var / "archive")
    try:
        first = threading.Thread(target=deciders.decide, args=(office, _items([factory.mail()])))
        first.start()
        first.join()  # the loop that started the worker has ended
        [worker] = list(deciders._pool._processes.values())
        time.sleep(1)  # a worker killed with the thread is dead by now
        assert worker.is_alive()
        [(_sha, decision)] = deciders.decide(office, _items([factory.mail(message_id="<next@example.gov.cn>")]))
        assert decision.status == "accepted"
        worker.kill()  # killed while idle (the OOM killer): the next job gets a new pool
        worker.join()
        time.sleep(0.5)
        [(_sha, decision)] = deciders.decide(office, _items([factory.mail(message_id="<after@example.gov.cn>")]))
        assert decision.status == "accepted"
    finally:
        deciders.close()


_IMPORTS = r'''
import pickle, sys
from pathlib import Path
from mailbot import workers

var = Path(sys.argv[1])
office, items = pickle.loads((var / "work.pickle").read_bytes())  # as a worker is handed them
for item in items:
    sha, decision = workers._archived_decision(var, office, item)
    print(decision.status, decision.annotated is not None, "openpyxl" in sys.modules)
'''


def test_a_worker_loads_openpyxl_only_to_mark_up_a_copy(tmp_var):
    """A worker reads .xlsx with calamine: openpyxl (14 MB of each worker's memory) is imported
    only when a copy is marked up, and then still parses through defusedxml."""
    import pickle
    import subprocess
    import sys

    bad_row = ("赞皇县某商贸有限公司", "", "2026.13.45", "经信用中国查询，无失信记录", "无")
    raws = [factory.mail(attachments=(("情况清单.xlsx", factory.checklist_xlsx(rows), factory.XLSX),))
            for rows in (factory.GOOD_ROWS, [bad_row])]
    (tmp_var / "work.pickle").write_bytes(pickle.dumps((_office(tmp_var), _items(raws))))
    out = subprocess.run([sys.executable, "-c", _IMPORTS, str(tmp_var)], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[:2] == ["accepted False False", "rejected True True"]


def test_column_letters_are_openpyxl_s():
    from openpyxl.utils import get_column_letter

    from mailbot.workbook import get_column_letter as ours

    assert [ours(i) for i in range(1, 18279)] == [get_column_letter(i) for i in range(1, 18279)]
    for wrong in (0, -1, 18279):
        with pytest.raises(ValueError):
            ours(wrong)
