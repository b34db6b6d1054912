"""API keys: created, looked up by the hash of their secret, listed, revoked.

A key is ``wdr_<id>_<secret>``: ``id`` is public (lists, logs, the owner of a classification);
the secret is 256 random bits and only its sha256 is stored, so a copy of the database does not
give anyone a usable key. A random token this long needs no slow password hash: there is nothing
to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.auth import Caller, Role
from shared.schemas import ApiKeyPublic
from shared.tables import ApiKey, utcnow

__all__ = ["NewKey", "hash_secret", "create_key", "resolve", "get_key", "list_keys", "revoke", "ensure_bootstrap_key",
           "public"]

PREFIX = "wdr"


@dataclass(frozen=True)
class NewKey:
    row: ApiKey
    token: str  # shown once, never stored


def hash_secret(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(session: Session, name: str, role: Role, *, token: str | None = None,
               rate_limit_per_minute: int | None = None, max_photo_bytes: int | None = None,
               expires_at: datetime | None = None) -> NewKey:
    """A new key; ``token`` gives a known one (WARDROBE_BOOTSTRAP_KEY), otherwise one is drawn.
    ``expires_at``: a browser session's key, when its cookie expires (retention reads it)."""
    key_id = secrets.token_hex(6)
    token = token or f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    row = ApiKey(id=key_id, name=name, role=role, key_hash=hash_secret(token),
                 rate_limit_per_minute=rate_limit_per_minute, max_photo_bytes=max_photo_bytes, created_at=utcnow(),
                 expires_at=expires_at)
    session.add(row)
    session.flush()
    return NewKey(row, token)


def resolve(session: Session, token: str) -> Caller | None:
    """The caller a presented token stands for, or None (unknown or revoked)."""
    digest = hash_secret(token)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return Caller(id=row.id, role=row.role, rate_limit_per_minute=row.rate_limit_per_minute,
                  max_photo_bytes=row.max_photo_bytes)


def get_key(session: Session, key_id: str) -> ApiKey | None:
    return session.get(ApiKey, key_id)


def list_keys(session: Session, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list(session.scalars(query))


def revoke(session: Session, key_id: str) -> ApiKey | None:
    """Revoke a key by id (idempotent); None if there is no such key."""
    row = session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def ensure_bootstrap_key(session: Session, token: str | None = None) -> NewKey | None:
    """The first operator key, so a fresh install can be administered.

    With ``token`` (WARDROBE_BOOTSTRAP_KEY): that key exists as an operator key afterwards (created
    if missing; returned only when created). Without: an operator key is drawn only when no key
    exists at all (first start); returned so it can be printed once.
    """
    if token:
        if session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_secret(token))) is not None:
            return None
        return create_key(session, "bootstrap", Role.operator, token=token, rate_limit_per_minute=0)
    if session.scalar(select(ApiKey.id).limit(1)) is not None:
        return None
    return create_key(session, "bootstrap", Role.operator, rate_limit_per_minute=0)


def public(row: ApiKey) -> ApiKeyPublic:
    """The key as the API and ``wardrobe keys`` show it (never the hash). Times in UTC with their
    offset, also where the database keeps none (SQLite)."""
    def iso(t: datetime | None) -> str | None:
        return None if t is None else (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).isoformat()

    return ApiKeyPublic(id=row.id, name=row.name, role=row.role.value, rate_limit_per_minute=row.rate_limit_per_minute,
                        max_photo_bytes=row.max_photo_bytes, created_at=iso(row.created_at),
                        revoked_at=iso(row.revoked_at))
