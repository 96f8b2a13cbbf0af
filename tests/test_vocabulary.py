"""Golden cases for measures, channels, lists and fields, plus never-raises properties."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbot.vocabulary import (
    CHANNELS, FIELDS, INCENTIVES, LISTS, PUNISHMENTS, Measure, detect_channels, detect_field,
    detect_lists, map_measures,
)

NONE = ("无", "无")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", []),
        ("   ", []),
        ("开辟“绿色通道”", [("开辟“绿色通道”", "绿色通道", "激励")]),
        ("开辟\"绿色通道\"", [("开辟\"绿色通道\"", "绿色通道", "激励")]),
        ("开辟 绿色 通道", [("开辟 绿色 通道", "绿色通道", "激励")]),
        ("容缺后补", [("容缺后补", "容缺受理", "激励")]),
        ("信易批", [("信易批", "告知承诺", "激励")]),
        ("即来即办", [("即来即办", "优先办理", "激励")]),
        ("减免材料", [("减免材料", "简化程序", "激励")]),
        ("无事不扰", [("无事不扰", "减少检查频次", "激励")]),  # not 无
        ("评标加分", [("评标加分", "信用加分", "激励")]),
        ("优先推荐评先评优", [("优先推荐评先评优", "优先推荐评先评优", "激励")]),
        ("列为重点监管对象，增加检查频次", [("列为重点监管对象", "列为重点监管对象", "惩戒")]),
        ("严格审查", [("严格审查", "从严审核", "惩戒")]),
        ("行业禁入", [("行业禁入", "限制市场准入", "惩戒")]),
        ("拒绝参与政府采购活动", [("拒绝参与政府采购活动", "限制参与政府采购", "惩戒")]),
        ("重新评定资质", [("重新评定资质", "撤销或限制资质", "惩戒")]),
        ("取消评优资格", [("取消评优资格", "限制评先评优", "惩戒")]),
        ("限制新增项目审批", [("限制新增项目审批", "限制新增项目审批", "惩戒")]),
        ("不予办理。", [("不予办理", "不予办理", "惩戒")]),  # 。 separates sentences
        ("容缺受理/告知承诺",
         [("容缺受理", "容缺受理", "激励"), ("告知承诺", "告知承诺", "激励")]),
        ("从严审核；限制参与政府采购\n限制财政资金支持",
         [("从严审核", "从严审核", "惩戒"), ("限制参与政府采购", "限制参与政府采购", "惩戒"),
          ("限制财政资金支持", "限制财政资金支持", "惩戒")]),
        ("开辟绿色通道并容缺受理",
         [("开辟绿色通道并容缺受理", "绿色通道", "激励"), ("开辟绿色通道并容缺受理", "容缺受理", "激励")]),
        ("绿色通道、绿色通道", [("绿色通道", "绿色通道", "激励")]),
        ("专人上门服务", [("专人上门服务", "其他", "其他")]),
        ("专人上门服务，绿色通道",
         [("专人上门服务", "其他", "其他"), ("绿色通道", "绿色通道", "激励")]),
        ("无", [("无", *NONE)]),
        (" 无。", [("无。", *NONE)]),
        ("未采取", [("未采取", *NONE)]),
        ("未采取任何措施", [("未采取任何措施", *NONE)]),
        ("正常办理", [("正常办理", *NONE)]),
        ("—", [("—", *NONE)]),
        ("——", [("——", *NONE)]),
        ("-", [("-", *NONE)]),
        ("－", [("－", *NONE)]),
        ("/", [("/", *NONE)]),
        ("／", [("／", *NONE)]),
        ("N/A", [("N/A", *NONE)]),
        ("无，/", [("无", *NONE)]),
    ],
)
def test_map_measures(text, expected):
    assert map_measures(text) == [Measure(*m) for m in expected]


def test_every_vocabulary_term_maps_to_itself():
    for table, kind in ((INCENTIVES, "激励"), (PUNISHMENTS, "惩戒")):
        for canonical, synonyms in table.items():
            for word in (canonical, *synonyms):
                assert map_measures(word) == [Measure(word, canonical, kind)], word


@pytest.mark.parametrize(
    "text, expected",
    [
        ("经查询信用中国，无失信记录", ["信用中国"]),
        ("信用中国（河北）", ["信用中国"]),
        ("信用中国(河北)网站查询", ["信用中国"]),
        ("信用中国（石家庄）", ["信用石家庄"]),
        ("信用中国（河北石家庄）", ["信用石家庄"]),
        ("信用石家庄", ["信用石家庄"]),
        ("查询信用石家庄、信用中国", ["信用中国", "信用石家庄"]),  # stable order, not text order
        ("中国政府采购网", ["政府采购网"]),
        ("河北省政府采购网", ["政府采购网"]),
        ("政府采购网", ["政府采购网"]),
        ("国家企业信用信息公示系统", ["国家企业信用信息公示系统"]),
        ("企业信用信息公示系统", ["国家企业信用信息公示系统"]),
        ("公示系统", ["国家企业信用信息公示系统"]),
        ("中国执行信息公开网", ["中国执行信息公开网"]),
        ("执行信息公开网", ["中国执行信息公开网"]),
        ("通过“信用中国”、中国执行信息公开网、国家企业信用信息公示系统及中国政府采购网查询，信用中国无记录",
         ["信用中国", "政府采购网", "国家企业信用信息公示系统", "中国执行信息公开网"]),
        ("信用 中国", ["信用中国"]),
        ("查询信用报告", []),
        ("政府采购严重违法失信行为记录名单", []),  # a list, not the 政府采购网
        ("", []),
    ],
)
def test_detect_channels(text, expected):
    assert detect_channels(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("非失信被执行人", ["失信被执行人"]),
        ("未列入失信被执行人名单", ["失信被执行人"]),
        ("重大税收违法失信主体", ["重大税收违法失信主体"]),
        ("重大税收违法案件当事人名单", ["重大税收违法失信主体"]),
        ("政府采购严重违法失信行为记录名单", ["政府采购严重违法失信行为记录名单"]),
        ("未列入政府采购严重违法失信行为记录名单、失信被执行人、重大税收违法失信主体",
         ["失信被执行人", "重大税收违法失信主体", "政府采购严重违法失信行为记录名单"]),
        ("无不良信用记录", []),
        ("", []),
    ],
)
def test_detect_lists(text, expected):
    assert detect_lists(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("政府采购供应商资格审查", "政府采购"),
        ("政府采购项目招标", "政府采购"),  # 政府采购 before 招标投标
        ("供应商入围", "政府采购"),
        ("工程建设项目招标投标", "招标投标"),
        ("评标专家抽取", "招标投标"),
        ("中标候选人公示", "招标投标"),
        ("招投标监管", "招标投标"),
        ("建筑业企业资质核准", "资质审核认定、评优评级"),  # 资质 before 行政审批's 核准
        ("高新技术企业认定", "资质审核认定、评优评级"),
        ("纳税信用等级评定", "资质审核认定、评优评级"),
        ("文明单位评选表彰", "资质审核认定、评优评级"),
        ("评先评优", "资质审核认定、评优评级"),
        ("企业设立登记", "市场准入"),  # 市场准入 before 行政审批's 登记
        ("营业执照办理", "市场准入"),
        ("药品零售企业开业", "市场准入"),
        ("市场准入", "市场准入"),
        ("食品经营许可证核发", "行政审批"),
        ("建设工程规划许可", "行政审批"),
        ("不动产登记", "行政审批"),
        ("排污许可备案", "行政审批"),
        ("行政审批", "行政审批"),
        ("信用修复", None),
        ("", None),
    ],
)
def test_detect_field(text, expected):
    assert detect_field(text) == expected


def test_vocabularies_are_plain_data():
    for table in (INCENTIVES, PUNISHMENTS, CHANNELS, LISTS, FIELDS):
        assert table and all(isinstance(k, str) and isinstance(v, tuple) for k, v in table.items())
    assert list(FIELDS) == ["政府采购", "招标投标", "资质审核认定、评优评级", "市场准入", "行政审批"]


words = st.sampled_from([w for t in (INCENTIVES, PUNISHMENTS) for c, s in t.items() for w in (c, *s)]
                        + ["无", "/", "—", "未采取", "其他措施", "“", "，", "\n"])


@given(st.one_of(st.text(), st.lists(st.one_of(words, st.text(max_size=3))).map("".join)))
def test_map_measures_never_raises_and_keeps_raw(text):
    measures = map_measures(text)
    for m in measures:
        assert m.raw and m.raw in text
        assert m.kind in ("激励", "惩戒", "无", "其他")
        assert m.kind != "无" or m.canonical == "无"
    if not text.strip():
        assert measures == []
    keys = [(m.canonical, m.raw) if m.kind == "其他" else m.canonical for m in measures]
    assert len(keys) == len(set(keys))  # no duplicates


@given(st.text())
def test_detectors_never_raise(text):
    assert set(detect_channels(text)) <= set(CHANNELS)
    assert set(detect_lists(text)) <= set(LISTS)
    assert detect_field(text) in (None, *FIELDS)


@pytest.mark.parametrize("text", [
    "经信用中国、中国执行信息公开网查询，该公司列入失信被执行人", "查询信用石家庄，无不良记录", "", "重大税收违法案件当事人 政府采购网",
    "信用中国 严重违法失信名单", "列入政府采购严重违法失信行为记录名单",
])
def test_channels_and_lists_at_once_equal_each_alone(text):
    from mailbot.vocabulary import detect_channels, detect_channels_and_lists, detect_lists

    assert detect_channels_and_lists(text) == (detect_channels(text), detect_lists(text))
