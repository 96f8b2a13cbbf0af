"""The `mailbot` command. Config is loaded once here and passed down explicitly."""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from pathlib import Path

from . import config as config_mod
from .errors import ConfigError, MailbotError, Unusable
from .terminal import cells, wrap

log = logging.getLogger("mailbot")


class _Masked(logging.Formatter):
    """Every line with its ID numbers masked, tracebacks included: a bounce's subject, a
    Message-ID or an error quoting a cell may carry one, and the journal is read by many."""

    def format(self, record: logging.LogRecord) -> str:
        from .codes import mask_ids

        return mask_ids(super().format(record))


def _setup_logging(verbose: bool, log_file: Path | None = None) -> None:
    """Log lines to stderr; with `log_file`, into that file, and to stderr only when `verbose`."""
    handlers: list[logging.Handler] = [logging.FileHandler(log_file, encoding="utf-8")] if log_file else []
    if verbose or not log_file:
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(_Masked("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                                     datefmt="%Y-%m-%dT%H:%M:%S"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=handlers)


def _load(args) -> config_mod.Config:
    return config_mod.load(args.config)


def _office(args, cfg: config_mod.Config):
    return cfg.office(getattr(args, "office", None))


def _print_json(data) -> None:
    # compact: the C encoder, several times faster than indent= on a 20,000-row checklist; a long
    # "rows" list is written a thousand rows at a time (the same text), so that the whole
    # document never stands in memory twice (as text, then as bytes): 40 MB for 20,000 rows
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or len(rows) < 2000:
        print(json.dumps(data, ensure_ascii=False, default=str))
        return
    mark = "\x00rows\x00"
    head, tail = json.dumps({**data, "rows": mark}, ensure_ascii=False, default=str).split(json.dumps(mark), 1)
    out = sys.stdout
    out.write(head + "[")
    for start in range(0, len(rows), 1000):
        chunk = json.dumps(rows[start:start + 1000], ensure_ascii=False, default=str)[1:-1]
        out.write((", " if start else "") + chunk)
    out.write("]" + tail + "\n")


# --- commands --------------------------------------------------------------------------------

def cmd_run(args) -> int:
    from .daemon import Daemon
    from .store import connect

    cfg = _load(args)
    engine = connect(cfg.database.url, apart=True)  # the daemon never holds alembic
    daemon = Daemon(cfg, engine, [_office(args, cfg)] if args.office else None)
    daemon.install_signals()
    daemon.run()
    return 0


def cmd_poll(args) -> int:
    from .daemon import sole
    from .runner import poll_once
    from .store import connect

    cfg = _load(args)
    if args.dry_run:
        from .preview import command

        return command(cfg, [_office(args, cfg)] if args.office else cfg.offices)
    engine = connect(cfg.database.url)
    offices = [_office(args, cfg)] if args.office else cfg.offices
    with sole(engine, offices) as keeper:
        for office in offices:
            result = poll_once(engine, cfg, office, fence=keeper.fence(office.id))
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


def _existing_store(cfg: config_mod.Config):
    """For the commands that only read: never an empty database made on the way."""
    from .store import connect

    return connect(cfg.database.url, create=False)


def cmd_status(args) -> int:
    from .status import print_table, start_line, status

    cfg = _load(args)
    if args.daemons:
        return _status_daemons(args, cfg)
    office = _office(args, cfg)
    engine = _existing_store(cfg)
    rows = status(engine, office, args.period)
    if args.json:
        _print_json(rows)
    else:
        print_table(office, rows, args.period, since=start_line(engine, office))
    return 0


def _status_daemons(args, cfg) -> int:
    from .lease import fleet
    from .status import print_daemons

    offices = [_office(args, cfg)] if args.office else cfg.offices
    view = fleet(_existing_store(cfg), [o.id for o in offices])
    if args.json:
        _print_json(view)
    else:
        print_daemons(view, offices[0].office.tz)
    return 0


def cmd_tick(args) -> int:
    """The scheduled work as of `--at`, then delivery; prints what was queued."""
    from .runner import deliver_all_due
    from .schedule import tick_at
    from .store import connect

    cfg = _load(args)
    engine = connect(cfg.database.url)
    for office in [_office(args, cfg)] if args.office else cfg.offices:
        done = tick_at(engine, office, args.at, dry_run=args.dry_run)
        tz = office.office.tz
        if not done.queued:
            print(f"{office.id}: nothing due at {done.now.astimezone(tz).isoformat(timespec='minutes')} ({tz.key})" +
                  ("" if done.watched else " (the mailbox was never polled: no start line yet, so nothing is sent)"))
        for q in done.queued:
            print(f"{'would queue' if args.dry_run else 'queued'} {q.kind} {q.period} {q.department_id or 'office'} "
                  f"-> {', '.join(q.recipients)}: {q.subject}")
        if not args.dry_run:
            print(f"{office.id}: sent {deliver_all_due(engine, office)} mail(s)")
    return 0


def _instant(value: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"“{value}”不是时间：请写成如 2026-11-20T09:00（办公室所在时区）"
                                         "或 2026-11-20T01:00+00:00") from None


def cmd_digest(args) -> int:
    """The workbook (and the 通报 draft) written and their paths printed; with --send, the
    digest mail queued and the outbox delivered."""
    from .digest import make
    from .runner import deliver_all_due

    cfg = _load(args)
    if args.city:
        return _city_digest(args, cfg)
    office = _office(args, cfg)
    engine = _existing_store(cfg)
    if args.send and not office.recipients.digest:
        print("mailbot digest: recipients.digest is not configured; nothing sent")
        return 1
    made = make(engine, office, args.period, Path(args.out), send=args.send, force=args.force)
    if made.still_open:
        print(made.still_open, file=sys.stderr)
    for path in made.paths:
        print(path)
    if args.send:
        print(f"queued {made.key} -> {', '.join(office.recipients.digest)}" if made.queued
              else f"{made.key} was already queued; not queued again")
        print(f"sent {deliver_all_due(engine, office)} mail(s)")
    return 0


def _city_digest(args, cfg: config_mod.Config) -> int:
    """`digest --city`: the city workbook; with --send, mailed to the city's recipients."""
    from . import city
    from .runner import deliver_all_due

    engine = _existing_store(cfg)
    if cfg.city is None:
        print("mailbot digest --city: no `city` section in the config")
        return 2
    period = args.period or city.default_period(cfg)
    print(city.write(engine, cfg, period, Path(args.out)))
    if args.send:
        print("queued" if city.queue(engine, cfg, period) else f"city:{period} was already queued; not queued again")
        print(f"sent {deliver_all_due(engine, city.sender(cfg))} mail(s)")
    return 0


def cmd_export(args) -> int:
    from .export import export

    cfg = _load(args)
    path, _rows = export(_existing_store(cfg), _office(args, cfg), args.period, args.format, args.out)
    print(path)
    return 0


def cmd_rules(args) -> int:
    """The problem codes `rules.severity` may set; with a config, what this office has made of them."""
    from rich.console import Console
    from rich.table import Table

    from .rules import DEFAULT_SEVERITY, MEANING, SEVERITY_ZH

    office = _office(args, _load(args)) if (args.config or _env_config()) else None
    table = Table("代码", "默认级别", *(["本配置"] if office else []), "含义", title="rules.severity 可以调整的问题代码")
    table.columns[-1].overflow = "fold"
    for code, severity in DEFAULT_SEVERITY.items():
        mine = [SEVERITY_ZH[office.rules.severity.get(code, severity)]] if office else []
        table.add_row(code, SEVERITY_ZH[severity], *mine, MEANING[code])
    console = Console()
    console.print(table)
    console.print("级别：error 退回（须修改后重新报送），warning 受理但在回执中提示，off 不检查。"
                  "在配置中写 rules: {severity: {代码: 级别}} 即可调整，例如 {measure_empty: error}。", overflow="fold")
    return 0


def cmd_demo(args) -> int:
    """The story on the terminal, the log in the demo's directory (on the terminal too with -v)."""
    import tempfile

    from .demo import LOG_FILE, run, usable_dir

    if args.keep:
        root = Path(args.keep)
        if why := usable_dir(root):
            print(f"mailbot demo：{why}。", file=sys.stderr)
            return 2
        root.mkdir(parents=True, exist_ok=True)
    else:
        root = Path(tempfile.mkdtemp(prefix="mailbot-demo-"))
    _setup_logging(args.verbose, root / LOG_FILE)
    return run(root, keep=bool(args.keep))


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
    from .store import connect

    cfg = _load(args)
    counts = import_dir(connect(cfg.database.url), cfg, _office(args, cfg), Path(args.dir), receipts=args.send_receipts)
    print(", ".join(f"{status}: {n}" for status, n in sorted(counts.items())) or "no .eml files found")
    return 0


def cmd_replay(args) -> int:
    from .codes import mask_ids
    from .replay import replay
    from .runner import deliver_all_due
    from .store import connect

    cfg = _load(args)
    office = _office(args, cfg)
    engine = connect(cfg.database.url)
    original, decision, committed = replay(engine, cfg, office, args.message_id, dry_run=args.dry_run, force=args.force)
    _print_json({
        "message_id": original.message_id, "stored": {"status": original.status, "reason": original.reason},
        "now": {"status": decision.status, "reason": decision.reason, "period": decision.period or None,
                "problems": [{**p.as_dict(), "message": mask_ids(p.message)} for p in decision.problems]},
        "committed": committed is not None,
    })
    if committed is not None:
        deliver_all_due(engine, office)
    return 0


def cmd_resend(args) -> int:
    """Without numbers, the mails that may be sent again by hand; with them, send those again."""
    from . import outbox
    from .digest import MAIL_KIND_ZH
    from .runner import deliver_all_due

    cfg = _load(args)
    office = _office(args, cfg)
    engine = _existing_store(cfg)
    if not args.ids:
        mails = outbox.unsent(engine, office)
        if not mails:
            print("没有发送结果不明或发送失败的邮件。")
            return 0
        for m in mails:
            said = "发送结果不明" if m.status == "uncertain" else "发送失败"
            at = (m.attempted_at or m.created_at).astimezone(office.office.tz)
            print(f"编号 {m.id}  {said}  {at:%Y-%m-%d %H:%M}  {MAIL_KIND_ZH.get(m.kind, m.kind)}  收件人 {'、'.join(m.recipients)}  “{m.subject}”")
        print("确认对方未收到后，执行 mailbot resend 编号（可写多个）重新发送。")
        return 0
    mails = outbox.resend(engine, office, args.ids)
    sent = deliver_all_due(engine, office)
    print(f"已重新排队 {len(mails)} 封，本次发出 {sent} 封（未发出的稍后自动重试）。")
    return 0


def _period_or_year(value: str) -> str:
    if len(value) == 4 and value.isdigit():
        return value
    try:
        return _period(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"“{value}”不是月份或年份：月份写成 年-月（如 2026-11），全年写成 2026") from None


def _period(value: str) -> str:
    try:
        dt.datetime.strptime(value, "%Y-%m")
    except ValueError:
        raise argparse.ArgumentTypeError(f"“{value}”不是月份：请写成 年-月，如 2026-11") from None
    return value


# argparse's own words (usage, headings, errors), said in Chinese: (pattern, replacement)
_ARGPARSE_ERRORS = tuple((re.compile(rx), zh) for rx, zh in (
    (r"^the following arguments are required: (.*)$", r"缺少必需的参数：\1"),
    (r"^unrecognized arguments: (.*)$", r"不认识的参数：\1（mailbot 命令 -h 可查看用法）"),
    (r"^argument 命令: invalid choice: '?([^']*)'? \(choose from (.*)\)$", r"没有“\1”这个命令（可用的命令：\2）"),
    (r"^argument (\S+): invalid choice: '?([^']*)'? \(choose from (.*)\)$", r"参数 \1 不能取“\2”（可选：\3）"),
    (r"^argument (\S+): expected one argument$", r"参数 \1 后面需要一个值"),
    (r"^argument (\S+): expected .*$", r"参数 \1 后面的值个数不对"),
    (r"^argument (\S+): invalid \S+ value: (.*)$", r"参数 \1 的值 \2 无效"),
    (r"^argument (\S+): not allowed with argument (.*)$", r"参数 \1 不能与 \2 同时使用"),
    (r"^argument (\S+): ignored explicit argument (.*)$", r"参数 \1 不需要值（多了 \2）"),
    (r"^argument (\S+): (.*)$", r"参数 \1：\2"),  # our own type checks already speak Chinese
    (r"^ambiguous option: (\S+) could match (.*)$", r"选项 \1 不明确，可能是：\2"),
))


class _Formatter(argparse.HelpFormatter):
    """Headings in Chinese; columns and line breaks counted in terminal cells, not characters."""

    def add_usage(self, usage, actions, groups, prefix=None):
        super().add_usage(usage, actions, groups, "用法：" if prefix is None else prefix)

    def add_argument(self, action):
        super().add_argument(action)
        if action.help is not argparse.SUPPRESS:  # the help column clears the widest invocation on screen
            width = cells(self._format_action_invocation(action)) + self._current_indent
            self._action_max_length = max(self._action_max_length, width)

    def _format_usage(self, usage, actions, groups, prefix):
        """argparse wraps the usage by characters: narrow its width until it fits in cells."""
        width = self._width
        try:
            for _ in range(4):
                text = super()._format_usage(usage, actions, groups, prefix)
                over = max(map(cells, text.splitlines())) - width
                if over <= 0:
                    break
                self._width -= over
        finally:
            self._width = width
        return text

    def _split_lines(self, text, width):
        return wrap(text, width)

    def _fill_text(self, text, width, indent):
        return "\n".join(indent + line for line in wrap(text, width - len(indent)))

    def _format_action(self, action):
        if isinstance(action, argparse._SubParsersAction):  # the commands, without a line for "命令"
            return "".join(self._format_action(sub) for sub in action._get_subactions())
        text = super()._format_action(action)
        invocation = self._format_action_invocation(action)
        wide = cells(invocation) - len(invocation)
        first, newline, rest = text.partition("\n")
        end = first.find(invocation) + len(invocation)
        if wide and end >= len(invocation):  # argparse padded by characters: take the extra cells back
            gap = len(first) - end - len(first[end:].lstrip(" "))
            first = first[:end] + first[end + min(wide, max(gap - 2, 0)):]
        return first + newline + rest

    def format_help(self):
        return re.sub(r"^(用法：.*?|位置参数|选项|命令):$", r"\1：", super().format_help(), flags=re.M)


class _Parser(argparse.ArgumentParser):
    """argparse with its headings, its -h and its error messages in Chinese."""

    def __init__(self, *args, add_help: bool = True, parents=(), **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, add_help=False, **kwargs)
        self._positionals.title = "位置参数"
        self._optionals.title = "选项"
        if add_help:
            self.add_argument("-h", "--help", action="help", default=argparse.SUPPRESS, help="显示本帮助并退出")
        for parent in parents:  # as argparse does, but after the headings are named: one 选项 section
            self._add_container_actions(parent)
            self._defaults.update(parent._defaults)

    def error(self, message: str):
        message = message.replace("', '", "、").replace("'", "") if "choose from" in message else message
        for pattern, zh in _ARGPARSE_ERRORS:
            if pattern.match(message):
                message = pattern.sub(zh, message)
                break
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}：错误：{message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mailbot", description="县信用办情况清单邮件收件系统：收取各单位报送的情况清单，校验、登记、回执，"
                                                  "按时提醒和通知，并生成汇总表和通报草稿。")
    common = _Parser(add_help=False)  # the same options after the command too
    for p in (parser, common):
        default = {} if p is parser else {"default": argparse.SUPPRESS}
        p.add_argument("--config", metavar="路径", help="配置文件（默认读取环境变量 MAILBOT_CONFIG 指定的文件）", **default)
        p.add_argument("--office", metavar="ID", help="办公室 id：配置中有多个县信用办时指定其中一个", **default)
        p.add_argument("-v", "--verbose", action="store_true", help="显示详细日志（调试用）", **default)
    sub = parser.add_subparsers(dest="command", required=True, title="命令", metavar="命令")

    def add(name: str, summary: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=summary, description=summary, **kw)

    p = add("run", "常驻运行：收取邮件、校验、发回执，按时提醒和通知（前台运行，收到 SIGTERM 处理完当前邮件后退出）")
    p.set_defaults(func=cmd_run)
    p = add("poll", "处理邮箱中现有的邮件，发出待发的邮件，然后退出；加 --dry-run 只预览、不做任何改动")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="处理一次后退出（不加也是如此；保留此选项以兼容以前的用法）")
    mode.add_argument("--dry-run", action="store_true",
                      help="试运行：逐封列出每封邮件将如何处理，不做任何改动（不写数据库、不标记已读、不移动邮件、不发邮件）")
    p.set_defaults(func=cmd_poll)
    p = add("check", "离线检查一个清单文件，不收发邮件（退出码：0 通过，1 未通过，2 文件无法使用）")
    p.add_argument("file", metavar="文件", help="要检查的清单文件（.xlsx、.xls、.csv、.docx 或 .zip）")
    p.add_argument("--json", action="store_true", help="以 JSON 格式输出结果，供其他程序读取")
    p.set_defaults(func=cmd_check)
    p = add("template", "生成空白的情况清单模板（Excel，含填报说明和措施下拉选项）")
    p.add_argument("out", metavar="输出文件", help="保存到哪个文件，如 情况清单模板.xlsx")
    p.set_defaults(func=cmd_template)
    p = add("status", "查看各单位的报送情况：已按时报送、逾期报送、报送未通过、未报送")
    p.add_argument("--period", type=_period, metavar="年-月", help="哪个月份，如 2026-11（默认本月）")
    p.add_argument("--daemons", action="store_true",
                   help="查看各 mailbot 守护进程（多台机器、多个进程时）的运行状态，以及每个办公室的邮箱由哪个进程处理")
    p.add_argument("--json", action="store_true", help="以 JSON 格式输出，供其他程序读取")
    p.set_defaults(func=cmd_status)
    p = add("tick", "立即执行定时任务（提醒、通知、通报、周报和月报），发出邮件后退出")
    p.add_argument("--at", type=_instant, metavar="时间",
                   help="按这个时间执行，如 2026-11-20T09:00（默认现在；不写时区时按办公室所在时区）")
    p.add_argument("--dry-run", action="store_true", help="只列出到时会发的邮件，不排队、不发送")
    p.set_defaults(func=cmd_tick)
    p = add("digest", "生成月度汇总表（有需要通报的单位时还有通报草稿）；加 --send 同时发给县信用办")
    p.add_argument("--period", type=_period, metavar="年-月", help="哪个月份，如 2026-11（默认：截止日已过的最近一个月）")
    p.add_argument("--out", default=".", metavar="目录", help="文件保存到哪个目录（默认当前目录）")
    p.add_argument("--send", action="store_true", help="同时把月报邮件发给 recipients.digest 中的收件人")
    p.add_argument("--force", action="store_true", help="截止日还没到的月份，也起草通报")
    p.add_argument("--city", action="store_true", help="生成全市汇总（所有县，收件人见配置中的 city）")
    p.set_defaults(func=cmd_digest)
    p = add("export", "导出某月（或全年）在用的全部记录，供报送市县一体化平台")
    p.add_argument("--period", type=_period_or_year, required=True, metavar="年-月或年",
                   help="月份如 2026-11，或年份如 2026（全年）")
    p.add_argument("--format", choices=("xlsx", "csv"), default="xlsx", help="文件格式：xlsx（默认）或 csv")
    p.add_argument("--out", type=Path, metavar="文件", help="输出文件（默认 情况清单导出_<月份>.<格式>）")
    p.set_defaults(func=cmd_export)
    p = add("rules", "列出 rules.severity 中可以调整的问题代码、默认级别和含义")
    p.set_defaults(func=cmd_rules)
    p = add("demo", "在本机演示一个月的全过程，无需邮箱账号（内置邮件服务器，邮件不会发出本机）")
    p.add_argument("--keep", metavar="目录",
                   help="把演示的全部文件（发出的每封邮件、问题标注表、汇总表、通报草稿、数据库、日志和索引）保存到这个目录")
    p.set_defaults(func=cmd_demo, logs_itself=True)
    p = add("config", "配置工具")
    csub = p.add_subparsers(dest="config_command", required=True, title="命令", metavar="命令", parser_class=_Parser)
    summary = "检查配置文件；加 --connect 还会实际登录 IMAP 和 SMTP 试一试"
    c = csub.add_parser("check", parents=[common], help=summary, description=summary)
    c.add_argument("--connect", action="store_true", help="实际连接并登录邮箱服务器（IMAP 和 SMTP），逐项报告结果")
    c.set_defaults(func=cmd_config_check)
    p = add("import", "导入一个文件夹中以往导出的 .eml 邮件（默认不发回执）")
    p.add_argument("dir", metavar="文件夹", help="存放 .eml 文件的文件夹")
    p.add_argument("--send-receipts", action="store_true", help="像刚收到一样，给每封导入的邮件发回执")
    p.set_defaults(func=cmd_import)
    p = add("resend", "重新发送“发送结果不明”或“发送失败”的邮件；不带编号时列出这些邮件及其编号")
    p.add_argument("ids", nargs="*", type=int, metavar="编号", help="要重新发送的邮件编号（见不带编号时的列表、status 或月报）")
    p.set_defaults(func=cmd_resend)
    p = add("replay", "用当前规则重新处理存档中的一封邮件（如“系统处理出错”被隔离的邮件）")
    p.add_argument("message_id", metavar="Message-ID", help="邮件的 Message-ID（见日志、周报或月报）")
    p.add_argument("--dry-run", action="store_true", help="只显示现在会如何处理，不入库、不发邮件")
    p.add_argument("--force", action="store_true", help="没有被隔离的邮件也重新处理")
    p.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line. Everything it creates is owner-only (umask 077: directories 0700,
    files 0600): the database, the archive and the digests hold names and ID numbers. The old
    umask is restored on return, for callers that run commands in their own process."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "logs_itself", False):
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
        print(f"mailbot {args.command}：{exc}", file=sys.stderr)
        return 2
    except MailbotError as exc:
        print(f"mailbot {args.command}：{exc}", file=sys.stderr)
        return 1
    finally:
        os.umask(umask)
