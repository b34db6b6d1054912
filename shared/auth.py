"""Who is calling: roles and the caller identity every route receives.

The gateway resolves a :class:`Caller` per request (``services.gateway.api.deps.get_caller``);
routes never look at headers themselves. Roles are ordered: each one may do everything the
roles below it may (client < trainer < operator).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Role", "Caller", "ANONYMOUS_OPERATOR"]


class Role(str, enum.Enum):
    client = "client"  # classify; read, re-hedge and give feedback on its own classifications
    trainer = "trainer"  # also: retrain and recalibration jobs
    operator = "operator"  # also: models (activate, rollback), keys, metrics

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: "Role") -> bool:
        return self.rank >= needed.rank


_RANK = {Role.client: 0, Role.trainer: 1, Role.operator: 2}


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: ``id`` owns classifications and feedback; ``role`` gates routes."""

    id: str
    role: Role
    rate_limit_per_minute: int | None = None  # None: the gateway's default; 0: not limited
    max_photo_bytes: int | None = None  # None: the gateway's limit; a key may only be stricter

    def may(self, needed: Role) -> bool:
        return self.role.allows(needed)

    def owns(self, owner_id: str | None) -> bool:
        """An operator sees everything; anyone else only what it created."""
        return self.role is Role.operator or owner_id == self.id


# Only for code paths that act on the system's own behalf (never for an HTTP request).
ANONYMOUS_OPERATOR = Caller(id="anonymous", role=Role.operator)
