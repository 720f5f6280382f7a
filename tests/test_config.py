"""Configuration: config.toml under the home, AGENTLEDGER_* variables over it, `config show`, and bad input."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from conftest import wait_for

pytestmark = pytest.mark.sqlite_only  # about the file and the environment, not about a backend


@pytest.fixture(autouse=True)
def no_metrics_override(monkeypatch):
    """The suite turns the daemon's metrics off through the environment; these tests read the real defaults."""
    monkeypatch.delenv("AGENTLEDGER_METRICS_ADDR")


def write_config(home: Path, text: str, mode: int = 0o600) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_defaults_when_there_is_no_file(cli, home, monkeypatch):
    monkeypatch.delenv("AGENTLEDGER_AUTOSTART_DAEMON")  # the suite's own setting
    monkeypatch.delenv("AGENTLEDGER_AUTO_LOCK")  # likewise
    shown = cli.json("config", "show")
    assert shown["file"] is None and shown["home"] == str(home)
    settings = shown["settings"]
    assert {entry["source"] for entry in settings.values()} == {"default"}
    assert settings["reconcile_interval"]["value"] == "5s"
    assert settings["fuse_ttl"]["value"] == "30s"
    assert settings["metrics_addr"]["value"] == f"127.0.0.1:{9201 + os.getuid() % 799}"  # one port per user
    assert settings["db"]["value"] == f"sqlite:///{home}/ledger.db"
    assert shown["webhooks"] == {}


def test_file_values_environment_wins_and_each_source_is_named(cli, home, monkeypatch):
    path = write_config(home, "\n".join([
        "# team defaults",
        'reconcile_interval = "2s"',
        "fuse_ttl = 12",
        'metrics_addr = "127.0.0.1:9300"',
        "",
        "[webhooks.router]",
        'url = "http://127.0.0.1:8080/hook"',
        'secret = "file-secret-value"',
        'events = ["session.stopped", "session.timeout"]',
        'give_up_after = "1h"',
    ]) + "\n")
    monkeypatch.setenv("AGENTLEDGER_RECONCILE_INTERVAL", "750ms")
    monkeypatch.setenv("AGENTLEDGER_WEBHOOK_URL", "https://hooks.example.com/agentledger")
    monkeypatch.setenv("AGENTLEDGER_WEBHOOK_SECRET", "env-secret-value")
    monkeypatch.setenv("AGENTLEDGER_DB", "postgresql://team:db-password@db.example.com:5433/ledger")

    shown = cli.json("config", "show")
    settings, hooks = shown["settings"], shown["webhooks"]
    assert settings["reconcile_interval"] == {"value": "750ms", "source": "env AGENTLEDGER_RECONCILE_INTERVAL"}
    assert settings["fuse_ttl"] == {"value": "12s", "source": f"{path}, line 3"}
    assert settings["metrics_addr"] == {"value": "127.0.0.1:9300", "source": f"{path}, line 4"}
    assert settings["db"] == {"value": "postgresql://team:***@db.example.com:5433/ledger",
                              "source": "env AGENTLEDGER_DB"}
    assert hooks["router"]["url"]["source"] == f"{path}, line 7"
    assert hooks["router"]["secret"] == {"value": "***", "source": f"{path}, line 8"}
    assert hooks["router"]["events"]["value"] == ["session.stopped", "session.timeout"]
    assert hooks["router"]["give_up_after"]["value"] == "1h"
    assert hooks["router"]["timeout"] == {"value": "10s", "source": "default"}
    assert hooks["default"]["url"] == {"value": "https://hooks.example.com/agentledger",
                                       "source": "env AGENTLEDGER_WEBHOOK_URL"}
    assert hooks["default"]["secret"]["value"] == "***"

    text = cli("config", "show")
    for output in (text.stdout, text.stderr, json.dumps(shown)):
        assert "file-secret-value" not in output and "env-secret-value" not in output
        assert "db-password" not in output
    assert "reconcile_interval" in text.stdout and "env AGENTLEDGER_RECONCILE_INTERVAL" in text.stdout


@pytest.mark.parametrize(("content", "expected"), [
    ('reconcile_interval = "5s\n', "line 1: not valid TOML"),
    ('fuse_ttl = "30s"\nreconcile_intervall = "5s"\n', "line 2: unknown key 'reconcile_intervall'"),
    ('[webhooks.router]\nurl = "http://127.0.0.1:1/x"\nsecrett = "x"\n', "line 3: unknown key 'webhooks.router.secrett'"),
    ('[webhooks.router]\nurl = "ftp://example.com/x"\n', "line 2: webhooks.router.url: 'ftp://example.com/x': expected an http"),
    ('[webhooks.router]\nsecret = "x"\n', "webhook 'router' has no url"),
    ('db = "mysql://localhost/ledger"\n', "line 1: db: unsupported store 'mysql'"),
    ('reconcile_interval = "-5s"\n', "line 1: reconcile_interval: invalid duration '-5s'"),
    ("reconcile_interval = -5\n", "line 1: reconcile_interval: -5: must be greater than zero"),
    ('fuse_ttl = "100ms"\n', "line 1: fuse_ttl: 100ms is below the 250ms floor"),
    ('metrics_addr = "localhost"\n', "line 1: metrics_addr: 'localhost': expected HOST:PORT"),
    ('[webhooks.router]\nurl = "http://127.0.0.1:1/x"\nevents = ["session.ended"]\n', "unknown event type 'session.ended'"),
])
def test_a_bad_file_is_one_line_naming_file_and_line(cli, home, content, expected):
    path = write_config(home, content)
    for command in (("config", "show"), ("launch", "--", "sleep", "30")):
        result = cli(*command, check=False)
        assert result.returncode == 2, (command, result)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert str(path) in result.stderr and expected in result.stderr, result.stderr


def test_with_a_bad_file_nothing_starts(cli, home):
    path = write_config(home, 'fuse_ttl = "30s"\nreconcile_intervall = "5s"\n')
    for command in (("daemon", "start"), ("daemon", "run"), ("launch", "--", "sleep", "30"), ("list",)):
        result = cli(*command, check=False)
        assert result.returncode == 2, (command, result)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert f"{path}, line 2: unknown key 'reconcile_intervall'" in result.stderr, result.stderr
    path.unlink()
    assert cli.json_lines("list", "--all") == []
    assert cli("daemon", "status", check=False).returncode == 3  # not running


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("AGENTLEDGER_RECONCILE_INTERVAL", "-1s", "AGENTLEDGER_RECONCILE_INTERVAL: invalid duration '-1s'"),
    ("AGENTLEDGER_FUSE_TTL", "soon", "AGENTLEDGER_FUSE_TTL: invalid duration 'soon'"),
    ("AGENTLEDGER_METRICS_ADDR", "127.0.0.1:99999", "AGENTLEDGER_METRICS_ADDR: '127.0.0.1:99999'"),
    ("AGENTLEDGER_WEBHOOK_URL", "not a url", "AGENTLEDGER_WEBHOOK_URL: 'not a url': expected an http"),
    ("AGENTLEDGER_DB", "postgresql://u:hunter2@/nodb", "AGENTLEDGER_DB"),
])
def test_a_bad_variable_is_one_line_and_nothing_starts(cli, monkeypatch, variable, value, expected):
    monkeypatch.setenv(variable, value)
    for command in (("config", "show"), ("launch", "--", "sleep", "30")):
        result = cli(*command, check=False)
        assert result.returncode == 2 and expected in result.stderr, (command, result.stderr)
        assert result.stderr.count("\n") == 1 and "hunter2" not in result.stderr
    monkeypatch.delenv(variable)
    assert cli.json_lines("list", "--all") == []


def test_config_show_writes_flags_as_toml_does(cli, home):
    write_config(home, "auto_lock = false\n")
    rows = {line.split()[0]: line.split()[1] for line in cli("config", "show").stdout.splitlines()[3:] if line.strip()}
    assert rows["auto_lock"] == "false" and rows["autostart_daemon"] in ("true", "false")  # not Python's False


def test_a_secret_in_a_file_others_can_read_is_a_warning(cli, home):
    path = write_config(home, '[webhooks.router]\nurl = "http://127.0.0.1:1/x"\nsecret = "s3cret"\n', mode=0o644)
    result = cli("config", "show")
    assert f"{path} holds a secret and others can read it (mode 644)" in result.stderr
    assert "chmod 600" in result.stderr and "s3cret" not in result.stdout + result.stderr
    path.chmod(0o600)
    assert cli("config", "show").stderr == ""
    write_config(home, 'fuse_ttl = "10s"\n', mode=0o644)  # no secret in it: nothing to warn about
    assert cli("config", "show").stderr == ""


def test_launch_and_daemon_take_their_defaults_from_the_file(cli, home):
    write_config(home, 'fuse_ttl = "9s"\nreconcile_interval = "300ms"\nmetrics_addr = "off"\n')
    sid = cli.launch("sleep", "30")
    fuses = cli.json_lines("fuses")
    assert [f["ttl_seconds"] for f in fuses if f["session_id"] == sid] == [9.0]
    sid_flag = cli.launch("sleep", "30", options=("--fuse-ttl", "4s"))
    assert [f["ttl_seconds"] for f in cli.json_lines("fuses") if f["session_id"] == sid_flag] == [4.0]
    cli("daemon", "start")
    status = wait_for(lambda: (s := cli.json("daemon", "status")["daemon"] or {}).get("passes") and s)
    assert status["interval_seconds"] == 0.3
    cli("daemon", "stop")
    cli("stop", sid, "--force")
    cli("stop", sid_flag, "--force")
    assert os.stat(home / "config.toml").st_mode & stat.S_IRWXO == 0


@pytest.mark.parametrize("db", [
    "host=db.internal user=al password=hunter2-Qx dbname=ledger",  # a libpq key=value string, not a URL
    "postgresql://al@db.internal/ledger?password=hunter2-Qx",  # a password as a query parameter
    "postgresql://al:hunter2-Qx@db.internal:notaport/ledger",
])
def test_no_form_of_a_store_password_is_echoed_in_an_error(cli, monkeypatch, db):
    monkeypatch.setenv("AGENTLEDGER_DB", db)
    result = cli("list", check=False)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "hunter2" not in result.stderr and "***" in result.stderr


def test_a_webhook_urls_credentials_are_masked(cli, home, monkeypatch):
    monkeypatch.setenv("AGENTLEDGER_WEBHOOK_URL", "https://bot:hunter2-Qx@hooks.example.com/in?token=t0k3n")
    shown = cli("config", "show").stdout + cli("config", "show", "--json").stdout
    assert "hunter2" not in shown and "t0k3n" not in shown and "hooks.example.com" in shown
    monkeypatch.setenv("AGENTLEDGER_WEBHOOK_URL", "ftp://bot:hunter2-Qx@hooks.example.com/")
    result = cli("config", "show", check=False)
    assert result.returncode == 2 and "hunter2" not in result.stderr


def test_mask_secrets_finds_them_in_urls_and_connection_strings():
    from agentledger.infrastructure.config import mask_secrets

    assert mask_secrets("postgresql://u:p%40ss@h/db") == "postgresql://u:***@h/db"
    assert mask_secrets("host=h password='a b\\'c' dbname=x") == "host=h password=*** dbname=x"
    assert mask_secrets("https://h/x?token=abc&x=1") == "https://h/x?token=***&x=1"
    assert mask_secrets("sqlite:////tmp/ledger.db and passwordless words") == (
        "sqlite:////tmp/ledger.db and passwordless words")


@pytest.mark.unit
def test_the_default_metrics_port_is_one_per_user_and_never_agentctls() -> None:
    from agentledger.infrastructure.settings import default_metrics_addr

    ports = {uid: default_metrics_addr(uid).port for uid in range(0, 5000)}
    assert ports[0] == 9201 and ports[1000] == 9402 and ports[1000] != ports[1001]
    assert 9200 not in ports.values() and all(9201 <= port < 10000 for port in ports.values())
