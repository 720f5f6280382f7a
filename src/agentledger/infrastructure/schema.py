"""Applying the Alembic migrations that define the read-model schema.

Imported only when the schema must change (first use, ``db upgrade``), because
Alembic and SQLAlchemy are slow to import.
"""

from __future__ import annotations

from typing import Any

from agentledger.infrastructure.config import StoreLocation

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


def upgrade_to_head(location: StoreLocation) -> None:
    from alembic import command
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine(location.url, poolclass=NullPool, connect_args={"timeout": 30})
    try:
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()
