"""Prometheus metrics of every Wardrobe process, served on a port of their own.

Why a separate port per process, and not ``/metrics`` on the API or Prometheus' multiprocess mode:

* **No key, no way to the API.** Scraping the API's ``/metrics`` needs an operator key, the key that
  can also activate models. The metrics port answers ``GET /metrics`` without any key and nothing
  else (every other path is a 404), so a scraper (or anyone who reaches the port) can read counts
  and never reach ``/v1``. A NetworkPolicy can then open the port to the monitoring namespace only.
* **One process per port is what Wardrobe runs.** Every worker runs one process: the inference
  worker a *threads* pool (its threads share one ONNX Runtime session and one micro-batcher), the
  hedger, sweeper and trainer a *solo* pool, the gateway one uvicorn process per container. Celery's
  default prefork pool (N child processes behind one port) would need ``PROMETHEUS_MULTIPROC_DIR``;
  no Wardrobe worker uses it, so the in-process registry is exact and carries no mmap files to clean
  up. (The sweeper's ``-B`` forks a beat process; it only sends the sweep messages and counts nothing.)
  Each worker module sets its pool in code (``app.conf.worker_pool``); a worker started with
  ``-P prefork`` by hand would serve only its main process's registry, whose task counts stay at 0.

``METRICS_PORT`` (0, the default, is off: ``wardrobe up`` and the tests run every process on one host,
and one fixed port would collide) and ``METRICS_HOST`` are common settings (shared/config.py).
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["METRICS_PATH", "MetricsServer", "start_metrics_server", "install_worker_metrics", "TASKS", "TASK_SECONDS",
           "MODEL_INFO", "JOB_FAILURES", "QUEUE_AGE",
           "set_model_version", "LATENCY_BUCKETS"]

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
# Seconds, from a hedge (tens of microseconds) to a cold 40 MP decode on a busy CPU (seconds).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# --- what every worker process exports (labels: stage = the worker's queue) -------------------
TASKS = Counter("wardrobe_tasks_total", "Celery tasks run by this worker, by task and final state "
                "(success, failure, retry).", ["stage", "task", "state"])
TASK_SECONDS = Histogram("wardrobe_task_seconds", "Run time of a Celery task in this worker.", ["stage", "task"],
                         buckets=LATENCY_BUCKETS)
JOB_FAILURES = Counter("wardrobe_job_failures_total", "Classification jobs this worker failed, by error code "
                       "(corrupt_image, photo_missing, no_active_model, inference_failed, hedging_failed, ...).",
                       ["stage", "code"])
QUEUE_AGE = Histogram("wardrobe_queue_age_seconds", "How long a job waited in the queue before this stage took it.",
                      ["stage"], buckets=LATENCY_BUCKETS + (60.0, 120.0, 300.0))
MODEL_INFO = Gauge("wardrobe_model_info", "1 for the model version this process serves (labels: stage, version).",
                   ["stage", "version"])


def set_model_version(stage: str, version: str) -> None:
    """``wardrobe_model_info{stage, version}`` = 1 for ``version`` and no series for the others, so a
    dashboard shows which version each process serves right now (and a switch as a step)."""
    for labels in list(MODEL_INFO._metrics):  # noqa: SLF001 - prometheus_client has no public "labels in use"
        if labels[0] == stage and labels[1] != version:
            MODEL_INFO.remove(*labels)
    MODEL_INFO.labels(stage=stage, version=version).set(1)


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry = REGISTRY

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self._send(404, b"not found: this port serves only GET /metrics\n", "text/plain; charset=utf-8")
            return
        self._send(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)

    def do_HEAD(self) -> None:  # noqa: N802
        self.do_GET()

    def _refuse(self) -> None:  # any other method, on any path: there is nothing here but GET /metrics
        self._send(404, b"not found: this port serves only GET /metrics\n", "text/plain; charset=utf-8")

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _refuse  # noqa: N815

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:  # every scrape would be a log line
        pass


class MetricsServer:
    """``GET /metrics`` (and nothing else) on ``host:port``, on a daemon thread of this process."""

    def __init__(self, port: int, host: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> None:
        handler = type("Handler", (_Handler,), {"registry": registry})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-server", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_metrics_server(port: int, host: str = "0.0.0.0", what: str = "metrics") -> MetricsServer | None:
    """Serve this process's metrics unless ``port`` is 0 (the setting's "off")."""
    if not port:
        return None
    server = MetricsServer(port, host)
    log.info("%s: Prometheus metrics on http://%s:%d%s", what, host, server.port, METRICS_PATH)
    return server


def install_worker_metrics(app, stage: str, port: int, host: str) -> None:  # noqa: ANN001 - a Celery app
    """In a Celery worker: count every task (``wardrobe_tasks_total``, ``wardrobe_task_seconds``) and
    serve the registry on ``port`` once the worker process is set up (``worker_init``: never at import,
    so ``celery inspect`` or a test importing the module opens no port)."""
    from celery.signals import task_postrun, task_prerun, worker_init

    started: dict[str, float] = {}

    @worker_init.connect(weak=False)
    def _serve(sender=None, **_: object) -> None:  # noqa: ANN001 - Celery's signal signature
        start_metrics_server(port, host, what=stage)

    @task_prerun.connect(weak=False)
    def _start(task_id=None, **_: object) -> None:  # noqa: ANN001
        started[task_id] = time.perf_counter()

    @task_postrun.connect(weak=False)
    def _end(task_id=None, task=None, state=None, **_: object) -> None:  # noqa: ANN001
        t0 = started.pop(task_id, None)
        name = getattr(task, "name", "unknown")
        TASKS.labels(stage=stage, task=name, state=str(state or "unknown").lower()).inc()
        if t0 is not None:
            TASK_SECONDS.labels(stage=stage, task=name).observe(time.perf_counter() - t0)
