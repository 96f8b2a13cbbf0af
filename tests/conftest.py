"""Fixtures backed by real servers: a session-wide Dovecot (fresh user per test) and an
aiosmtpd capture. The server classes live in tests/servers.py; import them as
``from tests.servers import ...`` (bench/ and scripts do the same from the repo root)."""

import itertools
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy import select

from mailbot import config as config_mod, runner, store

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # so `tests.servers` imports however pytest was started
    sys.path.insert(0, str(REPO))

from tests import factory  # noqa: E402
from tests.servers import DOVECOT_BINARY, Dovecot, SmtpCapture  # noqa: E402

SMTP_AUTH = ("mailbot", "smtp-secret")
_user_numbers = itertools.count(1)

# Hypothesis profiles, the one place that says how hard the property tests look (the fuzzing of
# tests/test_fuzz.py above all). A test that names no max_examples follows the profile; one that
# names it keeps it. `pytest -v` shows the profile in its header.
#   default  a run without the slow tests (-m "not slow"): quick
#   ci       a run with them (CI's and the README's `pytest -q`): 400 examples, as deep as CI fuzzed
#   deep     a night's run: MAILBOT_FUZZ_EXAMPLES examples (setting it selects this profile), e.g.
#            MAILBOT_FUZZ_EXAMPLES=5000 .venv/bin/python -m pytest tests/test_fuzz.py -k hostile_input
# HYPOTHESIS_PROFILE=<name>, or Hypothesis' own --hypothesis-profile, chooses one outright.
_BASE = settings.get_profile("default")  # Hypothesis' own, not its "ci" (which the CI variable selects)
settings.register_profile("default", _BASE, max_examples=100)
settings.register_profile("ci", _BASE, max_examples=400)
settings.register_profile("deep", _BASE, max_examples=int(os.environ.get("MAILBOT_FUZZ_EXAMPLES") or 4000))


def _runs_slow_tests(config) -> bool:
    """Would `-m` keep a test marked slow (and nothing else)? No `-m` keeps everything."""
    from _pytest.mark.expression import Expression  # how pytest itself evaluates -m

    markexpr = config.getoption("markexpr")
    return not markexpr or Expression.compile(markexpr).evaluate(lambda name, **kwargs: name == "slow")


@pytest.hookimpl(tryfirst=True)  # before the test modules are imported, and before --hypothesis-profile
def pytest_configure(config):
    chosen = os.environ.get("HYPOTHESIS_PROFILE") or (
        "deep" if os.environ.get("MAILBOT_FUZZ_EXAMPLES") else "ci" if _runs_slow_tests(config) else "default")
    settings.load_profile(chosen)


# A test skipped because a Debian package is missing says `apt-get install <package>` in its
# reason. Locally that is a skip; where MAILBOT_REQUIRE_INSTALLED=1 (.ci/run sets it) it is a
# failure, so that a missing install step in CI cannot hide behind a green run.
MISSING_INSTALL = "apt-get install"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (report.skipped and os.environ.get("MAILBOT_REQUIRE_INSTALLED") == "1"
            and MISSING_INSTALL in str(report.longrepr)):
        report.outcome = "failed"
        report.longrepr = f"required here (MAILBOT_REQUIRE_INSTALLED=1), but skipped: {report.longrepr}"


@pytest.fixture(scope="session")
def dovecot_server():
    """One Dovecot for the session (plain IMAP on ``.port``, implicit TLS on ``.tls_port``)."""
    if not DOVECOT_BINARY.exists():
        pytest.skip(f"{DOVECOT_BINARY} missing: IMAP tests need `apt-get install dovecot-imapd`")
    root = Path(tempfile.mkdtemp(prefix="mailbot-dovecot-"))
    server = Dovecot(root, tls=True).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server():
    """One private PostgreSQL for the session (initdb in a temp dir, loopback); each test takes
    a fresh database with ``postgres_server.create_database(name)``."""
    from tests.postgres import Postgres, binaries

    if binaries() is None:
        pytest.skip("PostgreSQL tests need the server binaries: `apt-get install postgresql` (.ci/run does)")
    server = Postgres(Path(tempfile.mkdtemp(prefix="mailbot-pg-"))).start()
    yield server
    server.stop()


@pytest.fixture
def mailbox_account(dovecot_server):
    """A brand-new user (empty mailbox) on the session Dovecot: ``host``, ``port``, ``user``,
    ``password``, ``append(raw, folder)``, ``uids(folder)``, ``messages(folder)``, ``folders()``."""
    if not dovecot_server.running:  # a previous test stopped or killed it
        dovecot_server.start()
    user = f"office{next(_user_numbers)}-{uuid.uuid4().hex[:6]}@example.test"
    return dovecot_server.add_user(user, uuid.uuid4().hex)


@pytest.fixture
def smtp_server():
    """A fresh SMTP capture (starts in ~5 ms): ``host``, ``port``, ``auth`` (user, password;
    AUTH offered, not required), ``messages``, ``wait_for(n)``, ``clear()``, fault modes."""
    with SmtpCapture(auth=SMTP_AUTH) as capture:
        yield capture


@pytest.fixture(autouse=True)
def _calm_deadlines():
    """A daemon stopped in a test's own process hurries every deadline (mailbot.deadline.hurry)
    until its run() ends; one stopped without run() must not hurry the next test's."""
    yield
    try:
        from mailbot import deadline
    except ImportError:  # running these tests against an older mailbot
        return
    deadline.calm()


@pytest.fixture
def tmp_var(tmp_path):
    """An empty directory for the database, archive and other runtime files."""
    var = tmp_path / "var"
    var.mkdir()
    return var


@pytest.fixture
def setup(mailbox_account, smtp_server, tmp_var, monkeypatch, request):
    """A configured office on the test servers: `poll()`, `rows(Model, *where)`, `engine`, `config`.

    Mark a test `@pytest.mark.config(key=value)` to override top-level config keys."""
    monkeypatch.setenv("TEST_IMAP_PASSWORD", mailbox_account.password)
    marker = request.node.get_closest_marker("config")
    keys = dict(marker.kwargs) if marker else {}
    keys["limits"] = {"workers": 0, **keys.get("limits", {})}  # decide in-process: fast; tests/test_workers.py covers the pool
    data = factory.config_dict(mailbox_account, smtp_server, tmp_var, **keys)
    cfg = config_mod.parse(data)
    engine = store.connect(cfg.database.url)

    class Setup:
        account, smtp, var, config, office = mailbox_account, smtp_server, tmp_var, cfg, cfg.office()
        config_path = factory.write_config(tmp_var / "mailbot.yaml", data)

        def poll(self):
            return runner.poll_once(engine, cfg, cfg.office())

        def rows(self, model, *where):
            with store.reading(engine) as s:
                return list(s.exec(select(model).where(*where)).scalars().all())

    Setup.engine = engine
    return Setup()
