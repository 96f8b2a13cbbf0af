"""统一社会信用代码 (GB 32100-2015) and 居民身份证号 (GB 11643-1999): check, find, mask.

A wrong check character is a typing mistake the sender can fix, so every check returns a short
Chinese sentence naming the position. ID numbers are personal data: `mask_ids` hides them
before text leaves for anyone but the sender. Old 15-digit ID numbers are not recognised.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, Z, S, V
USCC_FORBIDDEN = "IOZSV"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK_CHARS = "10X98765432"  # indexed by sum % 11

_ID_SHAPE = re.compile(r"\d{17}[\dX]")
# 18 code characters that are not part of a longer run of letters and digits.
_CANDIDATE = re.compile(r"(?<![0-9A-Z])[0-9A-Z]{18}(?![0-9A-Z])")
# ... or written in groups with single spaces inside (9135 0100 M000 100Y43; a full-width space
# folds to one too): then not glued by a space to more letters or digits on either side.
# Such a run is only taken for a code when it has a code's shape (an ID number's digits, or a
# USCC's alphabet with the six-digit region code in place): "ROOM 1203 BUILDING A5" is an address.
_SPACED = re.compile(r"(?<![0-9A-Z])(?<![0-9A-Z] )[0-9A-Z](?: ?[0-9A-Z]){17}(?! ?[0-9A-Z])")
_USCC_SHAPE = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}")


@dataclass(frozen=True)
class Code:
    """A code found in free text; `start`/`end` index the original text, `value` is normalised."""

    kind: Literal["uscc", "id"]
    value: str
    start: int
    end: int
    problem: str | None


def _clean(code: object) -> str:
    """Full-width to half-width, lower to upper case, surrounding spaces dropped."""
    return unicodedata.normalize("NFKC", str(code)).strip().upper()


def uscc_check_char(first17: str) -> str:
    """The 18th character of a USCC whose first 17 characters are `first17`."""
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def id_check_char(first17: str) -> str:
    """The 18th character of an ID number whose first 17 digits are `first17`."""
    return ID_CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, ID_WEIGHTS)) % 11]


def uscc_check(code: str) -> str | None:
    """None when `code` is a valid 统一社会信用代码, else what is wrong, in Chinese."""
    s = _clean(code)
    if len(s) != 18:
        return f"应为18位，实为{len(s)}位"
    for pos, c in enumerate(s, start=1):
        if c in USCC_FORBIDDEN:
            return f"第{pos}位“{c}”不是统一社会信用代码允许的字符（不含I、O、Z、S、V）"
        if c not in USCC_ALPHABET:
            return f"第{pos}位“{c}”不是统一社会信用代码允许的字符（只能是数字或大写字母）"
    expected = uscc_check_char(s[:17])
    if s[17] != expected:
        return f"第18位校验码应为“{expected}”，实为“{s[17]}”"
    return None


def id_check(number: str) -> str | None:
    """None when `number` is a valid 18-digit 居民身份证号, else what is wrong, in Chinese.

    The birth date (digits 7-14) must exist and not be before 1900; it is not compared with
    today, so the answer never depends on the clock.
    """
    s = _clean(number)
    if len(s) != 18:
        hint = "（15位的旧身份证号请改为18位）" if len(s) == 15 and s.isdigit() else ""
        return f"应为18位，实为{len(s)}位{hint}"
    for pos, c in enumerate(s[:17], start=1):
        if not ("0" <= c <= "9"):
            return f"第{pos}位“{c}”应为数字"
    if not ("0" <= s[17] <= "9" or s[17] == "X"):
        return f"第18位“{s[17]}”应为数字或X"
    birth = s[6:14]
    try:
        born = dt.date(int(birth[:4]), int(birth[4:6]), int(birth[6:]))
    except ValueError:
        return f"第7-14位出生日期“{birth}”不存在"
    if born.year < 1900:
        return f"第7-14位出生日期“{birth}”早于1900年"
    expected = id_check_char(s[:17])
    if s[17] != expected:
        return f"第18位校验码应为“{expected}”，实为“{s[17]}”"
    return None


def _fold(text: str) -> str:
    """Like `_clean` character by character, so positions in the result match `text`."""
    out = []
    for ch in text:
        n = unicodedata.normalize("NFKC", ch)
        out.append(n.upper() if len(n) == 1 and n.isascii() else ch)
    return "".join(out)


def _shaped(value: str) -> bool:
    return bool(_ID_SHAPE.fullmatch(value) or _USCC_SHAPE.fullmatch(value))


def find_codes(text: str) -> list[Code]:
    """Every 18-character USCC or ID number in `text`, valid or not, in order of appearance, also
    one written in groups with single spaces (its value then without them).

    17 digits + digit/X is an ID number, unless only the USCC check passes (a USCC may be all
    digits). Other 18-character runs of digits and capitals count as USCCs only when they hold
    at least one digit: a real USCC always has six (the region code), a long word has none.
    """
    if not text:
        return []
    folded = _fold(text)
    found: list[Code] = []
    matches = list(_CANDIDATE.finditer(folded))
    if " " in folded:
        taken = [(m.start(), m.end()) for m in matches]
        matches += [m for m in _SPACED.finditer(folded) if " " in m.group() and _shaped(m.group().replace(" ", ""))
                    and not any(s < m.end() and m.start() < e for s, e in taken)]
        matches.sort(key=lambda m: m.start())
    for m in matches:
        value = m.group().replace(" ", "")
        if _ID_SHAPE.fullmatch(value):
            problem = id_check(value)
            if problem is not None and uscc_check(value) is None:
                found.append(Code("uscc", value, m.start(), m.end(), None))
            else:
                found.append(Code("id", value, m.start(), m.end(), problem))
        elif any(c.isdigit() for c in value):
            found.append(Code("uscc", value, m.start(), m.end(), uscc_check(value)))
    return found


def mask_id(number: str) -> str:
    """`110105********002X`: keep the first 6 and last 4 characters, mask the rest."""
    s = _clean(number)
    if len(s) <= 10:
        return "*" * len(s)
    return s[:6] + "*" * (len(s) - 10) + s[-4:]


def mask_ids(text: str) -> str:
    """`text` with every ID number masked (valid or not), in place: as long as before, the spaces
    of a number written in groups kept; USCCs are not personal data."""
    out = text
    for code in reversed(find_codes(text)):
        if code.kind == "id":
            masked, digits = [], iter(mask_id(code.value))
            for ch in out[code.start: code.end]:
                masked.append(ch if _fold(ch) == " " else next(digits))
            out = out[: code.start] + "".join(masked) + out[code.end :]
    return out
