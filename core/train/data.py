"""A dataset version as training data: texts, contexts and label matrices per split.

Reads the frozen members (labels and soft scores as they were when the version was frozen), in
the taxonomy's label order. A contextual example's first segment is the context followed by the
character's description (as in Emo Pillars), so the classifier reads the pair (context + description,
utterance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from core.train.classifier import Split
from db.models import Character, DatasetMember, DatasetVersion, Example, Label, Taxonomy
from db.session import read_session

SPLITS = ("train", "dev", "test")


@dataclass
class VersionData:
    version_id: int
    name: str
    content_hash: str
    taxonomy: str
    labels: list[str]
    splits: dict[str, Split]  # hard labels as 0/1 targets
    soft: dict[str, np.ndarray]  # the frozen scores, (n, labels); a hard label without a score counts 1

    def split(self, name: str, soft: bool = False) -> Split:
        base = self.splits[name]
        if not soft:
            return base
        return Split(base.texts, np.maximum(self.soft[name], base.targets), base.contexts, base.ids)

    def all_splits(self) -> Split:
        """Every member, train then dev then test (cross-validation over the whole version)."""
        texts: list[str] = []
        contexts: list[str | None] = []
        ids: list[int] = []
        targets = []
        for name in SPLITS:
            part = self.splits.get(name)
            if part is None or not len(part):
                continue
            texts.extend(part.texts)
            contexts.extend(part.contexts or [None] * len(part))
            ids.extend(part.ids)
            targets.append(part.targets)
        matrix = np.concatenate(targets) if targets else np.zeros((0, len(self.labels)), dtype=np.float32)
        return Split(texts, matrix, contexts if any(contexts) else None, ids)

    def counts(self) -> dict[str, int]:
        return {name: len(split) for name, split in self.splits.items()}


def first_segment(context: str | None, character_description: str | None) -> str | None:
    """The classifier's first segment: context + character description (None without a context)."""
    context = (context or "").strip()
    if not context:
        return None
    description = (character_description or "").strip()
    return f"{context} {description}" if description else context


def load_version(version_id: int) -> VersionData:
    with read_session() as s:
        version = s.get(DatasetVersion, version_id)
        if version is None:
            raise ValueError(f"no dataset version {version_id}")
        taxonomy = s.get(Taxonomy, version.taxonomy_id) if version.taxonomy_id else None
        labels = list(s.scalars(select(Label.name).where(Label.taxonomy_id == version.taxonomy_id)
                                .order_by(Label.position, Label.id)))
        rows = s.execute(
            select(Example.id, DatasetMember.split, Example.text, Example.context, Character.description,
                   DatasetMember.labels, DatasetMember.scores)
            .join(DatasetMember, DatasetMember.example_id == Example.id)
            .outerjoin(Character, Character.id == Example.character_id)
            .where(DatasetMember.version_id == version_id)
            .order_by(Example.id)
        ).all()
        name, digest = version.name, version.content_hash or ""
    if not labels:
        raise ValueError(f"dataset version {version_id} has no taxonomy labels")
    column = {n: j for j, n in enumerate(labels)}
    grouped: dict[str, list] = {s: [] for s in SPLITS}
    for row in rows:
        grouped.setdefault(row[1], []).append(row)
    splits, soft = {}, {}
    for split, members in grouped.items():
        hard = np.zeros((len(members), len(labels)), dtype=np.float32)
        scores = np.zeros_like(hard)
        for i, (_, _, _, _, _, names, score) in enumerate(members):
            for n in names or []:
                if n in column:
                    hard[i, column[n]] = 1.0
            for n, value in (score or {}).items():
                if n in column and value is not None:
                    scores[i, column[n]] = float(np.clip(value, 0.0, 1.0))
        contexts = [first_segment(m[3], m[4]) for m in members]
        splits[split] = Split([m[2] for m in members], hard,
                              contexts if any(c for c in contexts) else None, [m[0] for m in members])
        soft[split] = scores
    return VersionData(version_id, name, digest, taxonomy.name if taxonomy else "", labels, splits, soft)


def version_labels(version_id: int) -> list[str]:
    """The label names of a version's taxonomy, in the taxonomy's order (the classifier's columns)."""
    with read_session() as s:
        version = s.get(DatasetVersion, version_id)
        if version is None:
            raise ValueError(f"no dataset version {version_id}")
        return list(s.scalars(select(Label.name).where(Label.taxonomy_id == version.taxonomy_id)
                              .order_by(Label.position, Label.id)))
