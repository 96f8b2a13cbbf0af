"""`mailbot check` on a 20,000-row checklist and on a 1 GiB zip bomb, as the office runs it.

    .venv/bin/python bench/bench_check.py [--rows 20000] [--repeat 5]

Each case is a whole process, timed from outside (wall time, peak RSS of the child from
os.wait4), so interpreter start-up and imports count on both sides:
  a. a bare openpyxl read-only iteration of the file (python -c ...), the yardstick;
  b. `python -m mailbot check FILE --json > /dev/null`: read, find the table, check every row,
     mask ID numbers, print the JSON;
  c. the same command on the checklist whose sheet inflates to 1 GiB (rejected as zip_bomb).
Goals (issue 16, after issue 3's 1.5x and 200 MB): (b) at most 0.75x of (a) and at most 120 MB;
(c) under 1 s and under 100 MB.
Runs alternate between cases so that a busy machine slows all of them alike; the fastest run
of each case is compared (and the highest RSS reported). CPU time (user + system, from
os.wait4) is printed beside wall time: on a shared machine it is the steadier figure. Last, one
in-process run shows where (b) spends its time.
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
PYTHON = ROOT / ".venv" / "bin" / "python"

BARE = """
import sys, openpyxl
wb = openpyxl.load_workbook(sys.argv[1], read_only=True, data_only=True)
n = sum(1 for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row)
wb.close()
"""


PHASES = """
import time
t0 = time.process_time()
import datetime as dt, gc, json, sys
from mailbot import checklist, cli, rules, verdict, workbook
from mailbot.config import Limits
took = {"imports (cli, verdict)": time.process_time() - t0}
data = open(sys.argv[1], "rb").read()
gc.disable()  # as verdict() does
def timed(name, f):
    start = time.process_time()
    out = f()
    took[name] = time.process_time() - start
    return out
book = timed("workbook.read", lambda: workbook.read(data, "清单.xlsx", Limits()))
parsed = timed("checklist.parse", lambda: checklist.parse(book))
day = rules.report_date(parsed)
ctx = rules.Context(None, f"{day:%Y-%m}", dt.date.today())
timed("rules.check", lambda: rules.check(parsed, ctx))
workbook.read = lambda *a, **k: book
result = verdict.verdict(data, "清单.xlsx", None)
gc.enable()
timed("json.dumps as cli does (compact)", lambda: json.dumps(result, ensure_ascii=False, default=str))
timed("json.dumps, indent=2 (for comparison)", lambda: json.dumps(result, ensure_ascii=False, indent=2, default=str))
for name, seconds in took.items():
    print(f"  {name:40} {seconds:6.3f}")
"""


def make_checklist(path: Path, rows: int) -> None:
    """The official layout with `rows` plausible rows dated in last month, so that it is accepted."""
    import openpyxl
    from bench_reader import HEADER

    month_end = dt.date.today().replace(day=1) - dt.timedelta(days=1)
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("情况清单")
    ws.append(["行政管理事项中使用信用记录和信用报告的情况清单"])
    ws.append(["单位：", "赞皇县市场监督管理局"])
    ws.append(["报送人：", "张三"])
    ws.append(["报送日期：", dt.datetime.combine(month_end, dt.time())])
    ws.append(HEADER)
    measures = ["容缺受理", "告知承诺", "从严审核", "无", "限制参与政府采购"]
    matters = ["食品经营许可证核发", "政府采购供应商资格审查", "个体工商户登记", "建筑工程施工许可", "评先评优"]
    for i in range(rows):
        day = dt.datetime(month_end.year, month_end.month, 1 + i % 28)
        ws.append([f"赞皇县第{i}号商贸有限公司", matters[i % 5], day,
                   f"通过信用中国查询，第{i}次记录，无失信记录", measures[i % 5]])
    wb.save(path)


def run(argv: list[str]) -> tuple[float, float, int, float]:
    """(wall seconds, peak RSS MB, exit code, CPU seconds) of one child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("MAILBOT_CONFIG", None)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{argv} failed ({code}):\n{err.decode()}")
    return wall, usage.ru_maxrss / 1024, code, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs per case; the fastest is compared")
    parser.add_argument("--make", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:  # in a child, so that this process stays small: a forked child starts with its RSS
        from bench_reader import make_bomb

        make_checklist(Path(args.make) / "checklist.xlsx", args.rows)
        make_bomb(Path(args.make) / "checklist.xlsx", Path(args.make) / "bomb.xlsx", lying=False)
        return
    with tempfile.TemporaryDirectory() as tmp:
        checklist, bomb = Path(tmp) / "checklist.xlsx", Path(tmp) / "bomb.xlsx"
        subprocess.run([str(PYTHON), __file__, "--make", tmp, "--rows", str(args.rows)], check=True)
        cases = {
            "a. openpyxl read-only, bare": [str(PYTHON), "-c", BARE, str(checklist)],
            "b. mailbot check --json": [str(PYTHON), "-m", "mailbot", "check", str(checklist), "--json"],
            "c. mailbot check, 1 GiB zip bomb": [str(PYTHON), "-m", "mailbot", "check", str(bomb), "--json"],
        }
        print(f"{args.rows}-row checklist: {checklist.stat().st_size / 1e6:.2f} MB; bomb: {bomb.stat().st_size / 1e6:.2f} MB "
              f"(inflates to 1 GiB); Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; "
              f"load average before: {os.getloadavg()[0]:.2f}")
        said = subprocess.run(cases["c. mailbot check, 1 GiB zip bomb"], capture_output=True, cwd=ROOT).stdout
        bomb_codes = [p["code"] for p in json.loads(said)["problems"]]
        runs: dict[str, list] = {name: [] for name in cases}
        for _ in range(args.repeat):
            for name, argv in cases.items():
                runs[name].append(run(argv))
        phases = subprocess.run([str(PYTHON), "-c", PHASES, str(checklist)], check=True, cwd=ROOT, capture_output=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.decode()
    results = {name: (min(r[0] for r in rs), max(r[1] for r in rs), rs[0][2], min(r[3] for r in rs))
               for name, rs in runs.items()}
    print(f"\n{'case':34} {'wall s (best)':>13} {'median':>7} {'CPU s (best)':>12} {'peak RSS MB':>12}  exit")
    for name, (wall, rss, code, cpu) in results.items():
        median = sorted(r[0] for r in runs[name])[len(runs[name]) // 2]
        print(f"{name:34} {wall:13.3f} {median:7.3f} {cpu:12.3f} {rss:12.1f}  {code}")
    (a, _, _, a_cpu), (b, b_rss, b_code, b_cpu), (c, c_rss, c_code, _) = results.values()
    goals = [
        (b <= 0.75 * a, f"(b) at most 0.75x of (a), wall time: {b / a:.2f}x (CPU time: {b_cpu / a_cpu:.2f}x)"),
        (b_rss <= 120, f"(b) peak RSS <= 120 MB: {b_rss:.1f} MB"),
        (b_code == 0, "(b) the checklist is accepted (exit 0)"),
        (c < 1, f"(c) rejected in < 1 s: {c:.3f} s"),
        (c_rss < 100, f"(c) peak RSS < 100 MB: {c_rss:.1f} MB"),
        (c_code == 1 and bomb_codes == ["zip_bomb"], f"(c) rejected (exit 1) as {bomb_codes}"),
    ]
    print()
    for ok, text in goals:
        print(f"{'ok  ' if ok else 'FAIL'} {text}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("\nwhere (b) spends its CPU time (one in-process run, seconds):\n" + phases, end="")
    sys.exit(0 if all(ok for ok, _ in goals) else 1)


if __name__ == "__main__":
    main()
