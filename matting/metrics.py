"""Matting quality metrics, in the RVM paper's units (MAD, MSE x1e3; dtSSD x1e2)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def mad(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute difference x1e3 between two alphas in [0, 1]."""
    return float(np.abs(pred.astype(np.float64) - truth).mean() * 1e3)


def mse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared error x1e3 between two alphas in [0, 1]."""
    return float(((pred.astype(np.float64) - truth) ** 2).mean() * 1e3)


def dtssd(preds: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> float:
    """Temporal coherence x1e2: how much the frame-to-frame change differs from the truth's.

    Mean over frame pairs of sqrt(sum((dp - dt)^2) / N), as in the RVM paper.
    """
    if len(preds) != len(truths) or len(preds) < 2:
        raise ValueError("dtssd needs two equal-length sequences of at least two frames")
    scores = []
    for t in range(1, len(preds)):
        dp = preds[t].astype(np.float64) - preds[t - 1]
        dt = truths[t].astype(np.float64) - truths[t - 1]
        scores.append(np.sqrt(((dp - dt) ** 2).mean()))
    return float(np.mean(scores) * 1e2)
