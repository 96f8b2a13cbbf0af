"""Security: what a hostile sender can make mailbot write, where, and to whom.

Through the real pipeline (Dovecot, aiosmtpd, SQLite): no header of the sender's making in our
replies; no HTML of the sender's making in the HTML part; no attachment name becomes a path;
no external XML entity is ever resolved; and, over every mail of a mixed month (departments,
strangers, resubmissions, a forwarded sheet, robots, reminders, notices, the 通报 and the
digest), a department's data reaches only that department and the office, and an ID number is
whole only in the receipt to the department that sent it.
"""
from __future__ import annotations

import base64
import collections
import datetime as dt
import email
import email.policy
import html
import io
import json
import re
import socket
import sqlite3
import threading
import urllib.parse
import uuid
import zipfile
from email.message import EmailMessage
from pathlib import Path

import openpyxl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailbot import annotate, codes, digest, letters, schedule
from mailbot.cli import main
from mailbot.models import Message, Outgoing, Submission
from tests import factory
from tests.test_fuzz import RECEIPT_HEADERS, Pipeline, assert_safe_receipt

SCJGJ, CLERK, CZJ, ZHZ = "scjgj@example.gov.cn", "scj_clerk@163.com", "czj@example.gov.cn", "zhz@qq.com"
EVIL = "evil@attacker.test"
CST = factory.CST


def b64_word(text: str) -> str:
    return "=?utf-8?B?" + base64.b64encode(text.encode("utf-8", "surrogatepass")).decode() + "?="


def raw_mail(subject: str = "", sender: str = SCJGJ, attachments=(), extra: str = "", message_id: str = "") -> bytes:
    """A mail written byte by byte: `subject` and the attachments' Content-Disposition as given."""
    head = (f"From: {sender}\r\nTo: office@example.test\r\nSubject: {subject}\r\nDate: Fri, 20 Nov 2026 10:00:00 +0800\r\n"
            f"Message-ID: <{message_id or uuid.uuid4().hex}@example.gov.cn>\r\nMIME-Version: 1.0\r\n{extra}"
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain; charset="utf-8"\r\n\r\n'
            "请查收。\r\n")
    out = head.encode()
    for disposition, data in attachments:
        out += (b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
                b"Content-Disposition: attachment; " + disposition.encode() + b"\r\n\r\n" + base64.encodebytes(data))
    return out + b"--b--\r\n"


def rfc2231(name: str) -> str:
    return "filename*=utf-8''" + urllib.parse.quote(name.encode("utf-8"), safe="")


BAD_ROWS = [("赞皇县某公司", "食品经营许可证核发", "2026-13-40", "经信用中国查询", "无")]


def header_lines(raw: bytes) -> list[bytes]:
    return raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")


def assert_only_our_headers(raw: bytes) -> None:
    """Every header line is one we write, or a folded continuation of one."""
    for line in header_lines(raw):
        if line[:1] in (b" ", b"\t"):
            continue
        name = line.split(b":", 1)[0].decode().lower()
        assert name in RECEIPT_HEADERS, line


# ---------------------------------------------------------------- header injection

INJECTIONS = {
    "crlf in an encoded subject": dict(subject=b64_word("2026年11月清单\r\nBcc: " + EVIL)),
    # decoded twice by the reader, the third decoding was EmailMessage's, in our own receipt
    "encoded word inside an encoded word": dict(subject=b64_word(b64_word(b64_word("\r\nBcc: " + EVIL)))),
    "unicode line separators": dict(subject=b64_word("清单\u2028Bcc: " + EVIL + "\x85X-Injected: 1\u2029")),
    "a lone surrogate (utf-7)": dict(subject="=?utf-7?Q?+2AA-?= 2026年11月".encode().decode("latin-1")),
    "an unknown charset in a literal word": dict(subject=b64_word("清单 =?x-unknown?B?AAAA3D?=")),
    "crlf in an rfc2231 file name": dict(attachments=[(rfc2231("清单\r\nBcc: " + EVIL + "\r\n.xlsx"), None)]),
    "crlf in an encoded file name": dict(attachments=[(f'filename="{b64_word("清单.xlsx" + chr(13) + chr(10) + "Bcc: " + EVIL)}"', None)]),
    "encoded word as a file name": dict(attachments=[(rfc2231(b64_word(b64_word("\r\nBcc: " + EVIL)) + ".xlsx"), None)]),
}


def test_header_injection_through_subject_or_file_name_never_reaches_a_reply(setup):
    for i, case in enumerate(INJECTIONS.values()):
        atts = [(disp, factory.checklist_xlsx(BAD_ROWS)) for disp, _ in case.get("attachments", [])] or \
            [(rfc2231("清单.xlsx"), factory.checklist_xlsx(report_date=dt.date(2026, 11, 1 + i)))]  # not the same file
        raw = raw_mail(case.get("subject", "2026年11月清单"), attachments=atts, message_id=f"inj{i}")
        setup.account.append(raw.decode("latin-1").encode("latin-1"), date=factory.ON_TIME)
    setup.poll()

    rows = setup.rows(Message)
    assert len(rows) == len(INJECTIONS) and {m.kind for m in rows} == {"checklist"}, [(m.kind, m.reason) for m in rows]
    captured = setup.smtp.wait_for(len(INJECTIONS))
    assert len(captured) == len(INJECTIONS)
    for mail in captured:
        assert mail.rcpt_tos == (SCJGJ,)
        assert_only_our_headers(mail.raw)
        msg = mail.message
        assert [a.addr_spec for a in msg["To"].addresses] == [SCJGJ]
        assert msg["Bcc"] is None and msg["Cc"] is None and msg["X-Injected"] is None
        assert not re.search(r"[\r\n\x85\u2028\u2029]", str(msg["Subject"]))
        for part in msg.iter_attachments():
            assert not re.search(r"[\r\n/\\]", part.get_filename())
    annotated = [p.get_filename() for m in captured for p in m.message.iter_attachments()]
    assert "清单 Bcc: evil@attacker.test （问题标注）.xlsx" in annotated


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=st.text(), name=st.text())
def test_any_subject_and_file_name_give_a_receipt_with_only_our_headers(pipeline, subject, name):
    raw = raw_mail(b64_word(subject), attachments=[(rfc2231(name), factory.checklist_xlsx(BAD_ROWS))])
    decision, _row, [receipt] = pipeline.check(raw)
    assert decision.status == "rejected"
    assert_only_our_headers(receipt.raw)
    assert_safe_receipt(receipt, [SCJGJ])


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    return Pipeline(tmp_path_factory.mktemp("security"))


# ---------------------------------------------------------------- HTML

def html_of(captured) -> str:
    return captured.message.get_body(preferencelist=("html",)).get_content()


def test_html_from_subject_file_name_and_cells_is_escaped(setup):
    wb = openpyxl.load_workbook(io.BytesIO(factory.checklist_xlsx(BAD_ROWS, unit="<script>alert('unit')</script>")))
    wb.active.title = "情况清单<b>"
    wb.active["C7"] = "<img src=x onerror=alert('date')>"
    out = io.BytesIO()
    wb.save(out)
    setup.account.append(factory.mail(subject="<script>alert('subject')</script>2026年11月清单",
                                      attachments=(("<img src=x onerror=alert(1)>.xlsx", out.getvalue(), factory.XLSX),)))
    setup.poll()
    [receipt] = setup.smtp.messages
    html = html_of(receipt)
    assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;2026年11月清单" in html
    assert "&lt;img src=x onerror=alert(1)&gt;.xlsx" in html
    assert "&lt;script&gt;alert(&#39;unit&#39;)&lt;/script&gt;" in html  # the unit, quoted by a problem
    assert "情况清单&lt;b&gt;" in html  # the sheet name, quoted in every located problem
    assert not re.search(r"<(script|img|b>)", html, re.I)
    text = receipt.message.get_body(preferencelist=("plain",)).get_content()
    assert "<script>alert('unit')</script>" in text  # plain text stays as the clerk typed it


# ---------------------------------------------------------------- paths

def test_attachment_names_never_become_paths(setup, tmp_path, monkeypatch):
    tag = uuid.uuid4().hex
    cwd = tmp_path / "cwd" / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    names = [f"../../../../../../../../tmp/mailbot-{tag}-1.xlsx", f"..\\..\\..\\..\\..\\..\\tmp\\mailbot-{tag}-2.xls",
             f"/tmp/mailbot-{tag}-3.csv", f"C:\\mailbot-{tag}-4.docx", f"../mailbot-{tag}-5.xlsx", "..", "/"]
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:  # members named like paths: read in memory, never extracted
        zf.writestr(f"../../../../../../tmp/mailbot-{tag}-6.xlsx", factory.checklist_xlsx(BAD_ROWS))
        zf.writestr(f"/tmp/mailbot-{tag}-7.xlsx", b"not a workbook")
    before = {p for p in tmp_path.rglob("*")}
    for i, name in enumerate(names):
        setup.account.append(raw_mail("2026年11月清单", attachments=[(rfc2231(name), factory.checklist_xlsx(BAD_ROWS))],
                                      message_id=f"path{i}"))
    setup.account.append(raw_mail("2026年11月清单", attachments=[(rfc2231(f"../../{tag}.zip"), inner.getvalue())]))
    setup.poll()

    assert len(setup.smtp.wait_for(len(names) + 1)) == len(names) + 1
    leaked = [p for p in [*Path("/tmp").glob(f"*{tag}*"), *tmp_path.parent.rglob(f"*{tag}*"), *Path("/").glob(f"*{tag}*")]]
    assert leaked == []
    archive = setup.config.archive.dir
    created = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert created, "the archive and the database are files too"
    for path in created:
        rel = path.relative_to(setup.var)  # nothing outside var/
        assert re.fullmatch(r"mailbot\.db(-wal|-shm|-journal)?|mailbot\.yaml|mailbot\.db\.lock", str(rel)) or \
            (path.is_relative_to(archive) and re.fullmatch(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{64}\.eml",
                                                           str(path.relative_to(archive)))), path
    for mail in setup.smtp.messages:
        for part in mail.message.iter_attachments():
            filename = part.get_filename()
            assert not re.search(r"[/\\]", filename) and not filename.startswith("."), filename
    subs = setup.rows(Submission)
    assert f"mailbot-{tag}-1（问题标注）.xlsx" in [p.get_filename() for m in setup.smtp.messages
                                                  for p in m.message.iter_attachments()]
    assert len(subs) == len(names) + 1


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_annotated_file_name_is_a_bare_name(name):
    out = annotate.annotated_filename(name)
    sent = letters.one_line(out, 120)
    assert sent.endswith("（问题标注）.xlsx") and len(sent) <= 100
    assert "/" not in sent and "\\" not in sent and not sent.startswith(".")


# ---------------------------------------------------------------- XXE

class _Listener:
    """A TCP port that records whether anyone connected (an external entity fetched over HTTP)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.hits = 0
        self.port = self.sock.getsockname()[1]
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.hits += 1
            conn.close()

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def _edited(data: bytes, edits: dict, added: dict | None = None) -> bytes:
    """The zip `data` with members rewritten by `edits` ({name: bytes -> bytes}) and `added`."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for info in src.infolist():
            blob = src.read(info)
            zf.writestr(info.filename, edits[info.filename](blob) if info.filename in edits else blob)
        for name, blob in (added or {}).items():
            zf.writestr(name, blob)
    return out.getvalue()


def _doctype(xml: bytes, dtd: str) -> bytes:
    decl, found, rest = xml.partition(b"?>")
    return decl + found + dtd.encode() + rest if found else dtd.encode() + xml


_A7 = re.compile(rb'<c r="A7" s="6" t="inlineStr"><is><t>.*?</t></is></c>')


def shared_strings_xlsx(dtd: str, text: str) -> bytes:
    """The filled template with A7 taken from a sharedStrings part holding `text` (raw XML)."""
    sst = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>{dtd}<sst xmlns="http://schemas.openxmlformats.org/'
           f'spreadsheetml/2006/main" count="1" uniqueCount="1"><si><t>{text}</t></si></sst>').encode()
    ns = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"
    return _edited(factory.checklist_xlsx(), {
        "[Content_Types].xml": lambda x: x.replace(b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType='
                                                   b'"application/vnd.openxmlformats-officedocument.spreadsheetml.'
                                                   b'sharedStrings+xml"/></Types>'),
        "xl/_rels/workbook.xml.rels": lambda x: x.replace(
            b"</Relationships>", f'<Relationship Type="{ns}" Target="sharedStrings.xml" Id="rId9"/></Relationships>'.encode()),
        "xl/worksheets/sheet1.xml": lambda x: _A7.sub(b'<c r="A7" s="6" t="s"><v>0</v></c>', x, count=1),
    }, {"xl/sharedStrings.xml": sst})


def xxe_files(secret: Path, port: int) -> dict[str, bytes]:
    file_dtd = f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>'
    http_dtd = f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "http://127.0.0.1:{port}/x">]>'
    param_dtd = f'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:{port}/p.dtd"> %p;]>'
    doc = (Path(__file__).parent / "data" / "workbooks" / "official.docx").read_bytes()
    return {
        "shared_strings_file.xlsx": shared_strings_xlsx(file_dtd, "&xxe;"),
        "shared_strings_http.xlsx": shared_strings_xlsx(http_dtd, "&xxe;"),
        "parameter_entity.xlsx": shared_strings_xlsx(param_dtd, "赞皇县某食品有限公司"),
        "sheet_file.xlsx": _edited(factory.checklist_xlsx(), {"xl/worksheets/sheet1.xml": lambda x: _A7.sub(
            b'<c r="A7" s="6" t="inlineStr"><is><t>&xxe;</t></is></c>', _doctype(x, file_dtd), count=1)}),
        "workbook_file.xlsx": _edited(factory.checklist_xlsx(), {"xl/workbook.xml": lambda x: _doctype(x, file_dtd)}),
        "document_file.docx": _edited(doc, {"word/document.xml": lambda x: _doctype(x, file_dtd).replace(
            b"<w:t>", b"<w:t>&xxe;", 1)}),
    }


def _every_text(blob: bytes) -> bytes:
    """`blob` and, when it is a zip (xlsx, docx), every member inflated, XML character
    references (openpyxl writes 赞 as &#36190;) resolved."""
    found = [blob]
    if blob[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(blob)) as zf:
                members = [_every_text(zf.read(i)) for i in zf.infolist()]
        except zipfile.BadZipFile:
            members = []
        found += [html.unescape(m.decode("utf-8", "replace")).encode() for m in members]
    return b"\n".join(found)


def mail_contents(raw: bytes) -> bytes:
    """What a mail says (From, To, Subject and every part, decoded, attachments unzipped); not
    its Message-IDs and boundaries, whose random digits could pass for an ID number."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    out = [str(msg[name]).encode() for name in ("From", "To", "Subject") if msg[name] is not None]
    for part in msg.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True) or b""
        out.append(part.get_content().encode() if part.get_content_maintype() == "text" else _every_text(payload))
    return b"\n".join(out)


def test_external_entities_are_never_resolved_into_any_output(setup, tmp_path, capsys):
    marker = f"XXE-MARKER-{uuid.uuid4().hex}"
    secret = tmp_path / "secret.txt"
    secret.write_text(marker)
    listener = _Listener()
    try:
        files = xxe_files(secret, listener.port)
        for i, (name, data) in enumerate(files.items()):
            setup.account.append(raw_mail("2026年11月清单", attachments=[(rfc2231(name), data)], message_id=f"xxe{i}"))
        setup.poll()
        checks = []
        for name, data in files.items():
            path = tmp_path / name
            path.write_bytes(data)
            capsys.readouterr()
            assert main(["check", str(path), "--json"]) == 1
            checks.append(capsys.readouterr().out)
    finally:
        listener.close()

    assert listener.hits == 0
    control = tmp_path / "control.xlsx"  # the same construction without an entity reads fine
    control.write_bytes(shared_strings_xlsx("", "赞皇县某食品有限公司"))
    assert main(["check", str(control), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rows"][0]["entity"] == "赞皇县某食品有限公司"
    rows = setup.rows(Message)
    assert len(rows) == len(files) and {m.status for m in rows} == {"rejected"}
    subs = setup.rows(Submission)
    assert all(s.problems[0]["code"] == "unreadable" for s in subs), [s.problems for s in subs]
    outputs = [mail_contents(m.raw) for m in setup.smtp.wait_for(len(files))]
    assert len(outputs) == len(files)
    outputs += [c.encode() for c in checks] + [json.dumps(json.loads(c), ensure_ascii=False).encode() for c in checks]
    with sqlite3.connect(setup.var / "mailbot.db") as db:
        outputs.append("\n".join(db.iterdump()).encode())
    outputs += [_every_text(p.read_bytes()) for p in setup.var.rglob("*") if p.is_file()]
    assert all(marker.encode() not in blob for blob in outputs)
    assert "未予受理" in outputs[0].decode(errors="replace")  # the outputs searched are the real ones


# ---------------------------------------------------------------- one department's data, another's address

ID_SCJ = "11010519491231002X"  # valid (domain.md's sample)
ID_SCJ_BAD = "110105194912310021"  # wrong check digit: quoted by the id_invalid problem
ID_CZJ = "130129198001010010"
ID_CZJ_BAD = "130129198001010011"  # quoted in czj's receipt, masked in its reminder
ID_STRANGER = "130129199002020020"
ENTITIES = {  # who each entity's data belongs to
    "赞皇县甲食品有限公司": "scjgj", "赞皇县乙建筑有限公司": "scjgj", f"张甲（{ID_SCJ}）": "scjgj",
    f"李乙（{ID_SCJ_BAD}）": "scjgj", "赞皇县丙商贸有限公司": "czj", f"王丙（{ID_CZJ}）": "czj", f"孙戊（{ID_CZJ_BAD}）": "czj",
    f"赵丁（{ID_STRANGER}）": "stranger",
}
KNOWN_IDS = {ID_SCJ, ID_SCJ_BAD, ID_CZJ, ID_CZJ_BAD, ID_STRANGER}
_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")


def _rows(*entities: str, date="2026-11-03") -> list[tuple]:
    return [(e, "食品经营许可证核发", date, "经信用中国查询，无失信记录", "无") for e in entities]


def _forward(sender: str, inner: bytes, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, "office@example.test", subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.gov.cn>"
    msg.set_content("转发的清单，请查收。")
    msg.add_attachment(email.message_from_bytes(inner, policy=email.policy.default))
    return msg.as_bytes(policy=email.policy.SMTP)


@pytest.mark.config(imap={"since": "2026-11-01"})  # installed in November: October's deadline is history
def test_data_of_one_department_reaches_only_that_department_and_the_office(setup):
    """A month of mixed mail, then every captured mail is judged by what it carries."""
    at = lambda day, hour=10: dt.datetime(2026, 11, day, hour, tzinfo=CST)  # noqa: E731
    scj_first = factory.mail(sender=SCJGJ, attachments=(("清单.xlsx", factory.checklist_xlsx(
        _rows("赞皇县甲食品有限公司", "赞皇县乙建筑有限公司", f"张甲（{ID_SCJ}）")), factory.XLSX),))
    scj_resubmit_bad = factory.mail(sender=CLERK, subject="回复：2026年11月清单（修改）", attachments=(("清单.xlsx", factory.checklist_xlsx(
        _rows("赞皇县甲食品有限公司", f"李乙（{ID_SCJ_BAD}）")), factory.XLSX),))
    czj_forwards_scj = _forward(CZJ, scj_first, "转发：2026年11月清单")
    czj_spoofy = factory.mail(sender=f'"赞皇镇人民政府" <{CZJ}>', headers={"Reply-To": ZHZ, "Sender": EVIL},
                              attachments=(("清单.xlsx", factory.checklist_xlsx(
                                  _rows("赞皇县丙商贸有限公司", f"孙戊（{ID_CZJ_BAD}）"),
                                  unit="赞皇县财政局"), factory.XLSX),))
    stranger = factory.mail(sender="stranger@qq.com", subject="<script>alert(1)</script>", attachments=(
        ("清单.xlsx", factory.checklist_xlsx(_rows(f"赵丁（{ID_STRANGER}）")), factory.XLSX),))
    auto_reply = factory.mail(sender=ZHZ, subject="自动回复：清单", headers={"Auto-Submitted": "auto-replied"})
    czj_late_good = factory.mail(sender=CZJ, attachments=(("清单.xlsx", factory.checklist_xlsx(
        _rows("赞皇县丙商贸有限公司", f"王丙（{ID_CZJ}）"), unit="赞皇县财政局"), factory.XLSX),))

    sent_by: dict[str, set[str]] = {}  # text -> departments whose registered address sent it
    for raw, sender, day in [(scj_first, "scjgj", 10), (scj_first, "scjgj", 10), (scj_resubmit_bad, "scjgj", 11),
                             (czj_forwards_scj, "czj", 12), (czj_spoofy, "czj", 12), (stranger, None, 12),
                             (auto_reply, "zhz", 13)]:
        setup.account.append(raw, date=at(day))
        for text in (*ENTITIES, *(d["name"] for d in factory.DEPARTMENTS), *KNOWN_IDS):
            if sender and text.encode() in mail_contents(raw):
                sent_by.setdefault(text, set()).add(sender)
    setup.poll()
    office = setup.office
    schedule.tick(setup.engine, office, at(20, 9) + dt.timedelta(minutes=5))  # reminders: czj rejected, zhz missing
    schedule.tick(setup.engine, office, at(26, 9) + dt.timedelta(minutes=5))  # notices and the 通报
    setup.account.append(czj_late_good, date=at(27))
    sent_by.setdefault("赞皇县丙商贸有限公司", set()).add("czj")
    setup.poll()
    digest.queue_monthly(setup.engine, office, "2026-11", at(30, 12))
    from mailbot import runner
    runner.deliver_all_due(setup.engine, office)

    kinds = collections.Counter(o.kind for o in setup.rows(Outgoing))
    assert {k: kinds[k] for k in ("receipt", "reminder", "notice", "tongbao", "digest")} == \
        {"receipt": 5, "reminder": 2, "notice": 2, "tongbao": 1, "digest": 1}, kinds
    assert set(kinds) <= {"receipt", "reminder", "notice", "tongbao", "digest", "weekly"}, kinds
    captured = setup.smtp.wait_for(sum(kinds.values()))
    assert len(captured) == sum(kinds.values())
    registered = {d.id: set(d.emails) for d in office.departments}
    office_addresses = set(office.recipients.digest) | set(office.recipients.escalation)
    owners = {**ENTITIES, **{d["name"]: d["id"] for d in factory.DEPARTMENTS}}
    for mail in captured:
        to = set(mail.rcpt_tos)
        kind = mail.message["X-Mailbot"]
        content = mail_contents(mail.raw).decode("utf-8", "replace")
        assert_only_our_headers(mail.raw) if kind == "receipt" else None
        html = mail.message.get_body(preferencelist=("html",)).get_content()
        assert "<script" not in html.lower()
        if to <= office_addresses:
            assert kind in ("tongbao", "digest", "weekly"), kind
            readers = None  # the office reads everything, but no whole ID number
        else:
            [dept] = [d for d, emails in registered.items() if to <= emails]  # one department's addresses only
            readers = dept
        for text, owner in owners.items():
            if readers is None or text.split("（")[0] not in content:
                continue
            assert readers == owner or readers in sent_by.get(text, set()), (kind, sorted(to), text)
        for number in {n for n in _ID.findall(content) if n in KNOWN_IDS or codes.id_check(n) is None}:
            assert kind == "receipt" and readers in sent_by.get(number, set()), (kind, sorted(to), number)

    receipts = {m.rcpt_tos: m for m in captured if m.message["X-Mailbot"] == "receipt"}
    assert set(receipts) == {(SCJGJ,), (CLERK,), (CZJ,)}  # never the Reply-To, the Sender or a stranger
    assert ID_SCJ_BAD in mail_contents(receipts[(CLERK,)].raw).decode(errors="replace")  # whole, to the sender
    reminders = [m for m in captured if m.message["X-Mailbot"] == "reminder"]
    assert sorted(m.rcpt_tos for m in reminders) == [(CZJ,), (ZHZ,)]
    assert "130129********0011" in mail_contents(next(m for m in reminders if m.rcpt_tos == (CZJ,)).raw).decode(errors="replace")
    assert [m.status for m in setup.rows(Message) if m.sender == "stranger@qq.com"] == ["quarantined"]
