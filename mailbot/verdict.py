"""`mailbot check`: one file read and judged offline, as the JSON contract of design.md says.

ID numbers are masked here: only the receipt to the department that sent them shows them whole.
"""
from __future__ import annotations

import datetime as dt
import gc

from . import checklist as checklist_mod, rules, workbook
from .codes import mask_ids
from .terminal import cells, hanging, wrap
from .config import Limits, OfficeConfig
from .errors import Rejected


def _mask(text: str) -> str:
    """ID numbers masked wherever the department typed them; the check for text that cannot
    hold an 18-character number keeps this cheap."""
    return mask_ids(text) if rules.may_hold_code(text) else text


def _masked_derived(derived: dict) -> dict:
    return {**derived,
            "measures": [{**m, "raw": _mask(m["raw"])} for m in derived.get("measures", [])],
            "codes": [{**c, "value": _mask(c["value"])} for c in derived.get("codes", [])]}


def verdict(data: bytes, filename: str, office: OfficeConfig | None, today: dt.date | None = None) -> dict:
    """The `mailbot check --json` result for one file.

    The cyclic garbage collector is paused meanwhile: a 20,000-row file becomes some 200,000
    small containers, none in a cycle, that the collector would otherwise walk again and
    again (a third of the time after reading, measured with bench/bench_check.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _verdict(data, filename, office, today)
    finally:
        if enabled:
            gc.enable()


def _verdict(data: bytes, filename: str, office: OfficeConfig | None, today: dt.date | None) -> dict:
    today = today or dt.date.today()
    limits = office.limits if office else Limits()
    severity = office.rules.severity if office else {}
    result = {"accepted": False, "unit": "", "submitter": "", "report_date": None, "nil_report": False,
              "period": None, "rows": [], "problems": []}
    try:
        parsed = checklist_mod.parse(workbook.read(data, filename, limits), f"{today:%Y-%m}")
    except Rejected as exc:
        result["problems"] = [p.as_dict() for p in rules.with_severity(exc.problems, severity)]
        return result
    report_day = rules.report_date(parsed)
    period = rules.reporting_period("", parsed, today)[0]
    dept = None
    if office and parsed.unit:
        dept = next((d for d in office.departments if rules.unit_matches(parsed.unit, d)), None)
    ctx = rules.Context(department=dept, period=period, today=today, severity=severity,
                        departments=tuple(office.departments) if office else ())
    checked = rules.check(parsed, ctx)
    result.update(
        accepted=checked.accepted, unit=_mask(parsed.unit), submitter=_mask(parsed.submitter),
        report_date=report_day.isoformat() if report_day else None, nil_report=parsed.nil_report, period=period,
        sheet=parsed.sheet, header_row=parsed.header_row,
    )
    rows, parsed.rows = parsed.rows, []
    for i, row in enumerate(rows):  # each row's parse and derived fields let go once its output exists
        day = checked.dates.get(row.row_no)
        derived = checked.derived.pop(row.row_no, {})
        result["rows"].append({
            "row": row.row_no, "entity": _mask(row.text("entity")), "matter": _mask(row.text("matter")),
            "date": day.isoformat() if day else None, "usage": _mask(row.text("usage")),
            "measure": _mask(row.text("measure")), **_masked_derived(derived),
        })
        rows[i] = None
    result["problems"] = [{**p.as_dict(), "message": _mask(p.message)} for p in checked.problems]
    return result


def print_verdict(result: dict, console=None) -> None:
    """The verdict for a person: every problem in full, wrapped to the terminal, never cut."""
    from rich.console import Console  # here, not at the top: `check --json` never draws anything
    from rich.markup import escape

    console = console or Console()
    width = console.width

    def say(lines: list[str], style: str = "") -> None:
        for line in lines:
            console.print(escape(line), style=style or None, soft_wrap=True, highlight=False)

    head = "通过校验" if result["accepted"] else "未通过校验"
    facts = "，".join([f"单位：{result['unit'] or '（未填写）'}", f"报送人：{result['submitter'] or '（未填写）'}",
                       f"报送日期：{result['report_date'] or '（未填写或未识别）'}",
                       f"记录：{len(result['rows'])}条" + ("（本月无情况）" if result["nil_report"] else "")])
    console.print(head, style="bold green" if result["accepted"] else "bold red", end="  ", highlight=False)
    first, *rest = hanging(" " * (cells(head) + 2), facts, width)
    say([first.lstrip()] + rest)
    problems = result["problems"]
    if not problems:
        return
    errors = sum(1 for p in problems if p["severity"] == "error")
    say(wrap(f"发现{len(problems)}个问题：错误{errors}个（须修改后重新报送），提示{len(problems) - errors}个"
             "（不影响受理，请核实）。", width))
    digits = len(str(len(problems)))
    for n, p in enumerate(problems, 1):
        label = "错误" if p["severity"] == "error" else "提示"
        number = f"{n:>{digits}}. "
        first, *rest = hanging(f"{number}{label} ", p["message"], width)
        console.print(number, end="", highlight=False)
        console.print(label, style="red" if label == "错误" else "yellow", end=" ", highlight=False)
        say([first[len(number) + len(label) + 1:]] + rest)
