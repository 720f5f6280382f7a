"""The agent's environment: the user's, without agentledger's secrets, minus what the user unsets."""

from __future__ import annotations

import os

import pytest
from conftest import wait_for

PASSWORD, SECRET, HOOK_TOKEN = "pw-Hq31x", "whsec-Yt08m", "T0KEN-in-the-url"


def captured(cli, sid: str) -> dict[str, str]:
    """The environment a session's ``env`` printed, as a dict."""
    wait_for(lambda: cli.json("status", sid)["status"] == "stopped", timeout=30)
    text = cli("logs", sid, "--output", "--raw").stdout
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_the_agent_inherits_the_users_environment_but_no_secret_of_agentledgers(cli, home, backend, monkeypatch):
    monkeypatch.setenv("AGENTLEDGER_WEBHOOK_URL", f"http://127.0.0.1:9/hook/{HOOK_TOKEN}")
    monkeypatch.setenv("AGENTLEDGER_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("AGENTLEDGER_SESSION_ID", "f" * 32)  # as if launched from inside another session
    monkeypatch.setenv("USERS_OWN_SETTING", "kept")
    if backend == "postgres":  # trust auth: any password works, so the password is real in the URL
        monkeypatch.setenv("AGENTLEDGER_DB", os.environ["AGENTLEDGER_DB"].replace(
            "postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@"))
    sid = cli.launch("env", options=("--on-stop", "env > hook-env.txt", "--cwd", str(home.parent)))
    env = captured(cli, sid)
    assert env["USERS_OWN_SETTING"] == "kept" and env["PATH"] == os.environ["PATH"]
    assert env["AGENTLEDGER_SESSION_ID"] == sid and env["AGENTLEDGER_HOME"] == str(home)
    assert "AGENTLEDGER_WEBHOOK_SECRET" not in env and "AGENTLEDGER_WEBHOOK_URL" not in env
    if backend == "postgres":  # the same ledger for an agent that runs agentledger itself, without the password
        assert env["AGENTLEDGER_DB"] == os.environ["AGENTLEDGER_DB"].replace(f":{PASSWORD}@", "@")
    hook_env = home.parent / "hook-env.txt"
    wait_for(hook_env.exists, timeout=30)
    wait_for(lambda: cli.json("why", sid).get("on_stop", {}).get("outcome") is not None, timeout=30)
    output = cli("logs", sid, "--output", "--raw").stdout + hook_env.read_text()
    for secret in (PASSWORD, SECRET, HOOK_TOKEN):
        assert secret not in output


@pytest.mark.sqlite_only
def test_unset_env_from_the_flag_and_the_configuration(cli, home, monkeypatch):
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('unset_env = ["FROM_CONFIG"]\n')
    for name in ("FROM_CONFIG", "FROM_FLAG", "STAYS"):
        monkeypatch.setenv(name, "set")
    sid = cli.launch("env", options=("--unset-env", "FROM_FLAG"))
    env = captured(cli, sid)
    assert "FROM_CONFIG" not in env and "FROM_FLAG" not in env and env["STAYS"] == "set"
    monkeypatch.setenv("AGENTLEDGER_UNSET_ENV", "STAYS, FROM_FLAG")  # the variable wins over the file
    env = captured(cli, cli.launch("env"))
    assert "STAYS" not in env and "FROM_FLAG" not in env and env["FROM_CONFIG"] == "set"
    assert cli.json("config", "show")["settings"]["unset_env"]["value"] == ["STAYS", "FROM_FLAG"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("bad", ["1ABC", "A-B", ""])
def test_a_bad_variable_name_is_a_usage_error(cli, bad):
    result = cli("launch", "--unset-env", bad, "--", "true", check=False)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and "invalid variable name" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.sqlite_only
def test_a_bad_unset_env_in_the_configuration_names_the_file_and_line(cli, home):
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text('fuse_ttl = "30s"\nunset_env = ["OK", "not ok"]\n')
    result = cli("launch", "--", "true", check=False)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert "line 2" in result.stderr and "'not ok' is not an environment variable name" in result.stderr


def test_without_password_keeps_everything_else():
    from agentledger.infrastructure.agent_env import agent_environment, without_password

    assert without_password("postgresql://u:pw@h:5/db?schema=x") == "postgresql://u@h:5/db?schema=x"
    assert without_password("postgresql://h/db?password=pw&schema=a") == "postgresql://h/db?schema=a"
    assert without_password("sqlite:////tmp/ledger.db") == "sqlite:////tmp/ledger.db"
    assert without_password("postgresql://[::1") == ""  # unparseable: none of it rather than a leak
    env = agent_environment({"AGENTLEDGER_WEBHOOK_SECRET": "s", "AGENTLEDGER_SESSION_ID": "x", "A": "1", "B": "2"},
                            unset=["B"])
    assert env == {"A": "1"}
