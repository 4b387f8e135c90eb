"""Writing a dataset version in the formats people train with, with its card, as a folder and a zip.

Formats: JSONL, CSV, Parquet, a Hugging Face `datasets` folder (save_to_disk, labels as a
sequence of ClassLabel) and GoEmotions-style TSV (text, label ids, id; plus emotions.txt). Each
format gets a sub-folder with one file per split. Rows are built once as a pandas frame and
every writer works column-wise, so 400,000 rows take seconds, not minutes.
"""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Text, cast, select

from core import config, jobs
from core.auth import Actor, require_admin
from core.datasets.splits import SPLITS
from db.models import Character, DatasetMember, DatasetVersion, Example, Export, Label
from db.session import read_session, write_session

FORMATS = ("jsonl", "csv", "parquet", "hf_datasets", "goemotions_tsv")
HF_SPLIT = {"train": "train", "dev": "validation", "test": "test"}
COLUMNS = ["id", "split", "kind", "text", "context", "character", "story_id", "source", "labels", "scores"]


class ExportError(ValueError):
    """An export that cannot be written; the message says why."""


@dataclass(frozen=True)
class ExportResult:
    version_id: int
    folder: str
    zip_path: str
    files: dict[str, list[str]]
    rows: int


def version_frame(version_id: int) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """(rows of the version in split then id order, taxonomy label names, version info)."""
    with read_session() as session:
        version = session.get(DatasetVersion, version_id)
        if version is None:
            raise ExportError(f"No dataset version with id {version_id}.")
        label_names = list(session.scalars(select(Label.name).where(Label.taxonomy_id == version.taxonomy_id)
                                           .order_by(Label.position)))
        query = (
            select(Example.id, DatasetMember.split, Example.kind, Example.text, Example.context,
                   Character.description, Example.story_id, Example.source, cast(DatasetMember.labels, Text),
                   cast(DatasetMember.scores, Text))
            .join(DatasetMember, DatasetMember.example_id == Example.id)
            .outerjoin(Character, Character.id == Example.character_id)
            .where(DatasetMember.version_id == version_id)
        )
        rows = session.connection().execute(query).all()
        info = {"id": version.id, "name": version.name, "hash": version.content_hash}
    columns = list(zip(*rows)) if rows else [[] for _ in COLUMNS]
    frame = pd.DataFrame({name: list(values) for name, values in zip(COLUMNS, columns)}, columns=COLUMNS)
    parsed: dict[str, list[str]] = {}  # label lists repeat: parse each distinct text once
    frame["labels"] = [parsed[t] if t in parsed else parsed.setdefault(t, json.loads(t or "[]"))
                       for t in columns[8]] if rows else []
    # Scores stay JSON text: every format writes them as text, and JSONL splices them in as objects.
    frame["scores"] = [t or "{}" for t in columns[9]] if rows else []
    frame["kind"] = frame["kind"].map(lambda k: getattr(k, "value", k))
    return sort_frame(frame), label_names, info


def sort_frame(frame: pd.DataFrame) -> pd.DataFrame:
    order = {s: i for i, s in enumerate(SPLITS)}
    frame = frame.assign(_o=frame["split"].map(order)).sort_values(["_o", "id"], kind="stable")
    frame = frame.drop(columns="_o").reset_index(drop=True)
    frame["story_id"] = frame["story_id"].astype("Int64")
    for column in ("context", "character", "source"):
        frame[column] = frame[column].fillna("").astype(str)
    return frame


def _split_frames(frame: pd.DataFrame):
    for split in SPLITS:
        part = frame[frame["split"] == split]
        if len(part):
            yield split, part


def arrow_columns(part: pd.DataFrame) -> dict[str, Any]:
    """The plain columns of one split as Arrow arrays (built once, shared by CSV, Parquet and datasets)."""
    import pyarrow as pa

    return {
        "id": pa.array(part["id"].to_numpy(dtype="int64")),
        "split": pa.array(part["split"].tolist(), pa.string()),
        "kind": pa.array(part["kind"].tolist(), pa.string()),
        "text": pa.array(part["text"].tolist(), pa.string()),
        "context": pa.array(part["context"].tolist(), pa.string()),
        "character": pa.array(part["character"].tolist(), pa.string()),
        "story_id": pa.array([None if pd.isna(v) else int(v) for v in part["story_id"]], pa.int64()),
        "source": pa.array(part["source"].tolist(), pa.string()),
        "scores": pa.array(part["scores"].tolist(), pa.string()),
    }


def _table(columns: dict[str, Any], labels) -> Any:
    import pyarrow as pa

    ordered = {name: (labels if name == "labels" else columns[name]) for name in COLUMNS}
    return pa.table(ordered)


def write_jsonl(parts: dict, folder: Path, labels: list[str]) -> list[Path]:
    paths = []
    for split, (part, _) in parts.items():
        path = folder / f"{split}.jsonl"
        head = part[[c for c in COLUMNS if c != "scores"]].to_json(orient="records", lines=True, force_ascii=False)
        lines = head.rstrip("\n").split("\n")
        # Each line is one object ending in '}': the scores (JSON already) go in as its last field.
        with path.open("w", encoding="utf-8") as handle:
            handle.writelines(f'{line[:-1]},"scores":{scores}}}\n' for line, scores in zip(lines, part["scores"]))
        paths.append(path)
    return paths


def write_csv(parts: dict, folder: Path, labels: list[str]) -> list[Path]:
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    paths = []
    for split, (part, columns) in parts.items():
        path = folder / f"{split}.csv"
        flat = pa.array([",".join(v) for v in part["labels"]], pa.string())
        pa_csv.write_csv(_table(columns, flat), path)
        paths.append(path)
    return paths


def write_parquet(parts: dict, folder: Path, labels: list[str]) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = []
    for split, (part, columns) in parts.items():
        path = folder / f"{split}.parquet"
        names = pa.array(part["labels"].tolist(), pa.list_(pa.string()))
        pq.write_table(_table(columns, names), path)
        paths.append(path)
    return paths


def write_hf(parts: dict, folder: Path, labels: list[str]) -> list[Path]:
    import pyarrow as pa
    from datasets import ClassLabel, Dataset, DatasetDict, DatasetInfo, Features, List, Value, disable_progress_bars

    disable_progress_bars()  # the worker's log is no terminal
    features = Features({
        "id": Value("int64"), "split": Value("string"), "kind": Value("string"), "text": Value("string"),
        "context": Value("string"), "character": Value("string"), "story_id": Value("int64"),
        "source": Value("string"), "labels": List(ClassLabel(names=labels)), "scores": Value("string"),
    })
    position = {name: i for i, name in enumerate(labels)}
    datasets = {}
    for split, (part, columns) in parts.items():
        ids = pa.array([[position[n] for n in v] for v in part["labels"]], pa.list_(pa.int64()))
        table = _table(columns, ids).cast(features.arrow_schema)
        datasets[HF_SPLIT[split]] = Dataset(table, info=DatasetInfo(features=features))
    DatasetDict(datasets).save_to_disk(str(folder))
    return sorted(p for p in folder.rglob("*") if p.is_file())


def write_goemotions(parts: dict, folder: Path, labels: list[str]) -> list[Path]:
    position = {name: i for i, name in enumerate(labels)}
    paths = [folder / "emotions.txt"]
    paths[0].write_text("\n".join(labels) + "\n", encoding="utf-8")
    for split, (part, _) in parts.items():
        path = folder / f"{split}.tsv"
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerows(zip(part["text"], (",".join(str(position[n]) for n in v) for v in part["labels"]),
                                 part["id"]))
        paths.append(path)
    return paths


WRITERS: dict[str, Callable[[dict, Path, list[str]], list[Path]]] = {
    "jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet, "hf_datasets": write_hf,
    "goemotions_tsv": write_goemotions,
}


def write_formats(frame: pd.DataFrame, labels: list[str], out: Path, formats: tuple[str, ...] = FORMATS,
                  progress: Callable[[str], None] | None = None) -> dict[str, list[str]]:
    """Write every format under `out/<format>/`; format -> files written (relative to `out`)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ExportError(f"unknown format(s) {', '.join(sorted(unknown))}; one of {', '.join(FORMATS)}")
    if len(frame) and not isinstance(frame["scores"].iloc[0], str):
        frame = frame.assign(scores=[json.dumps(v) for v in frame["scores"]])
    parts = {split: (part, arrow_columns(part)) for split, part in _split_frames(frame)}
    files: dict[str, list[str]] = {}
    for fmt in formats:
        folder = out / fmt
        folder.mkdir(parents=True, exist_ok=True)
        files[fmt] = [str(p.relative_to(out)) for p in WRITERS[fmt](parts, folder, labels)]
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


def write_zip(folder: Path) -> str:
    """<folder>.zip of everything in it; level 1: most of the size gain at a fraction of the time."""
    path = folder.with_name(folder.name + ".zip")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(file, file.relative_to(folder))
    return str(path)


def export_folder(version_id: int) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return config.home() / "exports" / f"version-{version_id}-{stamp}"


def export_version(actor: Actor | None, version_id: int, out: str | Path | None = None,
                   formats: tuple[str, ...] = FORMATS, *, make_zip: bool = True,
                   progress: Callable[[str], None] | None = None, user_id: int | None = None) -> ExportResult:
    """Write the version's files and card into `out` (a new folder under EMOFORGE_HOME by default)."""
    if actor is not None or user_id is None:
        require_admin(actor)
        user_id = actor.id
    from core.datasets.card import dataset_card

    frame, labels, _info = version_frame(version_id)
    target = Path(out) if out else export_folder(version_id)
    target.mkdir(parents=True, exist_ok=True)
    files = write_formats(frame, labels, target, tuple(formats), progress)
    (target / "README.md").write_text(dataset_card(version_id, frame, files), encoding="utf-8")
    zip_path = write_zip(target) if make_zip else ""
    with write_session() as session:
        for fmt, names in files.items():
            session.add(Export(version_id=version_id, format=fmt, path=str(target / fmt),
                               sha256=_digest(target, names), created_by_id=user_id))
        if zip_path:
            session.add(Export(version_id=version_id, format="zip", path=zip_path,
                               sha256=_digest(Path(zip_path).parent, [Path(zip_path).name]), created_by_id=user_id))
    return ExportResult(version_id, str(target), zip_path, files, len(frame))


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
    """Writes into a fresh folder each attempt, so a retry after a crash never mixes two attempts."""
    formats = tuple(ctx.payload.get("formats") or FORMATS)
    ctx.set_total(len(formats) + 1, note="reading the version")
    done = [0]

    def progress(fmt: str) -> None:
        ctx.check_cancel()
        done[0] += 1
        ctx.set_progress(done[0], len(formats) + 1, note=f"{fmt} written")

    try:
        result = export_version(None, int(ctx.payload["version_id"]), None, formats, progress=progress,
                                user_id=ctx.created_by_id)
    except ExportError as error:
        raise jobs.JobFailed(str(error)) from None
    ctx.set_progress(len(formats) + 1, len(formats) + 1, note="zip ready")
    return {"folder": result.folder, "zip": result.zip_path, "rows": result.rows, "files": result.files}


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
