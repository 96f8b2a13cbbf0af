"""Builders for test input: filled checklists and the mails departments send."""
from __future__ import annotations

import datetime as dt
import email.policy
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import yaml

from mailbot.scenario import filled_checklist

CST = dt.timezone(dt.timedelta(hours=8))
ON_TIME = dt.datetime(2026, 11, 20, 10, 0, tzinfo=CST)  # an arrival before the November deadline
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

GOOD_ROWS = [
    ("赞皇县某食品有限公司（91350100M000100Y43）", "食品经营许可证核发", dt.date(2026, 11, 3),
     "经信用中国查询，无失信记录", "告知承诺"),
    ("赞皇县某建筑有限公司", "政府采购供应商资格审查", "2026年11月5日",
     "经信用中国、中国执行信息公开网查询，该公司列入失信被执行人", "限制参与政府采购"),
    ("张某", "个体工商户登记", "2026.11.9", "经国家企业信用信息公示系统查询，无异常", "无"),
]


def checklist_xlsx(rows=GOOD_ROWS, unit="赞皇县市场监督管理局", submitter="王某", report_date=dt.date(2026, 11, 20)) -> bytes:
    """The official template, filled in as a department would."""
    return filled_checklist(rows, unit, submitter, report_date)


def wait_until(predicate, timeout: float = 15.0) -> bool:
    """Poll `predicate` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def mail(sender="scjgj@example.gov.cn", to="office@example.test", subject="2026年11月信用记录使用情况清单",
         attachments=(("情况清单.xlsx", None, XLSX),), body="您好，附件为本单位情况清单，请查收。",
         date=None, message_id=None, headers=None) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8))))
    msg["Message-ID"] = message_id or make_msgid(domain="example.gov.cn")
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    for filename, data, mimetype in attachments:
        data = checklist_xlsx() if data is None else data
        maintype, subtype = mimetype.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes(policy=email.policy.SMTP)


DEPARTMENTS = [
    {"id": "scjgj", "name": "赞皇县市场监督管理局", "aliases": ["县市场监管局"],
     "emails": ["scjgj@example.gov.cn", "scj_clerk@163.com"]},
    {"id": "czj", "name": "赞皇县财政局", "emails": ["czj@example.gov.cn"]},
    {"id": "zhz", "name": "赞皇镇人民政府", "emails": ["zhz@qq.com"]},
]


def config_dict(account, smtp_server, var, **overrides) -> dict:
    """A config for the loopback test servers; `overrides` update top-level keys (mappings are merged)."""
    cfg = {
        "office": {"name": "赞皇县社会信用体系建设领导小组办公室", "address": "office@example.test",
                   "timezone": "Asia/Shanghai", "phone": "0311-84225051"},
        "imap": {"host": "127.0.0.1", "port": account.port, "security": "none", "user": account.user,
                 "password_env": "TEST_IMAP_PASSWORD", "poll_seconds": 1},
        "smtp": {"host": "127.0.0.1", "port": smtp_server.port, "security": "none", "rate_per_minute": 1000,
                 "retry_base_seconds": 1},
        "database": {"url": f"sqlite:///{var}/mailbot.db"},
        "archive": {"dir": str(var / "archive")},
        "recipients": {"digest": ["office@example.test"]},
        "departments": DEPARTMENTS,
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    return cfg


def write_config(path, data: dict):
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path
