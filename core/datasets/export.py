"""Writing a dataset version in the formats people train with, with its card, as a folder and a zip.

Formats: JSONL, CSV, Parquet, a Hugging Face `datasets` folder (save_to_disk, labels as a
sequence of ClassLabel) and GoEmotions-style TSV (text, label ids, id; plus emotions.txt). Each
format gets a sub-folder with one file per split. Rows are read once as column lists; the Arrow
based writers share one set of Arrow arrays, so 400,000 rows take seconds, not minutes.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session
from sqlalchemy.orm import aliased

from core import config, csv_safe, jobs, owned_files
from core.auth import Actor, require_admin
from core.datasets.splits import SPLITS
from core.labels import shown_by
from db.models import Character, DatasetMember, DatasetVersion, Example, Export, Label, Suggestion
from db.session import read_session, write_session

FORMATS = ("jsonl", "csv", "parquet", "hf_datasets", "goemotions_tsv")
HF_SPLIT = {"train": "train", "dev": "validation", "test": "test"}
COLUMNS = ["id", "split", "kind", "text", "context", "character", "story_id", "source", "labels", "scores",
           "parent_id", "variant", "original_utterance", "raw_context", "character_name", "character_description",
           "target_emotion", "oot_names"]
# How each example was made (the `variant` column): a context-less utterance, the two contextual variants of
# the paper (the parent's own utterance or its rewrite, each after the cleaned context), or an imported text.
VARIANTS = {"contextless": "contextless", "original": "original+context", "rewritten": "rewritten+context",
            "imported": "imported"}


class ExportError(ValueError):
    """An export that cannot be written; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    version_id: int
    folder: str
    zip_path: str
    files: dict[str, list[str]]
    rows: int


SQL_COLUMNS = 16  # what `read_version` selects per row


class VersionRows:
    """A version's rows as plain column lists in split then id order, each split a contiguous slice.

    Read with the driver's own cursor (no ORM rows): for 400,000 rows the wrapping alone would cost
    more than writing all the formats. Labels and scores stay the JSON text the database holds;
    label lists are parsed once per distinct text (there are few).
    """

    def __init__(self, rows: list[tuple]):
        order = {s: i for i, s in enumerate(SPLITS)}
        rows.sort(key=lambda r: (order.get(r[1], len(order)), r[0]))
        columns = list(zip(*rows)) if rows else [() for _ in range(SQL_COLUMNS)]
        (self.ids, self.splits, self.kinds, self.texts, self.contexts, self.characters, self.story_ids,
         self.sources, self.labels_json, self.scores_json, self.parent_ids, stored_variants, self.original_utterances,
         self.raw_contexts, self.character_names, self.target_emotions) = columns
        self.character_descriptions = self.characters
        self.variants = [variant(kind, stored) for kind, stored in zip(self.kinds, stored_variants)]
        self.oot_names: list[list[str]] = [[] for _ in self.ids]
        cache: dict[str, tuple[str, ...]] = {}
        self.labels = [cache[t] if t in cache else cache.setdefault(t, tuple(json.loads(t or "[]")))
                       for t in self.labels_json]
        self.bounds: dict[str, tuple[int, int]] = {}
        for split in SPLITS:
            if split in self.splits:
                first = self.splits.index(split)
                self.bounds[split] = (first, first + self.splits.count(split))

    def __len__(self) -> int:
        return len(self.ids)

    def score_maps(self, labels: list[str]) -> list[dict[str, float | None]]:
        """Each row's soft scores as {label: score or None} over the taxonomy (one parse per distinct text)."""
        cache: dict[str, dict[str, float | None]] = {}
        empty = dict.fromkeys(labels)

        def parse(text: str | None) -> dict[str, float | None]:
            scores = json.loads(text or "{}")
            return {**empty, **{k: float(v) for k, v in scores.items() if k in empty and v is not None}}

        return [cache[t] if t in cache else cache.setdefault(t, parse(t)) for t in self.scores_json]

    def kinds_per_split(self) -> dict[str, Counter]:
        return {s: Counter(self.kinds[a:b]) for s, (a, b) in self.bounds.items()}

    def labels_per_split(self) -> dict[str, Counter]:
        return {s: Counter(n for labels in self.labels[a:b] for n in labels) for s, (a, b) in self.bounds.items()}


def variant(kind: str, stored: str | None) -> str:
    if kind == "contextual":  # contextual examples made before both variants existed are rewrites
        return VARIANTS.get(stored or "rewritten", VARIANTS["rewritten"])
    return VARIANTS.get(kind, kind)


def read_version(version_id: int) -> tuple[VersionRows, list[str]]:
    """(the version's rows, the taxonomy's label names in order)."""
    with read_session() as session:
        version = session.get(DatasetVersion, version_id)
        if version is None:
            raise ExportError(f"No dataset version with id {version_id}.")
        label_names = list(session.scalars(select(Label.name).where(Label.taxonomy_id == version.taxonomy_id)
                                           .order_by(Label.position)))
        parent = aliased(Example)
        query = (
            select(Example.id, DatasetMember.split, Example.kind, Example.text, func.coalesce(Example.context, ""),
                   func.coalesce(Character.description, ""), Example.story_id, func.coalesce(Example.source, ""),
                   cast(DatasetMember.labels, Text), cast(DatasetMember.scores, Text), Example.parent_id,
                   Example.meta["variant"].as_string(),
                   # the original utterance: the parent's text for a contextual example, else the text itself
                   func.coalesce(parent.text, Example.text), func.coalesce(Example.raw_context, ""),
                   func.coalesce(Character.name, ""), func.coalesce(Example.target_emotion, ""))
            .join(DatasetMember, DatasetMember.example_id == Example.id)
            .outerjoin(Character, Character.id == Example.character_id)
            .outerjoin(parent, parent.id == Example.parent_id)
            .where(DatasetMember.version_id == int(version_id))
        )
        connection = session.connection()
        sql = str(query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True}))
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(sql)
            rows = list(cursor.fetchall())
        finally:
            cursor.close()
        oot = _oot_names(session, int(version_id))
    version_rows = VersionRows(rows)
    version_rows.oot_names = [oot.get(i, []) for i in version_rows.ids]
    return version_rows, label_names


def _oot_names(session, version_id: int) -> dict[int, list[str]]:
    """example id -> the teacher's names outside the taxonomy for it (sorted, each once)."""
    found: dict[int, set[str]] = {}
    rows = session.execute(select(DatasetMember.example_id, Suggestion.oot_name)
                           .join(Example, Example.id == DatasetMember.example_id).join(Suggestion, shown_by())
                           .where(DatasetMember.version_id == version_id, Suggestion.oot_name.is_not(None))).tuples()
    for example_id, name in rows:
        found.setdefault(example_id, set()).add(name)
    return {example_id: sorted(names) for example_id, names in found.items()}


def _arrow_base(rows: VersionRows) -> dict[str, Any]:
    """The plain columns as Arrow arrays, built once and sliced per split by every Arrow-based writer."""
    import pyarrow as pa

    return {
        "id": pa.array(rows.ids, pa.int64()), "split": pa.array(rows.splits, pa.string()),
        "kind": pa.array(rows.kinds, pa.string()), "text": pa.array(rows.texts, pa.string()),
        "context": pa.array(rows.contexts, pa.string()), "character": pa.array(rows.characters, pa.string()),
        "story_id": pa.array(rows.story_ids, pa.int64()), "source": pa.array(rows.sources, pa.string()),
        "scores": pa.array(rows.scores_json, pa.string()),
        "parent_id": pa.array(rows.parent_ids, pa.int64()), "variant": pa.array(rows.variants, pa.string()),
        "original_utterance": pa.array(rows.original_utterances, pa.string()),
        "raw_context": pa.array(rows.raw_contexts, pa.string()),
        "character_name": pa.array(rows.character_names, pa.string()),
        "character_description": pa.array(rows.character_descriptions, pa.string()),
        "target_emotion": pa.array(rows.target_emotions, pa.string()),
        "oot_names": pa.array(rows.oot_names, pa.list_(pa.string())),
    }


def score_struct(rows: VersionRows, labels: list[str]):
    """Scores as an Arrow struct with one float field per label (null where the label has no score):
    a label -> score mapping in Parquet, `datasets` and pandas, not a JSON string."""
    import pyarrow as pa

    return pa.array(rows.score_maps(labels), pa.struct([(name, pa.float64()) for name in labels]))


def _tables(rows: VersionRows, base: dict[str, Any], labels_array, scores=None) -> dict[str, Any]:
    import pyarrow as pa

    replaced = {"labels": labels_array, **({"scores": scores} if scores is not None else {})}
    table = pa.table({name: replaced[name] if name in replaced else base[name] for name in COLUMNS})
    return {split: table.slice(a, b - a) for split, (a, b) in rows.bounds.items()}


def _per_text(rows: VersionRows, convert: Callable[[tuple[str, ...]], Any]) -> list:
    cache: dict[str, Any] = {}
    return [cache[t] if t in cache else cache.setdefault(t, convert(labels))
            for t, labels in zip(rows.labels_json, rows.labels)]


def write_jsonl(rows: VersionRows, base, folder: Path, labels: list[str]) -> list[Path]:
    dumps = json.dumps
    paths = []
    for split, (a, b) in rows.bounds.items():
        path = folder / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for i in range(a, b):
                # labels and scores are JSON already; only the strings need encoding.
                story = rows.story_ids[i]
                handle.write(
                    f'{{"id":{rows.ids[i]},"split":"{split}","kind":"{rows.kinds[i]}",'
                    f'"text":{dumps(rows.texts[i], ensure_ascii=False)},'
                    f'"context":{dumps(rows.contexts[i], ensure_ascii=False)},'
                    f'"character":{dumps(rows.characters[i], ensure_ascii=False)},'
                    f'"story_id":{"null" if story is None else story},'
                    f'"source":{dumps(rows.sources[i], ensure_ascii=False)},'
                    f'"labels":{rows.labels_json[i] or "[]"},"scores":{rows.scores_json[i] or "{}"},'
                    f'"parent_id":{"null" if rows.parent_ids[i] is None else rows.parent_ids[i]},'
                    f'"variant":"{rows.variants[i]}",'
                    f'"original_utterance":{dumps(rows.original_utterances[i], ensure_ascii=False)},'
                    f'"raw_context":{dumps(rows.raw_contexts[i], ensure_ascii=False)},'
                    f'"character_name":{dumps(rows.character_names[i], ensure_ascii=False)},'
                    f'"character_description":{dumps(rows.character_descriptions[i], ensure_ascii=False)},'
                    f'"target_emotion":{dumps(rows.target_emotions[i], ensure_ascii=False)},'
                    f'"oot_names":{dumps(rows.oot_names[i], ensure_ascii=False)}}}\n')
        paths.append(path)
    return paths


def write_csv(rows: VersionRows, base, folder: Path, labels: list[str]) -> list[Path]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    flat = pa.array(_per_text(rows, ",".join), pa.string())
    oot = pa.array([",".join(names) for names in rows.oot_names], pa.string())  # CSV cells are flat
    paths = []
    for split, table in _tables(rows, {**base, "oot_names": oot}, flat).items():
        path = folder / f"{split}.csv"
        pa_csv.write_csv(_spreadsheet_safe(table), path)
        paths.append(path)
    return paths


def _spreadsheet_safe(table):
    """Every text column with formula-looking cells escaped (core.csv_safe); only the CSV gets this."""
    import pyarrow as pa

    for i, column in enumerate(table.schema):
        if pa.types.is_string(column.type):
            table = table.set_column(i, column.name, csv_safe.neutralise_array(table.column(i)))
    return table


def write_parquet(rows: VersionRows, base, folder: Path, labels: list[str]) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = pa.array(_per_text(rows, list), pa.list_(pa.string()))
    paths = []
    for split, table in _tables(rows, base, names, score_struct(rows, labels)).items():
        path = folder / f"{split}.parquet"
        pq.write_table(table, path)
        paths.append(path)
    return paths


def hf_features(labels: list[str]):
    from datasets import ClassLabel, Features, List, Value

    return Features({
        "id": Value("int64"), "split": Value("string"), "kind": Value("string"), "text": Value("string"),
        "context": Value("string"), "character": Value("string"), "story_id": Value("int64"),
        "source": Value("string"), "labels": List(ClassLabel(names=labels)),
        "scores": {name: Value("float64") for name in labels}, "parent_id": Value("int64"),
        "variant": Value("string"), "original_utterance": Value("string"), "raw_context": Value("string"),
        "character_name": Value("string"), "character_description": Value("string"),
        "target_emotion": Value("string"), "oot_names": List(Value("string")),
    })


def write_hf(rows: VersionRows, base, folder: Path, labels: list[str]) -> list[Path]:
    import pyarrow as pa
    from datasets import Dataset, DatasetDict, DatasetInfo, disable_progress_bars

    disable_progress_bars()  # the worker's log is no terminal
    features = hf_features(labels)
    position = {name: i for i, name in enumerate(labels)}
    ids = pa.array(_per_text(rows, lambda names: [position[n] for n in names]), pa.list_(pa.int64()))
    parts = {HF_SPLIT[split]: Dataset(table.cast(features.arrow_schema), info=DatasetInfo(features=features))
             for split, table in _tables(rows, base, ids, score_struct(rows, labels)).items()}
    DatasetDict(parts).save_to_disk(str(folder))
    return sorted(p for p in folder.rglob("*") if p.is_file())


def write_goemotions(rows: VersionRows, base, folder: Path, labels: list[str]) -> list[Path]:
    position = {name: i for i, name in enumerate(labels)}
    label_ids = _per_text(rows, lambda names: ",".join(str(position[n]) for n in names))
    paths = [folder / "emotions.txt"]
    paths[0].write_text("\n".join(labels) + "\n", encoding="utf-8")
    for split, (a, b) in rows.bounds.items():
        path = folder / f"{split}.tsv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv_safe.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerows(zip(rows.texts[a:b], label_ids[a:b], rows.ids[a:b]))
        paths.append(path)
    return paths


WRITERS: dict[str, Callable[[VersionRows, Any, Path, list[str]], list[Path]]] = {
    "jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet, "hf_datasets": write_hf,
    "goemotions_tsv": write_goemotions,
}


def write_formats(rows: VersionRows, labels: list[str], out: Path, formats: tuple[str, ...] = FORMATS,
                  progress: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    """Write every format under `out/<format>/`; format -> files written (relative to `out`)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ExportError(f"unknown format(s) {', '.join(sorted(unknown))}; one of {', '.join(FORMATS)}")
    base = _arrow_base(rows) if set(formats) & {"csv", "parquet", "hf_datasets"} else None
    files: dict[str, list[str]] = {}
    for fmt in formats:
        folder = out / fmt
        folder.mkdir(parents=True, exist_ok=True)
        files[fmt] = [str(p.relative_to(out)) for p in WRITERS[fmt](rows, base, folder, labels)]
        if progress:
            progress(fmt)
    return files


def _digest(out: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(names):
        with (out / name).open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def write_zip(folder: Path, names: list[str], path: Path) -> None:
    """A zip of the named files of `folder` (only what this export wrote); level 1: most of the size gain
    at a fraction of the time."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name in sorted(names):
            archive.write(folder / name, name)


def export_folder(version_id: int) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return config.home() / "exports" / f"version-{version_id}-{stamp}"


def export_version(actor: Actor | None, version_id: int, out: str | Path | None = None,
                   formats: tuple[str, ...] = FORMATS, *, make_zip: bool = True, force: bool = False,
                   progress: Callable[[str], None] | None = None,
                   on_record: Callable[[Session, ExportResult], None] | None = None) -> ExportResult:
    """Write the version's files and card into `out` (a new folder under EMOFORGE_HOME by default).

    `out` must be new or empty; with `force`, a folder an earlier export wrote into, whose files
    (and only those) are replaced (`core.owned_files`). The zip lies inside the folder.
    `on_record(session, result)` runs in the transaction that records the export (the job keeps its result there).
    """
    require_admin(actor)
    from core.datasets.card import dataset_card

    rows, labels = read_version(version_id)
    target = Path(out) if out else export_folder(version_id)
    zip_name = f"{target.resolve().name or 'export'}.zip"
    with owned_files.writing_into(target, force=force, what=f"dataset version {version_id}") as staging:
        files = write_formats(rows, labels, staging, tuple(formats), progress)
        (staging / "README.md").write_text(dataset_card(version_id, rows, files), encoding="utf-8")
        if make_zip:
            write_zip(staging, owned_files.staged_files(staging), staging / zip_name)
    zip_path = str(target / zip_name) if make_zip else ""
    result = ExportResult(version_id, str(target), zip_path, files, len(rows))
    with write_session() as session:
        for fmt, names in files.items():
            session.add(Export(version_id=version_id, format=fmt, path=str(target / fmt),
                               sha256=_digest(target, names), created_by_id=actor.id))
        if zip_path:
            session.add(Export(version_id=version_id, format="zip", path=zip_path,
                               sha256=_digest(target, [zip_name]), created_by_id=actor.id))
        if on_record is not None:
            on_record(session, result)
    return result


def enqueue_export(actor: Actor | None, version_id: int, formats: tuple[str, ...] = FORMATS) -> int:
    require_admin(actor)
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise ExportError(f"Choose formats among {', '.join(FORMATS)}.")
    with read_session() as session:
        version = session.get(DatasetVersion, version_id)
        if version is None:
            raise ExportError(f"No dataset version with id {version_id}.")
        name = version.name
    return jobs.enqueue(actor, "dataset_export", {"version_id": version_id, "formats": list(formats)},
                        title=f"Export {name} (version {version_id}): {', '.join(formats)}")


@jobs.handler("dataset_export")
def run_export_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """Writes into a fresh folder each attempt, so a retry after a crash never mixes two attempts.

    The export's records and the job's result commit together: a worker killed after that commit
    leaves a finished export that the next attempt returns instead of writing it twice.
    """
    if "result" in ctx.checkpoint:
        return dict(ctx.checkpoint["result"])
    formats = tuple(ctx.payload.get("formats") or FORMATS)
    ctx.set_total(len(formats) + 1, note="reading the version")
    done = [0]

    def progress(fmt: str) -> None:
        ctx.check_cancel()
        done[0] += 1
        ctx.set_progress(done[0], len(formats) + 1, note=f"{fmt} written")

    def record(session: Session, result: ExportResult) -> None:
        summary = {"folder": result.folder, "zip": result.zip_path, "rows": result.rows, "files": result.files}
        ctx.advance(session, len(formats) + 1 - ctx.done, checkpoint={"result": summary}, note="zip ready")

    try:
        export_version(ctx.actor, int(ctx.payload["version_id"]), None, formats, progress=progress,
                       on_record=record)
    except ExportError as error:
        raise jobs.JobFailed(str(error)) from None
    return dict(ctx.checkpoint["result"])


@dataclass(frozen=True)
class ExportView:
    id: int
    version_id: int
    format: str
    path: str
    sha256: str
    created_at: datetime
    exists: bool


def list_exports(actor: Actor | None, version_id: int | None = None, limit: int = 50) -> list[ExportView]:
    require_admin(actor)
    query = select(Export).order_by(Export.id.desc()).limit(limit)
    if version_id is not None:
        query = query.where(Export.version_id == version_id)
    with read_session() as session:
        return [ExportView(e.id, e.version_id, e.format, e.path, e.sha256 or "", e.created_at, Path(e.path).exists())
                for e in session.scalars(query)]


def zip_file(actor: Actor | None, export_id: int) -> Path:
    """The zip of one export, for the browser's download button (only files this app wrote)."""
    require_admin(actor)
    with read_session() as session:
        export = session.get(Export, export_id)
    if export is None or export.format != "zip":
        raise ExportError(f"No zip export with id {export_id}.")
    path = Path(export.path)
    if not path.is_file():
        raise ExportError(f"The zip of export {export_id} is no longer on disk; export again.")
    return path
