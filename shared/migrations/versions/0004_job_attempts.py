"""classification_jobs: attempts (sends to the workers) and version_id (optimistic locking)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

The sweeper (shared.sweeper) sends a lost job again a bounded number of times, counted in
``attempts``; ``version_id`` makes every update of a job a compare-and-set, so a job is never
finished twice with different results.
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("classification_jobs") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("version_id", sa.Integer(), nullable=False, server_default="1"))
    # the sweeper looks for unfinished jobs by age
    op.create_index("ix_classification_jobs_status_updated", "classification_jobs", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_classification_jobs_status_updated", table_name="classification_jobs")
    with op.batch_alter_table("classification_jobs") as batch:
        batch.drop_column("version_id")
        batch.drop_column("attempts")
