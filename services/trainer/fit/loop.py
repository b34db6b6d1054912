"""The one fine-tuning loop every pipeline uses, and what it needs.

:class:`FineTuner` is the optimisation (AdamW with per-group learning rates, warm-up then cosine
decay, label smoothing, class weights, optional CutMix/mixup, validation points for the curves,
a checkpoint per epoch); :func:`fit_on_views` feeds it cached front activations (the CPU recipe:
``train``, ``cv``, the quick refit and the training jobs all go through it), and
``pipelines.train`` feeds it whole photos (the GPU recipe).
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time

import numpy as np
import torch
from tqdm import tqdm

from services.trainer.model.net import GarmentNet
from shared.recipe import Recipe
from shared.taxonomy import Taxonomy

__all__ = ["FineTuner", "fit_on_views", "eval_logits", "mix_batch", "resolve_device", "seed_everything",
           "sibling_smoothing_targets", "new_net", "label_targets",
           "partial_label_loss", "hits"]

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _class_weights(labels: np.ndarray, n_classes: int, power: float) -> torch.Tensor:
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** power, 0.0)
    weights = weights / (weights * counts).sum() * counts.sum()  # mean weight per sample = 1
    return torch.as_tensor(weights, dtype=torch.float32)


def sibling_smoothing_targets(taxonomy: Taxonomy, epsilon: float) -> torch.Tensor:
    """(C, C) training targets: row c keeps 1 − ε on leaf c and spreads ε uniformly over c and its
    siblings (the leaves with the same parent), as label smoothing does over all leaves; a leaf
    without siblings keeps a one-hot row. The idea: uniform smoothing teaches every photo a floor
    of probability on every class (a shirt on "shoe"), which the hedger reads as doubt about
    "body". Measured, it does worse: the floor moves onto the siblings, probabilities inside a
    group go wrong (test ECE 12 %) and DARTS falls behind back-off (docs/hedging.md), so the
    recipe keeps it off; it stays so that the run can be repeated."""
    leaves = taxonomy.leaves
    index = {leaf: i for i, leaf in enumerate(leaves)}
    targets = torch.zeros(len(leaves), len(leaves))
    for leaf in leaves:
        parent = taxonomy.nodes[leaf].parent
        group = [index[x] for x in leaves if taxonomy.nodes[x].parent == parent]
        row = index[leaf]
        if len(group) > 1:
            targets[row, group] = epsilon / len(group)
            targets[row, row] += 1.0 - epsilon
        else:
            targets[row, row] = 1.0
    return targets


def mix_batch(x: torch.Tensor, y: torch.Tensor, recipe: Recipe, rng: np.random.Generator
              ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """CutMix / mixup on a batch of cached front activations (N, C, H, W).

    Returns the mixed batch, the partner labels (None when the batch is left alone) and the
    share of the loss that goes to the original labels (for CutMix: the area kept)."""
    if recipe.mix == "none" or len(x) < 2 or rng.random() >= recipe.mix_prob:
        return x, None, 1.0
    perm = torch.from_numpy(rng.permutation(len(x)))
    share = float(rng.beta(recipe.mix_alpha, recipe.mix_alpha))
    if recipe.mix == "mixup":
        return share * x + (1 - share) * x[perm], y[perm], share
    h, w = x.shape[2], x.shape[3]
    cut_h, cut_w = int(round(h * math.sqrt(1 - share))), int(round(w * math.sqrt(1 - share)))
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + (cut_h + 1) // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + (cut_w + 1) // 2, w)
    if y1 <= y0 or x1 <= x0:
        return x, None, 1.0
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    return x, y[perm], 1.0 - (y1 - y0) * (x1 - x0) / (h * w)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("recipe asks for device=cuda but PyTorch sees no CUDA GPU")
    return torch.device(name)


@torch.no_grad()
def eval_logits(net: GarmentNet, forward, inputs: np.ndarray | tuple[np.ndarray, np.ndarray],
                device: torch.device | str = "cpu", batch_size: int = 128) -> np.ndarray:
    """Eval-mode logits of ``forward`` (back + head on cached front activations, or the whole
    network on photos); a (plain, mirrored) pair is averaged, exactly as the exported graph
    does with test-time augmentation."""
    if isinstance(inputs, tuple):
        return 0.5 * (eval_logits(net, forward, inputs[0], device, batch_size)
                      + eval_logits(net, forward, inputs[1], device, batch_size))
    net.eval()
    out = [forward(torch.from_numpy(inputs[i:i + batch_size]).float().to(device)).float().cpu().numpy()
           for i in range(0, len(inputs), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, net.fc.out_features), np.float32)


def label_targets(nodes: list[str], taxonomy: Taxonomy) -> tuple[np.ndarray, torch.Tensor | None]:
    """Training labels for node names: a leaf is its index; an inner node (a "Yes" to a hedged
    answer: the truth is one of its leaves) is ``C + m``, row m of the returned (M, C) mask of the
    leaves under it (None when every label is a leaf). The loss of such a photo is the partial-label
    loss −log Σ_{leaves under the node} p (:func:`partial_label_loss`)."""
    leaves = taxonomy.leaves
    index = {leaf: i for i, leaf in enumerate(leaves)}
    inner = sorted({n for n in nodes if n not in index})
    rows = {n: len(leaves) + m for m, n in enumerate(inner)}
    masks = torch.zeros(len(inner), len(leaves), dtype=torch.bool)
    for m, node in enumerate(inner):
        if node not in taxonomy.nodes:
            raise ValueError(f"label {node!r} is not a node of taxonomy {taxonomy.version}")
        for i, leaf in enumerate(leaves):
            masks[m, i] = node == "" or leaf == node or leaf.startswith(node + ".")
    y = np.array([index[n] if n in index else rows[n] for n in nodes], dtype=np.int64)
    return y, (masks if inner else None)


def partial_label_loss(leaf_loss, partial: torch.Tensor):  # noqa: ANN001, ANN201
    """Mean over a batch of ``leaf_loss`` on leaf labels and −log Σ_{leaves in the mask} softmax
    on partial ones (labels ≥ C index rows of ``partial``): a photo known only to be "some top"
    pushes probability into the tops, never onto one of them in particular. A batch of leaves
    only gets exactly ``leaf_loss``."""

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n_classes = logits.shape[1]
        leaf = labels < n_classes
        if bool(leaf.all()):
            return leaf_loss(logits, labels)
        part_logits = logits[~leaf]
        mask = partial[labels[~leaf] - n_classes]
        nll = torch.logsumexp(part_logits, 1) - torch.logsumexp(part_logits.masked_fill(~mask, -torch.inf), 1)
        total = nll.sum()
        if bool(leaf.any()):
            total = total + leaf_loss(logits[leaf], labels[leaf]) * int(leaf.sum())
        return total / len(labels)

    return loss


def hits(logits: torch.Tensor, labels: torch.Tensor, partial: torch.Tensor | None) -> torch.Tensor:
    """Whether the top-1 leaf is right: the label itself, or one of a partial label's leaves."""
    top = logits.argmax(1)
    n_classes = logits.shape[1]
    if partial is None:
        return top == labels
    inner = labels >= n_classes
    rows = partial[(labels - n_classes).clamp(min=0)]
    return torch.where(inner, rows.gather(1, top[:, None])[:, 0], top == labels)


class FineTuner:
    """The optimisation loop both recipes share: AdamW with per-group learning rates, warm-up then
    cosine decay, label smoothing, class weights, optional CutMix/mixup, a few validation points
    per epoch for the training curves, and a checkpoint after every epoch."""

    def __init__(self, net: GarmentNet, forward, param_groups: list[dict], recipe: Recipe,
                 y_train: np.ndarray, steps_per_epoch: int, val_logits, y_val: np.ndarray,
                 checkpoint, device: torch.device, start: float, targets: torch.Tensor | None = None,
                 partial: torch.Tensor | None = None) -> None:
        self.net, self.forward, self.recipe, self.device = net, forward, recipe, device
        self.val_logits, self.y_val, self.checkpoint, self.start = val_logits, y_val, checkpoint, start
        self.opt = torch.optim.AdamW(param_groups, weight_decay=recipe.weight_decay)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * recipe.epochs
        self.warmup = max(1, int(recipe.warmup_frac * self.total_steps))
        n_classes = net.fc.out_features
        weights = _class_weights(y_train[y_train < n_classes], n_classes, recipe.class_weight_power).to(device)
        if targets is None:
            leaf_loss = torch.nn.CrossEntropyLoss(weight=weights, label_smoothing=recipe.label_smoothing)
        else:  # soft targets per class (sibling_smoothing_targets)
            soft, ce = targets.to(device), torch.nn.CrossEntropyLoss(weight=weights)
            leaf_loss = lambda logits, labels: ce(logits, soft[labels])  # noqa: E731
        self.partial = partial.to(device) if partial is not None else None
        self.loss_fn = leaf_loss if partial is None else partial_label_loss(leaf_loss, self.partial)
        # about a dozen validation points in all for the curves (4 per epoch for 3 epochs, 1 for 40)
        self.eval_every = max(1, steps_per_epoch // max(1, 12 // recipe.epochs))
        self.history: list[dict] = []
        self.step = 0
        self.rng = np.random.default_rng(recipe.seed)
        # bf16 autocast on a GPU; the CPU keeps fp32 (and its speed: no autocast overhead)
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else None

    def _lr_scale(self) -> float:
        if self.step < self.warmup:
            return (self.step + 1) / self.warmup
        return 0.5 * (1 + math.cos(math.pi * (self.step - self.warmup) / max(1, self.total_steps - self.warmup)))

    def _validate(self, running: dict) -> None:
        val_logits = self.val_logits()
        self.train_mode()
        record = {"epoch": round(self.step / self.steps_per_epoch, 3), "step": self.step,
                  "train_loss": running["loss"] / max(1, running["seen"]),
                  "train_acc": running["correct"] / max(1, running["seen"]),
                  "val_acc": float((val_logits.argmax(1) == self.y_val).mean()),
                  "val_nll": float(torch.nn.functional.cross_entropy(torch.from_numpy(val_logits),
                                                                     torch.from_numpy(self.y_val))),
                  "seconds": time.time() - self.start}
        self.history.append(record)
        log.info("epoch %(epoch).2f: train loss %(train_loss).3f acc %(train_acc).3f | "
                 "val acc %(val_acc).3f nll %(val_nll).3f", record)
        running.update(loss=0.0, correct=0, seen=0)

    def train_mode(self) -> None:
        """Train mode for what is fine-tuned; a frozen front stays in eval mode (its BN stats)."""
        self.net.train()
        if self.recipe.fine_tune == "back":
            self.net.front.eval()

    def run(self, batches) -> list[dict]:
        """``batches(epoch)`` yields (inputs, labels) CPU tensors for one epoch."""
        for epoch in range(self.recipe.epochs):
            self.train_mode()
            running = {"loss": 0.0, "correct": 0, "seen": 0}  # since the last validation
            bar = tqdm(batches(epoch), total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.recipe.epochs}",
                       leave=False, mininterval=2.0)
            for b, (xb, yb) in enumerate(bar):
                # channels_last: ~25% faster depthwise convolutions on CPU, and what cuDNN prefers
                xb = xb.to(self.device, non_blocking=True).float().contiguous(memory_format=torch.channels_last)
                yb = yb.to(self.device, non_blocking=True)
                for g, lr in zip(self.opt.param_groups, self.base_lrs):
                    g["lr"] = lr * self._lr_scale()
                xb, yb_mixed, share = mix_batch(xb, yb, self.recipe, self.rng)
                with self.autocast or contextlib.nullcontext():
                    logits = self.forward(xb)
                logits = logits.float()
                loss = self.loss_fn(logits, yb)
                if yb_mixed is not None:
                    loss = share * loss + (1 - share) * self.loss_fn(logits, yb_mixed)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.step += 1
                running["loss"] += float(loss.detach()) * len(yb)
                running["correct"] += int(hits(logits.detach(), yb, self.partial).sum())
                running["seen"] += len(yb)
                if b % 20 == 0:
                    bar.set_postfix(loss=f"{running['loss'] / running['seen']:.3f}",
                                    acc=f"{running['correct'] / running['seen']:.3f}")
                last = b + 1 == self.steps_per_epoch
                if last or ((b + 1) % self.eval_every == 0 and self.steps_per_epoch - (b + 1) >= self.eval_every // 2):
                    self._validate(running)
            self.checkpoint(epoch + 1, self.history)
        return self.history


def new_net(recipe: Recipe, n_classes: int) -> GarmentNet:
    """A fresh network of ``recipe`` (ImageNet front, new head) for ``n_classes`` leaves."""
    return GarmentNet(recipe.architecture, n_classes, recipe.input_size, recipe.split_block,
                      dropout=recipe.dropout, drop_connect=recipe.drop_connect)


def fit_on_views(net: GarmentNet, views: np.ndarray, train_idx: np.ndarray, y: np.ndarray, recipe: Recipe,
                 curve_acts: np.ndarray, y_curve: np.ndarray, start: float | None = None,
                 targets: torch.Tensor | None = None, checkpoint=None, progress=None,  # noqa: ANN001
                 device: torch.device | None = None, partial: torch.Tensor | None = None,
                 views_per_epoch: int | None = None) -> list[dict]:
    """Fine-tune back + head on cached front activations: the CPU recipe's loop, for every pipeline.

    ``views``: (V, N, C, h, w) activations, V views of N photos (augmented views, served crops);
    ``train_idx``: the photos trained on (every view of each); ``y``: (N,) leaf index per photo.
    ``curve_acts``/``y_curve``: photos scored at each validation point, for the curves only
    (nothing is selected on them). ``progress(fraction)`` is called every step (it may raise to
    cancel). ``partial``: masks of partial labels (``label_targets``). Batches draw (view, photo)
    pairs view-major, so a run is the same whichever pipeline calls it. ``views_per_epoch`` (k < V,
    a quick job's trim): each epoch every photo is trained on k of its V views, drawn afresh (seeded)
    each epoch, so the epochs together still see every kind of view at 1/… of the cost."""
    device = device or torch.device("cpu")
    start = time.time() if start is None else start
    net.freeze_front()
    net.to(device)
    net.back.to(memory_format=torch.channels_last)
    n_views = views.shape[0]
    assert n_views > 0, "no training views: set views ≥ 1 or train on the served crops"
    per_photo = min(views_per_epoch or n_views, n_views)  # views of each photo trained on per epoch
    pairs = len(train_idx) * per_photo  # (view, photo) pairs: each a cached training example
    steps_per_epoch = math.ceil(pairs / recipe.batch_size)
    tuner = FineTuner(
        net, net.forward_from_front,
        [{"params": list(net.back.parameters()), "lr": recipe.lr},
         {"params": list(net.fc.parameters()), "lr": recipe.lr * recipe.head_lr_mult}],
        recipe, y[train_idx], steps_per_epoch,
        lambda: eval_logits(net, net.forward_from_front, curve_acts, device), y_curve,
        checkpoint or (lambda epoch, history: None), device, start, targets, partial)

    def batches(epoch: int):
        order = tuner.rng.permutation(pairs)
        # which views each photo is trained on this epoch (all of them, in order, unless trimmed)
        drawn = (np.argsort(tuner.rng.random((len(train_idx), n_views)), axis=1)[:, :per_photo]
                 if per_photo < n_views else None)
        for b in range(steps_per_epoch):
            if progress:
                progress((epoch * steps_per_epoch + b) / (recipe.epochs * steps_per_epoch))
            flat = order[b * recipe.batch_size:(b + 1) * recipe.batch_size]
            pos, k = flat % len(train_idx), flat // len(train_idx)
            view, photo = (k if drawn is None else drawn[pos, k]), train_idx[pos]
            yield torch.from_numpy(views[view, photo]), torch.from_numpy(y[photo])

    return tuner.run(batches)
