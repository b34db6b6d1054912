"""Making a database ready to serve: wait for it, migrate it, make sure a model version is active."""

from __future__ import annotations

import logging
from pathlib import Path

from shared import registry
from shared.db import run_migrations, session_scope, wait_for_database
from shared.model_store import open_model_store

log = logging.getLogger(__name__)


def prepare_database(url: str, model_dir: str | Path, attempts: int = 30, migrate: bool = True,
                     model_store: str | Path | None = None) -> str | None:
    """Returns the active model version (None when there is none to register). With no version
    active, the release bundled in ``model_dir`` (the version its ``RELEASE`` file names, or its
    only version) is published into ``model_store`` (default: ``model_dir`` itself) and activated."""
    wait_for_database(url, attempts=attempts)
    if migrate:
        run_migrations(url)
    with session_scope(url) as session:
        store = open_model_store(model_store or model_dir)
        row = registry.ensure_active_model(session, model_dir, store)
        version = row.version if row else None
    log.info("active model version: %s", version)
    return version
