"""classification_jobs.leaf_probs: a list in the model card's class order (was {leaf: p})

The inference worker now stores the network's output as it is, ordered as the model version's
card lists its classes, and the hedger reads it without reordering. Rows written before hold a
{leaf: probability} object: they become that list (the card's order; a leaf the object lacks
gets 0). Downgrade turns lists back into objects the same way.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""
import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# ``id`` untyped: each row is updated by its id exactly as stored. SQLAlchemy's Uuid on SQLite
# stores 32 hex digits and binds that form, so a row stored in another form (dashed, e.g. written
# by hand or by another tool) would be read but never matched by the UPDATE
jobs = sa.table("classification_jobs", sa.column("id"), sa.column("model_version", sa.String()),
                sa.column("leaf_probs", sa.JSON()))
versions = sa.table("model_versions", sa.column("version", sa.String()), sa.column("card", sa.JSON()))


def _classes(conn) -> dict[str, list[str]]:  # noqa: ANN001
    out = {}
    for version, card in conn.execute(sa.select(versions.c.version, versions.c.card)):
        card = json.loads(card) if isinstance(card, str) else card
        out[version] = list((card or {}).get("classes") or [])
    return out


def _convert(to_list: bool) -> None:
    conn = op.get_bind()
    classes = _classes(conn)
    rows = conn.execute(sa.select(jobs.c.id, jobs.c.model_version, jobs.c.leaf_probs)
                        .where(jobs.c.leaf_probs.is_not(None))).all()
    for job_id, version, probs in rows:
        probs = json.loads(probs) if isinstance(probs, str) else probs
        order = classes.get(version)
        if to_list and isinstance(probs, dict):
            new = [float(probs.get(c, 0.0)) for c in order] if order else [float(p) for p in probs.values()]
        elif not to_list and isinstance(probs, list) and order and len(order) == len(probs):
            new = dict(zip(order, probs))
        else:
            continue
        conn.execute(jobs.update().where(jobs.c.id == job_id).values(leaf_probs=new))


def upgrade() -> None:
    _convert(to_list=True)


def downgrade() -> None:
    _convert(to_list=False)
