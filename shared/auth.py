"""Who is calling: roles and the caller identity every route receives.

The gateway resolves a :class:`Caller` per request (``services.gateway.api.deps.get_caller``);
routes never look at headers themselves. Roles are ordered: each one may do everything the
roles below it may (client < trainer < operator).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Role", "Caller", "ANONYMOUS_OPERATOR", "operator_only_options"]


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


# Training-job options that could change what is served without the gate's judgement:
# ``promote: always`` (bypasses the gate) and any ``tolerance`` (a large one loosens the gate until
# anything passes). ``promote: never`` is a trainer's: it keeps the served model as it is (a
# candidate to look at, not to serve), so it can only make promotion stricter. A trainer's
# other jobs are judged by the gate with the trainer's own tolerance.
_PROMOTION_DEFAULTS: dict[str, Any] = {"promote": "gate", "tolerance": None}
_TRAINER_MAY: dict[str, set[Any]] = {"promote": {"gate", "never"}, "tolerance": {None}}


def operator_only_options(options: Mapping[str, Any], role: Role) -> str | None:
    """Why ``role`` may not ask for these training-job options (None: it may). Checked by the
    gateway (403) and again by the trainer before a job runs (a row written some other way)."""
    if role is Role.operator:
        return None
    named = [f"{name}={options[name]!r}" for name, default in _PROMOTION_DEFAULTS.items()
             if options.get(name, default) not in _TRAINER_MAY[name]]
    if not named:
        return None
    return (f"{', '.join(named)}: only an operator decides promotion; a {role.value} key's jobs are promoted "
            "by the gate with its default tolerance (leave 'tolerance' out; 'promote' may be 'gate' or 'never')")
