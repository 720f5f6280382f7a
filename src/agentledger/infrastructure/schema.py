"""Applying the Alembic migrations that define the read-model schema.

Imported only when the schema must change (first use, ``db upgrade``), because
Alembic and SQLAlchemy are slow to import.
"""

from __future__ import annotations

from typing import Any

from agentledger.infrastructure.config import PostgresLocation, StoreLocation

SCRIPT_LOCATION = "agentledger.infrastructure:migrations"


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
        connect_args = {"options": f"-c search_path={location.schema}", "connect_timeout": 5}
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
