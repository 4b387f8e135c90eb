"""Sentence embeddings with a sentence-transformers encoder, loaded once per process and model folder.

Near-duplicate utterances (core.pipeline.dedup), the Curate signals and diversity figures
(core.curate) and the untrained-embedding baseline (core.train.baselines) all embed with the same
bundled all-MiniLM-L6-v2. Loading it takes seconds, so every caller asks here and the first load is
kept; a job that embeds in batches or a page that embeds on every rerun pays for it once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_lock = threading.Lock()  # two threads asking at once must not load the model twice
_encoders: dict[str, Any] = {}


def folder(path: str | Path | None = None) -> Path:
    """The encoder folder: `path`, or the bundled student model (EMOFORGE_STUDENT_DIR overrides it)."""
    if path:
        return Path(path)
    from core.models_setup import ensure_student

    return ensure_student()


def encoder(path: str | Path | None = None):
    """The SentenceTransformer of a model folder (default: the bundled student), loaded on first use.

    The device is CUDA when there is one, else the CPU; the copy is shared, so callers must not
    train it or change its settings.
    """
    key = str(folder(path).resolve())
    with _lock:
        model = _encoders.get(key)
        if model is None:
            from sentence_transformers import SentenceTransformer

            model = _encoders[key] = SentenceTransformer(key)
        return model


def embed(texts: Sequence[str], path: str | Path | None = None, batch_size: int = 64) -> np.ndarray:
    """Unit-length float32 embeddings, one row per text (a (0, dim) array for no text)."""
    model = encoder(path)
    if not len(texts):
        return np.zeros((0, model.get_embedding_dimension() or 0), dtype=np.float32)
    vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def loaded() -> list[str]:
    """The model folders loaded in this process (for tests and diagnostics)."""
    with _lock:
        return list(_encoders)


def forget() -> None:
    """Drop every loaded encoder (tests; a process that needs the memory back)."""
    with _lock:
        _encoders.clear()
