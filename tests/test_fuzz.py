"""Hostile input through the whole message pipeline: mutated workbooks and MIME messages.

Every message must end in a known state: accepted, rejected with problems (and one receipt to
the sender), ignored, or quarantined for a reason a clerk can act on; in bounded memory and
time. `decision.decide` turns any unexpected exception into a quarantine of kind "error": for
input that is merely malformed that is a reader bug, so these properties fail on it.

Inputs start from the fixtures in tests/data and the factory's mails and are mutated at every
level: bytes (flips, cuts, splices), zip members (shuffled, dropped, doubled, damaged, XML
edited), cell contents, headers, boundaries, transfer encodings, charsets, nesting, file names
in every encoding. Each example goes through `decide` and `commit` (a SQLite file, no servers);
a smaller batch goes through real Dovecot and aiosmtpd. How many examples: the Hypothesis profile
(tests/conftest.py): 100 a source without the slow tests, 400 with them (CI), MAILBOT_FUZZ_EXAMPLES
for a deeper run.
"""
from __future__ import annotations

import base64
import collections
import csv
import datetime as dt
import email
import email.policy
import io
import itertools
import os
import quopri
import random
import re
import sys
import urllib.parse
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import time_machine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from mailbot import archive, config as config_mod, intake, message, store
from mailbot.decision import decide
from mailbot.mailbox import Fetched
from mailbot.models import Message, Outgoing
from tests import factory

DATA = Path(__file__).parent / "data"
BOOK_SUFFIXES = (".xlsx", ".xls", ".csv", ".docx", ".zip")
BOOKS = sorted(p for d in ("workbooks", "checklists") for p in (DATA / d).iterdir() if p.suffix in BOOK_SUFFIXES)
MAILS = sorted((DATA / "mail").glob("*.eml")) + sorted((DATA / "checklists").glob("*.eml"))
CPYTHON_MAIL = Path(f"/usr/lib/python{sys.version_info.major}.{sys.version_info.minor}/test/test_email/data")
ARRIVED = factory.ON_TIME
MEMORY_LIMIT = 200 << 20  # peak RSS growth allowed for one message
REGISTERED = [e for d in factory.DEPARTMENTS for e in d["emails"]]

# ---------------------------------------------------------------- hostile text

NASTY = [
    "", " ", "\t", "情况清单", "赞皇县市场监督管理局", "2026年11月", "𠀀𪚥𰻞", "\u202e", "\ufeff", "\u200b", "\x00",
    "\x1b[31m", "\r\nBcc: evil@attacker.test", "\nX-Injected: 1", "../../etc/passwd", "..\\..\\boot.ini", "/etc/shadow",
    "C:\\Windows\\win.ini", "CON", "NUL.xlsx", ".xlsx", "a.xlsx.exe", "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>", "{{ 7*7 }}", "{% raw %}", "%s%n%x", "=?utf-8?B?", "=?gbk?Q?=C7=E5=B5=A5?=",
    "=?x-unknown?B?AAAA?=", "=?utf-8?B?!!!?=", "=?utf-8?Q?=FF=FE?=", "\"", "'", ";", "\\", "=", "*", "''", "%",
    "%ZZ", "%E6%B8", "=1+1", "@SUM(1)", "-1", "1e309", "NaN", "91350100M000100Y43", "11010519491231002X",
    "无", "/", "A" * 3000, "清" * 400, "\udcff",
]
CHARSETS = ["utf-8", "gbk", "gb2312", "gb18030", "big5", "iso-8859-1", "utf-16", "utf-7", "hz-gb-2312", "us-ascii",
            "x-unknown", "", "cp936", "euc-cn", "koi8-r", "utf-8\"", "gb\u4e2d", "undefined", "idna", "base64",
            "punycode", "rot13", "unicode_escape", "raw_unicode_escape", "utf-16-le", "utf-32"]
CONTENT_TYPES = ["application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "application/vnd.ms-excel",
                 "application/octet-stream", "application/zip", "text/csv", "text/plain", "application/msword",
                 "image/png", "application/pdf", "application/x-unknown", "message/rfc822", "multipart/mixed",
                 "text/html", "garbage", "", "application/"]
ENCODINGS = ["base64", "base64", "quoted-printable", "7bit", "8bit", "binary", "x-uuencode", "gzip", "BASE64", ""]
EXTRA_HEADERS = ["Auto-Submitted", "Precedence", "List-Id", "X-Autoreply", "In-Reply-To", "References", "Reply-To",
                 "Sender", "Return-Path", "Authentication-Results", "X-Mailbot", "Content-Language", "Cc", "Bcc",
                 "Content-Type", "MIME-Version", "Message-ID", "Subject", "From", "Date"]
XML_SNIPPETS = [
    '<c r="XFD1048576"><v>1</v></c>', '<row r="1048576"><c r="A1048576" t="s"><v>999999</v></c></row>',
    '<mergeCell ref="A1:XFD1048576"/>', '<mergeCell ref="B2:A1"/>', '<c r="A1" t="e"><v>#REF!</v></c>',
    '<c r="B2" t="d"><v>garbage</v></c>', '<c r="C3" t="n"><v>1e400</v></c>', '<c r="D4" s="99999"><v>1</v></c>',
    '<c r="E5" t="inlineStr"><is><t>x</t></is></c>', '<c r="F6" t="b"><v>2</v></c>', '<c r="G7"><f>1/0</f></c>',
    '<c r="A0"><v>1</v></c>', '<c r="ZZZZ1"><v>1</v></c>', '<row r="0"/>', '<row r="-5"><c><v>1</v></c></row>',
    '<si><t>' + "长" * 20000 + '</t></si>', '<sheet name="x" sheetId="99" r:id="rId99"/>',
    '<dimension ref="A1:XFD1048576"/>', '<c r="H8" t="n"><v>-1e20</v></c>', '<c r="B4" t="n"><v>2958466</v></c>',
    '<c r="B4" t="n"><v>-700000</v></c>', '<numFmt numFmtId="200" formatCode="yyyy-mm-dd"/>', '<x:bogus/>', '<',
    ']]>', '&amp;', '&unknown;', '&#0;', '&#xD800;',
]


def nasty_text(rnd: random.Random, extra: str = "") -> str:
    """A few pieces of trouble: known-bad fragments, random code points, and `extra` (from hypothesis)."""
    pieces = []
    for _ in range(rnd.randint(1, 4)):
        pick = rnd.randint(0, 3)
        if pick == 0:
            pieces.append(rnd.choice(NASTY))
        elif pick == 1:
            lo, hi = rnd.choice([(0x20, 0x7e), (0, 0x1f), (0x80, 0x2ff), (0x4e00, 0x9fff), (0x3000, 0x303f),
                                 (0xff00, 0xffef), (0x1f300, 0x1f6ff), (0x20000, 0x2a6df), (0xe000, 0xf8ff)])
            pieces.append("".join(chr(rnd.randint(lo, hi)) for _ in range(rnd.randint(1, 12))))
        elif pick == 2:
            pieces.append(extra)
        else:
            pieces.append(rnd.choice(["情况清单", "2026年11月信用记录使用情况清单", "清单.xlsx", "报送"]))
    return "".join(pieces)


def _bytes_of(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset or "utf-8", "surrogateescape")
    except (LookupError, ValueError):  # ValueError: UnicodeError from codecs like idna and undefined
        return text.encode("utf-8", "surrogatepass")


def encoded_words(rnd: random.Random, text: str) -> bytes:
    """`text` as a header value, in one of the ways real and broken clients write it."""
    way = rnd.randint(0, 6)
    charset = rnd.choice(CHARSETS)
    data = _bytes_of(text, charset)
    if way == 0:  # RFC 2047 B
        return f"=?{charset}?B?".encode() + base64.b64encode(data) + b"?="
    if way == 1:  # RFC 2047 Q
        return f"=?{charset}?Q?".encode() + quopri.encodestring(data, header=True).replace(b"=\n", b"") + b"?="
    if way == 2:  # raw 8-bit
        return data
    if way == 3:  # broken encoded word
        word = f"=?{charset}?B?".encode() + base64.b64encode(data)
        return word[: rnd.randint(0, len(word))]
    if way == 4:  # several words, folded
        half = len(text) // 2
        return encoded_words(rnd, text[:half]) + b"\r\n " + encoded_words(rnd, text[half:])
    if way == 5:
        return text.encode("ascii", "replace")
    return _bytes_of(text, "utf-8")


def filename_params(rnd: random.Random, name: str) -> tuple[bytes, bytes]:
    """(Content-Disposition params, Content-Type params) naming the file `name`, any which way."""
    way = rnd.randint(0, 6)
    charset = rnd.choice(CHARSETS)
    if way == 0:
        return b'; filename="' + encoded_words(rnd, name) + b'"', b""
    if way == 1:  # RFC 2231
        quoted = urllib.parse.quote_from_bytes(_bytes_of(name, charset)).encode()
        return b"; filename*=" + charset.encode("utf-8", "replace") + b"''" + quoted, b""
    if way == 2:  # RFC 2231 continuations, maybe out of order or with a gap
        quoted = urllib.parse.quote_from_bytes(_bytes_of(name, charset))
        chunks = [quoted[i:i + 20] for i in range(0, max(len(quoted), 1), 20)] or [""]
        parts = [f"filename*{i}*={charset if i == 0 else ''}{'' if i else chr(39) * 2}{c}" for i, c in enumerate(chunks)]
        if rnd.random() < 0.3:
            rnd.shuffle(parts)
        if rnd.random() < 0.2 and len(parts) > 1:
            parts.pop(rnd.randrange(len(parts)))
        return ("; " + "; ".join(parts)).encode("utf-8", "surrogatepass"), b""
    if way == 3:  # raw 8-bit in quotes
        return b'; filename="' + _bytes_of(name, charset) + b'"', b'; name="' + _bytes_of(name, charset) + b'"'
    if way == 4:  # name only on Content-Type
        return b"", b'; name="' + encoded_words(rnd, name) + b'"'
    if way == 5:  # unquoted, no escaping at all
        return b"; filename=" + _bytes_of(name, "utf-8"), b""
    return b"", b""


# ---------------------------------------------------------------- workbooks

def _members(data: bytes) -> list[tuple[zipfile.ZipInfo, bytes]] | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return [(info, zf.read(info)) for info in zf.infolist()]
    except Exception:
        return None


def _rezip(members: list[tuple[zipfile.ZipInfo, bytes]], compression: int = zipfile.ZIP_DEFLATED,
           date_time: tuple | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as zf:
        for info, blob in members:
            new = zipfile.ZipInfo(info.filename, date_time=date_time or info.date_time)
            new.flag_bits, new.compress_type = info.flag_bits & 0x800, compression
            zf.writestr(new, blob)
    return out.getvalue()


def _xml_escape(text: str) -> str:
    text = re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]", "", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def mutate_xml(rnd: random.Random, xml: bytes, text: str) -> bytes:
    """Edit one thing in an XML member: a text node, an attribute, or a hostile snippet."""
    way = rnd.randint(0, 3)
    if way == 0:
        nodes = list(re.finditer(rb">([^<>]+)<", xml))
        if nodes:
            node = rnd.choice(nodes)
            value = nasty_text(rnd, text)
            value = _xml_escape(value) if rnd.random() < 0.8 else value
            return xml[:node.start(1)] + value.encode("utf-8", "surrogatepass") + xml[node.end(1):]
    if way == 1:
        attrs = list(re.finditer(rb'\b\w+="([^"]*)"', xml))
        if attrs:
            attr = rnd.choice(attrs)
            value = rnd.choice(["", "-1", "0", "99999999", "XFD1048576", "A0", "1e999", "NaN", "A1:XFD1048576",
                                "B2:A1", "hidden", "veryHidden", _xml_escape(nasty_text(rnd, text))])
            return xml[:attr.start(1)] + value.encode("utf-8", "surrogatepass") + xml[attr.end(1):]
    if way == 2:
        tags = [m.end() for m in re.finditer(rb">", xml)]
        if tags:
            at = rnd.choice(tags)
            return xml[:at] + rnd.choice(XML_SNIPPETS).encode() + xml[at:]
    return mutate_bytes(rnd, xml)


def mutate_bytes(rnd: random.Random, data: bytes) -> bytes:
    data = bytearray(data)
    way = rnd.randint(0, 5)
    if not data or way == 0:
        data[rnd.randint(0, len(data)):] = rnd.randbytes(rnd.randint(0, 64))  # cut, maybe with a new tail
    elif way == 1:
        for _ in range(rnd.randint(1, 8)):
            data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
    elif way == 2:
        at = rnd.randint(0, len(data))
        data[at:at] = rnd.randbytes(rnd.randint(1, 64))
    elif way == 3:
        at = rnd.randrange(len(data))
        del data[at:at + rnd.randint(1, 256)]
    elif way == 4:
        at, size = rnd.randrange(len(data)), rnd.randint(1, 512)
        data[at:at] = data[at:at + size] * rnd.randint(1, 8)
    else:
        at = rnd.randrange(len(data))
        data[at:at + 4] = rnd.choice([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80"])
    return bytes(data)


def mutate_zip(rnd: random.Random, data: bytes, text: str) -> bytes:
    """A structural change that keeps the archive valid, so the damage reaches the parser."""
    members = _members(data)
    if not members:
        return mutate_bytes(rnd, data)
    way = rnd.randint(0, 6)
    if way == 0:
        rnd.shuffle(members)
    elif way == 1:
        members.pop(rnd.randrange(len(members)))
    elif way == 2:
        members.insert(rnd.randint(0, len(members)), rnd.choice(members))  # a duplicate name
    elif way == 3:
        i = rnd.randrange(len(members))
        members[i] = (members[i][0], mutate_bytes(rnd, members[i][1]))
    elif way == 4:
        return _rezip(members, zipfile.ZIP_STORED)
    elif way == 5:
        extra = zipfile.ZipInfo(rnd.choice(["../../evil.xml", "/abs.xml", "xl/worksheets/sheet9.xml", "嵌套.zip",
                                            "a/" * 50 + "deep.xlsx", "__MACOSX/._x.xlsx", ""]) or "x")
        members.append((extra, rnd.choice([b"", data, rnd.randbytes(100)])))
    for _ in range(1 if way != 6 else rnd.randint(1, 4)):
        xml = [i for i, (info, _) in enumerate(members) if info.filename.endswith((".xml", ".rels"))]
        if xml:
            i = rnd.choice(xml)
            members[i] = (members[i][0], mutate_xml(rnd, members[i][1], text))
    return _rezip(members)


def cell_value(rnd: random.Random, text: str):
    way = rnd.randint(0, 9)
    if way <= 3:
        return nasty_text(rnd, text)
    return [None, rnd.randint(-10**20, 10**20), rnd.choice([0.0, -0.0, 1e308, -1e-308, float("inf"), float("nan"), 3.5]),
            dt.date(rnd.randint(1, 9999), rnd.randint(1, 12), rnd.randint(1, 28)),
            dt.datetime(rnd.randint(1900, 2100), 1, 1, rnd.randint(0, 23)), rnd.choice([True, False]),
            rnd.choice(["=1/0", "=A1", "=HYPERLINK(\"http://x\")", "=" + "A1+" * 100 + "1"])][way - 4]


def _writable(value):
    """What openpyxl and python-docx accept (they refuse XML-illegal characters)."""
    if isinstance(value, str):
        return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]", "", value)
    return value


def _one_line(text: str) -> str:
    """What EmailMessage accepts as a header value we set (the factory builds with it)."""
    return re.sub(r"[\x00-\x1f\x7f\x85\u2028\u2029\ud800-\udfff]|=\?", "", text)


def random_checklist(rnd: random.Random, text: str) -> tuple[str, bytes]:
    """The official layout with random cell contents, as xlsx, csv or docx (zip dates fixed:
    openpyxl stamps its sheets with the mtime of a temporary file, which no clock freeze reaches)."""
    name, data = _random_checklist(rnd, text)
    return name, (_rezip(_members(data), date_time=(2026, 11, 20, 10, 0, 0)) if data[:2] == b"PK" else data)


def _random_checklist(rnd: random.Random, text: str) -> tuple[str, bytes]:
    rows = [tuple(cell_value(rnd, text) for _ in range(rnd.randint(0, 7))) for _ in range(rnd.randint(0, 8))]
    if rnd.random() < 0.5:  # mostly good rows, one cell wrong
        rows = [list(r) for r in factory.GOOD_ROWS]
        rows[rnd.randrange(3)][rnd.randrange(5)] = cell_value(rnd, text)
    kind = rnd.choice(["xlsx", "xlsx", "csv", "docx"])
    unit = rnd.choice(["赞皇县市场监督管理局", "赞皇县财政局", nasty_text(rnd, text)])
    if kind == "xlsx":
        rows = [tuple(_writable(v) for v in r) for r in rows]
        try:
            return "清单.xlsx", factory.checklist_xlsx(rows, unit=_writable(unit), submitter=_writable(nasty_text(rnd, text)),
                                                     report_date=cell_value(rnd, text))
        except Exception:  # a value openpyxl will not write (a date before 1900...): leave it out
            return "清单.xlsx", factory.checklist_xlsx(rows=[tuple(v for v in r if isinstance(v, str)) for r in rows])
    head = [["单位：" + unit], ["报送人：王某"], ["报送日期：2026年11月20日"], [],
            ["市场主体（自然人）名称", "事项名称", "日期", "使用信用记录或报告情况", "信用措施"]]
    table = head + [["" if v is None else str(v) for v in r] for r in rows]
    if kind == "csv":
        out = io.StringIO()
        csv.writer(out, delimiter=rnd.choice([",", "\t", ";"])).writerows(table)
        return "清单.csv", _bytes_of(out.getvalue(), rnd.choice(["utf-8", "utf-8-sig", "gb18030", "utf-16"]))
    import docx

    doc = docx.Document()
    for line in table[:3]:
        doc.add_paragraph(_writable(line[0]))
    body = table[4:]
    grid = doc.add_table(rows=len(body), cols=5)
    for r, line in enumerate(body):
        for c, value in enumerate(line[:5]):
            grid.cell(r, c).text = _writable(value)
    out = io.BytesIO()
    doc.save(out)
    return "清单.docx", out.getvalue()


def mutated_workbook(rnd: random.Random, text: str) -> tuple[str, bytes]:
    path = rnd.choice(BOOKS)
    data = path.read_bytes()
    for _ in range(rnd.randint(1, 3)):
        data = mutate_zip(rnd, data, text) if rnd.random() < 0.6 and data[:2] == b"PK" else mutate_bytes(rnd, data)
    return path.name, data


def repeatable_mail(rnd: random.Random, **fields) -> bytes:
    """factory.mail with its random parts (Message-ID, boundary) drawn from `rnd`: hypothesis
    replays an example and must get the same bytes (with time frozen: see `generate`)."""
    raw = factory.mail(message_id=f"<fuzz.{rnd.getrandbits(40)}@example.gov.cn>", **fields)
    return re.sub(rb"={15}\d+==", b"===============fuzz==", raw)


def workbook_mail(rnd: random.Random, text: str, book=mutated_workbook) -> bytes:
    """A registered department's mail carrying one hostile workbook under a random name."""
    name, data = book(rnd, text)
    if rnd.random() < 0.5:
        name = rnd.choice([name, nasty_text(rnd, text) + Path(name).suffix, nasty_text(rnd, text)])
    ctype = rnd.choice(CONTENT_TYPES[:10])
    return repeatable_mail(rnd, sender=rnd.choice(REGISTERED), attachments=((_one_line(name) or "x", data, ctype),))


def cells_mail(rnd: random.Random, text: str) -> bytes:
    return workbook_mail(rnd, text, book=random_checklist)


# ---------------------------------------------------------------- MIME

SENDERS = REGISTERED * 4 + [
    "stranger@qq.com", "MAILER-DAEMON@mx.example.test", "office@example.test", "", "<>", "@", "a@b@c",
    '"scjgj@example.gov.cn" <evil@attacker.test>', "scjgj@example.gov.cn, czj@example.gov.cn",
    "=?utf-8?B?5byg5LiJ?= <scjgj@example.gov.cn>", "SCJGJ@EXAMPLE.GOV.CN", "王某 <zhz@qq.com>",
    "scjgj@example.gov.cn\r\nBcc: evil@attacker.test", "<scjgj@example.gov.cn",
]


def _body(rnd: random.Random, data: bytes, encoding: str) -> bytes:
    if encoding.lower() == "base64":
        body = base64.encodebytes(data).replace(b"\n", b"\r\n")
        if rnd.random() < 0.2:  # damaged: bad characters, lost padding, cut short
            body = mutate_bytes(rnd, body)
        return body
    if encoding == "quoted-printable":
        return quopri.encodestring(data)
    if encoding == "x-uuencode":
        import binascii

        return b"begin 644 x\r\n" + b"".join(binascii.b2a_uu(data[i:i + 45]) for i in range(0, len(data), 45)) + b"end\r\n"
    return data


def mime_part(rnd: random.Random, text: str, depth: int) -> bytes:
    """One MIME entity (headers and body): text, an attachment, a multipart or a message."""
    kinds = ["text", "attachment", "attachment", "attachment", "garbage"]
    if depth < 4:
        kinds += ["multipart", "multipart", "rfc822"]
    kind = rnd.choice(kinds)
    if kind == "text":
        charset = rnd.choice(CHARSETS)
        encoding = rnd.choice(ENCODINGS)
        subtype = rnd.choice(["plain", "html", "plain"])
        content = nasty_text(rnd, text) + rnd.choice(["", "超大附件 https://mail.163.com/large-attachment-download/x"])
        return (f"Content-Type: text/{subtype}; charset=\"{charset}\"\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n"
                .encode("utf-8", "surrogatepass") + _body(rnd, _bytes_of(content, charset), encoding))
    if kind == "attachment":
        way = rnd.randint(0, 3)
        if way == 0:
            name, data = mutated_workbook(rnd, text)
        elif way == 1:
            name, data = random_checklist(rnd, text)
        elif way == 2:
            path = rnd.choice(BOOKS)
            name, data = path.name, path.read_bytes()
        else:
            name, data = "x.xlsx", rnd.randbytes(rnd.randint(0, 300))
        name = rnd.choice([name, nasty_text(rnd, text), nasty_text(rnd, text) + ".xlsx"])
        disposition, ctype_params = filename_params(rnd, name)
        encoding = rnd.choice(ENCODINGS)
        ctype = rnd.choice(CONTENT_TYPES)
        return (b"Content-Type: " + ctype.encode() + ctype_params + b"\r\nContent-Transfer-Encoding: " + encoding.encode()
                + b"\r\nContent-Disposition: " + rnd.choice([b"attachment", b"inline", b"", b"bogus"]) + disposition
                + b"\r\n\r\n" + _body(rnd, data, encoding))
    if kind == "multipart":
        boundary = rnd.choice(["b" + str(depth), "----=_Part_%d" % rnd.randint(0, 9), "", " ", "a b", '"', "=_=",
                               "x" * 80, "b" + str(depth)])
        parts = [mime_part(rnd, text, depth + 1) for _ in range(rnd.randint(0, 4))]
        subtype = rnd.choice(["mixed", "mixed", "alternative", "related", "report", "signed", "digest", "x-unknown"])
        out = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\npreamble\r\n'.encode()
        for p in parts:
            out += f"--{boundary}\r\n".encode() + p + b"\r\n"
        if rnd.random() < 0.8:  # sometimes never closed
            out += f"--{boundary}--\r\n".encode()
        return out + rnd.choice([b"", b"epilogue\r\n", f"--{boundary}\r\n".encode()])
    if kind == "rfc822":
        return (b"Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\n"
                + headers(rnd, text) + mime_part(rnd, text, depth + 1))
    return rnd.randbytes(rnd.randint(0, 200))


def headers(rnd: random.Random, text: str) -> bytes:
    lines = [
        b"From: " + (encoded_words(rnd, rnd.choice(SENDERS)) if rnd.random() < 0.1 else
                     rnd.choice(SENDERS).encode("utf-8")),
        b"To: office@example.test",
        b"Subject: " + encoded_words(rnd, nasty_text(rnd, text)),
        b"Date: " + rnd.choice([b"Fri, 20 Nov 2026 10:00:00 +0800", b"", b"yesterday", b"Fri, 31 Feb 2026 25:61:61 +9999"]),
        b"Message-ID: " + (b"<%d@example.gov.cn>" % rnd.randint(0, 10**9) if rnd.random() < 0.7 else rnd.choice(
            [b"", b"<>", b"<@>", b"no-brackets", b"<mailbot.x@example.test>", b"<" + b"x" * 2000 + b">"])),
        b"MIME-Version: 1.0",
    ]
    for _ in range(rnd.randint(0, 3)):
        lines.insert(rnd.randint(0, len(lines)), rnd.choice(EXTRA_HEADERS).encode() + b": " + encoded_words(rnd, nasty_text(rnd, text)))
    if rnd.random() < 0.1:
        lines.pop(rnd.randrange(len(lines)))
    return b"\r\n".join(lines) + b"\r\n"


def built_mail(rnd: random.Random, text: str) -> bytes:
    """A message built from scratch: random headers over a random tree of parts."""
    raw = headers(rnd, text) + mime_part(rnd, text, 0)
    if rnd.random() < 0.05:  # nested far beyond any mail client
        raw = nested(rnd.choice(["multipart", "rfc822"]), rnd.randint(50, 1500), raw)
    if rnd.random() < 0.3:
        raw = raw.replace(b"\r\n", b"\n")
    return raw


def nested(kind: str, levels: int, inner: bytes) -> bytes:
    """`inner` wrapped `levels` deep: CPython's parser recurses, and gives up some 500 levels down."""
    body = inner
    for i in range(levels):
        if kind == "multipart":
            b = f"n{i}".encode()
            body = (b'Content-Type: multipart/mixed; boundary="' + b + b'"\r\n\r\n--' + b + b"\r\n" + body
                    + b"\r\n--" + b + b"--\r\n")
        else:
            body = b"Content-Type: message/rfc822\r\n\r\nSubject: fwd\r\n" + body
    return b"From: scjgj@example.gov.cn\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + body


def fixture_mail(rnd: random.Random, text: str) -> bytes:
    """A fixture or factory mail with its headers, boundaries and encodings tampered with."""
    if rnd.random() < 0.3:
        raw = repeatable_mail(rnd, sender=rnd.choice(REGISTERED), subject=_one_line(nasty_text(rnd, text)) or "x",
                              attachments=(("情况清单.xlsx", GOOD_XLSX, factory.XLSX),))
    else:
        raw = rnd.choice(MAILS).read_bytes()
    if rnd.random() < 0.6:  # from a registered address, so the attachments are read
        raw = re.sub(rb"(?im)^From:.*$", b"From: " + rnd.choice(REGISTERED).encode(), raw, count=1)
    head, sep, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
    for _ in range(rnd.randint(1, 4)):
        way = rnd.randint(0, 7)
        if way == 0:  # replace a header's value
            lines = head.split(b"\r\n")
            i = rnd.randrange(len(lines))
            name = lines[i].split(b":", 1)[0] if b":" in lines[i] else b"X-Junk"
            lines[i] = name + b": " + encoded_words(rnd, nasty_text(rnd, text))
            head = b"\r\n".join(lines)
        elif way == 1:  # add a header
            head += b"\r\n" + rnd.choice(EXTRA_HEADERS).encode() + b": " + encoded_words(rnd, nasty_text(rnd, text))
        elif way == 2:  # change or break a boundary
            found = re.findall(rb'boundary="?([^";\r\n]+)"?', raw)
            if found:
                old = rnd.choice(found)
                new = rnd.choice([b"", b"x", old[:-1], old + b" ", b'"', old * 3])
                where = rnd.choice(["decl", "body", "both"])
                if where in ("decl", "both"):
                    head = head.replace(old, new, 1)
                    body = body.replace(b"boundary=\"" + old, b"boundary=\"" + new, 1)
                if where in ("body", "both"):
                    body = body.replace(b"--" + old + b"--", b"--" + new + b"--" if rnd.random() < 0.5 else b"")
        elif way == 3:  # a different transfer encoding for some part
            body = re.sub(rb"(?i)(Content-Transfer-Encoding:) *[\w-]+", b"\\1 " + rnd.choice(ENCODINGS).encode(), body,
                          count=rnd.randint(1, 3))
        elif way == 4:  # a different charset
            body = re.sub(rb'(?i)charset="?[\w-]+"?', b'charset="' + rnd.choice(CHARSETS).encode("utf-8") + b'"', body,
                          count=rnd.randint(1, 3))
        elif way == 5:  # a different file name
            disposition, _ = filename_params(rnd, nasty_text(rnd, text))
            body = re.sub(rb'(?i); *(file)?name\*?=("[^"]*"|[^;\r\n]*)', disposition.replace(b"\\", b"\\\\"), body, count=1)
        elif way == 6:  # bytes
            body = mutate_bytes(rnd, body)
        else:  # nesting: forward it, maybe many times
            inner = head + sep + body
            for _ in range(rnd.randint(1, 6)):
                inner = (b"From: " + rnd.choice(REGISTERED).encode() + b"\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\n"
                         b'Content-Type: multipart/mixed; boundary="fw"\r\n\r\n--fw\r\nContent-Type: message/rfc822\r\n\r\n'
                         + inner + b"\r\n--fw--\r\n")
            head, sep, body = inner.partition(b"\r\n\r\n")
    return head + sep + body


# ---------------------------------------------------------------- the pipeline under test

def _peak_rss() -> int:
    with open("/proc/self/status") as fh:
        return int(re.search(r"VmHWM:\s+(\d+)", fh.read()).group(1)) << 10


def _reset_peak_rss() -> bool:
    """Start a fresh high-water mark (Linux: writing 5 to clear_refs); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


DECISIONS = {  # status -> the kinds it may have; "error" is nowhere: it is a bug
    "accepted": {"checklist"},
    "rejected": {"checklist", "no_checklist", "too_large"},
    "ignored": {"auto_reply", "bounce", "own", "list"},
    "quarantined": {"unknown_sender", "auth_failed", "bad_sender", "suspicious_sender"},
    "left": {"own", "auto_reply", "list", "bounce_not_ours", "reply_without_attachment", "other_matter",
             "not_submission"},  # not ours (mailbot.claim): stays in INBOX, unanswered
}
RECEIPT_HEADERS = {"from", "to", "subject", "date", "message-id", "in-reply-to", "references", "auto-submitted",
                   "x-auto-response-suppress", "x-mailbot", "content-type", "mime-version", "content-transfer-encoding"}


class Finding(AssertionError):
    """An unexpected exception inside `decide`: a reader bug to fix."""


class Pipeline:
    """decide + commit on a SQLite file, measured; `check` asserts the invariants for one message."""

    def __init__(self, var: Path):
        self.cfg = config_mod.parse(factory.config_dict(
            SimpleNamespace(port=1, user="office@example.test"), SimpleNamespace(port=1), var,
            replies={"daily_cap_per_sender": 10**9}))
        self.office = self.cfg.office()
        self.engine = store.connect(self.cfg.database.url)
        self.uids = itertools.count(1)
        self.outcomes: collections.Counter = collections.Counter()

    def run(self, raw: bytes):
        measured = _reset_peak_rss()
        before = _peak_rss()
        decision = decide(self.office, raw, ARRIVED)
        if decision.kind == "error":
            raise Finding(f"unexpected {decision.reason} in decide():\n{decision.detail}")
        row = intake.commit(self.engine, self.office, Fetched("INBOX", 1, next(self.uids), raw, ARRIVED),
                            archive.digest(raw), decision)
        if measured:
            grew = _peak_rss() - before
            assert grew < MEMORY_LIMIT, f"one message took {grew >> 20} MB"
        with store.reading(self.engine) as s:
            out = list(s.exec(select(Outgoing).where(Outgoing.message_pk == row.id)).scalars())
        self.outcomes[(decision.status, decision.kind)] += 1
        return decision, row, out

    def check(self, raw: bytes):
        decision, row, out = self.run(raw)
        assert decision.kind in DECISIONS[decision.status], (decision.status, decision.kind)
        assert row.status in (decision.status, "duplicate")
        if decision.status == "rejected":
            assert decision.problems and all(p.code and p.message for p in decision.problems)
        if decision.status == "accepted":
            assert decision.checked.accepted and decision.checklist is not None
        answered = decision.status in ("accepted", "rejected") and row.status != "duplicate" and \
            row.reason != "same_content"  # the very file again, already answered today
        assert len(out) == (1 if answered else 0)
        for receipt in out:
            assert_safe_receipt(receipt, decision.department.emails)
        return decision, row, out


def assert_safe_receipt(receipt: Outgoing, addresses) -> None:
    """Only to the sender's registered address, with no header we did not write, no path in a file name."""
    assert len(receipt.recipients) == 1 and receipt.recipients[0] in addresses, receipt.recipients
    msg = email.message_from_bytes(receipt.raw, policy=email.policy.default)
    assert {k.lower() for k in msg.keys()} <= RECEIPT_HEADERS, msg.keys()
    assert [a.addr_spec for a in msg["To"].addresses] == receipt.recipients
    for line in receipt.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        assert line[:1] in b" \t" or re.match(rb"[A-Za-z-]+: ", line), line  # no line the sender wrote
    for part in msg.iter_attachments():
        name = part.get_filename()
        assert name.endswith((".xlsx", ".docx")) and not re.search(r"[/\\\x00-\x1f\x7f]", name), name
        assert not name.startswith("."), name


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return Pipeline(tmp_path_factory.mktemp("fuzz"))


GOOD_XLSX = factory.checklist_xlsx()
FROZEN = dt.datetime(2026, 11, 20, 2, 0, tzinfo=dt.timezone.utc)


def generate(source: str, rnd: random.Random, text: str) -> bytes:
    """One hostile message; time is frozen so that openpyxl and python-docx write the same bytes
    whenever hypothesis replays the example (they stamp files with the time)."""
    with time_machine.travel(FROZEN, tick=False):
        return MAKERS[source](rnd, text)


MAKERS = {"workbook": workbook_mail, "cells": cells_mail, "fixture_mail": fixture_mail, "built_mail": built_mail}
TEXT = st.text(max_size=40)
RANDOMS = st.randoms(use_true_random=False)
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
# An example takes 5-250 ms (an .xls is read in a child process); 5 s means something spins.
DEADLINE = dt.timedelta(seconds=5)


@pytest.mark.parametrize("source", MAKERS)
@settings(deadline=DEADLINE, suppress_health_check=_HEALTH)  # max_examples: the profile's
@given(rnd=RANDOMS, text=TEXT)
def test_hostile_input_ends_in_a_known_state(pipeline, source, rnd, text):
    pipeline.check(generate(source, rnd, text))


@pytest.mark.parametrize("args, env, profile", [
    (["-m", "not slow"], {}, "'default'"),  # quick: Hypothesis' own 100 examples
    ([], {}, "'ci' -> max_examples=400"),  # CI's run, with the slow tests: as deep as CI always fuzzed
    (["-m", "not slow"], {"MAILBOT_FUZZ_EXAMPLES": "9"}, "'deep' -> max_examples=9"),
])
def test_how_deep_the_fuzzing_goes_follows_the_run(args, env, profile):
    """tests/conftest.py picks the Hypothesis profile from the run: a wrong pick would silently fuzz
    CI a quarter as deep (or make the quick run slow)."""
    import subprocess

    clean = {k: v for k, v in os.environ.items() if k not in ("HYPOTHESIS_PROFILE", "MAILBOT_FUZZ_EXAMPLES")}
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-v", "-p", "no:cacheprovider", *args,
                           f"{Path(__file__).parent / 'test_codes.py'}::test_codes_never_raise"],
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert f"hypothesis profile {profile}" in done.stdout.splitlines(), done.stdout + done.stderr


# ---------------------------------------------------------------- what fuzzing found, kept found

def _with_header(name: bytes, value: bytes) -> bytes:
    """A good department mail with header `name` set to `value` (raw bytes)."""
    raw = repeatable_mail(random.Random(0), attachments=(("情况清单.xlsx", GOOD_XLSX, factory.XLSX),))
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(name.lower() + b":")]
    return b"\r\n".join([name + b": " + value, *lines]) + sep + body


def raw_text_mail(ctype: bytes) -> bytes:
    return (b"From: scjgj@example.gov.cn\r\nSubject: 2026\xe5\xb9\xb411\xe6\x9c\x88\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: " + ctype + b"\r\n\r\n\xc7\xe5\xb5\xa5\r\n")


FINDINGS = {  # the smallest input for each bug fuzzing found -> the decision it now gets
    "IndexError: a Message-ID of <>": (_with_header(b"Message-ID", b"<>"), "accepted"),
    "ValueError: an encoded CR/LF in a display name": (
        _with_header(b"Cc", b"=?utf-8?B?DQpCY2M6IGV2aWxAeC50ZXN0?= <cc@example.gov.cn>"), "accepted"),
    "UnicodeDecodeError: an RFC 2231 name in UTF-7": (factory.mail(attachments=(("x.xlsx", GOOD_XLSX, factory.XLSX),))
                                                     .replace(b'filename="x.xlsx"', b"filename*=utf-7''%2BZYVT"),
                                                     "accepted"),
    "LookupError: a body in charset x-unknown": (raw_text_mail(b'text/plain; charset="x-unknown"'), "rejected"),
    "LookupError: a body in charset base64": (raw_text_mail(b'text/plain; charset="base64"'), "rejected"),
    "UnicodeError: a body in charset idna": (raw_text_mail(b'text/plain; charset="idna"'), "rejected"),
    "HeaderParseError: a damaged base64 word": (_with_header(b"Subject", b"=?utf-8?B?5riF5Y2VID0/dXRmLTg/Qj9BPz0=?="),
                                                "accepted"),  # 清单 =?utf-8?B?A?=
    "RecursionError: parts nested 1000 deep": (nested("multipart", 1000, b"Content-Type: text/plain\r\n\r\nhi").replace(
        b"Subject: deep", "Subject: 11月清单".encode()), "rejected"),
    "TypeError: an empty 8-bit file name": (factory.mail(attachments=(("x.xlsx", GOOD_XLSX, factory.XLSX),)).replace(
        b'filename="x.xlsx"', 'filename=""; name="清单.xlsx"'.encode()), "accepted"),
    # these passed decide and then failed the commit, every poll: the mailbox stalled behind them
    "receipt: a lone surrogate (UTF-7 subject)": (_with_header(b"Subject", b"=?utf-7?Q?+2AA-?="), "accepted"),
    "receipt: U+0085 in a cp1252 subject": (_with_header(b"Subject", b"=?iso-8859-1?Q?2026=85x?="), "accepted"),
    "receipt: an undecodable word left in the subject": (
        _with_header(b"Subject", b"=?utf-8?B?5riF5Y2VID0/eC11bmtub3duP0I/QUFBQTNEPz0gPT91dGYtOD9CP0E/PQ==?="),
        "accepted"),  # 清单 =?x-unknown?B?AAAA3D?= =?utf-8?B?A?=
}


@pytest.mark.parametrize("finding", FINDINGS)
def test_what_fuzzing_found_stays_fixed(tmp_path, finding):
    raw, status = FINDINGS[finding]
    decision, _row, out = Pipeline(tmp_path).check(raw)  # a database of its own: the first time this file is sent
    assert decision.status == status and len(out) == 1


def test_text_around_an_encoded_word_keeps_its_characters():
    """decode_header hands it back raw-unicode-escaped: 回复 came out as \\u56de\\u590d."""
    assert message.decode_words("回复：=?utf-8?B?5riF5Y2V?= 附件") == "回复：清单 附件"
    assert message.decode_words("C:\\users =?utf-8?B?5riF5Y2V?=") == "C:\\users 清单"


# ---------------------------------------------------------------- end to end, real servers

E2E_MESSAGES = 30


@pytest.mark.config(replies={"daily_cap_per_sender": 1000})
def test_mutated_mail_through_dovecot_and_smtp_ends_in_a_known_state(setup):
    """30 hostile messages (a fixed seed: the same ones every run) appended, polled, answered."""
    rnd = random.Random(20261120)
    sources = itertools.islice(itertools.cycle(MAKERS.values()), E2E_MESSAGES)
    raws = [make(rnd, "") for make in sources]
    for raw in raws:
        setup.account.append(raw, date=ARRIVED)
    setup.poll()

    rows = setup.rows(Message)
    assert len(rows) == E2E_MESSAGES
    assert {m.status for m in rows} <= {*DECISIONS, "duplicate"}
    assert [m for m in rows if m.kind == "error"] == []
    left = [m for m in rows if m.destination == "INBOX"]  # not ours: untouched
    assert setup.account.uids("INBOX") == sorted(m.uid for m in left) and len(left) < E2E_MESSAGES // 3
    moved = len(setup.account.messages("已处理")) + len(setup.account.messages("待人工处理"))
    assert moved == E2E_MESSAGES - len(left) and all(m.moved_at for m in rows if m not in left)
    answered = [m for m in rows if m.status in ("accepted", "rejected") and m.reason != "reply_cap"]
    assert len(answered) >= 10  # the mix reaches the readers, not only the classifier
    captured = setup.smtp.wait_for(len(answered))
    assert len(captured) == len(answered)
    answering = {o.message_id: o.message_pk for o in setup.rows(Outgoing)}
    by_pk = {m.id: m for m in rows}
    for mail in captured:
        original = by_pk[answering[mail.message["Message-ID"].strip("<>")]]
        dept = setup.office.department(original.department_id)
        assert mail.rcpt_tos == (original.sender,) and original.sender in dept.emails
        assert_safe_receipt(Outgoing(recipients=list(mail.rcpt_tos), raw=mail.raw), dept.emails)


# ---------------------------------------------------------------- CPython's own test mail

def _corpus() -> list[Path]:
    return sorted(CPYTHON_MAIL.iterdir()) if CPYTHON_MAIL.is_dir() else []


def as_registered(raw: bytes) -> bytes:
    """The same message from a registered department about its checklist (so it is mailbot's
    to take), so the attachment readers see it too."""
    head, sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    kept, skipping = [], False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = bool(re.match(rb"(?i)(from|sender|message-id|subject):", line))
        if not skipping:
            kept.append(line)
    return "From: scjgj@example.gov.cn\nSubject: 11月情况清单\n".encode() + b"\n".join(kept) + sep + body


def test_cpython_email_corpus_through_parse_classify_and_decide(pipeline):
    """Every file of CPython's test_email data (mail nobody here wrote; images and sounds too),
    as it is and as if a department sent it, ends in a known state."""
    files = _corpus()
    if not files:
        pytest.skip(f"{CPYTHON_MAIL} absent: apt-get install libpython3.11-testsuite")
    office = pipeline.office
    seen = {"as sent": collections.Counter(), "from a department": collections.Counter()}
    for path in files:
        raw = path.read_bytes()
        mail = message.parse(raw)
        message.classify(mail, own_addresses=(office.office.address,), own_id_suffix="@" + office.office.domain)
        for variant, data in (("as sent", raw), ("from a department", as_registered(raw))):
            decision, _row, _out = pipeline.check(data)
            seen[variant][f"{decision.status}/{decision.kind}"] += 1
    messages = [p for p in files if p.name.startswith("msg_")]
    print(f"\nCPython test_email corpus: {len(files)} files ({len(messages)} messages)")
    for variant, counts in seen.items():
        print(f"  {variant}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    assert len(messages) >= 40
    assert sum(seen["as sent"].values()) == len(files)
    # nobody registered sent them: nothing is answered; from a department, most get a receipt
    assert not any(k.startswith(("accepted", "rejected")) for k in seen["as sent"])
    department = seen["from a department"]
    assert sum(v for k, v in department.items() if k.startswith("rejected")) >= len(messages) * 3 // 4
