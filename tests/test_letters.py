"""The mails mailbot writes (mailbot.letters): built faster, byte for byte what the email
package makes of them (issue 16's pipeline figures: a receipt's build went from 2.6 to 1.1 ms,
most of it parsing and refolding the same headers for every mail)."""
from __future__ import annotations

import datetime as dt
import email.policy
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbot import config as config_mod, letters
from tests import factory

BOUNDARY = re.compile(rb"===============\d+==")  # random in every build
NOW = dt.datetime(2026, 11, 3, 8, 30, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def office():
    return config_mod.parse(factory.config_dict(
        SimpleNamespace(port=1143, user="office@example.test"), SimpleNamespace(port=1025), Path("/nonexistent"))).office()


def _build(office, monkeypatch, mail: dict, *, plain: bool) -> bytes | type:
    """The raw mail (boundaries masked), or the type of the error building it raised; `plain`:
    with the email package's own policies, as before letters remembered headers."""
    if plain:
        monkeypatch.setattr(letters, "_POLICY", email.policy.default)
        monkeypatch.setattr(letters, "_SMTP", email.policy.SMTP)
    else:
        monkeypatch.undo()
    monkeypatch.setattr(letters, "render", lambda template, context: (letters.one_line(mail["subject"]), mail["text"],
                                                                      mail["html"]))
    try:
        out = letters.build(office, kind="receipt", key=mail["key"], template="receipt_accepted", to=mail["to"],
                            context={}, in_reply_to=mail["in_reply_to"], references=mail["references"],
                            attachments=mail["attachments"], now=mail["now"])
    except Exception as exc:  # noqa: BLE001  (the same failure either way is what is checked)
        return type(exc)
    return BOUNDARY.sub(b"BOUNDARY", out.raw)


addresses = st.sampled_from(["d1@example.gov.cn", "zhang.san@163.com", "科员 <a@b.cn>", "x@y.z"])
words = st.text(st.characters(blacklist_categories=("Cs",)), max_size=120)
mails = st.fixed_dictionaries({
    "key": st.text(max_size=20),
    "subject": st.one_of(words, st.sampled_from(["回执：【已受理】2026年11月信用记录使用情况清单", "Re: =?utf-8?b?5Zue?="])),
    "text": st.one_of(words, st.sampled_from(["您好：\n\n已收到。\n", "a" * 200 + "\n", ""])),
    "html": words,
    "to": st.lists(addresses, min_size=1, max_size=3),
    "in_reply_to": st.one_of(st.just(""), st.sampled_from(["bench1@example.gov.cn", "x@y"]), words),
    "references": st.lists(st.one_of(st.sampled_from(["a@b", "c@d.e"]), words), max_size=12),
    "attachments": st.lists(st.tuples(st.one_of(words, st.just("情况清单（问题标注）.xlsx")), st.binary(max_size=300),
                                      st.sampled_from([letters.XLSX, letters.DOCX])), max_size=2),
    "now": st.sampled_from([NOW, NOW + dt.timedelta(seconds=1), NOW + dt.timedelta(days=40)]),
})


@settings(max_examples=200, deadline=None)
@given(mail=mails)
def test_a_mail_is_built_byte_for_byte_as_the_email_package_builds_it(office, mail):
    """Built twice (the second time every header is remembered), the same bytes as with the
    email package's plain policies, or the same error."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        expected = _build(office, monkeypatch, mail, plain=True)
        assert _build(office, monkeypatch, mail, plain=False) == expected
        assert _build(office, monkeypatch, mail, plain=False) == expected


def test_a_remembered_header_is_still_checked_for_line_breaks(office):
    """A value with CR/LF is refused every time it is set, not only the first."""
    for _ in range(2):
        msg = email.message.EmailMessage(policy=letters._POLICY)
        with pytest.raises(ValueError):
            msg["Subject"] = "a\r\nBcc: x@y"
