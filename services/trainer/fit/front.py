"""Running the frozen front of the network through ONNX Runtime to cache its activations.

Eager PyTorch runs EfficientNet-Lite's depthwise convolutions several times slower than ONNX
Runtime on a CPU, and the front is frozen, so it is exported once and run in ORT.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from services.trainer.model.onnx_export import export_onnx
from shared.model_card import INPUT_NAME
from shared.model_contract import open_session

__all__ = ["OrtRunner", "TorchRunner", "run_in_batches"]


class OrtRunner:
    """An ONNX Runtime CPU session for a (frozen) torch module, via a temporary ONNX file."""

    def __init__(self, module: torch.nn.Module, input_size: int, threads: int) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="wardrobe-front-")
        path = export_onnx(module.eval(), Path(self._dir.name) / "front.onnx", input_size, output_name="out")
        self.session = open_session(path, threads)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {INPUT_NAME: batch.astype(np.float32, copy=False)})[0]


class TorchRunner:
    """The frozen front on a GPU (what ``OrtRunner`` does on the CPU)."""

    def __init__(self, module: torch.nn.Module, device: torch.device) -> None:
        self.module, self.device = module.to(device).eval(), device

    @torch.no_grad()
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.module(torch.from_numpy(np.asarray(batch, np.float32)).to(self.device)).float().cpu().numpy()


def run_in_batches(
    items: Iterable, to_array: Callable[[object], np.ndarray], runner: Callable[[np.ndarray], np.ndarray],
    batch_size: int = 64, desc: str = "", total: int | None = None, dtype=np.float16,
) -> np.ndarray:
    """Map ``to_array`` over items, run ``runner`` on stacked batches, concatenate (as ``dtype``)."""
    outputs, pending = [], []
    for item in tqdm(items, desc=desc, total=total, leave=False, mininterval=2.0):
        pending.append(to_array(item))
        if len(pending) == batch_size:
            outputs.append(runner(np.stack(pending)).astype(dtype))
            pending = []
    if pending:
        outputs.append(runner(np.stack(pending)).astype(dtype))
    return np.concatenate(outputs)
