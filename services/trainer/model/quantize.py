"""Static INT8 quantization (QDQ) of an exported model version's ONNX graph.

Why static QDQ with per-channel weights: the served networks are EfficientNet-Lite (ReLU6, no
squeeze-excitation: made to quantize), whose depthwise convolutions need a scale per output
channel; activation ranges are fixed once from calibration photos, so a request pays no range
computation. On ONNX Runtime's CPU provider the QDQ pairs around each convolution fuse into
integer kernels (VNNI where the processor has it); its CUDA provider does not run them as int8
fast, so a GPU deployment keeps the float version.

Calibration photos go through exactly the path a served photo takes (``decode_photo`` with the
serving ``min_side``, then ``preprocess``), so the fixed ranges are the ranges serving sees.
The graph's tail (each member's classifier layer and everything after it: log-softmax, the
members' mean, the temperature, the softmax) stays float: it is a few thousand multiply-adds per
photo, and it is where 8-bit steps would show up directly in the probabilities the hedger reads.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shared.model_card import PreprocessConfig
from shared.photos import decode_photo
from shared.preprocessing import decode_min_side, preprocess

if TYPE_CHECKING:
    import onnx

    from shared.hedging.hedging import Hedger

__all__ = ["CALIBRATION_METHODS", "served_inputs", "ServedPhotoReader", "float_tail", "quantize_graph",
           "choose_calibration_photos", "agreement"]

log = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def served_input(data: bytes, cfg: PreprocessConfig) -> np.ndarray:
    """One photo's network input, decoded and preprocessed as the inference worker does it."""
    return preprocess(decode_photo(data, min_side=decode_min_side(cfg)), cfg)


def served_inputs(paths: Sequence[Path], cfg: PreprocessConfig) -> np.ndarray:
    """[N, 3, S, S] float32 for photo files, as served."""
    if not paths:
        return np.zeros((0, 3, cfg.input_size, cfg.input_size), np.float32)
    return np.stack([served_input(Path(p).read_bytes(), cfg) for p in paths])


def choose_calibration_photos(ids_and_paths: Sequence[tuple[str, Path]], count: int, seed: int = 0
                              ) -> list[tuple[str, Path]]:
    """``count`` photos in a seeded pseudo-random order (sha256 of ``seed:id``): a sample that does
    not depend on the file's row order and that the card can name by rule."""
    ordered = sorted(ids_and_paths, key=lambda item: hashlib.sha256(f"{seed}:{item[0]}".encode()).hexdigest())
    return ordered[:count]


class ServedPhotoReader:
    """onnxruntime.quantization's CalibrationDataReader over photo files, batch by batch (the
    inputs are made when asked for). ``__len__`` and ``set_range`` let ``quantize_static`` collect
    one batch at a time (its ``CalibStridedMinMax``, which despite the name serves every method):
    otherwise it keeps every activation of every calibration photo in memory before reducing
    them, gigabytes for the served pair at 260 px (an entropy calibration was killed for it)."""

    def __init__(self, paths: Sequence[Path], cfg: PreprocessConfig, input_name: str, batch: int = 8) -> None:
        self.paths, self.cfg, self.input_name, self.batch = list(paths), cfg, input_name, batch
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Batches ``start_index`` to ``end_index`` (exclusive) next."""
        self._range = (start_index, end_index)
        self._it: Iterator[dict[str, np.ndarray]] = self._batches(start_index, end_index)

    def _batches(self, first: int, end: int) -> Iterator[dict[str, np.ndarray]]:
        for b in range(first, min(end, len(self))):
            start = b * self.batch
            yield {self.input_name: served_inputs(self.paths[start:start + self.batch], self.cfg)}

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self.set_range(*self._range)


def float_tail(model: onnx.ModelProto) -> list[str]:
    """Names of the classifier ``Gemm`` nodes and every node downstream of them (the float part:
    see the module docstring). By data flow, not node order: an ensemble's members interleave."""
    produced_by_tail: set[str] = set()
    names = []
    for node in model.graph.node:  # ONNX nodes are topologically sorted
        if node.op_type == "Gemm" or any(i in produced_by_tail for i in node.input):
            names.append(node.name)
            produced_by_tail.update(node.output)
    return names


def quantize_graph(src: Path, dst: Path, reader: ServedPhotoReader, method: str = "minmax",
                   keep_tail_float: bool = True, percentile: float = 99.999) -> dict:
    """``src`` (float ONNX) → ``dst`` (QDQ INT8: int8 per-channel weights, uint8 activations).

    Runs ONNX Runtime's ``quant_pre_process`` first (shape inference and graph optimisation, which
    folds the export's padding arithmetic into constants so it is not quantized), then
    ``quantize_static``. Returns what the card records about how it was made."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method {method!r}: one of {', '.join(CALIBRATION_METHODS)}")
    calibrate_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                        "percentile": CalibrationMethod.Percentile}[method]
    with tempfile.TemporaryDirectory() as tmp:
        prepped = Path(tmp) / "prepped.onnx"
        quant_pre_process(str(src), str(prepped), skip_symbolic_shape=False)
        model = onnx.load(str(prepped))
        exclude = float_tail(model) if keep_tail_float else []
        extra: dict = {"CalibStridedMinMax": 1}  # one batch at a time: see ServedPhotoReader
        if method == "percentile":
            extra["CalibPercentile"] = percentile
        quantize_static(str(prepped), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        nodes_to_exclude=exclude, calibrate_method=calibrate_method,
                        extra_options=extra)
    onnx.checker.check_model(onnx.load(str(dst)))
    # reduce_range: weights in 7 bits. Without VNNI (AVX2, AVX-512 before Cascade Lake) ONNX Runtime's
    # uint8 × int8 dot products add pairs in 16 bits and saturate: measured on an AVX2 machine, a tiny
    # model's probabilities moved by 0.34 with 8-bit weights (tests/trainer/pipelines/test_quantize.py)
    return {"format": "QDQ", "weights": "int8 in a 7-bit range (reduce_range), per channel",
            "activations": "uint8, per tensor",
            "calibration_method": method, **({"percentile": percentile} if method == "percentile" else {}),
            "float_nodes": exclude, "pre_process": "onnxruntime.quantization.quant_pre_process"}


def agreement(reference: np.ndarray, candidate: np.ndarray, hedger: Hedger | None = None,
              targets: Sequence[float] = (0.8, 0.9, 0.95, 0.99)) -> dict:
    """How close ``candidate``'s probabilities stay to ``reference``'s on the same photos: the
    parity check of a quantized graph (it cannot match float to 1e-6, so the card records these).

    top-1 agreement bounds the accuracy change on any labels (|Δtop-1| ≤ 1 − agreement); with a
    ``hedger`` (the version's, ``shared.hedging.Hedger``) also the share of photos whose hedged
    answer is the same node at each accuracy target."""
    n = len(reference)
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    out = {"photos": int(n),
           "top1_agreement": float((candidate.argmax(1) == reference.argmax(1)).mean()) if n else 1.0,
           "mean_abs_dp": float(diff.mean()) if n else 0.0, "max_abs_dp": float(diff.max()) if n else 0.0}
    if hedger is not None and n:
        out["hedged_agreement"] = {
            str(t): float((hedger.choose_batch(candidate, t) == hedger.choose_batch(reference, t)).mean())
            for t in targets}
    return out
