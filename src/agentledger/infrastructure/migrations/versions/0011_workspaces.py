"""Worktrees: a session's own git worktree (``Launched.workspace``) and where its work went (``Workspace.*``).

Columns on ``sessions``, one row per session as before: the worktree facts
recorded at launch (repository, worktree, branch, base ref and commit, the
files copied in) and, from the session's Workspace aggregate (whose id is in
``workspace_id``, so its events find their row), the merge, the removal and
the last check's outcome. Filled only by event fields and events this
revision's code introduces, so nothing needs replaying.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("repository", sa.Text),  # the repository's main checkout (a real path)
    ("worktree", sa.Text),  # the session's worktree (its cwd is in it)
    ("branch", sa.Text),  # the worktree's branch, made for the session
    ("base_ref", sa.Text),  # what it started from, as given (a branch, normally); null: a detached HEAD
    ("base_commit", sa.Text),  # the commit it started from
    ("worktree_copied", sa.Text),  # JSON list: the untracked files copied (or linked) in at launch
    ("workspace_id", sa.String(32)),  # the Workspace aggregate's id (uuid5 of the session's)
    ("merged_into", sa.Text),  # Workspace.Merged: the branch the work landed on
    ("merge_commit", sa.Text),  # and that branch's new commit
    ("merge_squash", sa.Integer),  # 0 or 1
    ("merged_at", sa.Float),  # epoch seconds
    ("merged_by", sa.Text),  # the user
    ("worktree_removed_at", sa.Float),  # Workspace.Removed
    ("worktree_removed_forced", sa.Integer),  # 0 or 1: unmerged work given up on purpose
    ("branch_deleted", sa.Integer),  # 0 or 1
    ("check_command", sa.Text),  # Workspace.CheckFinished, the last one
    ("check_exit_code", sa.Integer),
    ("check_passed", sa.Integer),  # 0 or 1
    ("check_duration", sa.Float),  # seconds
    ("checked_at", sa.Float),  # epoch seconds
)


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        for name, kind in _COLUMNS:
            batch.add_column(sa.Column(name, kind))
    op.create_index("sessions_workspace", "sessions", ["workspace_id"])


def downgrade() -> None:
    op.drop_index("sessions_workspace", "sessions")
    with op.batch_alter_table("sessions") as batch:
        for name, _ in _COLUMNS:
            batch.drop_column(name)
