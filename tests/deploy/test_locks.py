"""Each image's lock file (deploy/docker/locks/, written by deploy/docker/lock.py) agrees with
pyproject.toml: every pin of the image's set at the pinned version, every entry with a file hash,
and the Dockerfile installs from it with --require-hashes."""

from __future__ import annotations

import importlib.util
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from shared.config import REPO_ROOT

_spec = importlib.util.spec_from_file_location("lock", REPO_ROOT / "deploy" / "docker" / "lock.py")
lock = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(lock)
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def pins(extras: str) -> dict[str, str]:
    """name -> pinned version of the base dependencies and ``extras`` (self-references followed)."""
    out: dict[str, str] = {}
    todo, seen = list(PYPROJECT["dependencies"]), set()
    for extra in extras.split(","):
        todo += PYPROJECT["optional-dependencies"][extra]
    while todo:
        req = Requirement(todo.pop())
        if req.marker is not None and not req.marker.evaluate({"sys_platform": "linux",
                                                               "platform_python_implementation": "CPython"}):
            continue
        if canonicalize_name(req.name) == "wardrobe":
            for extra in req.extras - seen:
                seen.add(extra)
                todo += PYPROJECT["optional-dependencies"][extra]
            continue
        (spec,) = req.specifier
        out[canonicalize_name(req.name)] = spec.version
    return out


def locked(image: str) -> dict[str, tuple[str, bool]]:
    """name -> (version, has a sha256) of every entry of the image's lock."""
    text = (lock.LOCKS / f"{image}.txt").read_text().replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)(.*)", line.strip())
            assert m, line
            out[canonicalize_name(m.group(1))] = (m.group(2), "--hash=sha256:" in m.group(3))
    return out


@pytest.mark.parametrize("image", sorted(lock.IMAGES))
def test_the_lock_holds_every_pin_at_its_version_with_a_hash(image: str):
    path = lock.LOCKS / f"{image}.txt"
    if not path.exists():
        pytest.fail(f"no lock for {image}: python deploy/docker/lock.py {image}")
    entries = locked(image)
    for name, version in pins(lock.IMAGES[image]).items():
        assert name in entries, f"{image}: {name} is pinned in pyproject.toml but not locked"
        assert Version(entries[name][0]) == Version(version), (
            f"{image}: {name} locked at {entries[name][0]}, pinned at {version}")
    missing = sorted(name for name, (_, hashed) in entries.items() if not hashed)
    assert not missing, f"{image}: entries without a hash: {missing}"
    assert "wardrobe" not in entries


def test_the_dockerfile_installs_each_image_from_its_lock():
    dockerfile = (REPO_ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    assert "COPY deploy/docker/locks ./deploy/docker/locks" in dockerfile
    for image in ("gateway", "hedger", "sweeper"):
        assert f"--require-hashes -r deploy/docker/locks/{image}.txt" in dockerfile
    assert 'locks/inference$([ "$ORT_BUILD" = cpu ] || echo "-$ORT_BUILD").txt' in dockerfile
    assert 'locks/trainer$([ "$ORT_BUILD" = gpu ] || echo "-$ORT_BUILD").txt' in dockerfile
    assert "!deploy/docker/locks/" in (REPO_ROOT / ".dockerignore").read_text().splitlines()


def test_the_check_catches_a_stale_lock(tmp_path, monkeypatch):
    real = (lock.LOCKS / "gateway.txt").read_text()
    (tmp_path / "gateway.txt").write_text(re.sub(r"(?m)^fastapi==\S+", "fastapi==0.1.0", real))
    monkeypatch.setattr(lock, "LOCKS", tmp_path)
    with pytest.raises(AssertionError, match="fastapi locked at 0.1.0"):
        test_the_lock_holds_every_pin_at_its_version_with_a_hash("gateway")
