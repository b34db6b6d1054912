"""A few real training steps on tiny generated data, then the exported model is checked the way
the real one is: ONNX parity with PyTorch, a model card, and the evaluation JSON's fields."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from services.trainer.evaluation.evaluate import evaluate
from shared.recipe import Recipe
from services.trainer.pipelines.train import train
from shared.model_card import ModelCard, sha256_file

pytestmark = pytest.mark.slow

TINY = Recipe(input_size=64, resize_size=72, views=4, epochs=4, batch_size=16, threads=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tests.trainer.conftest import every_class_dataset
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    root = tmp_path_factory.mktemp("tiny")
    data = every_class_dataset(root, taxonomy)
    result = train(data, root / "models", taxonomy, TINY, version="tiny-1")
    return data, result


def test_training_writes_a_complete_model_version(trained):
    _, result = trained
    card = ModelCard.load(result.model_dir)
    assert card.version == "tiny-1" and len(card.classes) == 17
    assert card.preprocess.input_size == 64 and card.recipe["views"] == TINY.views
    assert card.temperature > 0
    assert card.calibration is not None and card.calibration.lam["crc"] and card.calibration.lam["darts"]
    assert card.hashes["model.onnx"] == sha256_file(result.model_dir / "model.onnx")
    assert card.metrics["history"][-1]["epoch"] == TINY.epochs and len(card.metrics["history"]) >= 2
    assert (result.model_dir / "training_curves.png").stat().st_size > 1000
    assert (result.model_dir / "split.json").is_file()


def test_onnx_export_is_checked_and_matches_pytorch(trained):
    _, result = trained
    model = onnx.load(str(result.model_dir / "model.onnx"))
    onnx.checker.check_model(model)
    assert model.opset_import[0].version >= 17
    card = ModelCard.load(result.model_dir)
    assert [i.name for i in model.graph.input] == [card.onnx_input] == ["images"]  # the card records the names
    assert [o.name for o in model.graph.output] == [card.onnx_output] == ["probabilities"]
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param, "batch axis must be dynamic"
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
    assert {"bootstrap", "calibrated_world"} <= set(on_disk["hedged"]["darts_vs_backoff"])
    report = (tmp_path / "eval.md").read_text()
    assert "### DARTS vs back-off at equal realised accuracy" in report
    assert (tmp_path / "hedging_darts_vs_backoff.png").is_file()


def test_tiny_model_learns_something(trained, tmp_path):
    """Guards against a silently broken pipeline (labels shuffled, preprocessing mismatch):
    the coloured shapes are easy, so even two tiny epochs beat chance (1/17) clearly."""
    data, result = trained
    summary = evaluate(data, result.model_dir, tmp_path / "e.json", rotation=False)
    assert summary["top1"] > 3 / 17
    assert np.isfinite(summary["ece"])


@pytest.fixture(scope="module")
def trained_end_to_end(tmp_path_factory):
    """The GPU recipe's code path (whole network, fresh views each epoch, worker processes), on
    the CPU and tiny data."""
    from tests.trainer.conftest import class_labels, write_dataset
    from shared.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    labels = class_labels(taxonomy)
    root = tmp_path_factory.mktemp("tiny-full")
    data = write_dataset(root / "data", labels, per_label=5, senders=17)
    recipe = Recipe.from_overrides({"input_size": 64, "resize_size": 72, "epochs": 8, "batch_size": 16,
                                    "threads": 1, "workers": 2, "device": "cpu",
                                    "label_smoothing_scope": "siblings"}, preset="gpu")
    return data, train(data, root / "models", taxonomy, recipe, version="tiny-full")


def test_end_to_end_recipe_trains_the_front_and_exports_a_checked_model(trained_end_to_end, tmp_path):
    data, result = trained_end_to_end
    card = ModelCard.load(result.model_dir)
    assert card.recipe["fine_tune"] == "full" and card.metrics["train_device"] == "cpu"
    assert card.recipe["label_smoothing_scope"] == "siblings"  # the sibling-scoped loss, in a real run
    assert card.metrics["onnx_parity_max_abs_diff"] <= 1e-4
    assert card.metrics["history"][-1]["epoch"] == 8
    # the front moved: its first convolution is no longer the ImageNet one
    from services.trainer.model.net import load_pretrained
    from shared.model_contract import open_session

    stem = load_pretrained("efficientnet-lite0", 64)._conv_stem.weight.detach().numpy()
    session = open_session(result.model_dir / "model.onnx")
    initialisers = {i.name: i for i in onnx.load(str(result.model_dir / "model.onnx")).graph.initializer}
    assert session is not None and initialisers
    same_shape = [onnx.numpy_helper.to_array(t) for t in initialisers.values() if tuple(t.dims) == stem.shape]
    assert same_shape and not any(np.allclose(w, stem) for w in same_shape)
    summary = evaluate(data, result.model_dir, tmp_path / "e.json", rotation=False)
    assert summary["top1"] > 2 / 17, summary["top1"]  # twice chance; whole-network steps on 85 photos are few


def test_recipe_presets_and_device_checks():
    from services.trainer.fit.loop import resolve_device

    gpu = Recipe.from_overrides({"epochs": "5"}, preset="gpu")
    assert gpu.fine_tune == "full" and gpu.epochs == 5 and Recipe().fine_tune == "back"
    with pytest.raises(ValueError, match="preset"):
        Recipe.from_overrides({}, preset="tpu")
    with pytest.raises(ValueError, match="fine_tune"):
        Recipe(fine_tune="half")
    assert resolve_device("cpu").type == "cpu"
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            resolve_device("cuda")
