"""The model registry: which model versions exist, which one serves, and which served before.

A model version is a directory (``model.onnx`` + ``card.json``) published in the model store
(``shared.model_store``) under a *key*; the ``model_versions`` table records the key, never a path.
Exactly one row is ``active``; every change of it is a ``model_activations`` row, which is what
a rollback reads. Inference workers follow the active row (no restart), so switching versions is
one call to :func:`activate`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.model_card import CARD_FILENAME, ModelCard
from shared.model_store import LocalModelStore, ModelStore, ModelStoreError
from shared.tables import ModelActivation, ModelVersion

__all__ = ["publish", "register", "activate", "rollback", "rollback_target", "activations", "active_version", "get_version",
           "list_versions", "bundled_models", "ensure_active_model", "active_model_dir", "RegistryError",
           "NothingToRollBack", "RELEASE_FILE", "release_version"]

log = logging.getLogger(__name__)


class RegistryError(LookupError):
    """Unknown model version or unusable model directory."""


class NothingToRollBack(RegistryError):
    """No version was active before the current one."""


def _check_dir(path: Path) -> ModelCard:
    if not (path / CARD_FILENAME).is_file():
        raise RegistryError(f"{path} has no {CARD_FILENAME}")
    card = ModelCard.load(path)
    if not (path / card.onnx_file).is_file():
        raise RegistryError(f"{path} has no {card.onnx_file}")
    return card


def publish(session: Session, store: ModelStore, src: str | Path, activate_it: bool = False, *,
            kind: str = "activate", caller_id: str | None = None, reason: str | None = None) -> ModelVersion:
    """Put the version in ``src`` into ``store`` and record it by key (idempotent per version)."""
    src = Path(src).resolve()
    card = _check_dir(src)
    row = session.get(ModelVersion, card.version)
    if row is None:
        try:
            key = store.put_version(src, card.version)
        except ModelStoreError as exc:
            raise RegistryError(str(exc)) from exc
        row = ModelVersion(version=card.version, key=key, card=card.model_dump(mode="json"), active=False)
        session.add(row)
        session.flush()
        log.info("registered model version %s (key %s in %r)", card.version, key, store)
    if activate_it:
        activate(session, card.version, kind=kind, caller_id=caller_id, reason=reason)
    return row


def register(session: Session, path: str | Path, activate_it: bool = False, *,
             store: ModelStore | None = None) -> ModelVersion:
    """Record the version in ``path``; without ``store`` it is registered in place (the store is
    its parent directory, the key its name)."""
    path = Path(path).resolve()
    return publish(session, store or LocalModelStore(path.parent), path, activate_it)


def activate(session: Session, version: str, *, kind: str = "activate", caller_id: str | None = None,
             reason: str | None = None) -> ModelVersion:
    """Make ``version`` the active one and record the change (nothing is recorded if it already is)."""
    row = session.get(ModelVersion, version, with_for_update=True)
    if row is None:
        raise RegistryError(f"unknown model version {version!r}")
    current = active_version(session)
    if current is not None and current.version == version:
        return row
    session.execute(update(ModelVersion).where(ModelVersion.version != version).values(active=False))
    row.active = True
    session.add(ModelActivation(version=version, previous_version=current.version if current else None,
                                kind=kind, caller_id=caller_id, reason=reason))
    session.flush()
    log.info("model version %s is now active (%s; was %s)", version, kind, current.version if current else None)
    return row


def _rollback_target(session: Session, version: str) -> str | None:
    """The version active before ``version`` was last brought in by something other than a rollback.
    So A → B → C, rollback → B, rollback → A (a stack), not a toggle between B and C."""
    row = session.scalars(
        select(ModelActivation).where(ModelActivation.version == version, ModelActivation.kind != "rollback")
        .order_by(ModelActivation.id.desc()).limit(1)
    ).first()
    return row.previous_version if row else None


def rollback_target(session: Session) -> str:
    """The version a rollback would activate; :class:`NothingToRollBack` if there is none."""
    current = active_version(session)
    if current is None:
        raise NothingToRollBack("no model version is active")
    target = _rollback_target(session, current.version)
    if target is None or session.get(ModelVersion, target) is None:
        raise NothingToRollBack(f"no version was active before {current.version!r}")
    return target


def rollback(session: Session, *, caller_id: str | None = None, reason: str | None = None) -> ModelVersion:
    """Back to the version active before the current one (see :func:`_rollback_target`)."""
    current = active_version(session)
    target = rollback_target(session)
    return activate(session, target, kind="rollback", caller_id=caller_id,
                    reason=reason or f"rollback from {current.version}")


def activations(session: Session, limit: int = 50) -> list[ModelActivation]:
    return list(session.scalars(select(ModelActivation).order_by(ModelActivation.id.desc()).limit(limit)))


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


RELEASE_FILE = "RELEASE"  # in the bundled models dir: the version a fresh start activates


def release_version(model_dir: str | Path) -> str | None:
    """The version ``model_dir/RELEASE`` names (its first non-empty line), or None."""
    path = Path(model_dir) / RELEASE_FILE
    if not path.is_file():
        return None
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[0] if lines else None


def ensure_active_model(session: Session, model_dir: str | Path, store: ModelStore | None = None
                        ) -> ModelVersion | None:
    """If no version is active, publish the bundled version the release names (``RELEASE`` in
    ``model_dir``) into the store and activate it; a lone bundled version needs no name. Never
    merely the newest directory: a candidate tried and rolled back must not become the served
    model of the next fresh start. Returns the active row."""
    row = active_version(session)
    if row is not None:
        return row
    bundled = bundled_models(model_dir)
    if not bundled:
        log.warning("no model version registered and none bundled in %s", model_dir)
        return None
    named = release_version(model_dir)
    if named is not None:
        chosen = [p for p in bundled if p.name == named or ModelCard.load(p).version == named]
        if not chosen:
            raise RuntimeError(f"{Path(model_dir) / RELEASE_FILE} names {named!r}, which is not bundled in {model_dir}")
    elif len(bundled) == 1:
        chosen = bundled
    else:
        log.error("%d versions bundled in %s and no %s file names the release: none activated",
                  len(bundled), model_dir, RELEASE_FILE)
        return None
    try:
        with session.begin_nested():
            return publish(session, store or LocalModelStore(model_dir), chosen[0], activate_it=True,
                           kind="bootstrap", reason=f"the release bundled in {Path(model_dir).name}/")
    except IntegrityError:  # another process registered it first
        return active_version(session)


def active_model_dir(settings) -> Path | None:  # noqa: ANN001 - any CommonSettings
    """A local directory holding the active version (for offline evaluation), or None."""
    from shared.db import session_scope
    from shared.model_store import open_model_store

    with session_scope(settings.resolved_database_url) as session:
        row = active_version(session)
        key = row.key if row else None
    return open_model_store(settings.resolved_model_store).fetch(key) if key else None
