"""Decode cost against the real processes (issue [G2]): 45 progressive-JPEG scan bombs from one
key (12 s of CPU each before) leave another caller's taxonomy reads and uploads answering."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from shared import api_keys
from shared.auth import Role
from shared.db import session_scope
from tests.factories import jpeg_bytes
from tests.hostile import scan_bomb

pytestmark = pytest.mark.integration


def _key(system, name: str) -> dict[str, str]:  # noqa: ANN001
    with session_scope(system.database_url) as session:
        token = api_keys.create_key(session, name, Role.client, rate_limit_per_minute=0).token
    return {"Authorization": f"Bearer {token}"}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


def test_45_scan_bombs_from_one_key_leave_other_callers_answering(system):
    attacker, other = _key(system, "attacker"), _key(system, "other")
    bomb = scan_bomb()  # 188 KB
    answers: list[int] = []

    def attack() -> None:
        with httpx.Client(base_url=system.url, timeout=120, headers=attacker) as c:
            answers.append(c.post("/v1/classifications", files={"photo": ("b.jpg", bomb, "image/jpeg")}).status_code)

    threads = [threading.Thread(target=attack) for _ in range(45)]
    for t in threads:
        t.start()
    taxonomy, uploads = [], []
    with httpx.Client(base_url=system.url, timeout=60, headers=other) as c:
        for i in range(15):
            t0 = time.monotonic()
            assert c.get("/v1/taxonomy").status_code == 200
            taxonomy.append(time.monotonic() - t0)
            t0 = time.monotonic()
            r = c.post("/v1/classifications", files={"photo": ("p.jpg", jpeg_bytes(seed=100 + i), "image/jpeg")})
            assert r.status_code == 202, r.text
            uploads.append(time.monotonic() - t0)
    for t in threads:
        t.join(120)
    print(f"45 scan bombs: answers {sorted(set(answers))}; other caller's p95: taxonomy {_p95(taxonomy):.3f} s, "
          f"uploads {_p95(uploads):.3f} s")
    assert answers == [413] * 45
    assert _p95(taxonomy) < 2.0 and _p95(uploads) < 2.0  # the line: other callers within 2 s p95
    assert system.alive("gateway") and system.alive("inference")
