"""Where the ledger lives: the home, and the store a URL names (``settings.store_location`` picks the URL).

``AGENTLEDGER_HOME`` (default: ``$XDG_DATA_HOME/agentledger``, i.e.
``~/.local/share/agentledger``) holds the embedded store and session logs.
``AGENTLEDGER_DB`` (or ``db`` in ``$AGENTLEDGER_HOME/config.toml``; the
environment wins) selects the store by URL: ``sqlite:///relative.db`` or
``sqlite:////absolute/path.db`` (SQLAlchemy's spelling), or
``postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?schema=NAME]`` for a shared
PostgreSQL ledger (event log, snapshots and read models all in that database,
in schema NAME, default ``public``). ``?pooler=transaction`` says the address
is a transaction pooler (PgBouncer's ``pool_mode = transaction``) in front of
the server: see :attr:`PostgresLocation.pooled`. A location's ``url`` never
shows the password; ``connect_url`` (for child processes) keeps it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit

from agentledger.domain.errors import UsageError

DB_FILE_NAME = "ledger.db"


class ConfigError(UsageError):
    """The environment or a URL names a store we cannot use (a usage error)."""


@dataclass(frozen=True)
class StoreLocation:
    """An embedded SQLite store at ``path``; ``url`` is safe to print."""

    path: Path
    kind: ClassVar[Literal["sqlite"]] = "sqlite"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    @property
    def connect_url(self) -> str:
        return self.url

    @property
    def sqlalchemy_url(self) -> str:
        return self.url

    @property
    def address(self) -> tuple[str, ...]:
        """Equal for two spellings of one store (through a symlink, relative or absolute)."""
        return (self.kind, str(self.path.resolve()))


@dataclass(frozen=True)
class PostgresLocation:
    """A PostgreSQL ledger; ``url`` masks the password, ``connect_url`` keeps it."""

    host: str
    port: int
    dbname: str
    user: str
    password: str | None = field(default=None, repr=False)
    schema: str = "public"
    #: Reached through a transaction pooler, where each transaction may run on another server connection: no
    #: session state lasts (prepared statements, ``search_path``, session locks, ``LISTEN``), so connections
    #: prepare nothing, the schema is ``public`` and what needs a session is done another way (``docs/scaling.md``).
    pooled: bool = False
    kind: ClassVar[Literal["postgresql"]] = "postgresql"

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
                                                 with_options=False)[len("postgresql"):]

    @property
    def address(self) -> tuple[str, ...]:
        """Equal for two spellings of one store (with another password, say)."""
        return (self.kind, self.host, str(self.port), self.dbname, self.schema)

    def connection_options(self) -> dict[str, Any]:
        """psycopg connection arguments every connection to this ledger takes: the schema as the search path
        (a startup option a transaction pooler refuses), or, through a pooler, no prepared statements."""
        if self.pooled:
            return {"prepare_threshold": None}
        return {"options": f"-c search_path={self.schema}"}

    def _url(self, password: str | None, *, with_options: bool = True) -> str:
        credentials = quote(self.user, safe="") + (f":{password}" if password else "")
        options = [f"schema={self.schema}"] if self.schema != "public" and with_options else []
        options += ["pooler=transaction"] if self.pooled and with_options else []
        query = f"?{'&'.join(options)}" if options else ""
        return f"postgresql://{credentials}@{self.host}:{self.port}/{self.dbname}{query}"


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("AGENTLEDGER_HOME")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(xdg).absolute() / "agentledger"


def logs_dir(env: Mapping[str, str] | None = None) -> Path:
    return home_dir(env) / "logs"


def private_directory(directory: Path) -> None:
    """Make ``directory`` (a folder of the ledger's home) and the home itself, both 0700 if new.

    ``mkdir(parents=True)`` would make a missing home with the default mode:
    open to every user, on the first command that needs a folder in it.
    """
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.mkdir(exist_ok=True, mode=0o700)


CONFIG_FILE_NAME = "config.toml"


def privacy_warnings(location: StoreLocation | PostgresLocation, env: Mapping[str, str] | None = None) -> list[str]:
    """What others on this host could read: the home (logs, prompts, spool) and a SQLite store, if not private.

    agentledger creates them 0700 and 0600; a later ``chmod``, a restored
    backup or a home made by hand can open them up. Checked at the start of
    every command that opens the store; a warning, not a refusal.
    """
    import stat

    paths = [(home_dir(env), 0o700, "chmod 700")]
    if isinstance(location, StoreLocation):
        paths.append((location.path, 0o600, "chmod 600"))
    warnings = []
    for path, private, fix in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except OSError:
            continue
        if mode & 0o077:
            warnings.append(f"{path} is open to other users (mode {mode:03o}, should be {private:03o}); "
                            f"run: {fix} {path}")
    return warnings


#: A secret inside a URL or a connection string: ``user:SECRET@``, ``password=SECRET`` (a query parameter, or a
#: libpq ``key=value`` setting, quoted or not), and the like.
_SECRETS = re.compile(
    r"(?P<user>://[^/@:\s]*:)(?P<pw>[^@/\s]+)(?=@)"
    r"|(?P<key>(?<![A-Za-z0-9_])(?:password|passwd|pwd|secret|token|sslpassword|api_key|apikey)\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"[^\"]*\"|[^&;\s'\"]+)",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """``text`` with every password, secret or token in a URL or connection string replaced by ``***``."""
    return _SECRETS.sub(lambda m: f"{m['user']}***" if m["user"] else f"{m['key']}***", text)


def location_from_url(url: str, source: str, env: Mapping[str, str] | None = None) -> StoreLocation | PostgresLocation:
    """The store ``url`` names (``source`` says where it was found, for errors); empty: the home's SQLite file.

    ``settings.store_location`` chooses the URL (the environment, else ``config.toml``).
    """
    if not url:
        return StoreLocation(path=home_dir(env) / DB_FILE_NAME)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"{source}={mask_secrets(url)!r} is not a URL (expected sqlite:///PATH)")
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"{source}={mask_secrets(url)!r}: expected sqlite:///PATH")
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
    masked = mask_secrets(url)
    try:
        port = parts.port or 5432
    except ValueError:
        raise ConfigError(f"{source}={masked!r}: the port is not a number") from None
    dbname = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not dbname or "/" in dbname:
        raise ConfigError(f"{source}={masked!r}: expected postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME")
    query = parse_qs(parts.query)
    unknown = sorted(set(query) - {"schema", "pooler"})
    if unknown:
        raise ConfigError(f"{source}={masked!r}: unknown option {unknown[0]!r} (only 'schema' and 'pooler' are"
                          " understood)")
    schema = query.get("schema", ["public"])[-1]
    if not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(f"{source}={masked!r}: schema {schema!r} must be a lower-case SQL identifier")
    pooler = query.get("pooler", [None])[-1]
    if pooler not in (None, "transaction"):
        raise ConfigError(f"{source}={masked!r}: pooler {pooler!r} must be 'transaction' (a pooler in session mode"
                          " needs no option)")
    if pooler and schema != "public":
        raise ConfigError(f"{source}={masked!r}: through a transaction pooler the ledger must be in schema 'public'"
                          " (the pooler does not keep a search path): give it a database of its own")
    return PostgresLocation(
        host=parts.hostname, port=port, dbname=dbname, user=unquote(parts.username or "postgres"),
        password=unquote(parts.password) if parts.password else None, schema=schema, pooled=pooler is not None,
    )
