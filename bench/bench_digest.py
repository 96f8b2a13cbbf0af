"""Time and memory of the digests and the export at city scale, each case in a fresh interpreter.

    .venv/bin/python bench/bench_digest.py [--departments 1300] [--rows 10] [--repeat 1]

A year (12 periods) of `--departments` x `--rows` rows is bulk-inserted into a SQLite file
first (not measured). Then, per case, in a fresh interpreter: the operation's own time, the
child's imports and config loading, the child process's wall time, and its peak RSS (os.wait4,
exact per child). Goals (issue 7), on the process wall time: a month's digest under 5 s, the
year's export under 30 s; peak RSS under 500 MB.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import factory  # noqa: E402

YEAR, PERIOD = 2026, "2026-11"
NOW = "2026-11-26T09:00:00+08:00"  # the notice day of the benchmarked month

CHILD = """
import time
begin = time.perf_counter()
import datetime as dt, json, sys
from pathlib import Path
from mailbot import config, store
{imports}
cfg = config.load(sys.argv[1])
office = cfg.office()
engine = store.open_engine(cfg.database.url)
now = dt.datetime.fromisoformat({now!r})
out = Path(sys.argv[2])
start = time.perf_counter()
result = ""
{code}
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "startup": start - begin, "result": result}}))
"""

CASES = {
    "a. month: digest workbook": ("from mailbot import digest, report", """
month = digest.load_month(engine, office, {period!r}, now)
data = report.workbook(month)
result = f"{{len(month.records)}} rows, {{len(data) / 1e6:.1f}} MB"
"""),
    "b. month: queue_monthly (all)": ("from mailbot import digest", """
assert digest.queue_monthly(engine, office, {period!r}, now)
from mailbot.models import Outgoing
from sqlalchemy import select
with store.reading(engine) as s:
    raw = s.execute(select(Outgoing.raw).where(Outgoing.key == "digest:{period}")).scalar_one()
result = f"mail {{len(raw) / 1e6:.1f}} MB"
"""),
    "c. year: export xlsx": ("from mailbot import export", """
path, rows = export.export(engine, office, "{year}", "xlsx", out / "year.xlsx")
result = f"{{rows}} rows, {{path.stat().st_size / 1e6:.1f}} MB"
"""),
    "d. year: export csv": ("from mailbot import export", """
path, rows = export.export(engine, office, "{year}", "csv", out / "year.csv")
result = f"{{rows}} rows, {{path.stat().st_size / 1e6:.1f}} MB"
"""),
}

GOALS = [  # (case, check, description)
    ("a. month: digest workbook", lambda r: r["wall"] < 5, "whole process < 5 s"),
    ("b. month: queue_monthly (all)", lambda r: r["wall"] < 5, "whole process < 5 s"),
    ("c. year: export xlsx", lambda r: r["wall"] < 30, "whole process < 30 s"),
    ("d. year: export csv", lambda r: r["wall"] < 30, "whole process < 30 s"),
] + [(case, lambda r: r["rss_mb"] < 500, "peak RSS < 500 MB") for case in CASES]


# --- the data --------------------------------------------------------------------------------

# entity, matter, usage, measure: the factory's county rows, two of them hostile (a formula to be
# neutralised, a leading "-") as the export must meet them
ROW_SHAPES = list(factory.COUNTY_ROWS)
ROW_SHAPES[5] = ("=HYPERLINK(\"http://evil.example\",\"{n}\")", "道路运输经营许可", "经信用中国查询", "容缺受理")
ROW_SHAPES[8] = ("李{n}", "高龄津贴发放", "-经信用中国查询", "正常办理")


def derived_for(matter: str, usage: str, measure: str) -> dict:
    from mailbot import vocabulary

    joined = " ".join((usage, measure, matter))
    return {"measures": [{"raw": m.raw, "canonical": m.canonical, "kind": m.kind} for m in vocabulary.map_measures(measure)],
            "channels": vocabulary.detect_channels(joined), "lists": vocabulary.detect_lists(joined),
            "field": vocabulary.detect_field(matter), "codes": []}


def write_config(path: Path, db: Path, departments: int) -> None:
    data = {
        "office": {"name": "赞皇县社会信用体系建设领导小组办公室", "address": "office@example.test"},
        "imap": {"host": "127.0.0.1", "security": "none", "user": "office@example.test"},
        "smtp": {"host": "127.0.0.1", "security": "none"},
        "database": {"url": f"sqlite:///{db}"},
        "recipients": {"digest": ["office@example.test"]},
        "departments": [{"id": f"d{i:04d}", "name": f"赞皇县第{i}局", "emails": [f"d{i}@example.gov.cn"]}
                        for i in range(1, departments + 1)],
    }
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")  # JSON is valid YAML


def populate(url: str, departments: int, rows: int) -> int:
    """One message, one accepted submission and `rows` rows per department and month of YEAR;
    every 50th department files late, every 97th sends a rejected version first. Returns the rows."""
    from sqlalchemy import insert

    from mailbot import store
    from mailbot.models import Message, Row, Submission

    engine = store.connect(url)
    shapes = [(e, m, u, me, derived_for(m, u, me)) for e, m, u, me in ROW_SHAPES]
    utc = dt.timezone.utc
    messages, submissions, lines = [], [], []
    sub_id = 0
    for month in range(1, 13):
        period = f"{YEAR}-{month:02d}"
        for d in range(1, departments + 1):
            day = 27 if d % 50 == 0 else 20
            for accepted in ([False, True] if d % 97 == 0 else [True]):
                sub_id += 1
                at = dt.datetime(YEAR, month, day - (not accepted), 2, d % 60, tzinfo=utc)
                messages.append({"id": sub_id, "office": "default", "folder": "INBOX", "uidvalidity": 1, "uid": sub_id,
                                 "message_id": f"m{sub_id}@example.gov.cn", "sha256": f"{sub_id:064x}",
                                 "sender": f"d{d}@example.gov.cn", "subject": f"{YEAR}年{month}月情况清单",
                                 "received_at": at, "kind": "checklist", "status": "accepted" if accepted else "rejected",
                                 "department_id": f"d{d:04d}", "destination": "已处理"})
                submissions.append({"id": sub_id, "office": "default", "message_pk": sub_id, "department_id": f"d{d:04d}",
                                    "period": period, "period_source": "subject", "received_at": at, "accepted": accepted,
                                    "late": accepted and day > 25, "version": 1 + (d % 97 == 0 and accepted),
                                    "unit": f"赞皇县第{d}局", "row_count": rows if accepted else 0,
                                    "filename": "清单.xlsx", "sheet": "情况清单", "problems": []})
            for r in range(rows):
                entity, matter, usage, measure, derived = shapes[(d + r) % len(shapes)]
                lines.append({"office": "default", "submission_id": sub_id, "row_no": 7 + r,
                              "entity": entity.format(n=d * 100 + r), "matter": matter,
                              "date": dt.date(YEAR, month, 1 + r % 20), "date_raw": f"{YEAR}-{month}-{1 + r % 20}",
                              "usage": usage, "measure": measure, "derived": derived})
    with engine.begin() as conn:
        conn.execute(insert(Message.__table__), messages)
        conn.execute(insert(Submission.__table__), submissions)
        for start in range(0, len(lines), 20_000):
            conn.execute(insert(Row.__table__), lines[start:start + 20_000])
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # the cases read the database file, not a WAL
    engine.dispose()
    return len(lines)


# --- running ---------------------------------------------------------------------------------

def run(name: str, config: Path, out: Path) -> dict:
    imports, code = CASES[name]
    child = CHILD.format(imports=imports, now=NOW, code=code.format(period=PERIOD, year=YEAR))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([sys.executable, "-c", child, str(config), str(out)],
                                stdout=subprocess.PIPE, stderr=errors, env=env)
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # reaps the child and reports its own peak RSS
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            errors.seek(0)
            raise SystemExit(f"{name} failed:\n{errors.read().decode()}")
    report = json.loads(stdout)
    report.update(wall=wall, rss_mb=usage.ru_maxrss / 1024)
    return report


def main() -> None:
    if sys.argv[1:2] == ["--populate"]:
        db, departments, rows = sys.argv[2:5]
        print(populate(f"sqlite:///{db}", int(departments), int(rows)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--departments", type=int, default=1300)
    parser.add_argument("--rows", type=int, default=10, help="rows per department and month")
    parser.add_argument("--repeat", type=int, default=1, help="runs per case; the fastest time and the largest RSS are shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        db, config = tmp / "mailbot.db", tmp / "mailbot.yaml"
        write_config(config, db, args.departments)
        start = time.perf_counter()
        # in a child of its own: a forked child inherits the parent's peak RSS, so the parent stays small
        total = int(subprocess.run([sys.executable, __file__, "--populate", str(db), str(args.departments), str(args.rows)],
                                   check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout)
        print(f"{args.departments} departments x 12 months x {args.rows} rows: {total} rows in force "
              f"(every 50th department late), {db.stat().st_size / 1e6:.0f} MB SQLite, "
              f"inserted in {time.perf_counter() - start:.1f} s; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        results = {}
        for name in CASES:
            runs = []
            for _ in range(args.repeat):
                if name.startswith("b."):  # queue_monthly queues once: start each run from an empty outbox
                    import sqlite3
                    with sqlite3.connect(db) as conn:
                        conn.execute("DELETE FROM outbox")
                runs.append(run(name, config, tmp))
            best = min(runs, key=lambda r: r["seconds"])
            best["rss_mb"] = max(r["rss_mb"] for r in runs)
            results[name] = best
    print(f"\n{'case':32} {'op s':>7} {'imports+config s':>17} {'process s':>10} {'peak RSS MB':>12}  result")
    for name, r in results.items():
        print(f"{name:32} {r['seconds']:7.2f} {r['startup']:17.2f} {r['wall']:10.2f} {r['rss_mb']:12.1f}  {r['result']}")
    print()
    failed = 0
    for name, check, text in GOALS:
        ok = check(results[name])
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {text}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
