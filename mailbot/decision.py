"""Raw mail -> what to do with it: classify, find the checklist, read it, apply the rules.

Pure apart from the clock it is given: no database, no network. It runs in the worker
processes (mailbot.workers), which is why it imports nothing of the store. `decide` is the
one place that catches a message's failure: the sender's mistakes become an error receipt,
anything unexpected sends the message to quarantine.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import traceback
from dataclasses import dataclass, field

from . import annotate, checklist as checklist_mod, claim as claim_mod, faults, message, rules, workbook
from .config import Department, OfficeConfig
from .errors import Problem, Rejected

log = logging.getLogger("mailbot.decision")
TRIED_PER_MAIL = 10  # table-like attachments read before giving up: a mail of thousands stays cheap

# NetEase, QQ and Outlook.com put very large files behind a download link in the body.
_LARGE_LINK = re.compile(r"超大附件|large-attachment|附件下载|ftn\.qq\.com|mail\.qq\.com/cgi-bin/ftnExs|1drv\.ms")
_TABLE_NAMES = (".xlsx", ".xlsm", ".xls", ".et", ".ett", ".csv", ".docx", ".doc", ".wps", ".zip", ".rar", ".7z")


@dataclass
class Decision:
    status: str  # accepted, rejected, ignored, quarantined, left (not ours: stays where it is)
    kind: str  # checklist, no_checklist, auto_reply, bounce, own, list, unknown_sender, error; left: claim's reason
    reason: str = ""
    detail: str = ""
    mail: message.Mail | None = None
    department: Department | None = None
    filename: str = ""
    period: str = ""
    period_source: str = ""
    checklist: checklist_mod.Checklist | None = None
    checked: rules.Checked | None = None
    problems: list[Problem] = field(default_factory=list)
    attach_template: bool = False
    annotated: bytes | None = None  # the sender's workbook with every problem marked
    file_sha256: str = ""  # of the attachment read, to recognise a byte-identical resubmission

    @property
    def stores_submission(self) -> bool:
        return self.department is not None and self.kind == "checklist"


def _candidates(mail: message.Mail) -> list[tuple[str, message.Attachment]]:
    """Attachments that may hold the checklist, most likely first; scans and images are not."""
    found = []
    for att in mail.attachments:
        kind = workbook.sniff(att.data)
        named = att.filename.lower().endswith(_TABLE_NAMES)
        if kind in ("xlsx", "xls", "docx", "zip", "encrypted"):
            found.append((0, kind, att))
        elif kind == "csv" and (named or att.filename.lower().endswith(".txt")):
            found.append((1, kind, att))
        elif kind == "unknown" and named:
            found.append((2, kind, att))
    return [(kind, att) for _rank, kind, att in sorted(found, key=lambda f: f[0])]


def _read(office: OfficeConfig, candidates) -> tuple[message.Attachment, checklist_mod.Checklist]:
    """The first attachment that holds a checklist; else the first one's problems."""
    first_error: Rejected | None = None
    for _kind, att in candidates[:TRIED_PER_MAIL]:
        try:
            book = workbook.read(att.data, att.filename, office.limits)
            return att, checklist_mod.parse(book)
        except Rejected as exc:
            if first_error is None:
                first_error = exc
                exc.filename = exc.filename or att.filename
    raise first_error


def decide(office: OfficeConfig, raw: bytes, arrived: dt.datetime, truncated: bool = False, *,
           claim: str | None = None) -> Decision:
    """`claim`: "all" where every mail is ours (the reprocess folder); default `imap.claim`."""
    mail = None
    faults.crash_point("in_decide", raw)
    try:
        mail = message.parse(raw)
        if not truncated:  # a truncated mail was judged from its structure before it was fetched
            verdict = claim_mod.judge(office, mail, claim=claim)
            if verdict.ours is False:
                return Decision("left", verdict.reason, reason=verdict.reason, mail=mail)
        return _decide(office, mail, arrived, truncated)
    except Exception as exc:  # anything unexpected: quarantine this one message, go on with the rest
        log.exception("message=<%s> unexpected error; quarantined", mail.message_id if mail else "?")
        return Decision("quarantined", "error", reason=type(exc).__name__, mail=mail,
                        detail="".join(traceback.format_exception(exc))[-4000:])


def _decide(office: OfficeConfig, mail: message.Mail, arrived: dt.datetime, truncated: bool) -> Decision:
    own = (office.office.address,)
    suffix = "@" + office.office.domain
    why = message.classify(mail, own_addresses=own, own_id_suffix=suffix)
    if why == "own" and not mail.message_id.startswith("mailbot.") and mail.sender not in own:
        why = None  # a colleague on the office's own domain, not mail we wrote (letters.message_id_for)
    if why:
        return Decision("ignored", why, reason=why, mail=mail, detail=mail.diagnostic)
    dept = office.department_for(mail.sender)
    if dept is None:
        return Decision("quarantined", "unknown_sender", reason="unknown_sender", mail=mail)
    if office.authentication.trusted_authserv_id and message.spoofed(mail, office.authentication.trusted_authserv_id):
        return Decision("quarantined", "auth_failed", reason="auth_failed", mail=mail, department=dept,
                        detail="; ".join(mail.auth_results)[:1000])
    local_day = arrived.astimezone(office.office.tz).date()
    if truncated:
        limit = office.limits.max_message_bytes // (1024 * 1024)
        return Decision("rejected", "too_large", reason="too_large", mail=mail, department=dept,
                        period=rules.reporting_period(mail.subject, None, local_day)[0],
                        problems=[Problem("too_large", f"邮件超过{limit}MB，系统未能读取。请只附上情况清单表格（无需附扫描件），或将表格压缩后重新发送。")])
    candidates = _candidates(mail)
    if not candidates and _LARGE_LINK.search(mail.text):
        return Decision("rejected", "no_checklist", reason="large_attachment_link", mail=mail, department=dept,
                        period=rules.reporting_period(mail.subject, None, local_day)[0],
                        problems=[Problem("large_attachment_link",
                                          "邮件中的文件是以“超大附件”下载链接的形式发送的，系统无法自动下载。"
                                          "请将情况清单表格作为普通附件重新发送（表格文件一般很小；如文件较大，可删除其中的图片或另存为.xlsx格式后再发送）。")])
    if not candidates:
        return Decision("rejected", "no_checklist", reason="no_checklist", mail=mail, department=dept,
                        attach_template=True, period=rules.reporting_period(mail.subject, None, local_day)[0],
                        problems=[Problem("no_checklist", "邮件中未找到情况清单附件。请将填写好的情况清单（Excel表格）作为附件发送。")])
    try:
        att, parsed = _read(office, candidates)
    except Rejected as exc:
        period, source = rules.reporting_period(mail.subject, None, local_day)
        return Decision("rejected", "checklist", reason="unreadable", mail=mail, department=dept,
                        filename=exc.filename, period=period, period_source=source,
                        problems=rules.with_severity(exc.problems, office.rules.severity),
                        attach_template=exc.attach_template)
    period, source = rules.reporting_period(mail.subject, parsed, local_day)
    ctx = rules.Context(department=dept, period=period, today=local_day,
                        severity=office.rules.severity, departments=tuple(office.departments))
    checked = rules.check(parsed, ctx)
    status = "accepted" if checked.accepted else "rejected"
    # the department's own file, marked up: only ever sent back to its sender
    annotated = None if checked.accepted else annotate.annotate(
        att.data, workbook.sniff(att.data), parsed, checked.problems, office.limits)
    return Decision(status, "checklist", mail=mail, department=dept, filename=att.filename, annotated=annotated,
                    period=period, file_sha256=hashlib.sha256(att.data).hexdigest(),
                    period_source=source, checklist=parsed, checked=checked, problems=checked.problems,
                    attach_template=any(p.code in ("missing_column", "wrong_template") for p in checked.problems))
