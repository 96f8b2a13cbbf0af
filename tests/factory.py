"""Builders for test input: filled checklists and the mails departments send."""
from __future__ import annotations

import datetime as dt
import email.policy
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

import yaml

from mailbot import letters
from mailbot.scenario import filled_checklist

MAIL_DIR = Path(__file__).parent / "data" / "mail"  # .eml fixtures: every shape of mail seen in practice
CST = dt.timezone(dt.timedelta(hours=8))
ON_TIME = dt.datetime(2026, 11, 20, 10, 0, tzinfo=CST)  # an arrival before the November deadline
XLSX = letters.XLSX  # what a department's mail says its workbook is

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


def another_file(xlsx: bytes, tag: str) -> bytes:
    """The same workbook as a file of its own (a comment in the zip's end record, which openpyxl
    leaves empty): mail that is not a byte-identical resubmission, without building it again."""
    assert xlsx[-2:] == b"\0\0"
    comment = tag.encode()
    return xlsx[:-2] + len(comment).to_bytes(2, "little") + comment


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
                 "password_env": "TEST_IMAP_PASSWORD", "poll_seconds": 1,
                 "since": "2020-01-01"},  # tests date their mail freely; tests/test_going_live.py tests the start line
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


# --- a county's year, bulk-inserted (the render check and tools/render_documents.py) -----------

TOWNSHIPS = ("赞皇镇", "院头镇", "南邢郭乡", "嶂石岩镇", "西龙门乡", "许亭乡", "南清河乡", "西阳泽乡", "土门乡",
             "黄北坪乡", "张楞乡")
COUNTY_BUREAUS = (
    "发展和改革局", "教育局", "科学技术和工业信息化局", "公安局", "民政局", "司法局", "财政局", "人力资源和社会保障局",
    "自然资源和规划局", "住房和城乡建设局", "交通运输局", "水利局", "农业农村局", "商务局", "文化广电和旅游局",
    "卫生健康局", "退役军人事务局", "应急管理局", "审计局", "市场监督管理局", "统计局", "医疗保障局",
    "行政审批局", "林业局", "城市管理综合行政执法局", "信访局", "乡村振兴局", "数据和政务服务局", "地方金融监督管理局",
    "机关事务服务中心", "公共资源交易中心", "住房公积金管理中心", "融媒体中心", "档案馆", "供销合作社联合社",
    "气象局", "消防救援大队", "税务局", "人民法院", "人民检察院", "生态环境分局", "烟草专卖局", "邮政管理局",
    "粮食和物资储备局", "国有资产事务中心", "红十字会", "残疾人联合会", "工商业联合会")
COUNTY = [{"id": f"x{i:02d}", "name": name, "emails": [f"x{i:02d}@zanhuang.example"]} for i, name in enumerate(
    [f"{t}人民政府" for t in TOWNSHIPS] + ["赞皇经济开发区管理委员会"] + [f"赞皇县{b}" for b in COUNTY_BUREAUS], 1)]
COUNTY_ROWS = [  # entity, matter, usage, measure: varied like real checklists
    ("赞皇县{n}号商贸有限公司（91350100M000100Y43）", "食品经营许可证核发", "经信用中国查询，无失信记录", "告知承诺"),
    ("赞皇县{n}号建筑有限公司", "政府采购供应商资格审查", "经信用中国、中国执行信息公开网查询，该公司列入失信被执行人",
     "限制参与政府采购、从严审核"),
    ("张{n}（11010519491231002X）", "个体工商户登记", "经国家企业信用信息公示系统查询，无异常", "无"),
    ("赞皇县{n}号工程有限公司", "建设工程招标投标", "经信用石家庄查询，存在行政处罚记录", "限制参与招投标"),
    ("赞皇县{n}号农业专业合作社", "评优评先资格审核", "经信用中国查询，无失信记录", "优先推荐评先评优"),
    ("赞皇县{n}号运输有限公司", "道路运输经营许可", "经信用中国查询，无失信记录", "容缺受理"),
    ("赞皇县{n}号餐饮店", "食品经营许可证核发", "经信用中国（河北）查询，无失信记录", "绿色通道、容缺办理"),
    ("赞皇县{n}号科技有限公司", "企业设立登记", "经国家企业信用信息公示系统查询，列入经营异常名录", "列为重点监管对象"),
    ("李{n}", "高龄津贴发放", "经信用中国查询，无失信记录", "正常办理"),
    ("赞皇县{n}号物流有限公司", "政府采购评审", "经政府采购网查询，无政府采购严重违法失信行为记录", "信用加分"),
]


def county_state(index: int, month: int) -> str:
    """What department `index` (1-based) did in `month`: mostly on time, some late, rejected,
    missing or a nil report, shifting from month to month."""
    turn = (index * 7 + month * 11) % 60
    return ("missing" if turn < 4 else "rejected" if turn < 6 else "late" if turn < 11 else
            "nil" if turn < 16 else "nil_late" if turn < 17 else "filed")


def populate_county(engine, office, year: int, months: int, rows: int = 6) -> None:
    """Messages, submissions and rows for `office`'s departments over months 1..`months` of `year`
    as `county_state` says (up to `rows` rows a filing), inserted directly: no intake path."""
    from sqlalchemy import insert

    from mailbot import vocabulary
    from mailbot.models import Message, Row, Submission
    from mailbot.obligations import deadline_day

    def derived(matter, usage, measure):
        joined = " ".join((usage, measure, matter))
        return {"measures": [{"raw": m.raw, "canonical": m.canonical, "kind": m.kind}
                             for m in vocabulary.map_measures(measure)],
                "channels": vocabulary.detect_channels(joined), "lists": vocabulary.detect_lists(joined),
                "field": vocabulary.detect_field(matter), "codes": []}

    shapes = [(*shape, derived(*shape[1:])) for shape in COUNTY_ROWS]
    messages, submissions, lines = [], [], []
    for month in range(1, months + 1):
        period = f"{year}-{month:02d}"
        last = deadline_day(period, office.schedule)
        for index, dept in enumerate(office.departments, 1):
            state = county_state(index, month)
            if state == "missing":
                continue
            late = state in ("late", "nil_late")
            day = last + dt.timedelta(days=1 + index % 4) if late else last - dt.timedelta(days=index % 9)
            at = dt.datetime.combine(day, dt.time(9 + index % 8, index % 60), tzinfo=CST)
            n = len(messages) + 1
            count = 0 if state in ("nil", "nil_late", "rejected") else 1 + (index * 3 + month) % rows
            messages.append({"id": n, "office": office.id, "folder": "INBOX", "uidvalidity": 1, "uid": n,
                             "message_id": f"m{n}@zanhuang.example", "sha256": f"{n:064x}", "sender": dept.emails[0],
                             "subject": f"{year}年{month}月情况清单", "received_at": at, "kind": "checklist",
                             "status": "rejected" if state == "rejected" else "accepted",
                             "department_id": dept.id, "destination": "已处理"})
            submissions.append({"id": n, "office": office.id, "message_pk": n, "department_id": dept.id,
                                "period": period, "period_source": "subject", "received_at": at,
                                "accepted": state != "rejected", "late": late, "unit": dept.name,
                                "nil_report": state.startswith("nil"), "row_count": count,
                                "filename": "情况清单.xlsx", "sheet": "情况清单", "problems": []})
            for r in range(count):
                entity, matter, usage, measure, found = shapes[(index + r * 3 + month) % len(shapes)]
                lines.append({"office": office.id, "submission_id": n, "row_no": 7 + r,
                              "entity": entity.format(n=index * 100 + r), "matter": matter,
                              "date": dt.date(year, month, 1 + r % 20), "date_raw": f"{year}-{month}-{1 + r % 20}",
                              "usage": usage, "measure": measure, "derived": found})
    with engine.begin() as conn:
        conn.execute(insert(Message.__table__), messages)
        conn.execute(insert(Submission.__table__), submissions)
        if lines:
            conn.execute(insert(Row.__table__), lines)


def watching(engine, office, since: dt.datetime) -> None:
    """Record `since` as the office's start line, read to the end, as a first poll would have:
    for tests that tick the schedule without polling a mailbox."""
    from sqlalchemy import select

    from mailbot import store
    from mailbot.models import StartLine, utcnow

    with store.writing(engine) as s:
        row = s.exec(select(StartLine).where(StartLine.office == office.id,
                                             StartLine.folder == office.imap.folder)).scalars().first()
        if row is None:
            row = StartLine(office=office.id, folder=office.imap.folder, since=since, floor=since)
            s.add(row)
        row.since, row.floor, row.source, row.scanned, row.caught_up_at = since, since, "test", True, utcnow()
