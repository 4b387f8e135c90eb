"""Dataset versions: a frozen, hashed selection of examples with their labels and splits.

Freezing reads the CURRENT labels (core.curate.labels) into DatasetMember.labels / .scores, so
later curation never changes a version. The content hash covers every member's text, context,
labels and split plus the taxonomy: freezing the same content twice gives back the same version.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from core import inline, jobs
from core.auth import Actor, require_admin, require_page
from core.curate import filters
from core.curate.filters import CurationFilter
from core.curate.labels import current_labels, id_windows
from core.curate.signals import EXACT, NEAR
from core.curate.sql import raw_rows
from core.datasets.splits import SPLITS, assign_splits, check_ratios, default_ratios
from db.models import DatasetMember, DatasetVersion, Example, Label, Signal, Taxonomy, User
from db.session import read_session, write_session

EXCLUDED_BY_DEFAULT = ("rejected", "evaluation")
INSERT_CHUNK = 5_000
DEFAULT_SEED = 13


class VersionError(ValueError):
    """A version that cannot be frozen or found; the message says why."""


@dataclass(frozen=True)
class VersionView:
    id: int
    name: str
    taxonomy: str
    size: int
    content_hash: str
    is_evaluation_set: bool
    split_counts: dict[str, int]
    split_config: dict[str, Any]
    selection: dict[str, Any]
    created_by: str | None
    created_at: datetime
    existed: bool = False  # freeze() found an identical version


class Member(NamedTuple):  # a tuple: one per example of the version, so cheap to make
    example_id: int
    kind: str
    text: str
    context: str | None
    story_id: int | None
    parent_id: int | None
    labels: tuple[str, ...]
    scores: dict[str, float]


def _selection(session: Session, selection: CurationFilter) -> list[int]:
    if not selection.statuses:
        statuses = set(session.scalars(select(Example.status).distinct())) - set(EXCLUDED_BY_DEFAULT)
        if not statuses:
            return []
        selection = CurationFilter(**{**filters.as_dict(selection), "statuses": tuple(sorted(statuses))})
    return filters.matching_ids(session, selection)


def _taxonomy(session: Session, taxonomy_id: int | None, ids: list[int]) -> Taxonomy:
    if taxonomy_id is None:
        taxonomy_id = session.scalar(
            select(Example.taxonomy_id).where(Example.id.in_(ids[:5000]), Example.taxonomy_id.is_not(None))
            .group_by(Example.taxonomy_id).order_by(func.count().desc()).limit(1))
    taxonomy = session.get(Taxonomy, taxonomy_id) if taxonomy_id is not None else None
    if taxonomy is None:
        taxonomy = session.scalar(select(Taxonomy).where(Taxonomy.name == "GoEmotions"))
    if taxonomy is None:
        raise VersionError("No taxonomy to freeze the labels against.")
    return taxonomy


def load_members(session: Session, ids: list[int], label_names: set[str]) -> list[Member]:
    """The examples with their current labels (restricted to the taxonomy), in id order."""
    labels = current_labels(ids, session)
    wanted = set(ids)
    members = []
    for low, high, _ in id_windows(ids):
        rows = raw_rows(session, select(Example.id, Example.kind, Example.text, Example.context, Example.story_id,
                                        Example.parent_id).where(Example.id.between(low, high)).order_by(Example.id))
        for i, kind, text, context, story_id, parent_id in rows:
            if i not in wanted:
                continue
            current = labels[i]
            members.append(Member(
                i, kind, text, context, story_id, parent_id,
                tuple(n for n in current.labels if n in label_names),
                {n: s for n, s in current.scores.items() if n in label_names}))
    return members


def cluster_keys(session: Session, ids: list[int]) -> dict[int, list[tuple[str, int]]]:
    """example id -> its duplicate-cluster keys (exact and near)."""
    found: dict[int, list[tuple[str, int]]] = {}
    wanted = set(ids)
    conn = session.connection()
    for low, high, _ in id_windows(ids):
        for example_id, kind, value in conn.execute(select(Signal.example_id, Signal.kind, Signal.value).where(
                Signal.example_id.between(low, high), Signal.kind.in_([EXACT, NEAR]))):
            if example_id in wanted:
                found.setdefault(example_id, []).append((kind, int(value)))
    return found


def grouping_keys(members: list[Member], clusters: dict[int, list[tuple[str, int]]]) -> list[list]:
    """What ties examples together: the story, duplicate clusters, and a rewrite's parent."""
    keys = []
    for m in members:
        k: list = [("example", m.example_id)]
        if m.story_id is not None:
            k.append(("story", m.story_id))
        if m.parent_id is not None:
            k.append(("example", m.parent_id))
        k.extend(clusters.get(m.example_id, []))
        keys.append(k)
    return keys


def content_hash(taxonomy: str, members: list[Member], splits: list[str]) -> str:
    digest = hashlib.sha256(taxonomy.encode())
    for m, split in zip(members, splits):
        # Unit and record separators keep fields apart (they do not occur in normalised labels).
        digest.update(f"{m.example_id}\x1f{m.text}\x1f{m.context}\x1f{','.join(m.labels)}\x1f{split}\x1e"
                      .encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def insert_members(session: Session, version_id: int, members: list[Member], splits: list[str]) -> None:
    """Many rows through the driver's executemany: JSON serialised here (label lists once each)."""
    connection = session.connection()
    mark = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": ":{}"}.get(connection.dialect.paramstyle)
    if mark is None:
        raise VersionError(f"unsupported database driver paramstyle {connection.dialect.paramstyle!r}")
    marks = [mark.format(i + 1) for i in range(5)]
    if connection.dialect.name == "postgresql":
        marks[3:] = [f"CAST({m} AS JSON)" for m in marks[3:]]
    statement = ("INSERT INTO dataset_members (version_id, example_id, split, labels, scores) "
                 f"VALUES ({', '.join(marks)})")
    dumped: dict[tuple[str, ...], str] = {}
    rows = []
    for m, split in zip(members, splits):
        labels = dumped.get(m.labels)
        if labels is None:
            labels = dumped[m.labels] = json.dumps(list(m.labels))
        rows.append((version_id, m.example_id, split, labels, json.dumps(m.scores)))
    for start in range(0, len(rows), INSERT_CHUNK):
        connection.exec_driver_sql(statement, rows[start:start + INSERT_CHUNK])


def freeze(actor: Actor | None, name: str, selection: CurationFilter | None = None, *,
           taxonomy_id: int | None = None, ratios: dict[str, float] | None = None, seed: int = DEFAULT_SEED,
           licence: str = "", description: str = "") -> VersionView:
    """Freeze the examples matching `selection` (not rejected ones, unless asked) into a version.

    Everything is read and split in a read transaction; the write lock is held only to store the
    version, so a large freeze does not stall the workers' commits.
    """
    user_id = require_admin(actor).id
    name = " ".join((name or "").split())
    if not name:
        raise VersionError("A dataset version needs a name.")
    selection = selection or CurationFilter()
    with read_session() as session:
        ids = _selection(session, selection)
        if not ids:
            raise VersionError("No example matches this selection: nothing to freeze.")
        taxonomy = _taxonomy(session, taxonomy_id, ids)
        taxonomy_id, taxonomy_name = taxonomy.id, taxonomy.name
        label_names = set(session.scalars(select(Label.name).where(Label.taxonomy_id == taxonomy_id)))
        members = load_members(session, ids, label_names)
        clusters = cluster_keys(session, ids)
    kinds = {m.kind for m in members}
    ratios = check_ratios(ratios or default_ratios(kinds))
    splits = assign_splits([m.labels for m in members], grouping_keys(members, clusters), ratios, seed)
    digest = content_hash(taxonomy_name, members, splits)
    with write_session() as session:
        existing = session.scalar(select(DatasetVersion.id).where(DatasetVersion.content_hash == digest))
        if existing is not None:
            return _view(session, session.get(DatasetVersion, existing), existed=True)
        version = DatasetVersion(
            name=name, taxonomy_id=taxonomy_id, selection=selection.to_dict(), content_hash=digest,
            size=len(members), created_by_id=user_id,
            split_config={"ratios": ratios, "seed": seed, "grouping": ["story", "near_dup_cluster",
                                                                        "exact_dup_cluster", "parent"],
                          "stratification": "iterative (multi-label)", "licence": licence,
                          "description": description, "kinds": sorted(kinds),
                          "duplicate_cluster_members": len(clusters)})
        session.add(version)
        session.flush()
        insert_members(session, version.id, members, splits)
        return _view(session, version)




def selection_size(actor: Actor | None, selection: CurationFilter) -> int:
    require_admin(actor)
    with read_session() as session:
        return len(_selection(session, selection))


def enqueue_freeze(actor: Actor | None, name: str, selection: CurationFilter, **options: Any) -> int:
    """Queue a freeze for the worker (large selections); options as for `freeze`."""
    require_admin(actor)
    if not " ".join((name or "").split()):
        raise VersionError("A dataset version needs a name.")
    check_ratios(options.get("ratios") or {"train": 1.0})
    payload = {"name": name, "selection": selection.to_dict(), **options}
    return jobs.enqueue(actor, "dataset_freeze", payload, title=f"Freeze dataset version {name}")


def freeze_or_enqueue(actor: Actor | None, name: str, selection: CurationFilter | None = None,
                      **options: Any) -> inline.Outcome[VersionView]:
    """What the Export page's Freeze does: a selection of up to `inline.EXAMPLES` examples is frozen now
    (the version), a larger one by the worker (the job id). Options as for `freeze`; without `ratios`
    the split is `splits.default_ratios` of the frozen examples' kinds."""
    selection = selection or CurationFilter()
    if inline.examples_run_now(selection_size(actor, selection)):
        return inline.Outcome(report=freeze(actor, name, selection, **options))
    return inline.Outcome(job_ids=(enqueue_freeze(actor, name, selection, **options),))


@jobs.handler("dataset_freeze")
def run_freeze_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """One transaction stores the version: a retry after a crash either finds it (same hash) or makes it."""
    p = dict(ctx.payload)
    ctx.set_total(1, note="reading and splitting")
    try:
        view = freeze(ctx.actor, p.pop("name"), CurationFilter.from_dict(p.pop("selection")), **p)
    except VersionError as error:
        raise jobs.JobFailed(str(error)) from None
    ctx.set_progress(1, 1, note=f"version {view.id}: {view.size:,} examples")
    return {"version_id": view.id, "size": view.size, "existed": view.existed, "splits": view.split_counts}


def _view(session: Session, version: DatasetVersion, existed: bool = False) -> VersionView:
    counts = dict(session.execute(select(DatasetMember.split, func.count()).where(
        DatasetMember.version_id == version.id).group_by(DatasetMember.split)).tuples().all())
    taxonomy = session.get(Taxonomy, version.taxonomy_id) if version.taxonomy_id else None
    user = session.get(User, version.created_by_id) if version.created_by_id else None
    return VersionView(version.id, version.name, taxonomy.name if taxonomy else "", version.size,
                       version.content_hash or "", version.is_evaluation_set,
                       {s: int(counts.get(s, 0)) for s in SPLITS}, dict(version.split_config or {}),
                       dict(version.selection or {}), user.username if user else None, version.created_at, existed)


def list_versions(actor: Actor | None) -> list[VersionView]:
    require_page(actor, "export")
    with read_session() as session:
        versions = session.scalars(select(DatasetVersion).order_by(DatasetVersion.id.desc())).all()
        return [_view(session, v) for v in versions]


def get_version(actor: Actor | None, version_id: int) -> VersionView:
    require_page(actor, "export")
    with read_session() as session:
        version = session.get(DatasetVersion, version_id)
        if version is None:
            raise VersionError(f"No dataset version with id {version_id}.")
        return _view(session, version)


def label_split_counts(version_id: int) -> dict[str, Counter]:
    """split -> Counter of labels (from the frozen members)."""
    out: dict[str, Counter] = {s: Counter() for s in SPLITS}
    with read_session() as session:
        for split, labels in session.execute(select(DatasetMember.split, DatasetMember.labels).where(
                DatasetMember.version_id == version_id)).tuples():
            out.setdefault(split, Counter()).update(labels or [])
    return out


def delete_version(actor: Actor | None, version_id: int) -> None:
    require_admin(actor)
    with write_session() as session:
        if session.execute(delete(DatasetVersion).where(DatasetVersion.id == version_id)).rowcount != 1:
            raise VersionError(f"No dataset version with id {version_id}.")
