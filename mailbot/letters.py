"""Every mail mailbot writes: rendered from templates/, built as a complete MIME message.

Each kind has `<kind>.subject.txt`, `<kind>.body.txt` and `<kind>.body.html` (autoescaped).
The Message-ID is derived from the office and the event key, so a mail queued twice for the
same event is recognisably the same mail, and our own mail is recognised when it comes back.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import email.policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from pathlib import Path

import jinja2

from .config import OfficeConfig
from .message import HeaderClasses
from .models import Outgoing, utcnow

TEMPLATES = Path(__file__).parent / "templates"
# the mimetypes of the files mailbot attaches: workbooks (receipts' marked-up copy, the template,
# digests) and the 通报 draft
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_CRLF = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # every character str.splitlines() breaks at, too


def _period_zh(period: str | None) -> str:
    if not period:
        return ""
    year, month = period.split("-")
    return f"{int(year)}年{int(month)}月"


def _date_zh(value: dt.date | dt.datetime | None) -> str:
    if value is None:
        return ""
    return f"{value.year}年{value.month}月{value.day}日"


def _environment(autoescape: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["period_zh"] = _period_zh
    env.filters["date_zh"] = _date_zh
    return env


_TEXT = _environment(False)
_HTML = _environment(True)


def render(kind: str, context: dict) -> tuple[str, str, str]:
    """(subject, plain text, html) for one kind of mail."""
    subject = _TEXT.get_template(f"{kind}.subject.txt").render(context)
    text = _TEXT.get_template(f"{kind}.body.txt").render(context)
    html = _HTML.get_template(f"{kind}.body.html").render(context)
    return one_line(subject), text, html


def one_line(value: str, limit: int = 200) -> str:
    """Header-safe text: no CR/LF or control characters can reach a header we write."""
    return _CRLF.sub(" ", value).strip()[:limit]


def _inert(value: str) -> str:
    """Header text EmailMessage will not decode. It decodes any "=?charset?B?...?=" in a value it
    is given (and again while folding), so a sender's subject carrying one put CR/LF, hence a
    header of its own, into our receipt, or made it unsendable (an unknown charset leaves lone
    surrogates). A zero-width space after the "=" leaves the text as the clerk reads it."""
    return value.replace("=?", "=\u200b?")


class _Remembering(email.policy.EmailPolicy):
    """email.policy.default (and, cloned, SMTP), except that a header value seen before is
    parsed and folded once: most of a receipt's build went into parsing and refolding the same
    headers again and again (the office's From, the MIME headers of every part, a department's
    To, the day's subject). The bytes are the email package's own, the same as without it."""

    def header_store_parse(self, name, value):
        if isinstance(value, str) and not hasattr(value, "name") and name.lower() not in _UNIQUE \
                and "boundary=" not in value:
            return name, _parsed(self, name, value)
        return super().header_store_parse(name, value)

    def fold_binary(self, name, value):
        if not hasattr(value, "name"):  # not a header object: nothing to remember it by
            return super().fold_binary(name, value)
        key = (self.linesep, self.max_line_length, self.utf8, self.cte_type, self.refold_source)
        folded = value.__dict__.setdefault("_mailbot_folded", {})
        if key not in folded:
            folded[key] = super().fold_binary(name, value)
        return folded[key]


_UNIQUE = {"message-id", "in-reply-to", "references", "date"}  # never seen again: not worth keeping


@functools.lru_cache(maxsize=512)
def _parsed(policy: _Remembering, name: str, value: str):
    """The header object for `value` (immutable: shared by every message that sets it)."""
    return email.policy.EmailPolicy.header_store_parse(policy, name, value)[1]


_POLICY = _Remembering(header_factory=HeaderClasses())
_SMTP = _POLICY.clone(linesep="\r\n")


def message_id_for(office: OfficeConfig, key: str) -> str:
    digest = hashlib.sha256(f"{office.id}\0{key}".encode()).hexdigest()[:32]
    return f"mailbot.{digest}@{office.office.domain}"


def is_ours(office: OfficeConfig, message_id: str) -> bool:
    return message_id.startswith("mailbot.") and message_id.endswith("@" + office.office.domain)


def build(
    office: OfficeConfig,
    *,
    kind: str,
    key: str,
    template: str,
    to: list[str],
    context: dict,
    department_id: str | None = None,
    period: str | None = None,
    message_pk: int | None = None,
    in_reply_to: str = "",
    references: list[str] | tuple[str, ...] = (),
    attachments: list[tuple[str, bytes, str]] = (),
    auto: str = "auto-generated",
    now: dt.datetime | None = None,
) -> Outgoing:
    """A complete mail as an outbox row (not yet added to a session). `now` (aware; default the
    clock) is when it is written: the date it is signed with, its Date header and created_at."""
    now = now or utcnow()
    context = {"office": office.office, "now": now.astimezone(office.office.tz), **context}
    subject, text, html = render(template, context)
    message_id = message_id_for(office, key)
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = formataddr((office.office.name, office.office.address))
    msg["To"] = ", ".join(to)
    msg["Subject"] = _inert(subject)
    msg["Date"] = format_datetime(now.astimezone(dt.timezone.utc))
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{one_line(in_reply_to)}>"
        refs = [one_line(r) for r in references if r] + ([] if in_reply_to in references else [one_line(in_reply_to)])
        msg["References"] = " ".join(f"<{r}>" for r in refs[-10:])
    msg["Auto-Submitted"] = auto
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Mailbot"] = kind
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    for filename, data, mimetype in attachments:
        maintype, subtype = mimetype.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=_inert(one_line(filename, 120)))
    return Outgoing(
        office=office.id, key=key, kind=kind, message_id=message_id, department_id=department_id,
        period=period, message_pk=message_pk, recipients=list(to), subject=subject, raw=msg.as_bytes(policy=_SMTP),
        created_at=now,
    )
