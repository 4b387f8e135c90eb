"""Train / dev / test splits: multi-label iterative stratification over groups that never split.

Examples that must stay together (one story, one near-duplicate cluster, a contextual rewrite
and its context-less parent) are joined into groups by connected components over shared keys.
Groups are then dealt out with iterative stratification (Sechidis, Tsoumakas & Vlahavas, 2011):
labels from the rarest up, each group containing the label goes to the split that still wants
that label the most (ties: the split that wants the most examples). Seeded: same input, same split.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

SPLITS = ("train", "dev", "test")
CONTEXTLESS_RATIOS = {"train": 0.8, "dev": 0.1, "test": 0.1}
CONTEXTUAL_RATIOS = {"train": 0.9, "dev": 0.05, "test": 0.05}


def default_ratios(kinds: set[str]) -> dict[str, float]:
    """90/5/5 when every example is contextual, else 80/10/10 (context-less and imported sets)."""
    return dict(CONTEXTUAL_RATIOS if kinds and kinds <= {"contextual"} else CONTEXTLESS_RATIOS)


def default_ratios_text() -> str:
    """The rule of `default_ratios` in words, for the pages and the CLI."""
    def percent(ratios: dict[str, float]) -> str:
        return "/".join(f"{ratios[s] * 100:g}" for s in SPLITS)

    return f"{percent(CONTEXTLESS_RATIOS)}, or {percent(CONTEXTUAL_RATIOS)} when every example is contextual"


def check_ratios(ratios: dict[str, float]) -> dict[str, float]:
    unknown = set(ratios) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {', '.join(sorted(unknown))}; use {', '.join(SPLITS)}")
    values = {s: float(ratios.get(s, 0.0)) for s in SPLITS}
    if any(v < 0 for v in values.values()) or values["train"] <= 0:
        raise ValueError("split ratios must be >= 0, with some share for train")
    total = sum(values.values())
    return {s: v / total for s, v in values.items()}


def group_ids(keys: Sequence[Sequence[Hashable]]) -> np.ndarray:
    """Group index per example: examples sharing any key (transitively) share a group."""
    n = len(keys)
    key_index: dict[Hashable, int] = {}
    rows, cols = [], []
    for i, example_keys in enumerate(keys):
        for key in example_keys:
            if key is None:
                continue
            rows.append(i)
            cols.append(n + key_index.setdefault(key, len(key_index)))
    size = n + len(key_index)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    _, dense = np.unique(labels[:n], return_inverse=True)
    return dense


def assign_splits(label_sets: Sequence[Sequence[str]], keys: Sequence[Sequence[Hashable]] | None = None,
                  ratios: dict[str, float] | None = None, seed: int = 13) -> list[str]:
    """The split of each example (same order as `label_sets`)."""
    n = len(label_sets)
    if n == 0:
        return []
    ratios = check_ratios(ratios or CONTEXTLESS_RATIOS)
    groups = group_ids(keys) if keys is not None else np.arange(n)
    names = sorted({name for labels in label_sets for name in labels})
    column = {name: j for j, name in enumerate(names)}
    rows = [i for i, labels in enumerate(label_sets) for _ in labels]
    cols = [column[name] for labels in label_sets for name in labels]
    n_groups = int(groups.max()) + 1
    # group x label counts, as a sparse matrix: M (groups x examples) @ Y (examples x labels)
    y = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, len(names)))
    m = csr_matrix((np.ones(n), (groups, np.arange(n))), shape=(n_groups, n))
    counts = (m @ y).tocsr()
    sizes = np.bincount(groups, minlength=n_groups)
    group_split = _stratify(counts, sizes, ratios, np.random.default_rng(seed))
    return [SPLITS[s] for s in group_split[groups]]


def _stratify(counts: csr_matrix, sizes: np.ndarray, ratios: dict[str, float], rng) -> np.ndarray:
    n_groups, n_labels = counts.shape
    r = [ratios[s] for s in SPLITS]
    want_label = [[r[s] * t for t in np.asarray(counts.sum(axis=0)).ravel().tolist()] for s in range(3)]
    want_size = [r[s] * float(sizes.sum()) for s in range(3)]
    indptr, indices, data = counts.indptr.tolist(), counts.indices.tolist(), counts.data.tolist()
    by_label = counts.tocsc()
    col_ptr, col_rows = by_label.indptr, by_label.indices
    assigned = np.full(n_groups, -1, dtype=np.int64)
    size_list = sizes.tolist()
    order = np.argsort(np.diff(col_ptr), kind="stable")  # rarest label first
    tiebreak = rng.random(3).tolist()  # which split wins a perfect tie, fixed per seed

    def place(g: int, s: int) -> None:
        assigned[g] = s
        for k in range(indptr[g], indptr[g + 1]):
            want_label[s][indices[k]] -= data[k]
        want_size[s] -= size_list[g]

    for label in order.tolist():
        candidates = col_rows[col_ptr[label]:col_ptr[label + 1]]
        candidates = candidates[assigned[candidates] < 0]
        rng.shuffle(candidates)
        wanted = [w[label] for w in want_label]
        for g in candidates.tolist():
            s = max(range(3), key=lambda i: (wanted[i], want_size[i], tiebreak[i]))
            place(g, s)
            wanted[s] = want_label[s][label]
    rest = np.flatnonzero(assigned < 0)
    rng.shuffle(rest)
    for g in rest.tolist():
        place(g, max(range(3), key=lambda i: (want_size[i], tiebreak[i])))
    return assigned
