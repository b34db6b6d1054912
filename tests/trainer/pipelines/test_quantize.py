"""``wardrobe quantize``: a float version → a new INT8 (QDQ) version, on a tiny model and tiny data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from services.cli import main as cli_main
from services.trainer.data.dataset import load_dataset
from services.trainer.errors import RefitError
from services.trainer.model.quantize import agreement, choose_calibration_photos, float_tail, served_inputs
from services.trainer.pipelines.quantize import calibration_ids, quantize_version
from shared.model_card import ModelCard, sha256_file
from shared.model_contract import load_model
from tests.factories import make_tiny_model
from tests.trainer.conftest import class_labels, write_dataset


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return make_tiny_model(tmp_path / "float", "tiny-float", input_size=32, seed=3)


@pytest.fixture
def data(tmp_path: Path, taxonomy) -> Path:  # noqa: ANN001
    return write_dataset(tmp_path / "data", class_labels(taxonomy), per_label=3, senders=9)


def _probs(model_dir: Path, x: np.ndarray) -> np.ndarray:
    return load_model(model_dir, prefer_gpu=False, intra_op_threads=1).run(x)


def test_quantize_writes_a_new_int8_version_that_records_how_and_how_close(source, data, tmp_path, taxonomy):
    out = quantize_version(source, data, tmp_path / "models", photos=20, check_photos=16, method="minmax",
                           min_top1_agreement=0.0, threads=1)
    assert out.model_dir == tmp_path / "models" / "tiny-float-int8"
    card, float_card = ModelCard.load(out.model_dir), ModelCard.load(source)
    q = card.quantization
    assert q is not None and q.source_version == "tiny-float" and q.source_onnx_sha256 == sha256_file(source / "model.onnx")
    assert (q.calibration_method, q.calibration_photos, q.format) == ("minmax", 20, "QDQ")
    assert "sha256('0:<image id>')" in q.calibration_selection
    # the same network: classes, temperature and the hedger's tables are the float version's
    assert (card.classes, card.temperature, card.calibration) == (float_card.classes, float_card.temperature,
                                                                  float_card.calibration)
    assert card.hashes == {"model.onnx": sha256_file(out.model_dir / "model.onnx")} != float_card.hashes
    graph = onnx.load(str(out.model_dir / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer), "int8 weights"
    assert set(q.float_nodes) == set(float_tail(onnx.load(str(source / "model.onnx")))) and q.float_nodes

    # the recorded agreement is what the two graphs give on the check photos (those after the calibration's)
    samples = load_dataset(data, taxonomy, verify_images=False).samples
    ordered = choose_calibration_photos([(s.image_id, s.path) for s in samples], 36)
    assert calibration_ids(card, source, samples) == {i for i, _ in ordered[:20]}
    x = served_inputs([p for _, p in ordered[20:]], card.preprocess)
    a, b = _probs(source, x), _probs(out.model_dir, x)
    measured = agreement(a, b)
    assert q.agreement["photos"] == 16 == card.metrics["onnx_parity_photos"]
    assert q.agreement["top1_agreement"] == pytest.approx(measured["top1_agreement"])
    assert card.metrics["onnx_parity_max_abs_diff"] == pytest.approx(measured["max_abs_dp"], abs=1e-6)
    assert set(q.agreement["hedged_agreement"]) == {"0.8", "0.9", "0.95", "0.99"}
    # INT8, not float: it differs, but stays close
    assert 0 < measured["max_abs_dp"] < 0.2 and measured["top1_agreement"] >= 0.8
    assert card.metrics["ort_cpu_latency_ms_batch1"] > 0


def test_a_version_that_drifts_too_far_is_refused_and_not_left_behind(source, data, tmp_path):
    with pytest.raises(RefitError, match="agrees with float"):
        quantize_version(source, data, tmp_path / "models", photos=10, check_photos=8, min_top1_agreement=1.01,
                         threads=1)
    assert not (tmp_path / "models" / "tiny-float-int8").exists()


def test_a_quantized_version_is_not_quantized_again(source, data, tmp_path):
    out = quantize_version(source, data, tmp_path / "models", photos=10, check_photos=4, min_top1_agreement=0.0,
                           threads=1)
    with pytest.raises(RefitError, match="already quantized"):
        quantize_version(out.model_dir, data, tmp_path / "models", photos=10, check_photos=4, threads=1)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_the_other_calibration_methods_make_a_version(source, data, tmp_path, method):
    out = quantize_version(source, data, tmp_path / "models", photos=12, check_photos=8, method=method,
                           min_top1_agreement=0.0, threads=1)
    assert out.card.quantization.calibration_method == method  # type: ignore[union-attr]
    x = served_inputs([data / "images" / "img-00-000.jpg"], out.card.preprocess)
    assert np.allclose(_probs(out.model_dir, x).sum(1), 1, atol=1e-4)


def test_the_command(source, data, tmp_path, capsys):
    code = cli_main(["quantize", str(source), "--data", str(data), "--out", str(tmp_path / "m"),
                     "--version", "q1", "--photos", "12", "--check-photos", "6", "--min-agreement", "0"])
    assert code == 0
    assert "model q1 written to" in capsys.readouterr().out
    assert ModelCard.load(tmp_path / "m" / "q1").quantization.calibration_photos == 12  # type: ignore[union-attr]
    with pytest.raises(SystemExit, match="exists already"):
        cli_main(["quantize", str(source), "--data", str(data), "--out", str(tmp_path / "m"), "--version", "q1",
                  "--photos", "12", "--check-photos", "6"])
