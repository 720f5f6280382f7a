"""The store's identity: a random id given once, so that an emptied or replaced store is never taken for
the ledger a home used before (``infrastructure/store_identity.py``).

Not a read model: ``db rebuild`` leaves it alone, and nothing is replayed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import time
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    identity = op.create_table(
        "ledger_identity",
        sa.Column("store_id", sa.Text, primary_key=True),  # 32 hex digits, random
        sa.Column("created_at", sa.Float, nullable=False),  # epoch seconds
    )
    op.bulk_insert(identity, [{"store_id": uuid.uuid4().hex, "created_at": time.time()}])


def downgrade() -> None:
    op.drop_table("ledger_identity")
