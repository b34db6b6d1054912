"""classification_jobs: keep (a person asked to keep it) and photo_purged_at (retention); indexes by age

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

The retention sweep (shared.retention) deletes photos, classifications and feedback by age. A
classification whose ``keep`` is true is never expired (nor its photo and feedback); deleting a
person's data (``wardrobe data delete``) deletes it all the same. ``photo_purged_at`` records that
the photo of a row that is kept longer than its photo went, so the sweep does not look at it again.
Both columns are nullable: rows written before mean "not kept, photo not purged".
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("classification_jobs") as batch:
        batch.add_column(sa.Column("keep", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("photo_purged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_classification_jobs_created", "classification_jobs", ["created_at"])
    op.create_index("ix_classification_jobs_photo_key", "classification_jobs", ["photo_key"])
    op.create_index("ix_feedback_created", "feedback", ["created_at"])
    op.create_index("ix_feedback_caller", "feedback", ["caller_id"])
    op.create_index("ix_feedback_photo_key", "feedback", ["photo_key"])


def downgrade() -> None:
    op.drop_index("ix_feedback_photo_key", table_name="feedback")
    op.drop_index("ix_feedback_caller", table_name="feedback")
    op.drop_index("ix_feedback_created", table_name="feedback")
    op.drop_index("ix_classification_jobs_photo_key", table_name="classification_jobs")
    op.drop_index("ix_classification_jobs_created", table_name="classification_jobs")
    with op.batch_alter_table("classification_jobs") as batch:
        batch.drop_column("photo_purged_at")
        batch.drop_column("keep")
