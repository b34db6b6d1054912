"""CPU cost of progressive-JPEG scans: the scan bomb decoded without the limit, refused with it,
and the most scans allowed on the largest image allowed.

    nice -n 10 .venv/bin/python bench/scan_cost.py

Prints CPU seconds (``time.process_time``) of: decoding the 188 KB scan bomb of
``tests/hostile.py`` (6000 × 6000, 4,700 empty scans) with Pillow and no limit; refusing it
(``shared.photos.open_photo``); decoding a 6300 × 6300 progressive JPEG with ``MAX_JPEG_SCANS``
scans the way the inference worker does (``decode_photo`` at the served model's ``min_side``).
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from shared.photos import MAX_JPEG_SCANS, PhotoError, decode_photo, jpeg_scan_count, open_photo  # noqa: E402
from tests.hostile import scan_bomb  # noqa: E402


def cpu(fn) -> float:  # noqa: ANN001
    t0 = time.process_time()
    fn()
    return round(time.process_time() - t0, 3)


def main() -> None:
    bomb = scan_bomb()
    out: dict = {"bomb_bytes": len(bomb), "bomb_scans": jpeg_scan_count(bomb, stop_after=10**9)}
    out["unbounded_decode_cpu_s"] = cpu(lambda: Image.open(io.BytesIO(bomb)).load())

    def refuse() -> None:
        try:
            open_photo(bomb, min_side=224)
        except PhotoError:
            return
        raise AssertionError("the scan bomb was not refused")

    out["refusal_cpu_s"] = cpu(refuse)
    own = jpeg_scan_count(scan_bomb(64, 0))
    allowed = scan_bomb(6300, MAX_JPEG_SCANS - own)
    out["allowed_scans"], out["allowed_side"] = jpeg_scan_count(allowed), 6300
    out["allowed_decode_cpu_s"] = cpu(lambda: decode_photo(allowed, min_side=224))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
