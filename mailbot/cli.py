"""The `mailbot` command. Config is loaded once here and passed down explicitly."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path

from . import config as config_mod
from .errors import ConfigError, MailbotError, Unusable

log = logging.getLogger("mailbot")


class _Masked(logging.Formatter):
    """Every line with its ID numbers masked, tracebacks included: a bounce's subject, a
    Message-ID or an error quoting a cell may carry one, and the journal is read by many."""

    def format(self, record: logging.LogRecord) -> str:
        from .codes import mask_ids

        return mask_ids(super().format(record))


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Masked("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                                 datefmt="%Y-%m-%dT%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def _load(args) -> config_mod.Config:
    return config_mod.load(args.config)


def _office(args, cfg: config_mod.Config):
    return cfg.office(getattr(args, "office", None))


def _print_json(data) -> None:
    # compact: the C encoder, several times faster than indent= on a 20,000-row checklist
    print(json.dumps(data, ensure_ascii=False, default=str))


# --- commands --------------------------------------------------------------------------------

def cmd_run(args) -> int:
    from .daemon import Daemon
    from .runner import open_store

    cfg = _load(args)
    daemon = Daemon(cfg, open_store(cfg), [_office(args, cfg)] if args.office else None)
    daemon.install_signals()
    daemon.run()
    return 0


def cmd_poll(args) -> int:
    from .daemon import sole
    from .runner import open_store, poll_once

    cfg = _load(args)
    engine = open_store(cfg)
    offices = [_office(args, cfg)] if args.office else cfg.offices
    with sole(engine, offices):
        for office in offices:
            result = poll_once(engine, cfg, office)
            log.info("office %s: handled %d message(s), moved %d, sent %d mail(s)",
                     office.id, result.handled, result.moved, result.sent)
    return 0


def cmd_check(args) -> int:
    from .archive import read
    from .config import Limits
    from .verdict import print_verdict, verdict

    cfg = _load(args) if (args.config or _env_config()) else None
    office = _office(args, cfg) if cfg else None
    data = read(Path(args.file), (office.limits if office else Limits()).max_attachment_bytes)
    result = verdict(data, Path(args.file).name, office)
    if args.json:
        _print_json(result)
    else:
        print_verdict(result)
    return 0 if result["accepted"] else 1


def _env_config() -> bool:
    return bool(os.environ.get("MAILBOT_CONFIG"))


def cmd_template(args) -> int:
    from .template import build_template

    office = None
    if args.config or _env_config():
        office = _office(args, _load(args))
    data = build_template(office.office.name, office.office.address, office.schedule.deadline_day) if office \
        else build_template()
    Path(args.out).write_bytes(data)
    print(args.out)
    return 0


def cmd_status(args) -> int:
    from .runner import open_store
    from .status import print_table, status

    cfg = _load(args)
    office = _office(args, cfg)
    rows = status(open_store(cfg), office, args.period)
    if args.json:
        _print_json(rows)
    else:
        print_table(office, rows, args.period)
    return 0


def cmd_tick(args) -> int:
    from .runner import open_store
    from .schedule import command

    cfg = _load(args)
    offices = [_office(args, cfg)] if args.office else cfg.offices
    return command(open_store(cfg), offices, args.at, dry_run=args.dry_run)


def _instant(value: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError("use an ISO date-time, e.g. 2026-11-20T09:00 (office time) or 2026-11-20T01:00+00:00") from None


def cmd_digest(args) -> int:
    from .digest import command
    from .runner import open_store

    cfg = _load(args)
    if args.city:
        from .city import command as city_command
        return city_command(open_store(cfg), cfg, args.period, Path(args.out), args.send)
    office = _office(args, cfg)
    return command(open_store(cfg), office, args.period, Path(args.out), args.send)


def cmd_export(args) -> int:
    from .export import export
    from .runner import open_store

    cfg = _load(args)
    path, _rows = export(open_store(cfg), _office(args, cfg), args.period, args.format, args.out)
    print(path)
    return 0


def cmd_demo(args) -> int:
    from .demo import run

    return run(Path(args.keep) if args.keep else None)


def cmd_config_check(args) -> int:
    from rich.console import Console

    from .preflight import run

    checks = run(_load(args), connect=args.connect, config_path=args.config or os.environ.get("MAILBOT_CONFIG"))
    console = Console()
    for check in checks:
        mark = "[yellow]![/yellow]" if check.warning else "[green]✓[/green]" if check.ok else "[red]✗[/red]"
        console.print(f"{mark} {check.what}：{check.detail}")
    return 0 if all(c.ok for c in checks) else 1


def cmd_import(args) -> int:
    from .replay import import_dir
    from .runner import open_store

    cfg = _load(args)
    counts = import_dir(open_store(cfg), cfg, _office(args, cfg), Path(args.dir), receipts=args.send_receipts)
    print(", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) or "no .eml files found")
    return 0


def cmd_replay(args) -> int:
    from .codes import mask_ids
    from .replay import replay
    from .runner import deliver, open_store

    cfg = _load(args)
    office = _office(args, cfg)
    engine = open_store(cfg)
    original, decision, committed = replay(engine, cfg, office, args.message_id, dry_run=args.dry_run, force=args.force)
    _print_json({
        "message_id": original.message_id, "stored": {"status": original.status, "reason": original.reason},
        "now": {"status": decision.status, "reason": decision.reason, "period": decision.period or None,
                "problems": [{**p.as_dict(), "message": mask_ids(p.message)} for p in decision.problems]},
        "committed": committed is not None,
    })
    if committed is not None:
        deliver(engine, office)
    return 0


def _period_or_year(value: str) -> str:
    if len(value) == 4 and value.isdigit():
        return value
    try:
        return _period(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError("use YYYY-MM for a month (e.g. 2026-11) or YYYY for a whole year") from None


def _period(value: str) -> str:
    try:
        dt.datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError("use YYYY-MM, e.g. 2026-11") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailbot", description="县信用办情况清单邮件收件系统 (credit office checklist mail bot)")
    common = argparse.ArgumentParser(add_help=False)  # the same options after the command too
    for p in (parser, common):
        default = {} if p is parser else {"default": argparse.SUPPRESS}
        p.add_argument("--config", help="config file (default: $MAILBOT_CONFIG)", **default)
        p.add_argument("--office", help="office id, when the config has several", **default)
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging", **default)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    p = add("run", help="the daemon (foreground)")
    p.set_defaults(func=cmd_run)
    p = add("poll", help="process what is in the mailbox now, deliver the outbox, exit")
    p.add_argument("--once", action="store_true", required=True)
    p.set_defaults(func=cmd_poll)
    p = add("check", help="read and validate one checklist file offline")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)
    p = add("template", help="write the official blank template")
    p.add_argument("out")
    p.set_defaults(func=cmd_template)
    p = add("status", help="who filed, who is late, who is missing")
    p.add_argument("--period", type=_period)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = add("tick", help="run the scheduled work (reminders, notices, 通报) as of a time, deliver, exit")
    p.add_argument("--at", type=_instant, help="ISO date-time (default: now); without an offset it is office time")
    p.add_argument("--dry-run", action="store_true", help="print what would be queued; queue and send nothing")
    p.set_defaults(func=cmd_tick)
    p = add("digest", help="the monthly digest: workbook (and 通报 draft) into --out; mail it with --send")
    p.add_argument("--period", type=_period, help="YYYY-MM (default: the current month)")
    p.add_argument("--out", default=".", help="directory for the files (default: current directory)")
    p.add_argument("--send", action="store_true", help="also queue the digest mail to recipients.digest and deliver")
    p.add_argument("--city", action="store_true", help="the city digest across every office (config `city`)")
    p.set_defaults(func=cmd_digest)
    p = add("export", help="every row in force for a month or a year, for the city platform")
    p.add_argument("--period", type=_period_or_year, required=True, help="YYYY-MM, or YYYY for the whole year")
    p.add_argument("--format", choices=("xlsx", "csv"), default="xlsx")
    p.add_argument("--out", type=Path, help="output file (default: 情况清单导出_<period>.<format>)")
    p.set_defaults(func=cmd_export)
    p = add("demo", help="the whole loop on this machine, no mail account needed")
    p.add_argument("--keep", metavar="DIR", help="keep the demo's files (database, digest, 通报) in DIR")
    p.set_defaults(func=cmd_demo)
    p = add("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True)
    c = csub.add_parser("check", parents=[common], help="validate the config; with --connect also log in to IMAP and SMTP")
    c.add_argument("--connect", action="store_true")
    c.set_defaults(func=cmd_config_check)
    p = add("import", help="ingest a folder of exported .eml files (no receipts unless asked)")
    p.add_argument("dir")
    p.add_argument("--send-receipts", action="store_true", help="answer each imported mail as if it just arrived")
    p.set_defaults(func=cmd_import)
    p = add("replay", help="run an archived message through the current rules")
    p.add_argument("message_id")
    p.add_argument("--dry-run", action="store_true", help="only show what would be decided now")
    p.add_argument("--force", action="store_true", help="also replay a message that was not quarantined")
    p.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line. Everything it creates is owner-only (umask 077: directories 0700,
    files 0600): the database, the archive and the digests hold names and ID numbers. The old
    umask is restored on return, for callers that run commands in their own process."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    umask = os.umask(0o077)
    try:
        return args.func(args)
    except ConfigError as exc:
        print("mailbot：配置有误：", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    except Unusable as exc:
        print(f"mailbot {args.command}: {exc}", file=sys.stderr)
        return 2
    except MailbotError as exc:
        print(f"mailbot: {exc}", file=sys.stderr)
        return 1
    finally:
        os.umask(umask)
