"""Near-identical utterances of one character, found with the bundled MiniLM sentence encoder."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from core import config

DEFAULT_SIMILARITY = 0.9  # cosine similarity at which two utterances count as the same thought
_lock = threading.Lock()
_encoder = None


def encoder():
    """The student encoder (all-MiniLM-L6-v2, shipped in a package), loaded once per process."""
    global _encoder
    with _lock:
        if _encoder is None:
            from sentence_transformers import SentenceTransformer

            _encoder = SentenceTransformer(str(config.student_model_dir()), device="cpu")
        return _encoder


def embed(texts: Sequence[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return encoder().encode(list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)


def near_duplicates(texts: Sequence[str], keep_first: int = 0, similarity: float = DEFAULT_SIMILARITY) -> set[int]:
    """Indices of texts too close to an earlier text (the first `keep_first` are never dropped).

    Greedy in order: a text is kept unless it is within `similarity` of a text already kept. One
    character has tens of utterances, so the full similarity matrix is small.
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
