"""The 通报 draft: a GB/T 9704 公文 that opens with python-docx and names exactly the right departments."""
from __future__ import annotations

import datetime as dt
import io
import types

import docx
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.shared import Pt
from hypothesis import given, strategies as st

from mailbot import config as config_mod, tongbao
from mailbot.obligations import FILED, LATE, MISSING, REJECTED, Standing
from tests import factory

CST = dt.timezone(dt.timedelta(hours=8))
OFFICE = "赞皇县社会信用体系建设领导小组办公室"
ENTRIES = [
    tongbao.Entry("赞皇镇人民政府", MISSING),
    tongbao.Entry("赞皇县财政局", REJECTED),
    tongbao.Entry("赞皇县交通运输局", LATE, dt.date(2026, 11, 27), 2),
]
WORDING = config_mod.Tongbao(copy_to=["县委办公室", "县政府办公室"])


def _draft(entries=ENTRIES, owed=5, nil=0, wording=WORDING) -> tongbao.Tongbao:
    return tongbao.Tongbao(OFFICE, "zhxxyt@126.com", "2026-11", 25, as_of=dt.date(2026, 11, 26),
                           issued=dt.date(2026, 11, 26), owed=owed, entries=entries, nil_reports=nil,
                           masthead=f"{OFFICE}文件", doc_number_prefix="赞信用办", wording=wording)


def _open(data: tongbao.Tongbao) -> docx.document.Document:
    return docx.Document(io.BytesIO(tongbao.build(data)))


def _texts(doc) -> list[str]:
    return [p.text for p in doc.paragraphs if p.text]


def _paragraph(doc, text: str):
    return next(p for p in doc.paragraphs if p.text == text)


def _east_asia(run) -> str:
    return run._element.rPr.rFonts.get(qn("w:eastAsia"))


def _office(tmp_path, **keys):
    account = types.SimpleNamespace(port=1, user="office@example.test")
    return config_mod.parse(factory.config_dict(account, types.SimpleNamespace(port=2), tmp_path, **keys)).office()


def test_the_draft_lists_exactly_the_departments_that_did_not_file_or_filed_late():
    doc = _open(_draft())
    texts = _texts(doc)
    assert texts[:3] == [f"{OFFICE}文件", "赞信用办〔2026〕　　号",
                         "关于2026年11月行政管理事项中\n使用信用记录和信用报告\n情况清单报送情况的通报"]
    assert texts[3] == "各乡镇人民政府、经开区管委会、县直有关部门："
    assert texts[4] == ("根据2023年9月21日印发的《关于加强在行政管理相关领域使用信用记录和信用报告的通知》要求，"
                        "各乡镇人民政府、经开区管委会、县直有关部门须于每月25日前将行政管理事项中使用信用记录或报告的"
                        "情况清单报送至指定邮箱。现将2026年11月情况清单报送情况通报如下。")
    assert texts[5:8] == [
        "一、总体情况",
        "截至2026年11月26日，应报送单位5个，按时报送2个；未按要求报送3个，其中未报送1个、逾期报送1个、报送未通过1个。",
        "二、未按要求报送的单位",
    ]
    assert "本通报结果将上报县委、县政府。" in texts
    assert texts[-2:] == [OFFICE, "2026年11月26日"]
    listing, colophon = doc.tables
    assert [[c.text for c in row.cells] for row in listing.rows] == [
        ["序号", "单位名称", "报送情况", "备注"],
        ["1", "赞皇镇人民政府", "未报送", "截至通报时未报送"],
        ["2", "赞皇县财政局", "报送未通过", "清单未通过校验，尚未补报"],
        ["3", "赞皇县交通运输局", "逾期报送", "11月27日报送，逾期2天"],
    ]
    assert [row.cells[0].text for row in colophon.rows] == ["抄送：县委办公室，县政府办公室。",
                                                            f"{OFFICE}\t2026年11月26日印发"]


def test_the_draft_has_the_parts_and_typography_of_gbt_9704():
    doc = _open(_draft())
    section = doc.sections[0]
    assert [round(x.mm) for x in (section.page_width, section.page_height, section.top_margin, section.bottom_margin,
                                  section.left_margin, section.right_margin)] == [210, 297, 37, 35, 28, 26]
    # 版头: the red 发文机关标志 in 小标宋, the 发文字号 centred, the red line under it
    masthead = _paragraph(doc, f"{OFFICE}文件")
    run = masthead.runs[0]
    assert (str(run.font.color.rgb), _east_asia(run), masthead.alignment) == ("FF0000", "方正小标宋简体",
                                                                         WD_ALIGN_PARAGRAPH.CENTER)
    number = _paragraph(doc, "赞信用办〔2026〕　　号")
    assert number.alignment == WD_ALIGN_PARAGRAPH.CENTER
    line = number._p.pPr.find(qn("w:pBdr")).find(qn("w:bottom"))
    assert (line.get(qn("w:val")), line.get(qn("w:color"))) == ("single", "FF0000")
    # title 2号小标宋; body 3号仿宋 on a fixed 28.95 pt line; 一、 in 黑体; （一） in 楷体
    title = doc.paragraphs[[p.text for p in doc.paragraphs].index(_texts(doc)[2])]
    assert {(_east_asia(r), r.font.size) for r in title.runs if r.text.strip()} == {("方正小标宋简体", Pt(22))}
    body = _paragraph(doc, _texts(doc)[4])
    assert (_east_asia(body.runs[0]), body.runs[0].font.size, body.paragraph_format.line_spacing) == \
        ("仿宋_GB2312", Pt(16), Pt(28.95))
    assert body.paragraph_format.first_line_indent == Pt(32)
    assert _east_asia(_paragraph(doc, "一、总体情况").runs[0]) == "黑体"
    [first] = [p for p in doc.paragraphs if p.text.startswith("（一）")]
    assert [(r.text, _east_asia(r)) for r in first.runs][0] == ("（一）抓紧补报。", "楷体_GB2312")
    assert _east_asia(first.runs[1]) == "仿宋_GB2312"
    assert doc.styles["Normal"].element.rPr.find(qn("w:lang")).get(qn("w:eastAsia")) == "zh-CN"
    # 署名 and 成文日期 右空四字, never on a page without text: kept with the last paragraph
    for text in (OFFICE, "2026年11月26日"):
        p = _paragraph(doc, text)
        assert (p.alignment, p.paragraph_format.right_indent) == (WD_ALIGN_PARAGRAPH.RIGHT, Pt(64))
    at = [p.text for p in doc.paragraphs].index(OFFICE)
    assert doc.paragraphs[at - 3].text == "本通报结果将上报县委、县政府。"
    assert all(p.paragraph_format.keep_with_next for p in doc.paragraphs[at - 3:at + 1])
    assert all(_paragraph(doc, h).paragraph_format.keep_with_next for h in ("一、总体情况", "三、有关要求"))
    # the table header repeats on every page; the 版记 floats at the foot of the 版心
    listing, colophon = doc.tables
    assert listing.rows[0]._tr.trPr.find(qn("w:tblHeader")) is not None
    position = colophon._tbl.tblPr.find(qn("w:tblpPr"))
    assert (position.get(qn("w:vertAnchor")), position.get(qn("w:tblpYSpec"))) == ("margin", "bottom")
    borders = colophon._tbl.tblPr.find(qn("w:tblBorders"))
    assert [(b.tag.split("}")[1], b.get(qn("w:sz"))) for b in borders if b.get(qn("w:val")) == "single"] == \
        [("top", "8"), ("bottom", "8"), ("insideH", "6")]  # 0.35 mm outside, 0.25 mm between


def test_page_numbers_are_a_page_field_on_the_outer_side():
    doc = _open(_draft())
    assert doc.settings.odd_and_even_pages_header_footer
    section = doc.sections[0]
    for footer, align, side in ((section.footer, WD_ALIGN_PARAGRAPH.RIGHT, "right_indent"),
                                (section.even_page_footer, WD_ALIGN_PARAGRAPH.LEFT, "left_indent")):
        [p] = footer.paragraphs
        assert p.alignment == align and getattr(p.paragraph_format, side) == Pt(14)  # 空一字
        assert p.text == "— 1 —"
        assert [i.text.strip() for i in p._p.iter(qn("w:instrText"))] == ["PAGE"]
        assert [c.get(qn("w:fldCharType")) for c in p._p.iter(qn("w:fldChar"))] == ["begin", "separate", "end"]
        assert {_east_asia(r) for r in p.runs} == {"宋体"} and {r.font.size for r in p.runs} == {Pt(14)}


def test_the_title_breaks_only_between_words():
    assert tongbao.break_title(tongbao._phrases("2026-11")) == \
        ["关于2026年11月行政管理事项中", "使用信用记录和信用报告", "情况清单报送情况的通报"]
    for period in ("2026-01", "2026-09", "2026-12", "2031-10"):
        lines = tongbao.break_title(tongbao._phrases(period))
        assert "".join(lines) == tongbao.title(period)
        assert all(tongbao.width(line) <= tongbao.TITLE_CAPACITY for line in lines)
        assert "使用信用" not in [line[-4:] for line in lines]  # the break the old draft made


PHRASE = st.text(alphabet="关于信用记录报告情况通报2026年月", min_size=1, max_size=8)


@given(st.lists(PHRASE, min_size=1, max_size=8))
def test_title_lines_are_whole_phrases_that_fit(phrases):
    lines = tongbao.break_title(phrases)
    assert "".join(lines) == "".join(phrases)
    bounds, at = {0}, 0
    for phrase in phrases:
        at += len(phrase)
        bounds.add(at)
    at = 0
    for line in lines:
        at += len(line)
        assert at in bounds  # every break falls between two phrases
    if len(lines) > 1:
        widths = [tongbao.width(line) for line in lines]
        assert max(widths) <= tongbao.TITLE_CAPACITY
        assert not any(widths[i] < min(widths[i - 1], widths[i + 1]) for i in range(1, len(widths) - 1))


def test_a_month_everyone_filed_on_time_has_no_list():
    doc = _open(_draft(entries=[], owed=4, nil=1))
    assert len(doc.tables) == 1  # the 版记 only
    assert "截至2026年11月26日，应报送单位4个，按时报送4个（其中零报告1个），全部单位均已按时报送。" in _texts(doc)
    assert "三、有关要求" not in _texts(doc)


def test_the_wording_comes_from_the_office_config(tmp_path):
    office = _office(tmp_path, office={"masthead": "元氏县信用办文件", "doc_number_prefix": "元信用办"},
                     tongbao={"addressees": "各乡镇人民政府、县直各部门", "notice_title": "关于做好信用记录使用情况报送的通知",
                              "notice_number": "元信用办〔2024〕3号", "copy_to": [], "report_to": ""})
    data = tongbao.compose(office, "2026-11", {"zhz": Standing(MISSING, 0)}, dt.datetime(2026, 11, 26, 9, tzinfo=CST))
    doc = _open(data)
    texts = _texts(doc)
    assert texts[:2] == ["元氏县信用办文件", "元信用办〔2026〕　　号"]
    assert texts[3] == "各乡镇人民政府、县直各部门："
    assert texts[4].startswith("根据《关于做好信用记录使用情况报送的通知》（元信用办〔2024〕3号）要求，各乡镇人民政府、县直各部门须于")
    assert not any("上报" in t for t in texts)
    [_listing, colophon] = doc.tables
    assert [row.cells[0].text for row in colophon.rows] == [f"{office.office.name}\t2026年11月26日印发"]


def test_the_default_masthead_is_the_office_name_and_wen_jian(tmp_path):
    office = _office(tmp_path)
    assert office.office.masthead_text == f"{OFFICE}文件"
    data = tongbao.compose(office, "2026-11", {}, dt.datetime(2026, 11, 26, 9, tzinfo=CST))
    assert (data.masthead, data.doc_number, data.wording.report_to) == (f"{OFFICE}文件", "〔2026〕　　号", "县委、县政府")


def test_draft_data_from_standings_names_missing_rejected_and_late_in_that_order(tmp_path):
    office = _office(tmp_path)
    filed = dt.datetime(2026, 11, 26, 0, 30, tzinfo=CST)  # half an hour after the deadline passed
    standings = {
        "scjgj": Standing(LATE, 1, 1, 3, filed),
        "czj": Standing(FILED, 1, 2, 0, dt.datetime(2026, 11, 20, tzinfo=CST), nil_report=True),
        "zhz": Standing(REJECTED, 2),
    }
    data = tongbao.compose(office, "2026-11", standings, dt.datetime(2026, 11, 26, 1, 0, tzinfo=dt.timezone.utc))
    assert data.entries == [
        tongbao.Entry("赞皇镇人民政府", REJECTED),
        tongbao.Entry("赞皇县市场监督管理局", LATE, dt.date(2026, 11, 26), 1),
    ]
    assert (data.owed, data.on_time, data.nil_reports, data.as_of) == (3, 1, 1, dt.date(2026, 11, 26))
    assert "按时报送1个（其中零报告1个）" in data.summary


def test_the_requirements_address_only_the_kinds_of_department_named():
    late_only = [p.text for p in _open(_draft(entries=ENTRIES[2:], owed=5)).paragraphs if p.text.startswith("（")]
    assert [t[:8] for t in late_only] == ["（一）查找原因。", "（二）按时报送。"]
    everyone = [p.text for p in _open(_draft()).paragraphs if p.text.startswith("（")]
    assert [t[:8] for t in everyone] == ["（一）抓紧补报。", "（二）查找原因。", "（三）按时报送。"]
