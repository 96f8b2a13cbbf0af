"""Write the .eml fixtures of tests/data/mail/: one per mail shape seen in Chinese mailboxes.

The bytes are built by hand where the encoding is the point (GBK names in every form), so the
fixtures show exactly what Foxmail, Outlook, QQ and NetEase webmail send. Run from the repo root:
    .venv/bin/python tests/data/make_mails.py
then `.venv/bin/python tests/data/expect_mails.py` for their golden `.eml.expected.json` (and read its summary).
The workbook inside is built anew each run (its bytes differ): regenerate only the fixtures you mean to change.
"""
from __future__ import annotations

import base64
import sys
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.factory import checklist_xlsx  # noqa: E402

OUT = Path(__file__).parent / "mail"
XLSX = base64.encodebytes(checklist_xlsx()).replace(b"\n", b"\r\n")
NAME = "赞皇县市场监督管理局11月情况清单.xlsx"


def b64(text: str, charset: str) -> str:
    return base64.b64encode(text.encode(charset)).decode()


def head(sender="scjgj@example.gov.cn", subject="=?utf-8?B?" + b64("2026年11月情况清单", "utf-8") + "?=",
         message_id="<fixture@example.gov.cn>", extra="") -> bytes:
    return (f"From: {sender}\r\nTo: office@example.test\r\nSubject: {subject}\r\n"
            f"Date: Fri, 20 Nov 2026 10:00:00 +0800\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n{extra}").encode()


def multipart(parts: list[bytes], boundary="----=_Part_1") -> bytes:
    out = f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'.encode()
    for part in parts:
        out += f"--{boundary}\r\n".encode() + part + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def text_part(text="您好，附件为本单位11月份情况清单，请查收。", charset="gbk") -> bytes:
    return (f'Content-Type: text/plain; charset="{charset}"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            ).encode() + base64.encodebytes(text.encode("gb18030" if charset in ("gbk", "gb2312") else charset))


def xlsx_part(disposition: bytes, ctype_name: bytes = b"") -> bytes:
    return (b"Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" + ctype_name +
            b"\r\nContent-Transfer-Encoding: base64\r\n" + disposition + b"\r\n\r\n" + XLSX)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    files: dict[str, bytes] = {}
    # Foxmail / Outlook on Chinese Windows: RFC 2047 words inside a quoted parameter.
    words = f"=?gbk?B?{b64(NAME, 'gbk')}?="
    files["foxmail_gbk_rfc2047.eml"] = head(message_id="<foxmail@example.gov.cn>") + multipart([
        text_part(), xlsx_part(f'Content-Disposition: attachment; filename="{words}"'.encode(), f'; name="{words}"'.encode())])
    # RFC 2231 with a GB18030 charset (some webmail).
    quoted = urllib.parse.quote(NAME.encode("gb18030"))
    files["rfc2231_gb18030.eml"] = head(message_id="<rfc2231@example.gov.cn>") + multipart([
        text_part(charset="utf-8"), xlsx_part(f"Content-Disposition: attachment; filename*=gb18030''{quoted}".encode())])
    # Raw 8-bit GBK bytes in the header (old clients, some government gateways), GBK subject too.
    raw_name = NAME.encode("gbk")
    files["raw_8bit_gbk.eml"] = head(subject="@SUBJECT@", message_id="<raw8bit@example.gov.cn>").replace(
        b"@SUBJECT@", "2026年11月情况清单".encode("gbk")) + multipart([
        text_part(), xlsx_part(b'Content-Disposition: attachment; filename="' + raw_name + b'"')])
    # A forwarded mail: the checklist sits inside an attached message/rfc822.
    inner = head(sender="clerk@163.com", message_id="<inner@163.com>") + multipart([
        text_part(), xlsx_part(f'Content-Disposition: attachment; filename="{words}"'.encode())], "inner_b")
    files["forwarded.eml"] = head(subject="=?utf-8?B?" + b64("转发：2026年11月情况清单", "utf-8") + "?=",
                                  message_id="<fwd@example.gov.cn>") + multipart([
        text_part("请查收转发的清单。"),
        b'Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename="forward.eml"\r\n\r\n' + inner])
    # A workbook plus a scanned, stamped PDF (盖章扫描件): the PDF is archived and ignored.
    pdf = base64.encodebytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    files["with_pdf_scan.eml"] = head(message_id="<pdf@example.gov.cn>") + multipart([
        text_part(),
        (b'Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="'
         + f"=?utf-8?B?{b64('盖章扫描件.pdf', 'utf-8')}?=".encode() + b'"\r\n\r\n' + pdf),
        xlsx_part(f'Content-Disposition: attachment; filename="{words}"'.encode())])
    # An auto-reply (RFC 3834) and an Outlook out-of-office reply.
    files["auto_reply.eml"] = head(subject="=?utf-8?B?" + b64("自动回复：回执：【已受理】2026年11月情况清单", "utf-8") + "?=",
                                   message_id="<auto@example.gov.cn>", extra="Auto-Submitted: auto-replied\r\n") + \
        b'Content-Type: text/plain; charset="utf-8"\r\n\r\n' + "您好，我正在休假，将于下周回复。".encode()
    files["outlook_oof.eml"] = head(subject="Automatic reply: 2026", message_id="<oof@example.gov.cn>",
                                    extra="X-Auto-Response-Suppress: All\r\n") + b'Content-Type: text/plain\r\n\r\nAway.\r\n'
    files["precedence_bulk.eml"] = head(message_id="<bulk@example.gov.cn>", extra="Precedence: bulk\r\n") + \
        b'Content-Type: text/plain\r\n\r\nnewsletter\r\n'
    files["mailing_list.eml"] = head(message_id="<list@example.gov.cn>", extra="List-Id: <notices.example.gov.cn>\r\n") + \
        b'Content-Type: text/plain\r\n\r\nlist\r\n'
    # A delivery-status bounce of one of our receipts (message id filled in by the test).
    files["dsn_bounce.eml"] = head(sender="MAILER-DAEMON@mx.example.test", subject="Undelivered Mail Returned to Sender",
                                   message_id="<bounce@mx.example.test>") + (
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="rep"\r\n\r\n'
        b'--rep\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n'
        b'--rep\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.test\r\n\r\n'
        b'Final-Recipient: rfc822; gone@example.gov.cn\r\nAction: failed\r\nStatus: 5.1.1\r\n'
        b'Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n'
        b'--rep\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: office@example.test\r\nTo: gone@example.gov.cn\r\n'
        b'Subject: receipt\r\nMessage-ID: <{OUR_MESSAGE_ID}>\r\n\r\n--rep--\r\n')
    # QQ-style bounce: no multipart/report, the original headers quoted in the body.
    files["qq_bounce.eml"] = head(sender="postmaster@qq.com", subject="=?utf-8?B?" + b64("退信", "utf-8") + "?=",
                                  message_id="<qqbounce@qq.com>") + (
        b'Content-Type: text/plain; charset="utf-8"\r\n\r\n' + "很抱歉，您的邮件未能送达。\r\n".encode() +
        b"Message-ID: <{OUR_MESSAGE_ID}>\r\n")
    files["unknown_sender.eml"] = head(sender="stranger@qq.com", message_id="<stranger@qq.com>") + multipart([
        text_part(), xlsx_part(f'Content-Disposition: attachment; filename="{words}"'.encode())])
    files["failed_auth.eml"] = (b"Authentication-Results: example.test; spf=fail smtp.mailfrom=example.gov.cn; "
                                b"dkim=fail header.d=example.gov.cn\r\n") + head(message_id="<spoof@example.gov.cn>") + multipart([
        text_part(), xlsx_part(f'Content-Disposition: attachment; filename="{words}"'.encode())])
    files["no_attachment.eml"] = head(message_id="<noatt@example.gov.cn>") + text_part("清单见附件。", "utf-8").replace(
        b"Content-Type", b"Content-Type", 1)
    files["large_attachment_link.eml"] = head(message_id="<large@163.com>", sender="scj_clerk@163.com") + (
        b'Content-Type: text/html; charset="utf-8"\r\n\r\n' +
        "<p>从网易163邮箱发来的超大附件</p><p>赞皇县市场监督管理局11月情况清单.xlsx (52.3M, 2026年12月5日 10:00 到期)</p>"
        '<a href="https://mail.163.com/large-attachment-download/index.html?p=X66&file=abc">下载</a>'.encode())
    # GBK-only characters (镕 珺 喆 are not in GB2312) under the gb2312 label, as every Chinese
    # client writes them: in the sender's name, the subject, the body and the file name.
    person, subject = "朱镕", "关于王珺、李喆报送2026年11月情况清单"
    gbk_name = "赞皇县市场监督管理局11月情况清单（王珺、李喆）.xlsx"
    body = "您好，附件为王珺、李喆整理的11月份情况清单，请查收。朱镕"
    gb_body = (b'Content-Type: text/plain; charset="gb2312"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n'
               + body.encode("gbk"))
    words = f"=?gb2312?B?{b64(gbk_name, 'gbk')}?="
    files["gb2312_label_rfc2047.eml"] = head(
        sender=f"=?gb2312?B?{b64(person, 'gbk')}?= <scjgj@example.gov.cn>", subject=f"=?gb2312?B?{b64(subject, 'gbk')}?=",
        message_id="<gb2312-2047@example.gov.cn>") + multipart([
            gb_body, xlsx_part(f'Content-Disposition: attachment; filename="{words}"'.encode(), f'; name="{words}"'.encode())])
    raw = gbk_name.encode("gbk")
    cut = raw.index("珺".encode("gbk")) + 1  # Outlook cuts sections at a fixed length: here inside 珺
    sections = f"filename*0*=gb2312''{urllib.parse.quote(raw[:cut])};\r\n filename*1*={urllib.parse.quote(raw[cut:])}"
    files["gb2312_label_rfc2231.eml"] = head(
        sender=f'"=?gbk?Q?{urllib.parse.quote(person.encode("gbk")).replace("%", "=")}?=" <scjgj@example.gov.cn>',
        subject=f"=?gb2312?Q?{urllib.parse.quote(subject.encode('gbk')).replace('%', '=')}?=",
        message_id="<gb2312-2231@example.gov.cn>") + multipart([
            gb_body, xlsx_part(f"Content-Disposition: attachment;\r\n {sections}".encode())])
    files["gbk_raw_8bit.eml"] = head(sender="@FROM@", subject="@SUBJECT@", message_id="<gbk-raw@example.gov.cn>").replace(
        b"@FROM@", person.encode("gbk") + b" <scjgj@example.gov.cn>").replace(b"@SUBJECT@", subject.encode("gbk")) + multipart([
            gb_body, xlsx_part(b'Content-Disposition: attachment; filename="' + raw + b'"')])
    for name, data in files.items():
        if sys.argv[1:] and name not in sys.argv[1:]:
            continue
        (OUT / name).write_bytes(data)
    print(f"wrote fixtures to {OUT}")


if __name__ == "__main__":
    main()
