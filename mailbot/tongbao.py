"""The 通报 draft: a Word document in the layout of the office's own documents (GB/T 9704).

Pure: data in, bytes out. It is a draft the office reviews and edits before issuing, hence
.docx rather than PDF. Fonts follow official practice (小标宋 title, 黑体 headings, 仿宋 body);
python-docx only sets Latin font names, so the East Asian name is written into rFonts too.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from io import BytesIO

from docx import Document
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING
from docx.oxml.ns import qn
from docx.shared import Cm, Pt

from .obligations import LATE, MISSING, REJECTED, STATE_ZH, parse_period

TITLE_FONT, HEADING_FONT, BODY_FONT = "方正小标宋简体", "黑体", "仿宋"
ADDRESSEES = "各乡镇人民政府、经开区管委会、县直有关部门"
NOTICE_TITLE = "关于加强在行政管理相关领域使用信用记录和信用报告的通知"
ORDER = (MISSING, REJECTED, LATE)  # how entries are listed: the worst first
COUNTED = (MISSING, LATE, REJECTED)  # how the counts are read out


def _md(day: dt.date) -> str:
    return f"{day.month}月{day.day}日"


def _ymd(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def period_zh(period: str) -> str:
    year, month = parse_period(period)
    return f"{year}年{month}月"


def title(period: str) -> str:
    return f"关于{period_zh(period)}行政管理事项中使用信用记录和信用报告情况清单报送情况的通报"


@dataclass(frozen=True)
class Entry:
    """One department the 通报 names."""

    name: str
    state: str  # missing, rejected or late
    filed_on: dt.date | None = None  # late: the day the first valid checklist arrived
    days_late: int = 0

    @property
    def label(self) -> str:
        return STATE_ZH[self.state]

    @property
    def note(self) -> str:
        if self.state == LATE:
            return f"{_md(self.filed_on)}报送，逾期{self.days_late}天"
        if self.state == REJECTED:
            return "报送的清单未通过校验，尚未补报合格清单"
        return "截至通报时未报送"


@dataclass(frozen=True)
class Tongbao:
    office_name: str
    office_address: str
    period: str
    deadline_day: int  # the notice's standing rule: 每月N日前
    as_of: dt.date  # 截至
    issued: dt.date
    owed: int  # departments that owed the period
    entries: list[Entry] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for e in self.entries if e.state == state)

    @property
    def on_time(self) -> int:
        return self.owed - len(self.entries)

    @property
    def summary(self) -> str:
        """The counts sentence, shared by the draft and the mail to the office."""
        head = f"截至{_ymd(self.as_of)}，应报送单位{self.owed}个，按时报送{self.on_time}个"
        if not self.entries:
            return head + "，全部单位均已按时报送。"
        parts = "、".join(f"{STATE_ZH[s]}{self.count(s)}个" for s in COUNTED)
        return f"{head}；未按要求报送{len(self.entries)}个，其中{parts}。"


def _run(paragraph, text: str, font: str, size: float, bold: bool = False):
    run = paragraph.add_run(text)
    run.font.name = font
    run.font.size = Pt(size)
    run.font.bold = bold
    run._element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), font)
    return run


def _paragraph(doc, text: str = "", font: str = BODY_FONT, size: float = 16, *, indent: bool = True,
               align=None, bold: bool = False, right_indent: float | None = None):
    p = doc.add_paragraph()
    fmt = p.paragraph_format
    fmt.line_spacing_rule = WD_LINE_SPACING.EXACTLY
    fmt.line_spacing = Pt(28)
    fmt.space_before = fmt.space_after = Pt(0)
    if indent:
        fmt.first_line_indent = Pt(size * 2)  # two characters
    if right_indent is not None:
        fmt.right_indent = Pt(right_indent)
    if align is not None:
        p.alignment = align
    if text:
        _run(p, text, font, size, bold)
    return p


def _setup(doc) -> None:
    section = doc.sections[0]
    section.page_width, section.page_height = Cm(21), Cm(29.7)
    section.top_margin, section.bottom_margin = Cm(3.7), Cm(3.5)
    section.left_margin, section.right_margin = Cm(2.8), Cm(2.6)
    normal = doc.styles["Normal"]
    normal.font.name = BODY_FONT
    normal.font.size = Pt(16)
    normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), BODY_FONT)


def _table(doc, entries: list[Entry]) -> None:
    table = doc.add_table(rows=1, cols=4)
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    widths = (Cm(1.5), Cm(6.5), Cm(3.0), Cm(4.6))
    for cell, text, width in zip(table.rows[0].cells, ("序号", "单位名称", "报送情况", "备注"), widths):
        cell.width = width
        _run(cell.paragraphs[0], text, HEADING_FONT, 14)
        cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER
    for number, entry in enumerate(entries, 1):
        cells = table.add_row().cells
        for cell, text, width in zip(cells, (str(number), entry.name, entry.label, entry.note), widths):
            cell.width = width
            _run(cell.paragraphs[0], text, BODY_FONT, 14)
        cells[0].paragraphs[0].alignment = cells[2].paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER


def build(data: Tongbao) -> bytes:
    """The draft as .docx bytes."""
    doc = Document()
    _setup(doc)
    _paragraph(doc, title(data.period), TITLE_FONT, 22, indent=False, align=WD_ALIGN_PARAGRAPH.CENTER)
    _paragraph(doc, indent=False)
    _paragraph(doc, f"{ADDRESSEES}：", indent=False)
    _paragraph(doc, f"根据《{NOTICE_TITLE}》要求，{ADDRESSEES}须于每月{data.deadline_day}日前将行政管理事项中"
                    f"使用信用记录或报告的情况清单报送至县信用办邮箱（{data.office_address}）。"
                    f"现将{period_zh(data.period)}情况清单报送情况通报如下：")
    _paragraph(doc, "一、总体情况", HEADING_FONT)
    _paragraph(doc, data.summary)
    if data.entries:
        _paragraph(doc, "二、未按要求报送的单位", HEADING_FONT)
        _table(doc, data.entries)
        _paragraph(doc, "三、有关要求", HEADING_FONT)
        _paragraph(doc, "社会信用体系建设是优化营商环境的一项重要考核内容。请未报送和报送未通过的单位高度重视，"
                        "明确责任部门，安排专人负责，尽快补报；逾期报送的单位要认真查找原因，切实加以改进。"
                        f"各单位要严格按照通知要求，于每月{data.deadline_day}日前按时报送情况清单，确保报送及时、内容准确。")
        _paragraph(doc, "本通报结果将上报县委、县政府。")
    for _ in range(3):
        _paragraph(doc, indent=False)
    _paragraph(doc, data.office_name, indent=False, align=WD_ALIGN_PARAGRAPH.RIGHT, right_indent=32)
    _paragraph(doc, _ymd(data.issued), indent=False, align=WD_ALIGN_PARAGRAPH.RIGHT, right_indent=64)
    out = BytesIO()
    doc.save(out)
    return out.getvalue()
