"""A random split, photo by photo, with the sizes of the sender-disjoint one (not a test).

Published results on this kind of data (e.g. about 89 % for a fine-tuned Xception on ten
classes) use random splits, where one person's photos sit on both sides. This writes such a
split so the same recipe can be measured like for like (docs/model.md):

    .venv/bin/python bench/random_split.py --split-file models/split.json --out runs/random_split.json
    .venv/bin/wardrobe train --data ../shared/data/clothing --split-file runs/random_split.json \
        --out runs --version random-split --evaluate
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split-file", type=Path, required=True, help="the sender-disjoint split to copy sizes from")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    split = json.loads(args.split_file.read_text())
    ids = sorted(i for part in split.values() for i in part)
    order = np.random.default_rng(args.seed).permutation(len(ids))
    shuffled, start, out = [ids[k] for k in order], 0, {}
    for name, part in split.items():
        out[name] = shuffled[start:start + len(part)]
        start += len(part)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=0) + "\n")
    print({name: len(part) for name, part in out.items()}, "->", args.out)


if __name__ == "__main__":
    main()
