"""IMAP FETCH responses as data, and BODYSTRUCTURE as the attachments a mail carries.

imaplib hands a FETCH back as text with literals cut out ({n} then the bytes); this reads it
as the RFC 3501 grammar says: atoms, quoted strings, literals, NIL and parenthesised lists.
Attachment names come as the sender's client wrote them (RFC 2047 words, RFC 2231 with a
charset, continuations, raw 8-bit bytes) and are decoded the way mailbot.message does.
"""
from __future__ import annotations

import re
import urllib.parse

from . import message
from .claim import Part

_TOKEN = re.compile(rb'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\{(\d+)\}\s*$|([^\s()"]+(?:\[[^\]]*\])?(?:<[\d.]+>)?))', re.S)


def _tokens(data: list):
    """Tokens of a FETCH response list: b"(", b")", ("s", bytes) for strings and literals,
    ("a", bytes) for atoms."""
    for item in data:
        text, literal = (item[0], item[1]) if isinstance(item, tuple) else (item, None)
        text = text or b""
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None or match.end() == pos:
                break
            pos = match.end()
            if match.group(1):
                yield b"("
            elif match.group(2):
                yield b")"
            elif match.group(3) is not None:
                yield ("s", re.sub(rb"\\(.)", rb"\1", match.group(3)))
            elif match.group(4) is not None:
                yield ("s", literal if literal is not None else b"")
                literal = None
            elif match.group(5):
                yield ("a", match.group(5))
        if literal is not None:  # a literal whose {n} the pattern missed: keep it as a string
            yield ("s", literal)


def _value(token):
    kind, raw = token
    if kind == "a" and raw.upper() == b"NIL":
        return None
    return raw


def _read(tokens):
    """One list (after its opening parenthesis has been read)."""
    out = []
    for token in tokens:
        if token == b"(":
            out.append(_read(tokens))
        elif token == b")":
            return out
        else:
            out.append(_value(token))
    return out


def responses(data: list) -> list[dict[str, object]]:
    """{item name: value} per message of a FETCH response (`N (UID 5 RFC822.SIZE 12 ...)`)."""
    tokens = _tokens(data)
    out = []
    for token in tokens:
        if token != b"(":
            continue  # the sequence number before each message's list
        fields = _read(tokens)
        item = {}
        for i in range(0, len(fields) - 1, 2):
            name = fields[i]
            if isinstance(name, bytes):
                item[name.decode("ascii", "replace").upper()] = fields[i + 1]
        out.append(item)
    return out


def _text(value) -> str:
    if not isinstance(value, bytes):
        return ""
    return message.decode_words(value.decode("utf-8", "surrogateescape"))


def _params(value) -> dict[str, str]:
    """A parameter list, RFC 2231 continuations joined and decoded, RFC 2047 words decoded."""
    if not isinstance(value, list):
        return {}
    raw = {}
    for i in range(0, len(value) - 1, 2):
        if isinstance(value[i], bytes) and isinstance(value[i + 1], bytes):
            raw[value[i].decode("ascii", "replace").lower()] = value[i + 1]
    out: dict[str, str] = {}
    pieces: dict[str, list[tuple[int, bool, bytes]]] = {}
    for key, data in raw.items():
        match = re.fullmatch(r"([^*]+)\*(?:(\d+)\*?)?", key)
        if match and (match.group(2) is not None or key.endswith("*")):
            pieces.setdefault(match.group(1), []).append((int(match.group(2) or 0), key.endswith("*"), data))
        else:
            out[key] = _text(data)
    for name, chunks in pieces.items():
        chunks.sort()
        label, joined = "", b""
        for n, encoded, data in chunks:
            if n == 0 and encoded and data.count(b"'") >= 2:
                charset, _lang, data = data.split(b"'", 2)
                label = charset.decode("ascii", "replace")
            joined += urllib.parse.unquote_to_bytes(data) if encoded else data
        out[name] = message.decoded(joined, label or "utf-8").strip()
    return out


def parts(structure, depth: int = 0) -> list[Part]:
    """The attachments of a BODYSTRUCTURE, nested messages included (as mailbot.message finds them)."""
    if not isinstance(structure, list) or not structure or depth > 10:
        return []
    if isinstance(structure[0], list):  # multipart: the parts, then the subtype
        return [p for sub in structure if isinstance(sub, list) for p in parts(sub, depth + 1)]
    ctype = f"{_text(structure[0])}/{_text(structure[1] if len(structure) > 1 else b'')}".lower()
    params = _params(structure[2] if len(structure) > 2 else None)
    if ctype == "message/rfc822":
        inner = structure[8] if len(structure) > 8 else None
        return parts(inner, depth + 1)
    disposition_at = 9 if ctype.startswith("text/") else 8
    disposition = structure[disposition_at] if len(structure) > disposition_at else None
    kind, dparams = "", {}
    if isinstance(disposition, list) and disposition:
        kind = _text(disposition[0]).lower()
        dparams = _params(disposition[1] if len(disposition) > 1 else None)
    name = dparams.get("filename") or params.get("name") or ""
    if name or kind == "attachment" or ctype.startswith("application/"):
        return [Part(name.strip(), ctype)]
    return []
