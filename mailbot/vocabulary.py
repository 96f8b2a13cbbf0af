"""The office's controlled vocabularies, as data, and the functions that map free text to them.

The tables come first so the credit office can read and extend them: add a synonym to the
tuple of its canonical term. Matching ignores spaces, quote marks and full-width forms, and a
longer synonym wins over a shorter one it contains (信用中国（石家庄） is not also 信用中国).
"""
from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

# ---------------------------------------------------------------- vocabulary (data) ----------

# 守信激励: canonical term -> synonyms (the canonical term itself always matches).
INCENTIVES: dict[str, tuple[str, ...]] = {
    "绿色通道": ("开辟绿色通道", "便利服务"),
    "容缺受理": ("容缺办理", "容缺后补"),
    "告知承诺": ("信用承诺", "承诺制审批", "信易批"),
    "优先办理": ("优先受理", "即来即办"),
    "简化程序": ("简化手续", "减免材料"),
    "减少检查频次": ("优化抽查和检查频次", "降低抽查比例", "无事不扰"),
    "信用加分": ("评标加分",),
    "优先推荐评先评优": (),
}

# 失信惩戒: canonical term -> synonyms.
PUNISHMENTS: dict[str, tuple[str, ...]] = {
    "从严审核": ("严格审查", "从严审批"),
    "列为重点监管对象": ("增加检查频次",),
    "限制市场准入": ("市场禁入", "行业禁入"),
    "限制参与招投标": ("限制参与招标投标",),
    "限制参与政府采购": ("拒绝参与政府采购活动",),
    "限制财政资金支持": (),
    "撤销或限制资质": ("重新评定资质",),
    "限制评先评优": ("取消评优资格",),
    "限制新增项目审批": (),
    "不予办理": (),
}

# "No measure": a whole cell (or part) equal to one of these ...
NONE_EXACT: tuple[str, ...] = ("无", "暂无", "没有", "否", "/", "N/A", "NA")
# ... or containing one of these (checked only when no measure above matched).
NONE_PHRASES: tuple[str, ...] = ("未采取", "正常办理", "无措施", "不涉及")

# Query channels: canonical name -> other names seen in checklists.
CHANNELS: dict[str, tuple[str, ...]] = {
    "信用中国": ("信用中国（河北）",),
    "信用石家庄": ("信用中国（石家庄）", "信用中国（河北石家庄）"),
    "政府采购网": ("中国政府采购网", "河北省政府采购网"),
    "国家企业信用信息公示系统": ("企业信用信息公示系统", "公示系统"),
    "中国执行信息公开网": ("执行信息公开网",),
}

# Lists named in the notice: canonical name -> other names (including former names).
LISTS: dict[str, tuple[str, ...]] = {
    "失信被执行人": (),
    "重大税收违法失信主体": ("重大税收违法案件当事人",),
    "政府采购严重违法失信行为记录名单": ("政府采购严重违法失信行为记录",),
}

# The notice's five fields -> keywords in a matter name. Order is precedence: the first field
# with a keyword wins. The specific fields come first because 行政审批's words (许可, 核准,
# 登记 ...) occur in almost every matter name:
#   政府采购供应商资格审查 -> 政府采购 (not 行政审批's 审查-like words);
#   政府采购招标 -> 政府采购 before 招标投标;
#   建筑业企业资质核准 -> 资质… before 行政审批's 核准;
#   企业设立登记 -> 市场准入 before 行政审批's 登记;
#   食品经营许可证核发 -> 行政审批 (no earlier field's keyword).
FIELDS: dict[str, tuple[str, ...]] = {
    "政府采购": ("政府采购", "采购", "供应商"),
    "招标投标": ("招标", "投标", "招投标", "评标", "中标", "开标"),
    "资质审核认定、评优评级": ("资质", "认定", "评优", "评先", "评级", "评定", "评选", "表彰", "等级"),
    "市场准入": ("准入", "禁入", "开业", "设立", "营业执照"),
    "行政审批": ("许可", "审批", "核发", "备案", "登记", "核准"),
}

KIND_INCENTIVE, KIND_PUNISHMENT, KIND_NONE, KIND_OTHER = "激励", "惩戒", "无", "其他"

# ---------------------------------------------------------------- matching -------------------


@dataclass(frozen=True)
class Measure:
    """One measure named in the 措施 cell: the sender's words and what they map to."""

    raw: str
    canonical: str
    kind: str  # 激励, 惩戒, 无 or 其他


_IGNORED = re.compile(r"[\s“”\"'‘’「」『』]")
_PLACEHOLDER = re.compile(r"[-—–―−─~_/\\.。…·]+")  # a cell of dashes or slashes means "none"
_SPLIT = re.compile(r"[、，,;；/／。\r\n\t]")
_TRIM = "。.!！?？:："


@functools.lru_cache(maxsize=16384)  # one row's text is cleaned for channels and lists alike
def _clean(text: str) -> str:
    """NFKC (full-width to half-width), then drop spaces and quote marks."""
    return _IGNORED.sub("", unicodedata.normalize("NFKC", text))


def _table(*groups: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """(cleaned synonym, canonical) pairs, longest synonym first."""
    pairs = {(_clean(s), canon) for g in groups for canon, syns in g.items() for s in (canon, *syns)}
    return sorted(pairs, key=lambda p: (-len(p[0]), p[0]))


_MEASURE_TABLE = _table(INCENTIVES, PUNISHMENTS)
_MEASURE_KIND = {**{c: KIND_INCENTIVE for c in INCENTIVES}, **{c: KIND_PUNISHMENT for c in PUNISHMENTS}}
_CHANNEL_TABLE = _table(CHANNELS)
_LIST_TABLE = _table(LISTS)
_NONE_EXACT = {_clean(w).upper() for w in NONE_EXACT}
_FIELD_KEYWORDS = {field: tuple(_clean(k) for k in keywords) for field, keywords in FIELDS.items()}


def _scan(text: str, table: list[tuple[str, str]]) -> list[tuple[int, str]]:
    """(position, canonical) of every non-overlapping synonym in cleaned `text`, by position."""
    taken = [False] * len(text)
    hits = []
    for syn, canon in table:
        start = text.find(syn)
        while start != -1:
            end = start + len(syn)
            if not any(taken[start:end]):
                taken[start:end] = [True] * len(syn)
                hits.append((start, canon))
            start = text.find(syn, start + 1)
    return sorted(hits)


def _is_none(cleaned: str) -> bool:
    return cleaned.upper() in _NONE_EXACT or bool(_PLACEHOLDER.fullmatch(cleaned))


def map_measures(text: str) -> list[Measure]:
    """Map the 使用的激励或惩戒措施 cell to measures; raw words are kept, unknown ones as 其他."""
    if not text or not text.strip():
        return []
    whole = text.strip()
    if _is_none(_clean(whole).strip(_TRIM)) or _is_none(_clean(whole)):
        return [Measure(whole, KIND_NONE, KIND_NONE)]
    out: list[Measure] = []
    seen: set[tuple[str, str]] = set()

    def add(m: Measure) -> None:
        key = (m.canonical, m.raw if m.kind == KIND_OTHER else "")
        if key not in seen:
            seen.add(key)
            out.append(m)

    for part in _SPLIT.split(text):
        raw = part.strip()
        cleaned = _clean(raw).strip(_TRIM)
        if not cleaned:
            continue
        hits = _scan(cleaned, _MEASURE_TABLE)
        for _, canon in hits:
            add(Measure(raw, canon, _MEASURE_KIND[canon]))
        if hits:
            continue
        if _is_none(cleaned) or any(p in cleaned for p in NONE_PHRASES):
            add(Measure(raw, KIND_NONE, KIND_NONE))
        else:
            add(Measure(raw, KIND_OTHER, KIND_OTHER))
    return out


def _detect(text: str, table: list[tuple[str, str]], order: dict[str, tuple[str, ...]]) -> list[str]:
    if not text:
        return []
    found = {canon for _, canon in _scan(_clean(text), table)}
    return [canon for canon in order if canon in found]


def detect_channels(text: str) -> list[str]:
    """Query channels named in the 使用情况 cell, canonical names in the order of CHANNELS."""
    return _detect(text, _CHANNEL_TABLE, CHANNELS)


def detect_lists(text: str) -> list[str]:
    """Named lists (失信被执行人 ...) in free text, canonical names in the order of LISTS."""
    return _detect(text, _LIST_TABLE, LISTS)


_ANY_LIST = re.compile("|".join(re.escape(syn) for syn, _ in _LIST_TABLE))


def detect_channels_and_lists(text: str) -> tuple[list[str], list[str]]:
    """detect_channels and detect_lists at once, `text` cleaned once, and the lists only looked for
    one by one where one of them is named at all (the row checker's hot path: most rows name none)."""
    if not text:
        return [], []
    cleaned = _clean(text)
    channels = {canon for _, canon in _scan(cleaned, _CHANNEL_TABLE)}
    lists = {canon for _, canon in _scan(cleaned, _LIST_TABLE)} if _ANY_LIST.search(cleaned) else set()
    return [c for c in CHANNELS if c in channels], [c for c in LISTS if c in lists]


def detect_field(text: str) -> str | None:
    """Which of the five fields a matter name belongs to, by FIELDS precedence; None if unknown."""
    if not text:
        return None
    cleaned = _clean(text)
    for field, keywords in _FIELD_KEYWORDS.items():
        if any(k in cleaned for k in keywords):
            return field
    return None
