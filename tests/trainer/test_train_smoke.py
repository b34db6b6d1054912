"""A few real training steps on tiny generated data, then the exported model is checked the way
the real one is: ONNX parity with PyTorch, a model card, and the evaluation JSON's fields."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from services.trainer.evaluate import evaluate
from services.trainer.recipe import Recipe
from services.trainer.train import train
from shared.model_card import ModelCard, sha256_file

pytestmark = pytest.mark.slow

TINY = Recipe(input_size=64, resize_size=72, views=2, epochs=2, batch_size=16, threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tests.trainer.conftest import write_dataset
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    labels = [taxonomy.nodes[leaf].labels[0] for leaf in taxonomy.leaves]
    root = tmp_path_factory.mktemp("tiny")
    data = write_dataset(root / "data", labels, per_label=5, senders=17)
    result = train(data, root / "models", taxonomy, TINY, version="tiny-1")
    return data, result


def test_training_writes_a_complete_model_version(trained):
    _, result = trained
    card = ModelCard.load(result.model_dir)
    assert card.version == "tiny-1" and len(card.classes) == 17
    assert card.preprocess.input_size == 64 and card.recipe["views"] == 2
    assert card.temperature > 0
    assert card.calibration["lam"]["crc"] and card.calibration["lam"]["darts"]
    assert card.hashes["model.onnx"] == sha256_file(result.model_dir / "model.onnx")
    assert card.metrics["history"][-1]["epoch"] == 2 and len(card.metrics["history"]) >= 2
    assert (result.model_dir / "training_curves.png").stat().st_size > 1000
    assert (result.model_dir / "split.json").is_file()


def test_onnx_export_is_checked_and_matches_pytorch(trained):
    _, result = trained
    model = onnx.load(str(result.model_dir / "model.onnx"))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param, "batch axis must be dynamic"
    card = ModelCard.load(result.model_dir)
    assert card.metrics["onnx_parity_photos"] > 0
    assert card.metrics["onnx_parity_max_abs_diff"] <= 1e-4


def test_evaluation_json_has_the_promised_fields(trained, tmp_path):
    data, result = trained
    summary = evaluate(data, result.model_dir, tmp_path / "eval.json", rotation=True)
    on_disk = json.loads((tmp_path / "eval.json").read_text())
    for key in ("n", "top1", "top3", "top1_top10", "top1_10way", "per_class", "ece", "rotation", "hedged"):
        assert key in on_disk, key
    assert on_disk["n"] == 17 * 5
    assert set(on_disk["rotation"]) == {"-90", "-60", "-30", "0", "30", "60", "90"}
    assert {"crc", "darts", "darts_vs_backoff"} <= set(on_disk["hedged"])
    assert set(on_disk["hedged"]["crc"]) >= {"0.8", "0.9", "0.95", "0.98", "0.99"}
    assert 0 <= on_disk["top1"] <= on_disk["top3"] <= 1
    assert set(on_disk["per_class"]) == set(ModelCard.load(result.model_dir).classes)
    assert summary["top1"] == on_disk["top1"]
    assert (tmp_path / "eval.md").is_file() and (tmp_path / "eval_confusion.png").is_file()


def test_tiny_model_learns_something(trained, tmp_path):
    """Guards against a silently broken pipeline (labels shuffled, preprocessing mismatch):
    the coloured shapes are easy, so even two tiny epochs beat chance (1/17) clearly."""
    data, result = trained
    summary = evaluate(data, result.model_dir, tmp_path / "e.json", rotation=False)
    assert summary["top1"] > 3 / 17
    assert np.isfinite(summary["ece"])
