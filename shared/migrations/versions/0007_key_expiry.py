"""api_keys.expires_at: when a browser session's key stops being reachable (retention of wardrobes)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

A garment in its owner's wardrobe is exempt from the retention clocks while the owner can still
reach it (shared.wardrobe.in_wardrobe): the owner's key is not revoked and has not expired. A
browser session's key is usable only through its cookie, which expires ``SESSION_MAX_AGE_S`` after
it was issued; the gateway now records that moment on the key row, so the sweeper (which does not
know the gateway's settings) can tell a wardrobe nobody can reach any more from a live one.

Rows written before: browser session keys (name "browser session", role client, made by
``POST /v1/session``) get ``created_at`` + 180 days, the default ``SESSION_MAX_AGE_S`` (the cookie
was issued the moment the row was made); every other key keeps NULL (no end).
"""
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DEFAULT_SESSION_MAX_AGE = timedelta(days=180)  # GatewaySettings.session_max_age_s's default when this was written


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    keys = sa.table("api_keys", sa.column("id", sa.String), sa.column("name", sa.String),
                    sa.column("role", sa.String), sa.column("created_at", sa.DateTime(timezone=True)),
                    sa.column("expires_at", sa.DateTime(timezone=True)))
    conn = op.get_bind()
    rows = conn.execute(sa.select(keys.c.id, keys.c.created_at).where(
        keys.c.name == "browser session", keys.c.role == "client")).all()
    for key_id, created_at in rows:  # in Python: date arithmetic differs between SQLite and PostgreSQL
        conn.execute(keys.update().where(keys.c.id == key_id).values(expires_at=created_at + DEFAULT_SESSION_MAX_AGE))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("expires_at")
