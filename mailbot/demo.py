"""`mailbot demo`: the whole loop on a fresh machine, with no mail account.

An embedded IMAP server (pymap, in-memory) and an SMTP capture (aiosmtpd) on free loopback
ports, a SQLite database in the demo's directory and a county of five departments; the month
itself (`mailbot.scenario`) is told on the terminal. Nothing leaves the machine. With `--keep`
the directory stays: every mail as .eml, the annotated workbook, the digest and the 通报 as
mailed, the database, the log, the config, and an index in Chinese.
"""
from __future__ import annotations

import ctypes
import email
import email.policy
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml
from aiosmtpd.controller import Controller
from rich.console import Console

from . import config as config_mod, scenario
from .scenario import DEPARTMENTS, OFFICE, Story
from .terminal import hanging

log = logging.getLogger("mailbot.demo")
PASSWORD = "demo-authorization-code"
PASSWORD_ENV = "MAILBOT_DEMO_PASSWORD"
LOG_FILE = "mailbot.log"
INDEX_FILE = "README.txt"
SENT_DIR, RECEIVED_DIR = "发出的邮件", "收到的邮件"


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
    root = Path(root).resolve()
    return {
        "office": {"name": "赞皇县社会信用体系建设领导小组办公室", "address": OFFICE, "phone": "0311-84225051"},
        "imap": {"host": "127.0.0.1", "port": imap_port, "security": "none", "user": OFFICE,
                 "password_env": PASSWORD_ENV, "poll_seconds": 1},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "rate_per_minute": 1000},
        "database": {"url": f"sqlite:///{root}/mailbot.db"},
        "archive": {"dir": str(root / "archive")},
        "recipients": {"digest": [OFFICE], "escalation": ["xwb@zanhuang.example"]},
        "departments": DEPARTMENTS,
    }


def usable_dir(keep: Path) -> str | None:
    """Why `--keep DIR` cannot be used (None: it can): a second month in the same directory
    would mix two demos' databases."""
    if keep.exists() and not keep.is_dir():
        return f"“{keep}”已存在，但不是目录"
    if keep.is_dir() and any(keep.iterdir()):
        return f"目录“{keep}”不是空的；请指定一个新目录或空目录，以免与上次演示的数据混在一起"
    return None


def run(root: Path, keep: bool, console: Console | None = None) -> int:
    """Play the month with `root` as its directory; keep it (`--keep`) or delete it afterwards.
    The log (set up by the caller) is `root/mailbot.log`; on a failure the directory stays."""
    console = console or Console()
    imap_port, smtp_port = _free_port(), _free_port()
    capture = _Capture()
    try:
        imap = _start_imap(imap_port)
        smtp = Controller(capture, hostname="127.0.0.1", port=smtp_port)
        smtp.start()
        try:
            os.environ[PASSWORD_ENV] = PASSWORD
            data = demo_config(root, imap_port, smtp_port)
            story = scenario.play(config_mod.parse(data), capture.mails, console)
        finally:
            smtp.stop()
            imap.terminate()
            imap.wait(timeout=10)
    except Exception as exc:  # a newcomer gets a sentence and the log, not only a traceback
        log.exception("the demo failed")
        console.print(f"演示中断：{type(exc).__name__}: {exc}。详细日志见 {root / LOG_FILE}（目录已保留）。",
                      style="red", highlight=False, markup=False)
        return 1
    if keep:
        index = keep_files(root, story, data)
        width = max(console.width, 40)
        said = [f"演示的全部文件已保存在 {root.resolve()}（每个文件是什么，见其中的 {INDEX_FILE}）：",
                f"  {SENT_DIR}/：mailbot 发出的{len(story.sent)}封邮件（.eml）；{RECEIVED_DIR}/：各单位发来的"
                f"{len(story.received)}封邮件；另有问题标注表、月报所附的汇总表和通报草稿、数据库、日志和配置。",
                f"  查看保存下来的报送情况：mailbot --config {root.resolve() / 'mailbot.yaml'} status --period {story.period}"]
        for line in said:
            prefix = line[:len(line) - len(line.lstrip())]
            for shown in hanging(prefix, line.strip(), width):
                console.print(shown, highlight=False, markup=False, soft_wrap=True)
    else:
        logging.shutdown()
        shutil.rmtree(root, ignore_errors=True)
        console.print("演示文件已删除。如需查看发出的每封邮件、问题标注表、汇总表和通报草稿，请加 --keep 目录 重新运行。",
                      highlight=False, markup=False)
    console.print("演示完成：收件、校验、回执、提醒、通知、通报和汇总均已走通。", style="bold green", markup=False)
    return 0


# --- --keep: the month's files, and an index of what is where --------------------------------------------

def _safe(name: str) -> str:
    return re.sub(r'[\\/:*?"<>|\s]+', "_", name).strip("._") or "邮件"


def keep_files(root: Path, story: Story, data: dict) -> Path:
    """Every mail as .eml, the annotated workbook and the digest files as mailed, the config;
    returns the index written beside them."""
    tz = story.office.office.tz
    entries: list[tuple[str, str]] = []  # (path, what it is)
    sent_dir, received_dir = root / SENT_DIR, root / RECEIVED_DIR
    sent_dir.mkdir(exist_ok=True)
    received_dir.mkdir(exist_ok=True)
    digest_files: list[tuple[str, bytes]] = []
    annotated: list[tuple[str, bytes]] = []
    sent_lines = []
    for n, (rcpts, raw) in enumerate(story.sent, 1):
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        kind = str(msg.get("X-Mailbot", ""))
        when = scenario.sent_at(raw).astimezone(tz)
        name = f"{n:02d}_{when.month}月{when.day}日_{scenario.kind_zh(raw)}_{_safe(rcpts[0])}.eml"
        (sent_dir / name).write_bytes(raw)
        sent_lines.append(f"    {name}：{msg['Subject']}")
        for part in msg.iter_attachments():
            filename = part.get_filename() or ""
            if kind == "digest":
                digest_files.append((filename, part.get_content()))
            elif "（问题标注）" in filename:
                annotated.append((filename, part.get_content()))
    received_lines = []
    for n, (when, sender, raw) in enumerate(story.received, 1):
        when = when.astimezone(tz)
        subject = email.message_from_bytes(raw, policy=email.policy.default)["Subject"]
        name = f"{n:02d}_{when.month}月{when.day}日_{_safe(sender)}.eml"
        (received_dir / name).write_bytes(raw)
        received_lines.append(f"    {name}：{subject}")
    for filename, content in annotated:
        (root / filename).write_bytes(content)
        entries.append((filename, "退回财政局时随回执附上的标注版：有问题的单元格标红并加批注，另有“问题清单”工作表。"))
    for filename, content in digest_files:
        (root / filename).write_bytes(content)
        what = "通报草稿（Word）" if filename.endswith(".docx") else "月度汇总表（Excel：汇总、报送情况、统计及图表）"
        entries.append((filename, f"{what}，与{story.period[:4]}年{int(story.period[5:])}月{story.office.schedule.notice_day}日"
                                  "月报邮件所附的完全相同。"))
    config_path = root / "mailbot.yaml"
    config_path.write_text("# mailbot demo 的配置：其中的服务器端口只在演示时有效；查询命令（status、digest、export）可以直接使用。\n"
                           + yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return _index(root, story, sent_lines, received_lines, entries, config_path)


def _index(root: Path, story: Story, sent_lines, received_lines, entries, config_path: Path) -> Path:
    year, month = story.period.split("-")
    title = f"mailbot 演示文件索引（{story.office.office.name}，{int(year)}年{int(month)}月）"
    shown = config_path.resolve()
    lines = [
        title, "",
        f"这里保存了一次 mailbot demo 的全部结果。邮件和文件中的日期都是演示中的日期（{int(year)}年{int(month)}月）。",
        "",
        f"{SENT_DIR}/：mailbot 发出的每封邮件（.eml，可用 Foxmail、Outlook、Thunderbird 打开），按发送顺序编号：",
        *sent_lines,
        f"{RECEIVED_DIR}/：各单位发来的邮件原件（.eml）：",
        *received_lines,
        *[f"{name}：{what}" for name, what in entries],
        "mailbot.db：数据库（每封邮件的处理结果、每次报送、每一行记录、每封发出的邮件及发送时间）。",
        "archive/：收到的每封邮件原文，按内容的 sha256 命名，用于复核和重放（mailbot replay）。",
        f"{LOG_FILE}：演示过程的日志（运行 mailbot demo --verbose 时也显示在屏幕上）。",
        "mailbot.yaml：演示用的配置。可以用它查询保存下来的数据，例如：",
        f"    mailbot --config {shown} status --period {story.period}",
        f"    mailbot --config {shown} digest --period {story.period} --out 目录",
        f"    mailbot --config {shown} export --period {story.period}",
    ]
    path = root / INDEX_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
