"""Content-addressed photo storage: each photo is stored once, under the sha256 of its bytes.

Layout: ``<root>/ab/cd/abcd...`` (two levels of fan-out keep directories small). Writes go to a
temporary file then ``os.replace``, so a reader never sees half a photo.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["PhotoStore", "PhotoMissing", "photo_key"]


class PhotoMissing(FileNotFoundError):
    """No photo is stored under this key."""


def photo_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PhotoStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        assert len(key) == 64 and all(c in "0123456789abcdef" for c in key), f"bad photo key {key!r}"
        return self.root / key[:2] / key[2:4] / key

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its key."""
        key = photo_key(data)
        path = self.path(key)
        if path.exists() and path.stat().st_size == len(data):
            try:
                os.utime(path)  # stored again: fresh for the retention sweep's grace (``delete``)
            except OSError:
                pass  # a read-only store still serves
            return key  # already stored: same hash, same size
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise PhotoMissing(f"photo {key} is not in the store") from None

    def delete(self, key: str, untouched_since: float | None = None) -> bool:
        """Remove the photo (a person took it out of their wardrobe, retention, a person's data
        deleted); returns whether a file went. With ``untouched_since`` (a Unix time), a
        photo stored (or stored again: ``put`` refreshes its time) after it stays: an upload of the
        same bytes may be on its way to a new job row the caller could not yet see."""
        path = self.path(key)
        try:
            if untouched_since is not None and path.stat().st_mtime > untouched_since:
                return False
            path.unlink()
            return True
        except FileNotFoundError:
            return False
