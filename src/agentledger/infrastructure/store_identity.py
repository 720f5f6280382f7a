"""A store is never silently replaced: an emptied, deleted or swapped store is refused, not taken for new.

Every store gets a random id once, when it is created (table ``ledger_identity``,
migration 0009). Each home remembers, in ``$AGENTLEDGER_HOME/stores.json``, the
id of every store it has used, by the store's location (a SQLite file's real
path; a PostgreSQL server, database and schema). Opening a store then checks:

- the home knows this location and the store's file is gone or empty: refused
  before anything is created (a 0-byte or deleted ``ledger.db`` used to become a
  fresh, empty ledger, with ``verify`` saying all was well);
- the home knows this location under another id: refused (the store was
  emptied and created anew, or replaced by another ledger's);
- the home has never recorded it: recorded, unless the home has recorded no
  store at all (a home from before this check) and this is its own default
  ``ledger.db``, empty, next to the logs of earlier sessions (its store was
  emptied): refused as well. A home that recorded another store (a user moving
  from PostgreSQL to the default, say) takes a new one as new.

Each refusal is one line with the way out: ``agentledger db init --force``
accepts the store at that location as this home's from now on (a new, empty
one if there is none). ``verify`` reports the identity too.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from agentledger.application.errors import StoreError
from agentledger.infrastructure.config import PostgresLocation, StoreLocation
from agentledger.infrastructure.json_records import read_json_object

if TYPE_CHECKING:
    from agentledger.application.ports import Store

HOME_FILE = "stores.json"


class StoreReplaced(StoreError):
    """The store at a location this home used is not the one it used."""


def location_key(location: StoreLocation | PostgresLocation) -> str:
    """Where a store is, however its URL was spelled (for a server: as spelled, host and port included)."""
    if isinstance(location, PostgresLocation):
        return f"postgresql://{location.host}:{location.port}/{location.dbname}?schema={location.schema}"
    return f"sqlite://{os.path.realpath(location.path)}"


def known_ids(home: Path) -> dict[str, Any]:
    return read_json_object(home / HOME_FILE) or {}


def remember(home: Path, location: StoreLocation | PostgresLocation, store_id: str) -> None:
    """Record ``store_id`` as this home's store at ``location`` (atomically; best effort on a full disk)."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)  # a server store's home may hold nothing else yet
    known = known_ids(home)
    key = location_key(location)
    if (known.get(key) or {}).get("store_id") == store_id:
        return
    known[key] = {"store_id": store_id, "recorded_at": time.time()}
    path = home / HOME_FILE
    temporary = path.with_name(f".{HOME_FILE}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, orjson.dumps(known, option=orjson.OPT_INDENT_2))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError:  # a full disk, or a read-only copy of a home (read commands still work there)
        with contextlib.suppress(OSError):  # on a read-only file system even a missing file's unlink fails
            temporary.unlink(missing_ok=True)


def refuse_missing(home: Path, location: StoreLocation | PostgresLocation) -> None:
    """Before a SQLite store would be created: refuse if this home used a store there that is now gone or empty."""
    if isinstance(location, PostgresLocation) or location_key(location) not in known_ids(home):
        return
    path = location.path
    if not path.exists() or path.stat().st_size == 0:
        state = "is gone" if not path.exists() else "is empty (0 bytes)"
        raise StoreReplaced(f"the store {path} {state}, but this home used a ledger there "
                            f"(id {known_ids(home)[location_key(location)]['store_id'][:12]}): restore it from a "
                            "backup, or start over with 'agentledger db init --force'")


def check(store: Store, location: StoreLocation | PostgresLocation, home: Path) -> str | None:
    """Refuse a store (open at ``location``) that is not the one this home used there; record a first one. Its id."""
    store_id = store_id_of(store)
    if store_id is None:  # a store older than migration 0009 that could not be upgraded: nothing to compare
        return None
    known = known_ids(home).get(location_key(location))
    if known is not None and known.get("store_id") != store_id:
        raise StoreReplaced(
            f"the store {location.url} is not the ledger this home used there (id {str(known.get('store_id'))[:12]}, "
            f"now {store_id[:12]}): it was emptied and created anew, or replaced; restore it from a backup, or "
            "accept it with 'agentledger db init --force'")
    if known is None and not known_ids(home) and _empty_beside_history(store, location, home):
        raise StoreReplaced(
            f"the store {location.url} is empty, but this home holds the logs of earlier sessions: it was emptied "
            "or replaced; restore it from a backup, or start over with 'agentledger db init --force'")
    if known is None:
        remember(home, location, store_id)
    return store_id


def store_id_of(store: Store) -> str | None:
    try:
        row = store.db.execute("SELECT store_id FROM ledger_identity").fetchone()
    except Exception:  # no such table: an older schema (or a read-model connection that cannot say)
        return None
    return None if row is None else str(row[0])


def _empty_beside_history(store: Store, location: StoreLocation | PostgresLocation, home: Path) -> bool:
    """The home's own default store is empty while the home has session logs (a home from before this check)."""
    if isinstance(location, PostgresLocation) or Path(os.path.realpath(location.path)) != \
            Path(os.path.realpath(home / "ledger.db")):
        return False
    logs = home / "logs"
    if not logs.is_dir() or not any(name.endswith(".log") for name in os.listdir(logs)):
        return False
    return not store.db.execute("SELECT 1 FROM stored_events LIMIT 1").fetchone()
