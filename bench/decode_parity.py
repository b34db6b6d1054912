"""Does serving-size decoding change what the network sees? Every photo of the dataset goes
through ``preprocess`` twice: decoded at full size (how training reads it) and decoded as serving
does (``min_side=decode_min_side(card)``, JPEG draft / band-wise reduce). Prints how many network
inputs differ and by how much, so "the committed model's evaluation does not move" is a measurement.

    .venv/bin/python bench/decode_parity.py --data ../shared/data/clothing --model models/2026-11-27-lite0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.model_card import ModelCard  # noqa: E402
from shared.photos import decode_photo  # noqa: E402
from shared.preprocessing import decode_min_side, preprocess  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--model", type=Path, default=Path("models/2026-11-27-lite0"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos (0: all)")
    args = ap.parse_args()
    cfg = ModelCard.load(args.model).preprocess
    paths = sorted(p for p in (args.data / "images").rglob("*") if p.is_file())[: args.limit or None]
    differ, worst = 0, 0.0
    for path in paths:
        data = path.read_bytes()
        try:
            full = preprocess(decode_photo(data), cfg)
        except ValueError:
            continue
        served = preprocess(decode_photo(data, min_side=decode_min_side(cfg)), cfg)
        d = float(np.abs(full - served).max())
        differ += d > 0
        worst = max(worst, d)
    print(f"{len(paths)} photos: {differ} network inputs differ between full-size and serving-size decoding "
          f"(largest difference {worst:.4g} in normalised units)")


if __name__ == "__main__":
    main()
