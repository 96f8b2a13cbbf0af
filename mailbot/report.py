"""The digest workbook (情况清单汇总): the month's figures laid out to be printed and forwarded.

Pure: a digest Month in, .xlsx bytes out. Every sheet prints on A4 one page wide (landscape when
wide), its title and header rows on every page and "第1页 共3页" at the foot; the title row names
the office, the period and the cut-off. Long texts wrap in rows made tall enough for them. The
charts sit on a sheet of their own, one landscape page each, with only the categories that
occur and whole-number axes. Write-only openpyxl keeps a county of 1,300 departments fast.
"""
from __future__ import annotations

import io
import math

from . import export, vocabulary
from .export import KINDS, UNKNOWN_FIELD, text_width
from .obligations import FILED, LATE, MISSING, REJECTED, STATE_ZH, parse_period
from .tongbao import period_zh
from .workbook import get_column_letter

# openpyxl (10 MB) is imported where the workbook is written: the daemon filing mail never loads it.

GROUPS = (
    ("措施类别", KINDS),
    ("规范措施", (*vocabulary.INCENTIVES, *vocabulary.PUNISHMENTS)),
    ("查询渠道", tuple(vocabulary.CHANNELS)),
    ("领域", (*vocabulary.FIELDS, UNKNOWN_FIELD)),
)
STAT_KEYS = tuple((group, item) for group, items in GROUPS for item in items)
# A record may name several of these: their shares are of the records, and need not add up to 100 %.
SEVERAL = {"措施类别": "类措施", "规范措施": "项措施", "查询渠道": "个查询渠道"}
NIL, NOT_OWED = "nil", None  # the year table's marks besides the states (digest.year_lines)

# 汇总: the export's columns at widths that print, the long texts wrapped
SUMMARY_WIDTHS = {"单位": 18, "市场主体（自然人）名称": 24, "行政管理事项名称": 18, "日期": 11,
                  "使用信用记录或报告情况": 30, "使用的激励或惩戒措施": 18, "措施类别": 9, "规范措施": 14,
                  "查询渠道": 16, "领域": 12, "报送时间": 16}
SUMMARY_COLUMNS = tuple((title, SUMMARY_WIDTHS[title]) for title, _w in export.COLUMNS)
FILING_COLUMNS = (("单位", 32), ("状态", 12), ("报送时间", 17), ("逾期天数", 9), ("记录数", 8), ("报送次数", 9),
                  ("零报告", 8))
STAT_COLUMNS = (("分类", 12), ("项目", 24), ("记录数", 9), ("占比", 9))
LINE_HEIGHT = export.ROW_HEIGHT
FILLS = {LATE: "FFF2CC", REJECTED: "FCE4D6", MISSING: "FFC7CE", NIL: "DDEBF7"}
YEAR_ZH = {FILED: "按时", NIL: "零报告", LATE: "逾期", REJECTED: "未通过", MISSING: "未报送", NOT_OWED: "—"}
YEAR_TOTALS = (("按时报送", (FILED, NIL)), ("其中零报告", (NIL,)), ("逾期报送", (LATE,)),
               ("报送未通过", (REJECTED,)), ("未报送", (MISSING,)))
CHART_ROWS = 30  # rows of 15 pt per chart: one landscape page with its title row


def cutoff(month) -> str:
    """截至2026年11月26日9时 (with the minutes when there are any)."""
    t = month.as_of
    minutes = f"{t.minute}分" if t.minute else ""
    return f"截至{t.year}年{t.month}月{t.day}日{t.hour}时{minutes}"


def title(month, what: str) -> str:
    """The title row: office, period, what the sheet shows, and as of when."""
    note = "，报送截止日前的统计" if month.open else ""
    return f"{month.office_name} {period_zh(month.period)}{what}（{cutoff(month)}{note}）"


def _lines(text, width: float) -> int:
    return max(1, math.ceil(text_width(text) / max(width - 1, 1))) if text else 1


def _wrap():
    from openpyxl.styles import Alignment

    return Alignment(wrap_text=True, vertical="top")


def _style(ws, **attrs):
    """A style (font, fill, alignment, number format) registered once and shared by the cells
    that have it: ten times faster than setting each cell's attributes."""
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(ws, value=None)
    for key, value in attrs.items():
        setattr(cell, key, value)
    return cell._style


def _cell(ws, value, style):
    from openpyxl.cell import WriteOnlyCell

    cell = WriteOnlyCell(ws, value=value)
    cell._style = style  # shared: a written cell is never changed again
    return cell


class _Rows:
    """A write-only sheet's rows, counted, so that each row's height (set before it is written)
    fits its wrapped Chinese text: LibreOffice sizes rows by the Latin default font."""

    def __init__(self, ws, written: int):
        self.ws, self.count = ws, written

    def append(self, cells: list, lines: int = 1) -> None:
        self.count += 1
        self.ws.row_dimensions[self.count].height = LINE_HEIGHT * lines + 2
        self.ws.append(cells)

    def note(self, text: str, first: int, last: int, width: float) -> None:
        """A sentence under a table, merged over its columns and wrapped: it must not widen the
        printed page."""
        from openpyxl.cell import WriteOnlyCell

        self.ws.merged_cells.add(f"{get_column_letter(first)}{self.count + 1}:{get_column_letter(last)}{self.count + 1}")
        cell = WriteOnlyCell(self.ws, value=text)
        cell.alignment = _wrap()
        self.append([None] * (first - 1) + [cell], _lines(text, width))


def _fill(colour: str | None) -> dict:
    from openpyxl.styles import PatternFill

    return {"fill": PatternFill("solid", fgColor=colour)} if colour else {}


# --- 汇总 ---------------------------------------------------------------------------------------

def _summary_sheet(wb, month) -> None:
    ws = export.start_sheet(wb, "汇总", SUMMARY_COLUMNS, title_text=title(month, "情况清单汇总"), ruled=True)
    widths = [w for _t, w in SUMMARY_COLUMNS]
    styles = {fmt: _style(ws, alignment=_wrap(), number_format=fmt) for fmt in ("General", "yyyy-mm-dd",
                                                                              export.DATETIME_FORMAT)}
    formats = ["yyyy-mm-dd" if t == "日期" else export.DATETIME_FORMAT if t == "报送时间" else "General"
               for t, _w in SUMMARY_COLUMNS]
    # One cell per column, reused row after row: a write-only sheet writes a row when it is
    # appended, and creating 140,000 styled cells would double the time of the digest.
    wrapped = [_cell(ws, None, styles[fmt]) for fmt in formats]
    stamp = _cell(ws, None, _style(ws, number_format=export.DATETIME_FORMAT))
    rows = _Rows(ws, 2)
    for record in month.records:
        values = record.values()
        lines = max(_lines(v, w) if isinstance(v, str) else 1 for v, w in zip(values, widths))
        if lines == 1:  # plain values, as fast as the export
            cells = [export.xlsx_value(ws, v) for v in values[:-1]]
            stamp.value = values[-1]
            cells.append(stamp)
        else:  # every cell of the row at the top, the long texts wrapped
            cells = []
            for value, cell in zip(values, wrapped):
                if export.unsafe_start(value):
                    cell = export.xlsx_value(ws, value)  # text, quote-prefixed: never a formula
                    cell.alignment = _wrap()
                else:
                    cell.value = value
                cells.append(cell)
        rows.append(cells, lines)
    export.finish_sheet(ws, len(SUMMARY_COLUMNS), len(month.records), header_row=2)


# --- 报送情况 ------------------------------------------------------------------------------------

def _filing_sheet(wb, month) -> None:
    ws = export.start_sheet(wb, "报送情况", FILING_COLUMNS, title_text=title(month, "情况清单报送情况"), ruled=True)
    plain = _style(ws, alignment=_wrap())
    stamp = _style(ws, alignment=_wrap(), number_format=export.DATETIME_FORMAT)
    states = {s: _style(ws, alignment=_wrap(), **_fill(FILLS.get(s))) for s in STATE_ZH}
    rows = _Rows(ws, 2)
    for f in month.filings:
        rows.append([_cell(ws, f.name, plain), _cell(ws, f.state_zh, states[f.state]),
                     _cell(ws, f.submitted_at, stamp), f.days_late, f.rows, f.submissions,
                     "是" if f.nil_report and f.state in (FILED, LATE) else None], _lines(f.name, FILING_COLUMNS[0][1]))
    export.finish_sheet(ws, len(FILING_COLUMNS), len(month.filings), header_row=2)
    counts = "，".join(f"{STATE_ZH[s]}{month.count(s)}个" for s in (FILED, LATE, REJECTED, MISSING))
    rows.append([])
    rows.note(f"共{len(month.filings)}个单位：{counts}；已报送的单位中零报告{month.nil_reports}个"
              "（当月无使用信用记录和信用报告情况）。", 1, len(FILING_COLUMNS), sum(w for _t, w in FILING_COLUMNS))


# --- 年度报送情况 ---------------------------------------------------------------------------------

def _year_sheet(wb, month) -> None:
    """Department x month for the year so far: what the office needs for the yearly 考核. Totals
    count only months whose deadline had passed."""
    closed = [p for p in month.periods if p != month.period or not month.open]
    heads = [f"{parse_period(p)[1]}月" + ("（未截止）" if p not in closed else "") for p in month.periods]
    columns = [("单位", 30)] + [(h, 7) for h in heads] + [(t, 10) for t, _marks in YEAR_TOTALS]
    ws = wb.create_sheet("年度报送情况")
    for i, (_t, width) in enumerate(columns, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "B3"
    export.printable(ws, landscape=sum(w for _t, w in columns) > export.PORTRAIT_WIDTH, title_rows=2, ruled=True)
    year = parse_period(month.period)[0]
    export.heading(ws, f"{month.office_name} {year}年情况清单报送情况（1月至{parse_period(month.period)[1]}月，"
                       f"{cutoff(month)}）", len(columns), sum(w for _t, w in columns))
    ws.row_dimensions[2].height = LINE_HEIGHT * max(_lines(t, w) for t, w in columns)
    ws.append(export.header(ws, [t for t, _w in columns]))
    from openpyxl.styles import Alignment

    center = Alignment(horizontal="center", vertical="top")
    marks = {m: _style(ws, alignment=center, **_fill(FILLS.get(m))) for m in YEAR_ZH}
    name = _style(ws, alignment=_wrap())
    rows = _Rows(ws, 2)
    for line in month.year:
        totals = [sum(1 for p in closed if line.marks[p] in counted) for _t, counted in YEAR_TOTALS]
        rows.append([_cell(ws, line.name, name), *(_cell(ws, YEAR_ZH[line.marks[p]], marks[line.marks[p]])
                                                   for p in month.periods), *totals], _lines(line.name, 30))
    export.finish_sheet(ws, len(columns), len(month.year), header_row=2)
    rows.append([])
    rows.note("说明：按时＝截止日前报送合格清单；零报告＝按时报送且当月无使用信用记录和"
              "信用报告情况；逾期＝截止日后报送合格清单；未通过＝报送的清单未通过校验且未补报合格清单；"
              "未报送＝未收到清单；—＝当月不需报送或系统尚未启用。合计只统计已过报送截止日的月份。",
              1, len(columns), sum(w for _t, w in columns))


# --- 统计 and its charts --------------------------------------------------------------------------

def _stats_sheet(wb, month) -> None:
    """Overall counts, one line per item; shares are of the records, with a note where a record
    may count under several items of a group."""
    stats = month.stats
    ws = export.start_sheet(wb, "统计", STAT_COLUMNS, title_text=title(month, "情况清单统计"), ruled=True)
    share = _style(ws, number_format="0.0%")
    rows, width = _Rows(ws, 2), sum(w for _t, w in STAT_COLUMNS[1:])
    for group, items in GROUPS:
        for item in items:
            n = stats.overall[(group, item)]
            rows.append([group, item, n, _cell(ws, n / stats.total if stats.total else 0, share)])
        if group in SEVERAL:
            rows.note(f"注：占比为涉及该项的记录占在用记录的比例；一条记录可涉及多{SEVERAL[group]}，"
                      "也可未涉及，各项占比之和不一定为100%。", 2, len(STAT_COLUMNS), width)
    rows.append([None, "合计（在用记录）", stats.total])
    export.finish_sheet(ws, len(STAT_COLUMNS), rows.count - 3, header_row=2)


def nice_step(top: int) -> int:
    """A whole-number axis step giving at most about eight ticks: 1, 2, 5, 10, 20, 50, ..."""
    step = 1
    while top / step > 8:
        for factor in (2, 2.5, 2):
            step = int(step * factor)
            if top / step <= 8:
                break
    return step


def _chart(ws, kind: str, heading: str, first: int, last: int, top: int):
    from openpyxl.chart import BarChart, Reference
    from openpyxl.chart.label import DataLabelList

    chart = BarChart()
    chart.type, chart.title, chart.legend, chart.style = kind, heading, None, 10
    chart.width, chart.height = 20, 15  # cm: beside its table on one landscape page
    chart.add_data(Reference(ws, min_col=2, min_row=first, max_row=last))
    chart.set_categories(Reference(ws, min_col=1, min_row=first, max_row=last))
    chart.x_axis.delete = chart.y_axis.delete = False  # Excel hides axes openpyxl leaves undecided
    step = nice_step(top)
    chart.y_axis.scaling.min, chart.y_axis.scaling.max = 0, step * math.ceil(top / step) or step
    chart.y_axis.majorUnit = step
    chart.y_axis.number_format = "0"
    chart.dataLabels = DataLabelList(showVal=True, showCatName=False, showSerName=False, showLegendKey=False,
                                     showPercent=False)
    chart.gapWidth = 60
    if kind == "bar":
        chart.x_axis.scaling.orientation = "maxMin"  # keep the table's order top to bottom
    return chart


def chart_series(month) -> list[tuple[str, str, list[tuple[str, int]]]]:
    """(chart title, bar kind, [(category, count)]) of each chart, only categories that occur."""
    stats = month.stats
    states = [("按时报送", month.count(FILED) - month.on_time_nil), ("零报告", month.on_time_nil),
              ("逾期报送", month.count(LATE)), ("报送未通过", month.count(REJECTED)), ("未报送", month.count(MISSING))]
    measures = sorted(((m, stats.overall[("规范措施", m)]) for m in GROUPS[1][1]), key=lambda x: -x[1])
    series = [
        ("各单位报送情况（个）", "col", states),
        ("措施类别（条）", "col", [(k, stats.overall[("措施类别", k)]) for k in KINDS]),
        ("激励和惩戒措施（条）", "bar", measures),
        ("查询渠道（条）", "bar", [(c, stats.overall[("查询渠道", c)]) for c in GROUPS[2][1]]),
        ("领域（条）", "bar", [(f, stats.overall[("领域", f)]) for f in GROUPS[3][1]]),
    ]
    return [(t, kind, [(label, n) for label, n in items if n]) for t, kind, items in series]


def _chart_sheet(wb, month) -> None:
    """Each chart on a landscape page of its own, beside the table it draws."""
    from openpyxl.styles import Font
    from openpyxl.worksheet.pagebreak import Break

    ws = wb.create_sheet("图表")
    for letter, width in zip("ABC", (22, 9, 3)):
        ws.column_dimensions[letter].width = width
    export.printable(ws, landscape=True, title_rows=1)
    export.heading(ws, title(month, "情况清单统计图"), 14, 140)
    bold = _style(ws, font=Font(bold=True, size=12))
    row = 2
    drawn = [s for s in chart_series(month) if s[2]]
    if not drawn:
        ws.append(["本期无可绘制的数据。"])
    for n, (heading, kind, items) in enumerate(drawn):
        start = row
        for r in range(start, start + CHART_ROWS):
            ws.row_dimensions[r].height = 15
        ws.append([_cell(ws, heading.split("（")[0], bold)])
        ws.append(export.header(ws, ["项目", "数量"]))
        for label, count in items:
            ws.append([label, count])
        ws.add_chart(_chart(ws, kind, heading, start + 2, start + 1 + len(items), max(c for _l, c in items)),
                     f"D{start}")
        for _ in range(CHART_ROWS - 2 - len(items)):
            ws.append([])
        row = start + CHART_ROWS
        if n < len(drawn) - 1:
            ws.row_breaks.append(Break(id=row - 1))


# --- 分单位统计 -----------------------------------------------------------------------------------

def _department_stats_sheet(wb, month) -> None:
    """The same counts per department (rows), with the county total last; only the items that
    occur this month, so the sheet stays one page wide at a readable size."""
    stats = month.stats
    keys = [k for k in STAT_KEYS if stats.overall[k]]
    widths = [30, 8] + [7] * len(keys)
    ws = wb.create_sheet("分单位统计")
    for i, width in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.freeze_panes = "C4"
    export.printable(ws, landscape=sum(widths) > export.PORTRAIT_WIDTH, title_rows=3, ruled=True)
    export.heading(ws, title(month, "情况清单分单位统计"), len(widths), sum(widths))
    groups, seen = [], set()
    for n, (group, _item) in enumerate(keys):
        if group not in seen:
            span = sum(1 for g, _i in keys if g == group)
            if span > 1:
                ws.merged_cells.add(f"{get_column_letter(3 + n)}2:{get_column_letter(2 + n + span)}2")
        groups.append("" if group in seen else group)
        seen.add(group)
    ws.append(export.header(ws, ["", ""] + groups))
    ws.row_dimensions[3].height = LINE_HEIGHT * max([1] + [_lines(item, 7) for _g, item in keys])
    ws.append(export.header(ws, ["单位", "记录数"] + [item for _g, item in keys]))
    names = {f.department_id: f.name for f in month.filings}
    for r in month.records:
        names.setdefault(r.department_id, r.department)
    name = _style(ws, alignment=_wrap())
    rows = _Rows(ws, 3)
    for dept, dept_name in names.items():
        counts = stats.by_department.get(dept, {})
        rows.append([_cell(ws, dept_name, name), stats.rows[dept], *(counts.get(k, 0) for k in keys)],
                    _lines(dept_name, widths[0]))
    export.finish_sheet(ws, 2 + len(keys), len(names), header_row=3)
    rows.append(export.header(ws, ["合计", stats.total, *(stats.overall[k] for k in keys)]))


def workbook(month) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    _summary_sheet(wb, month)
    _filing_sheet(wb, month)
    _year_sheet(wb, month)
    _stats_sheet(wb, month)
    _chart_sheet(wb, month)
    _department_stats_sheet(wb, month)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
