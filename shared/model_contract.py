"""The model contract: how a model version is written as ONNX and how it is run, in one place.

A version is an ONNX file with one input, float32 ``[N, 3, S, S]`` (the shared preprocessing's
output, a dynamic batch axis), and one output, the class probabilities ``[N, C]`` in the order of
the card's ``classes``; the tensor names are recorded in the card (``onnx_input``,
``onnx_output``). ``services/trainer/model/onnx_export.py`` writes such a file (torch is the trainer's alone);
:func:`open_session` is the only place an ONNX Runtime session is opened; :func:`load_model` reads
a version directory into the :class:`LoadedModel` that serving runs, and evaluation, feature
caching and the benches run the same way, so "evaluated as served" is literally true.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shared.model_card import INPUT_NAME, OUTPUT_NAME, ModelCard

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "pick_providers", "open_session", "LoadedModel", "load_model"]

log = logging.getLogger(__name__)


def pick_providers(prefer_gpu: bool = True) -> list[str]:
    """ONNX Runtime's CUDA provider when asked for and present, the CPU one always."""
    import onnxruntime as ort

    if prefer_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path: str | Path, threads: int = 0, prefer_gpu: bool = False,
                 spinning: bool = True, cpu_arena: bool = True) -> InferenceSession:
    """An ONNX Runtime session on ``path``; ``threads`` intra-op threads (0: ONNX Runtime's choice).

    ``spinning=False``: the intra-op threads sleep between runs instead of busy-waiting for the
    next one (ONNX Runtime's default), which on a host with few cores takes CPU from everything
    else in between runs (see InferenceSettings.ort_allow_spinning).
    ``cpu_arena=False``: activations are allocated per run and freed after it instead of kept in
    ONNX Runtime's CPU arena, which grows to the largest mix of batch sizes it has seen and never
    shrinks (see InferenceSettings.ort_cpu_mem_arena)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_cpu_mem_arena = cpu_arena
    if threads:
        opts.intra_op_num_threads = threads
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=pick_providers(prefer_gpu))


@dataclass(eq=False)  # identity equality: the batcher groups requests by model object
class LoadedModel:
    version: str
    card: ModelCard
    session: InferenceSession
    provider: str

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    def run(self, images: np.ndarray) -> np.ndarray:
        """[N, 3, S, S] float32 → [N, len(classes)] probabilities."""
        (probs,) = self.session.run([self.card.onnx_output], {self.card.onnx_input: images})
        assert probs.shape == (images.shape[0], len(self.classes)), (
            f"model {self.version} returned {probs.shape}, expected ({images.shape[0]}, {len(self.classes)})"
        )
        return probs


def load_model(path: str | Path, prefer_gpu: bool = True, intra_op_threads: int = 0,
               spinning: bool = True, cpu_arena: bool = True) -> LoadedModel:
    """The model version in directory ``path`` (its card and ONNX file), ready to run."""
    path = Path(path)
    card = ModelCard.load(path)
    # an INT8 (QDQ) version is for the CPU provider: ONNX Runtime's CUDA provider does not run its
    # convolutions as int8 kernels, so there it would be slower than the float version it came from
    prefer_gpu = prefer_gpu and card.quantization is None
    session = open_session(path / card.onnx_file, intra_op_threads, prefer_gpu, spinning, cpu_arena)
    provider = session.get_providers()[0]
    log.info("loaded model %s from %s on %s", card.version, path, provider)
    return LoadedModel(card.version, card, session, provider)
