"""What mailbot's pure steps make of each tests/data/mail/*.eml: the golden `<name>.eml.expected.json`.

For each fixture: message.parse (who sent it, what it is, which files it carries), the claim
verdict (is it mailbot's) and decision.decide's outcome, under one fixed office (FACTORY's, with
the provider's Authentication-Results trusted) and one arrival time (factory.ON_TIME). The
expectations are the spec: tests/test_mail_handling.py compares every fixture with its file.

After an intended change, regenerate them and read the summary of what changed (the JSON paths,
old -> new) before committing; a change nobody meant is a bug, not a new expectation:
    .venv/bin/python tests/data/expect_mails.py            # every fixture
    .venv/bin/python tests/data/expect_mails.py qq_bounce.eml
    .venv/bin/python tests/data/expect_mails.py --check    # say what would change, write nothing
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mailbot import claim, codes, config as config_mod, decision as decision_mod, letters, message  # noqa: E402
from tests import factory  # noqa: E402

MAIL = Path(__file__).parent / "mail"
SUFFIX = ".expected.json"
ARRIVED = factory.ON_TIME
PLACEHOLDER = b"{OUR_MESSAGE_ID}"  # the bounces quote one of our receipts: which one the test fills in


def office():
    """The office every fixture is judged by: the factory's, trusting the provider's
    Authentication-Results (so failed_auth.eml shows what the check does)."""
    return config_mod.parse(factory.config_dict(
        SimpleNamespace(port=1143, user="office@example.test"), SimpleNamespace(port=1025), Path("/nonexistent"),
        authentication={"trusted_authserv_id": "example.test"})).office()


def names() -> list[str]:
    return sorted(p.name for p in MAIL.glob("*.eml"))


def raw(name: str, office_cfg) -> tuple[bytes, str | None]:
    """The fixture's bytes, a bounce's placeholder filled with a receipt's Message-ID as mailbot makes it."""
    data = (MAIL / name).read_bytes()
    if PLACEHOLDER not in data:
        return data, None
    ours = letters.message_id_for(office_cfg, "golden:receipt")
    return data.replace(PLACEHOLDER, ours.encode()), ours


def _problems(problems) -> list[dict]:
    return [{"code": p.code, "severity": p.severity, "sheet": p.sheet, "row": p.row, "column": p.column} for p in problems]


def _part(d: decision_mod.Decision) -> dict:
    """One checklist the mail files (or the one outcome of a mail that files none)."""
    parsed = d.checklist
    return {
        "status": d.status, "filename": d.filename, "period": d.period, "period_source": d.period_source,
        "sheet_label": d.sheet_label, "rows": len(parsed.rows) if parsed else None,
        "nil_report": parsed.nil_report if parsed else None, "attach_template": d.attach_template,
        "annotated": d.annotated is not None, "problems": _problems(d.problems),
    }


def view(name: str) -> dict:
    """The expectation of one fixture, as the golden file holds it (ID numbers masked)."""
    office_cfg = office()
    data, filled = raw(name, office_cfg)
    mail = message.parse(data)
    verdict = claim.judge(office_cfg, mail)
    d = decision_mod.decide(office_cfg, data, ARRIVED)
    out = {
        "input": {"file": name, "bytes": len(data), "filled_message_id": filled, "arrived": ARRIVED.isoformat()},
        "message": {
            "message_id": mail.message_id, "sender": mail.sender, "sender_name": mail.sender_name,
            "sender_error": mail.sender_error, "subject": mail.subject, "date": mail.date,
            "in_reply_to": mail.in_reply_to, "references": mail.references, "text": mail.text,
            "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": len(a.data),
                             "sha256": hashlib.sha256(a.data).hexdigest()[:16], "forwarded": a.forwarded,
                             "inline": a.inline} for a in mail.attachments],
            "is_report": mail.is_report, "quoted_ids": mail.quoted_ids, "diagnostic": mail.diagnostic,
            "auth_results": mail.auth_results, "null_return_path": mail.null_return_path,
            "robot": message.classify(mail, own_addresses=(office_cfg.office.address,),
                                      own_id_suffix="@" + office_cfg.office.domain),
        },
        "claim": {"ours": verdict.ours, "reason": verdict.reason},
        "decision": {
            "status": d.status, "kind": d.kind, "reason": d.reason,
            "detail": d.detail if d.kind != "error" else d.detail.strip().splitlines()[-1],
            "department": d.department.id if d.department else None,
            **{k: v for k, v in _part(d).items() if k != "status"},
            "notes": d.notes,
            "others": [_part(o) for o in d.others],
        },
    }
    return _masked(out)


def _masked(value):
    if isinstance(value, str):
        return codes.mask_ids(value)
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------- the file and its diff

def dumps(value, indent: int = 0) -> str:
    """JSON a person reads: the sections and anything nested one key or item a line, an object of
    plain values (an attachment, a problem) on one line."""
    pad, end = "  " * (indent + 1), "\n" + "  " * indent
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    nested = any(isinstance(v, (dict, list)) and v for v in items)
    if isinstance(value, dict) and value and (nested or indent <= 1):
        return "{\n" + ",\n".join(f"{pad}{json.dumps(k, ensure_ascii=False)}: {dumps(v, indent + 1)}"
                                   for k, v in value.items()) + end + "}"
    if isinstance(value, list) and nested:
        return "[\n" + ",\n".join(pad + dumps(v, indent + 1) for v in value) + end + "]"
    return json.dumps(value, ensure_ascii=False)


def expected_path(name: str) -> Path:
    return MAIL / f"{name}{SUFFIX}"


def changes(old, new, path: str = "") -> list[tuple[str, object, object]]:
    """(JSON path, old, new) for every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [c for k in dict.fromkeys([*old, *new])
                for c in changes(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{path}.{k}" if path else k)]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [c for i, (a, b) in enumerate(zip(old, new)) for c in changes(a, b, f"{path}[{i}]")]
    return [] if old == new else [(path, old, new)]


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False) if value != "<absent>" else "<absent>"
    return text if len(text) <= 100 else text[:97] + "..."


def main(argv: list[str]) -> int:
    check = "--check" in argv
    wanted = [a for a in argv if not a.startswith("--")] or names()
    unknown = sorted(set(wanted) - set(names()))
    if unknown:
        print(f"no such fixture in {MAIL}: {', '.join(unknown)}")
        return 2
    counts = {"unchanged": 0, "changed": 0, "new": 0}
    for name in wanted:
        path = expected_path(name)
        new = view(name)
        old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        if old == new:
            counts["unchanged"] += 1
            continue
        counts["new" if old is None else "changed"] += 1
        if old is None:
            print(f"{name}: new -> {new['decision']['status']} {new['decision']['kind']} ({new['decision']['reason']})")
        else:
            found = changes(old, new)
            print(f"{name}: {len(found)} change(s)")
            for where, before, after in found[:20]:
                print(f"  {where}: {_short(before)} -> {_short(after)}")
            if len(found) > 20:
                print(f"  ... and {len(found) - 20} more")
        if not check:
            path.write_text(dumps(new) + "\n", encoding="utf-8")
    orphans = sorted(p.name for p in MAIL.glob(f"*{SUFFIX}") if not (MAIL / p.name[: -len(SUFFIX)]).exists())
    for orphan in orphans:
        print(f"{orphan}: its .eml is gone; delete it")
    verb = "would change" if check else "written"
    print(f"{counts['changed']} changed, {counts['new']} new, {counts['unchanged']} unchanged"
          + (f" ({verb})" if counts["changed"] or counts["new"] else ""))
    return 1 if check and (counts["changed"] or counts["new"] or orphans) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
