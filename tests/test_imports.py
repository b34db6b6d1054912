"""Imports only go downward: the contracts in pyproject.toml ([tool.importlinter]) hold, and they
would catch each back-edge the code base once had.

``lint-imports`` reads the code statically (it imports nothing of ours), in about a second.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300,
                          env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(root)})


def test_the_import_contracts_hold():
    out = lint_imports(REPO_ROOT)
    assert out.returncode == 0, out.stdout + out.stderr


# (file, line put back, contract that must break): the three back-edges of issue 18
BACK_EDGES = {
    "shared imports a service": ("shared/schemas.py", "from services.trainer import config as _trainer_config",
                                 "shared is common code: it imports no service"),
    "the HTTP layer below its caches": ("services/gateway/jobcache.py", "from services.gateway.api import deps as _deps",
                                        "the gateway in layers"),
    "card and contract import each other": ("shared/model_card.py", "from shared.model_contract import open_session",
                                            "the model contract runs what the card describes"),
}


@pytest.mark.parametrize("edge", list(BACK_EDGES))
def test_a_back_edge_put_back_breaks_a_contract(tmp_path, edge):
    path, line, contract = BACK_EDGES[edge]
    for name in ("shared", "services"):
        shutil.copytree(REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / path
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # noqa: E402\n", encoding="utf-8")
    out = lint_imports(tmp_path)
    assert out.returncode != 0, out.stdout
    broken = [ln for ln in out.stdout.splitlines() if ln.endswith(" BROKEN")]
    assert any(ln.startswith(contract) for ln in broken), out.stdout
