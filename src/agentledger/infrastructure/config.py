"""Where the ledger lives. The one place that turns the environment into a store choice.

``AGENTLEDGER_HOME`` (default: ``$XDG_DATA_HOME/agentledger``, i.e.
``~/.local/share/agentledger``) holds the embedded store and session logs.
``AGENTLEDGER_DB`` selects the store by URL; today ``sqlite:///relative.db`` or
``sqlite:////absolute/path.db`` (SQLAlchemy's spelling). PostgreSQL comes later
and will be chosen here too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DB_FILE_NAME = "ledger.db"


class ConfigError(Exception):
    """The environment or a URL names a store we cannot use (a usage error)."""


@dataclass(frozen=True)
class StoreLocation:
    """An embedded SQLite store at ``path``; ``url`` is safe to print."""

    path: Path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"


def home_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    explicit = env.get("AGENTLEDGER_HOME")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = env.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(xdg).absolute() / "agentledger"


def logs_dir(env: Mapping[str, str] | None = None) -> Path:
    return home_dir(env) / "logs"


def store_location(env: Mapping[str, str] | None = None) -> StoreLocation:
    env = os.environ if env is None else env
    url = env.get("AGENTLEDGER_DB", "").strip()
    if not url:
        return StoreLocation(path=home_dir(env) / DB_FILE_NAME)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(f"AGENTLEDGER_DB={url!r} is not a URL (expected sqlite:///PATH)")
    if scheme == "sqlite":
        if not rest.startswith("/") or rest == "/":
            raise ConfigError(f"AGENTLEDGER_DB={url!r}: expected sqlite:///PATH")
        path = rest[1:]
        if not path or path == ":memory:":
            raise ConfigError(
                "AGENTLEDGER_DB must name a file: an in-memory store would be lost "
                "when the command exits"
            )
        return StoreLocation(path=Path(path).expanduser().absolute())
    if scheme.startswith("postgres"):
        raise ConfigError("AGENTLEDGER_DB: PostgreSQL stores are not supported yet; use sqlite:///PATH")
    raise ConfigError(f"AGENTLEDGER_DB: unsupported store {scheme!r} (expected sqlite:///PATH)")
