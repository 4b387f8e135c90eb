"""Decision rules: how a zero-shot model's (or a baseline's) scores over a label set become 0/1 labels.

Its own module so that training (core.train.contrastive), evaluation (core.train.evaluate) and the
baselines read one definition without importing each other.

- "margin": the top label plus every label whose score is within d of the top one. It compares a
  text's labels with each other, so it carries over to label sets the model never saw;
- "threshold": the top label plus every label reaching t (absolute cosine levels differ from one label
  set and one domain to the next, so it carries over less well).
A rule may be calibrated on a dev split of the TRAINING taxonomy (never on a target set); strictly
zero-shot models use DEFAULT_RULE, fixed before any target data was seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Rule:
    """How scores become labels on a multi-label set (calibrated on the training taxonomy's dev split)."""

    kind: str = "margin"  # margin | threshold
    value: float = 0.05
    dev_macro_f1: float | None = None

    def apply(self, cosines: np.ndarray) -> np.ndarray:
        return apply_rule(cosines, self.kind, self.value)


def apply_rule(scores: np.ndarray, kind: str, value: float) -> np.ndarray:
    """0/1 decisions: the top label (unless no score is positive: a lexicon that found no word), plus those
    at or above `value` (threshold) or within `value` of the top score (margin)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return np.zeros(scores.shape, dtype=np.int8)
    if kind == "threshold":
        out = (scores >= value).astype(np.int8)
    elif kind == "margin":
        out = (scores >= scores.max(axis=1, keepdims=True) - value).astype(np.int8)
    else:
        raise ValueError(f"unknown decision rule {kind!r}")
    out[np.arange(len(scores)), scores.argmax(axis=1)] = 1
    out[scores.max(axis=1) <= 0] = 0
    return out


RULE_GRIDS = {"threshold": np.round(np.arange(-0.2, 0.95, 0.01), 3), "margin": np.round(np.arange(0.0, 0.3, 0.0025), 4)}


def calibrate_rule(scores: np.ndarray, y: np.ndarray, kinds: Sequence[str] = ("margin",)) -> Rule:
    """The rule (of the families `kinds`) with the best macro-F1 of `scores` against `y` (a dev split).

    The default family is the margin: a cosine threshold calibrated on one label set does not carry over
    to another (each set's prototypes sit at their own cosine levels, and texts of another domain too),
    while "within d of the top label" compares a text's labels with each other only."""
    from sklearn.metrics import f1_score

    best = Rule(kinds[0], 0.0, -1.0)
    for kind in kinds:
        grid = RULE_GRIDS[kind]
        lo, hi = float(np.min(scores)), float(np.max(scores))
        if kind == "threshold":
            grid = grid[(grid >= lo - 0.01) & (grid <= hi + 0.01)]
        for value in grid:
            f1 = float(f1_score(y, apply_rule(scores, kind, float(value)), average="macro", zero_division=0))
            if f1 > (best.dev_macro_f1 or -1.0) + 1e-12:
                best = Rule(kind, float(value), f1)
    return best


# The rule of a model that saw no label at all (distill mode): fixed a priori (the default margin EmoForge had
# before any distilled model existed), never tuned on a set we report.
DEFAULT_RULE = Rule("margin", 0.05)
