"""Where every department stands for a period: the answer to "who filed, who is late"."""
from __future__ import annotations

import datetime as dt

from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.engine import Engine

from . import store, watch
from .config import OfficeConfig
from .models import Outgoing, Submission, utcnow
from .obligations import STATE_ZH, period_of, standing


def status(engine: Engine, office: OfficeConfig, period: str | None = None) -> list[dict]:
    period = period or period_of(utcnow(), office.office.tz)
    with store.reading(engine) as session:
        subs = session.exec(select(Submission).where(
            Submission.office == office.id, Submission.period == period).order_by(Submission.id)).scalars().all()
        sent = session.exec(select(Outgoing).where(
            Outgoing.office == office.id, Outgoing.period == period,
            Outgoing.department_id.is_not(None)).order_by(Outgoing.id)).scalars().all()
    by_dept: dict[str, list[Submission]] = {}
    for s in subs:
        by_dept.setdefault(s.department_id, []).append(s)
    mails: dict[str, list[Outgoing]] = {}
    for m in sent:
        mails.setdefault(m.department_id, []).append(m)
    out = []
    for dept in office.departments:
        if not dept.owes(period) and dept.id not in by_dept:
            continue
        st = standing(by_dept.get(dept.id, []), period, office.schedule, office.office.tz)
        out.append({
            "id": dept.id, "name": dept.name, "state": st.state, "rows": st.rows, "submissions": st.submissions,
            "nil_report": st.nil_report,  # 零报告: filed, with nothing to report; counted apart
            "filed_at": st.filed_at.isoformat() if st.filed_at else None,
            "sent": [{"id": m.id, "kind": m.kind, "status": m.status, "at": (m.sent_at or m.created_at).isoformat()}
                     for m in mails.get(dept.id, [])],
        })
    return out


KIND_ZH = {"receipt": "回执", "reminder": "催报提醒", "notice": "未按时报送通知"}
SENT_ZH = {"pending": "待发送", "sending": "正在发送", "sent": "已发送", "failed": "发送失败", "bounced": "被退回",
           "skipped": "未发送", "uncertain": "发送结果不明"}


def _mail_zh(mail: dict, office: OfficeConfig) -> str:
    """One mail in the table: what, when (office time), and whether it went out."""
    at = dt.datetime.fromisoformat(mail["at"]).astimezone(office.office.tz)
    said = SENT_ZH.get(mail["status"], mail["status"])
    if mail["status"] == "uncertain":
        said += f"（编号 {mail['id']}）"
    return f"{KIND_ZH.get(mail['kind'], mail['kind'])} {at:%m-%d %H:%M} {said}"


def start_line(engine: Engine, office: OfficeConfig) -> dt.datetime | None:
    """The office's start line (mailbot.watch), None before the first poll."""
    with store.reading(engine) as session:
        line = watch.current(session, office)
    return line.since if line is not None else None


def print_table(office: OfficeConfig, rows: list[dict], period: str | None, console: Console | None = None,
                since: dt.datetime | None = None) -> None:
    period = period or period_of(utcnow(), office.office.tz)
    local = since.astimezone(office.office.tz) if since else None
    caption = f"起始线：{local.year}年{local.month}月{local.day}日 {local:%H:%M}，此前到达的邮件不处理" if local \
        else "尚未收件：起始线将在首次收件时确定"
    table = Table(title=f"{office.office.name}  {period} 报送情况", caption=caption)
    for col in ("单位", "状态", "记录数", "报送次数", "已发邮件"):
        table.add_column(col)
    colour = {"filed": "green", "late": "yellow", "rejected": "red", "missing": "red"}
    for r in rows:
        sent = "\n".join(_mail_zh(m, office) for m in r["sent"]) or "—"
        nil = "\n（零报告）" if r["nil_report"] else ""
        table.add_row(r["name"], f"[{colour[r['state']]}]{STATE_ZH[r['state']]}{nil}[/]", str(r["rows"]),
                      str(r["submissions"]), sent)
    filed = [r for r in rows if r["state"] in ("filed", "late")]
    table.caption = f"应报送{len(rows)}个，已报送{len(filed)}个，其中零报告{sum(r['nil_report'] for r in filed)}个\n{caption}"
    if any(m["status"] == "uncertain" for r in rows for m in r["sent"]):
        table.caption += ("\n“发送结果不明”的邮件不会自动重发：请与该单位核实，确未收到的可执行 "
                          "mailbot resend 编号 重新发送（mailbot resend 列出全部）")
    (console or Console()).print(table)
