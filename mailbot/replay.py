"""Mail that did not come through the watched folder: an exported back catalogue (`import`),
or an archived message run again through the current rules (`replay`)."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
import email.utils
from pathlib import Path

from rich.progress import Progress
from sqlalchemy import select
from sqlalchemy.engine import Engine

from . import archive, intake, store
from .config import Config, OfficeConfig
from .decision import Decision, decide
from .errors import MailbotError, Unusable
from .mailbox import Fetched
from .models import Message

IMPORT_FOLDER, REPLAY_FOLDER = "(import)", "(replay)"


def _arrival(raw: bytes, fallback: dt.datetime) -> dt.datetime:
    """When an exported mail arrived: its Date header, else the file's time."""
    try:
        value = email.message_from_bytes(raw, policy=email.policy.compat32)["Date"]
        parsed = email.utils.parsedate_to_datetime(value) if value else None
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is None:
        return fallback
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def import_dir(engine: Engine, config: Config, office: OfficeConfig, directory: Path, *,
               receipts: bool = False, progress: bool = True) -> dict[str, int]:
    """Ingest every .eml under `directory`; importing the same files again changes nothing.

    No receipts by default: the departments were answered by hand at the time.
    """
    if not Path(directory).is_dir():
        raise Unusable([(str(directory), "不是文件夹，请指定存放导出的 .eml 文件的文件夹")])
    files = sorted(p for p in Path(directory).rglob("*") if p.suffix.lower() == ".eml")
    limit = office.limits.max_message_bytes
    refused = [(str(p), why) for p in files if (why := archive.refusal(p, limit))]
    if refused:  # nothing is imported until every file can be: importing again is harmless
        raise Unusable(refused)
    counts: dict[str, int] = {}
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("导入邮件", total=len(files))
        for path in files:
            raw = archive.read(path, limit)
            sha = archive.put(config.archive.dir, raw)
            uid = int(sha[:12], 16)  # a file is known by its content: imported again, it is not decided again
            with store.reading(engine) as session:
                row = store.message_at(session, office.id, IMPORT_FOLDER, 0, uid)
            if row is None:
                mtime = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc)
                item = Fetched(IMPORT_FOLDER, 0, uid, raw, _arrival(raw, mtime))
                row = intake.commit(engine, office, item, sha, decide(office, raw, item.arrived), receipts=receipts)
            counts[row.status] = counts.get(row.status, 0) + 1
            bar.advance(task)
    return counts


def find(engine: Engine, office: OfficeConfig, message_id: str) -> Message:
    message_id = message_id.strip().strip("<>")
    with store.reading(engine) as session:
        row = session.exec(select(Message).where(
            Message.office == office.id, Message.message_id == message_id,
            Message.status != "duplicate").order_by(Message.id).limit(1)).scalars().first()
    if row is None:
        raise MailbotError(f"no message with Message-ID <{message_id}> in office {office.id}")
    return row


def replay(engine: Engine, config: Config, office: OfficeConfig, message_id: str, *,
           dry_run: bool = True, force: bool = False) -> tuple[Message, Decision, Message | None]:
    """Decide an archived message again with today's rules. Without `dry_run` the outcome is
    committed (and answered) — only for a quarantined message unless `force`."""
    original = find(engine, office, message_id)
    raw = archive.get(config.archive.dir, original.sha256, office.limits.max_message_bytes)
    decision = decide(office, raw, original.received_at)
    if dry_run:
        return original, decision, None
    if original.status != "quarantined" and not force:
        raise MailbotError(f"<{original.message_id}> was {original.status}, not quarantined: use --force to replay it")
    with store.reading(engine) as session:  # replayed before: that outcome stands
        done = store.message_at(session, office.id, REPLAY_FOLDER, 0, original.id)
    if done is not None:
        return original, decision, done
    item = Fetched(REPLAY_FOLDER, 0, original.id, raw, original.received_at)
    return original, decision, intake.commit(engine, office, item, original.sha256, decision, replay_of=original.id)
