"""classification_jobs and model_versions

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_versions",
        sa.Column("version", sa.String(128), primary_key=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("card", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "classification_jobs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("status", sa.Enum("pending", "running", "done", "failed", name="job_status",
                                    native_enum=False, length=16), nullable=False),
        sa.Column("photo_key", sa.String(64), nullable=False),
        sa.Column("accuracy_target", sa.Float(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("leaf_probs", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_classification_jobs_status", "classification_jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_classification_jobs_status", table_name="classification_jobs")
    op.drop_table("classification_jobs")
    op.drop_table("model_versions")
