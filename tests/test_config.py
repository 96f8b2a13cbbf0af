"""Config: parsed once, typed, and every mistake named by its key path."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from mailbot import config
from mailbot.cli import main
from mailbot.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config" / "mailbot.example.yaml"
MINIMAL = {
    "office": {"name": "县信用办", "address": "zhxxyt@126.com"},
    "imap": {"host": "imap.126.com", "user": "zhxxyt@126.com"},
    "smtp": {"host": "smtp.126.com"},
    "departments": [{"id": "scjgj", "name": "赞皇县市场监督管理局", "emails": ["a@example.gov.cn"]}],
}


def errors_of(data) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(data)
    return info.value.errors


def test_minimal_config_gets_every_default():
    office = config.parse(MINIMAL).office()
    assert office.imap.port == 993 and office.imap.security == "ssl" and office.imap.processed_folder == "已处理"
    assert office.schedule.reminder_days == [20, 24] and office.schedule.notice_day == 26
    assert office.smtp.user is None and office.smtp.password() is None
    assert office.departments[0].aliases == []


def test_bad_email_is_named_by_its_path():
    data = json.loads(json.dumps(MINIMAL))
    data["departments"] += [{"id": f"d{i}", "name": "x", "emails": ["ok@example.cn"]} for i in range(2)]
    data["departments"].append({"id": "d9", "name": "x", "emails": ["not-an-address"]})
    assert errors_of(data) == ["departments[3].emails[0]：不是有效的邮箱地址"]


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["office"].pop("address"), "office.address：缺少必填项"),
    (lambda d: d.pop("departments"), "departments：缺少必填项"),
    (lambda d: d["imap"].update(security="tls"), "imap.security：只能是以下之一：ssl、starttls、none（现为“tls”）"),
    (lambda d: d["smtp"].update(security="none"), "smtp：security 为 none（不加密）只允许用于本机地址（127.0.0.1、localhost、::1）"),
    (lambda d: d.update(schedul={}), "schedul：不认识的配置项（请检查拼写；全部配置项见 config/mailbot.example.yaml）"),
    (lambda d: d["imap"].update(idel=True), "imap.idel：不认识的配置项（请检查拼写；全部配置项见 config/mailbot.example.yaml）"),
    (lambda d: d.update(schedule={"send_time": "9am"}), "schedule.send_time：请写成24小时制的“时:分”，如 09:00"),
    (lambda d: d.update(schedule={"reminder_days": [20, 27]}), "schedule：reminder_days（提醒日）不能晚于 deadline_day（截止日）"),
    (lambda d: d.update(schedule={"deadline_day": 31}), "schedule.deadline_day：不能大于28（现为 31）"),
    (lambda d: d["imap"].update(port="imaps"), "imap.port：应为整数（现为“imaps”）"),
    (lambda d: d["imap"].update(poll_seconds=0), "imap.poll_seconds：必须大于0（现为 0）"),
    (lambda d: d["imap"].update(idle="maybe"), "imap.idle：应为 true 或 false（现为“maybe”）"),
    (lambda d: d.update(limits={"workers": 1.5}), "limits.workers：应为整数（现为 1.5）"),
    (lambda d: d.update(recipients=["a@example.cn"]), "recipients：应为“键: 值”形式的映射"),
    (lambda d: d.update(departments=[]), "departments：至少需要1项"),
    (lambda d: d["departments"][0].update(emails="a@example.gov.cn"), "departments[0].emails：应为列表，如 [a, b]（现为“a@example.gov.cn”）"),
    (lambda d: d["departments"][0].update(id="市场监管局"), "departments[0].id：只能由小写英文字母、数字、“-”和“_”组成，以字母或数字开头，最多40个字符"),
    (lambda d: d["departments"][0].update(since="2026/7"), "departments[0].since：请写成“年-月”，如 2026-03"),
    (lambda d: d.update(rules={"severity": {"measure_empty": "fatal"}}), "rules.severity.measure_empty：只能是以下之一：error、warning、off（现为“fatal”）"),
    (lambda d: d["office"].update(timezone="Mars/Base"), "office.timezone：不是可识别的时区名称（如 Asia/Shanghai）"),
    (lambda d: d["departments"].append({"id": "x", "name": "y", "emails": ["a@example.gov.cn"]}),
     "departments：邮箱 a@example.gov.cn 同时登记在单位“scjgj”和“x”下"),
    (lambda d: d["departments"].append({"id": "scjgj", "name": "y", "emails": ["b@example.gov.cn"]}),
     "departments：单位 id“scjgj”出现了两次"),
    (lambda d: d["imap"].update(reprocess_folder="INBOX"), "imap：folder、processed_folder、quarantine_folder、reprocess_folder 必须是四个不同的文件夹"),
    (lambda d: d["imap"].update(claim="some"), "imap.claim：只能是以下之一：submissions、all（现为“some”）"),
    (lambda d: d["imap"].update(since="2026-13-01"), "imap.since：应为日期，如 2026-11-01（现为“2026-13-01”）"),
])
def test_each_mistake_names_its_key_in_chinese(change, expected):
    data = json.loads(json.dumps(MINIMAL))
    change(data)
    assert expected in errors_of(data)


def test_every_config_error_speaks_chinese():
    """Whatever the mistake, no English pydantic sentence reaches the admin."""
    data = json.loads(json.dumps(MINIMAL))
    data["imap"].update(port=[1], batch_size=-3, security=None, ca_file=5)
    data["smtp"].update(host=None, rate_per_minute="many")
    data["schedule"] = {"reminder_days": ["x"], "weekly_digest_day": "mon"}
    data["city"] = {"name": "市信用办", "recipients": []}
    for line in errors_of(data):
        assert re.search(r"[\u4e00-\u9fff]", line.partition("：")[2]), line
        assert "Input should" not in line and "valid" not in line, line


def test_secrets_come_only_from_the_named_environment_variable(monkeypatch):
    office = config.parse(MINIMAL).office()
    monkeypatch.delenv("MAILBOT_IMAP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="环境变量 MAILBOT_IMAP_PASSWORD 未设置"):
        office.imap.password()
    monkeypatch.setenv("MAILBOT_IMAP_PASSWORD", "授权码123")
    assert office.imap.password() == "授权码123"


def test_json_loads_too(tmp_path):
    path = tmp_path / "mailbot.json"
    path.write_text(json.dumps(MINIMAL, ensure_ascii=False), encoding="utf-8")
    assert config.load(path).office().office.name == "县信用办"


def test_config_from_environment_variable(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(MINIMAL, allow_unicode=True), encoding="utf-8")
    monkeypatch.setenv("MAILBOT_CONFIG", str(path))
    assert config.load().office().departments[0].id == "scjgj"


def test_cli_reports_config_errors_and_exits_2(tmp_path, capsys):
    data = json.loads(json.dumps(MINIMAL))
    data["departments"][0]["emails"] = ["nope"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert main(["--config", str(path), "status"]) == 2
    err = capsys.readouterr().err
    assert "mailbot：配置有误" in err and "departments[0].emails[0]：不是有效的邮箱地址" in err


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("office: {name: x\nimap: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="不是有效的 YAML 格式（第2行"):
        config.load(path)


def _keys(model: type[BaseModel], prefix="") -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        out.add(prefix + name)
        ann = field.annotation
        for sub in getattr(ann, "__args__", ()) + (ann,):
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                out |= _keys(sub, prefix + name + ".")
    return out


def _yaml_keys(data, prefix="") -> set[str]:
    out = set()
    if isinstance(data, dict):
        for key, value in data.items():
            out.add(prefix + key)
            out |= _yaml_keys(value, prefix + key + ".")
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        out |= _yaml_keys(data[0], prefix)
    return out


def test_example_documents_every_key_and_loads():
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    config.parse(data)
    documented = _yaml_keys(data)
    expected = _keys(config.OfficeConfig) | {"database", "database.url", "archive", "archive.dir"}
    expected = {k for k in expected if not k.startswith("imap.id_command.fields.")}
    assert expected - documented == set()
