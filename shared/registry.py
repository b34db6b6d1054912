"""The model registry: which model versions exist and which one serves.

A model version is a directory ``<model_dir>/<version>/`` holding ``model.onnx`` + ``card.json``.
The ``model_versions`` table records them; exactly one row is ``active``. Inference workers follow
the active row (no restart), so switching versions is one call to :func:`activate`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.model_card import CARD_FILENAME, ModelCard
from shared.tables import ModelVersion

__all__ = ["register", "activate", "active_version", "get_version", "list_versions", "bundled_models",
           "ensure_active_model", "RegistryError"]

log = logging.getLogger(__name__)


class RegistryError(LookupError):
    """Unknown model version or unusable model directory."""


def _check_dir(path: Path) -> ModelCard:
    if not (path / CARD_FILENAME).is_file():
        raise RegistryError(f"{path} has no {CARD_FILENAME}")
    card = ModelCard.load(path)
    if not (path / card.onnx_file).is_file():
        raise RegistryError(f"{path} has no {card.onnx_file}")
    return card


def register(session: Session, path: str | Path, activate_it: bool = False) -> ModelVersion:
    """Record the model in ``path`` (idempotent per version); optionally make it the active one."""
    path = Path(path).resolve()
    card = _check_dir(path)
    row = session.get(ModelVersion, card.version)
    if row is None:
        row = ModelVersion(version=card.version, path=str(path), card=card.model_dump(mode="json"), active=False)
        session.add(row)
        session.flush()
        log.info("registered model version %s from %s", card.version, path)
    if activate_it:
        activate(session, card.version)
    return row


def activate(session: Session, version: str) -> ModelVersion:
    row = session.get(ModelVersion, version)
    if row is None:
        raise RegistryError(f"unknown model version {version!r}")
    session.execute(update(ModelVersion).where(ModelVersion.version != version).values(active=False))
    row.active = True
    session.flush()
    log.info("model version %s is now active", version)
    return row


def active_version(session: Session) -> ModelVersion | None:
    return session.scalars(select(ModelVersion).where(ModelVersion.active.is_(True)).limit(1)).first()


def get_version(session: Session, version: str) -> ModelVersion | None:
    return session.get(ModelVersion, version)


def list_versions(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.created_at.desc())))


def bundled_models(model_dir: str | Path) -> list[Path]:
    """Usable model directories under ``model_dir``, newest first (by the card's created_at)."""
    found: list[tuple[str, str, Path]] = []
    root = Path(model_dir)
    if not root.is_dir():
        return []
    for card_path in root.glob(f"*/{CARD_FILENAME}"):
        try:
            card = _check_dir(card_path.parent)
        except Exception as exc:  # noqa: BLE001 - a broken bundle must not stop the others
            log.warning("skipping model dir %s: %s", card_path.parent, exc)
            continue
        found.append((card.created_at, card.version, card_path.parent))
    return [p for _, _, p in sorted(found, reverse=True)]


def ensure_active_model(session: Session, model_dir: str | Path) -> ModelVersion | None:
    """If no version is active, register and activate the newest bundled one. Returns the active row."""
    row = active_version(session)
    if row is not None:
        return row
    newest = bundled_models(model_dir)
    if not newest:
        log.warning("no model version registered and none bundled in %s", model_dir)
        return None
    try:
        with session.begin_nested():
            return register(session, newest[0], activate_it=True)
    except IntegrityError:  # another process registered it first
        return active_version(session)
