"""The model contract: one export, one session opener, the names recorded in the card."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from shared.model_card import ModelCard
from services.trainer.model.onnx_export import export_onnx
from shared.model_contract import INPUT_NAME, OUTPUT_NAME, load_model, open_session


def test_load_model_runs_a_dynamic_batch_on_cpu(model_dir):
    model = load_model(model_dir / "tiny-1", prefer_gpu=False)
    assert model.provider == "CPUExecutionProvider"
    probs = model.run(np.zeros((3, 3, 32, 32), dtype=np.float32))
    assert probs.shape == (3, len(model.classes))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_the_card_records_the_tensor_names_the_file_has(model_dir):
    card = ModelCard.load(model_dir / "tiny-1")
    graph = onnx.load(str(model_dir / "tiny-1" / card.onnx_file)).graph
    assert [i.name for i in graph.input] == [card.onnx_input] == [INPUT_NAME]
    assert [o.name for o in graph.output] == [card.onnx_output] == [OUTPUT_NAME]


def test_export_has_a_dynamic_batch_axis_and_runs_in_the_opened_session(tmp_path):
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    path = export_onnx(net, tmp_path / "m.onnx", input_size=16, output_name="features")
    onnx.checker.check_model(onnx.load(str(path)))
    session = open_session(path, threads=1)
    x = np.random.default_rng(0).standard_normal((5, 3, 16, 16)).astype(np.float32)
    (got,) = session.run(["features"], {INPUT_NAME: x})
    with torch.no_grad():
        np.testing.assert_allclose(got, net(torch.from_numpy(x)).numpy(), atol=1e-5)
