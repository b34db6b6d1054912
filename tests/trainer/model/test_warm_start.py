"""A network started from a served version's ONNX graph computes what that version computes: the
back loaded with BatchNorm folded, the head when the classes are the same; a graph of another
network is refused rather than half loaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from services.trainer.model.export import export_model
from services.trainer.model.net import GarmentNet
from services.trainer.model.warm_start import WarmStartError, fold_back_batchnorm, warm_start
from services.trainer.pipelines.ensemble import Ensemble
from shared.model_card import PreprocessConfig

SIZE = 64
CFG = PreprocessConfig(input_size=SIZE, resize_size=72)


def _trained_like(split: int, seed: int) -> GarmentNet:
    """A network whose back and head are far from ImageNet's and whose BatchNorm statistics are not
    the identity: what a trained member looks like to the export."""
    torch.manual_seed(seed)
    net = GarmentNet("efficientnet-lite0", 5, SIZE, split)
    with torch.no_grad():
        for module in net.back.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        net.fc.weight.normal_(0, 0.3)
    return net.eval()


def _photos() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)) for _ in range(3)]


def _logits(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(x)


def test_folding_batchnorm_keeps_what_the_back_computes():
    net = _trained_like(14, 0)
    x = torch.randn(2, 3, SIZE, SIZE)
    before = _logits(net, x)
    fold_back_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.back.modules())
    torch.testing.assert_close(_logits(net, x), before, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("tta", [False, True])
def test_a_one_network_version_is_continued_exactly(tmp_path, tta):
    served = _trained_like(14, 1)
    export_model(served, 1.0, CFG, tmp_path, _photos(), threads=1, tta=tta)
    fresh = GarmentNet("efficientnet-lite0", 5, SIZE, 14)
    x = torch.randn(2, 3, SIZE, SIZE)
    assert not torch.allclose(_logits(fresh, x), _logits(served, x), atol=1e-2)
    assert warm_start(fresh, tmp_path / "model.onnx", None) == 2 * 7 + 2  # 2 blocks × 3 convs + head conv, fc
    torch.testing.assert_close(_logits(fresh, x), _logits(served, x), rtol=1e-4, atol=1e-4)


def test_each_member_of_a_pair_gets_its_own_weights_and_a_new_taxonomy_keeps_a_fresh_head(tmp_path):
    members = [_trained_like(14, 2), _trained_like(15, 3)]
    export_model(Ensemble(members), 1.0, CFG, tmp_path, _photos(), threads=1)
    x = torch.randn(2, 3, SIZE, SIZE)
    for i, (split, served) in enumerate(zip((14, 15), members)):
        fresh = GarmentNet("efficientnet-lite0", 5, SIZE, split)
        warm_start(fresh, tmp_path / "model.onnx", i)
        torch.testing.assert_close(_logits(fresh, x), _logits(served, x), rtol=1e-4, atol=1e-4)
    head = GarmentNet("efficientnet-lite0", 5, SIZE, 14)
    initial = head.fc.weight.detach().clone()
    warm_start(head, tmp_path / "model.onnx", 0, classes_match=False)
    assert torch.equal(head.fc.weight, initial), "another taxonomy's head is not loaded"
    with torch.no_grad():
        features = [net.eval().forward_features(x) for net in (head, members[0])]
    torch.testing.assert_close(*features, rtol=1e-4, atol=1e-4)


def test_a_graph_of_another_network_is_refused(tmp_path):
    export_model(_trained_like(14, 4), 1.0, CFG, tmp_path, _photos(), threads=1)
    with pytest.raises(WarmStartError, match="back convolutions"):
        warm_start(GarmentNet("efficientnet-lite0", 5, SIZE, 13), tmp_path / "model.onnx", None)  # another split
    with pytest.raises(WarmStartError, match="back convolutions"):
        warm_start(GarmentNet("efficientnet-lite0", 5, SIZE, 14), tmp_path / "model.onnx", 1)  # no such member
