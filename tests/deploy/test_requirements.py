"""Every image's requirements resolve against PyPI, so an uninstallable pin fails CI (as
``onnxruntime-gpu==1.32.0`` would have: no such release).

One ``pip install --dry-run --report - --ignore-installed '.[<every extra>]'`` resolves the union
of all images' extras (and ``all`` / ``all-gpu``, what ``make test`` and a GPU workstation
install). With exact pins, a solution for the union restricted to one image's dependency closure
is a solution for that image, so one resolver run (about a minute) proves each image installable;
the closures, computed from the report's metadata, are then checked per image: exactly one ONNX
Runtime build where a model runs, no torch in the serving images, the CUDA libraries the GPU
build's CUDA provider links.

Needs PyPI: marked ``network`` (offline: ``-m 'not network'``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.test_manifests import ORT_DISTRIBUTIONS, REPO, image_extras

pytestmark = [pytest.mark.network, pytest.mark.slow]

# What the GPU build's CUDA provider links (readelf -d libonnxruntime_providers_cuda.so, 1.31.1):
# cuBLAS/cuBLASLt, cuRAND, the CUDA runtime; cuDNN and cuFFT for its kernels.
CUDA_LIBRARIES = {"nvidia-cublas", "nvidia-curand", "nvidia-cuda-runtime", "nvidia-cudnn-cu13", "nvidia-cufft"}


def environments() -> dict[str, set[str]]:
    """Each installable environment -> its extras: the Dockerfile's images, `all`, `all-gpu`."""
    return image_extras() | {"all": {"all"}, "all-gpu": {"all-gpu"}}


@cache
def resolved() -> dict[str, dict]:
    """pip's report of the union: canonical name -> report item."""
    extras = sorted(set().union(*environments().values()))
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
           "--disable-pip-version-check", "--report", "-", f".[{','.join(extras)}]"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (
        f"the pins in pyproject.toml do not resolve (offline? run with -m 'not network'):\n"
        f"{' '.join(cmd)}\n{out.stderr[-4000:]}")
    report = json.loads(out.stdout)
    return {canonicalize_name(item["metadata"]["name"]): item for item in report["install"]}


def closure(extras: set[str]) -> dict[str, str]:
    """name -> version of what ``pip install '.[extras]'`` installs: wardrobe's requirements for
    these extras and, transitively, theirs (markers evaluated as pip did, extras included)."""
    items = resolved()
    env = default_environment()
    wanted: dict[str, set[str]] = {"wardrobe": set(extras)}  # package -> extras asked of it
    done: dict[str, set[str]] = {}
    while wanted:
        name, asked = wanted.popitem()
        if asked <= done.get(name, set()) and name in done:
            continue
        done[name] = done.get(name, set()) | asked
        assert name in items, f"{name} is required but not in pip's report"
        for line in items[name]["metadata"].get("requires_dist", []):
            req = Requirement(line)
            if req.marker and not any(req.marker.evaluate({**env, "extra": e}) for e in done[name] | {""}):
                continue
            dep = canonicalize_name(req.name)
            new = set(req.extras)
            if dep not in done or not new <= done[dep]:
                wanted[dep] = wanted.get(dep, set()) | new
    done.pop("wardrobe")
    return {name: items[name]["metadata"]["version"] for name in done}


@pytest.mark.parametrize("name", sorted(environments()))
def test_each_environment_resolves_with_one_onnxruntime(name: str) -> None:
    installed = closure(environments()[name])
    builds = set(installed) & ORT_DISTRIBUTIONS
    runs_a_model = name.split("-")[0] in ("inference", "trainer", "all")
    assert len(builds) == (1 if runs_a_model else 0), f"{name} would install {builds or 'no ONNX Runtime'}"
    if name.split("-")[0] in ("gateway", "hedger", "inference", "sweeper"):
        assert "torch" not in installed, f"{name} would install torch"
    if "onnxruntime-gpu" in builds:
        assert CUDA_LIBRARIES <= set(installed), f"{name}: the CUDA provider would miss {CUDA_LIBRARIES - set(installed)}"
    if "torch" in installed and "onnxruntime-gpu" in builds:  # one set of CUDA libraries, not two
        cuda = {n: v for n, v in installed.items() if n.startswith("nvidia-cuda-runtime")}
        assert len(cuda) == 1, cuda


def test_the_gpu_build_exists_at_its_pin() -> None:
    """The design card's `onnxruntime-gpu==1.32.0` never existed; the pinned one resolves."""
    items = resolved()
    assert "onnxruntime-gpu" in items and "onnxruntime" in items
    assert items["onnxruntime-gpu"]["download_info"]["url"].endswith(".whl")
