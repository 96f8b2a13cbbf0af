"""Which mail is mailbot's. Pure: no I/O.

The office mailbox is the office's everyday mailbox: mailbot takes only submission attempts
and what answers its own mail, and leaves everything else exactly as it was. The same rules
judge a mail from its header and BODYSTRUCTURE (before any body is fetched) and from the
whole parsed mail; from the structure alone the answer may be "cannot tell yet", never a
different one, so mail that is plainly not ours is never downloaded.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from . import message, workbook
from .config import OfficeConfig

# what speaks of the checklist, in a subject or an attachment's name; a bare 清单 is a common
# word in the office's other mail (权责清单, 负面清单, 任务清单): it counts only beside a month,
# a word of credit, or a table-like attachment
_CHECKLIST = re.compile(r"情况清单|信用记录|信用报告")
_BARE = re.compile(r"清单")
_CREDIT = re.compile(r"信用")
_MONTH = re.compile(r"(?<![\d０-９])(?:1[0-2]|0?[1-9]|１[０-２]|０?[１-９]|十[一二]?|[一二三四五六七八九])\s*月")
# the office's other business with the same departments (the notice asks for these too)
_OTHER_MATTER = re.compile(r"行政许可|行政处罚|双公示|奖惩|信用修复")
_TABLE_NAMES = (".xlsx", ".xlsm", ".xls", ".et", ".ett", ".csv", ".docx", ".doc", ".wps", ".zip", ".rar", ".7z")
_TABLE_TYPES = ("application/vnd.ms-excel", "application/vnd.openxmlformats-officedocument", "application/msword",
                "application/zip", "application/x-zip", "application/x-rar", "application/vnd.rar",
                "application/x-7z", "text/csv", "application/csv", "application/vnd.ms-works", "application/kswps",
                "application/wps", "application/vnd.wps")
_NEVER_TABLE = ("image/", "audio/", "video/", "application/pdf", "text/", "message/")
_TABLE_KINDS = ("xlsx", "xls", "docx", "zip", "encrypted")

OURS, LEAVE = True, False


@dataclass(frozen=True)
class Part:
    """An attachment as far as it is known: from BODYSTRUCTURE (`data` None) or the parsed mail."""

    filename: str
    content_type: str
    data: bytes | None = None


@dataclass(frozen=True)
class Verdict:
    ours: bool | None  # None: the body must be read to tell
    reason: str


def _is_ours(office: OfficeConfig, message_id: str) -> bool:
    """letters.is_ours (letters.message_id_for made it), without importing the mail builder
    (jinja2, the models) into the worker processes, which judge every mail."""
    return message_id.startswith("mailbot.") and message_id.endswith("@" + office.office.domain)


def parts_of(mail: message.Mail) -> list[Part]:
    return [Part(a.filename, a.content_type, a.data) for a in mail.attachments]


def table_like(part: Part) -> bool | None:
    """Could this attachment be the checklist? None when only its bytes can tell."""
    name, ctype = part.filename.lower(), part.content_type.lower()
    if name.endswith(_TABLE_NAMES) or ctype.startswith(_TABLE_TYPES):
        return True
    if ctype.startswith(_NEVER_TABLE) and not name.endswith(".txt"):
        return False
    if part.data is None:
        return None
    kind = workbook.sniff(part.data)
    return kind in _TABLE_KINDS or (kind == "csv" and name.endswith(".txt"))


def _document(part: Part) -> bool:
    """An attachment a person attached (not a signature's logo, not the text of the mail)."""
    ctype = part.content_type.lower()
    return not ctype.startswith("image/") and (bool(part.filename) or not ctype.startswith("text/"))


def judge(office: OfficeConfig, mail: message.Mail, parts: list[Part] | None = None, *,
          claim: str | None = None) -> Verdict:
    """Is `mail` mailbot's? `parts` from BODYSTRUCTURE when only the header was fetched (then
    a bounce's quoted Message-IDs and untyped attachments are unknown); None: the whole mail."""
    claim = claim or office.imap.claim
    whole = parts is None
    parts = parts_of(mail) if whole else parts
    address = office.office.address
    if _is_ours(office, mail.message_id) or mail.headers.get("x-mailbot") or mail.sender == address:
        return Verdict(LEAVE, "own")  # our digests, 通报 and alerts to the office's own address are for the clerk
    if claim == "all":
        return Verdict(OURS, "claim_all")
    thread = any(_is_ours(office, i) for i in [mail.in_reply_to, *mail.references] if i)
    robot = message.classify(mail, own_addresses=(address,), own_id_suffix="\0")
    if robot == "bounce":
        if thread or any(_is_ours(office, i) for i in mail.quoted_ids):
            return Verdict(OURS, "bounce")
        return Verdict(LEAVE if whole else None, "bounce_not_ours")
    names = [n for n in [mail.subject] + [p.filename for p in parts] if n]
    tables = [table_like(p) for p in parts]
    speaks = any(_CHECKLIST.search(n) or _BARE.search(n) and (_MONTH.search(n) or _CREDIT.search(n)) for n in names)
    if robot == "list":  # a list is never a submission: ours only when it answers our mail
        return Verdict(OURS, robot) if thread else Verdict(LEAVE, robot)
    if robot:  # an auto-reply: ours when it answers our mail, whose subject it usually quotes
        return Verdict(OURS, robot) if thread or speaks else Verdict(LEAVE, robot)
    if thread:
        return Verdict(OURS, "reply") if any(_document(p) for p in parts) else Verdict(LEAVE, "reply_without_attachment")
    if speaks or True in tables and any(_BARE.search(n) for n in names):
        return Verdict(OURS, "checklist_named")
    if any(_OTHER_MATTER.search(n) for n in names if n):
        return Verdict(LEAVE, "other_matter")
    if office.department_for(mail.sender) is None:
        return Verdict(LEAVE, "not_submission")
    if True in tables:
        return Verdict(OURS, "registered_table")
    if _MONTH.search(mail.subject):
        return Verdict(OURS, "registered_month")
    if None in tables:
        return Verdict(None, "registered_untyped")
    return Verdict(LEAVE, "not_submission")


def from_header(office: OfficeConfig, header: bytes, parts: list[Part]) -> Verdict:
    """`judge` on a header FETCH and BODYSTRUCTURE; a header the parser breaks on cannot tell
    (the whole mail is then fetched, and decided inside decision.decide's guard)."""
    try:
        return judge(office, message.parse(header), parts)
    except Exception as exc:  # the one message is decided whole, where its failure is caught
        return Verdict(None, f"header_unreadable:{type(exc).__name__}")
