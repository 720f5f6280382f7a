"""Where the ledger lives. The one place that turns the environment into a store choice.

``AGENTLEDGER_HOME`` (default: ``$XDG_DATA_HOME/agentledger``, i.e.
``~/.local/share/agentledger``) holds the embedded store and session logs.
``AGENTLEDGER_DB`` (or ``db`` in ``$AGENTLEDGER_HOME/config.toml``; the
environment wins) selects the store by URL: ``sqlite:///relative.db`` or
``sqlite:////absolute/path.db`` (SQLAlchemy's spelling), or
``postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?schema=NAME]`` for a shared
PostgreSQL ledger (event log, snapshots and read models all in that database,
in schema NAME, default ``public``). A location's ``url`` never shows the
password; ``connect_url`` (for child processes) keeps it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

DB_FILE_NAME = "ledger.db"


class ConfigError(Exception):
    """The environment or a URL names a store we cannot use (a usage error)."""


@dataclass(frozen=True)
class StoreLocation:
    """An embedded SQLite store at ``path``; ``url`` is safe to print."""

    path: Path
    kind = "sqlite"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    @property
    def connect_url(self) -> str:
        return self.url

    @property
    def sqlalchemy_url(self) -> str:
        return self.url


@dataclass(frozen=True)
class PostgresLocation:
    """A PostgreSQL ledger; ``url`` masks the password, ``connect_url`` keeps it."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    schema: str = "public"
    kind = "postgresql"

    @property
    def url(self) -> str:
        return self._url("***" if self.password else None)

    @property
    def connect_url(self) -> str:
        return self._url(quote(self.password, safe="") if self.password else None)

    @property
    def sqlalchemy_url(self) -> str:
        """For SQLAlchemy (Alembic), which takes the schema as a search path, not in the URL."""
        return "postgresql+psycopg" + self._url(quote(self.password, safe="") if self.password else None,
                                                 with_schema=False)[len("postgresql"):]

    def _url(self, password: str | None, *, with_schema: bool = True) -> str:
        credentials = quote(self.user, safe="") + (f":{password}" if password else "")
        schema = "" if self.schema == "public" or not with_schema else f"?schema={self.schema}"
        return f"postgresql://{credentials}@{self.host}:{self.port}/{self.dbname}{schema}"


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("AGENTLEDGER_HOME")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(xdg).absolute() / "agentledger"


def logs_dir(env: Mapping[str, str] | None = None) -> Path:
    return home_dir(env) / "logs"


#: How often a daemon records that its host is alive (``AGENTLEDGER_HOST_HEARTBEAT``).
DEFAULT_HOST_HEARTBEAT = 10.0


def host_heartbeat_every(env: Mapping[str, str] | None = None) -> float:
    from agentledger.domain.durations import InvalidDuration, parse_duration

    env = os.environ if env is None else env
    text = env.get("AGENTLEDGER_HOST_HEARTBEAT", "").strip()
    if not text:
        return DEFAULT_HOST_HEARTBEAT
    try:
        return parse_duration(text)
    except InvalidDuration as error:
        raise ConfigError(f"AGENTLEDGER_HOST_HEARTBEAT: {error}") from None


CONFIG_FILE_NAME = "config.toml"
#: The keys ``config.toml`` may hold today (issue 6 adds the rest of the configuration).
_CONFIG_KEYS = ("db",)


def config_file(env: Mapping[str, str] | None = None) -> tuple[Path, dict[str, Any]]:
    """``$AGENTLEDGER_HOME/config.toml`` and its values ({} when there is none)."""
    path = home_dir(env) / CONFIG_FILE_NAME
    if not path.exists():
        return path, {}
    import tomllib

    try:
        text = path.read_text(encoding="utf-8")
        values = tomllib.loads(text)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    for key in values:
        if key not in _CONFIG_KEYS:
            line = next((n for n, row in enumerate(text.splitlines(), 1) if row.strip().startswith(key)), "?")
            raise ConfigError(f"{path}, line {line}: unknown key {key!r} (known: {', '.join(_CONFIG_KEYS)})")
    if "db" in values and not isinstance(values["db"], str):
        raise ConfigError(f"{path}: 'db' must be a string, a store URL")
    return path, values


def store_location(env: Mapping[str, str] | None = None) -> StoreLocation | PostgresLocation:
    """The store ``AGENTLEDGER_DB`` names, else ``db`` in ``config.toml``, else the home's SQLite file."""
    env = os.environ if env is None else env
    url, source = env.get("AGENTLEDGER_DB", "").strip(), "AGENTLEDGER_DB"
    if not url:
        path, values = config_file(env)
        url, source = values.get("db", "").strip(), f"{path}: db"
    if not url:
        return StoreLocation(path=home_dir(env) / DB_FILE_NAME)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"{source}={url!r} is not a URL (expected sqlite:///PATH)")
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"{source}={url!r}: expected sqlite:///PATH")
        path = rest[1:]
        if not path or path == ":memory:":
            raise ConfigError(
                f"{source} must name a file: an in-memory store would be lost "
                "when the command exits"
            )
        return StoreLocation(path=Path(path).expanduser().absolute())
    if scheme in ("postgresql", "postgres"):
        return _postgres_location(url, source)
    raise ConfigError(f"{source}: unsupported store {scheme!r} (expected sqlite:///PATH or postgresql://…)")


_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _postgres_location(url: str, source: str) -> PostgresLocation:
    parts = urlsplit(url)
    masked = url.replace(f":{parts.password}@", ":***@") if parts.password else url
    try:
        port = parts.port or 5432
    except ValueError:
        raise ConfigError(f"{source}={masked!r}: the port is not a number") from None
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not dbname or "/" in dbname:
        raise ConfigError(f"{source}={masked!r}: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME")
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"schema"})
    if unknown:
        raise ConfigError(f"{source}={masked!r}: unknown option {unknown[0]!r} (only 'schema' is understood)")
    schema = query.get("schema", ["public"])[-1]
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(f"{source}={masked!r}: schema {schema!r} must be a lower-case SQL identifier")
    return PostgresLocation(
        host=parts.hostname, port=port, dbname=dbname, user=unquote(parts.username or "postgres"),
        password=unquote(parts.password) if parts.password else None, schema=schema,
    )
