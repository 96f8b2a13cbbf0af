"""The 通报 draft: a Word document laid out as a 公文 under GB/T 9704-2012.

Pure: data in, bytes out. It is a draft the office reviews, numbers and seals before issuing,
hence .docx rather than PDF. The parts the standard asks for: a 版头 (red 发文机关标志, the
发文字号 with its number left blank, the red separator line), 主送机关, a title in 2号小标宋 broken
only between words, a body in 3号仿宋 with 一、 in 黑体 and （一） in 楷体, 署名 and 成文日期
右空四字, page numbers "— 1 —" on the outer side, and the 版记 at the foot of the last page.
python-docx sets only the Latin font names, so the East Asian name is written into rFonts too,
and the font table names the usual substitutes for machines without the GB2312 fonts.
"""
from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass, field
from io import BytesIO

from . import config
from .obligations import FILED, LATE, MISSING, REJECTED, STATE_ZH, Standing, days_late, parse_period

TITLE_FONT, HEADING_FONT, BODY_FONT, KAI_FONT = "方正小标宋简体", "黑体", "仿宋_GB2312", "楷体_GB2312"
PAGE_NUMBER_FONT = "宋体"
SUBSTITUTES = {TITLE_FONT: "宋体", BODY_FONT: "仿宋", KAI_FONT: "楷体"}  # Word's choice when one is missing
BODY_SIZE, TABLE_SIZE, NOTE_SIZE, TITLE_SIZE = 16, 12, 14, 22  # 3号, 小四, 4号, 2号
LINE_PT = 28.95  # 22 lines on the 225 mm 版心
TEXT_WIDTH_PT = 156 / 25.4 * 72  # the 版心 is 156 mm wide
TITLE_CAPACITY = 19  # full-width characters per title line, one short of what fits, for font differences
# Where a property element goes among its siblings: Word refuses a file whose order is off.
ORDER = {
    "pPr": ("pStyle", "keepNext", "keepLines", "pageBreakBefore", "framePr", "widowControl", "numPr",
            "suppressLineNumbers", "pBdr", "shd", "tabs", "suppressAutoHyphens", "kinsoku", "wordWrap", "overflowPunct",
            "topLinePunct", "autoSpaceDE", "autoSpaceDN", "bidi", "adjustRightInd", "snapToGrid", "spacing", "ind",
            "contextualSpacing", "mirrorIndents", "suppressOverlap", "jc", "textDirection", "textAlignment",
            "textboxTightWrap", "outlineLvl", "divId", "cnfStyle", "rPr", "sectPr", "pPrChange"),
    "rPr": ("rStyle", "rFonts", "b", "bCs", "i", "iCs", "caps", "smallCaps", "strike", "dstrike", "outline", "shadow",
            "emboss", "imprint", "noProof", "snapToGrid", "vanish", "webHidden", "color", "spacing", "w", "kern",
            "position", "sz", "szCs", "highlight", "u", "effect", "bdr", "shd", "fitText", "vertAlign", "rtl", "cs",
            "em", "lang", "eastAsianLayout", "specVanish", "oMath"),
    "tblPr": ("tblStyle", "tblpPr", "tblOverlap", "bidiVisual", "tblStyleRowBandSize", "tblStyleColBandSize", "tblW",
              "jc", "tblCellSpacing", "tblInd", "tblBorders", "shd", "tblLayout", "tblCellMar", "tblLook",
              "tblCaption", "tblDescription", "tblPrChange"),
}
LISTED = (MISSING, REJECTED, LATE)  # how entries are listed: the worst first
COUNTED = (MISSING, LATE, REJECTED)  # how the counts are read out


def _md(day: dt.date) -> str:
    return f"{day.month}月{day.day}日"


def _ymd(day: dt.date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def period_zh(period: str) -> str:
    year, month = parse_period(period)
    return f"{year}年{month}月"


def _phrases(period: str) -> list[str]:
    """The title cut into the words a line may break between."""
    return ["关于", f"{period_zh(period)}", "行政管理事项中", "使用", "信用记录和信用报告", "情况清单", "报送情况的", "通报"]


def title(period: str) -> str:
    return "".join(_phrases(period))


def width(text: str) -> float:
    """Printed width in full-width characters: Latin letters and digits take half."""
    return sum(0.5 if ord(ch) < 0x2E80 else 1.0 for ch in text)


def break_title(phrases: list[str], capacity: float = TITLE_CAPACITY) -> list[str]:
    """Lines of whole phrases, none wider than `capacity`: the fewest lines, then the most even,
    never an hourglass (a line shorter than both its neighbours), as GB/T 9704 asks (梯形或菱形)."""
    best = None
    for cuts in itertools.chain.from_iterable(
            itertools.combinations(range(1, len(phrases)), n) for n in range(len(phrases))):
        bounds = (0, *cuts, len(phrases))
        lines = ["".join(phrases[a:b]) for a, b in zip(bounds, bounds[1:])]
        widths = [width(line) for line in lines]
        if max(widths) > capacity or any(widths[i] < min(widths[i - 1], widths[i + 1])
                                         for i in range(1, len(widths) - 1)):
            continue
        score = (len(lines), max(widths) - min(widths))
        if best is None or score < best[0]:
            best = (score, lines)
    return best[1] if best else ["".join(phrases)]


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
            return "清单未通过校验，尚未补报"
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
    nil_reports: int = 0  # of those on time, how many filed a 零报告 (nothing to report)
    masthead: str = ""  # 发文机关标志 (default: the office name + 文件)
    doc_number_prefix: str = ""  # 机关代字 of the 发文字号
    wording: config.Tongbao = config.Tongbao()

    def count(self, state: str) -> int:
        return sum(1 for e in self.entries if e.state == state)

    @property
    def on_time(self) -> int:
        return self.owed - len(self.entries)

    @property
    def doc_number(self) -> str:
        """The 发文字号 with the number left for the office to fill in."""
        return f"{self.doc_number_prefix}〔{self.issued.year}〕　　号"

    @property
    def summary(self) -> str:
        """The counts sentence, shared by the draft and the mail to the office."""
        head = f"截至{_ymd(self.as_of)}，应报送单位{self.owed}个，按时报送{self.on_time}个"
        if self.nil_reports:
            head += f"（其中零报告{self.nil_reports}个）"
        if not self.entries:
            return head + "，全部单位均已按时报送。"
        parts = "、".join(f"{STATE_ZH[s]}{self.count(s)}个" for s in COUNTED if self.count(s))
        return f"{head}；未按要求报送{len(self.entries)}个，其中{parts}。"

    @property
    def citation(self) -> str:
        """《the notice》 with its 发文字号, or its date when it had none."""
        w = self.wording
        if w.notice_number:
            return f"《{w.notice_title}》（{w.notice_number}）"
        if w.notice_date:
            return f"{_ymd(w.notice_date)}印发的《{w.notice_title}》"
        return f"《{w.notice_title}》"


def compose(office: config.OfficeConfig, period: str, by_dept: dict[str, Standing], now: dt.datetime) -> Tongbao:
    """The 通报 of `period` as of `now` from the standings of the departments that owed it."""
    sched, tz = office.schedule, office.office.tz
    entries = []
    for dept_id, st in by_dept.items():
        if st.state in LISTED:
            late = st.state == LATE
            entries.append(Entry(
                office.department(dept_id).name, st.state,
                st.filed_at.astimezone(tz).date() if late else None,
                days_late(period, st.filed_at, sched, tz) if late else 0))
    order = {state: n for n, state in enumerate(LISTED)}
    entries.sort(key=lambda e: order[e.state])  # stable: config order within a state
    today = now.astimezone(tz).date()
    nil = sum(1 for st in by_dept.values() if st.state == FILED and st.nil_report)
    return Tongbao(office.office.name, office.office.address, period, sched.deadline_day, as_of=today, issued=today,
                   owed=len(by_dept), entries=entries, nil_reports=nil, masthead=office.office.masthead_text,
                   doc_number_prefix=office.office.doc_number_prefix, wording=office.tongbao)


# --- the document --------------------------------------------------------------------------------

def _load_docx() -> None:
    """python-docx and lxml (10 MB) are imported when a draft is written (`build`), not by a
    daemon that only files mail: its names become this module's as a top-level import's would."""
    global Document, WD_TABLE_ALIGNMENT, WD_ALIGN_PARAGRAPH, WD_LINE_SPACING, WD_TAB_ALIGNMENT, RT
    global OxmlElement, qn, Mm, Pt, RGBColor, RED, LINE
    from docx import Document
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_LINE_SPACING, WD_TAB_ALIGNMENT
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt, RGBColor

    RED, LINE = RGBColor(0xFF, 0x00, 0x00), Pt(LINE_PT)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _put(parent, child):
    """`child` into a pPr, rPr or tblPr at its place in the schema's order, replacing one of its kind."""
    order = ORDER[_local(parent.tag)]
    name = _local(child.tag)
    for old in parent.findall(child.tag):
        parent.remove(old)
    parent.insert_element_before(child, *(f"w:{tag}" for tag in order[order.index(name) + 1:]))
    return child


def _element(tag: str, children=(), **attrs):
    element = OxmlElement(tag)
    for key, value in attrs.items():
        element.set(qn(f"w:{key}"), str(value))
    for child in children:
        element.append(child)
    return element


def _fonts(element, font: str) -> None:
    """Latin and East Asian font of a run or style (python-docx writes only the Latin ones)."""
    fonts = element.get_or_add_rPr().get_or_add_rFonts()
    for key in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(key), font)


def _run(paragraph, text: str, font: str = BODY_FONT, size: float = BODY_SIZE, color: RGBColor | None = None):
    run = paragraph.add_run(text)
    run.font.size = Pt(size)
    _fonts(run._element, font)
    if color is not None:
        run.font.color.rgb = color
    return run


def _paragraph(container, text: str = "", font: str = BODY_FONT, size: float = BODY_SIZE, *, indent: bool = True,
               align=None, line=None, right_indent: float = 0, left_indent: float = 0):
    """`align` justified and `line` the grid's `LINE` unless given."""
    align = WD_ALIGN_PARAGRAPH.JUSTIFY if align is None else align
    line = LINE if line is None else line
    p = container.add_paragraph()
    fmt = p.paragraph_format
    fmt.line_spacing_rule = WD_LINE_SPACING.EXACTLY
    fmt.line_spacing = line
    fmt.space_before = fmt.space_after = Pt(0)
    fmt.first_line_indent = Pt(size * 2) if indent else Pt(0)  # two characters
    fmt.left_indent, fmt.right_indent = Pt(left_indent), Pt(right_indent)
    fmt.widow_control = False  # a fixed grid of lines: no line pushed over to keep pairs together
    p.alignment = align
    if text:
        _run(p, text, font, size)
    return p


def _border(p, side: str, size_eighths: int, color: str = "000000", space: int = 0) -> None:
    props = p._p.get_or_add_pPr()
    borders = props.find(qn("w:pBdr"))
    if borders is None:
        borders = _put(props, OxmlElement("w:pBdr"))
    borders.append(_element(f"w:{side}", val="single", sz=size_eighths, space=space, color=color))


def _blank(doc, lines: int = 1) -> None:
    for _ in range(lines):
        _paragraph(doc, indent=False)


def _setup(doc, data: Tongbao) -> None:
    section = doc.sections[0]
    section.page_width, section.page_height = Mm(210), Mm(297)
    section.top_margin, section.bottom_margin = Mm(37), Mm(35)
    section.left_margin, section.right_margin = Mm(28), Mm(26)
    section.header_distance, section.footer_distance = Mm(15), Mm(22)  # the page number 7 mm below the 版心
    normal = doc.styles["Normal"]
    normal.font.size = Pt(BODY_SIZE)
    _fonts(normal.element, BODY_FONT)
    # Chinese glyph forms and line breaking, not the template's Japanese
    _put(normal.element.get_or_add_rPr(), _element("w:lang", val="en-US", eastAsia="zh-CN"))
    settings = doc.settings.element
    theme_lang = settings.find(qn("w:themeFontLang"))
    if theme_lang is not None:
        theme_lang.set(qn("w:eastAsia"), "zh-CN")
    for tag in ("w:savePreviewPicture",):
        for found in settings.findall(qn(tag)):
            settings.remove(found)
    package = doc.part.package
    for rid, rel in list(package.rels.items()):  # python-docx's own thumbnail
        if rel.reltype == RT.THUMBNAIL:
            del package.rels[rid]
    props = doc.core_properties
    props.author = props.last_modified_by = data.office_name
    props.title, props.comments, props.keywords = title(data.period), "", ""
    props.created = props.modified = dt.datetime.combine(data.issued, dt.time())
    props.revision = 1
    _font_table(doc)


def _font_table(doc) -> None:
    """Declare the GB2312 fonts with a Chinese charset and the font Word takes when one is missing."""
    part = doc.part.part_related_by(RT.FONT_TABLE)
    from docx.oxml.parser import parse_xml

    fonts = parse_xml(part.blob)
    for name, substitute in SUBSTITUTES.items():
        font = OxmlElement("w:font")
        font.set(qn("w:name"), name)
        for tag, value in (("w:altName", substitute), ("w:charset", "86"), ("w:family", "auto"), ("w:pitch", "variable")):
            child = OxmlElement(tag)
            child.set(qn("w:val"), value)
            font.append(child)
        fonts.append(font)
    from lxml import etree

    part._blob = etree.tostring(fonts, xml_declaration=True, encoding="UTF-8", standalone=True)


def _page_number(footer, align, indent: dict) -> None:
    """"— 1 —" in 4号 half-width 宋体, a PAGE field, one character in from the outer edge."""
    p = footer.paragraphs[0]
    fmt = p.paragraph_format
    fmt.space_before = fmt.space_after = Pt(0)
    fmt.left_indent, fmt.right_indent = Pt(indent.get("left", 0)), Pt(indent.get("right", 0))
    p.alignment = align
    _run(p, "— ", PAGE_NUMBER_FONT, NOTE_SIZE)
    for kind, text in (("begin", None), (None, " PAGE "), ("separate", None), (None, "1"), ("end", None)):
        run = _run(p, "", PAGE_NUMBER_FONT, NOTE_SIZE)
        if kind:
            char = OxmlElement("w:fldChar")
            char.set(qn("w:fldCharType"), kind)
            run._r.append(char)
        elif text.strip() == "PAGE":
            instr = OxmlElement("w:instrText")
            instr.set(qn("xml:space"), "preserve")
            instr.text = text
            run._r.append(instr)
        else:
            run.text = text
    _run(p, " —", PAGE_NUMBER_FONT, NOTE_SIZE)


def _footers(doc) -> None:
    doc.settings.odd_and_even_pages_header_footer = True
    section = doc.sections[0]
    _page_number(section.footer, WD_ALIGN_PARAGRAPH.RIGHT, {"right": NOTE_SIZE})  # odd pages: 右空一字
    _page_number(section.even_page_footer, WD_ALIGN_PARAGRAPH.LEFT, {"left": NOTE_SIZE})  # even pages: 左空一字


def _masthead(doc, data: Tongbao) -> None:
    """版头: the red 发文机关标志 35 mm below the top of the 版心, two lines down the 发文字号,
    and 4 mm under it the red line as wide as the 版心."""
    text = data.masthead or f"{data.office_name}文件"
    size = 42  # about 15 mm high; a long name is narrowed (character scale), not shrunk
    scale = min(100, int(100 * TEXT_WIDTH_PT / (size * width(text)) * 0.97))
    p = _paragraph(doc, indent=False, align=WD_ALIGN_PARAGRAPH.CENTER, line=Pt(size * 1.15))
    p.paragraph_format.space_before = Mm(32)
    run = _run(p, text, TITLE_FONT, size, RED)
    if scale < 100:
        _put(run._r.get_or_add_rPr(), _element("w:w", val=scale))
    _blank(doc, 2)
    number = _paragraph(doc, data.doc_number, indent=False, align=WD_ALIGN_PARAGRAPH.CENTER)
    _border(number, "bottom", 18, "FF0000", space=5)  # 2.25 pt; with the line's own spacing 4 mm below the 文号


def _title(doc, data: Tongbao) -> None:
    p = _paragraph(doc, indent=False, align=WD_ALIGN_PARAGRAPH.CENTER, line=Pt(35))
    for n, line in enumerate(break_title(_phrases(data.period))):
        run = _run(p, line, TITLE_FONT, TITLE_SIZE)
        if n:
            run._r.addprevious(_break())


def _break():
    run = OxmlElement("w:r")
    run.append(OxmlElement("w:br"))
    return run


def _cell(cell, text: str, font: str, width_mm: float, align) -> None:
    cell.width = Mm(width_mm)
    p = cell.paragraphs[0]
    fmt = p.paragraph_format
    fmt.line_spacing_rule, fmt.line_spacing = WD_LINE_SPACING.EXACTLY, Pt(17)
    fmt.space_before = fmt.space_after = Pt(1)
    fmt.first_line_indent = Pt(0)
    p.alignment = align
    _run(p, text, font, TABLE_SIZE)


def _table_props(table, width_mm: float, *children) -> None:
    """Width, and further tblPr children (cell margins) in the schema's order."""
    props = table._tbl.tblPr
    _put(props, _element("w:tblW", type="dxa", w=round(width_mm / 25.4 * 1440)))
    for child in children:
        _put(props, child)


def _row_props(row, header: bool = False) -> None:
    props = row._tr.get_or_add_trPr()
    props.append(OxmlElement("w:cantSplit"))
    if header:
        props.append(OxmlElement("w:tblHeader"))  # repeated at the top of every page the table runs onto


def _table(doc, entries: list[Entry]) -> None:
    widths = (12, 64, 25, 55)  # mm, together the 版心
    table = doc.add_table(rows=1, cols=4)
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    table.autofit = False
    for column, w in zip(table.columns, widths):
        column.width = Mm(w)
    margins = _element("w:tblCellMar", [_element(f"w:{side}", w=68, type="dxa") for side in ("left", "right")])
    _table_props(table, sum(widths), margins)  # 1.2 mm inside each cell: a 14-character name on one line
    center, left = WD_ALIGN_PARAGRAPH.CENTER, WD_ALIGN_PARAGRAPH.LEFT
    for cell, text, w in zip(table.rows[0].cells, ("序号", "单位名称", "报送情况", "备注"), widths):
        _cell(cell, text, HEADING_FONT, w, center)
    _row_props(table.rows[0], header=True)
    for number, entry in enumerate(entries, 1):
        row = table.add_row()
        _row_props(row)
        for cell, text, w, align in zip(row.cells, (str(number), entry.name, entry.label, entry.note), widths,
                                        (center, left, center, left)):
            _cell(cell, text, BODY_FONT, w, align)


def _heading(doc, text: str) -> None:
    """一、 in 黑体, never left alone at the foot of a page."""
    _paragraph(doc, text, HEADING_FONT).paragraph_format.keep_with_next = True


def _requirements(data: Tongbao) -> list[tuple[str, str]]:
    """（一）（二）…: what each kind of department named must do, then what all must."""
    items = []
    if data.count(MISSING) or data.count(REJECTED):
        items.append(("抓紧补报。", "未报送和报送未通过的单位要高度重视，明确责任部门，安排专人负责，尽快报送合格的情况清单。"))
    if data.count(LATE):
        items.append(("查找原因。", "逾期报送的单位要认真查找原因，切实加以改进。"))
    items.append(("按时报送。", "社会信用体系建设是优化营商环境的一项重要考核内容。各单位要严格按照通知要求，"
                               f"于每月{data.deadline_day}日前按时报送情况清单，确保报送及时、内容准确。"))
    return items


def _numbered(doc, lead: str, text: str) -> None:
    """A （一） paragraph: the lead-in sentence in 楷体, the rest in 仿宋."""
    p = _paragraph(doc)
    _run(p, lead, KAI_FONT)
    _run(p, text)


def _signature(doc, data: Tongbao) -> None:
    """署名 and 成文日期: the date 右空四字; the name centred over it when it fits, else also 右空四字.
    Kept on one page with the last paragraph of the text: a page with only the 署名 is not done."""
    date = _ymd(data.issued)
    four = 4 * BODY_SIZE
    spare = (width(date) - width(data.office_name)) / 2 * BODY_SIZE
    name_indent = four + spare if spare >= 0 else four
    doc.paragraphs[-1].paragraph_format.keep_with_next = True
    _blank(doc, 2)
    for p in doc.paragraphs[-2:]:
        p.paragraph_format.keep_with_next = True
    name = _paragraph(doc, data.office_name, indent=False, align=WD_ALIGN_PARAGRAPH.RIGHT, right_indent=name_indent)
    name.paragraph_format.keep_with_next = True
    _paragraph(doc, date, indent=False, align=WD_ALIGN_PARAGRAPH.RIGHT, right_indent=four)


def _colophon(doc, data: Tongbao) -> None:
    """版记 at the foot of the last page: 抄送, then 印发机关 and 印发日期, between lines as wide as
    the 版心, the first and last thick (0.35 mm), the one between thin (0.25 mm). A floating table
    anchored to the bottom of the 版心, whatever the text above; its left edge is given from the
    page edge, because LibreOffice keeps a table as wide as the text area floating only then."""
    one = NOTE_SIZE
    lines = ([f"抄送：{'，'.join(data.wording.copy_to)}。"] if data.wording.copy_to else []) + \
        [f"{data.office_name}\t{_ymd(data.issued)}印发"]
    table = doc.add_table(rows=len(lines), cols=1)
    table.alignment = None
    table.autofit = False
    table.columns[0].width = Mm(156)
    twips = round(28 / 25.4 * 1440)  # the left margin
    line = lambda side, size: _element(f"w:{side}", val="single", sz=size, space=0, color="000000")  # noqa: E731
    _table_props(table, 156,
                 _element("w:tblpPr", leftFromText=0, rightFromText=0, topFromText=0, bottomFromText=0,
                          vertAnchor="margin", horzAnchor="page", tblpX=twips, tblpYSpec="bottom"),
                 _element("w:tblBorders", [line("top", 8), _element("w:left", val="nil"), line("bottom", 8),
                                           _element("w:right", val="nil"), line("insideH", 6),
                                           _element("w:insideV", val="nil")]),
                 _element("w:tblCellMar", [_element(f"w:{side}", w=0, type="dxa") for side in ("left", "right")]))
    for row, text in zip(table.rows, lines):
        cell = row.cells[0]
        cell.width = Mm(156)
        p = cell.paragraphs[0]
        fmt = p.paragraph_format
        fmt.line_spacing_rule, fmt.line_spacing = WD_LINE_SPACING.EXACTLY, Pt(26)
        fmt.space_before = fmt.space_after = Pt(0)
        fmt.left_indent = fmt.right_indent = Pt(one)  # 左右各空一字
        if "\t" in text:
            fmt.tab_stops.add_tab_stop(Mm(156) - Pt(one), WD_TAB_ALIGNMENT.RIGHT)
        _run(p, text, BODY_FONT, NOTE_SIZE)
    _paragraph(doc, indent=False, line=Pt(1))  # a document ends with a paragraph, not a table


def build(data: Tongbao) -> bytes:
    """The draft as .docx bytes."""
    _load_docx()
    doc = Document()
    _setup(doc, data)
    _footers(doc)
    _masthead(doc, data)
    _blank(doc, 2)
    _title(doc, data)
    _blank(doc)
    w = data.wording
    _paragraph(doc, f"{w.addressees}：", indent=False)
    _paragraph(doc, f"根据{data.citation}要求，{w.addressees}须于每月{data.deadline_day}日前将行政管理事项中"
                    f"使用信用记录或报告的情况清单报送至指定邮箱。"
                    f"现将{period_zh(data.period)}情况清单报送情况通报如下。")
    _heading(doc, "一、总体情况")
    _paragraph(doc, data.summary)
    if data.entries:
        _heading(doc, "二、未按要求报送的单位")
        _table(doc, data.entries)
        _heading(doc, "三、有关要求")
        for n, (lead, text) in enumerate(_requirements(data)):
            _numbered(doc, f"（{'一二三'[n]}）{lead}", text)
        if w.report_to:
            _paragraph(doc, f"本通报结果将上报{w.report_to}。")
    _signature(doc, data)
    _colophon(doc, data)
    out = BytesIO()
    doc.save(out)
    return out.getvalue()
