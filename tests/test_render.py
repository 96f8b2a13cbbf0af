"""The documents as printed: a 60-department county's digest and 通报 through LibreOffice to PDF.

Slow (LibreOffice starts twice or three times) and skipped with the reason when LibreOffice or
poppler is missing; .ci/run installs both. tools/render_documents.py draws the same pages as
PNGs for a person to look at.
"""
from __future__ import annotations

import datetime as dt
import re

import pytest

from mailbot import config as config_mod, tongbao
from mailbot.obligations import MISSING, Standing
from tests import factory, render
from tools import render_documents

pytestmark = [pytest.mark.slow, pytest.mark.skipif(render.MISSING is not None, reason=render.MISSING or "")]
CST = dt.timezone(dt.timedelta(hours=8))
A4_PORTRAIT, A4_LANDSCAPE = (210, 297), (297, 210)


@pytest.fixture(scope="module")
def county(tmp_path_factory):
    """November 2026 of 60 departments as a clerk makes it on 1 December: the files and their PDFs."""
    out = tmp_path_factory.mktemp("render")
    files = render_documents.build(out, "2026-11", dt.datetime(2026, 12, 1, 10, 0, tzinfo=CST), 60)
    workbook = next(f for f in files if f.suffix == ".xlsx")
    draft = next(f for f in files if f.suffix == ".docx")
    return {"xlsx": render.to_pdf(workbook, out), "docx": render.to_pdf(draft, out), "out": out}


SHEET_TITLES = {  # the title row of each sheet, as printed on each of its pages
    "汇总": "2026年11月情况清单汇总（", "报送情况": "2026年11月情况清单报送情况（",
    "年度报送情况": "2026年情况清单报送情况（1月至11月", "统计": "2026年11月情况清单统计（",
    "图表": "2026年11月情况清单统计图（", "分单位统计": "2026年11月情况清单分单位统计（",
}


def flat(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_the_digest_prints_on_a4_one_page_wide_with_titles_and_page_numbers(county):
    pdf = county["xlsx"]
    sizes, texts = render.page_sizes(pdf), render.page_texts(pdf)
    assert set(sizes) <= {A4_PORTRAIT, A4_LANDSCAPE}
    sheets: dict[str, list[int]] = {}
    for n, text in enumerate(texts):
        [sheet] = [name for name, title in SHEET_TITLES.items() if title in flat(text)]  # every page has its title
        sheets.setdefault(sheet, []).append(n)
        assert f"第{n + 1}页共{len(texts)}页" in flat(text), n
        assert "赞皇县社会信用体系建设领导小组办公室" in flat(text) and "截至2026年12月1日10时" in flat(text), n
    assert list(sheets) == list(SHEET_TITLES)  # in the workbook's order, each on pages of its own
    assert len(sheets["汇总"]) >= 5  # 60 departments' rows run over several pages, each one page wide:
    for n in sheets["汇总"]:  # the first and the last column's header on every page
        assert "市场主体（自然人）名称" in flat(texts[n]) and "报送时间" in flat(texts[n]) and sizes[n] == A4_LANDSCAPE
    for n in sheets["分单位统计"]:
        assert "记录数" in flat(texts[n]) and "未识别" in flat(texts[n]) and sizes[n] == A4_LANDSCAPE
    for n in sheets["年度报送情况"]:
        assert "1月" in texts[n] and "未报送" in texts[n]
    assert "单位" in texts[sheets["报送情况"][0]] and "零报告" in texts[sheets["报送情况"][0]]
    assert len(sheets["图表"]) == 5 and {sizes[n] for n in sheets["图表"]} == {A4_LANDSCAPE}  # a page a chart


def test_the_tongbao_of_the_month_is_a_few_pages_with_its_colophon_at_the_foot_of_the_last(county):
    pdf = county["docx"]
    sizes, texts = render.page_sizes(pdf), render.page_texts(pdf)
    assert set(sizes) == {A4_PORTRAIT} and len(texts) <= 4
    pages = [flat(t) for t in texts]
    assert pages[0].startswith("赞皇县社会信用体系建设领导小组办公室文件赞信用办〔2026〕号关于2026年11月")
    for n, text in enumerate(pages, 1):
        assert f"—{n}—" in text
    last = [line for line in texts[-1].splitlines() if line.strip()]
    assert flat(last[-3]) == "抄送：县委办公室，县政府办公室。"  # the 版记 at the foot,
    assert flat(last[-2]) == "赞皇县社会信用体系建设领导小组办公室2026年12月1日印发"
    assert flat(last[-1]) == f"—{len(texts)}—"  # just above the page number


def test_the_tongbao_naming_all_60_departments_stays_within_four_pages(tmp_path):
    account = type("A", (), {"port": 1, "user": "office@example.test"})
    data = factory.config_dict(account, account, tmp_path, departments=factory.COUNTY,
                               tongbao={"copy_to": ["县委办公室", "县政府办公室"]})
    office = config_mod.parse(data).office()
    standings = {d.id: Standing(MISSING, 0) for d in office.departments}
    draft = tongbao.build(tongbao.compose(office, "2026-11", standings, dt.datetime(2026, 11, 26, 9, tzinfo=CST)))
    path = tmp_path / "通报.docx"
    path.write_bytes(draft)
    texts = render.page_texts(render.to_pdf(path, tmp_path))
    assert len(texts) <= 4
    assert all(factory.COUNTY[n]["name"] in "".join(texts) for n in (0, 30, 59))
    assert "抄送：县委办公室，县政府办公室。" in flat(texts[-1])
