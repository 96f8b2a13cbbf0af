"""Raw mail bytes -> who sent it, what it is, and which files it carries. Pure: no I/O.

Chinese mail clients name attachments every way there is: RFC 2231 in any charset, RFC 2047
words inside quoted parameters (Foxmail, Outlook), or raw 8-bit GBK. gb2312/gbk labels are
decoded as gb18030, their superset, so no character is lost.
"""
from __future__ import annotations

import email
import email.errors
import email.header
import email.headerregistry
import email.parser
import email.policy
import email.utils
import functools
import re
import urllib.parse
from dataclasses import dataclass, field, fields, replace
from email.message import EmailMessage


class _Lenient(email.policy.EmailPolicy):
    """email.policy.default, except that a header its parser fails on is kept as plain text.

    CPython's header parser raises on some malformed values (IndexError on a Message-ID of
    `<>`, UnicodeDecodeError on an RFC 2231 parameter in UTF-7 or HZ, ValueError on an address
    with an encoded CR/LF), from every accessor that reads the header: get, get_param,
    get_content_type, get_filename, walk, get_body."""

    def header_fetch_parse(self, name, value):
        if type(value) is str and len(value) <= _REMEMBERED:
            return _fetched(self, name, value)
        return self._fetch_parse(name, value)

    def _fetch_parse(self, name, value):
        try:
            return super().header_fetch_parse(name, value)
        except Exception:
            return re.sub(r"[\r\n]", "", value)


_REMEMBERED = 2000  # characters: a longer header value is parsed each time it is read


@functools.lru_cache(maxsize=32)
def _fetched(policy: _Lenient, name: str, value: str):
    """The header object for a header as it came (immutable): the email package parsed the
    Content-Type nine times for one mail (get_content_type, get_param, is_multipart ...), each
    header two or three times, half the time a mail's header glance took. The repeats come
    within one mail: the last 32 are enough (512 held 13 MB of parse trees in the daemon's
    three processes, bench_pipeline)."""
    return policy._fetch_parse(name, value)


class HeaderClasses(email.headerregistry.HeaderRegistry):
    """The email package's header registry, making each header class once: it built a new
    class (type(...)) for every header it parsed, a fifth of the time a mail's parse took."""

    def __init__(self):
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name):
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


_POLICY = _Lenient(max_line_length=998, header_factory=HeaderClasses())
_WIDE = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030",
         "euc-cn": "gb18030", "hz-gb-2312": "gb18030"}
_TRACE_HEADERS = ("return-path", "received", "delivered-to", "x-original-to")
_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")


@dataclass
class Attachment:
    filename: str
    content_type: str
    data: bytes
    forwarded: bool = False  # found inside an attached message/rfc822
    inline: bool = False  # a picture shown in the body (a Content-ID, not disposition attachment), not a file sent


@dataclass
class Mail:
    message_id: str
    sender: str  # the address, lower-case
    sender_name: str
    subject: str
    date: str
    in_reply_to: str
    references: list[str]
    headers: dict[str, str]  # lower-case name -> first value, for the classifier
    text: str  # the first text/plain (or text/html) body, for links and subject-like hints
    attachments: list[Attachment] = field(default_factory=list)
    is_report: bool = False  # a multipart/report (delivery status): a bounce
    quoted_ids: list[str] = field(default_factory=list)  # Message-IDs a bounce quotes: which mail failed
    diagnostic: str = ""  # a bounce's reason (Diagnostic-Code or Status)
    auth_results: list[str] = field(default_factory=list)  # every Authentication-Results header, top first
    sender_error: str = ""  # why From gives no single usable address: empty, several, invalid ("" when it does)
    from_header: str = ""  # the From header as it came, for the office to read when it is unusable
    null_return_path: bool = False  # `Return-Path: <>`: a delivery report whatever its From says


def charset(label: str | None) -> str:
    label = (label or "").strip().lower()
    return _WIDE.get(label, label) or "utf-8"


def decoded(data: bytes, label: str | None) -> str:
    """`data` in the charset a part declares; a label no decoder takes (x-unknown, base64, idna,
    undefined) raises LookupError or UnicodeError even with "replace": read those as GB18030."""
    try:
        return _no_surrogates(data.decode(charset(label), "replace"))
    except (LookupError, ValueError):
        return data.decode("gb18030", "replace")


def _no_surrogates(text: str) -> str:
    """UTF-7, unicode_escape and friends decode to lone surrogates, which no UTF-8 encoder (SMTP,
    SQLite) accepts: one in a subject made the receipt, so the whole commit, fail every time."""
    return re.sub("[\ud800-\udfff]", "\ufffd", text)


def _unmangle(text: str) -> str:
    """Recover raw 8-bit header bytes (kept as surrogates by the parser): UTF-8, else GB18030."""
    if not _has_8bit(text):
        return text
    raw = text.encode("utf-8", "surrogateescape")
    for enc in ("utf-8", "gb18030"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("gb18030", "replace")


_ESCAPED = re.compile(r"\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})")


def _unescape(chunk: bytes) -> str:
    """decode_header hands the text around encoded words back raw-unicode-escaped (回复 as
    \\u56de\\u590d); undo that, leaving a backslash the sender typed as it was."""
    def char(m: re.Match) -> str:
        code = int(m.group(1) or m.group(2), 16)
        return chr(code) if 0xff < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else m.group(0)
    return _ESCAPED.sub(char, chunk.decode("latin-1"))


def decode_words(text: str) -> str:
    """Decode RFC 2047 words anywhere in `text`, also where RFC 2231 said they may not be."""
    text = _unmangle(text)
    if "=?" not in text:
        return _no_surrogates(text)
    try:
        parts = email.header.decode_header(text)
    except (ValueError, LookupError, email.errors.HeaderParseError):  # e.g. "Base64 decoding error"
        return _no_surrogates(text)
    out = []
    for chunk, label in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        elif label is None:
            out.append(_unescape(chunk))
        else:
            out.append(decoded(chunk, label))
    return _no_surrogates("".join(out))


def _raw(msg: EmailMessage, name: str) -> str | None:
    """A header's value as it came (8-bit bytes kept as surrogates), or None."""
    return next((v for k, v in msg.raw_items() if k.lower() == name), None)


def _has_8bit(value: str | None) -> bool:
    return value is not None and any("\udc80" <= ch <= "\udcff" for ch in value)


_QUOTED_ID = re.compile(r"^\s*>?\s*Message-ID:\s*<([^<>\s]+)>", re.I | re.M)
_DIAGNOSTIC = re.compile(r"^(?:Diagnostic-Code|Status):\s*(.+)$", re.I | re.M)


def _report(msg: EmailMessage) -> tuple[list[str], str]:
    """Message-IDs quoted by a bounce (DSN parts or pasted headers) and its stated reason."""
    ids: list[str] = []
    reasons: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            for block in part.get_payload():
                reason = block.get("diagnostic-code") or block.get("status")
                if reason:
                    reasons.append(decode_words(str(reason)))
            continue
        if part.is_multipart() and ctype != "message/rfc822":
            continue
        if ctype == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            found = _ids(str(inner.get("message-id", ""))) if hasattr(inner, "get") else []
            ids += found
            continue
        if not ctype.startswith(("text/", "message/")):
            continue
        payload = part.get_payload(decode=True) or b""
        text = decoded(payload, part.get_content_charset())
        ids += _QUOTED_ID.findall(text)
        reasons += _DIAGNOSTIC.findall(text)
    return list(dict.fromkeys(ids)), "; ".join(dict.fromkeys(r.strip() for r in reasons))


_PARAM = re.compile(r'(?:^|;)\s*(?:file)?name\s*=\s*(?:"([^"]*)"|([^;\s]+))', re.I)


_SECTION = re.compile(r'(?:^|;)\s*(file)?name\*(\d+)(\*?)\s*=\s*(?:"([^"]*)"|([^;\s]*))', re.I)


def _sections(raw: str, key: str) -> str | None:
    """An RFC 2231 value continued over sections (filename*0*=gb18030''%D5%E4; filename*1*=%A5...),
    joined as bytes before decoding: Python decodes each section alone, so a character split
    between two sections (Outlook splits at a fixed length) came out as "�%A5"."""
    found = sorted((int(m.group(2)), bool(m.group(3)), m.group(4) if m.group(4) is not None else m.group(5) or "")
                   for m in _SECTION.finditer(raw) if (m.group(1) or "").lower() + "name" == key)
    if not found or found[0][0] != 0:
        return None
    label, data = None, b""
    for index, extended, value in found:
        if extended and index == 0 and value.count("'") >= 2:
            label, _lang, value = value.split("'", 2)
        chunk = value.encode("utf-8", "surrogateescape")
        data += urllib.parse.unquote_to_bytes(chunk) if extended else chunk
    return decoded(data, label or "gb18030").strip()


def filename_of(part: EmailMessage) -> str:
    """The attachment's name as the sender saw it, whatever way it was encoded."""
    for header, key in (("content-disposition", "filename"), ("content-type", "name")):
        raw = _raw(part, header)
        if raw and "*1" in raw and (joined := _sections(re.sub(r"\r?\n", "", raw), key)):
            return joined
        if _has_8bit(raw):  # raw GBK bytes: the parser cannot know the charset, we can
            found = _PARAM.search(raw)
            if found:
                return decode_words(found.group(1) or found.group(2) or "").strip()
    for key, header in (("filename", "content-disposition"), ("name", "content-type")):
        raw = part.get_param(key, header=header)
        if raw is None:
            continue
        if isinstance(raw, tuple):  # RFC 2231: (charset, language, value)
            label, _lang, value = raw
            try:
                data = value.encode("latin-1", "surrogateescape") if isinstance(value, str) else value
                return decoded(data, label).strip()
            except UnicodeEncodeError:
                return email.utils.collapse_rfc2231_value(raw).strip()
        return decode_words(email.utils.unquote(str(raw))).strip()
    return ""


def _header(msg: EmailMessage, name: str) -> str:
    raw = _raw(msg, name.lower())
    if _has_8bit(raw):
        return decode_words(raw).strip()
    value = msg.get(name)
    if value is None:
        return ""
    return decode_words(str(value)).strip()


def _body_text(msg: EmailMessage) -> str:
    try:
        part = msg.get_body(preferencelist=("plain", "html"))
    except Exception:
        part = None
    if part is None:
        return ""
    payload = part.get_payload(decode=True) or b""
    return decoded(payload, part.get_content_charset())


def _walk_attachments(msg: EmailMessage, forwarded: bool, out: list[Attachment], depth: int = 0) -> None:
    for part in msg.iter_parts() if msg.is_multipart() else []:
        ctype = part.get_content_type()
        if ctype == "message/rfc822" and depth < 3:
            for inner in part.iter_parts():
                _walk_attachments(inner, True, out, depth + 1)
                if not inner.is_multipart() and filename_of(inner):
                    out.append(_attachment(inner, True))
            continue
        if part.is_multipart():
            _walk_attachments(part, forwarded, out, depth + 1)
            continue
        name = filename_of(part)
        disposition = part.get_content_disposition()
        if name or disposition == "attachment" or ctype.startswith("application/"):
            out.append(_attachment(part, forwarded))


def _attachment(part: EmailMessage, forwarded: bool) -> Attachment:
    data = part.get_payload(decode=True)
    if data is None:
        data = b""
    inline = part.get("content-id") is not None and part.get_content_disposition() != "attachment"
    return Attachment(filename=filename_of(part), content_type=part.get_content_type(), data=data, forwarded=forwarded,
                      inline=inline)


_ADDR_SPEC = re.compile(r"^[^@\s<>()\[\],;:\\\"]+@[^@\s<>()\[\],;:\\\".]+(\.[^@\s<>()\[\],;:\\\".]+)*$")


def _scan(value: str) -> tuple[list[str], list[str], list[str]] | None:
    """A raw address header as the text outside angle brackets, cut at the commas between
    addresses (a NUL marks where a <...> stood), the contents of each <...>, and the
    comments; None when a quote, comment or bracket is left open. Quoted strings stay whole,
    so a `<` or `,` inside one is only text."""
    pieces, current, angles, comments = [], [], [], []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch in '"(':
            close, depth, end = '"' if ch == '"' else ")", 1, i + 1
            while end < n and depth:
                if value[end] == "\\":
                    end += 2
                    continue
                depth += -1 if value[end] == close else (1 if ch == "(" and value[end] == "(" else 0)
                end += 1
            if depth:
                return None
            if ch == '"':
                current.append(value[i:end])
            else:
                comments.append(value[i + 1:end - 1])
                current.append(" ")
            i = end
        elif ch == "<":
            end = value.find(">", i)
            if end < 0:
                return None
            angles.append(value[i + 1:end])
            current.append("\x00")
            i = end + 1
        elif ch in ">)":
            return None
        elif ch == ",":
            pieces.append("".join(current))
            current = []
            i += 1
        else:
            current.append(ch)
            i += 1
    return pieces + ["".join(current)], angles, comments


def _phrase(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = re.sub(r"\\(.)", r"\1", text[1:-1])
    return decode_words(text).strip()


def _address(value: str) -> tuple[str, str, str]:
    """(display name, actual address in lower case, why unusable or "") of a raw From value.

    The actual address decides, never the display name: the email package's address header
    drops what it cannot parse, so `zhtjj@126.com <attacker@evil.example>` read as
    zhtjj@126.com. No address, several, or a malformed one: unusable ("empty", "several",
    "invalid"), and the caller must not treat the mail as anyone's."""
    value = storable(_unmangle(re.sub(r"\r?\n", "", value or ""))).strip()
    if not value:
        return "", "", "empty"
    scanned = _scan(value)
    if scanned is None:
        return "", "", "invalid"
    pieces, angles, comments = scanned
    addresses = [p for p in pieces if "@" in p or "\x00" in p or p.strip().lower() in _DAEMONS]
    if len(angles) > 1 or len(addresses) > 1:
        return "", "", "several"
    if not addresses:
        return "", "", "empty" if not "".join(pieces).strip() and not angles else "invalid"
    at = pieces.index(addresses[0])
    if any(p.strip() for p in pieces[at + 1:]):
        return "", "", "invalid"
    if angles:
        before, after = addresses[0].split("\x00")
        if after.strip():
            return "", "", "invalid"
        name, addr = ",".join(pieces[:at] + [before]), angles[0]
    else:
        if any(p.strip() for p in pieces[:at]):
            return "", "", "invalid"
        name, addr = " ".join(comments), addresses[0]
    addr = addr.strip().lower()
    if not (_ADDR_SPEC.match(addr) or addr in _DAEMONS):
        return "", "", "invalid" if addr else "empty"
    return _phrase(name), addr, ""


def _ids(value: str) -> list[str]:
    return re.findall(r"<([^<>\s]+)>", value)


# The labels of GB18030's subsets in RFC 2047 words (=?gb2312?B?...?=) and RFC 2231 values
# (filename*=gb2312''...): Python decodes those strictly, so a GBK-only character (镕, 珺, 喆,
# written by every Chinese mail client under the gb2312 label) became "朱�F" in headers, sender
# names and file names. They are relabelled gb18030, a superset of both, before parsing.
_NARROW = rb"gb2312|gbk|x-gbk|cp936|euc-cn|x-euc-cn|csgb2312"
_NARROW_WORD = re.compile(rb"=\?(?:" + _NARROW + rb")(?=(?:\*[A-Za-z-]*)?\?[BbQq]\?)", re.I)
_NARROW_2231 = re.compile(rb"(\*(?:0\*)?\s*=\s*\"?)(?:" + _NARROW + rb")(?=')", re.I)


def _relabel(raw: bytes) -> bytes:
    if b"=?" in raw:
        raw = _NARROW_WORD.sub(b"=?gb18030", raw)
    return _NARROW_2231.sub(rb"\1gb18030", raw) if b"*" in raw else raw


def parse(raw: bytes) -> Mail:
    raw = _relabel(raw)
    try:
        msg = email.message_from_bytes(raw, policy=_POLICY)
    except RecursionError:  # parts nested some 500+ deep (the parser recurses): the header alone
        msg = email.parser.BytesHeaderParser(policy=_POLICY).parsebytes(raw)
        msg.set_payload("")
    from_raw = _raw(msg, "from") or ""
    sender_name, sender, sender_error = _address(from_raw)
    return_path = _raw(msg, "return-path")
    null_return_path = return_path is not None and re.sub(r"[\s<>]", "", return_path) == ""
    headers = {}
    for name in msg.keys():
        key = name.lower()
        if key not in headers and key not in _TRACE_HEADERS:
            headers[key] = _header(msg, name)
    attachments: list[Attachment] = []
    if msg.is_multipart():
        _walk_attachments(msg, False, attachments)
    elif filename_of(msg):
        attachments.append(_attachment(msg, False))
    message_id = _ids(_header(msg, "message-id"))
    is_report = msg.get_content_type() == "multipart/report"
    sender_local = sender.split("@", 1)[0]
    bounce = is_report or sender_local in _DAEMONS or null_return_path
    quoted, diagnostic = _report(msg) if bounce else ([], "")
    return _kept(Mail(
        message_id=message_id[0] if message_id else "",
        sender=sender,
        sender_name=sender_name,
        subject=_header(msg, "subject"),
        date=_header(msg, "date"),
        in_reply_to=(_ids(_header(msg, "in-reply-to")) or [""])[0],
        references=_ids(_header(msg, "references")),
        headers=headers,
        text=_body_text(msg),
        attachments=attachments,
        is_report=is_report,
        quoted_ids=quoted,
        diagnostic=diagnostic[:500],
        auth_results=[decode_words(str(v)) for v in msg.get_all("authentication-results", [])],
        sender_error=sender_error,
        from_header=decode_words(re.sub(r"[\r\n]", "", from_raw))[:500] if sender_error else "",
        null_return_path=null_return_path,
    ))


_REFUSED = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """Without the characters a text column refuses: NUL (PostgreSQL), lone surrogates (UTF-8)."""
    return _REFUSED.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def _kept(mail: Mail) -> Mail:
    """The mail as it may be stored: a NUL decoded from `=?utf-8?q?a=00b?=` in a Message-ID made
    PostgreSQL refuse the commit, and the office stalled on that one message."""
    def clean(value):
        if isinstance(value, str):
            return storable(value)
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, dict):
            return {clean(k): clean(v) for k, v in value.items()}
        if isinstance(value, Attachment):
            return replace(value, filename=storable(value.filename), content_type=storable(value.content_type))
        return value
    return Mail(**{f.name: clean(getattr(mail, f.name)) for f in fields(mail)})


_AUTO_SUBJECT = re.compile(r"^\s*(自动回复|自動回覆|自动答复|auto(matic)?[ -]?reply|out of (the )?office|外出|休假)", re.I)


def classify(mail: Mail, *, own_addresses: tuple[str, ...], own_id_suffix: str) -> str | None:
    """Why this mail must never be answered, or None when it may be (RFC 3834 and practice).

    Checked before any reply, so that mailbot can never loop with another robot.
    """
    h = mail.headers
    local = mail.sender.split("@", 1)[0]
    if mail.message_id.endswith(own_id_suffix) or h.get("x-mailbot") or mail.sender in own_addresses:
        return "own"
    if mail.is_report or local in _DAEMONS or mail.null_return_path:
        return "bounce"
    auto = h.get("auto-submitted", "no").split(";")[0].strip().lower()
    if auto and auto != "no":
        return "auto_reply"
    if h.get("precedence", "").strip().lower() in ("bulk", "junk", "list", "auto_reply"):
        return "auto_reply"
    if any(name in h for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress")):
        return "auto_reply"
    if _AUTO_SUBJECT.match(mail.subject):
        return "auto_reply"
    if "list-id" in h or "list-unsubscribe" in h or "list-post" in h:
        return "list"
    return None


_RESULT = re.compile(r"\b(spf|dkim)\s*=\s*([a-z]+)", re.I)


def spoofed(mail: Mail, authserv_id: str) -> bool:
    """True when the office's own provider says SPF failed (hard fail) and DKIM failed or is absent.

    Only an Authentication-Results header whose authserv-id is the provider's is trusted:
    anyone can write such a header into a mail, but not above the provider's own.
    """
    for header in mail.auth_results:
        if header.split(";", 1)[0].strip().lower() != authserv_id.lower():
            continue
        results = {k.lower(): v.lower() for k, v in _RESULT.findall(header)}
        return results.get("spf") == "fail" and results.get("dkim", "none") in ("fail", "none")
    return False
