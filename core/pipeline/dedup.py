"""Near-identical utterances of one character, found with the bundled MiniLM sentence encoder."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from core import embeddings

DEFAULT_SIMILARITY = 0.9  # cosine similarity at which two utterances count as the same thought


def near_duplicates(texts: Sequence[str], keep_first: int = 0, similarity: float = DEFAULT_SIMILARITY,
                    embed: Callable[[Sequence[str]], np.ndarray] = embeddings.embed) -> set[int]:
    """Indices of texts too close to an earlier text (the first `keep_first` are never dropped).

    Greedy in order: a text is kept unless it is within `similarity` of a text already kept. One
    character has tens of utterances, so the full similarity matrix is small. `embed`: a run's cache
    (core.pipeline.steps.base.StepContext.embed), so a stage encodes all its texts in one pass.
    """
    if len(texts) < 2:
        return set()
    vectors = embed(texts)
    similarities = vectors @ vectors.T
    kept: list[int] = []
    dropped: set[int] = set()
    for index in range(len(texts)):
        if index >= keep_first and kept and float(similarities[index, kept].max()) >= similarity:
            dropped.add(index)
        else:
            kept.append(index)
    return dropped
