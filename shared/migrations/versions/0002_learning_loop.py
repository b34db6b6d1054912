"""learning loop: feedback, training_jobs, model_activations; model_versions.path → key

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

A model version is addressed by a key relative to the model store's root, never by an absolute
path: the old ``path`` becomes its last component (versions live at ``<root>/<version>/``).
"""
from pathlib import PurePath

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("key", sa.String(255), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.text("SELECT version, path FROM model_versions")).fetchall()
    for version, path in rows:
        conn.execute(sa.text("UPDATE model_versions SET key = :key WHERE version = :version"),
                     {"key": PurePath(path).name or version, "version": version})
    with op.batch_alter_table("model_versions") as batch:
        batch.alter_column("key", existing_type=sa.String(255), nullable=False)
        batch.drop_column("path")

    op.create_table(
        "model_activations",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("version", sa.String(128), sa.ForeignKey("model_versions.version"), nullable=False),
        sa.Column("previous_version", sa.String(128), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("caller_id", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "feedback",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("classification_id", sa.Uuid(), sa.ForeignKey("classification_jobs.id"), nullable=False),
        sa.Column("caller_id", sa.String(128), nullable=False),
        sa.Column("photo_key", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("answer", sa.String(255), nullable=False),
        sa.Column("correct", sa.Boolean(), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_classification", "feedback", ["classification_id"])
    op.create_index("ix_feedback_current_pair", "feedback", ["classification_id", "caller_id"], unique=True,
                    sqlite_where=sa.text("is_current"), postgresql_where=sa.text("is_current"))
    op.create_table(
        "training_jobs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("mode", sa.String(32), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("status", sa.Enum("queued", "running", "done", "failed", "cancelled", name="training_job_status",
                                    native_enum=False, length=16), nullable=False),
        sa.Column("running_slot", sa.Boolean(), nullable=True, unique=True),
        sa.Column("requested_by", sa.String(128), nullable=True),
        sa.Column("stage", sa.String(64), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("log_tail", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("candidate_version", sa.String(128), nullable=True),
        sa.Column("gate", sa.JSON(), nullable=True),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_training_jobs_status", "training_jobs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_training_jobs_status", table_name="training_jobs")
    op.drop_table("training_jobs")
    op.drop_index("ix_feedback_current_pair", table_name="feedback")
    op.drop_index("ix_feedback_classification", table_name="feedback")
    op.drop_table("feedback")
    op.drop_table("model_activations")
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("path", sa.Text(), nullable=True))
    op.execute("UPDATE model_versions SET path = key")
    with op.batch_alter_table("model_versions") as batch:
        batch.alter_column("path", existing_type=sa.Text(), nullable=False)
        batch.drop_column("key")
