"""Browser sessions: a signed cookie that stands for a client key, so a web page never holds an API key.

Why a cookie and not a key in the page: a key in JavaScript can be read by any script that runs
there and copied out; an http-only cookie cannot be read by scripts at all. ``POST /v1/session``
creates a new client key row for the browser (role ``client``, rate-limited like any client; its
secret is drawn and thrown away, so the key is usable only through the cookie) and sets
``wardrobe_session = v1.<key id>.<expires, unix s>.<HMAC-SHA256>``. A request that carries no
``Authorization`` header but this cookie resolves to the same :class:`~shared.auth.Caller` a Bearer
key of that row would (``services.gateway.api.deps.get_caller``): ownership checks, roles and rate
limits are the key's. Revoking the row (``wardrobe keys revoke ID``) ends the session within
``AUTH_CACHE_S``; changing ``SESSION_SECRET`` ends every session.

Cross-site request forgery: the cookie is ``SameSite=Strict`` (a browser does not send it with a
request another site starts), and every state-changing request made with it must also carry
``X-CSRF-Token`` with the session's token (an HMAC of the key id, handed to the page by
``GET``/``POST /v1/session``): a cross-site form cannot set a header, and a cross-site script
cannot send one without a CORS preflight the gateway does not grant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from shared import api_keys
from shared.auth import Caller

__all__ = ["COOKIE", "CSRF_HEADER", "SessionSigner", "load_or_create_secret", "caller_by_key_id", "SAFE_METHODS"]

log = logging.getLogger(__name__)

COOKIE = "wardrobe_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # never change state, so need no CSRF token
_VERSION = "v1"
_KEY_ID = re.compile(r"^[0-9a-f]{1,64}$")
SECRET_FILE = "session_secret"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class SessionSigner:
    """Issues and checks session cookies and their CSRF tokens with one secret (``clock`` injectable)."""

    def __init__(self, secret: bytes, max_age_s: int, clock: Callable[[], float] = time.time) -> None:
        assert len(secret) >= 32, "a session secret needs at least 256 bits"
        self._secret, self.max_age_s, self.clock = secret, max_age_s, clock

    def _mac(self, purpose: str, message: str) -> str:
        return _b64(hmac.new(self._secret, f"{purpose}|{message}".encode(), hashlib.sha256).digest())

    def expiry(self) -> int:
        """Unix seconds when a cookie issued now expires (its key row records the same moment)."""
        return int(self.clock()) + self.max_age_s

    def issue(self, key_id: str, expires: int | None = None) -> str:
        """A cookie value for ``key_id``, valid until ``expires`` (default: ``max_age_s`` seconds from now)."""
        expires = self.expiry() if expires is None else expires
        body = f"{_VERSION}.{key_id}.{expires}"
        return f"{body}.{self._mac('session', body)}"

    def verify(self, value: str | None) -> str | None:
        """The key id a cookie value stands for, or None (malformed, forged or expired)."""
        if not value or len(value) > 200:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not _KEY_ID.match(parts[1]) or not parts[2].isdigit():
            return None
        body = ".".join(parts[:3])
        if not hmac.compare_digest(parts[3], self._mac("session", body)):
            return None
        if int(parts[2]) <= self.clock():
            return None
        return parts[1]

    def expires_at(self, value: str) -> int:
        """Unix seconds when a verified cookie value expires."""
        return int(value.split(".")[2])

    def csrf_token(self, key_id: str) -> str:
        """The token a page sends as X-CSRF-Token: derived from the key id, so nothing is stored."""
        return self._mac("csrf", key_id)

    def csrf_ok(self, key_id: str, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(presented, self.csrf_token(key_id))


def load_or_create_secret(configured: str | None, data_dir: Path) -> bytes:
    """``SESSION_SECRET`` when set; else the secret in ``DATA_DIR/session_secret``, drawn (256 bits,
    mode 0600) on first start. Several gateways share sessions only if they share this secret: set
    SESSION_SECRET (or share DATA_DIR) when running more than one."""
    if configured:
        return configured.encode()
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".session_secret-")  # mode 0600
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_urlsafe(48).encode())
        try:
            os.link(tmp, path)  # atomic and never overwrites: of two gateways starting, the first wins
            log.info("drew a new session secret in %s", path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    secret = path.read_bytes().strip()
    assert len(secret) >= 32, f"{path} holds fewer than 32 bytes: delete it or set SESSION_SECRET"
    return secret


def caller_by_key_id(session: Session, key_id: str) -> Caller | None:
    """The caller a session's key row stands for, or None (no such key, or revoked)."""
    row = api_keys.get_key(session, key_id)
    if row is None or row.revoked_at is not None:
        return None
    return Caller(id=row.id, role=row.role, rate_limit_per_minute=row.rate_limit_per_minute,
                  max_photo_bytes=row.max_photo_bytes)
