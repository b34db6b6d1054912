"""A member's trainable part started from a served version's weights: what makes ``quick`` online
learning rather than a fit from ImageNet.

Why from the ONNX graph: it is the one thing every version has (bundled ones included; nothing
else of a version is kept), and it holds exactly the network that serves. Its export folded each
BatchNorm into the convolution before it (``onnx::Conv_*`` initializers: the scaled weight and a
bias), so the back is loaded *folded*: each convolution of the back gets the graph's weight and
bias and its BatchNorm becomes the identity. The result computes what the graph computes (checked
by ``tests/trainer/test_warm_start.py``), and fine-tuning it is fine-tuning with frozen
normalisation statistics — the usual way to continue a trained network on few, small batches.
The front is the same ImageNet front in every version and is not read. A head is loaded only when
the version's classes are the job's (a taxonomy change keeps the back and starts a new head).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from services.trainer.model.net import GarmentNet

__all__ = ["warm_start", "fold_back_batchnorm", "WarmStartError"]

log = logging.getLogger(__name__)

# the BatchNorm after each convolution of an MBConv block / of the back's head conv
_BN_AFTER = {"_expand_conv": "_bn0", "_depthwise_conv": "_bn1", "_project_conv": "_bn2", "conv_head": "bn1"}


class WarmStartError(ValueError):
    """The graph does not hold this member's back (another architecture, split or member count)."""


def _convs(back: nn.Module) -> dict[str, nn.Conv2d]:
    """The back's convolutions that carry a BatchNorm, by their path inside ``back``."""
    return {name: module for name, module in back.named_modules()
            if isinstance(module, nn.Conv2d) and name.rsplit(".", 1)[-1] in _BN_AFTER}


def fold_back_batchnorm(net: GarmentNet) -> None:
    """Fold every BatchNorm of ``net.back`` into its convolution (eval statistics) and make it the
    identity: the network computes the same in eval mode, and fine-tuning it keeps the statistics
    frozen. The shape warm-started networks have; their export is the same graph as ever."""
    for path, conv in _convs(net.back).items():
        parent_path, name = path.rsplit(".", 1) if "." in path else ("", path)
        parent = net.back.get_submodule(parent_path) if parent_path else net.back
        bn = getattr(parent, _BN_AFTER[name])
        if isinstance(bn, nn.Identity):
            continue
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        bias = bn.bias.detach() - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias.detach() * scale
        conv.weight = nn.Parameter(conv.weight.detach() * scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter(bias.clone())
        setattr(parent, _BN_AFTER[name], nn.Identity())


def _back_prefix(member: int | None) -> str:
    """Where a member's back sits in an exported graph's node names."""
    return f"/net/members.{member}/back/" if member is not None else "/net/back/"


@functools.lru_cache(maxsize=4)
def _member_weights(onnx_path: str, stamp: tuple[int, int], member: int | None) -> tuple[dict, tuple | None]:
    """(back convolutions' (weight, bias) by path, the head's (weight, bias) or None) of one member
    of the graph: read once per member and job, not once per fold (a served pair's graph is 33 MB).
    ``stamp`` (size, mtime) keys the file's content."""
    graph = onnx.load(onnx_path).graph
    initializers = {i.name: i for i in graph.initializer}
    prefix = _back_prefix(member)
    weights: dict[str, tuple[np.ndarray, ...]] = {}
    for node in graph.node:  # the mirrored pass of a TTA graph reuses the same initializers
        if node.op_type == "Conv" and node.name.startswith(prefix) and len(node.input) == 3:
            path = node.name[len(prefix):].rsplit("/", 1)[0].replace("/", ".")
            if node.input[1] in initializers:
                weights.setdefault(path, tuple(numpy_helper.to_array(initializers[n]) for n in node.input[1:]))
    head = f"net.members.{member}.fc." if member is not None else "net.fc."
    fc = (tuple(numpy_helper.to_array(initializers[f"{head}{n}"]) for n in ("weight", "bias"))
          if f"{head}weight" in initializers else None)
    return weights, fc


def warm_start(net: GarmentNet, onnx_path: Path, member: int | None, classes_match: bool = True) -> int:
    """Load member ``member`` of the graph at ``onnx_path`` (None: a one-network version) into
    ``net``'s back (folded, :func:`fold_back_batchnorm`) and, when ``classes_match``, its head.
    Returns how many tensors were loaded; raises :class:`WarmStartError` when the graph's back is not
    this network's (different architecture, split or member)."""
    stat = Path(onnx_path).stat()
    graph_weights, fc = _member_weights(str(onnx_path), (stat.st_size, stat.st_mtime_ns), member)
    convs = _convs(net.back)
    weights = {path: w for path, w in graph_weights.items() if path in convs}
    if set(weights) != set(convs):
        raise WarmStartError(f"{onnx_path} holds {len(weights)} of this network's {len(convs)} back convolutions "
                             f"under {_back_prefix(member)!r}: not the same architecture, split or member, "
                             "or not a float graph")
    fold_back_batchnorm(net)
    convs = _convs(net.back)
    with torch.no_grad():
        for path, conv in convs.items():
            weight, bias = weights[path]
            if tuple(weight.shape) != tuple(conv.weight.shape):
                raise WarmStartError(f"{path}: the graph's weight is {weight.shape}, this network's "
                                     f"{tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(np.array(weight)))
            conv.bias.copy_(torch.from_numpy(np.array(bias)))
    loaded = 2 * len(convs)
    if classes_match and fc is not None and tuple(fc[0].shape) == tuple(net.fc.weight.shape):
        with torch.no_grad():
            net.fc.weight.copy_(torch.from_numpy(np.array(fc[0])))
            net.fc.bias.copy_(torch.from_numpy(np.array(fc[1])))
        loaded += 2
    log.info("warm start: %d tensors of %s member %s", loaded, Path(onnx_path).parent.name, member)
    return loaded
