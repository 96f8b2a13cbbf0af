"""The 通报 draft: a .docx that opens with python-docx and names exactly the right departments."""
from __future__ import annotations

import datetime as dt
import io
import types

import docx
from docx.oxml.ns import qn
from docx.shared import Pt

from mailbot import config as config_mod, schedule, tongbao
from mailbot.obligations import FILED, LATE, MISSING, REJECTED, Standing
from tests import factory

CST = dt.timezone(dt.timedelta(hours=8))
ENTRIES = [
    tongbao.Entry("赞皇镇人民政府", MISSING),
    tongbao.Entry("赞皇县财政局", REJECTED),
    tongbao.Entry("赞皇县交通运输局", LATE, dt.date(2026, 11, 27), 2),
]


def _draft(entries=ENTRIES, owed=5) -> tongbao.Tongbao:
    return tongbao.Tongbao("赞皇县社会信用体系建设领导小组办公室", "zhxxyt@126.com", "2026-11", 25,
                           as_of=dt.date(2026, 11, 26), issued=dt.date(2026, 11, 26), owed=owed, entries=entries)


def _open(data: tongbao.Tongbao) -> docx.document.Document:
    return docx.Document(io.BytesIO(tongbao.build(data)))


def _texts(doc) -> list[str]:
    return [p.text for p in doc.paragraphs if p.text]


def _east_asia(paragraph) -> str:
    return paragraph.runs[0]._element.rPr.rFonts.get(qn("w:eastAsia"))


def test_the_draft_lists_exactly_the_departments_that_did_not_file_or_filed_late():
    doc = _open(_draft())
    texts = _texts(doc)
    assert texts[0] == "关于2026年11月行政管理事项中使用信用记录和信用报告情况清单报送情况的通报"
    assert texts[1] == "各乡镇人民政府、经开区管委会、县直有关部门："
    assert texts[2] == ("根据《关于加强在行政管理相关领域使用信用记录和信用报告的通知》要求，各乡镇人民政府、经开区管委会、"
                        "县直有关部门须于每月25日前将行政管理事项中使用信用记录或报告的情况清单报送至县信用办邮箱"
                        "（zhxxyt@126.com）。现将2026年11月情况清单报送情况通报如下：")
    assert texts[3:6] == [
        "一、总体情况",
        "截至2026年11月26日，应报送单位5个，按时报送2个；未按要求报送3个，其中未报送1个、逾期报送1个、报送未通过1个。",
        "二、未按要求报送的单位",
    ]
    assert "本通报结果将上报县委、县政府。" in texts
    assert texts[-2:] == ["赞皇县社会信用体系建设领导小组办公室", "2026年11月26日"]
    [table] = doc.tables
    assert [[c.text for c in row.cells] for row in table.rows] == [
        ["序号", "单位名称", "报送情况", "备注"],
        ["1", "赞皇镇人民政府", "未报送", "截至通报时未报送"],
        ["2", "赞皇县财政局", "报送未通过", "报送的清单未通过校验，尚未补报合格清单"],
        ["3", "赞皇县交通运输局", "逾期报送", "11月27日报送，逾期2天"],
    ]


def test_the_draft_uses_official_fonts_and_page_layout():
    doc = _open(_draft())
    paragraphs = [p for p in doc.paragraphs if p.text]
    title, addressees, heading = paragraphs[0], paragraphs[1], paragraphs[3]
    assert (_east_asia(title), title.runs[0].font.size) == ("方正小标宋简体", Pt(22))
    assert (_east_asia(addressees), addressees.runs[0].font.size) == ("仿宋", Pt(16))
    assert _east_asia(heading) == "黑体"
    assert doc.styles["Normal"].element.rPr.rFonts.get(qn("w:eastAsia")) == "仿宋"
    section = doc.sections[0]
    assert [round(x.cm, 2) for x in (section.page_width, section.page_height, section.top_margin, section.left_margin)] \
        == [21.0, 29.7, 3.7, 2.8]
    header = doc.tables[0].rows[0].cells[1].paragraphs[0]
    assert _east_asia(header) == "黑体"


def test_a_month_everyone_filed_on_time_has_no_table():
    doc = _open(_draft(entries=[], owed=4))
    assert doc.tables == []
    assert "截至2026年11月26日，应报送单位4个，按时报送4个，全部单位均已按时报送。" in _texts(doc)
    assert "三、有关要求" not in _texts(doc)


def test_draft_data_from_standings_names_missing_rejected_and_late_in_that_order(tmp_path):
    account = types.SimpleNamespace(port=1, user="office@example.test")
    office = config_mod.parse(factory.config_dict(account, types.SimpleNamespace(port=2), tmp_path)).office()
    filed = dt.datetime(2026, 11, 26, 0, 30, tzinfo=CST)  # half an hour after the deadline passed
    standings = {
        "scjgj": Standing(LATE, 1, 1, 3, filed),
        "czj": Standing(FILED, 1, 2, 3, dt.datetime(2026, 11, 20, tzinfo=CST)),
        "zhz": Standing(REJECTED, 2),
    }
    data = schedule.tongbao_data(office, "2026-11", standings, dt.datetime(2026, 11, 26, 1, 0, tzinfo=dt.timezone.utc))
    assert data.entries == [
        tongbao.Entry("赞皇镇人民政府", REJECTED),
        tongbao.Entry("赞皇县市场监督管理局", LATE, dt.date(2026, 11, 26), 1),
    ]
    assert (data.owed, data.on_time, data.as_of) == (3, 1, dt.date(2026, 11, 26))
