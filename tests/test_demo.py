"""`mailbot demo` on this machine: embedded IMAP (pymap) and SMTP, the whole month, exit 0."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import docx
import openpyxl


def test_demo_runs_the_whole_loop_and_keeps_its_files(tmp_path):
    keep = tmp_path / "demo"
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "mailbot", "demo", "--keep", str(keep)],
                         capture_output=True, text=True, timeout=120, env={"COLUMNS": "160", "PATH": "/usr/bin:/bin"})
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr[-2000:]
    assert took < 60
    out = run.stdout
    for expected in ("回执：【已受理】", "回执：【未通过，请修改后重新报送】", "提醒：请于", "关于未按时报送",
                     "情况清单报送情况通报（草稿）", "已记为逾期报送", "演示完成"):
        assert expected in out, expected
    assert "someone@unknown.example" in out and "→ someone@unknown.example" not in out  # never answered

    [workbook] = keep.glob("*情况清单汇总.xlsx")
    assert {"汇总", "报送情况", "统计"} <= set(openpyxl.load_workbook(workbook).sheetnames)
    [notice] = keep.glob("*通报（草稿）.docx")
    text = "\n".join(p.text for p in docx.Document(notice).paragraphs) + "\n".join(
        c.text for t in docx.Document(notice).tables for r in t.rows for c in r.cells)
    assert "赞皇县教育局" in text and "赞皇县住房和城乡建设局" in text and "赞皇县市场监督管理局" not in text

    config = keep / "mailbot.yaml"
    assert not config.exists()  # the demo's config lives in memory; only data is kept
    status = subprocess.run([sys.executable, "-c", (
        "import json, sys; from mailbot import store, status, config, demo; from pathlib import Path;"
        f"root = Path({str(keep)!r}); cfg = config.parse(demo.demo_config(root, 1, 2));"
        "rows = status.status(store.connect(cfg.database.url), cfg.office(), sys.argv[1]);"
        "print(json.dumps({r['id']: [r['state'], r['submissions']] for r in rows}))"),
        _period(out)], capture_output=True, text=True, check=True)
    assert json.loads(status.stdout) == {"scjgj": ["filed", 1], "czj": ["filed", 2], "zjj": ["late", 1],
                                         "jyj": ["missing", 0], "zhz": ["filed", 1]}


def _period(out: str) -> str:
    import re
    year, month = re.search(r"(\d{4})年(\d{1,2})月情况清单报送演示", out).groups()
    return f"{year}-{int(month):02d}"
