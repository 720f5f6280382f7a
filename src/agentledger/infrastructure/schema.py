"""The read-model schema every backend shares: its revision, the event library's settings, the migrations.

Alembic and SQLAlchemy, slow to import, are imported only when the schema
must change (first use, ``db upgrade``).
"""

from __future__ import annotations

from typing import Any

from agentledger.application.errors import StoreError
from agentledger.infrastructure.config import PostgresLocation, StoreLocation

SCRIPT_LOCATION = "agentledger.infrastructure:migrations"
#: The Alembic revision this code expects; ``tests/test_store.py`` checks it is the head.
SCHEMA_HEAD = "0016"


def common_ledger_env(create_tables: bool) -> dict[str, str]:
    """The eventsourcing settings every backend shares."""
    return {
        "TRANSCODER_TOPIC": "agentledger.infrastructure.transcoder:OrjsonTranscoder",
        "MAPPER_TOPIC": "agentledger.infrastructure.store:CheckedMapper",
        "CREATE_TABLE": "y" if create_tables else "n",
        # Keep recently used sessions in memory and read only newer events on load.
        "AGGREGATE_CACHE_MAXSIZE": "1000",
    }


def refuse_unknown_schema(revision: str | None, where: Any) -> None:
    """A read-model schema this code has no migration for (a newer agentledger wrote it) is left alone."""
    known = {f"{number:04d}" for number in range(1, int(SCHEMA_HEAD) + 1)}
    if revision is not None and revision not in known:
        raise StoreError(f"the store {where} has read-model schema revision {revision!r}, which this version "
                         f"(schema {SCHEMA_HEAD}) does not know: it was written by a newer agentledger; use that")


def alembic_config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def engine_for(location: StoreLocation | PostgresLocation) -> Any:
    """A SQLAlchemy engine on the store's read-model schema (no pooling: used once)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    if location.kind == "postgresql":
        connect_args = {**location.connection_options(), "connect_timeout": 5}
    else:
        connect_args = {"timeout": 30}
    return create_engine(location.sqlalchemy_url, poolclass=NullPool, connect_args=connect_args)


def upgrade_to_head(location: StoreLocation | PostgresLocation) -> None:
    engine = engine_for(location)
    try:
        with engine.begin() as connection:
            _upgrade(connection)
    finally:
        engine.dispose()


def scratch_read_models() -> Any:
    """An in-memory SQLite database holding the read-model schema at head, for replays (``--as-of``)."""
    import sqlite3

    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    db = sqlite3.connect(":memory:", check_same_thread=False)
    engine = create_engine("sqlite://", creator=lambda: db, poolclass=StaticPool)
    with engine.begin() as connection:
        _upgrade(connection)
    db.row_factory = sqlite3.Row
    return db


def _upgrade(connection: Any) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
