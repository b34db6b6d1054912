from __future__ import annotations

import pytest
import torch

from services.trainer.model.net import CalibratedNet, GarmentNet, build_backbone, load_pretrained


def test_pretrained_weights_load_strictly_from_the_wheel():
    model = load_pretrained("efficientnet-lite0", 224)
    assert model._fc.out_features == 1000
    # the weights are the shipped ones, not the random init
    fresh = build_backbone("efficientnet-lite0", 224)
    assert not torch.equal(model._conv_stem.weight, fresh._conv_stem.weight)


def test_a_missing_key_is_refused():
    model = build_backbone("efficientnet-lite0", 224)
    state = load_pretrained("efficientnet-lite0", 224).state_dict()
    state.pop("_fc.bias")
    with pytest.raises(RuntimeError, match="Missing key"):
        model.load_state_dict(state, strict=True)


def test_front_back_head_split_equals_whole_network():
    net = GarmentNet("efficientnet-lite0", 5, 64, split=11, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        whole = net(x)
        split = net.forward_from_front(net.front(x))
    torch.testing.assert_close(whole, split)
    net.reset_classifier(7)
    assert net(x).shape == (2, 7)


def test_calibrated_net_outputs_tempered_probabilities_with_optional_tta():
    net = GarmentNet("efficientnet-lite0", 4, 64, split=11, pretrained=False).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        p = CalibratedNet(net, temperature=2.0)(x)
        torch.testing.assert_close(p, torch.softmax(net(x) / 2.0, dim=1))
        p_tta = CalibratedNet(net, temperature=1.0, tta=True)(x)
        expected = torch.softmax(0.5 * (net(x) + net(torch.flip(x, dims=[3]))), dim=1)
        torch.testing.assert_close(p_tta, expected)
