"""Import labelled data sets as curated examples or as evaluation sets.

Labels are mapped onto a taxonomy: a label of that name, an OOT mapping decided as 'map', or a
label of another taxonomy grouped into one of it (GoEmotions 'annoyance' -> Ekman 'anger').
Anything else is reported as unknown and left out. The whole set is stored in one transaction:
a bad file saves nothing. Imported examples have kind 'imported', source = the data set name and
gold suggestions (agent 'gold:<source>', score 1.0); an evaluation set also gets a dataset
version with is_evaluation_set, and its examples the status 'evaluation' so that they never slip
into a training set by accident.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, aliased

from core import inline, jobs
from core.auth import Actor, require_admin
from core.datasets.readers import ImportFileError, LabelledRecord, parse_labelled_file
from core.taxonomy import normalise_label
from db.models import (
    DatasetMember, DatasetVersion, Example, Label, LabelGrouping, OOTAction, OOTMapping, Suggestion, Taxonomy, Upload,
)
from db.session import read_session, write_session

MAX_SOURCE_CHARS = 255
INSERT_CHUNK = 2_000
EVALUATION_STATUS = "evaluation"


@dataclass(frozen=True)
class LabelledImportReport:
    source: str
    examples_added: int
    duplicates_skipped: int
    unlabelled: int
    label_counts: dict[str, int]
    unknown_labels: dict[str, int] = field(default_factory=dict)
    version_id: int | None = None

    def summary(self) -> str:
        text = (f"{self.examples_added:,} examples added from {self.source!r}, "
                f"{self.duplicates_skipped:,} duplicates skipped, {self.unlabelled:,} without a known label")
        if self.unknown_labels:
            unknown = ", ".join(f"{k} ({v})" for k, v in sorted(self.unknown_labels.items(), key=lambda kv: -kv[1]))
            text += f"; unknown labels left out: {unknown}"
        if self.version_id:
            text += f"; evaluation set = dataset version {self.version_id}"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "examples_added": self.examples_added,
                "duplicates_skipped": self.duplicates_skipped, "unlabelled": self.unlabelled,
                "label_counts": self.label_counts, "unknown_labels": self.unknown_labels,
                "version_id": self.version_id}


def label_map(session: Session, taxonomy_id: int) -> dict[str, tuple[int, str]]:
    """normalised name -> (label id, label name) of the taxonomy, through names, OOT maps and groupings."""
    labels = {name: (label_id, name) for label_id, name in session.execute(
        select(Label.id, Label.name).where(Label.taxonomy_id == taxonomy_id)).tuples()}
    by_id = {label_id: (label_id, name) for label_id, name in labels.values()}
    mapped: dict[str, tuple[int, str]] = {}
    source, target = aliased(Label), aliased(Label)
    for source_name, target_id in session.execute(
            select(source.name, target.id).join(LabelGrouping, LabelGrouping.source_label_id == source.id)
            .join(target, target.id == LabelGrouping.target_label_id)
            .where(target.taxonomy_id == taxonomy_id)).tuples():
        mapped.setdefault(source_name, by_id[target_id])
    for source_name, target_id in session.execute(
            select(OOTMapping.source_name, OOTMapping.target_label_id).where(
                OOTMapping.taxonomy_id == taxonomy_id, OOTMapping.action == OOTAction.map,
                OOTMapping.target_label_id.is_not(None))).tuples():
        if target_id in by_id:
            mapped[source_name] = by_id[target_id]
    return mapped | labels  # the taxonomy's own names win


def _check_source(source: str) -> str:
    source = " ".join((source or "").split())
    if not source:
        raise ImportFileError("An imported data set needs a name (its source).")
    if len(source) > MAX_SOURCE_CHARS:
        raise ImportFileError(f"A data set name is at most {MAX_SOURCE_CHARS} characters.")
    return source


def import_records(actor: Actor | None, records: list[LabelledRecord], *, source: str, taxonomy_id: int,
                   evaluation: bool = False, licence: str = "", filename: str = "") -> LabelledImportReport:
    """Store the records (all or nothing); duplicates of the same source are skipped."""
    require_admin(actor)
    source = _check_source(source)
    if not records:
        raise ImportFileError(f"{source}: no records to import")
    with write_session() as session:
        return _store(session, actor.id, records, source, taxonomy_id, evaluation, licence, filename)


def _store(session: Session, user_id: int | None, records: list[LabelledRecord], source: str, taxonomy_id: int,
           evaluation: bool, licence: str, filename: str) -> LabelledImportReport:
    if session.get(Taxonomy, taxonomy_id) is None:
        raise ImportFileError(f"No taxonomy with id {taxonomy_id}.")
    mapping = label_map(session, taxonomy_id)
    fresh, duplicates = _new_records(session, records, source)
    unknown: Counter = Counter()
    resolved: list[list[tuple[int, str]]] = []
    for record in fresh:
        found = {}
        for raw in record.labels:
            hit = mapping.get(normalise_label(raw))
            if hit is None:
                unknown[normalise_label(raw)] += 1
            else:
                found[hit[0]] = hit
        resolved.append(sorted(found.values(), key=lambda h: h[1]))
    status = EVALUATION_STATUS if evaluation else "accepted"
    ids = _insert_examples(session, fresh, source, taxonomy_id, status, licence, filename)
    agent = f"gold:{source}"
    suggestions = [{"example_id": i, "label_id": label_id, "score": 1.0, "agent": agent}
                   for i, labels in zip(ids, resolved) for label_id, _ in labels]
    for start in range(0, len(suggestions), INSERT_CHUNK):
        session.execute(insert(Suggestion), suggestions[start:start + INSERT_CHUNK])
    counts = Counter(name for labels in resolved for _, name in labels)
    version_id = None
    if evaluation and ids:
        version_id = _evaluation_version(session, user_id, source, taxonomy_id, fresh, ids, resolved, licence)
    return LabelledImportReport(source, len(ids), duplicates, sum(1 for r in resolved if not r), dict(counts),
                                dict(unknown), version_id)


def _key(text: str) -> str:
    """Same text whatever the spacing and case (punctuation counts: 'Wow' and 'Wow!' differ)."""
    return " ".join(text.lower().split())


def _new_records(session: Session, records: list[LabelledRecord], source: str) -> tuple[list[LabelledRecord], int]:
    seen = {_key(t) + "\x00" + _key(c or "") for t, c in session.execute(
        select(Example.text, Example.context).where(Example.source == source)).tuples()}
    fresh = []
    for record in records:
        key = _key(record.text) + "\x00" + _key(record.context or "")
        if key not in seen:
            seen.add(key)
            fresh.append(record)
    return fresh, len(records) - len(fresh)


def _insert_examples(session: Session, records: list[LabelledRecord], source: str, taxonomy_id: int, status: str,
                     licence: str, filename: str) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(records), INSERT_CHUNK):
        rows = [{"kind": "imported", "text": r.text, "context": r.context, "source": source, "stage": "import",
                 "taxonomy_id": taxonomy_id, "status": status,
                 "meta": {"ref": r.ref, "split": r.split, "file": filename, "licence": licence}}
                for r in records[start:start + INSERT_CHUNK]]
        ids.extend(session.scalars(insert(Example).returning(Example.id, sort_by_parameter_order=True), rows))
    return ids


def _evaluation_version(session: Session, user_id: int | None, source: str, taxonomy_id: int,
                        records: list[LabelledRecord], ids: list[int], resolved: list[list[tuple[int, str]]],
                        licence: str) -> int:
    splits = [r.split if r.split in ("train", "dev", "test") else "test" for r in records]
    digest = hashlib.sha256()
    for example_id, record, labels, split in zip(ids, records, resolved, splits):
        digest.update(json.dumps([example_id, record.text, record.context, [n for _, n in labels], split]).encode())
    version = DatasetVersion(
        name=f"{source} (evaluation)", taxonomy_id=taxonomy_id, selection={"sources": [source]},
        split_config={"evaluation": True, "from_source": True, "licence": licence},
        content_hash=digest.hexdigest(), size=len(ids), is_evaluation_set=True, created_by_id=user_id)
    session.add(version)
    session.flush()
    members = [{"version_id": version.id, "example_id": i, "split": split, "labels": [n for _, n in labels],
                "scores": {n: 1.0 for _, n in labels}} for i, labels, split in zip(ids, resolved, splits)]
    for start in range(0, len(members), INSERT_CHUNK):
        session.execute(insert(DatasetMember), members[start:start + INSERT_CHUNK])
    return version.id


def import_file(actor: Actor | None, filename: str, data: bytes, *, source: str, taxonomy_id: int,
                evaluation: bool = False, licence: str = "", fmt: str = "auto", **options) -> LabelledImportReport:
    """Parse one uploaded file and import it now (small files; large ones go through `enqueue_file`)."""
    require_admin(actor)
    records = parse_labelled_file(filename, data, fmt, **options)
    return import_records(actor, records, source=source, taxonomy_id=taxonomy_id, evaluation=evaluation,
                          licence=licence, filename=PurePath(filename).name)


def import_hf_folder(actor: Actor | None, path: str, *, source: str, taxonomy_id: int, evaluation: bool = False,
                     licence: str = "", text_column: str = "text", label_column: str = "") -> LabelledImportReport:
    from core.datasets.readers import read_hf_folder

    require_admin(actor)
    records = read_hf_folder(path, text_column=text_column, label_column=label_column)
    return import_records(actor, records, source=source, taxonomy_id=taxonomy_id, evaluation=evaluation,
                          licence=licence, filename=PurePath(path).name)


def enqueue_file(actor: Actor | None, filename: str, data: bytes, *, source: str, taxonomy_id: int,
                 evaluation: bool = False, licence: str = "", fmt: str = "auto", **options) -> int:
    """Check the file now (a bad file is reported at once), then let the worker store it."""
    require_admin(actor)
    source = _check_source(source)
    name = PurePath(filename).name
    parse_labelled_file(name, data, fmt, **options)
    with write_session() as session:
        upload = Upload(filename=name, content=data, sha256=hashlib.sha256(data).hexdigest(), created_by_id=actor.id)
        session.add(upload)
        session.flush()
        payload = {"upload_id": upload.id, "source": source, "taxonomy_id": taxonomy_id, "evaluation": evaluation,
                   "licence": licence, "format": fmt, "options": options}
        return jobs.enqueue(actor, "import_labelled", payload, title=f"Import labelled {name} as {source}",
                            session=session)


def import_or_enqueue(actor: Actor | None, filename: str, data: bytes, *, source: str, taxonomy_id: int,
                      evaluation: bool = False, licence: str = "", fmt: str = "auto",
                      **options) -> inline.Outcome[LabelledImportReport]:
    """What the Export page's Import does with a file: small files are imported now (the report), big
    ones are checked now and stored by the worker (the job id)."""
    require_admin(actor)
    arguments = dict(source=source, taxonomy_id=taxonomy_id, evaluation=evaluation, licence=licence, fmt=fmt,
                     **options)
    if inline.upload_runs_now(len(data)):
        return inline.Outcome(report=import_file(actor, filename, data, **arguments))
    return inline.Outcome(job_ids=(enqueue_file(actor, filename, data, **arguments),))


@jobs.handler("import_labelled")
def run_import_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """One transaction with the job's progress: a crash before it commits leaves nothing to undo."""
    p = ctx.payload
    with read_session() as session:
        upload = session.get(Upload, p["upload_id"])
        if upload is None:
            raise jobs.JobFailed(f"The uploaded file (upload {p['upload_id']}) is gone; upload it again.")
        filename, data = upload.filename, upload.content
    try:
        records = parse_labelled_file(filename, data, p.get("format", "auto"), **p.get("options", {}))
    except ImportFileError as error:
        raise jobs.JobFailed(str(error)) from None
    ctx.set_total(len(records), note=f"{len(records):,} records read")
    with ctx.batch() as session:
        try:
            report = _store(session, ctx.created_by_id, records, p["source"], int(p["taxonomy_id"]),
                            bool(p.get("evaluation")), p.get("licence", ""), filename)
        except ImportFileError as error:
            raise jobs.JobFailed(str(error)) from None
        session.delete(session.get(Upload, p["upload_id"]))
        ctx.advance(session, len(records), note=report.summary()[:500])
    return report.as_dict()


def imported_sources() -> list[tuple[str, int]]:
    """(source, examples) of every imported data set."""
    from sqlalchemy import func

    with read_session() as session:
        return [(s, int(n)) for s, n in session.execute(
            select(Example.source, func.count(Example.id)).where(Example.kind == "imported")
            .group_by(Example.source).order_by(Example.source)).tuples()]
