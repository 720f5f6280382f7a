"""The effective configuration: ``$AGENTLEDGER_HOME/config.toml``, then ``AGENTLEDGER_*`` variables, which win.

One table (:data:`KEYS`) says which keys exist, how each is parsed and which
variable overrides it; :func:`load_settings` applies it and remembers where
each value came from, so ``agentledger config show`` can say so. A command
line flag, where a command has one, wins over both.

Webhook endpoints are tables ``[webhooks.NAME]`` (``url``, ``secret``,
``events``, ``timeout``, ``give_up_after``, ``retry_initial``, ``retry_max``,
``start``); ``AGENTLEDGER_WEBHOOK_URL`` / ``AGENTLEDGER_WEBHOOK_SECRET``
configure (or override) the endpoint named ``default``.

Every problem is a :class:`ConfigError` naming the file, line and key; a secret
in a file that others can read is a warning, not an error.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agentledger.domain.durations import MAX_SECONDS, InvalidDuration, format_duration, parse_duration
from agentledger.domain.webhook_endpoint import HOOK_TYPES, WebhookEndpoint
from agentledger.infrastructure.config import (
    CONFIG_FILE_NAME,
    ConfigError,
    PostgresLocation,
    StoreLocation,
    home_dir,
    location_from_url,
)

SECRET_MASK = "***"


@dataclass(frozen=True)
class MetricsAddress:
    """A HOST:PORT to listen on (the daemon's /metrics, its console)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


#: Default metrics ports: one per user (9201 + uid mod 799, so never agentctl's 9200), so that the daemons of two
#: users on one machine do not contend for one port. ``daemon status`` and ``config show`` say which it is.
METRICS_PORT_BASE = 9201
METRICS_PORT_SPAN = 799


def default_metrics_addr(uid: int | None = None) -> MetricsAddress:
    return MetricsAddress("127.0.0.1", METRICS_PORT_BASE + (os.getuid() if uid is None else uid) % METRICS_PORT_SPAN)


@dataclass(frozen=True)
class Settings:
    """Every configurable value, with ``sources[key]`` saying where it came from."""

    home: Path
    db: str | None = None  # None: the SQLite file in home
    reconcile_interval: float = 5.0
    fuse_ttl: float = 30.0
    host_heartbeat: float = 10.0
    metrics_addr: MetricsAddress | None = field(default_factory=default_metrics_addr)  # None: off
    console_addr: MetricsAddress | None = None  # the daemon serves the web console there (read-only); None: off
    on_stop: str | None = None
    on_stop_timeout: float = 60.0
    unset_env: tuple[str, ...] = ()  # variables dropped from the agent's environment
    autostart_daemon: bool = True  # launch starts the store's daemon when none runs
    auto_lock: bool = True  # launch takes its directory's lock (launch --no-lock: not this once)
    clock_skew_bound: float = 30.0  # a writer whose clock is off by more than this says so (application/clock.py)
    webhooks: tuple[WebhookEndpoint, ...] = ()
    worktree_dir: str | None = None  # None: beside the repository (application/worktrees.py)
    worktree_copy: tuple[str, ...] = ()  # untracked files copied into each new worktree (glob patterns)
    worktree_copy_mode: str = "copy"  # or "link"
    repositories: dict[str, dict[str, Any]] = field(default_factory=dict)  # [repositories."PATH"]: their own keys
    sources: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    file: Path | None = None


# -- value parsers: text or TOML value -> value, raising ValueError with the reason ---


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("expected a duration such as 500ms, 30s or 10m")
    if isinstance(value, (int, float)):
        if value <= 0:
            raise ValueError(f"{value!r}: must be greater than zero")
        if not value <= MAX_SECONDS:  # also nan and inf, which TOML allows
            raise ValueError(f"{value!r}: must be a number of seconds up to {MAX_SECONDS:.0f} (36500d)")
        return float(value)
    try:
        return parse_duration(value)
    except InvalidDuration as error:
        raise ValueError(str(error)) from None


def _fuse_ttl(value: Any) -> float:
    """A duration, not below the fuse's floor (``domain/fuse.py``: ``MIN_TTL``), checked where it is written."""
    from agentledger.domain.errors import UsageError
    from agentledger.domain.fuse import check_ttl

    ttl = _duration(value)
    try:
        return check_ttl(ttl, "fuse_ttl")
    except UsageError as error:
        raise ValueError(str(error).removeprefix("fuse_ttl ")) from None


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a non-empty string")
    return value.strip()


def store_location(env: Mapping[str, str] | None = None) -> StoreLocation | PostgresLocation:
    """The store ``AGENTLEDGER_DB`` names, else ``db`` in ``config.toml``, else the home's SQLite file."""
    env = os.environ if env is None else env
    url, source = env.get("AGENTLEDGER_DB", "").strip(), "AGENTLEDGER_DB"
    if not url:
        settings = load_settings(env)
        url, source = settings.db or "", f"{settings.sources['db']}: db"
    return location_from_url(url, source, env)


def _store_url(value: Any) -> str:
    url = _text(value)
    try:
        location_from_url(url, "AGENTLEDGER_DB", {"AGENTLEDGER_HOME": "/"})
    except ConfigError as error:
        raise ValueError(str(error).removeprefix("AGENTLEDGER_DB").lstrip("=: ")) from None
    return url


def _metrics_addr(value: Any) -> MetricsAddress | None:
    text = _text(value)
    if text.lower() in ("off", "none", "disabled"):
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:9300, or 'off'")
    return MetricsAddress(host, int(port))


def _http_url(value: Any) -> str:
    from agentledger.infrastructure.config import mask_secrets

    url = _text(value)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{mask_secrets(url)!r}: expected an http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError(f"{mask_secrets(url)!r}: the port is not a number") from None
    return url


def _events(value: Any) -> tuple[str, ...]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
        raise ValueError(f"expected a list of event types out of {', '.join(HOOK_TYPES)}")
    unknown = [v for v in items if v not in HOOK_TYPES]
    if unknown:
        raise ValueError(f"unknown event type {unknown[0]!r} (known: {', '.join(HOOK_TYPES)})")
    return tuple(dict.fromkeys(items))


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{value!r}: expected true or false")


def _names(value: Any) -> tuple[str, ...]:
    from agentledger.infrastructure.agent_env import VARIABLE_NAME

    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        raise ValueError("expected a list of environment variable names, e.g. [\"ANTHROPIC_API_KEY\"]")
    bad = [v for v in items if not VARIABLE_NAME.fullmatch(v)]
    if bad:
        raise ValueError(f"{bad[0]!r} is not an environment variable name")
    return tuple(dict.fromkeys(items))


def _patterns(value: Any) -> tuple[str, ...]:
    items = [v.strip() for v in value.split(",") if v.strip()] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
        raise ValueError('expected a list of glob patterns, e.g. [".env*", ".claude/settings.local.json"]')
    bad = [v for v in items if os.path.isabs(v) or ".." in Path(v).parts or Path(v).parts[:1] == (".git",)]
    if bad:
        raise ValueError(f"{bad[0]!r}: a pattern is relative to the repository, inside it, and not in .git")
    return tuple(dict.fromkeys(v.strip() for v in items))


def _copy_mode(value: Any) -> str:
    text = _text(value)
    if text not in ("copy", "link"):
        raise ValueError(f"{text!r}: expected 'copy' or 'link' (a symlink to the repository's file)")
    return text


def _start(value: Any) -> str:
    text = _text(value)
    if text not in ("beginning", "now"):
        raise ValueError(f"{text!r}: expected 'beginning' or 'now'")
    return text


@dataclass(frozen=True)
class Key:
    parse: Callable[[Any], Any]
    env: str | None
    help: str
    secret: bool = False


KEYS: dict[str, Key] = {
    "db": Key(_store_url, "AGENTLEDGER_DB", "store URL: sqlite:///PATH or postgresql://USER[:PW]@HOST[:PORT]/DB"),
    "reconcile_interval": Key(_duration, "AGENTLEDGER_RECONCILE_INTERVAL", "time between the daemon's passes"),
    "fuse_ttl": Key(_fuse_ttl, "AGENTLEDGER_FUSE_TTL", "default fuse lifetime for launch"),
    "host_heartbeat": Key(_duration, "AGENTLEDGER_HOST_HEARTBEAT", "how often a daemon records its host alive"),
    "metrics_addr": Key(_metrics_addr, "AGENTLEDGER_METRICS_ADDR", "daemon's /metrics and /healthz, HOST:PORT or off"),
    "console_addr": Key(_metrics_addr, "AGENTLEDGER_CONSOLE_ADDR",
                        "the daemon also serves the web console (read-only) on HOST:PORT, or off"),
    "on_stop": Key(_text, "AGENTLEDGER_ON_STOP", "default command run after a session stops"),
    "on_stop_timeout": Key(_duration, "AGENTLEDGER_ON_STOP_TIMEOUT", "how long an on-stop command may run"),
    "unset_env": Key(_names, "AGENTLEDGER_UNSET_ENV", "variables launched agents do not inherit (list; env: a,b)"),
    "autostart_daemon": Key(_flag, "AGENTLEDGER_AUTOSTART_DAEMON", "launch starts the store's daemon if none runs"),
    "auto_lock": Key(_flag, "AGENTLEDGER_AUTO_LOCK", "launch takes its directory's lock, refused while it is held"),
    "clock_skew_bound": Key(_duration, "AGENTLEDGER_CLOCK_SKEW_BOUND",
                            "a clock off from the store's by more than this is reported"),
    "worktree_dir": Key(_text, "AGENTLEDGER_WORKTREE_DIR",
                        "where launch --worktree puts worktrees: DIR/<repo>/<name> (default <repo>/../<repo>.worktrees)"),
    "worktree_copy": Key(_patterns, "AGENTLEDGER_WORKTREE_COPY",
                         "untracked files copied into each new worktree (glob list; env: a,b)"),
    "worktree_copy_mode": Key(_copy_mode, "AGENTLEDGER_WORKTREE_COPY_MODE", "copy or link those files"),
}

WEBHOOK_KEYS: dict[str, Key] = {
    "url": Key(_http_url, "AGENTLEDGER_WEBHOOK_URL", "where to POST"),
    "secret": Key(_text, "AGENTLEDGER_WEBHOOK_SECRET", "HMAC-SHA256 key for the signature headers", secret=True),
    "events": Key(_events, None, "event types to send (default: all)"),
    "timeout": Key(_duration, None, "per-request timeout"),
    "give_up_after": Key(_duration, None, "dead-letter a delivery still failing after this long"),
    "retry_initial": Key(_duration, None, "first retry delay; doubles each time, with jitter"),
    "retry_max": Key(_duration, None, "longest retry delay"),
    "start": Key(_start, None, "where a new endpoint starts: now (default), or the beginning of the log"),
}
#: A ``[repositories."/abs/path"]`` table's keys: that repository's own worktree settings.
REPOSITORY_KEYS: dict[str, Key] = {
    "worktree_copy": Key(_patterns, None, "added to worktree_copy for this repository"),
    "worktree_copy_mode": Key(_copy_mode, None, "copy or link, for this repository"),
    "worktree_dir": Key(_text, None, "where this repository's worktrees go"),
}
#: The endpoint the ``AGENTLEDGER_WEBHOOK_*`` variables configure.
ENV_WEBHOOK = "default"
_ENDPOINT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read the file, apply the environment over it, validate everything; raise ConfigError on the first problem."""
    env = os.environ if env is None else env
    home = home_dir(env)
    path = home / CONFIG_FILE_NAME
    values, lines = _read_file(path)
    found: dict[str, Any] = {}
    sources: dict[str, str] = {}

    for key, spec in KEYS.items():
        raw_env = (env.get(spec.env) or "").strip() if spec.env else ""
        if raw_env:
            found[key] = _parse(spec, raw_env, spec.env)
            sources[key] = f"env {spec.env}"
        elif key in values:
            where = f"{path}, line {lines.line_of(key)}"
            found[key] = _parse(spec, values[key], f"{where}: {key}")
            sources[key] = where
        else:
            sources[key] = "default"

    webhooks = _webhooks(values.get("webhooks", {}), env, path, lines, sources)
    found["repositories"] = _repositories(values.get("repositories", {}), path, lines, sources)
    warnings = _permission_warnings(path, values)
    settings = Settings(home=home, webhooks=webhooks, sources=sources, warnings=warnings,
                        file=path if path.exists() else None, **found)
    from agentledger.application import clock

    clock.skew_bound = settings.clock_skew_bound  # what this process reports of its own clock's difference
    return settings


def _parse(spec: Key, value: Any, where: str | None) -> Any:
    try:
        return spec.parse(value)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from None


def _webhooks(tables: Any, env: Mapping[str, str], path: Path, lines: _Lines,
              sources: dict[str, str]) -> tuple[WebhookEndpoint, ...]:
    endpoints: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        at = f"{path}, line {lines.line_of(name, table='webhooks')}"
        if not _ENDPOINT_NAME.fullmatch(name):
            raise ConfigError(f"{at}: webhook name {name!r} may hold only letters, digits, '_', '-' and '.'")
        if not isinstance(table, dict):
            raise ConfigError(f"{at}: webhooks.{name} must be a table ([webhooks.{name}])")
        endpoints[name] = _table_fields(f"webhooks.{name}", table, WEBHOOK_KEYS, path, lines, sources)
    for key in ("url", "secret"):
        variable = WEBHOOK_KEYS[key].env
        raw = (env.get(variable) or "").strip() if variable else ""
        if raw:
            endpoints.setdefault(ENV_WEBHOOK, {})[key] = _parse(WEBHOOK_KEYS[key], raw, variable)
            sources[f"webhooks.{ENV_WEBHOOK}.{key}"] = f"env {variable}"
    result = []
    for name, fields in endpoints.items():
        if "url" not in fields:
            where = sources.get(f"webhooks.{name}.secret", f"{path}")
            raise ConfigError(f"{where}: webhook {name!r} has no url")
        if fields.get("retry_max", 600.0) < fields.get("retry_initial", 1.0):
            raise ConfigError(f"{path}: webhooks.{name}: retry_max is shorter than retry_initial")
        result.append(WebhookEndpoint(name=name, **fields))
    return tuple(result)


def _repositories(tables: Any, path: Path, lines: _Lines, sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """``[repositories."/abs/path"]`` tables, by the repository's real path."""
    found: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        at = f"{path}, line {lines.line_of(name, table='repositories')}"
        if not isinstance(table, dict):
            raise ConfigError(f'{at}: repositories.{name} must be a table ([repositories."{name}"])')
        if not os.path.isabs(os.path.expanduser(name)):
            raise ConfigError(f"{at}: repositories: {name!r} is not an absolute path")
        fields = _table_fields(f"repositories.{name}", table, REPOSITORY_KEYS, path, lines, sources)
        found[os.path.realpath(os.path.expanduser(name))] = fields
    return found


def _table_fields(prefix: str, table: dict[str, Any], keys: dict[str, Key], path: Path, lines: _Lines,
                  sources: dict[str, str]) -> dict[str, Any]:
    """One named table's values (``[webhooks.NAME]``, ``[repositories."PATH"]``), each parsed by its key and
    its source (file and line) recorded; an unknown key is refused, naming the known ones."""
    fields: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{path}, line {lines.line_of(key, table=prefix)}"
        if key not in keys:
            raise ConfigError(f"{where}: unknown key '{prefix}.{key}' (known: {', '.join(keys)})")
        fields[key] = _parse(keys[key], value, f"{where}: {prefix}.{key}")
        sources[f"{prefix}.{key}"] = where
    return fields


def worktree_settings(settings: Settings) -> Any:
    """The worktree part of the configuration, as ``application/worktrees.py`` takes it."""
    from agentledger.application.worktrees import RepositoryRules, WorktreeSettings

    return WorktreeSettings(
        directory=settings.worktree_dir, copy=settings.worktree_copy, copy_mode=settings.worktree_copy_mode,
        repositories={repo: RepositoryRules(copy=own.get("worktree_copy", ()), copy_mode=own.get("worktree_copy_mode"),
                                            directory=own.get("worktree_dir"))
                      for repo, own in settings.repositories.items()})


def _permission_warnings(path: Path, values: dict[str, Any]) -> tuple[str, ...]:
    holds_secret = any(isinstance(t, dict) and "secret" in t for t in values.get("webhooks", {}).values())
    db = values.get("db")
    try:
        holds_secret |= isinstance(db, str) and bool(urlsplit(db).password)
    except ValueError:  # a URL urlsplit refuses (the variable won over it, so nobody parsed it)
        holds_secret = True
    if not holds_secret:
        return ()
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return (f"{path} holds a secret and others can read it (mode {mode:03o}); run: chmod 600 {path}",)
    return ()


class _Lines:
    """Where a key sits in the file's text, for error messages (tomllib does not say)."""

    _HEADER = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*(#.*)?$")

    def __init__(self, text: str) -> None:
        self.text = text

    def line_of(self, key: str, table: str = "") -> int | str:
        current = ""
        assignment = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=")
        header = f"{table}.{key}" if table else key
        for number, row in enumerate(self.text.splitlines(), 1):
            match = self._HEADER.match(row)
            if match:
                current = match.group(1).replace('"', "").replace("'", "")
                if current == header:
                    return number
            elif current == table and assignment.match(row):
                return number
        return "?"


def _read_file(path: Path) -> tuple[dict[str, Any], _Lines]:
    if not path.exists():
        if path.is_symlink():  # a dangling link: the user meant a file to be read, not no file at all
            raise ConfigError(f"{path} is a symlink to {os.readlink(path)}, which does not exist")
        return {}, _Lines("")
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        match = re.search(r"\(at line (\d+), column \d+\)$", message)
        if match:
            reason = message[: match.start()].strip()
            raise ConfigError(f"{path}, line {match.group(1)}: not valid TOML: {reason}") from None
        raise ConfigError(f"{path}: not valid TOML: {message}") from None
    lines = _Lines(text)
    for key in values:
        if key not in KEYS and key not in ("webhooks", "repositories"):
            raise ConfigError(f"{path}, line {lines.line_of(key)}: unknown key {key!r} "
                              f"(known: {', '.join([*KEYS, 'webhooks', 'repositories'])})")
    if "repositories" in values and not isinstance(values["repositories"], dict):
        raise ConfigError(f"{path}, line {lines.line_of('repositories')}: 'repositories' must be tables "
                          '[repositories."/abs/path"]')
    if "webhooks" in values and not isinstance(values["webhooks"], dict):
        raise ConfigError(f"{path}, line {lines.line_of('webhooks')}: 'webhooks' must be tables [webhooks.NAME]")
    return values, lines


def _repository_source(settings: Settings, repo: str, key: str) -> str:
    return next((where for name, where in settings.sources.items()
                 if name.startswith("repositories.") and name.endswith(f".{key}")
                 and os.path.realpath(os.path.expanduser(name[len("repositories."):-len(key) - 1])) == repo),
                "config file")


def shown(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain values, secrets masked: for ``config show``."""
    from agentledger.infrastructure.config import mask_secrets

    def value_of(key: str) -> Any:
        value = getattr(settings, key)
        if key == "db":
            return store_location({"AGENTLEDGER_DB": value} if value else {"AGENTLEDGER_HOME": str(settings.home)}).url
        if isinstance(value, float):
            return format_duration(value)
        if isinstance(value, MetricsAddress):
            return str(value)
        if isinstance(value, tuple):
            return list(value)
        return "off" if key in ("metrics_addr", "console_addr") and value is None else value

    entries = {key: {"value": value_of(key), "source": settings.sources[key]} for key in KEYS}
    for repo, own in settings.repositories.items():  # shown as keys of their own: repositories.PATH.KEY
        for key, value in own.items():
            entries[f"repositories.{repo}.{key}"] = {"value": list(value) if isinstance(value, tuple) else value,
                                                     "source": _repository_source(settings, repo, key)}
    hooks = {}
    for endpoint in settings.webhooks:
        entry = {}
        for key in WEBHOOK_KEYS:
            value = getattr(endpoint, key)
            if key == "secret" and value is not None:
                value = SECRET_MASK
            elif key == "url":
                value = mask_secrets(value)  # a user:password@ or a ?token= in it
            elif isinstance(value, float):
                value = format_duration(value)
            elif isinstance(value, tuple):
                value = list(value)
            entry[key] = {"value": value, "source": settings.sources.get(f"webhooks.{endpoint.name}.{key}", "default")}
        hooks[endpoint.name] = entry
    return {"home": str(settings.home), "file": str(settings.file) if settings.file else None,
            "settings": entries, "webhooks": hooks, "warnings": list(settings.warnings)}
