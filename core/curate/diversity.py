"""Diversity of the generated utterances per emotion and per character, and the label distribution.

distinct-n = distinct n-grams / all n-grams; self-BLEU = mean BLEU-4 of each utterance against
the others of its group (higher = more repetitive); embedding distance = mean pairwise cosine
distance of MiniLM embeddings. Self-BLEU and distances use a seeded sample per group, so large
groups cost the same as small ones.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import delete, func, insert, select

from core import embeddings
from core.auth import Actor, require_admin
from core.curate.labels import chunks, current_labels
from core.labels import shown_by, threshold
from db.models import (
    CurationDecision, Example, GroupSignal, Label, Question, Response, ResponseStatus, Suggestion,
)
from db.session import read_session, write_session

KIND = "diversity"
METRICS = ("distinct_1", "distinct_2", "self_bleu", "embedding_distance")
SAMPLE = 60  # utterances per group for self-BLEU and embedding distance
MIN_GROUP = 2

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def distinct_n(texts: list[str], n: int) -> float:
    grams: Counter = Counter()
    for text in texts:
        words = tokens(text)
        grams.update(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def self_bleu(texts: list[str]) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    tokenised = [tokens(t) for t in texts]
    if len(tokenised) < 2:
        return 0.0
    smooth = SmoothingFunction().method1
    scores = [sentence_bleu(tokenised[:i] + tokenised[i + 1:], hyp, smoothing_function=smooth)
              for i, hyp in enumerate(tokenised)]
    return float(np.mean(scores))


def mean_pairwise_distance(vectors: np.ndarray) -> float:
    n = len(vectors)
    if n < 2:
        return 0.0
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    return float(1.0 - (sims.sum() - np.trace(sims)) / (n * (n - 1)))


def group_metrics(texts: list[str], vectors: np.ndarray | None, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(texts), size=min(SAMPLE, len(texts)), replace=False)
    sample = [texts[i] for i in sorted(pick)]
    out = {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2), "self_bleu": self_bleu(sample)}
    if vectors is not None:
        out["embedding_distance"] = mean_pairwise_distance(vectors[sorted(pick)])
    return out


def _groups(session) -> tuple[dict[str, dict[str, list[int]]], dict[int, str]]:
    """{'emotion': {label: ids}, 'character': {character id: ids}} over generated examples; and texts."""
    rows = session.execute(select(Example.id, Example.text, Example.character_id).where(
        Example.kind != "imported").order_by(Example.id)).tuples().all()
    texts = {i: t for i, t, _ in rows}
    ids = list(texts)
    labels = current_labels(ids, session)
    groups: dict[str, dict[str, list[int]]] = {"emotion": defaultdict(list), "character": defaultdict(list)}
    for example_id, _, character_id in rows:
        for name in labels[example_id].labels:
            groups["emotion"][name].append(example_id)
        if character_id is not None:
            groups["character"][str(character_id)].append(example_id)
    return groups, texts


def compute_diversity(actor: Actor | None, embed: bool = True, seed: int = 0) -> dict[str, int]:
    """Recompute the diversity group signals (replacing the previous ones)."""
    require_admin(actor)
    with read_session() as session:
        groups, texts = _groups(session)
    ids = list(texts)
    position = {i: p for p, i in enumerate(ids)}
    vectors = embeddings.embed([texts[i] for i in ids], batch_size=128) if embed and ids else None
    rows: list[dict[str, Any]] = []
    for group_by, members in groups.items():
        for key, group_ids in members.items():
            if len(group_ids) < MIN_GROUP:
                continue
            group_vectors = vectors[[position[i] for i in group_ids]] if vectors is not None else None
            for metric, value in group_metrics([texts[i] for i in group_ids], group_vectors, seed).items():
                rows.append({"kind": KIND, "group_by": group_by, "group_key": key, "metric": metric,
                             "value": value, "size": len(group_ids), "computed_by": "minilm" if embed else ""})
    with write_session() as session:
        session.execute(delete(GroupSignal).where(GroupSignal.kind == KIND))
        if rows:
            session.execute(insert(GroupSignal), rows)
    return {"diversity_groups": len({(r["group_by"], r["group_key"]) for r in rows})}


@dataclass(frozen=True)
class DiversityRow:
    group_by: str
    group_key: str
    size: int
    metrics: dict[str, float]


def diversity_table(group_by: str) -> list[DiversityRow]:
    """The stored diversity figures of one grouping (emotion or character), largest groups first."""
    query = select(GroupSignal).where(GroupSignal.kind == KIND, GroupSignal.group_by == group_by)
    found: dict[str, DiversityRow] = {}
    with read_session() as session:
        for row in session.scalars(query):
            entry = found.setdefault(row.group_key, DiversityRow(row.group_by, row.group_key, row.size, {}))
            entry.metrics[row.metric] = row.value
    return sorted(found.values(), key=lambda r: (-r.size, r.group_key))


# --------------------------------------------------------------------------- label distribution


def teacher_label_counts(session, kinds: tuple[str, ...] = ()) -> dict[str, int]:
    """Label -> examples whose suggestions reach the threshold for it (what the teacher says)."""
    query = (select(Label.name, func.count(func.distinct(Example.id)))
             .join(Suggestion, Suggestion.label_id == Label.id)
             .join(Example, shown_by(Example))
             .where(Suggestion.score >= threshold(session), ~Suggestion.agent.startswith("gold:"))
             .group_by(Label.name))
    if kinds:
        query = query.where(Example.kind.in_(list(kinds)))
    return {name: int(n) for name, n in session.execute(query).tuples()}


def reviewed_label_counts(session) -> dict[str, int]:
    """Label -> how many submitted verification answers chose it."""
    query = (select(Response.value).join(Question, Question.id == Response.question_id)
             .where(Question.kind == "multi_label", Response.status == ResponseStatus.submitted))
    counts: Counter = Counter()
    for value in session.scalars(query):
        counts.update(str(v) for v in (value or []))
    return dict(counts)


def current_label_counts(session, example_ids: list[int] | None = None) -> dict[str, int]:
    """Label -> examples whose CURRENT labels include it (relabels included)."""
    if example_ids is None:
        example_ids = list(session.scalars(select(Example.id).where(Example.status != "rejected")))
    counts: Counter = Counter()
    for part in chunks(example_ids, 20_000):
        for current in current_labels(part, session).values():
            counts.update(current.labels)
    return dict(counts)


def against_target(counts: dict[str, int], labels: list[str], target: dict[str, float] | None = None) -> list[dict]:
    """Rows of label, count, share and target share (uniform unless given), in taxonomy order."""
    total = sum(counts.values()) or 1
    if not target:
        target = {name: 1 / len(labels) for name in labels} if labels else {}
    target_total = sum(target.values()) or 1
    return [{"label": name, "count": counts.get(name, 0), "share": counts.get(name, 0) / total,
             "target_share": target.get(name, 0) / target_total} for name in labels]



def label_counts_for_page(actor) -> dict[str, int]:
    """Current label counts of every example not rejected, in two SQL aggregates (no per-example work)."""
    from core.auth import require_page
    from core.curate.filters import latest_relabel_id

    require_page(actor, "curate")
    with read_session() as session:
        cut = threshold(session)
        alive = Example.status.not_in(["rejected", "evaluation"])
        teacher = (select(Label.name, func.count(func.distinct(Example.id)))
                   .join(Suggestion, Suggestion.label_id == Label.id)
                   .join(Example, shown_by(Example))
                   .where(Suggestion.score >= cut, alive, latest_relabel_id().is_(None))
                   .group_by(Label.name))
        counts: Counter = Counter({name: int(n) for name, n in session.execute(teacher).tuples()})
        relabels = select(CurationDecision.labels).where(CurationDecision.id.in_(
            select(func.max(CurationDecision.id)).join(Example, Example.id == CurationDecision.example_id)
            .where(CurationDecision.action == "relabel", CurationDecision.undone_at.is_(None), alive)
            .group_by(CurationDecision.example_id)))
        for labels in session.scalars(relabels):
            counts.update(labels or [])
    return dict(counts)
