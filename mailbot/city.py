"""The city's digest: one workbook and one mail across every county office a deployment serves.

Each office's figures come from that office's own monthly digest (digest.load_month), so the
city sees exactly what each county sees; nothing of one office is computed from another's rows.
"""
from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import openpyxl

from . import digest, export, letters, store
from .config import Config, OfficeConfig
from .models import utcnow
from .obligations import FILED, LATE, MISSING, REJECTED, STATE_ZH, period_of

SUMMARY_COLUMNS = (("县（市、区）信用办", 34), ("应报送单位", 11), ("按时报送", 10), ("逾期报送", 10),
                   ("报送未通过", 11), ("未报送", 9), ("按时报送率", 11), ("在用记录", 10),
                   ("激励", 8), ("惩戒", 8))
DEPARTMENT_COLUMNS = (("县（市、区）信用办", 34), ("单位", 30), ("状态", 12), ("报送时间", 17), ("记录数", 8))


def load(engine, config: Config, period: str, now: dt.datetime) -> list[tuple[OfficeConfig, digest.Month]]:
    return [(office, digest.load_month(engine, office, period, now)) for office in config.offices]


def summary(office: OfficeConfig, month: digest.Month) -> dict:
    owed = len(month.filings)
    kinds = month.stats.overall
    return {
        "office": office.office.name, "owed": owed,
        **{state: month.count(state) for state in (FILED, LATE, REJECTED, MISSING)},
        "rate": round(100 * month.count(FILED) / owed, 1) if owed else 0.0,
        "rows": month.stats.total, "incentives": kinds[("措施类别", "激励")], "punishments": kinds[("措施类别", "惩戒")],
    }


def workbook(months: list[tuple[OfficeConfig, digest.Month]]) -> bytes:
    wb = openpyxl.Workbook(write_only=True)
    ws = export.start_sheet(wb, "各县报送情况", SUMMARY_COLUMNS)
    for office, month in months:
        s = summary(office, month)
        ws.append([export.xlsx_value(ws, s["office"]), s["owed"], s[FILED], s[LATE], s[REJECTED], s[MISSING],
                   s["rate"] / 100, s["rows"], s["incentives"], s["punishments"]])
    export.finish_sheet(ws, len(SUMMARY_COLUMNS), len(months))
    ws = export.start_sheet(wb, "各单位报送情况", DEPARTMENT_COLUMNS)
    count = 0
    for office, month in months:
        for f in month.filings:
            when = f.submitted_at.replace(tzinfo=None) if f.submitted_at else None
            ws.append([export.xlsx_value(ws, office.office.name), export.xlsx_value(ws, f.name),
                       STATE_ZH[f.state], when, f.rows])
            count += 1
    export.finish_sheet(ws, len(DEPARTMENT_COLUMNS), count)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def filename(period: str) -> str:
    year, month = period.split("-")
    return f"{int(year)}年{int(month)}月全市情况清单报送汇总.xlsx"


def sender(config: Config) -> OfficeConfig:
    return config.office(config.city.send_from) if config.city.send_from else config.offices[0]


def queue(engine, config: Config, period: str, now: dt.datetime | None = None) -> bool:
    """Queue the city digest (key `city:<period>`, from the sending office's mailbox) to the
    city's recipients only; True when queued now."""
    now = now or utcnow()
    months = load(engine, config, period, now)
    office = sender(config)
    context = {"city": config.city, "period": period, "as_of": now.astimezone(office.office.tz),
               "offices": [summary(o, m) for o, m in months]}
    mail = letters.build(office, kind="city", key=f"city:{period}", template="city", to=list(config.city.recipients),
                         context=context, period=period,
                         attachments=[(filename(period), workbook(months), letters.XLSX)], now=now)
    with store.writing(engine) as session:
        return store.enqueue(session, mail)


def write(engine, config: Config, period: str, out_dir: Path, now: dt.datetime | None = None) -> Path:
    """`mailbot digest --city`: the city workbook written into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / filename(period)
    path.write_bytes(workbook(load(engine, config, period, now or utcnow())))
    return path


def default_period(config: Config, now: dt.datetime | None = None) -> str:
    """The period `digest --city` shows without `--period`: the one in progress."""
    return period_of(now or utcnow(), config.offices[0].office.tz)
