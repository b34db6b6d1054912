"""Writing a torch module as an ONNX file that honours the model contract (``shared.model_contract``).

The trainer's, not shared's: serving runs ONNX files and never needs torch, so the exporter lives
with the only service that brings torch. The tensor names are the card's (``shared.model_card``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.model_card import INPUT_NAME, OUTPUT_NAME

__all__ = ["OPSET", "export_onnx"]

OPSET = 17


def export_onnx(module: Any, path: str | Path, input_size: int, output_name: str = OUTPUT_NAME,
                batch: int = 1) -> Path:
    """Export a torch module taking ``[N, 3, S, S]`` with the contract's names and a dynamic batch
    axis (TorchScript exporter, opset 17). Checking it (``onnx.checker``, parity with PyTorch) is
    the caller's: the trainer's export does both."""
    import torch

    path = Path(path)
    dummy = torch.zeros(batch, 3, input_size, input_size)
    torch.onnx.export(module, (dummy,), str(path), input_names=[INPUT_NAME], output_names=[output_name],
                      dynamic_axes={INPUT_NAME: {0: "batch"}, output_name: {0: "batch"}},
                      opset_version=OPSET, dynamo=False)
    return path
