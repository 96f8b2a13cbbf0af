"""The command line in the office's language: help, errors, `rules`, and read-only commands
that never leave an empty database behind."""
from __future__ import annotations

import argparse
import json
import re
import sqlite3

import pytest
import yaml

from mailbot import store
from mailbot.cli import build_parser, main
from mailbot.rules import DEFAULT_SEVERITY, MEANING
from mailbot.terminal import cells, hanging, paragraphs, wrap
from tests import factory
from tests.test_config import EXAMPLE, MINIMAL

CHINESE = re.compile(r"[\u4e00-\u9fff]")
ENGLISH_ARGPARSE = ("usage:", "options:", "positional arguments", "show this help", "error:", "required:",
                    "invalid choice", "unrecognized")


def _parsers(parser: argparse.ArgumentParser, path=("mailbot",)):
    """(command path, parser) for the top level and every command and sub-command."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_command_and_option_has_help_in_chinese():
    seen = set()
    for path, parser in _parsers(build_parser()):
        assert CHINESE.search(parser.description or ""), f"{' '.join(path)}: no Chinese description"
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert CHINESE.search(choice.help or ""), f"{' '.join(path)} {choice.dest}: no Chinese help"
                continue
            name = "/".join(action.option_strings) or action.dest
            assert CHINESE.search(action.help or ""), f"{' '.join(path)} {name}: no Chinese help"
            seen.add(name)
    assert {"-h/--help", "--config", "--once", "--keep", "--connect", "--dry-run", "file"} <= seen


@pytest.mark.parametrize("path", [p for p, _ in _parsers(build_parser())], ids=" ".join)
def test_help_text_is_chinese_and_fits_80_columns(path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as done:
        main([*path[1:], "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("用法：mailbot")
    assert not [w for w in ENGLISH_ARGPARSE if w in out]
    widest = max(out.splitlines(), key=cells)
    assert cells(widest) <= 80, widest


@pytest.mark.parametrize("argv, says", [
    (["frobnicate"], "没有“frobnicate”这个命令（可用的命令：run、poll、check"),
    (["export"], "缺少必需的参数：--period"),
    (["status", "--period", "2026/11"], "参数 --period：“2026/11”不是月份：请写成 年-月，如 2026-11"),
    (["export", "--period", "2026", "--format", "pdf"], "参数 --format 不能取“pdf”（可选：xlsx、csv）"),
    (["tick", "--at", "20th of November"], "“20th of November”不是时间"),
    (["status", "--bogus"], "不认识的参数：--bogus"),
    (["check"], "缺少必需的参数：文件"),
    ([], "缺少必需的参数：命令"),
])
def test_argument_errors_in_chinese(argv, says, capsys):
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("用法：mailbot") and says in err, err
    assert not [w for w in ENGLISH_ARGPARSE if w in err], err


def test_wrap_breaks_chinese_by_width_and_keeps_punctuation_off_line_starts():
    text = "离线检查一个清单文件，不收发邮件（退出码：0 通过，1 未通过，2 文件无法使用）"
    lines = wrap(text, 20)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert all(cells(line) <= 20 for line in lines)
    assert not [line for line in lines if line[0] in "，。、；：）"]
    assert wrap("use --config PATH here", 12) == ["use --config", "PATH here"]
    assert wrap("请写成“2026年9月20日”这样的完整日期", 12) == ["请写成“2026", "年9月20日”这", "样的完整日期"]
    assert wrap("请写成“2026年9月20日”", 7) == ["请写成", "“2026年", "9月20", "日”"]  # “ never ends a line, ” never starts one
    assert wrap("日期2026-11-06不在本月内", 10) == ["日期", "2026-11-06", "不在本月内"]
    assert wrap("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert hanging("1. 错误 ", "第7行：日期未填写，请填写。", 16) == ["1. 错误 第7行：", "        日期未填", "        写，请填", "        写。"]
    assert paragraphs("甲：\n\n  一二三四五六\n", 8) == ["甲：", "", "  一二三", "  四五六"]


# --- mailbot rules ---------------------------------------------------------------------------------

def test_rules_lists_every_code_with_its_default_and_meaning(capsys, monkeypatch):
    monkeypatch.delenv("MAILBOT_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    assert set(MEANING) == set(DEFAULT_SEVERITY)
    for code, severity in DEFAULT_SEVERITY.items():
        [line] = [line for line in out.splitlines() if f" {code} " in line]
        assert ("错误（退回）" if severity == "error" else "提示（受理）") in line and MEANING[code] in line


def test_rules_shows_what_the_config_made_of_them(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    data = json.loads(json.dumps(MINIMAL)) | {"rules": {"severity": {"measure_empty": "error", "duplicate_row": "off"}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    assert main(["--config", str(path), "rules"]) == 0
    lines = {line.split()[1]: line for line in capsys.readouterr().out.splitlines() if line.startswith("│ ")}
    assert "本配置" not in lines and re.search(r"提示（受理）.*错误（退回）", lines["measure_empty"])
    assert "不检查" in lines["duplicate_row"] and lines["date_future"].count("错误（退回）") == 2


def test_example_config_lists_every_rules_code():
    text = EXAMPLE.read_text(encoding="utf-8")
    section = text[text.index("\nrules:"):text.index("\nreplies:")]
    for code, severity in DEFAULT_SEVERITY.items():
        assert re.search(rf"#\s+{code}\s+{severity}\s+{re.escape(MEANING[code])}$", section, re.M), code


# --- read-only commands never create a database ------------------------------------------------------

def _config(tmp_path, url: str | None = None):
    data = json.loads(json.dumps(MINIMAL))
    data["database"] = {"url": url or f"sqlite:///{tmp_path}/var/mailbot.db"}
    data["archive"] = {"dir": str(tmp_path / "var" / "archive")}
    return factory.write_config(tmp_path / "mailbot.yaml", data)


READ_ONLY = [["status"], ["status", "--json", "--period", "2026-11"], ["digest", "--period", "2026-11"],
             ["digest", "--send"], ["export", "--period", "2026-11"], ["export", "--period", "2026", "--format", "csv"]]


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_read_only_commands_on_a_missing_database_say_so_and_create_nothing(argv, tmp_path, capsys, monkeypatch):
    path = _config(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["--config", str(path), *argv]) == 1
    err = capsys.readouterr().err
    assert f"mailbot {argv[0]}：数据库 sqlite:///{tmp_path}/var/mailbot.db 还不存在" in err
    assert "mailbot poll" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no var/, no .db, no exported file


def test_an_empty_database_file_is_no_database_either(tmp_path, capsys):
    path = _config(tmp_path)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "mailbot.db").touch()  # what an older `mailbot status` left behind
    assert main(["--config", str(path), "status"]) == 1
    assert "还不存在" in capsys.readouterr().err
    assert (tmp_path / "var" / "mailbot.db").stat().st_size == 0
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == ["mailbot.db"]


def test_read_only_commands_read_an_existing_database(tmp_path, capsys):
    path = _config(tmp_path)
    store.connect(f"sqlite:///{tmp_path}/var/mailbot.db")
    assert main(["--config", str(path), "status", "--json", "--period", "2026-11"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["state"] == "missing"
    with sqlite3.connect(tmp_path / "var" / "mailbot.db") as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)


def test_read_only_commands_create_no_tables_in_an_empty_postgresql_database(postgres_server, tmp_path, capsys):
    url = postgres_server.create_database("mailbot_readonly")
    path = _config(tmp_path, url)
    assert main(["--config", str(path), "status"]) == 1
    assert "还不存在" in capsys.readouterr().err
    assert not store.exists(url)
    import psycopg
    with psycopg.connect(postgres_server.dsn("mailbot_readonly")) as conn:
        assert conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").fetchone() == (0,)
    store.connect(url)
    assert store.exists(url)
    assert main(["--config", str(path), "status", "--json"]) == 0


# --- mailbot check ---------------------------------------------------------------------------------

def test_check_prints_every_problem_in_full_wrapped_to_80_columns(tmp_path, capsys, monkeypatch):
    from mailbot.verdict import verdict

    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("MAILBOT_CONFIG", raising=False)
    rows = [("赞皇县某商贸有限公司（91130129MA0ABCDE1X）", "政府采购供应商资格审查", 9.2, "经信用中国查询，无失信记录", "无"),
            ("", "评标专家抽取", "2026年10月6日", "经信用中国查询", "无")]
    path = tmp_path / "财政局清单.xlsx"
    path.write_bytes(factory.checklist_xlsx(rows=rows, unit="", submitter="", report_date=None))
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "…" not in out and out.startswith("未通过校验")
    assert max(cells(line) for line in out.splitlines()) <= 80
    flat = re.sub(r"\s", "", out)
    problems = verdict(path.read_bytes(), path.name, None)["problems"]
    assert len(problems) == 7 and "submitter_missing" in {p["code"] for p in problems}
    for n, p in enumerate(problems, 1):
        label = "错误" if p["severity"] == "error" else "提示"
        assert f"{n}.{label}" + re.sub(r"\s", "", p["message"]) in flat, p["message"]
