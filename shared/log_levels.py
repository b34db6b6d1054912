"""Libraries' own log lines kept below the service's: start-up chatter (Alembic's plugin and
"running upgrade" lines, Celery beat's "sending due task" every few seconds, httpx's line per
request) shows only with ``LOG_LEVEL=DEBUG``; their warnings and errors always show."""

from __future__ import annotations

import logging

__all__ = ["CHATTY_LOGGERS", "quiet_libraries"]

# Loggers whose INFO is routine: each is raised to WARNING unless the level asked for is DEBUG.
CHATTY_LOGGERS = (
    "alembic",  # "Context impl SQLiteImpl", "Will assume non-transactional DDL", "Running upgrade ..."
    "httpx", "httpcore",  # a line per request (the CLI's polls, the launcher's readiness checks)
    "celery.beat",  # "Scheduler: Sending due task ..." at every sweep interval
    # a worker's "Task ... received" / "succeeded in 0.01s" for every task, the sweeps every few
    # seconds included (a failing task is still logged, at ERROR); the tasks log what matters
    "celery.app.trace", "celery.worker.strategy",
    "celery.worker.consumer", "celery.apps.worker",  # "Connected to redis://...", "... ready."
)


def quiet_libraries(level: str | int) -> None:
    """Raise the chatty libraries' loggers to WARNING, unless ``level`` is DEBUG."""
    debug = logging.getLevelName(level) == "DEBUG" if isinstance(level, int) else level.upper() == "DEBUG"
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if debug else logging.WARNING)
