"""Where every department stands for a period: the answer to "who filed, who is late"."""
from __future__ import annotations

import datetime as dt

from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.engine import Engine

from . import store
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
            "sent": [{"kind": m.kind, "status": m.status, "at": (m.sent_at or m.created_at).isoformat()}
                     for m in mails.get(dept.id, [])],
        })
    return out


KIND_ZH = {"receipt": "回执", "reminder": "催报提醒", "notice": "未按时报送通知"}
SENT_ZH = {"pending": "待发送", "sent": "已发送", "failed": "发送失败", "bounced": "被退回", "skipped": "未发送"}


def _mail_zh(mail: dict, office: OfficeConfig) -> str:
    """One mail in the table: what, when (office time), and whether it went out."""
    at = dt.datetime.fromisoformat(mail["at"]).astimezone(office.office.tz)
    return f"{KIND_ZH.get(mail['kind'], mail['kind'])} {at:%m-%d %H:%M} {SENT_ZH.get(mail['status'], mail['status'])}"


def print_table(office: OfficeConfig, rows: list[dict], period: str | None, console: Console | None = None) -> None:
    period = period or period_of(utcnow(), office.office.tz)
    table = Table(title=f"{office.office.name}  {period} 报送情况")
    for col in ("单位", "状态", "记录数", "报送次数", "已发邮件"):
        table.add_column(col)
    colour = {"filed": "green", "late": "yellow", "rejected": "red", "missing": "red"}
    for r in rows:
        sent = "\n".join(_mail_zh(m, office) for m in r["sent"]) or "—"
        nil = "\n（零报告）" if r["nil_report"] else ""
        table.add_row(r["name"], f"[{colour[r['state']]}]{STATE_ZH[r['state']]}{nil}[/]", str(r["rows"]),
                      str(r["submissions"]), sent)
    filed = [r for r in rows if r["state"] in ("filed", "late")]
    table.caption = f"应报送{len(rows)}个，已报送{len(filed)}个，其中零报告{sum(r['nil_report'] for r in filed)}个"
    (console or Console()).print(table)
