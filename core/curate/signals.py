"""Per-example signals, recomputed from scratch without touching annotations.

- exact_dup_cluster: examples whose normalised utterance is identical.
- near_dup_cluster: examples whose MiniLM embeddings have cosine similarity >= a threshold,
  found with a faiss nearest-neighbour index (never all pairs) and closed transitively.
- review_agreement / review_teacher_agreement: mean pairwise Jaccard of the reviewers' submitted
  label sets, and of each reviewer's set with the teacher's labels.
The value of a cluster signal is the cluster id: the smallest example id in the cluster, so the
same data always gives the same ids.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from itertools import combinations
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import delete, insert, select

from core import jobs
from core.auth import Actor, require_admin
from core.curate import diversity
from core.curate.labels import suggestion_scores
from core.embeddings import embed
from core.labels import threshold
from db.models import CampaignItem, Example, Question, Response, ResponseStatus, Signal
from db.session import read_session, write_session

EXACT = "exact_dup_cluster"
NEAR = "near_dup_cluster"
AGREEMENT = "review_agreement"
TEACHER_AGREEMENT = "review_teacher_agreement"
DEFAULT_NEAR_THRESHOLD = 0.92
DEFAULT_NEIGHBOURS = 10
FLAT_INDEX_LIMIT = 10_000  # below this an exact index is fast enough
INSERT_CHUNK = 5_000

_WORDS = re.compile(r"[^\w\s]+")


def normalise_text(text: str) -> str:
    return " ".join(_WORDS.sub(" ", text.lower()).split())


# --------------------------------------------------------------------------- clustering


def exact_duplicate_clusters(ids: list[int], texts: list[str]) -> dict[int, int]:
    """example id -> cluster id, for examples that share a normalised text with another."""
    groups: dict[str, list[int]] = defaultdict(list)
    for example_id, text in zip(ids, texts):
        groups[hashlib.sha1(normalise_text(text).encode()).hexdigest()].append(example_id)
    return {i: min(members) for members in groups.values() if len(members) > 1 for i in members}


def near_duplicate_labels(embeddings: np.ndarray, threshold: float = DEFAULT_NEAR_THRESHOLD,
                          neighbours: int = DEFAULT_NEIGHBOURS, seed: int = 0) -> np.ndarray:
    """Component index per row: rows joined by a chain of cosine similarities >= threshold.

    Each row's `neighbours` nearest rows come from a faiss index (exact inner product for small
    sets, an inverted-file index above FLAT_INDEX_LIMIT rows); the pairs over the threshold form a
    sparse graph whose connected components are the clusters.
    """
    import faiss

    x = np.ascontiguousarray(embeddings, dtype="float32")
    n, dim = x.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    faiss.normalize_L2(x)
    k = min(neighbours + 1, n)
    index = _index(x, dim, seed)
    sims, nbrs = index.search(x, k)
    rows = np.repeat(np.arange(n), k)
    cols, vals = nbrs.ravel(), sims.ravel()
    keep = (cols >= 0) & (cols != rows) & (vals >= threshold)
    graph = coo_matrix((np.ones(int(keep.sum()), dtype=np.int8), (rows[keep], cols[keep])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels


def _index(x: np.ndarray, dim: int, seed: int):
    import faiss

    n = len(x)
    if n <= FLAT_INDEX_LIMIT:
        index = faiss.IndexFlatIP(dim)
    else:
        nlist = int(np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = np.random.default_rng(seed).choice(n, size=min(n, nlist * 40), replace=False)
        index.train(x[sample])
        index.nprobe = 6
    index.add(x)
    return index


def clusters_from_labels(ids: list[int], labels: np.ndarray) -> dict[int, int]:
    """example id -> cluster id (smallest member id), for components of two or more."""
    members: dict[int, list[int]] = defaultdict(list)
    for example_id, label in zip(ids, labels.tolist()):
        members[label].append(example_id)
    return {i: min(group) for group in members.values() if len(group) > 1 for i in group}


# --------------------------------------------------------------------------- storing


def _all_texts(session) -> tuple[list[int], list[str]]:
    rows = session.execute(select(Example.id, Example.text).order_by(Example.id)).tuples().all()
    return [r[0] for r in rows], [r[1] for r in rows]


def replace_signals(session, kind: str, values: dict[int, float], data: dict[int, dict[str, Any]] | None = None,
                    computed_by: str = "") -> int:
    """Drop every signal of `kind` and store the new values (one transaction)."""
    session.execute(delete(Signal).where(Signal.kind == kind))
    rows = [{"example_id": i, "kind": kind, "value": float(v), "data": (data or {}).get(i, {}),
             "computed_by": computed_by} for i, v in values.items()]
    for start in range(0, len(rows), INSERT_CHUNK):
        session.execute(insert(Signal), rows[start:start + INSERT_CHUNK])
    return len(rows)


def _cluster_sizes(clusters: dict[int, int]) -> dict[int, dict[str, Any]]:
    sizes: dict[int, int] = defaultdict(int)
    for cluster in clusters.values():
        sizes[cluster] += 1
    return {i: {"size": sizes[c]} for i, c in clusters.items()}


def compute_duplicates(actor: Actor | None, near_threshold: float = DEFAULT_NEAR_THRESHOLD,
                       embeddings: np.ndarray | None = None, progress=None) -> dict[str, int]:
    """Recompute exact and near-duplicate clusters over every example; how many examples are in one."""
    require_admin(actor)
    with read_session() as session:
        ids, texts = _all_texts(session)
    exact = exact_duplicate_clusters(ids, texts)
    if progress:
        progress("embedding texts")
    vectors = embed(texts, batch_size=128) if embeddings is None else embeddings
    near = clusters_from_labels(ids, near_duplicate_labels(vectors, near_threshold)) if ids else {}
    by = f"minilm+faiss cos>={near_threshold}"
    with write_session() as session:
        replace_signals(session, EXACT, exact, _cluster_sizes(exact), "normalised text")
        replace_signals(session, NEAR, near, _cluster_sizes(near), by)
    return {"examples": len(ids), "exact_duplicates": len(exact), "near_duplicates": len(near),
            "near_clusters": len(set(near.values()))}


def jaccard(a: set[str], b: set[str]) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def reviewed_label_sets(session) -> dict[int, list[set[str]]]:
    """example id -> one label set per submitted multi-label response (verification questions)."""
    query = (
        select(CampaignItem.example_id, Response.value)
        .join(Response, Response.item_id == CampaignItem.id)
        .join(Question, Question.id == Response.question_id)
        .where(Question.kind == "multi_label", Response.status == ResponseStatus.submitted,
               CampaignItem.example_id.is_not(None))
    )
    found: dict[int, list[set[str]]] = defaultdict(list)
    for example_id, value in session.execute(query).tuples():
        found[example_id].append({str(v) for v in (value or [])})
    return found


def compute_review_agreement(actor: Actor | None) -> dict[str, int]:
    """Recompute the two agreement signals from submitted verification responses."""
    require_admin(actor)
    with read_session() as session:
        sets = reviewed_label_sets(session)
        cut = threshold(session)
        ids = sorted(sets)
        teacher = suggestion_scores(session, ids)
    among: dict[int, float] = {}
    with_teacher: dict[int, float] = {}
    for example_id in ids:
        answers = sets[example_id]
        if len(answers) >= 2:
            among[example_id] = float(np.mean([jaccard(a, b) for a, b in combinations(answers, 2)]))
        labels = {n for n, s in teacher.get(example_id, {}).items() if s >= cut}
        with_teacher[example_id] = float(np.mean([jaccard(a, labels) for a in answers]))
    with write_session() as session:
        replace_signals(session, AGREEMENT, among, computed_by="mean pairwise Jaccard")
        replace_signals(session, TEACHER_AGREEMENT, with_teacher, computed_by="mean Jaccard with teacher")
    return {"agreement_examples": len(among), "reviewed_examples": len(ids)}


def signal_kinds() -> list[str]:
    with read_session() as session:
        return sorted(session.scalars(select(Signal.kind).distinct()))


# --------------------------------------------------------------------------- the job

SIGNAL_PARTS = ("duplicates", "review", "diversity")


def enqueue_signals(actor: Actor | None, parts: tuple[str, ...] = SIGNAL_PARTS,
                    near_threshold: float = DEFAULT_NEAR_THRESHOLD) -> int:
    require_admin(actor)
    unknown = set(parts) - set(SIGNAL_PARTS)
    if unknown or not parts:
        raise ValueError(f"Choose signals among {', '.join(SIGNAL_PARTS)}.")
    return jobs.enqueue(actor, "curate_signals", {"parts": list(parts), "near_threshold": near_threshold},
                        title=f"Recompute signals: {', '.join(parts)}")


@jobs.handler("curate_signals")
def run_signals_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """Each part replaces its own signals in one transaction: a rerun after a crash is harmless."""
    parts = [p for p in ctx.payload.get("parts", SIGNAL_PARTS) if p in SIGNAL_PARTS]
    ctx.set_total(len(parts))
    result: dict[str, Any] = {}
    for done, part in enumerate(parts, start=1):
        ctx.check_cancel()
        if part == "duplicates":
            result.update(compute_duplicates(ctx.actor,
                                             float(ctx.payload.get("near_threshold", DEFAULT_NEAR_THRESHOLD))))
        elif part == "review":
            result.update(compute_review_agreement(ctx.actor))
        else:
            result.update(diversity.compute_diversity(ctx.actor))
        ctx.set_progress(done, len(parts), note=f"{part} done")
    return result
