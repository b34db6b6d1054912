"""The model store: where model versions live, addressed by a key relative to the store's root.

The database records a version's *key* (``"20261201-2100"``), never a path, so every worker
resolves it against what it can reach: the same shared volume mounted anywhere (the default,
``LocalModelStore``), or later an object store (a class with the same two methods that downloads
into a local cache). ``put_version`` publishes a finished directory atomically (copy to a hidden
temporary sibling, then rename), so a reader never sees half a version.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

from shared.model_card import CARD_FILENAME, ModelCard

__all__ = ["ModelStore", "LocalModelStore", "ModelStoreError", "open_model_store", "check_key"]

log = logging.getLogger(__name__)
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class ModelStoreError(LookupError):
    """A key that is malformed or names no usable version in the store."""


def check_key(key: str) -> str:
    """One path component, no '..', no separators: a key can never escape the store's root."""
    if not _KEY.match(key or "") or key in (".", ".."):
        raise ModelStoreError(f"bad model key {key!r}: letters, digits, '.', '_' and '-' only")
    return key


class ModelStore(Protocol):
    def put_version(self, src: Path, key: str | None = None) -> str:
        """Publish the version directory ``src`` (model.onnx + card.json + extras); returns its key
        (the card's version unless given). Idempotent: an existing key is left as it is."""

    def fetch(self, key: str) -> Path:
        """A local directory holding the version ``key`` (downloaded first by remote stores)."""

    def exists(self, key: str) -> bool:
        """Whether ``key`` names a complete version."""


class LocalModelStore:
    """A directory (a shared volume in a deployment): version ``key`` is ``<root>/<key>/``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalModelStore({str(self.root)!r})"

    def _dir(self, key: str) -> Path:
        return self.root / check_key(key)

    def exists(self, key: str) -> bool:
        try:
            d = self._dir(key)
        except ModelStoreError:
            return False
        if not (d / CARD_FILENAME).is_file():
            return False
        return (d / ModelCard.load(d).onnx_file).is_file()

    def fetch(self, key: str) -> Path:
        d = self._dir(key)
        if not self.exists(key):
            raise ModelStoreError(f"model {key!r} is not in the store at {self.root}")
        return d

    def put_version(self, src: Path, key: str | None = None) -> str:
        src = Path(src).resolve()
        card = ModelCard.load(src)
        if not (src / card.onnx_file).is_file():
            raise ModelStoreError(f"{src} has no {card.onnx_file}")
        key = check_key(key or card.version)
        dest = self._dir(key)
        if dest.resolve() == src or self.exists(key):
            return key  # already there (trained in place, or published before)
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".tmp-{key}-"))
        try:
            shutil.copytree(src, tmp, dirs_exist_ok=True)
            os.rename(tmp, dest)  # atomic on one file system; fails if another writer won
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.exists(key):
                raise
        log.info("published model %s to %s", key, dest)
        return key


def open_model_store(location: str | Path) -> ModelStore:
    """The store named by the ``MODEL_STORE`` setting: a directory or ``file://`` URL for now; an
    object store (``s3://...``) plugs in here with a class of its own."""
    text = str(location)
    if text.startswith("file://"):
        return LocalModelStore(text[len("file://"):])
    if "://" in text:
        raise ModelStoreError(f"model store {text!r}: only directories (or file://) are supported")
    return LocalModelStore(text)
