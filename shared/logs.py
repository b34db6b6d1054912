"""Log lines an operator can follow across processes: one JSON object per line (``LOG_FORMAT=json``),
each carrying the request id of the HTTP request that caused it and the job id it works on.

How a request id travels: the gateway takes the client's ``X-Request-ID`` (if it is a short token)
or draws one, answers it back in the same header, and keeps it in a context variable for the
request (``services.gateway.main.RequestIdMiddleware``). Whatever that request sends to Celery carries
it as a message header (``before_task_publish``); a worker puts the header, the task's name and the
payload's ``job_id`` into its own context variables while the task runs (``task_prerun``), so every
line it logs, and the next hop it sends (inference chains to the hedger), carries them too. A job the
sweeper sends again carries no request id (no request caused it) but still its job id.

Text format (the default, for a terminal) is unchanged; JSON is what compose and Kubernetes set,
for a log collector (Loki, Elasticsearch, Cloud Logging) to index ``request_id`` and ``job_id``.
No dependency: a small ``logging.Formatter``.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from datetime import datetime, timezone
from typing import Any, Literal

__all__ = ["REQUEST_ID", "JOB_ID", "TASK", "LogFormat", "JsonFormatter", "ContextFilter", "configure_logging",
           "new_request_id", "clean_request_id", "install_task_context", "REQUEST_ID_HEADER"]

LogFormat = Literal["text", "json"]
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
JOB_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
TASK: contextvars.ContextVar[str | None] = contextvars.ContextVar("task", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CLEAN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def clean_request_id(value: str | None) -> str | None:
    """A client's ``X-Request-ID`` if it is a short token (letters, digits, ``._-``, at most 64), else None:
    it goes into every log line, so nothing that could forge a line or flood one gets through."""
    return value if value and _CLEAN.fullmatch(value) else None


class ContextFilter(logging.Filter):
    """Puts the context's request id, job id and task name on every record (None where unset)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, var in (("request_id", REQUEST_ID), ("job_id", JOB_ID), ("task", TASK)):
            if getattr(record, key, None) is None:  # a line's own extra={"job_id": ...} wins
                setattr(record, key, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, message, service, and request_id,
    job_id, task where known; exc with the traceback of an exception."""

    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        if self.service:
            out["service"] = self.service
        for key in ("request_id", "job_id", "task"):
            value = getattr(record, key, None)
            if value is None:  # a record a handler saw before the filter ran (a library's own handler)
                value = {"request_id": REQUEST_ID, "job_id": JOB_ID, "task": TASK}[key].get()
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def formatter(fmt: LogFormat, service: str | None = None) -> logging.Formatter:
    return JsonFormatter(service) if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(level: str, fmt: LogFormat = "text", service: str | None = None) -> None:
    """Root logger for a process that sets up its own logging (the gateway, the CLI): one stream
    handler with the chosen format and the context filter."""
    logging.basicConfig(level=level, format=TEXT_FORMAT)
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        handler.setFormatter(formatter(fmt, service))
        if not any(isinstance(f, ContextFilter) for f in handler.filters):
            handler.addFilter(ContextFilter())


_installed = False


def install_task_context(fmt: LogFormat | None = None, service: str | None = None) -> None:
    """Celery signal handlers (once per process): a published task carries the current request id as
    a message header; a running task sets the context variables from its header and payload; with
    ``fmt``, the handlers Celery sets up (from ``-l``) get the context filter, and with ``json`` that
    format (text keeps Celery's own)."""
    global _installed
    from celery.signals import after_setup_logger, after_setup_task_logger, before_task_publish, task_postrun, task_prerun

    if fmt is not None:
        def set_format(logger=None, **_: object) -> None:  # noqa: ANN001 - Celery passes the logger
            for handler in getattr(logger, "handlers", []):
                if fmt == "json":  # text: Celery's own format stays ([time: LEVEL/Process] message)
                    handler.setFormatter(formatter(fmt, service))
                if not any(isinstance(f, ContextFilter) for f in handler.filters):
                    handler.addFilter(ContextFilter())

        after_setup_logger.connect(set_format, weak=False)
        after_setup_task_logger.connect(set_format, weak=False)
    if _installed:
        return
    _installed = True

    @before_task_publish.connect(weak=False)
    def _carry(headers=None, **_: object) -> None:  # noqa: ANN001
        rid = REQUEST_ID.get()
        if rid and isinstance(headers, dict):
            headers.setdefault("request_id", rid)

    tokens: dict[str, list] = {}

    @task_prerun.connect(weak=False)
    def _enter(task_id=None, task=None, args=None, kwargs=None, **_: object) -> None:  # noqa: ANN001
        request = getattr(task, "request", None)
        rid = clean_request_id(getattr(request, "request_id", None)) if request is not None else None
        payload = (args or [None])[0] if args else (kwargs or {}).get("payload")
        job = payload.get("job_id") if isinstance(payload, dict) else None
        tokens[task_id] = [REQUEST_ID.set(rid), JOB_ID.set(str(job) if job else None),
                           TASK.set(getattr(task, "name", None))]

    @task_postrun.connect(weak=False)
    def _leave(task_id=None, **_: object) -> None:  # noqa: ANN001
        for var, token in zip((REQUEST_ID, JOB_ID, TASK), tokens.pop(task_id, [])):
            try:
                var.reset(token)
            except ValueError:  # set in another context (a pool thread): clear instead
                var.set(None)
