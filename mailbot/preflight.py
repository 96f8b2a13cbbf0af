"""`mailbot config check [--connect]`: is the config valid, and can we really log in?

Each failure is translated into what the county IT person must do about it (wrong 授权码,
NetEase's "Unsafe Login", an unverifiable certificate, a missing folder, a closed port).
"""
from __future__ import annotations

import datetime as dt
import os
import smtplib
import socket
import ssl
import stat
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from imap_tools.errors import MailboxFolderSelectError, MailboxLoginError
from sqlalchemy.engine import make_url

from . import workdays
from .config import SECRETS_FILE, Config, OfficeConfig
from .errors import ConfigError
from .mailbox import Mailbox


@dataclass
class Check:
    what: str
    ok: bool
    detail: str
    warning: bool = False  # ok, but the admin should act: shown, and the exit status stays 0


def _network(exc: BaseException, host: str, port: int) -> str | None:
    from .deadline import DeadlineExceeded

    if isinstance(exc, DeadlineExceeded):
        return (f"{host}:{port} 在规定时限 {exc.seconds:.0f} 秒内没有完成 {exc.stage}，连接已断开：服务器响应过慢或网络不稳定"
                f"（时限见配置 deadline_seconds）。")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS 证书校验失败（{exc.verify_message}）。请确认服务器地址 {host} 正确；"
                "自建服务器请在配置中用 ca_file 指定其 CA 证书。")
    if isinstance(exc, ssl.SSLError):
        return f"TLS 握手失败（{exc}）。请检查 security 与端口是否匹配：ssl 用 993/465，starttls 用 143/587。"
    if isinstance(exc, socket.gaierror):
        return f"无法解析服务器地址 {host}，请检查 host 拼写和本机 DNS。"
    if isinstance(exc, (ConnectionRefusedError, socket.timeout, TimeoutError)):
        return f"无法连接 {host}:{port}（{type(exc).__name__}），请检查端口、防火墙和网络。"
    if isinstance(exc, OSError):
        return f"连接 {host}:{port} 出错：{exc}"
    return None


def _start_line(office: OfficeConfig, box: Mailbox, database_url: str | None) -> str:
    """The INBOX size, the start line, and how many messages lie past it (not yet read)."""
    from . import preview, store, watch
    from .models import StartLine, utcnow

    stored = None
    engine = store.open_readonly(database_url) if database_url else None
    if engine is not None:
        try:
            if store.has_table(engine, StartLine.__tablename__):
                with store.reading(engine) as session:
                    stored = watch.current(session, office)
        finally:
            engine.dispose()
    line = watch.planned(office, box.uidvalidity, utcnow(), stored)
    uids = watch.unread(box, line)
    past = sum(1 for start in range(0, len(uids), 500) for g in box.glance(uids[start:start + 500])
               if g.arrived >= line.floor)
    return (f"收件箱 {office.imap.folder} 共 {box.exists} 封；起始线 {preview.start_line_zh(office, line, stored is not None)}；"
            f"起始线之后尚未读取的邮件 {past} 封（可先运行 mailbot poll --dry-run 逐封查看将如何处理）。")


def check_imap(office: OfficeConfig, database_url: str | None = None) -> Check:
    imap = office.imap
    what = f"IMAP {imap.user}@{imap.host}:{imap.port}（{imap.security}）"
    box = Mailbox(imap)
    try:
        box.open()
        folders = [imap.folder, imap.processed_folder, imap.quarantine_folder, imap.reprocess_folder]
        return Check(what, True, f"登录成功，ID 命令{'已发送' if box.id_sent else '未发送（服务器未提供）'}，"
                                 f"文件夹 {'、'.join(folders)} 可用，UIDVALIDITY {box.uidvalidity}。"
                                 + _start_line(office, box, database_url))
    except ConfigError as exc:
        return Check(what, False, "; ".join(exc.errors))
    except MailboxLoginError as exc:
        return Check(what, False, f"登录被拒绝（{exc.command_result[1]!r}）。126/163 邮箱须使用“客户端授权码”而不是网页登录密码；"
                                  f"请在邮箱设置中开启 IMAP/SMTP 服务并生成授权码，写入环境变量 {imap.password_env}。")
    except MailboxFolderSelectError as exc:
        text = repr(exc.command_result)
        if "Unsafe Login" in text:
            return Check(what, False, "服务器拒绝选择文件夹：NO SELECT Unsafe Login。网易邮箱要求登录后先发送 ID 命令，"
                                      "请把 imap.id_command.enabled 设为 auto 或 always。")
        return Check(what, False, f"无法打开文件夹 {imap.folder!r}（{text}）。请确认文件夹名称（收件箱为 INBOX）。")
    except Exception as exc:
        return Check(what, False, _network(exc, imap.host, imap.port) or f"{type(exc).__name__}: {exc}")
    finally:
        box.close()


def check_smtp(office: OfficeConfig) -> Check:
    from .outbox import close, connect

    cfg = office.smtp
    what = f"SMTP {cfg.user or '(不认证)'}@{cfg.host}:{cfg.port}（{cfg.security}）"
    try:
        smtp = connect(cfg)
        try:
            with smtp.watch.stage("NOOP", cfg.deadline_seconds):
                smtp.noop()
        finally:
            close(smtp, cfg)
        return Check(what, True, "连接并登录成功。" if cfg.user else "连接成功。")
    except ConfigError as exc:
        return Check(what, False, "; ".join(exc.errors))
    except smtplib.SMTPAuthenticationError as exc:
        return Check(what, False, f"登录被拒绝（{exc.smtp_code} {exc.smtp_error!r}）。请使用邮箱的客户端授权码，"
                                  f"并确认已开启 SMTP 服务（环境变量 {cfg.password_env}）。")
    except Exception as exc:
        return Check(what, False, _network(exc, cfg.host, cfg.port) or f"{type(exc).__name__}: {exc}")


def shared_addresses(config: Config) -> list[Check]:
    """An address registered in two offices (within one it is refused): each office then
    counts its mail as its own department's, and both send it reminders and notices."""
    owners: dict[str, list[str]] = {}
    for office in config.offices:
        for dept in office.departments:
            for email in dept.emails:
                owners.setdefault(email, []).append(f"{office.id}（{dept.name}）")
    return [Check(f"邮箱登记 {email}", True,
                  f"该邮箱同时登记在 {len(where)} 个办公室：{'、'.join(where)}。它发往哪个办公室邮箱的清单就计为该办公室"
                  "对应单位的报送，各办公室也都会向它发送催报和通知；如非有意，请在配置中只保留一处。", warning=True)
            for email, where in owners.items() if len(where) > 1]


_PERSONAL = "其中有单位名称、身份证号等个人信息（安全保密）"


def _exposed(path: Path, what: str, holds: str, fix: str) -> Check | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if not mode & (stat.S_IROTH | stat.S_IWOTH | stat.S_IXOTH):
        return None
    return Check(f"文件权限 {path}", True, f"{what}可被本机其他用户访问（权限 {stat.filemode(mode)}），{holds}。"
                                       f"请执行：{fix}", warning=True)


def exposed_files(config: Config, config_path: str | os.PathLike | None) -> list[Check]:
    """Data at rest must be owner-only: the database and the raw-mail archive hold names and
    ID numbers, and were created readable by every local user (umask 022) before issue 14."""
    found = []
    url = make_url(config.database.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database)
        found += [_exposed(db.parent, "数据库所在目录", _PERSONAL, f"chmod -R go-rwx {db.parent}"),
                  _exposed(db, "数据库文件", _PERSONAL, f"chmod go-rwx {db}*")]
    archive = Path(config.archive.dir)
    found.append(_exposed(archive, "邮件存档目录", _PERSONAL, f"chmod -R go-rwx {archive}"))
    if config_path:
        found.append(_exposed(Path(config_path), "配置文件", "其中有各单位的邮箱地址", f"chmod o-rwx {config_path}"))
    secrets = config.secrets_file or SECRETS_FILE
    found.append(_exposed(secrets, "密码文件", "其中有邮箱的客户端授权码", f"chmod 600 {secrets}"))
    return [c for c in found if c is not None]


def calendar(today: dt.date) -> list[Check]:
    """The holiday data must cover this year, and from December on the next: the State Council
    publishes each year's 放假安排 late in the year before, and chinesecalendar follows."""
    years = [today.year] + ([today.year + 1] if today.month == 12 else [])
    missing = [year for year in years if not workdays.has_data(year)]
    if not missing:
        return []
    year = missing[0]
    if year == today.year:
        said = f"没有今年（{year}年）的法定节假日和调休安排：现在的提醒日、通知日按周一至周五推算，可能与实际放假安排不符。请立即升级"
    else:
        said = (f"没有{year}年的法定节假日和调休安排：{year}年1月起的提醒日、通知日将按周一至周五推算，可能与实际放假安排不符。"
                "国务院每年年底公布下一年的放假安排，chinesecalendar 随后发布新版本，请每年12月升级")
    return [Check(f"节假日数据（chinesecalendar {version('chinesecalendar')}）", True,
                  f"{said}：sudo {Path(sys.prefix) / 'bin' / 'pip'} install -U chinesecalendar，"
                  "然后重启服务（sudo systemctl restart mailbot）。", warning=True)]


def run(config: Config, connect: bool, config_path: str | os.PathLike | None = None,
        today: dt.date | None = None) -> list[Check]:
    checks = []
    database = make_url(config.database.url).render_as_string(hide_password=True)
    for office in config.offices:
        checks.append(Check(f"配置（{office.id}）", True,
                            f"{office.office.name}，{len(office.departments)} 个单位，"
                            f"截止日每月{office.schedule.deadline_day}日，数据库 {database}"))
        if connect:
            checks += [check_imap(office, config.database.url), check_smtp(office)]
    tz = config.offices[0].office.tz
    today = today or dt.datetime.now(tz).date()
    return checks + shared_addresses(config) + exposed_files(config, config_path) + calendar(today)
