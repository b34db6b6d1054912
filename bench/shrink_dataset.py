"""A smaller copy of some splits of the dataset (shorter side and WebP quality chosen), in the
same layout (`images.csv` + `images/<id>.jpg`; the files hold WebP, which the decoder sniffs).

Two uses: carrying the training photos to a lent GPU whose transfer limit is 64 MiB (train +
val + cal at 256 px, WebP 70, is 38 MB), and measuring what that compression alone does to a
model (evaluate on a shrunk test split; docs/model.md, "Runs on a GPU"):

    .venv/bin/python bench/shrink_dataset.py --data ../shared/data/clothing --split-file models/split.json \
        --splits test --side 256 --quality 70 --out runs/test-webp256
"""

from __future__ import annotations

import argparse
import csv
import json
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from PIL import Image, ImageOps
from tqdm import tqdm


def shrink(image_id: str, src: Path, dst: Path, side: int, quality: int) -> int:
    img = ImageOps.exif_transpose(Image.open(src / "images" / f"{image_id}.jpg")).convert("RGB")
    scale = side / min(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    out = dst / "images" / f"{image_id}.jpg"
    img.save(out, "WEBP", quality=quality)
    return out.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--split-file", type=Path, required=True)
    ap.add_argument("--splits", default="train,val,cal", help="comma-separated splits to keep")
    ap.add_argument("--side", type=int, default=256, help="shorter side in pixels (never enlarged)")
    ap.add_argument("--quality", type=int, default=70, help="WebP quality")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()

    split = json.loads(args.split_file.read_text())
    keep = {i for name in args.splits.split(",") for i in split[name]}
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    with (args.data / "images.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0]] + [r for r in rows[1:] if r[0] in keep]
    with (args.out / "images.csv").open("w", newline="") as f:
        csv.writer(f).writerows(kept)
    job = partial(shrink, src=args.data, dst=args.out, side=args.side, quality=args.quality)
    with ProcessPoolExecutor(args.workers) as pool:
        sizes = list(tqdm(pool.map(job, [r[0] for r in kept[1:]], chunksize=32), total=len(kept) - 1, desc="shrink"))
    print(f"{len(sizes)} photos, {sum(sizes) / 2**20:.1f} MiB in {args.out}")


if __name__ == "__main__":
    main()
