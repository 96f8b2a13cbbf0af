"""Text for a terminal: widths counted in cells (a Chinese character takes two) and line breaks
a Chinese reader expects, so help texts, `mailbot check` and the demo are shown whole, never cut.

Chinese may break between any two characters, but not before closing punctuation nor after
opening punctuation (避头尾); runs of Latin letters, digits and signs (2026-11-05, an address, a
file name) break only at spaces, unless one is wider than a whole line.
"""
from __future__ import annotations

import re
import unicodedata

_TOKENS = re.compile(r"[!-~]+|\s+|.")  # an ASCII word, a run of spaces, or one other character
_NO_LINE_START = frozenset("，。、；：？！）》」』】”’…—")
_NO_LINE_END = frozenset("（《「『【“‘")


def cells(text: str) -> int:
    """Terminal columns `text` takes."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pieces(token: str, width: int) -> list[str]:
    """A token no wider than a line, or a too-long ASCII word cut into line-wide pieces."""
    if len(token) <= width or not token.isascii():
        return [token]
    return [token[i:i + width] for i in range(0, len(token), width)]


_TAIL = re.compile(r"[!-~]+$")


def _last_unit(line: str) -> int:
    """Where the last piece of `line` that may start a line begins (an ASCII word or one
    character, with any closing marks after it); 0 when that is the whole line."""
    cut = len(line)
    while cut > 0:
        word = _TAIL.search(line[:cut])
        cut = word.start() if word else cut - 1
        if line[cut] not in _NO_LINE_START:
            break
    return cut


def wrap(text: str, width: int) -> list[str]:
    """`text` (one paragraph; its runs of white space count as one space) as lines of at most
    `width` cells (a longer one only where a single character is wider than the line)."""
    width = max(width, 4)
    lines: list[str] = []
    line, used = "", 0
    for token in _TOKENS.findall(text):
        if token.isspace():
            if line:
                line, used = line + " ", used + 1
            continue
        for piece in _pieces(token, width):
            size = cells(piece)
            if line and used + size > width:
                carry = ""
                if piece in _NO_LINE_START:  # a closing mark takes the word before it along
                    cut = _last_unit(line.rstrip())
                    if cut > 0:
                        carry, line = line.rstrip()[cut:], line.rstrip()[:cut]
                while line and line[-1] in _NO_LINE_END:  # an opening mark goes with what it opens
                    carry, line = line[-1] + carry, line[:-1]
                if line.strip():
                    lines.append(line.rstrip())
                    line, used = carry, cells(carry)
                else:
                    line = carry
            line, used = line + piece, used + size
    if line.strip():
        lines.append(line.rstrip())
    return lines


def paragraphs(text: str, width: int) -> list[str]:
    """A multi-line text (a mail body) wrapped line by line; blank lines and the indentation a
    line starts with are kept."""
    out = []
    for raw in text.splitlines():
        indent = raw[: len(raw) - len(raw.lstrip())]
        if not raw.strip():
            out.append("")
            continue
        out += [indent + line for line in wrap(raw.strip(), width - cells(indent))]
    return out


def hanging(prefix: str, text: str, width: int) -> list[str]:
    """`prefix` then `text` wrapped, the following lines indented as far as the prefix."""
    lines = wrap(text, width - cells(prefix)) or [""]
    return [prefix + lines[0]] + [" " * cells(prefix) + line for line in lines[1:]]
