"""One message through the flow: archive, classify, read, validate, store, queue the answer.

`decide` is the one place that catches a message's failure: the sender's mistakes become an
error receipt, anything unexpected sends the message to quarantine. `commit` then writes the
decision, the submission, its rows and the receipt in ONE transaction, so a crash at any
point leaves either nothing (the mail is handled again) or everything (it is only moved).
"""
from __future__ import annotations

import datetime as dt
import logging
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from . import annotate, archive, checklist as checklist_mod, faults, letters, message, rules, store, workbook
from .config import Department, OfficeConfig
from .errors import Problem, Rejected
from .models import Message, Outgoing, Row, Submission, utcnow
from .obligations import deadline

log = logging.getLogger("mailbot.intake")

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
    for _kind, att in candidates:
        try:
            book = workbook.read(att.data, att.filename, office.limits)
            return att, checklist_mod.parse(book)
        except Rejected as exc:
            if first_error is None:
                first_error = exc
                exc.filename = exc.filename or att.filename
    raise first_error


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
    why = message.classify(mail, own_addresses=own, own_id_suffix="@" + office.office.domain)
    if why == "own" and not letters.is_ours(office, mail.message_id) and mail.sender not in own:
        why = None
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
                    period=period,
                    period_source=source, checklist=parsed, checked=checked, problems=checked.problems,
                    attach_template=any(p.code in ("missing_column", "wrong_template") for p in checked.problems))


def _rows(office: OfficeConfig, decision: Decision) -> list[Row]:
    if decision.checklist is None or decision.status != "accepted":
        return []
    out = []
    for row in decision.checklist.rows:
        out.append(Row(
            office=office.id, submission_id=0, row_no=row.row_no,
            entity=row.text("entity"), matter=row.text("matter"),
            date=decision.checked.dates.get(row.row_no), date_raw=row.text("date"),
            usage=row.text("usage"), measure=row.text("measure"),
            derived=decision.checked.derived.get(row.row_no, {}),
        ))
    return out


def changes(old: list[Row], new: list[Row]) -> dict[str, int]:
    """Rows added, removed and changed between two versions (a row is known by entity + matter)."""
    def content(r):
        return (r.entity, r.matter, r.date_raw, r.usage, r.measure)
    old_left = [content(r) for r in old]
    new_left = []
    for r in new:
        c = content(r)
        if c in old_left:
            old_left.remove(c)
        else:
            new_left.append(c)
    changed = 0
    for c in list(new_left):
        match = next((o for o in old_left if o[:2] == c[:2]), None)
        if match:
            old_left.remove(match)
            new_left.remove(c)
            changed += 1
    return {"added": len(new_left), "removed": len(old_left), "changed": changed}


def commit(engine: Engine, office: OfficeConfig, fetched, sha: str, decision: Decision, *,
           receipts: bool = True, replay_of: int | None = None) -> Message:
    """Write the decision in one transaction. `receipts=False` records without answering (an
    imported back catalogue); `replay_of` re-decides an archived message on purpose."""
    mail = decision.mail
    imap = office.imap
    with store.writing(engine) as session:
        existing = store.message_at(session, office.id, fetched.folder, fetched.uidvalidity, fetched.uid)
        if existing is not None:
            return existing
        row = Message(
            office=office.id, folder=fetched.folder, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
            message_id=mail.message_id if mail else "", sha256=sha, size=len(fetched.raw),
            sender=mail.sender if mail else "", subject=letters.one_line(mail.subject, 500) if mail else "",
            received_at=fetched.arrived, kind=decision.kind, status=decision.status, reason=decision.reason,
            detail=decision.detail, department_id=decision.department.id if decision.department else None,
            destination=imap.quarantine_folder if decision.status == "quarantined" else imap.processed_folder,
        )
        if replay_of is not None:
            row.reason = row.reason or f"replay_of:{replay_of}"
        first = store.same_message(session, office.id, row.message_id, sha) if mail and replay_of is None else None
        if first is not None:
            row.status, row.reason, row.destination = "duplicate", f"duplicate_of:{first.id}", first.destination
            session.add(row)
            return row
        session.add(row)
        session.flush()
        if decision.kind == "bounce" and mail is not None:
            _record_bounce(session, office, mail)
        submission, replaced, diff = None, None, None
        if decision.stores_submission:
            versions = store.count_submissions(session, office.id, decision.department.id, decision.period)
            accepted = decision.status == "accepted"
            replaced = store.in_force(session, office.id, decision.department.id, decision.period) if accepted else None
            # lateness belongs to the first accepted version: a later correction inherits it
            late = accepted and (replaced.late if replaced else
                                 fetched.arrived >= deadline(decision.period, office.schedule, office.office.tz))
            cl = decision.checklist
            submission = Submission(
                office=office.id, message_pk=row.id, department_id=decision.department.id,
                period=decision.period, period_source=decision.period_source, received_at=fetched.arrived,
                accepted=accepted, late=late, version=versions + 1,
                replaces_id=replaced.id if replaced else None,
                unit=cl.unit if cl else "", submitter=cl.submitter if cl else "",
                report_date=rules.report_date(cl) if cl else None, nil_report=bool(cl and cl.nil_report),
                filename=decision.filename, sheet=cl.sheet if cl else "",
                problems=[p.as_dict() for p in decision.problems],
            )
            rows = _rows(office, decision)
            submission.row_count = len(rows)
            session.add(submission)
            session.flush()
            for r in rows:
                r.submission_id = submission.id
            session.add_all(rows)
            if replaced is not None:
                diff = changes(store.rows_of(session, replaced.id), rows)
        if decision.status in ("accepted", "rejected") and receipts:
            if _replies_today(session, office, mail.sender) >= office.replies.daily_cap_per_sender:
                log.warning("message=<%s> daily reply cap reached for %s; no receipt", row.message_id, mail.sender)
                row.reason = "reply_cap"
            else:
                _queue_receipt(session, office, row, decision, submission, replaced, diff)
        faults.crash_point("in_transaction")
    faults.crash_point("after_commit")
    return row


def _record_bounce(session, office: OfficeConfig, mail: message.Mail) -> None:
    """A bounce of our own mail: mark that outbox row so the office sees the failed delivery."""
    ids = [i for i in mail.quoted_ids + mail.references + [mail.in_reply_to] if i and letters.is_ours(office, i)]
    for out in session.exec(select(Outgoing).where(Outgoing.office == office.id, Outgoing.message_id.in_(ids))).scalars():
        out.status = "bounced"
        out.last_error = (mail.diagnostic or letters.one_line(mail.subject))[:500]
        log.warning("outbox=<%s> bounced: %s", out.message_id, out.last_error)


def _replies_today(session, office: OfficeConfig, sender: str) -> int:
    """Receipts queued to `sender` in the last 24 hours: the cap that stops any mail loop."""
    return session.exec(select(func.count(Outgoing.id)).join(Message, Outgoing.message_pk == Message.id).where(
        Outgoing.office == office.id, Outgoing.kind == "receipt", Message.sender == sender,
        Outgoing.created_at > utcnow() - dt.timedelta(days=1))).one()[0]


def _queue_receipt(session, office, row, decision, submission, replaced, diff) -> None:
    from .template import build_template

    mail = decision.mail
    errors = [p for p in decision.problems if p.is_error]
    warnings = [p for p in decision.problems if not p.is_error]
    attachments = []
    if decision.attach_template or decision.status == "rejected" and decision.kind == "no_checklist":
        attachments.append(("情况清单模板.xlsx", build_template(office.office.name, office.office.address,
                                                           office.schedule.deadline_day),
                            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"))
    if decision.annotated:
        attachments.append((annotate.annotated_filename(decision.filename), decision.annotated, annotate.XLSX_MIMETYPE))
    template = "receipt_accepted" if decision.status == "accepted" else "receipt_rejected"
    context = {
        "department": decision.department, "kind": decision.kind, "subject": mail.subject,
        "received": row.received_at.astimezone(office.office.tz), "filename": decision.filename,
        "period": decision.period, "period_source": decision.period_source,
        "submission": submission, "replaced": replaced, "diff": diff,
        "errors": errors, "warnings": warnings,
        "deadline": office.schedule.deadline_day,
        "annotated": annotate.annotated_filename(decision.filename) if decision.annotated else "",
    }
    out = letters.build(
        office, kind="receipt", key=f"receipt:{row.sha256}", template=template, to=[mail.sender],
        context=context, department_id=decision.department.id, period=decision.period or None,
        message_pk=row.id, in_reply_to=mail.message_id, references=mail.references,
        attachments=attachments, auto="auto-replied",
    )
    store.enqueue(session, out)


def handle(engine: Engine, office: OfficeConfig, archive_dir: Path, fetched, decision: Decision | None = None) -> Message:
    """Archive, decide (unless a worker already did) and commit one fetched message."""
    sha = archive.put(archive_dir, fetched.raw)
    with store.reading(engine) as session:
        existing = store.message_at(session, office.id, fetched.folder, fetched.uidvalidity, fetched.uid)
    if existing is not None:
        return existing
    faults.crash_point("after_fetch")
    decision = decision or decide(office, fetched.raw, fetched.arrived, fetched.truncated)
    return commit(engine, office, fetched, sha, decision)
