"""An index of the sessions not stopped, by start time: ``list`` walks it newest first, with no sort.

``list`` shows the sessions not stopped, newest first (``queries.NOT_STOPPED``,
``ORDER BY started_at DESC``). Through the (status, started_at) index that is
three ranges, one per status, which the database then sorts whole: at
1,000,000 sessions with 10,000 running, ``list -n 50`` read and sorted all
10,000 wide rows to print 50 (19 ms of its 86). A partial index on
``started_at`` holding only the sessions not stopped is one ordered walk, so
``-n 50`` reads 50 rows and the full list no sort. Its condition is
``NOT_STOPPED`` word for word: SQLite uses a partial index only for a query
whose ``WHERE`` contains the index's condition as written
(``tests/test_query_plans.py`` holds the two together).

SQLite chooses between the two indexes by its statistics, and a store has none
until someone runs ``ANALYZE``: it then guesses ten rows per status, and the
sort of thirty rows wins. So on SQLite this revision also records, in
``sqlite_stat1``, the statistics of the shape the index is for (a million
sessions, a quarter of them per status; ten thousand not stopped). An
``ANALYZE`` later replaces them with the store's own, which on a store of any
size choose the same plan. PostgreSQL analyses its tables itself.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

#: ``queries.NOT_STOPPED`` as it was written at this revision.
_NOT_STOPPED = "status IN ('running', 'unwatched', 'stopping')"
#: (index, sqlite_stat1's stat): rows in the index, then rows per distinct value of its first 1, 2, ... columns.
_SHAPE = (("sessions_status_started", "1000000 250000 1"), ("sessions_live_started", "10000 1"))


def upgrade() -> None:
    op.create_index("sessions_live_started", "sessions", ["started_at"],
                    sqlite_where=sa.text(_NOT_STOPPED), postgresql_where=sa.text(_NOT_STOPPED))
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ANALYZE sqlite_schema")  # creates sqlite_stat1 if absent, analysing no table of ours
        for index, stat in _SHAPE:
            op.execute(sa.text("DELETE FROM sqlite_stat1 WHERE idx = :index").bindparams(index=index))
            op.execute(sa.text("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('sessions', :index, :stat)")
                       .bindparams(index=index, stat=stat))


def downgrade() -> None:
    op.drop_index("sessions_live_started", "sessions")  # SQLite drops the index's statistics with it
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DELETE FROM sqlite_stat1 WHERE idx = 'sessions_status_started'")
