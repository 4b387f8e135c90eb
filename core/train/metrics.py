"""Multi-label metrics: threshold sweeps, macro / micro F1, per-label precision / recall / F1.

Every figure goes through scikit-learn's `precision_recall_fscore_support`, so the numbers mean
what they mean in the papers we compare with (macro-F1 = unweighted mean of per-label F1, a label
with no positive and no predicted example counting 0, `zero_division=0`).

Arrays: `y_true` is an (n, L) 0/1 matrix, `probs` an (n, L) matrix of probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

# 0.05, 0.10, ..., 0.95 (rounded so that 0.15 is 0.15, not 0.15000000000000002)
THRESHOLD_GRID: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))


def _as_arrays(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"y_true and probs must be (n, labels) matrices of one shape, got {y.shape} and {p.shape}")
    return y, p


def binarize(probs, thresholds) -> np.ndarray:
    """0/1 predictions: one global threshold (a float) or one per label (a sequence of floats)."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim == 1 and t.shape[0] != p.shape[1]:
        raise ValueError(f"{t.shape[0]} thresholds for {p.shape[1]} labels")
    return (p >= t).astype(np.int64)


def f1_summary(y_true, y_pred) -> dict[str, float]:
    """Macro-, micro- and sample-weighted F1 of 0/1 matrices."""
    y, pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    return {
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, average="weighted", zero_division=0)),
    }


def per_label_report(y_true, y_pred, label_names: Sequence[str]) -> list[dict]:
    """One row per label: precision, recall, F1 and support (true positives in y_true)."""
    y, pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    return [
        {
            "label": str(name),
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(pred[:, i].sum()),
        }
        for i, name in enumerate(label_names)
    ]


def sweep_global_threshold(
    y_true, probs, grid: Sequence[float] = THRESHOLD_GRID, metric: str = "macro_f1"
) -> tuple[float, list[dict]]:
    """The one threshold of `grid` that maximises `metric` (macro_f1 or micro_f1) over all labels.

    Returns (best threshold, the table of every threshold tried with its macro and micro F1).
    On a tie the lower threshold wins (the first in grid order), so the choice is deterministic.
    """
    if metric not in ("macro_f1", "micro_f1"):
        raise ValueError(f"unknown metric {metric!r}")
    y, p = _as_arrays(y_true, probs)
    table = []
    for t in grid:
        scores = f1_summary(y, binarize(p, t))
        table.append({"threshold": float(t), "macro_f1": scores["macro_f1"], "micro_f1": scores["micro_f1"]})
    best = max(range(len(table)), key=lambda i: (table[i][metric], -i))
    return table[best]["threshold"], table


def sweep_per_label_thresholds(
    y_true, probs, grid: Sequence[float] = THRESHOLD_GRID, fallback: float | None = None
) -> list[float]:
    """For each label, the threshold of `grid` that maximises that label's F1.

    A label with no positive example in y_true cannot be tuned: it gets `fallback` (by default the
    best global macro-F1 threshold), rather than the top of the grid that trivially predicts nothing.
    """
    y, p = _as_arrays(y_true, probs)
    if fallback is None:
        fallback, _ = sweep_global_threshold(y, p, grid)
    thresholds = []
    for j in range(y.shape[1]):
        if y[:, j].sum() == 0:
            thresholds.append(float(fallback))
            continue
        scores = [f1_score(y[:, j], (p[:, j] >= t).astype(np.int64), zero_division=0) for t in grid]
        thresholds.append(float(grid[int(np.argmax(scores))]))  # argmax: first (lowest) on a tie
    return thresholds


def evaluate_probs(y_true, probs, thresholds, label_names: Sequence[str]) -> dict:
    """Everything about one prediction matrix at given thresholds: F1 summary plus per-label rows."""
    y, p = _as_arrays(y_true, probs)
    pred = binarize(p, thresholds)
    out = f1_summary(y, pred)
    out["per_label"] = per_label_report(y, pred, label_names)
    out["examples"] = int(y.shape[0])
    return out


def tune_and_evaluate(
    dev_true, dev_probs, test_true, test_probs, label_names: Sequence[str], per_label: bool = False
) -> dict:
    """Sweep the global threshold (and optionally per-label ones) on dev, report dev and test.

    The headline is always the global threshold; per-label figures come as extra keys.
    test_true / test_probs may be None (a version without a test split).
    """
    threshold, table = sweep_global_threshold(dev_true, dev_probs)
    has_test = test_true is not None and len(test_true) > 0
    result = {
        "threshold": threshold,
        "sweep": table,
        "dev": evaluate_probs(dev_true, dev_probs, threshold, label_names),
        "test": evaluate_probs(test_true, test_probs, threshold, label_names) if has_test else None,
    }
    if per_label:
        per = sweep_per_label_thresholds(dev_true, dev_probs, fallback=threshold)
        result["per_label_thresholds"] = dict(zip(label_names, per))
        result["dev_per_label_thresholds"] = evaluate_probs(dev_true, dev_probs, per, label_names)
        result["test_per_label_thresholds"] = evaluate_probs(test_true, test_probs, per, label_names) if has_test else None
    return result
