"""Raw mail -> what to do with it: classify, find the checklist, read it, apply the rules.

Pure apart from the clock it is given: no database, no network. It runs in the worker
processes (mailbot.workers), which is why it imports nothing of the store. `decide` is the
one place that catches a message's failure: the sender's mistakes become an error receipt,
anything unexpected sends the message to quarantine.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import traceback
from dataclasses import dataclass, field

from . import annotate, checklist as checklist_mod, faults, message, rules, workbook
from .config import Department, OfficeConfig
from .errors import Problem, Rejected

log = logging.getLogger("mailbot.decision")
TRIED_PER_MAIL = 10  # table-like attachments read before giving up: a mail of thousands stays cheap

# NetEase, QQ and Outlook.com put very large files behind a download link in the body.
_LARGE_LINK = re.compile(r"超大附件|large-attachment|附件下载|ftn\.qq\.com|mail\.qq\.com/cgi-bin/ftnExs|1drv\.ms")
_TABLE_NAMES = (".xlsx", ".xlsm", ".xls", ".et", ".ett", ".csv", ".docx", ".doc", ".wps", ".zip", ".rar", ".7z")


@dataclass
class Decision:
    status: str  # accepted, rejected, ignored, quarantined
    kind: str  # checklist, no_checklist, auto_reply, bounce, own, list, unknown_sender, error
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
    sheet_label: str = ""  # where in the file the checklist was read, as the receipt says it

    @property
    def stores_submission(self) -> bool:
        return self.department is not None and self.kind == "checklist"


def _unwrapped(office: OfficeConfig, mail: message.Mail) -> list[message.Attachment]:
    """The mail's attachments, with each Outlook winmail.dat replaced by the files inside it."""
    out = []
    for att in mail.attachments:
        if workbook.sniff(att.data) != "tnef":
            out.append(att)
            continue
        try:
            files = workbook.tnef_files(att.data, att.filename, office.limits)
        except Rejected:
            out.append(att)  # reading it will say what is wrong
            continue
        out += [message.Attachment(name, "application/octet-stream", data, att.forwarded) for name, data in files]
    return out


def _candidates(attachments: list[message.Attachment]) -> list[tuple[str, message.Attachment]]:
    """Attachments that may hold the checklist, most likely first; scans and images are not."""
    found = []
    for att in attachments:
        kind = workbook.sniff(att.data)
        named = att.filename.lower().endswith(_TABLE_NAMES)
        if kind in ("xlsx", "xls", "ods", "docx", "zip", "tnef", "encrypted"):
            found.append((0, kind, att))
        elif kind == "csv" and (named or att.filename.lower().endswith(".txt")):
            found.append((1, kind, att))
        elif kind == "unknown" and named:
            found.append((2, kind, att))
    return [(kind, att) for _rank, kind, att in sorted(found, key=lambda f: f[0])]


def _other_formats(attachments: list[message.Attachment], limits) -> list[Problem]:
    """What the sender is told about each attached file of another kind than a table (a body's inline
    pictures aside), one message per kind of file."""
    problems: dict[str, Problem] = {}
    for att in attachments:
        kind = workbook.sniff(att.data)
        if kind not in workbook.NOT_TABLES or kind in problems or att.inline or not att.filename:
            continue
        try:
            workbook.read(att.data, att.filename, limits)
        except Rejected as exc:
            problems[kind] = exc.problems[0]
    return list(problems.values())


def _read(office: OfficeConfig, candidates, period: str, firm: bool) -> tuple[message.Attachment, checklist_mod.Checklist]:
    """The first attachment that holds a checklist; else the first one's problems. `period` and
    `firm` choose among the sheets of a workbook kept for the year (checklist.parse)."""
    first_error: Rejected | None = None
    for _kind, att in candidates[:TRIED_PER_MAIL]:
        try:
            book = workbook.read(att.data, att.filename, office.limits)
            return att, checklist_mod.parse(book, period, firm)
        except Rejected as exc:
            if first_error is None:
                first_error = exc
                exc.filename = exc.filename or att.filename
    raise first_error


def sheet_label(kind: str, sheet: str) -> str:
    """Where the checklist stood, for the receipt: 工作表“11月”; a Word file's table by its number;
    nothing for a CSV file (one sheet); inside an archive, the file and then its sheet."""
    member, _, inner = sheet.rpartition(":")
    if member:
        suffix = member.lower().rpartition(".")[2]
        label = sheet_label({"csv": "csv", "txt": "csv", "docx": "docx"}.get(suffix, "xlsx"), inner)
        return f"其中的“{member}”" + (f"，{label}" if label else "")
    if kind == "csv" or not sheet:
        return ""
    return sheet if kind == "docx" else f"工作表“{sheet}”"


def decide(office: OfficeConfig, raw: bytes, arrived: dt.datetime, truncated: bool = False) -> Decision:
    mail = None
    faults.crash_point("in_decide", raw)
    try:
        mail = message.parse(raw)
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
    attachments = _unwrapped(office, mail)
    candidates = _candidates(attachments)
    if not candidates and _LARGE_LINK.search(mail.text):
        return Decision("rejected", "no_checklist", reason="large_attachment_link", mail=mail, department=dept,
                        period=rules.reporting_period(mail.subject, None, local_day)[0],
                        problems=[Problem("large_attachment_link",
                                          "邮件中的文件是以“超大附件”下载链接的形式发送的，系统无法自动下载。"
                                          "请将情况清单表格作为普通附件重新发送（表格文件一般很小；如文件较大，可删除其中的图片或另存为.xlsx格式后再发送）。")])
    if not candidates:
        # a scan, a photo or a Word 97 file instead of the table: say what each one is
        others = _other_formats(attachments, office.limits)
        return Decision("rejected", "no_checklist", reason="not_a_table" if others else "no_checklist", mail=mail,
                        department=dept, attach_template=True,
                        period=rules.reporting_period(mail.subject, None, local_day)[0],
                        problems=others or [Problem("no_checklist", "邮件中未找到情况清单附件。请将填写好的情况清单（Excel表格）作为附件发送。")])
    named = rules.subject_period(mail.subject, local_day)
    try:
        att, parsed = _read(office, candidates, named or f"{local_day:%Y-%m}", firm=named is not None)
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
    kind = workbook.sniff(att.data)
    # the department's own file, marked up: only ever sent back to its sender
    annotated = None if checked.accepted else annotate.annotate(att.data, kind, parsed, checked.problems, office.limits)
    return Decision(status, "checklist", mail=mail, department=dept, filename=att.filename, annotated=annotated,
                    sheet_label=sheet_label(kind, parsed.sheet),
                    period=period,
                    period_source=source, checklist=parsed, checked=checked, problems=checked.problems,
                    attach_template=any(p.code in ("missing_column", "wrong_template") for p in checked.problems))
