"""Benchmark: what a cached-front recipe costs on this CPU, per architecture and split (not a test).

    .venv/bin/python bench/finetune_cost.py [--threads 2]

For each (architecture, input size, split_block): parameters of the 17-class network, the frozen
front's ONNX Runtime time per photo (what ``wardrobe cv`` pays once per cached view) and one
fine-tuning step's time per example (forward + backward + AdamW on the back and head, batch 64:
what every fold pays per cached view and pass). docs/model.md chose the shipped recipes by it.
``--folded`` adds a row per config for the back with its BatchNorm folded into the convolutions:
the shape a ``quick`` job trains when it continues a served version (``model.warm_start``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.trainer.fit.front import OrtRunner  # noqa: E402
from services.trainer.model.net import GarmentNet  # noqa: E402
from services.trainer.model.warm_start import fold_back_batchnorm  # noqa: E402

CONFIGS = [("efficientnet-lite0", 224, 16), ("efficientnet-lite0", 224, 14), ("efficientnet-lite0", 224, 12),
           ("efficientnet-lite0", 260, 16), ("efficientnet-lite0", 260, 13), ("efficientnet-lite2", 260, 21), ("efficientnet-lite2", 260, 19)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=3, help="timed fine-tuning steps per config")
    ap.add_argument("--only", nargs="*", default=[], help="configs as arch:input:split (default: all)")
    ap.add_argument("--folded", action="store_true", help="also time each back with BatchNorm folded (quick's shape)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("architecture | input | split_block | parameters | front ms/photo (ORT) | fine-tune ms/example "
          "| fine-tune CPU ms/example (this process, all threads: robust to other load with --threads 1)")
    for arch, size, split in CONFIGS:
        if args.only and f"{arch}:{size}:{split}" not in args.only:
            continue
        for folded in (False, True) if args.folded else (False,):
            _row(args, arch, size, split, folded)
    return 0


def _row(args: argparse.Namespace, arch: str, size: int, split: int, folded: bool) -> None:
    """One config's row: parameters, the front's ORT time per photo, a fine-tuning step per example."""
    net = GarmentNet(arch, 17, size, split)
    if folded:
        fold_back_batchnorm(net)
    params = sum(p.numel() for name, p in net.named_parameters() if not name.startswith("imagenet_fc"))
    runner = OrtRunner(net.front, size, args.threads)
    x = np.random.default_rng(0).random((32, 3, size, size), dtype=np.float32)
    runner(x)
    t = time.perf_counter()
    acts = runner(x)
    front_ms = (time.perf_counter() - t) * 1000 / len(x)
    net.freeze_front()
    net.back.to(memory_format=torch.channels_last)
    net.train()
    feats = torch.from_numpy(np.resize(acts, (args.batch, *acts.shape[1:]))).contiguous(memory_format=torch.channels_last)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad])

    def step() -> None:
        loss = net.forward_from_front(feats).logsumexp(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(args.steps):
        step()
    tune_ms = (time.perf_counter() - t) * 1000 / (args.steps * args.batch)
    cpu_ms = (time.process_time() - cpu) * 1000 / (args.steps * args.batch)
    print(f"{arch}{' (folded)' if folded else ''} | {size} | {split} | {params / 1e6:.2f} M | {front_ms:.1f} "
          f"| {tune_ms:.2f} | {cpu_ms:.2f}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
