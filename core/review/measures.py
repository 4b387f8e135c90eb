"""Agreement measures on plain arrays (no database): Krippendorff's alpha and Cohen's kappa,
computed with the reference libraries. Shared by the campaign report and the task modules."""

from __future__ import annotations

import math
import warnings

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score


def finite(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def alpha(matrix: np.ndarray, level: str, value_domain: list | None = None) -> float | None:
    """Krippendorff's alpha of an annotators x items matrix (NaN = no answer); None if undefined."""
    paired = np.sum(~np.isnan(matrix), axis=0) >= 2
    matrix = matrix[:, paired]
    if matrix.shape[1] == 0 or len(np.unique(matrix[~np.isnan(matrix)])) < 2:
        return None  # no pairable answers, or nobody ever disagreed: alpha is undefined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return finite(krippendorff.alpha(reliability_data=matrix, level_of_measurement=level,
                                         value_domain=value_domain))


def kappa(first: np.ndarray, second: np.ndarray, weights: str | None = None) -> float | None:
    if len(first) == 0:
        return None
    domain = np.unique(np.concatenate([first, second]))
    if len(domain) < 2:
        return None  # one category only: chance agreement is total, kappa undefined
    # Codes 0..K-1 over the sorted values both gave: what sklearn does itself (weights use these
    # positions), minus its slow per-element label lookup on 280,000 (item, label) decisions.
    codes = np.arange(len(domain))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return finite(cohen_kappa_score(np.searchsorted(domain, first), np.searchsorted(domain, second),
                                        labels=codes, weights=weights))


def pairwise_kappas(matrix: np.ndarray, weights: str | None = None) -> list[tuple[int, int, float | None, int]]:
    """(row a, row b, kappa, items both answered) for every pair of annotators (rows)."""
    result = []
    for a in range(matrix.shape[0]):
        for b in range(a + 1, matrix.shape[0]):
            both = ~np.isnan(matrix[a]) & ~np.isnan(matrix[b])
            if both.any():
                result.append((a, b, kappa(matrix[a, both], matrix[b, both], weights), int(both.sum())))
    return result
