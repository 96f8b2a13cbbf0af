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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from . import checklist as checklist_mod, claim as claim_mod, dates, faults, message, rules, workbook
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
    # checklist, no_checklist, auto_reply, bounce, own, list, unknown_sender, bad_sender, suspicious_sender,
    # error; left: claim's reason
    kind: str
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
    others: list[Decision] = field(default_factory=list)  # checklists of other months in the same mail
    notes: list[str] = field(default_factory=list)  # what the receipt says about the attachments passed over
    modified: str = ""  # when the file read was last saved, if it says
    file_sha256: str = ""  # of the attachment read, to recognise a byte-identical resubmission

    @property
    def stores_submission(self) -> bool:
        return self.department is not None and self.kind == "checklist"

    @property
    def parts(self) -> list[Decision]:
        """Every checklist this mail files, each its own submission: this one, then the others."""
        return [self, *self.others]


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


def _books(office: OfficeConfig, candidates) -> tuple[list[tuple[message.Attachment, workbook.Workbook]], list[Rejected]]:
    """Every candidate that can be read (at most TRIED_PER_MAIL of them), and the others' problems."""
    books, errors = [], []
    for _kind, att in candidates[:TRIED_PER_MAIL]:
        try:
            books.append((att, workbook.read(att.data, att.filename, office.limits)))
        except Rejected as exc:
            exc.filename = exc.filename or att.filename
            errors.append(exc)
    return books, errors


_PROBLEM_SHEET_HEADER = ("级别", "工作表", "单元格", "问题说明")


def _ours(book: workbook.Workbook) -> bool:
    """The copy with problems marked that mailbot sent: the custom property annotate.py writes, or
    (a copy from before it, or one WPS saved without it) the 问题清单 sheet as annotate.py lays it out."""
    return book.marked or any(s.name == workbook.LIST_SHEET and any(r[:4] == _PROBLEM_SHEET_HEADER for r in s.rows[:12])
                              for s in book.sheets)


def _dominant_month(parsed: checklist_mod.Checklist, year: int) -> str | None:
    """The month most of the rows are dated in, when more than half of them are."""
    found = Counter()
    for row in parsed.rows:
        day = dates.parse_date(row.cells.get("date"), default_year=year).date
        if day:
            found[f"{day:%Y-%m}"] += 1
    month, count = found.most_common(1)[0] if found else (None, 0)
    return month if count * 2 > len(parsed.rows) else None


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


_NAMED_ADDRESS = re.compile(r"[^\s@<>()\[\],;:\"'“”‘’（）《》，；：]+@[A-Za-z0-9.-]+[A-Za-z0-9]")


def _sender_doubt(office: OfficeConfig, mail: message.Mail) -> Decision | None:
    """Quarantine a mail whose sender cannot be trusted to be who it says (None: it can).

    The actual address decides. A From with no usable address is nobody's, not a bounce (real
    bounces come from MAILER-DAEMON/postmaster or with an empty Return-Path). A display name
    that is a registered address over an actual address not of that department is the trick
    `zhtjj@126.com <attacker@evil.example>`, which once counted as that department."""
    if mail.sender_error:
        return Decision("quarantined", "bad_sender", reason="bad_sender", mail=mail,
                        detail=f"From ({mail.sender_error}): {mail.from_header}")
    dept = office.department_for(mail.sender)
    for named in dict.fromkeys(a.lower() for a in _NAMED_ADDRESS.findall(mail.sender_name)):
        if named == mail.sender:
            continue
        owner = office.department_for(named)
        if named == office.office.address or owner is not None and owner != dept:
            return Decision("quarantined", "suspicious_sender", reason="suspicious_sender", mail=mail,
                            detail=f"display name {named} over the actual address {mail.sender}")
    return None


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
                        detail=message.storable("".join(traceback.format_exception(exc))[-4000:]))


def _decide(office: OfficeConfig, mail: message.Mail, arrived: dt.datetime, truncated: bool) -> Decision:
    own = (office.office.address,)
    suffix = "@" + office.office.domain
    why = message.classify(mail, own_addresses=own, own_id_suffix=suffix)
    if why == "own" and not mail.message_id.startswith("mailbot.") and mail.sender not in own:
        why = None  # a colleague on the office's own domain, not mail we wrote (letters.message_id_for)
    if why:
        return Decision("ignored", why, reason=why, mail=mail, detail=mail.diagnostic)
    doubt = _sender_doubt(office, mail)
    if doubt is not None:
        return doubt
    dept = office.department_for(mail.sender)
    if dept is None:
        return Decision("quarantined", "unknown_sender", reason="unknown_sender", mail=mail)
    if office.authentication.trusted_authserv_id and message.spoofed(mail, office.authentication.trusted_authserv_id):
        return Decision("quarantined", "auth_failed", reason="auth_failed", mail=mail, department=dept,
                        detail="; ".join(mail.auth_results)[:1000])
    local_day = arrived.astimezone(office.office.tz).date()
    said = dict(zip(("period", "period_source"), rules.reporting_period(mail.subject, None, local_day)))
    if truncated:
        limit = office.limits.max_message_bytes // (1024 * 1024)
        return Decision("rejected", "too_large", reason="too_large", mail=mail, department=dept,
                        **said,
                        problems=[Problem("too_large", f"邮件超过{limit}MB，系统未能读取。请只附上情况清单表格（无需附扫描件），或将表格压缩后重新发送。")])
    attachments = _unwrapped(office, mail)
    candidates = _candidates(attachments)
    if not candidates and _LARGE_LINK.search(mail.text):
        return Decision("rejected", "no_checklist", reason="large_attachment_link", mail=mail, department=dept,
                        **said,
                        problems=[Problem("large_attachment_link",
                                          "邮件中的文件是以“超大附件”下载链接的形式发送的，系统无法自动下载。"
                                          "请将情况清单表格作为普通附件重新发送（表格文件一般很小；如文件较大，可删除其中的图片或另存为.xlsx格式后再发送）。")])
    if not candidates:
        # a scan, a photo or a Word 97 file instead of the table: say what each one is
        others = _other_formats(attachments, office.limits)
        return Decision("rejected", "no_checklist", reason="not_a_table" if others else "no_checklist", mail=mail,
                        department=dept, attach_template=True,
                        **said,
                        problems=others or [Problem("no_checklist", "邮件中未找到情况清单附件。请将填写好的情况清单（Excel表格）作为附件发送。")])
    named = rules.subject_period(mail.subject, local_day)
    books, errors = _books(office, candidates)
    notes: list[str] = []
    ours = [(att, book) for att, book in books if _ours(book)]
    if ours and len(ours) < len(books):  # our own marked-up copy came back with the corrected file
        books = [(att, book) for att, book in books if not _ours(book)]
        notes += [f"附件“{att.filename}”是本系统此前发回的问题标注版，未作为清单读取。" for att, _ in ours]
    several = len(books) > 1
    parts: list[Decision] = []
    orders: dict[int, int] = {}  # id(part) -> its place in the mail: the later of two unsaved files is the newer
    for order, (att, book) in enumerate(books):
        # a mail with several files: each file says its month (its name, its sheet, its rows)
        own = rules.subject_period(PurePosixPath(att.filename.replace("\\", "/")).stem, local_day) if several else None
        hint = own or named
        try:
            parsed = checklist_mod.parse(book, hint or f"{local_day:%Y-%m}", firm=hint is not None)
        except Rejected as exc:
            exc.filename = exc.filename or att.filename
            errors.append(exc)
            continue
        if own:
            period, source = own, "filename"
        elif several and (month := parsed.period or _dominant_month(parsed, local_day.year)):
            period, source = month, "subject" if month == named else "sheet" if parsed.period else "rows"
        else:
            period, source = rules.reporting_period(mail.subject, parsed, local_day)
        parts.append(_judge(office, mail, dept, att, book, parsed, period, source, local_day))
        parts[-1].modified = book.modified
        orders[id(parts[-1])] = order
    if not parts:
        first = errors[0]
        period, source = rules.reporting_period(mail.subject, None, local_day)
        return Decision("rejected", "checklist", reason="unreadable", mail=mail, department=dept,
                        filename=first.filename, period=period, period_source=source,
                        problems=rules.with_severity(first.problems, office.rules.severity),
                        attach_template=first.attach_template, notes=notes)
    chosen = []
    for period in sorted({p.period for p in parts}):
        group = [p for p in parts if p.period == period]
        valid = [p for p in group if p.status == "accepted"]
        best = valid[0] if valid else max(group, key=lambda p: (p.modified, orders[id(p)]))
        if len(group) > 1:
            names = "、".join(f"“{p.filename}”" for p in group)
            why = "通过校验的" if valid else "最后保存的"
            rest = "另一份" if len(group) == 2 else "其余各份"
            notes.append(f"附件{names}均为{rules.period_zh(period)}的清单，本次采用{why}附件“{best.filename}”，{rest}未予登记。")
        chosen.append(best)
    first, *others = chosen
    first.others, first.notes = others, notes
    return first


def _judge(office: OfficeConfig, mail: message.Mail, dept: Department, att: message.Attachment, book: workbook.Workbook,
           parsed: checklist_mod.Checklist, period: str, source: str, local_day: dt.date) -> Decision:
    """One checklist judged by the rules, as the submission it makes."""
    ctx = rules.Context(department=dept, period=period, today=local_day,
                        severity=office.rules.severity, departments=tuple(office.departments))
    checked = rules.check(parsed, ctx)
    status = "accepted" if checked.accepted else "rejected"
    kind = workbook.sniff(att.data)
    # the department's own file, marked up: only ever sent back to its sender
    annotated = None
    if not checked.accepted:
        from . import annotate  # openpyxl: imported by a worker only once it marks up a copy

        annotated = annotate.annotate(att.data, kind, parsed, checked.problems, office.limits)
    return Decision(status, "checklist", mail=mail, department=dept, filename=att.filename, annotated=annotated,
                    sheet_label=sheet_label(book.kind if book.kind in ("zip", "tnef") else kind, parsed.sheet),
                    period=period, file_sha256=hashlib.sha256(att.data).hexdigest(),
                    period_source=source, checklist=parsed, checked=checked, problems=checked.problems,
                    attach_template=any(p.code in ("missing_column", "wrong_template") for p in checked.problems))
