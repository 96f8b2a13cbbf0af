"""Tables. Every outcome is a row: what happened to department X in November is one query.

Timestamps are aware datetimes in UTC (SQLite keeps them as UTC text). Every table carries `office` so one database can serve many offices.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Message(SQLModel, table=True):
    """One mail seen in the mailbox, keyed on where it was and on what it is."""

    __tablename__ = "message"
    __table_args__ = (
        UniqueConstraint("office", "folder", "uidvalidity", "uid", name="uq_message_location"),
        Index("ix_message_identity", "office", "message_id", "sha256"),
    )

    id: int | None = Field(default=None, primary_key=True)
    office: str
    folder: str
    uidvalidity: int
    uid: int
    message_id: str = ""  # the Message-ID header, without angle brackets
    sha256: str  # of the raw bytes; also the archive file name
    size: int = 0
    sender: str = ""
    subject: str = ""
    received_at: dt.datetime = Field(default_factory=utcnow)
    kind: str = ""  # what the classifier saw: checklist, auto_reply, bounce, own, unknown_sender, ...
    status: str = ""  # accepted, rejected, ignored, quarantined, duplicate
    reason: str = ""  # a short code saying why, for ignored/quarantined/duplicate
    detail: str = ""  # the error text for quarantined messages
    department_id: str | None = None
    destination: str = ""  # the folder the message belongs in once handled
    moved_at: dt.datetime | None = None


class Submission(SQLModel, table=True):
    """One checklist a department sent for one period, accepted or not; every version is kept."""

    __tablename__ = "submission"
    __table_args__ = (Index("ix_submission_period", "office", "period", "department_id"),)

    id: int | None = Field(default=None, primary_key=True)
    office: str
    message_pk: int = Field(foreign_key="message.id", index=True)
    department_id: str
    period: str  # YYYY-MM
    period_source: str = ""  # subject, rows, report_date or received
    received_at: dt.datetime = Field(default_factory=utcnow)
    accepted: bool = False
    late: bool = False
    version: int = 1  # 1, 2, ... per department and period
    replaces_id: int | None = None  # the accepted submission this one replaced
    unit: str = ""
    submitter: str = ""
    report_date: dt.date | None = None
    nil_report: bool = False
    filename: str = ""
    file_sha256: str = ""  # of the attachment read: a byte-identical resubmission is recognised by it
    sheet: str = ""
    row_count: int = 0
    problems: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


class Row(SQLModel, table=True):
    """One row of a checklist, as written (raw text kept) plus what the rules derived from it."""

    __tablename__ = "checklist_row"

    id: int | None = Field(default=None, primary_key=True)
    office: str
    submission_id: int = Field(foreign_key="submission.id", index=True)
    row_no: int  # spreadsheet row number
    entity: str = ""
    matter: str = ""
    date: dt.date | None = None
    date_raw: str = ""
    usage: str = ""
    measure: str = ""
    derived: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Outgoing(SQLModel, table=True):
    """A mail to send, written in the same transaction as the decision that caused it.

    `key` names the event ("receipt:<sha256>", "reminder:<dept>:<period>:<day>") so the same
    event can never be queued twice; `raw` is the complete message, so delivery only sends.
    """

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("office", "key", name="uq_outbox_key"),)

    id: int | None = Field(default=None, primary_key=True)
    office: str
    key: str
    kind: str  # receipt, reminder, notice, tongbao, digest, weekly, alert
    message_id: str = Field(index=True)  # our Message-ID, deterministic, without angle brackets
    department_id: str | None = None
    period: str | None = None
    message_pk: int | None = Field(default=None, foreign_key="message.id")
    recipients: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    subject: str = ""
    raw: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # pending, sending (its DATA may be under way), sent, uncertain (sent or not: nobody knows; never
    # sent again by itself, `mailbot resend` does it), failed, bounced, skipped
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: dt.datetime = Field(default_factory=utcnow)  # while pending or sending: the claim's lease
    attempted_at: dt.datetime | None = None  # when the last attempt began
    last_error: str = ""
    created_at: dt.datetime = Field(default_factory=utcnow)
    sent_at: dt.datetime | None = None


class StartLine(SQLModel, table=True):
    """Where mailbot began watching a folder, and how far it has read it (per UIDVALIDITY).

    Mail that arrived (INTERNALDATE) before `since` belongs to the office's history and is never
    answered, moved or flagged. `high_water` is the last UID whose outcome is committed (taken or
    left): later polls search only above it, so history is read once, at the first poll."""

    __tablename__ = "start_line"
    __table_args__ = (UniqueConstraint("office", "folder", name="uq_start_line_folder"),)

    id: int | None = Field(default=None, primary_key=True)
    office: str
    folder: str
    since: dt.datetime  # the start line (UTC)
    source: str = ""  # config (imap.since) or period (the start of the period in progress)
    uidvalidity: int = 0
    high_water: int = 0  # of this UIDVALIDITY
    floor: dt.datetime  # the oldest arrival read under this UIDVALIDITY: `since`, or later after a change
    scanned: bool = False  # this UIDVALIDITY's first scan (UID SEARCH SINCE) is complete
    caught_up_at: dt.datetime | None = None  # the last time a scan completed; None: never yet
    created_at: dt.datetime = Field(default_factory=utcnow)
