"""Making a database ready to serve: wait for it, migrate it, make sure a model version is active."""

from __future__ import annotations

import logging
from pathlib import Path

from shared import registry
from shared.db import run_migrations, session_scope, wait_for_database

log = logging.getLogger(__name__)


def prepare_database(url: str, model_dir: str | Path, attempts: int = 30, migrate: bool = True) -> str | None:
    """Returns the active model version (None when there is none to register)."""
    wait_for_database(url, attempts=attempts)
    if migrate:
        run_migrations(url)
    with session_scope(url) as session:
        row = registry.ensure_active_model(session, model_dir)
        version = row.version if row else None
    log.info("active model version: %s", version)
    return version
