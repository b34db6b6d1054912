"""A float version against INT8 copies of it on a few photos, on whatever CPU this process sees (not a test).

ONNX Runtime picks its int8 kernels by the CPU's features, and without VNNI its uint8 × int8
products can saturate. To see an INT8 copy as a CPU without VNNI runs it, run this under an
emulated one (Debian's ``qemu-user``; about 140 s for 16 photos and the pair with two copies):

    .venv/bin/python bench/int8_cpu_probe.py 16 models/<float> models/<float>-int8 DIR/<other int8>
    qemu-x86_64 -cpu Haswell-v1 .venv/bin/python bench/int8_cpu_probe.py 16 models/<float> ...

Prints, per INT8 copy, top-1 agreement with the float version and the mean and max |Δp|
(docs/model.md, "CPUs without VNNI"). The photos are every n-th labelled photo of ``--data``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from services.trainer.data.dataset import load_dataset
from services.trainer.model.quantize import served_inputs
from shared.model_card import card_taxonomy
from shared.model_contract import load_model
from shared.taxonomy import load_taxonomy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", type=int, help="how many labelled photos")
    ap.add_argument("float_dir", type=Path)
    ap.add_argument("int8_dirs", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, default=Path("../shared/data/clothing"))
    args = ap.parse_args()

    models = [load_model(d, prefer_gpu=False, intra_op_threads=1) for d in [args.float_dir, *args.int8_dirs]]
    taxonomy = card_taxonomy(models[0].card, load_taxonomy())
    labelled = [s for s in load_dataset(args.data, taxonomy, verify_images=False).samples if s.leaf is not None]
    photos = labelled[::max(1, len(labelled) // args.photos)][:args.photos]
    x = served_inputs([s.path for s in photos], models[0].card.preprocess)
    started = time.perf_counter()
    reference, *copies = [m.run(x) for m in models]
    print(f"{len(photos)} photos, {len(models)} models in {time.perf_counter() - started:.1f} s")
    for d, p in zip(args.int8_dirs, copies):
        dp = np.abs(p - reference)
        print(f"{d}: top-1 agreement {(p.argmax(1) == reference.argmax(1)).mean():.4f}, "
              f"mean |dp| {dp.mean():.5f}, max |dp| {dp.max():.4f}")


if __name__ == "__main__":
    main()
