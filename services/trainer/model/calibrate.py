"""Temperature scaling (Guo et al., 2017), also on partial labels, and expected calibration error."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["fit_temperature", "expected_calibration_error", "softmax"]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T > 0 minimising validation NLL of softmax(logits / T); optimised in log T.

    ``labels``: (N,) leaf indices, or (N, L) bool sets of the leaves the truth may be (a "Yes" to
    a hedged answer: ``shared.hedging.calibration.node_leaf_sets``); a set's NLL is that of the
    probability mass on its leaves, −log Σ_{leaves in the set} p, which a one-leaf set reduces to."""
    x = torch.as_tensor(logits, dtype=torch.float64)
    labels = np.asarray(labels)
    if labels.ndim == 2:
        sets = torch.as_tensor(labels, dtype=torch.bool)

        def nll(z: torch.Tensor) -> torch.Tensor:
            inside = torch.logsumexp(z.masked_fill(~sets, float("-inf")), dim=1)
            return (torch.logsumexp(z, dim=1) - inside).mean()
    else:
        y = torch.as_tensor(labels, dtype=torch.long)

        def nll(z: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(z, y)

    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nll(x / log_t.exp())
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.exp())


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15,
                               weights: np.ndarray | None = None) -> tuple[float, list[dict]]:
    """ECE over equal-width confidence bins, and the bins for a reliability diagram.

    ``weights`` (one per photo, ≥ 0; 0 leaves a photo out) weigh photos in every bin and in the
    total, e.g. 1/(the person's photos) so that each person counts once (``evaluation.audience``)."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece, table = 0.0, []
    total = float(np.sum(weights)) if weights is not None else float(len(conf))
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi)
        if weights is not None:
            mask &= weights > 0
        n = int(mask.sum())
        if n and weights is None:
            acc, avg_conf = float(correct[mask].mean()), float(conf[mask].mean())
            ece += n / len(conf) * abs(acc - avg_conf)
        elif n:
            w = weights[mask]
            acc, avg_conf = float(np.dot(w, correct[mask]) / w.sum()), float(np.dot(w, conf[mask]) / w.sum())
            ece += float(w.sum()) / total * abs(acc - avg_conf)
        else:
            acc = avg_conf = float("nan")
        table.append({"lo": float(lo), "hi": float(hi), "n": n, "accuracy": acc, "confidence": avg_conf})
    return float(ece), table
