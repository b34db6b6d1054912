"""Libraries' routine lines stay below the service's level unless LOG_LEVEL=DEBUG."""

from __future__ import annotations

import logging

import pytest

from shared.log_levels import CHATTY_LOGGERS, quiet_libraries


@pytest.fixture(autouse=True)
def _restore_levels():
    before = {name: logging.getLogger(name).level for name in ("", *CHATTY_LOGGERS)}
    yield
    for name, level in before.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("level", ["INFO", "WARNING", logging.INFO])
def test_routine_library_lines_are_hidden_below_debug(level):
    quiet_libraries(level)
    for name in ("alembic.runtime.migration", "httpx", "celery.beat", "celery.app.trace"):
        logger = logging.getLogger(name)
        assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING), name


@pytest.mark.parametrize("level", ["DEBUG", "debug", logging.DEBUG])
def test_log_level_debug_shows_them(level):
    logging.getLogger().setLevel(logging.DEBUG)
    quiet_libraries(level)
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)
