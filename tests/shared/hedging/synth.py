"""A known synthetic distribution: calibrated leaf probabilities and labels drawn from them."""

from __future__ import annotations

import numpy as np


def synthetic(n: int, n_leaves: int, rng: np.random.Generator, strength: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Leaf probabilities (softmax of noisy logits peaked at a random class) and true leaves
    sampled *from those probabilities*: the model is calibrated by construction, and calibration
    and test draws are exchangeable."""
    logits = rng.normal(0.0, 1.0, (n, n_leaves))
    logits[np.arange(n), rng.integers(0, n_leaves, n)] += strength
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    u = rng.random(n)[:, None]
    y = np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), n_leaves - 1)
    return p, y
