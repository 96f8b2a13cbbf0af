"""Config: parsed once, typed, and every mistake named by its key path."""
from __future__ import annotations

import json
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
    assert errors_of(data) == ["departments[3].emails[0]: not an email address"]


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["office"].pop("address"), "office.address: required key is missing"),
    (lambda d: d.pop("departments"), "departments: required key is missing"),
    (lambda d: d["imap"].update(security="tls"), "imap.security: Input should be 'ssl', 'starttls' or 'none'"),
    (lambda d: d["smtp"].update(security="none"), "smtp: security 'none' is only allowed for a loopback host (127.0.0.1, localhost, ::1)"),
    (lambda d: d.update(schedul={}), "schedul: unknown key"),
    (lambda d: d.update(schedule={"send_time": "9am"}), "schedule.send_time: use HH:MM, 24-hour (e.g. 09:00)"),
    (lambda d: d["office"].update(timezone="Mars/Base"), "office.timezone: not a known time zone (e.g. Asia/Shanghai)"),
    (lambda d: d["departments"].append({"id": "x", "name": "y", "emails": ["a@example.gov.cn"]}),
     "departments: a@example.gov.cn is registered to both 'scjgj' and 'x'"),
    (lambda d: d["imap"].update(reprocess_folder="INBOX"),
     "imap: folder, processed_folder, quarantine_folder and reprocess_folder must all differ"),
    (lambda d: d["imap"].update(claim="some"), "imap.claim: Input should be 'submissions' or 'all'"),
    (lambda d: d["imap"].update(since="2026-13-01"),
     "imap.since: Input should be a valid date or datetime, month value is outside expected range of 1-12"),
])
def test_each_mistake_names_its_key(change, expected):
    data = json.loads(json.dumps(MINIMAL))
    change(data)
    assert expected in errors_of(data)


def test_secrets_come_only_from_the_named_environment_variable(monkeypatch):
    office = config.parse(MINIMAL).office()
    monkeypatch.delenv("MAILBOT_IMAP_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="MAILBOT_IMAP_PASSWORD is not set"):
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
    assert "departments[0].emails[0]: not an email address" in err


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("office: {name: x\nimap: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
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
