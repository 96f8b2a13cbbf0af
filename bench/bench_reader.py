"""Time and memory of reading attachments, each case in a fresh interpreter.

    .venv/bin/python bench/bench_reader.py [--rows 20000] [--repeat 3]

Prints, per case: the operation's own time (measured in the child, imports excluded), the whole
process's wall time, and the child's peak RSS (from os.wait4, so exact per child). To add a case
(e.g. a full `mailbot check`), add a (name, code) pair to CASES: the code sees `path`, runs the
operation, and may set `result` to a short string.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEADER = ["市场主体（自然人）名称", "行政管理事项名称", "日期", "使用信用记录或报告情况", "使用的激励或惩戒措施"]

CHILD = """
import json, resource, sys, time
path = sys.argv[1]
{imports}
start = time.perf_counter()
result = ""
{code}
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "result": result}}))
"""

CASES = {
    "a. openpyxl read-only, bare": ("checklist", "import openpyxl", """
wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
n = sum(1 for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row)
wb.close()
result = f"{n} cells"
"""),
    "b. mailbot.workbook.read": ("checklist", "from mailbot.workbook import read\nfrom mailbot.config import Limits", """
wb = read(open(path, "rb").read(), "清单.xlsx", Limits())
result = f"{sum(len(s.rows) for s in wb.sheets)} rows"
"""),
    "c. 1 GiB zip bomb, honest sizes": ("bomb", "from mailbot.workbook import read\nfrom mailbot.config import Limits\nfrom mailbot.errors import Rejected", """
try:
    read(open(path, "rb").read(), "炸弹.xlsx", Limits())
except Rejected as exc:
    result = exc.problems[0].code
"""),
    "d. 1 GiB zip bomb, lying sizes": ("lying_bomb", "from mailbot.workbook import read\nfrom mailbot.config import Limits\nfrom mailbot.errors import Rejected", """
try:
    read(open(path, "rb").read(), "炸弹.xlsx", Limits())
except Rejected as exc:
    result = exc.problems[0].code
"""),
}

GOALS = [  # (case, check, description)
    ("b. mailbot.workbook.read", lambda r, all_: r["seconds"] <= 1.5 * all_["a. openpyxl read-only, bare"]["seconds"], "within 1.5x of (a)"),
    ("b. mailbot.workbook.read", lambda r, all_: r["rss_mb"] < 200, "peak RSS < 200 MB"),
    ("c. 1 GiB zip bomb, honest sizes", lambda r, all_: r["seconds"] < 1 and r["result"] == "zip_bomb", "rejected in < 1 s"),
    ("c. 1 GiB zip bomb, honest sizes", lambda r, all_: r["rss_mb"] < 100, "peak RSS < 100 MB"),
    ("d. 1 GiB zip bomb, lying sizes", lambda r, all_: r["seconds"] < 1 and r["result"] == "zip_bomb", "rejected in < 1 s"),
    ("d. 1 GiB zip bomb, lying sizes", lambda r, all_: r["rss_mb"] < 100, "peak RSS < 100 MB"),
]


def make_checklist(path: Path, rows: int) -> None:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("清单")
    ws.append(["行政管理事项中使用信用记录和信用报告的情况清单"])
    ws.append(["单位：", "赞皇县市场监督管理局"])
    ws.append(["报送人：", "张三"])
    ws.append(["报送日期：", dt.datetime(2026, 11, 20)])
    ws.append(HEADER)
    measures = ["容缺受理", "告知承诺", "从严审核", "无", "限制参与政府采购"]
    for i in range(rows):
        ws.append([f"赞皇县第{i}号商贸有限公司", "食品经营许可证核发", dt.datetime(2026, 11, 1 + i % 28),
                   f"通过信用中国查询，第{i}次记录", measures[i % 5]])
    wb.save(path)


def make_bomb(checklist: Path, path: Path, lying: bool) -> None:
    """The checklist with its sheet XML replaced by 1 GiB of deflated zeros (about 1 MB)."""
    block = bytes(1 << 20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)  # after a full flush every block compresses alike
    raw = segment * 1024 + c.flush()
    crc = 0
    for _ in range(1024):
        crc = zlib.crc32(block, crc)
    size = 10_000 if lying else 1 << 30
    out, central = bytearray(), bytearray()
    with zipfile.ZipFile(checklist) as zf:
        for info in zf.infolist():
            body = zf.read(info)
            if info.filename.startswith("xl/worksheets/"):
                data, body_crc, body_size = raw, crc, size
            else:
                d = zlib.compressobj(9, zlib.DEFLATED, -15)
                data, body_crc, body_size = d.compress(body) + d.flush(), zlib.crc32(body), len(body)
            name, offset = info.filename.encode(), len(out)
            out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, body_crc, len(data), body_size, len(name), 0)
            out += name + data
            central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, body_crc, len(data), body_size,
                                   len(name), 0, 0, 0, 0, 0, offset) + name
    count = len(zf.infolist())
    path.write_bytes(bytes(out + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), len(out), 0)))


def run(name: str, path: Path) -> dict:
    _, imports, code = CASES[name]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(imports=imports, code=code), str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{err.decode()}")
    report = json.loads(out)
    report.update(wall=wall, rss_mb=usage.ru_maxrss / 1024)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the fastest is shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = {"checklist": Path(tmp) / "checklist.xlsx", "bomb": Path(tmp) / "bomb.xlsx", "lying_bomb": Path(tmp) / "lying.xlsx"}
        make_checklist(files["checklist"], args.rows)
        make_bomb(files["checklist"], files["bomb"], lying=False)
        make_bomb(files["checklist"], files["lying_bomb"], lying=True)
        sizes = {k: v.stat().st_size for k, v in files.items()}
        print(f"{args.rows}-row checklist: {sizes['checklist'] / 1e6:.2f} MB; bombs: {sizes['bomb'] / 1e6:.2f} MB "
              f"(declares 1 GiB), {sizes['lying_bomb'] / 1e6:.2f} MB (declares 10 kB); Python {sys.version.split()[0]}")
        results = {}
        for name, (file_key, _, _) in CASES.items():
            runs = [run(name, files[file_key]) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["seconds"])
            best["rss_mb"] = max(r["rss_mb"] for r in runs)
            results[name] = best
    print(f"\n{'case':34} {'op s':>7} {'process s':>10} {'peak RSS MB':>12}  result")
    for name, r in results.items():
        print(f"{name:34} {r['seconds']:7.3f} {r['wall']:10.3f} {r['rss_mb']:12.1f}  {r['result']}")
    print()
    failed = 0
    for name, check, text in GOALS:
        ok = check(results[name], results)
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {text}")
    a, b = results["a. openpyxl read-only, bare"], results["b. mailbot.workbook.read"]
    print(f"\n(b)/(a) = {b['seconds'] / a['seconds']:.2f}x")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
