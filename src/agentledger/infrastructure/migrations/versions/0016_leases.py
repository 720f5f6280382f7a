"""Leases: named claims held for a while and renewed by their holder, for a ledger reached through a pooler.

Through a transaction pooler (``?pooler=transaction``) no lock outlasts a
transaction without keeping one of the pool's few server connections for the
holder's life, which is how each host's daemon held its claim on the ledger
(``infrastructure/daemon_files.py``). A row here keeps none: taking, renewing
and giving one back are each a statement of their own
(``infrastructure/leases.py``). ``expires_at`` is on the server's clock (epoch
seconds of ``clock_timestamp()``), so no client's clock moves an expiry.

Not a read model: ``db rebuild`` leaves the table alone. A new, empty table;
a direct connection never uses it (a session's advisory lock goes with it).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.Text, primary_key=True),  # what is claimed, e.g. 'daemon:HOST'
        sa.Column("holder", sa.Text, nullable=False),  # who holds it: a JSON record (the daemon's lock file's)
        sa.Column("expires_at", sa.Float, nullable=False),  # epoch seconds, the server's clock
    )


def downgrade() -> None:
    op.drop_table("leases")
