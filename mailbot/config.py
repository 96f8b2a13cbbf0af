"""One YAML file -> typed, validated objects, parsed once at start and passed explicitly.

A file describes either one office (the keys `office`, `imap`, `smtp`, `departments`, ... at
the top) or several (`offices: [...]`, each with those keys); `database`, `archive`, `city`
and `secrets_file` are shared by all offices of a deployment.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError

if TYPE_CHECKING:
    import ssl

_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_ID_RULE = "只能由小写英文字母、数字、“-”和“_”组成，以字母或数字开头，最多40个字符"
_UNKNOWN_KEY = "不认识的配置项（请检查拼写；全部配置项见 config/mailbot.example.yaml）"


def _email(value: str) -> str:
    if not isinstance(value, str) or not _EMAIL.match(value.strip()):
        raise ValueError("不是有效的邮箱地址")
    return value.strip().lower()


Email = Annotated[str, AfterValidator(_email)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Office(_Model):
    id: str = "default"
    name: str
    address: Email
    timezone: str = "Asia/Shanghai"
    phone: str = ""  # shown in every mail's footer, e.g. 0311-84225051
    masthead: str | None = None  # the 通报's 发文机关标志 (default: the name + 文件)
    doc_number_prefix: str = ""  # the 机关代字 of its 发文字号, e.g. 赞信用办 -> 赞信用办〔2026〕 号

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("不是可识别的时区名称（如 Asia/Shanghai）") from None
        return value

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(_ID_RULE)
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def masthead_text(self) -> str:
        return self.masthead or f"{self.name}文件"

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]


Security = Literal["ssl", "starttls", "none"]


class _Server(_Model):
    host: str
    security: Security = "ssl"
    user: str | None = None
    password_env: str | None = None
    timeout_seconds: float = Field(60, gt=0)  # per read: what socket timeouts bound
    deadline_seconds: float = Field(120, gt=0)  # per operation, however the peer drips its bytes
    min_bytes_per_second: int = Field(50_000, gt=0)  # a FETCH, APPEND or send gets size / this longer
    ca_file: Path | None = None  # extra CA bundle to trust (a private server); certificates are always verified

    def ssl_context(self) -> ssl.SSLContext:
        import ssl  # not at the top: the workers import this module and never connect

        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)

    def password(self) -> str | None:
        """Read the secret from the environment variable the config names, at use time."""
        if not self.password_env:
            return None
        value = os.environ.get(self.password_env)
        if value is None:
            raise ConfigError([f"环境变量 {self.password_env} 未设置（{self.user or self.host} 的密码或授权码）"])
        return value

    @model_validator(mode="after")
    def _loopback_only_plain(self):
        if self.security == "none" and self.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("security 为 none（不加密）只允许用于本机地址（127.0.0.1、localhost、::1）")
        return self


class ImapIdCommand(_Model):
    enabled: Literal["auto", "always", "never"] = "auto"
    fields: dict[str, str] = Field(default_factory=lambda: {
        "name": "mailbot", "version": "0.1", "vendor": "mailbot", "support-email": "",
    })


class Imap(_Server):
    port: int = Field(993, gt=0, lt=65536)
    user: str
    password_env: str = "MAILBOT_IMAP_PASSWORD"
    folder: str = "INBOX"
    processed_folder: str = "已处理"
    quarantine_folder: str = "待人工处理"
    reprocess_folder: str = "重新处理"  # the clerk drags mail here to have it handled again
    sent_folder: str | None = None
    since: dt.date | None = None  # the start line; None: the start of the period in progress at the first poll
    claim: Literal["submissions", "all"] = "submissions"  # all: a mailbox given to mailbot alone
    poll_seconds: float = Field(60, gt=0)
    batch_size: int = Field(20, ge=1, le=500)
    idle: bool = True
    id_command: ImapIdCommand = ImapIdCommand()

    @model_validator(mode="after")
    def _distinct_folders(self):
        names = [self.folder, self.processed_folder, self.quarantine_folder, self.reprocess_folder]
        if len(set(names)) != len(names):
            raise ValueError("folder、processed_folder、quarantine_folder、reprocess_folder 必须是四个不同的文件夹")
        return self


class Smtp(_Server):
    port: int = Field(465, gt=0, lt=65536)
    rate_per_minute: int = Field(20, ge=1)
    max_attempts: int = Field(16, ge=1)  # with the backoff capped at 6 h: about two days of trying
    retry_base_seconds: float = Field(60, gt=0)
    spam_pause_seconds: float = Field(1800, gt=0)  # after NetEase's 554 DT:SPM, nothing is sent for this long


class Database(_Model):
    url: str = "sqlite:///var/mailbot.db"


class Archive(_Model):
    dir: Path = Path("var/archive")


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Schedule(_Model):
    deadline_day: int = Field(25, ge=1, le=28)
    reminder_days: list[Annotated[int, Field(ge=1, le=28)]] = Field(default_factory=lambda: [20, 24])
    notice_day: int = Field(26, ge=1, le=28)
    send_time: str = "09:00"
    deadline_moves_on_holiday: bool = False
    weekly_digest_day: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] | None = "monday"

    @field_validator("send_time")
    @classmethod
    def _time(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("请写成24小时制的“时:分”，如 09:00")
        return value

    @model_validator(mode="after")
    def _order(self):
        if any(day > self.deadline_day for day in self.reminder_days):
            raise ValueError("reminder_days（提醒日）不能晚于 deadline_day（截止日）")
        if self.notice_day <= self.deadline_day:
            raise ValueError("notice_day（通知日）必须晚于 deadline_day（截止日）")
        return self


class Recipients(_Model):
    digest: list[Email] = Field(default_factory=list)
    escalation: list[Email] = Field(default_factory=list)


class Tongbao(_Model):
    """The 通报's wording that differs from office to office; the defaults are this county's
    notice of 21 September 2023, the one that set the monthly checklist."""

    addressees: str = "各乡镇人民政府、经开区管委会、县直有关部门"  # 主送机关, without the colon
    notice_title: str = "关于加强在行政管理相关领域使用信用记录和信用报告的通知"
    notice_number: str = ""  # that notice's 发文字号, e.g. 赞信用办〔2023〕5号 ("" when it had none)
    notice_date: dt.date | None = dt.date(2023, 9, 21)
    copy_to: list[str] = Field(default_factory=list)  # 抄送机关, e.g. [县委办公室, 县政府办公室]
    report_to: str = "县委、县政府"  # "本通报结果将上报…" ("" leaves the sentence out)


class Limits(_Model):
    """Bounds on what one message may make us read; beyond them the sender is told, not the parser."""

    max_message_bytes: int = Field(50 * 1024 * 1024, gt=0)
    max_attachment_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_uncompressed_bytes: int = Field(100 * 1024 * 1024, gt=0)
    max_compression_ratio: int = Field(200, gt=0)
    max_rows: int = Field(50_000, gt=0)
    max_columns: int = Field(50, gt=0)
    max_zip_members: int = Field(20, gt=0)
    workers: int = Field(2, ge=0, le=32)  # processes deciding messages in parallel; 0: in the daemon itself
    seconds_per_message: float = Field(120, gt=0)  # a message taking longer is quarantined
    worker_memory_bytes: int = Field(1 << 30, gt=64 << 20)  # address-space cap of each worker


Severity = Literal["error", "warning", "off"]


class Rules(_Model):
    """Severity per problem code; codes not listed keep their built-in default."""

    severity: dict[str, Severity] = Field(default_factory=dict)


class Replies(_Model):
    daily_cap_per_sender: int = Field(10, ge=1)


class Authentication(_Model):
    """Which `Authentication-Results` header to trust: the one the office's provider adds."""

    trusted_authserv_id: str | None = None


class Health(_Model):
    alert_after_minutes: int = Field(30, ge=1)  # polling failing this long mails recipients.digest once


class Department(_Model):
    id: str
    name: str
    aliases: list[str] = Field(default_factory=list)
    emails: list[Email] = Field(min_length=1)
    since: str | None = None  # first period owed, YYYY-MM
    until: str | None = None  # last period owed, YYYY-MM (a retired department)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError(_ID_RULE)
        return value

    @field_validator("since", "until")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^\d{4}-(0[1-9]|1[0-2])$", str(value)):
            raise ValueError("请写成“年-月”，如 2026-03")
        return value

    def owes(self, period: str) -> bool:
        return (self.since is None or self.since <= period) and (self.until is None or period <= self.until)


class OfficeConfig(_Model):
    """Everything about one office: its identity, mailbox, schedule and departments."""

    office: Office
    imap: Imap
    smtp: Smtp
    schedule: Schedule = Schedule()
    recipients: Recipients = Recipients()
    tongbao: Tongbao = Tongbao()
    limits: Limits = Limits()
    rules: Rules = Rules()
    replies: Replies = Replies()
    authentication: Authentication = Authentication()
    health: Health = Health()
    departments: list[Department] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self):
        seen_ids: set[str] = set()
        owner: dict[str, str] = {}
        for dept in self.departments:
            if dept.id in seen_ids:
                raise ValueError(f"departments：单位 id“{dept.id}”出现了两次")
            seen_ids.add(dept.id)
            for email in dept.emails:
                if email in owner:
                    raise ValueError(f"departments：邮箱 {email} 同时登记在单位“{owner[email]}”和“{dept.id}”下")
                owner[email] = dept.id
        return self

    @property
    def id(self) -> str:
        return self.office.id

    def department(self, dept_id: str) -> Department | None:
        return next((d for d in self.departments if d.id == dept_id), None)

    def department_for(self, address: str) -> Department | None:
        address = address.strip().lower()
        return next((d for d in self.departments if address in d.emails), None)


_OFFICE_KEYS = set(OfficeConfig.model_fields)
_SHARED_KEYS = {"database", "archive", "city", "secrets_file"}
SECRETS_FILE = Path("/etc/mailbot/secrets.env")  # the EnvironmentFile of config/mailbot.service


class City(_Model):
    """The city's credit office, which reads one digest across every county office served."""

    name: str
    recipients: list[Email] = Field(min_length=1)
    send_from: str | None = None  # id of the office whose mailbox sends it (default: the first)


class Config(_Model):
    database: Database = Database()
    archive: Archive = Archive()
    city: City | None = None
    secrets_file: Path | None = None  # where the passwords live (default SECRETS_FILE): `config check` looks at who may read it
    offices: list[OfficeConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_offices(self):
        ids = [o.id for o in self.offices]
        if len(set(ids)) != len(ids):
            raise ValueError("offices：每个办公室都需要各自不同的 office.id")
        if self.city and self.city.send_from and self.city.send_from not in ids:
            raise ValueError(f"city.send_from：没有 id 为“{self.city.send_from}”的办公室")
        return self

    def office(self, office_id: str | None = None) -> OfficeConfig:
        if office_id is None:
            if len(self.offices) != 1:
                raise ConfigError([f"配置中有多个办公室，请用 --office 指定其中之一：{'、'.join(o.id for o in self.offices)}"])
            return self.offices[0]
        for office in self.offices:
            if office.id == office_id:
                return office
        raise ConfigError([f"配置中没有 id 为“{office_id}”的办公室（可选：{'、'.join(o.id for o in self.offices)}）"])


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "（顶层）"


def parse(data: object) -> Config:
    """Validate a decoded YAML document; `ConfigError.errors` names each bad key's path."""
    if not isinstance(data, dict):
        raise ConfigError(["（顶层）：应为“键: 值”形式的配置项（office、imap、smtp、departments 等）"])
    single = "offices" not in data
    if single:
        shared = {k: data[k] for k in _SHARED_KEYS if k in data}
        unknown = set(data) - _OFFICE_KEYS - _SHARED_KEYS
        rest = {k: v for k, v in data.items() if k not in _SHARED_KEYS}
        doc = {**shared, "offices": [rest]}
        if unknown:
            raise ConfigError([f"{k}：{_UNKNOWN_KEY}" for k in sorted(unknown)])
    else:
        doc = data
    try:
        config = Config.model_validate(doc)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            if single and loc[:2] == ("offices", 0):
                loc = loc[2:]
            # pydantic puts the failing validator's name in loc for Annotated types; drop it
            loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
            msg = _message(err)
            lines.append(f"{_path(loc)}：{msg}" if loc else msg)
        raise ConfigError(lines) from None
    return config


_EXPECTED = {  # pydantic error type -> what the value should be
    "string_type": "应为文字", "int_type": "应为整数", "int_parsing": "应为整数", "int_from_float": "应为整数",
    "float_type": "应为数字", "float_parsing": "应为数字", "bool_type": "应为 true 或 false",
    "bool_parsing": "应为 true 或 false", "list_type": "应为列表，如 [a, b]", "dict_type": "应为“键: 值”形式的映射",
    "model_type": "应为“键: 值”形式的映射", "model_attributes_type": "应为“键: 值”形式的映射",
    "path_type": "应为文件或目录路径",
    "date_type": "应为日期，如 2026-11-01", "date_parsing": "应为日期，如 2026-11-01",
    "date_from_datetime_parsing": "应为日期，如 2026-11-01", "date_from_datetime_inexact": "应为日期，如 2026-11-01",
    "datetime_type": "应为日期或日期时间，如 2026-11-01", "datetime_parsing": "应为日期或日期时间，如 2026-11-01",
    "datetime_from_date_parsing": "应为日期或日期时间，如 2026-11-01",
}
_BOUNDS = {"greater_than": ("gt", "必须大于{}"), "greater_than_equal": ("ge", "不能小于{}"),
           "less_than": ("lt", "必须小于{}"), "less_than_equal": ("le", "不能大于{}")}


def _message(err: dict) -> str:
    """pydantic's message for one error, in Chinese; our own validators already speak it."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "缺少必填项"
    if kind == "extra_forbidden":
        return _UNKNOWN_KEY
    if kind in ("value_error", "assertion_error"):
        return err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind == "literal_error":
        choices = ctx.get("expected", "").replace(" or ", ", ").replace("'", "").split(", ")
        said = f"只能是以下之一：{'、'.join(choices)}"
    elif kind in _BOUNDS:
        key, text = _BOUNDS[kind]
        bound = ctx.get(key)
        said = text.format(int(bound) if isinstance(bound, float) and bound.is_integer() else bound)
    elif kind == "too_short":
        return f"至少需要{ctx.get('min_length')}项"
    elif kind == "too_long":
        return f"最多只能有{ctx.get('max_length')}项"
    elif kind in _EXPECTED:
        said = _EXPECTED[kind]
    else:
        return f"取值无效（{err['msg']}）"
    if isinstance(value, (str, int, float, bool)) and len(str(value)) <= 40:
        said += f"（现为“{value}”）" if isinstance(value, str) else f"（现为 {value}）"
    return said


def load(path: str | os.PathLike | None = None) -> Config:
    """Load from `path`, else from $MAILBOT_CONFIG. Relative paths in the file are relative to the cwd."""
    path = path or os.environ.get("MAILBOT_CONFIG")
    if not path:
        raise ConfigError(["没有指定配置文件：请用 --config 路径 指定，或设置环境变量 MAILBOT_CONFIG"])
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}：无法读取（{exc.strerror}）"]) from None
    import yaml  # here, not at the top: every worker imports this module (to unpickle the office)

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"第{mark.line + 1}行第{mark.column + 1}列" if mark else ""
        raise ConfigError([f"{path}：不是有效的 YAML 格式（{where or '位置不明'}：{getattr(exc, 'problem', exc)}）"]) from None
    return parse(data)
