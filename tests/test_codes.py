"""Golden cases for 统一社会信用代码 and 居民身份证号, with codes computed independently here."""
from __future__ import annotations

import datetime as dt
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailbot.codes import Code, find_codes, id_check, mask_id, mask_ids, uscc_check

# Independent re-implementation of the two check characters (domain.md, Codes), so the tests
# do not trust the module they test.
ALPHA = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def with_uscc_check(first17: str) -> str:
    total = sum(ALPHA.index(c) * w for c, w in
                zip(first17, [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]))
    return first17 + ALPHA[(31 - total % 31) % 31]


def with_id_check(first17: str) -> str:
    total = sum(int(c) * w for c, w in zip(first17, [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]))
    return first17 + "10X98765432"[total % 11]


def test_helpers_agree_with_domain_samples():
    assert with_uscc_check("91350100M000100Y4") == "91350100M000100Y43"
    assert with_uscc_check("91110000802100433") == "91110000802100433B"
    assert with_id_check("11010519491231002") == "11010519491231002X"


VALID_USCC = [
    "91350100M000100Y43",
    "91110000802100433B",
    with_uscc_check("92130129MA0C12345"),  # 个体工商户
    with_uscc_check("11130129000012345"),  # 机关
    with_uscc_check("12130129401234567"),  # 事业单位
    with_uscc_check("91130129MA0ABCDEF"),
    with_uscc_check("Y1130129MA0GHJKL0"),
]
VALID_ID = [
    "11010519491231002X",
    with_id_check("13012919800229123"),  # leap day
    with_id_check("13012920001231001"),
    with_id_check("13012919000101001"),
]


@pytest.mark.parametrize("code", VALID_USCC)
def test_valid_uscc(code):
    assert uscc_check(code) is None
    assert uscc_check(code.lower()) is None
    assert uscc_check(" " + code.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)}) + " ") is None


@pytest.mark.parametrize("number", VALID_ID)
def test_valid_id(number):
    assert id_check(number) is None
    assert id_check(number.lower()) is None


@pytest.mark.parametrize(
    "code, message",
    [
        ("91350100M000100Y44", "第18位校验码应为“3”，实为“4”"),
        ("91110000802100433C", "第18位校验码应为“B”，实为“C”"),
        ("91350100M000100Y4", "应为18位，实为17位"),
        ("91350100M000100Y433", "应为18位，实为19位"),
        ("", "应为18位，实为0位"),
        ("9135I100M000100Y43", "第5位“I”不是统一社会信用代码允许的字符（不含I、O、Z、S、V）"),
        ("91350100M0O0100Y43", "第11位“O”不是统一社会信用代码允许的字符（不含I、O、Z、S、V）"),
        ("91350100M000100Y4Z", "第18位“Z”不是统一社会信用代码允许的字符（不含I、O、Z、S、V）"),
        ("91350100M000-00Y43", "第13位“-”不是统一社会信用代码允许的字符（只能是数字或大写字母）"),
    ],
)
def test_invalid_uscc(code, message):
    assert uscc_check(code) == message


def test_uscc_one_character_changed_is_caught():
    code = "91350100M000100Y43"
    for pos in range(17):
        for c in ALPHA:
            if c != code[pos]:
                changed = code[:pos] + c + code[pos + 1:]
                assert uscc_check(changed) is not None, changed


@pytest.mark.parametrize(
    "number, message",
    [
        ("110105194912310021", "第18位校验码应为“X”，实为“1”"),
        ("11010519491231012X", "第18位校验码应为“6”，实为“X”"),
        (with_id_check("11010519490230002")[:17] + "0", "第7-14位出生日期“19490230”不存在"),
        ("110105194902300021", "第7-14位出生日期“19490230”不存在"),
        ("110105194913010021", "第7-14位出生日期“19491301”不存在"),
        ("110105189912310021", "第7-14位出生日期“18991231”早于1900年"),
        ("1101051949123100", "应为18位，实为16位"),
        ("110105491231002", "应为18位，实为15位（15位的旧身份证号请改为18位）"),
        ("1101051949123100211", "应为18位，实为19位"),
        ("11010519491231A02X", "第15位“A”应为数字"),
        ("11010519491231002A", "第18位“A”应为数字或X"),
    ],
)
def test_invalid_id(number, message):
    assert id_check(number) == message


def test_id_one_digit_changed_is_caught():
    number = "11010519491231002X"
    for pos in range(17):
        for c in "0123456789":
            if c != number[pos]:
                changed = number[:pos] + c + number[pos + 1:]
                assert id_check(changed) is not None, changed


@pytest.mark.parametrize(
    "text, expected",
    [
        ("某公司（91350100M000100Y43）", [Code("uscc", "91350100M000100Y43", 4, 22, None)]),
        ("张三 11010519491231002X", [Code("id", "11010519491231002X", 3, 21, None)]),
        ("统一社会信用代码：91110000802100433B",
         [Code("uscc", "91110000802100433B", 9, 27, None)]),
        ("张三11010519491231002x身份证", [Code("id", "11010519491231002X", 2, 20, None)]),
        ("李四１１０１０５１９４９１２３１００２ｘ", [Code("id", "11010519491231002X", 2, 20, None)]),
        ("某公司（９１３５０１００ｍ０００１００ｙ４３）",
         [Code("uscc", "91350100M000100Y43", 4, 22, None)]),
        ("某公司91350100M000100Y44",
         [Code("uscc", "91350100M000100Y44", 3, 21, "第18位校验码应为“3”，实为“4”")]),
        ("王五110105194902300021",
         [Code("id", "110105194902300021", 2, 20, "第7-14位出生日期“19490230”不存在")]),
        # inside a longer run of letters and digits: not a code
        ("ABC91350100M000100Y43", []),
        ("91350100M000100Y43X", []),
        ("1101051949123100211", []),
        # too short, 15-digit old ID numbers, and long words are ignored
        ("91350100M000100Y4", []),
        ("110105491231002", []),
        ("ABCDEFGHJKLMNPQRTU", []),
        ("", []),
        ("本月无使用信用记录和信用报告情况", []),
        ("甲 91350100M000100Y43、乙 11010519491231002X",
         [Code("uscc", "91350100M000100Y43", 2, 20, None),
          Code("id", "11010519491231002X", 23, 41, None)]),
    ],
)
def test_find_codes(text, expected):
    assert find_codes(text) == expected


def test_all_digit_uscc_is_not_taken_for_an_id():
    # a USCC may be all digits; when only the USCC check passes it is a USCC
    code = next(c for c in (with_uscc_check(f"121301294012{n:05}") for n in range(100))
                if c.isdigit() and id_check(c) is not None)
    [found] = find_codes(f"某事业单位（{code}）")
    assert found.kind == "uscc" and found.problem is None


def test_mask_id():
    assert mask_id("11010519491231002X") == "110105********002X"
    assert mask_id("11010519491231002x") == "110105********002X"
    assert mask_id("１１０１０５１９４９１２３１００２Ｘ") == "110105********002X"
    assert mask_id("12345") == "*****"


def test_mask_ids_hides_ids_but_not_usccs():
    text = "申请人张三（11010519491231002X），公司91350100M000100Y43；错号110105194902300021"
    assert mask_ids(text) == (
        "申请人张三（110105********002X），公司91350100M000100Y43；错号110105********0021")
    assert mask_ids("") == ""
    assert mask_ids("no codes here") == "no codes here"


# Chinese-like filler that cannot glue onto a code: nothing that folds to an ASCII letter/digit.
filler = st.text(
    alphabet=st.characters(categories=["Lo", "Zs", "Po"]).filter(
        lambda ch: not any(c.isascii() and c.isalnum() for c in unicodedata.normalize("NFKC", ch))),
    min_size=1, max_size=20)  # at least one character, or two codes would run together
usccs = st.text(alphabet=ALPHA, min_size=17, max_size=17).filter(
    lambda s: any(c.isdigit() for c in s)).map(with_uscc_check)
ids = st.builds(
    lambda region, day, seq: with_id_check(f"{region}{day:%Y%m%d}{seq:03}"),
    st.from_regex(r"[1-8][0-9]{5}", fullmatch=True),
    st.dates(min_value=dt.date(1900, 1, 1)),
    st.integers(0, 999),
)


@given(st.lists(st.tuples(filler, st.one_of(usccs, ids)), max_size=4), filler)
def test_find_codes_finds_every_embedded_code(pieces, tail):
    text = "".join(f + c for f, c in pieces) + tail
    found = find_codes(text)
    assert [c.value for c in found] == [c for _, c in pieces]
    for c in found:
        assert c.problem is None
        assert text[c.start:c.end] == c.value
    masked = mask_ids(text)
    assert len(masked) == len(text)
    for c in found:
        if c.kind == "id":
            assert c.value not in masked


@given(st.text())
def test_codes_never_raise(text):
    for c in find_codes(text):
        assert c.kind in ("uscc", "id") and 0 <= c.start < c.end <= len(text)
    assert len(mask_ids(text)) == len(text)
    uscc_check(text)
    id_check(text)


@pytest.mark.parametrize("text, value, kind, problem", [
    ("福源公司（9135 0100 M000 100Y43）", "91350100M000100Y43", "uscc", None),
    ("９１１１　００００　８０２１　００４３３ｂ", "91110000802100433B", "uscc", None),  # full-width, U+3000, lower case
    ("张三 1101 0519 4912 3100 2x", "11010519491231002X", "id", None),
    ("110105 19490230 0021", "110105194902300021", "id", "第7-14位出生日期“19490230”不存在"),
    ("丙公司 9135 0100 M000 100Y44 已办结", "91350100M000100Y44", "uscc", "第18位校验码应为“3”，实为“4”"),
])
def test_codes_written_in_groups_are_found_and_checked(text, value, kind, problem):
    [code] = find_codes(text)
    assert (code.value, code.kind, code.problem) == (value, kind, problem)
    assert text[code.start:code.end].replace(" ", "").replace("\u3000", "") != ""


@pytest.mark.parametrize("text", [
    "ROOM 1203 BUILDING A5",  # an address: no code's shape
    "公司 91350100M000100Y43 2", "A 91350100M000100Y43",  # a space does not glue another character on
    "9135  0100 M000 100Y43",  # two spaces in a row are no group separator
])
def test_spaced_runs_that_are_no_code(text):
    assert [c.value for c in find_codes(text) if " " in text[c.start:c.end]] == []


def test_a_spaced_id_number_is_masked_in_place():
    assert mask_ids("张三 1101 0519 4912 3100 2x 已核实") == "张三 1101 05** **** **00 2X 已核实"
    assert mask_ids("李四１１０１０５　１９４９１２３１　００２Ｘ") == "李四110105　********　002X"
