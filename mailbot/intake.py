"""One decided message into the store: the message, its submission and rows, and the receipt.

`commit` writes the decision (mailbot.decision) in ONE transaction, so a crash at any point
leaves either nothing (the mail is handled again) or everything (it is only moved). The raw
mail is archived before (by the worker that decided it, mailbot.workers), and whether its
location is known already is asked once, by the caller, before it is fetched or decided.
"""
from __future__ import annotations

import datetime as dt
import logging
import traceback
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Engine

from . import faults, guard, letters, message, rules, store
from .codes import mask_ids
from .config import OfficeConfig
from .decision import Decision
from .models import Message, Outgoing, Row, Submission, utcnow
from .obligations import deadline

log = logging.getLogger("mailbot.intake")

def _rows(office: OfficeConfig, decision: Decision) -> list[Row]:
    if decision.checklist is None or decision.status != "accepted":
        return []
    out = []
    text = lambda row, key: message.storable(row.text(key))  # noqa: E731  (an .xls cell may hold a NUL)
    for row in decision.checklist.rows:
        out.append(Row(
            office=office.id, submission_id=0, row_no=row.row_no,
            entity=text(row, "entity"), matter=text(row, "matter"),
            date=decision.checked.dates.get(row.row_no), date_raw=text(row, "date"),
            usage=text(row, "usage"), measure=text(row, "measure"),
            derived=decision.checked.derived.get(row.row_no, {}),
        ))
    return out


_ROW_COLUMNS = tuple(c.key for c in Row.__table__.columns if not c.primary_key)


def _contents_of(session, submission_id: int) -> list:
    """What `changes` compares of a version's rows, as plain named tuples (no ORM objects)."""
    return list(session.execute(select(Row.entity, Row.matter, Row.date_raw, Row.usage, Row.measure)
                                .where(Row.submission_id == submission_id).order_by(Row.row_no)).all())


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
           receipts: bool = True, replay_of: int | None = None, now: dt.datetime | None = None) -> Message:
    """Write the decision about a mail not recorded yet at its location (the unique key refuses
    a second row) in one transaction. `receipts=False` records without answering (an imported
    back catalogue); `replay_of` re-decides an archived message on purpose; `now` (default the
    clock) is when the receipt is written."""
    now = now or utcnow()
    mail = decision.mail
    imap = office.imap
    with store.writing(engine) as session:
        destination = {"quarantined": imap.quarantine_folder, "left": fetched.folder}.get(
            decision.status, imap.processed_folder)
        row = Message(
            office=office.id, folder=fetched.folder, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
            message_id=mail.message_id if mail else "", sha256=sha, size=len(fetched.raw),
            sender=(mail.sender or mail.from_header) if mail else "", subject=letters.one_line(mail.subject, 500) if mail else "",
            received_at=fetched.arrived, kind=decision.kind, status=decision.status, reason=decision.reason,
            detail=decision.detail, department_id=decision.department.id if decision.department else None,
            destination=destination,
        )
        if decision.status == "left":  # not ours: recorded so that it is not read again, nothing else
            session.add(row)
            return row
        first = store.same_message(session, office.id, row.message_id, sha) if mail and replay_of is None else None
        if first is not None and (fetched.again or moved_back(first, fetched.arrived)):
            replay_of = first.id  # the clerk asked for it again: handled with today's config, not a duplicate
        elif first is not None:
            row.status, row.reason, row.destination = "duplicate", f"duplicate_of:{first.id}", first.destination
            session.add(row)
            return row
        if replay_of is not None:
            row.reason = row.reason or f"replay_of:{replay_of}"
        session.add(row)
        session.flush()
        if decision.kind == "bounce" and mail is not None:
            _record_bounce(session, office, mail)
        if decision.others and any(p.status == "accepted" for p in decision.parts):
            row.status = "accepted"  # several checklists: the mail filed something
        filed = []  # (part, submission, replaced, diff) of each checklist in the mail
        if decision.stores_submission:
            for part in decision.parts:
                filed.append(_file(session, office, fetched, row, part))
        submission, replaced, diff = filed[0][1:] if len(filed) == 1 else (None, None, None)
        same = replaced if replaced is not None and decision.file_sha256 and \
            replaced.file_sha256 == decision.file_sha256 else None
        if decision.status in ("accepted", "rejected") and receipts:
            key = f"receipt:{row.sha256}" if replay_of is None else f"receipt:{row.sha256}:{row.id}"
            if same is not None:  # the very file again: one answer a day says so, the rest none
                day = fetched.arrived.astimezone(office.office.tz).date().isoformat()
                key = f"same:{decision.department.id}:{decision.period}:{decision.file_sha256[:16]}:{day}"
            if row.status == "rejected" and \
                    replies_today(session, office, mail.sender, now) >= office.replies.daily_cap_per_sender:
                log.warning("message=<%s> daily reply cap reached for %s; no receipt", row.message_id, mail.sender)
                row.reason = "reply_cap"
            else:
                with guard.step("receipt"):
                    faults.crash_point("in_receipt", fetched.raw)
                    if len(filed) > 1:
                        _queue_receipt_several(session, office, row, decision, filed, key, now)
                    elif not _queue_receipt(session, office, row, decision, submission, replaced, diff, key, same,
                                            now) and same is not None:
                        row.reason = "same_content"
        faults.crash_point("in_transaction", fetched.raw)
    faults.crash_point("after_commit")
    return row


def _file(session, office: OfficeConfig, fetched, row: Message, part: Decision):
    """One checklist's submission and rows: (part, submission, the version it replaces, the changes)."""
    accepted = part.status == "accepted"
    if accepted:  # how many versions, and the one this replaces
        versions, replaced = store.versions(session, office.id, part.department.id, part.period)
    else:
        versions, replaced = store.count_submissions(session, office.id, part.department.id, part.period), None
    # lateness belongs to the first accepted version: a later correction inherits it
    late = accepted and (replaced.late if replaced else
                         fetched.arrived >= deadline(part.period, office.schedule, office.office.tz))
    cl = part.checklist
    submission = Submission(
        office=office.id, message_pk=row.id, department_id=part.department.id,
        period=part.period, period_source=part.period_source, received_at=fetched.arrived,
        accepted=accepted, late=late, version=versions + 1,
        replaces_id=replaced.id if replaced else None,
        unit=message.storable(cl.unit) if cl else "", submitter=message.storable(cl.submitter) if cl else "",
        report_date=rules.report_date(cl) if cl else None, nil_report=bool(cl and cl.nil_report),
        filename=part.filename, sheet=message.storable(cl.sheet) if cl else "",
        problems=[p.as_dict() for p in part.problems], file_sha256=part.file_sha256,
    )
    rows = _rows(office, part)
    submission.row_count = len(rows)
    session.add(submission)
    session.flush()
    for r in rows:
        r.submission_id = submission.id
    if rows:  # one executemany: the ORM would send an INSERT a row (SQLite's RETURNING order is not sure)
        session.execute(insert(Row.__table__), [{c: getattr(r, c) for c in _ROW_COLUMNS} for r in rows])
    diff = changes(_contents_of(session, replaced.id), rows) if replaced is not None else None
    return part, submission, replaced, diff


def _record_bounce(session, office: OfficeConfig, mail: message.Mail) -> None:
    """A bounce of our own mail: mark that outbox row so the office sees the failed delivery."""
    ids = [i for i in mail.quoted_ids + mail.references + [mail.in_reply_to] if i and letters.is_ours(office, i)]
    for out in session.exec(select(Outgoing).where(Outgoing.office == office.id, Outgoing.message_id.in_(ids))).scalars():
        out.status = "bounced"
        out.last_error = mask_ids(mail.diagnostic or letters.one_line(mail.subject))[:500]  # may quote our subject
        log.warning("outbox=<%s> bounced: %s", out.message_id, out.last_error)


def moved_back(first: Message, arrived: dt.datetime) -> bool:
    """Is a copy of `first` arriving at `arrived` the mail we handled and moved, moved back by
    hand? It keeps its INTERNALDATE; a second delivery of the same mail has one of its own."""
    return first.moved_at is not None and abs((first.received_at - arrived).total_seconds()) < 1


def replies_today(session, office: OfficeConfig, sender: str, now: dt.datetime) -> int:
    """Error receipts (answers to mistakes and to mail that is no checklist) queued to `sender`
    in the last 24 hours: the cap that stops any mail loop. An accepted checklist's receipt is
    never capped (and not counted)."""
    return session.exec(select(func.count(Outgoing.id)).join(Message, Outgoing.message_pk == Message.id).where(
        Outgoing.office == office.id, Outgoing.kind == "receipt", Message.sender == sender,
        Message.status == "rejected", Outgoing.created_at > now - dt.timedelta(days=1))).one()[0]


def leave(engine: Engine, office: OfficeConfig, folder: str, uidvalidity: int, left) -> None:
    """Record mail that is not ours (and not recorded yet), judged from its header:
    (mailbox.Glance, claim.Verdict) pairs. It stays where it is, untouched; the row only says it
    was read."""
    with store.writing(engine) as session:
        for glance, verdict in left:
            mail = message.parse(glance.header)
            session.add(Message(
                office=office.id, folder=folder, uidvalidity=uidvalidity, uid=glance.uid,
                message_id=mail.message_id, sha256="", size=glance.size, sender=mail.sender,
                subject=letters.one_line(mail.subject, 500), received_at=glance.arrived, kind=verdict.reason,
                status="left", reason=verdict.reason, destination=folder))


def _problems(part: Decision) -> tuple[list, list]:
    """(errors, warnings) as a receipt lists them: rows of other months in one line, not one per row."""
    problems = part.problems
    if part.checked is not None:
        problems = rules.summarise_other_months(problems, part.checked.dates, part.period)
    return [p for p in problems if p.is_error], [p for p in problems if not p.is_error]


def _annotated_name(filename: str) -> str:
    """The marked-up copy's name; a copy of our own copy is not called “…（问题标注）（问题标注）”."""
    from . import annotate  # openpyxl: not in the daemon's memory for a file name

    stem, dot, ext = filename.rpartition(".")
    return annotate.annotated_filename((stem.removesuffix("（问题标注）") + dot + ext) if dot else filename)


def _template_attachment(office) -> tuple[str, bytes, str]:
    from .template import FILENAME, build_template

    return FILENAME, build_template(office.office.name, office.office.address, office.schedule.deadline_day), letters.XLSX


def _queue_receipt(session, office, row, decision, submission, replaced, diff, key, same, now) -> bool:
    mail = decision.mail
    errors, warnings = _problems(decision)
    attachments = []
    if decision.attach_template or decision.status == "rejected" and decision.kind == "no_checklist":
        attachments.append(_template_attachment(office))
    if decision.annotated:
        attachments.append((_annotated_name(decision.filename), decision.annotated, letters.XLSX))
    template = "receipt_accepted" if decision.status == "accepted" else "receipt_rejected"
    context = {
        "department": decision.department, "kind": decision.kind, "subject": mail.subject,
        "received": row.received_at.astimezone(office.office.tz), "filename": decision.filename,
        "sheet_label": decision.sheet_label, "checklist": decision.checklist,
        "period": decision.period, "period_source": decision.period_source,
        "submission": submission, "replaced": replaced, "diff": diff,
        "errors": errors, "warnings": warnings,
        "deadline": office.schedule.deadline_day,
        "annotated": _annotated_name(decision.filename) if decision.annotated else "",
        "notes": decision.notes,
        "same": same,
    }
    out = letters.build(
        office, kind="receipt", key=key, template=template, to=[mail.sender],
        context=context, department_id=decision.department.id, period=decision.period or None,
        message_pk=row.id, in_reply_to=mail.message_id, references=mail.references,
        attachments=attachments, auto="auto-replied", now=now,
    )
    return store.enqueue(session, out)


def _queue_receipt_several(session, office, row, decision: Decision, filed, key: str, now) -> None:
    """One receipt for a mail that filed several checklists (months), each with its outcome."""
    mail = decision.mail
    parts, attachments = [], []
    for part, submission, replaced, diff in filed:
        errors, warnings = _problems(part)
        annotated = _annotated_name(part.filename) if part.annotated else ""
        if part.annotated:
            attachments.append((annotated, part.annotated, letters.XLSX))
        parts.append({"filename": part.filename, "sheet_label": part.sheet_label, "period": part.period,
                      "period_source": part.period_source, "status": part.status, "submission": submission,
                      "replaced": replaced, "diff": diff, "errors": errors, "warnings": warnings, "annotated": annotated})
    if any(part.attach_template for part, *_ in filed):
        attachments.insert(0, _template_attachment(office))
    accepted = sum(p["status"] == "accepted" for p in parts)
    context = {
        "department": decision.department, "subject": mail.subject,
        "received": row.received_at.astimezone(office.office.tz), "parts": parts, "notes": decision.notes,
        "accepted": accepted, "rejected": len(parts) - accepted, "deadline": office.schedule.deadline_day,
    }
    out = letters.build(
        office, kind="receipt", key=key, template="receipt_several", to=[mail.sender],
        context=context, department_id=decision.department.id, period=decision.period or None,
        message_pk=row.id, in_reply_to=mail.message_id, references=mail.references,
        attachments=attachments, auto="auto-replied", now=now,
    )
    store.enqueue(session, out)


def quarantine(engine: Engine, office: OfficeConfig, fetched, sha: str, decision: Decision | None,
               failure: guard.StepFailed) -> Message:
    """The guard's answer to an unexpected error while handling one message: its transaction
    rolled back, a `quarantined` row naming the step is committed on its own, cleaned of whatever
    a text column refuses; failing that, one without anything taken from the mail. The mail goes
    to the quarantine folder; mail that is not ours (`left`) stays where it is, untouched."""
    cause = failure.cause
    detail = message.storable("".join(traceback.format_exception(cause))[-4000:])
    left = decision is not None and decision.status == "left"
    try:
        mail = decision.mail if decision is not None and decision.mail is not None else message.parse(fetched.raw)
    except Exception:  # the parse may be what failed
        mail = None
    for header in (mail, None):
        row = Message(
            office=office.id, folder=fetched.folder, uidvalidity=fetched.uidvalidity, uid=fetched.uid,
            message_id=message.storable(mail.message_id)[:998] if header else "", sha256=sha, size=len(fetched.raw),
            sender=message.storable(mail.sender or mail.from_header)[:320] if header else "",
            subject=letters.one_line(message.storable(mail.subject), 500) if header else "",
            received_at=fetched.arrived, kind=decision.kind if left else "error",
            status="left" if left else "quarantined", reason=f"{failure.step}:{type(cause).__name__}"[:200],
            detail=detail, destination=fetched.folder if left else office.imap.quarantine_folder)
        try:
            with store.writing(engine) as session:
                existing = store.message_at(session, office.id, fetched.folder, fetched.uidvalidity, fetched.uid)
                if existing is not None:  # committed after all: it stands
                    return existing
                session.add(row)
            return row
        except Exception as exc:
            if guard.infrastructure(exc) or header is None:
                raise
            log.error("uid=%s: its quarantine row was refused too (%s: %s); recorded without its header",
                      fetched.uid, type(exc).__name__, exc)
    raise AssertionError("unreachable")


def moved_elsewhere(engine: Engine, row: Message, folder: str, failure: guard.StepFailed) -> None:
    """The move to its folder failed unexpectedly and the mail went to `folder` instead: the
    row says so (its outcome stands: the receipt, if any, is already queued)."""
    note = message.storable(f"move to {row.destination} failed: {failure}")[:1000]
    with store.writing(engine) as session:
        session.execute(update(Message).where(Message.id == row.id).values(
            destination=folder, detail=(row.detail + "\n" if row.detail else "") + note))
    row.destination = folder
