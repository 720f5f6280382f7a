"""The real agent CLIs, pointed at the stand-in model server, each in a private HOME: for tests/test_real_agents.py.

Where the CLIs are: ``$AGENTLEDGER_AGENTS_BIN``, else ``tests/agents/node_modules/.bin``, else the directory
``scripts/install_agents.sh`` installs into by default. Without them the tests skip with a loud reason;
``AGENTLEDGER_REQUIRE_AGENTS=1`` (set by ``.ci/run``) makes that a failure.

Each agent is configured the way its own documentation says a user points it at a custom provider:

- opencode: a provider ``mock`` using ``@ai-sdk/openai-compatible`` with ``options.baseURL`` in
  ``$XDG_CONFIG_HOME/opencode/opencode.json``, costs per million tokens; its background install of
  ``@opencode-ai/plugin`` is made unnecessary by a stub ``package.json``/``package-lock.json``/``node_modules``
  in that directory, and its ``OPENCODE_DISABLE_*`` switches keep it off the network;
- Claude Code: ``ANTHROPIC_BASE_URL`` and a dummy ``ANTHROPIC_API_KEY``, no non-essential traffic, no retries;
- Codex: a ``[model_providers.mock]`` with ``base_url`` and ``wire_api = "responses"`` in ``$CODEX_HOME/config.toml``;
- pi: a provider ``mock`` (``api = openai-completions``, ``baseUrl``, costs) in ``$PI_CODING_AGENT_DIR/models.json``,
  retries off in ``settings.json``, ``PI_OFFLINE=1``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from model_server import ModelServer

REPO = Path(__file__).resolve().parent.parent
#: The adapters' names and the binaries they run.
BINARIES = {"opencode": "opencode", "claude-code": "claude", "codex": "codex", "pi": "pi"}
#: Prices configured for the stand-in models (USD per million tokens), where the agent takes prices from its config.
PRICE_IN, PRICE_OUT = 3.0, 15.0
#: Variables of the machine's own environment that would send an agent elsewhere or change its behaviour.
_AMBIENT = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "OPENAI_API_KEY",
            "OPENAI_BASE_URL", "CODEX_HOME", "CLAUDE_CONFIG_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
            "XDG_STATE_HOME", "OPENCODE_CONFIG", "OPENCODE_CONFIG_CONTENT", "OPENCODE_DB", "PI_CODING_AGENT_DIR",
            "PI_CODING_AGENT_SESSION_DIR")


def agents_bin() -> Path | None:
    """The directory holding all four CLIs, or None."""
    candidates = [os.environ.get("AGENTLEDGER_AGENTS_BIN"), REPO / "tests" / "agents" / "node_modules" / ".bin",
                  Path.home() / ".cache" / "agentledger" / "agents" / "node_modules" / ".bin"]
    for candidate in candidates:
        if candidate and all((Path(candidate) / binary).exists() for binary in BINARIES.values()):
            return Path(candidate)
    return None


def require_agents() -> Path:
    """The CLIs' directory, or a skip (a failure where CI requires them)."""
    found = agents_bin()
    if found is None:
        reason = ("the real agent CLIs are not installed (run: export AGENTLEDGER_AGENTS_BIN=$(scripts/install_agents.sh))")
        if os.environ.get("AGENTLEDGER_REQUIRE_AGENTS") == "1":
            pytest.fail(f"{reason}, and AGENTLEDGER_REQUIRE_AGENTS=1 requires them")
        pytest.skip(f"SKIPPED, NO REAL AGENTS: {reason}")
    return found


@dataclass
class Agents:
    """The model server, the private HOME the agents are configured in, and a plain (non-git) working directory."""

    server: ModelServer
    home: Path
    work: Path
    bin: Path

    def plain_dir(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True)
        return path


def configure(bin_dir: Path, home: Path, server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point all four agents at ``server``, with everything they keep under ``home``."""
    for name in _AMBIENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    tmp = home / "tmp"  # opencode leaves a 5.5 MB library in $TMPDIR at every run: keep it in the test's folder
    tmp.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(tmp))
    _opencode(home, server, monkeypatch)
    _claude(server, monkeypatch)
    _codex(home, server, monkeypatch)
    _pi(home, server, monkeypatch)


def _opencode(home: Path, server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    config = home / ".config" / "opencode"
    (config / "node_modules").mkdir(parents=True)
    (config / "opencode.json").write_text(json.dumps({
        "$schema": "https://opencode.ai/config.json", "autoupdate": False, "share": "disabled",
        "model": "mock/mock-model",
        "provider": {"mock": {
            "npm": "@ai-sdk/openai-compatible", "name": "Model server",
            "options": {"baseURL": f"{server.url}/v1", "apiKey": "sk-test"},
            "models": {"mock-model": {"name": "Mock model", "limit": {"context": 200000, "output": 8192},
                                      "cost": {"input": PRICE_IN, "output": PRICE_OUT}}},
        }},
    }))
    plugin = {"@opencode-ai/plugin": "1.18.33"}  # "already installed": no background npm install
    (config / "package.json").write_text(json.dumps({"dependencies": plugin}))
    (config / "package-lock.json").write_text(json.dumps({"lockfileVersion": 3,
                                                           "packages": {"": {"dependencies": plugin}}}))
    for name in ("OPENCODE_DISABLE_MODELS_FETCH", "OPENCODE_DISABLE_AUTOUPDATE", "OPENCODE_DISABLE_SHARE",
                 "OPENCODE_DISABLE_DEFAULT_PLUGINS", "OPENCODE_DISABLE_LSP_DOWNLOAD", "OPENCODE_PURE",
                 "OPENCODE_DISABLE_EXTERNAL_SKILLS", "OPENCODE_DISABLE_CLAUDE_CODE", "OPENCODE_DISABLE_PROJECT_CONFIG"):
        monkeypatch.setenv(name, "1")


def _claude(server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    monkeypatch.setenv("CLAUDE_CODE_MAX_RETRIES", "0")


def _codex(home: Path, server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    codex_home = home / ".codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text("\n".join([
        'model = "test-model"',
        'model_provider = "mock"',
        "check_for_update_on_startup = false",
        "",
        "[model_providers.mock]",
        'name = "mock"',
        f'base_url = "{server.url}/v1"',
        'wire_api = "responses"',
        'env_key = "MOCK_API_KEY"',
        "request_max_retries = 0",
        "stream_max_retries = 0",
        "stream_idle_timeout_ms = 30000",
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[feedback]",
        "enabled = false",
        "",
        "[otel]",
        'exporter = "none"',
        'trace_exporter = "none"',
        'metrics_exporter = "none"',
        "",
        "[features]",
        "plugins = false",
        "unbounded_connection_retries = false",  # else a refused connection is retried for ever
    ]) + "\n")
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    monkeypatch.setenv("MOCK_API_KEY", "sk-test")


def _pi(home: Path, server: ModelServer, monkeypatch: pytest.MonkeyPatch) -> None:
    agent_dir = home / ".pi" / "agent"
    agent_dir.mkdir(parents=True)
    (agent_dir / "models.json").write_text(json.dumps({"providers": {"mock": {
        "baseUrl": f"{server.url}/v1", "api": "openai-completions", "apiKey": "sk-test",
        "compat": {"sendSessionAffinityHeaders": True},  # each request names its pi session: a ground truth
        "models": [{"id": "test-model", "name": "Test model", "contextWindow": 128000, "maxTokens": 4096,
                    "cost": {"input": PRICE_IN, "output": PRICE_OUT, "cacheRead": 0, "cacheWrite": 0}}],
    }}}))
    (agent_dir / "settings.json").write_text(json.dumps({
        "defaultProvider": "mock", "defaultModel": "test-model", "defaultThinkingLevel": "off",
        "enableInstallTelemetry": False, "retry": {"enabled": False, "provider": {"maxRetries": 0}}}))
    monkeypatch.setenv("PI_CODING_AGENT_DIR", str(agent_dir))
    monkeypatch.setenv("PI_OFFLINE", "1")


def cleanup(home: Path) -> None:
    shutil.rmtree(home / "tmp", ignore_errors=True)
