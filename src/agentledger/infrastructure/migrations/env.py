"""Alembic environment for agentledger's read-model schema.

Run through ``agentledger db upgrade`` (which hands us an open connection), or
with the ``alembic`` command from the repository root, in which case the store
is the one ``AGENTLEDGER_DB`` / ``AGENTLEDGER_HOME`` select.
"""

from alembic import context

from agentledger.infrastructure.settings import store_location

config = context.config


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=None, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=store_location().sqlalchemy_url, target_metadata=None, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    run_migrations(connection)
else:
    from agentledger.infrastructure.schema import engine_for

    engine = engine_for(store_location())
    with engine.begin() as conn:
        run_migrations(conn)
    engine.dispose()
