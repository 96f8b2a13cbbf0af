"""`mailbot demo` on this machine: embedded IMAP (pymap) and SMTP, the whole month told on the
terminal, every date on the story's clock, and with --keep every file the month produced."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import sqlite3
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import docx
import openpyxl
import pytest

from mailbot.cli import main
from mailbot.terminal import cells

TZ = ZoneInfo("Asia/Shanghai")
COLUMNS = 100


def _demo(*args: str, tmp_path) -> subprocess.CompletedProcess:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "mailbot", "demo", *args], capture_output=True, text=True, timeout=120,
                          env={"COLUMNS": str(COLUMNS), "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path / "tmp")})


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    """One demo run with --keep, shared by the tests below (it takes some seconds)."""
    tmp_path = tmp_path_factory.mktemp("demo")
    keep = tmp_path / "kept"
    started = time.monotonic()
    run = _demo("--keep", str(keep), tmp_path=tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    year, month = re.search(r"(\d{4})年(\d{1,2})月情况清单报送演示", run.stdout).groups()
    return run, keep, f"{year}-{int(month):02d}", time.monotonic() - started


def _mail(path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def _flat(text: str) -> str:
    """Text with its wrapping undone: no white space, no body bar."""
    return re.sub(r"[\s│]", "", text)


def test_the_story_is_on_the_terminal_and_the_log_in_a_file(kept):
    run, keep, period, took = kept
    assert took < 60
    out = run.stdout
    for expected in ("回执：【已受理】", "回执：【未通过，请修改后重新报送】", "提醒：请于", "关于未按时报送",
                     "情况清单报送情况通报（草稿）", "已记为逾期报送", "本月小结", "演示完成"):
        assert expected in out, expected
    assert "someone@unknown.example（未登记的邮箱）" in out and "发件人邮箱未登记，不自动处理，也不回复" in out
    assert "发出回执：someone@unknown.example" not in out  # never answered
    # the closing table names the demo's start line (it said "尚未收件" after a month of mail)
    assert f"起始线：{period[:4]}年{int(period[5:])}月1日 00:00" in out and "尚未收件" not in out
    assert run.stderr == ""  # no log line, no SMTP chatter, no alembic on the terminal
    assert not re.search(r"\bINFO\b|mail\.log|alembic", out)
    log = (keep / "mailbot.log").read_text(encoding="utf-8")
    assert "INFO mail.log:" in log and "alembic" in log and "mailbot.runner: message=<demo-0@zanhuang.example>" in log


def test_every_mail_is_shown_in_full_wrapped_never_cut(kept):
    run, keep, period, _took = kept
    out = run.stdout
    assert "…" not in out
    assert max(cells(line) for line in out.splitlines()) <= COLUMNS
    flat = _flat(out)
    sent = sorted((keep / "发出的邮件").glob("*.eml"))
    assert len(sent) == 15
    for path in sent:
        body = _mail(path).get_body(("plain",)).get_content()
        assert _flat(body) in flat, path.name


def _local_day(stamp: dt.datetime) -> dt.date:
    return stamp.astimezone(TZ).date()


def test_every_date_follows_the_story_clock(kept):
    run, keep, period, _took = kept
    year, month = map(int, period.split("-"))
    in_story = lambda day: (day.year, day.month) == (year, month)  # noqa: E731
    today = dt.datetime.now(TZ).date()
    assert not in_story(today)  # the story is last month's
    wall = f"{today.year}年{today.month}月{today.day}日"
    assert wall not in run.stdout
    received = {_mail(p)["Message-ID"]: _local_day(parsedate_to_datetime(_mail(p)["Date"]))
                for p in (keep / "收到的邮件").glob("*.eml")}
    for path in (keep / "发出的邮件").glob("*.eml"):
        msg = _mail(path)
        day = _local_day(parsedate_to_datetime(msg["Date"]))
        assert in_story(day), (path.name, msg["Date"])
        body = msg.get_body(("plain",)).get_content()
        assert wall not in body, path.name
        signed = re.findall(r"^(\d{4})年(\d{1,2})月(\d{1,2})日$", body, re.M)[-1]  # under the office's name
        assert dt.date(*map(int, signed)) == day, path.name
        if msg["X-Mailbot"] == "receipt":  # written the moment the mail arrived
            assert day == received[msg["In-Reply-To"]], path.name
    # the status table: every mail sent in the story month
    stamps = re.findall(r"(?:回执|催报提醒|未按时报送通知) (\d\d)-(\d\d) \d\d:\d\d 已发送", run.stdout)
    assert len(stamps) == 11 and {int(m) for m, _d in stamps} == {month}
    # and so says the database
    with sqlite3.connect(keep / "mailbot.db") as db:
        stamps = [v for row in db.execute("SELECT created_at, sent_at FROM outbox") for v in row] + \
                 [v for row in db.execute("SELECT received_at, moved_at FROM message") for v in row] + \
                 [v for (v,) in db.execute("SELECT received_at FROM submission")]
    assert len(stamps) == 2 * 15 + 2 * 6 + 5
    assert all(in_story(_local_day(dt.datetime.fromisoformat(s).replace(tzinfo=dt.timezone.utc))) for s in stamps)


def test_kept_digest_and_tongbao_are_those_mailed_on_the_notice_day(kept):
    run, keep, period, _took = kept
    [monthly] = (keep / "发出的邮件").glob("*_月报_*.eml")
    msg = _mail(monthly)
    assert _local_day(parsedate_to_datetime(msg["Date"])).day == 26
    attached = {a.get_filename(): a.get_content() for a in msg.iter_attachments()}
    [workbook] = keep.glob("*情况清单汇总.xlsx")
    [notice] = keep.glob("*通报（草稿）.docx")
    assert attached == {workbook.name: workbook.read_bytes(), notice.name: notice.read_bytes()}
    assert {"汇总", "报送情况", "统计"} <= set(openpyxl.load_workbook(workbook).sheetnames)
    document = docx.Document(notice)
    text = "\n".join(p.text for p in document.paragraphs) + "\n".join(
        c.text for t in document.tables for r in t.rows for c in r.cells)
    year, month = map(int, period.split("-"))
    dated = [p.text for p in document.paragraphs if p.text.strip()][-1]  # issued, under the office's name
    assert f"截至{year}年{month}月26日" in text and dated == f"{year}年{month}月26日"
    # as mailed on the 26th: 住建局 was still missing then (it filed late on the 27th)
    assert "赞皇县教育局" in text and "赞皇县住房和城乡建设局" in text and "赞皇县市场监督管理局" not in text
    [annotated] = keep.glob("*（问题标注）.xlsx")
    assert "问题清单" in openpyxl.load_workbook(annotated).sheetnames


def test_the_index_says_what_is_where_and_the_kept_config_works(kept, capsys):
    run, keep, period, _took = kept
    index = (keep / "README.txt").read_text(encoding="utf-8")
    assert index.startswith("mailbot 演示文件索引")
    for path in keep.iterdir():
        assert path.name == "README.txt" or path.name in index, path.name
    for path in (keep / "发出的邮件").glob("*.eml"):
        assert f"{path.name}：{_mail(path)['Subject']}" in index
    for path in (keep / "收到的邮件").glob("*.eml"):
        assert path.name in index
    assert f"mailbot --config {keep / 'mailbot.yaml'} status --period {period}" in index
    assert main(["--config", str(keep / "mailbot.yaml"), "status", "--json", "--period", period]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"]: [r["state"], r["submissions"]] for r in rows} == {
        "scjgj": ["filed", 1], "czj": ["filed", 2], "zjj": ["late", 1], "jyj": ["missing", 0], "zhz": ["filed", 1]}


def test_verbose_shows_the_log_and_without_keep_nothing_stays(tmp_path):
    run = _demo("--verbose", tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "INFO mailbot.runner: message=<demo-0@zanhuang.example>" in run.stderr
    assert "演示文件已删除" in run.stdout and "演示完成" in run.stdout
    assert list((tmp_path / "tmp").iterdir()) == []


def test_keep_refuses_a_directory_that_is_not_empty(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("上次的演示", encoding="utf-8")
    assert main(["demo", "--keep", str(tmp_path)]) == 2
    assert "不是空的" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]
