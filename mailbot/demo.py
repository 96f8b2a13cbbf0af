"""`mailbot demo`: the whole loop on a fresh machine, with no mail account.

An embedded IMAP server (pymap, in-memory) and an SMTP capture (aiosmtpd) on free loopback
ports, a temporary SQLite database and a county of five departments; a month of realistic
mail goes in (valid, wrong then corrected, a nil report, a late one, an unknown sender), the
daemon loop handles it and the schedule ticks across the deadline. Nothing leaves the machine.
"""
from __future__ import annotations

import ctypes
import datetime as dt
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime
from pathlib import Path

import openpyxl
from aiosmtpd.controller import Controller
from rich.console import Console
from rich.panel import Panel

from . import config as config_mod
from .template import build_template

OFFICE = "zhxxyt@demo.example"
PASSWORD = "demo-authorization-code"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DEPARTMENTS = [
    {"id": "scjgj", "name": "赞皇县市场监督管理局", "aliases": ["县市场监管局"], "emails": ["scjgj@zanhuang.example", "scj_wang@163.example"]},
    {"id": "czj", "name": "赞皇县财政局", "emails": ["czj@zanhuang.example"]},
    {"id": "zjj", "name": "赞皇县住房和城乡建设局", "emails": ["zjj@zanhuang.example"]},
    {"id": "jyj", "name": "赞皇县教育局", "emails": ["jyj@zanhuang.example"]},
    {"id": "zhz", "name": "赞皇镇人民政府", "emails": ["zhz@qq.example"]},
]


def filled_checklist(rows, unit: str, submitter: str = "王某", report_date: dt.date | None = None) -> bytes:
    """The official template filled in as a department would."""
    wb = openpyxl.load_workbook(io.BytesIO(build_template()))
    ws = wb["情况清单"]
    ws["B2"], ws["B3"], ws["B4"] = unit, submitter, report_date
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            ws.cell(7 + i, 1 + j, value)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def _mail(sender: str, subject: str, when: dt.datetime, attachment: tuple[str, bytes] | None, n: int) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, OFFICE, subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<demo-{n}@zanhuang.example>"
    msg.set_content("您好，附件为本单位情况清单，请查收。")
    if attachment:
        msg.add_attachment(attachment[1], maintype="application", subtype=XLSX.split("/")[1], filename=attachment[0])
    return msg.as_bytes(policy=SMTP_POLICY)


def month_of_mail(period: str) -> list[tuple[dt.datetime, str, str, tuple[str, bytes] | None]]:
    """(arrival, sender, subject, attachment) for one month of a small county."""
    year, month = map(int, period.split("-"))
    tz = dt.timezone(dt.timedelta(hours=8))

    def at(day, hour=10):
        return dt.datetime(year, month, day, hour, 0, tzinfo=tz)

    def d(day):
        return dt.date(year, month, day)

    label = f"{year}年{month}月"
    good = [
        ("赞皇县某食品有限公司（91350100M000100Y43）", "食品经营许可证核发", d(3), "经“信用中国”查询，无失信记录", "告知承诺"),
        ("赞皇县某建筑工程有限公司", "政府采购供应商资格审查", f"{year}年{month}月5日",
         "经“信用中国”、中国执行信息公开网查询，该公司被列入失信被执行人名单", "限制参与政府采购"),
        ("张某（个体工商户）", "个体工商户设立登记", f"{year}.{month}.9", "经国家企业信用信息公示系统查询，无经营异常", "容缺受理"),
    ]
    wrong = [
        ("赞皇县某商贸有限公司（91130129MA0ABCDE1X）", "政府采购供应商资格审查", 9.2, "经信用中国查询，无失信记录", "无"),
        ("", "评标专家抽取", d(6), "经信用中国查询", "无"),
    ]
    fixed = [
        ("赞皇县某商贸有限公司", "政府采购供应商资格审查", d(9), "经信用中国查询，无失信记录", "无"),
        ("赞皇县某物业服务有限公司", "政府采购评审", d(6), "经“信用中国（河北石家庄）”查询，无失信记录", "信用加分"),
    ]
    late = [("赞皇县某建设集团有限公司", "建筑业企业资质核准", d(21), "经信用中国查询，无失信记录", "优先办理")]
    return [
        (at(10), "scjgj@zanhuang.example", f"{label}信用记录使用情况清单",
         ("市场监管局情况清单.xlsx", filled_checklist(good, "赞皇县市场监督管理局", report_date=d(10)))),
        (at(12), "czj@zanhuang.example", f"{label}情况清单",
         ("财政局清单.xlsx", filled_checklist(wrong, "赞皇县财政局", report_date=d(12)))),
        (at(15), "czj@zanhuang.example", f"回复：{label}情况清单（已修改）",
         ("财政局清单（修改）.xlsx", filled_checklist(fixed, "赞皇县财政局", report_date=d(15)))),
        (at(18), "zhz@qq.example", f"赞皇镇{label}情况清单",
         ("赞皇镇.xlsx", filled_checklist([("本月无使用信用记录和信用报告情况",) * 5], "赞皇镇人民政府", report_date=d(18)))),
        (at(22), "someone@unknown.example", "情况清单", ("清单.xlsx", filled_checklist(good[:1], "某单位"))),
        (at(27), "zjj@zanhuang.example", f"{label}情况清单（补报）",
         ("住建局情况清单.xlsx", filled_checklist(late, "赞皇县住房和城乡建设局", report_date=d(27)))),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Capture:
    """aiosmtpd handler keeping every mail mailbot sends."""

    def __init__(self):
        self.mails: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.mails.append((list(envelope.rcpt_tos), envelope.original_content or envelope.content))
        return "250 OK"


def _die_with_parent() -> None:
    """In the child: be killed when the demo dies, however it dies (Linux PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)


def _start_imap(port: int) -> subprocess.Popen:
    code = "import sys; from pymap.main import main; sys.argv[0] = 'pymap'; main()"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--host", "127.0.0.1", "--port", str(port), "--no-tls",
         "--no-service", "admin", "dict", "--demo-user", OFFICE, "--demo-password", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                if s.recv(100).startswith(b"* OK"):
                    return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the embedded IMAP server (pymap) did not start")


def demo_config(root: Path, imap_port: int, smtp_port: int) -> dict:
    return {
        "office": {"name": "赞皇县社会信用体系建设领导小组办公室", "address": OFFICE, "phone": "0311-84225051"},
        "imap": {"host": "127.0.0.1", "port": imap_port, "security": "none", "user": OFFICE,
                 "password_env": "MAILBOT_DEMO_PASSWORD", "poll_seconds": 1},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "rate_per_minute": 1000},
        "database": {"url": f"sqlite:///{root}/mailbot.db"},
        "archive": {"dir": str(root / "archive")},
        "recipients": {"digest": [OFFICE], "escalation": ["xwb@zanhuang.example"]},
        "departments": DEPARTMENTS,
    }


def run(keep: Path | None = None, console: Console | None = None) -> int:
    console = console or Console()
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="mailbot-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    from .scenario import play  # the story itself: separate so tests can run it on other servers

    imap_port, smtp_port = _free_port(), _free_port()
    imap = _start_imap(imap_port)
    capture = _Capture()
    smtp = Controller(capture, hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    try:
        os.environ["MAILBOT_DEMO_PASSWORD"] = PASSWORD
        cfg = config_mod.parse(demo_config(root, imap_port, smtp_port))
        play(cfg, root, capture.mails, console)
    finally:
        smtp.stop()
        imap.terminate()
        imap.wait(timeout=10)
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
        console.print("[dim]演示文件已删除；如需打开汇总表和通报草稿，请加 --keep 目录 重新运行。[/dim]")
    console.print(Panel.fit("演示完成：收件、校验、回执、提醒、通知、通报和汇总均已走通。", style="green"))
    return 0
