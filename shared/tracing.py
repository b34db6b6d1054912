"""OpenTelemetry traces from the gateway through inference and the hedger: off unless
``TRACING_ENDPOINT`` is set (an OTLP/HTTP collector, e.g. ``http://otel-collector:4318``).

One trace per upload: the gateway's request span (``POST /v1/classifications``, opened by FastAPI's
own OpenTelemetry instrumentation once a tracer provider is set; the gateway adds the request id
to it) is the root; the message it sends to Celery carries the W3C ``traceparent`` as a header (``before_task_publish``);
the inference worker's task span continues it, and the hedger's task span, sent by the inference
task as the next hop of the chain, is that span's child. Spans go out in batches (OpenTelemetry's
BatchSpanProcessor) so a request never waits for the collector; ``TRACING_SAMPLE_RATIO`` keeps a
share of the traces (parent-based: a trace is kept or dropped whole).

Without the setting nothing here is imported beyond this module: no SDK, no exporter thread, no
header on the messages.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["configure_tracing", "install_task_tracing", "tracer", "enabled"]

log = logging.getLogger(__name__)
_enabled = False


def enabled() -> bool:
    return _enabled


def configure_tracing(service: str, endpoint: str | None, sample_ratio: float = 1.0) -> bool:
    """Install the SDK's tracer provider for this process (``wardrobe-<service>``) exporting to
    ``endpoint``; returns whether tracing is on. Idempotent."""
    global _enabled
    if not endpoint or _enabled:
        return _enabled
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(resource=Resource.create({"service.name": f"wardrobe-{service}"}),
                              sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces"),
                                                   schedule_delay_millis=1000))
    trace.set_tracer_provider(provider)
    _enabled = True
    log.info("tracing to %s (sample ratio %s)", endpoint, sample_ratio)
    return True


def tracer():  # noqa: ANN201 - an opentelemetry Tracer
    from opentelemetry import trace

    return trace.get_tracer("wardrobe")


def shutdown() -> None:
    """Flush the spans still batched (a stopping process)."""
    if _enabled:
        from opentelemetry import trace

        provider = trace.get_tracer_provider()
        if hasattr(provider, "shutdown"):
            provider.shutdown()


def install_task_tracing(service: str | None = None, endpoint: str | None = None, sample_ratio: float = 1.0) -> None:
    """Celery signals: a published message carries the current trace context; a running task is a
    CONSUMER span continuing the trace its message carried. In a worker (``service`` and ``endpoint``
    given) the SDK is set up when the worker process starts (``worker_init``), never at import; in a
    process that set it up itself (the gateway) only the publishing side matters. No-op without an
    endpoint."""
    if not (endpoint or _enabled):
        return
    from celery.signals import (before_task_publish, task_postrun, task_prerun, worker_init, worker_process_shutdown,
                                worker_shutdown)

    if service and endpoint:
        @worker_init.connect(weak=False)
        def _configure(**_: object) -> None:
            configure_tracing(service, endpoint, sample_ratio)

    spans: dict[str, tuple[Any, Any]] = {}

    @before_task_publish.connect(weak=False)
    def _inject(headers=None, **_: object) -> None:  # noqa: ANN001
        from opentelemetry import propagate

        if _enabled and isinstance(headers, dict):
            propagate.inject(headers)

    @task_prerun.connect(weak=False)
    def _start(task_id=None, task=None, **_: object) -> None:  # noqa: ANN001
        if not _enabled:
            return
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind

        request = getattr(task, "request", None)
        carrier = {key: getattr(request, key) for key in ("traceparent", "tracestate")
                   if isinstance(getattr(request, key, None), str)}
        span = tracer().start_span(getattr(task, "name", "task"), context=propagate.extract(carrier),
                                   kind=SpanKind.CONSUMER, attributes={"messaging.system": "celery",
                                                                       "messaging.message.id": str(task_id)})
        spans[task_id] = (span, context.attach(trace.set_span_in_context(span)))

    @task_postrun.connect(weak=False)
    def _end(task_id=None, state=None, args=None, **_: object) -> None:  # noqa: ANN001
        span, token = spans.pop(task_id, (None, None))
        if span is None:
            return
        from opentelemetry import context
        from opentelemetry.trace import Status, StatusCode

        payload = args[0] if args else None
        if isinstance(payload, dict) and payload.get("job_id"):
            span.set_attribute("wardrobe.job_id", str(payload["job_id"]))
        if state not in (None, "SUCCESS"):
            span.set_status(Status(StatusCode.ERROR, str(state)))
        span.end()
        try:
            context.detach(token)
        except ValueError:
            pass

    @worker_shutdown.connect(weak=False)
    @worker_process_shutdown.connect(weak=False)
    def _flush(**_: object) -> None:
        shutdown()
