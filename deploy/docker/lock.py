"""Write the lock file of each image's requirement set: deploy/docker/locks/<image>.txt.

    python deploy/docker/lock.py            # every image
    python deploy/docker/lock.py gateway    # one

pyproject.toml pins Wardrobe's direct dependencies; this resolves each image's set (the extras its
Dockerfile target installs) with pip's resolver (``pip install --dry-run --report``, for CPython 3.11
on Linux x86-64, the images' platform) and writes every package, direct or not, as ``name==version``
with the sha256 of the exact file, so an image build installs exactly that (``--require-hashes``)
and two builds a month apart cannot drift (a CUDA runtime 13.5 in one image, 13.0 in another).
Wardrobe itself is installed afterwards with ``--no-deps``. Re-run after changing a pin;
tests/deploy/test_locks.py checks that every lock agrees with pyproject.toml.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LOCKS = Path(__file__).resolve().parent / "locks"
# image -> the extras its Dockerfile target installs (ORT_BUILD's default for each)
IMAGES = {
    "gateway": "gateway",
    "inference": "inference,cpu",
    "inference-gpu": "inference,gpu",
    "hedger": "hedger",
    "sweeper": "sweeper",
    "trainer": "trainer,gpu",
}


def resolve(extras: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # run it on CPython 3.11, Linux x86-64 (the images' platform): pip picks the wheels for the
        # interpreter it runs in (``--platform`` would forbid building Wardrobe itself from source)
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--report", str(report), f".[{extras}]"], cwd=REPO, check=True)
        return json.loads(report.read_text())["install"]


def lock_text(image: str, installs: list[dict]) -> str:
    lines = [f"# {image}: pip install --require-hashes -r deploy/docker/locks/{image}.txt",
             f"# written by `python deploy/docker/lock.py {image}` from pyproject.toml (.[{IMAGES[image]}]);",
             "# CPython 3.11, Linux x86-64. Do not edit: change the pin in pyproject.toml and re-run."]
    for item in sorted(installs, key=lambda i: i["metadata"]["name"].lower()):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if name.lower() == "wardrobe":
            continue
        digest = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        lines.append(f"{name}=={version}" + (f" \\\n    --hash=sha256:{digest}" if digest else ""))
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    assert sys.version_info[:2] == (3, 11) and sys.platform == "linux", "lock on CPython 3.11, Linux x86-64"
    LOCKS.mkdir(exist_ok=True)
    for image in argv or list(IMAGES):
        (LOCKS / f"{image}.txt").write_text(lock_text(image, resolve(IMAGES[image])))
        print(f"wrote {LOCKS / f'{image}.txt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
