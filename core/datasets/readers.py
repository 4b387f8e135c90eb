"""Reading labelled data sets into plain records: GoEmotions TSV, CSV / TSV / JSONL, HF `datasets` folders.

Every reader checks the whole input before anything is stored, and a problem is reported with
the file name and line so the user knows what to fix. Labels stay as written here; mapping them
onto a taxonomy is core.datasets.importing's job.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from core import csv_safe
from core.taxonomy import GOEMOTIONS_LABELS, normalise_label
from core.uploads import UploadError, decode_upload

MAX_FILE_BYTES = 200 * 1024 * 1024
FORMATS = ("auto", "goemotions", "csv", "tsv", "jsonl")
LIST_COLUMNS = ("labels", "label", "emotions", "emotion", "label_name", "label_names")
TRUE_VALUES = {"1", "1.0", "true", "yes", "y", "x"}
FALSE_VALUES = {"0", "0.0", "false", "no", "n", ""}
SPLIT_NAMES = {"train": "train", "validation": "dev", "valid": "dev", "val": "dev", "dev": "dev", "test": "test"}

csv.field_size_limit(10 * 1024 * 1024)


class ImportFileError(UploadError):
    """A labelled file that cannot be imported; the message names the file and, where it can, the line."""


@dataclass(frozen=True)
class LabelledRecord:
    text: str
    labels: tuple[str, ...]
    context: str | None = None
    ref: str = ""  # the record's id in its source (a comment id, a line number)
    split: str = ""  # train | dev | test when the source says so


def split_name(name: str) -> str:
    return SPLIT_NAMES.get(name.strip().lower(), name.strip().lower())


def decode(name: str, data: bytes) -> str:
    return decode_upload(name, data, max_bytes=MAX_FILE_BYTES, error=ImportFileError)


def detect_format(filename: str, text: str) -> str:
    suffix = PurePath(filename).suffix.lower()
    if suffix == ".jsonl" or suffix == ".json":
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix == ".tsv":
        first = text.split("\n", 1)[0].split("\t")
        # GoEmotions has no header: text, label ids like '3,27', comment id.
        if len(first) == 3 and all(p.strip().isdigit() for p in first[1].split(",") if p.strip()) and first[1].strip():
            return "goemotions"
        return "tsv"
    raise ImportFileError(f"{filename}: unsupported file type {suffix or '(no extension)'!r}; "
                          "use .tsv (GoEmotions or with a header), .csv or .jsonl")


def parse_labelled_file(filename: str, data: bytes, fmt: str = "auto", *, text_column: str = "text",
                        label_column: str = "", context_column: str = "context",
                        label_names: list[str] | None = None, split: str = "") -> list[LabelledRecord]:
    """The records of one uploaded file, or ImportFileError saying what is wrong and where."""
    name = PurePath(filename).name or "file"
    text = decode(name, data)
    fmt = detect_format(name, text) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ImportFileError(f"{name}: unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    split = split or _split_from_name(name)
    if fmt == "goemotions":
        records = parse_goemotions(name, text, label_names, split)
    elif fmt == "jsonl":
        records = parse_jsonl(name, text, text_column, label_column, context_column, split)
    else:
        records = parse_table(name, text, "\t" if fmt == "tsv" else _sniff_delimiter(text), text_column,
                              label_column, context_column, split)
    if not records:
        raise ImportFileError(f"{name}: no records found")
    return records


def _split_from_name(name: str) -> str:
    stem = PurePath(name).stem.lower()
    return SPLIT_NAMES.get(stem, "")


def _sniff_delimiter(text: str) -> str:
    header = text.split("\n", 1)[0]
    return max((",", ";", "\t"), key=header.count)


def parse_goemotions(name: str, text: str, label_names: list[str] | None = None, split: str = "") -> list[LabelledRecord]:
    """GoEmotions TSV: text, comma-separated label ids (positions in emotions.txt), comment id; no header."""
    names = label_names or [n for n, _ in GOEMOTIONS_LABELS]
    records = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    try:
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != 3:
                raise ImportFileError(f"{name}, line {line}: expected 3 tab-separated fields "
                                      f"(text, label ids, id), found {len(row)}")
            body, ids, ref = (csv_safe.restore(cell) for cell in row)  # as EmoForge's export escaped them
            labels = []
            for part in [p for p in ids.split(",") if p.strip()]:
                if not part.strip().isdigit() or int(part) >= len(names):
                    raise ImportFileError(f"{name}, line {line}: label id {part.strip()!r} is not a number "
                                          f"between 0 and {len(names) - 1}")
                labels.append(names[int(part)])
            if not body.strip():
                raise ImportFileError(f"{name}, line {line}: empty text")
            records.append(LabelledRecord(body.strip(), tuple(labels), None, ref.strip(), split))
    except csv.Error as error:
        raise ImportFileError(f"{name}, line {reader.line_num}: not valid TSV ({error})") from None
    return records


def _list_value(value: Any, where: str) -> tuple[str, ...]:
    """'joy, love' / 'joy;love' / '["joy", "love"]' / ['joy', 'love'] -> ('joy', 'love')."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (str(value),)
    if not isinstance(value, str):
        raise ImportFileError(f"{where}: labels must be a list or a string, got {type(value).__name__}")
    value = value.strip()
    if value.startswith("["):
        try:
            return _list_value(json.loads(value), where)
        except json.JSONDecodeError:
            raise ImportFileError(f"{where}: labels look like a JSON list but are not valid JSON") from None
    sep = ";" if ";" in value else ","
    return tuple(p.strip() for p in value.split(sep) if p.strip())


def _binary(value: str, where: str, column: str) -> bool:
    v = str(value).strip().lower()
    if v in TRUE_VALUES:
        return True
    if v in FALSE_VALUES:
        return False
    raise ImportFileError(f"{where}: column {column!r} should be 0 or 1, found {value!r}")


def parse_table(name: str, text: str, delimiter: str, text_column: str, label_column: str, context_column: str,
                split: str) -> list[LabelledRecord]:
    """CSV / TSV with a header: a text column and either a label-list column or one 0/1 column per label."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next((row for row in reader if any(c.strip() for c in row)), [])
        columns = [c.strip() for c in header]
        lower = [c.lower() for c in columns]
        text_at = _column(name, lower, text_column.lower(), "text")
        list_at, binary_at = _label_columns(name, columns, lower, label_column.lower(), text_at)
        context_at = lower.index(context_column.lower()) if context_column.lower() in lower else None
        split_at = lower.index("split") if "split" in lower else None
        id_at = next((lower.index(c) for c in ("id", "ref") if c in lower), None)
        records = []
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise ImportFileError(f"{name}, line {line}: {len(row)} fields but the header has {len(columns)}")
            row = [csv_safe.restore(cell) for cell in row]  # as EmoForge's CSV export escaped them
            where = f"{name}, line {line}"
            body = row[text_at].strip()
            if not body:
                raise ImportFileError(f"{where}: empty text")
            if list_at is not None:
                labels = _list_value(row[list_at], where)
            else:
                labels = tuple(columns[i] for i in binary_at if _binary(row[i], where, columns[i]))
            records.append(LabelledRecord(
                body, labels, (row[context_at].strip() or None) if context_at is not None else None,
                row[id_at].strip() if id_at is not None else str(line),
                split_name(row[split_at]) if split_at is not None and row[split_at].strip() else split))
    except csv.Error as error:
        raise ImportFileError(f"{name}, line {reader.line_num}: not valid CSV ({error})") from None
    return records


def _column(name: str, lower: list[str], wanted: str, what: str) -> int:
    for candidate in (wanted, "text", "tweet", "sentence", "utterance", "comment_text"):
        if candidate and candidate in lower:
            return lower.index(candidate)
    raise ImportFileError(f"{name}: no {what} column {wanted!r} (columns: {', '.join(lower) or 'none'})")


def _label_columns(name: str, columns: list[str], lower: list[str], wanted: str,
                   text_at: int) -> tuple[int | None, list[int]]:
    if wanted:
        if wanted not in lower:
            raise ImportFileError(f"{name}: no label column {wanted!r} (columns: {', '.join(columns)})")
        return lower.index(wanted), []
    for candidate in LIST_COLUMNS:
        if candidate in lower:
            return lower.index(candidate), []
    skip = {text_at} | {i for i, c in enumerate(lower) if c in ("id", "ref", "split", "context", "source")}
    binary = [i for i in range(len(columns)) if i not in skip]
    if not binary:
        raise ImportFileError(f"{name}: no label columns: add a 'labels' column or one 0/1 column per label")
    return None, binary


def parse_jsonl(name: str, text: str, text_column: str, label_column: str, context_column: str,
                split: str) -> list[LabelledRecord]:
    records = []
    for line, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        where = f"{name}, line {line}"
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ImportFileError(f"{where}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ImportFileError(f"{where}: expected a JSON object, got {type(record).__name__}")
        body = record.get(text_column)
        if not isinstance(body, str) or not body.strip():
            raise ImportFileError(f"{where}: no text in field {text_column!r}")
        key = label_column or next((c for c in LIST_COLUMNS if c in record), "")
        if not key or key not in record:
            raise ImportFileError(f"{where}: no label field (expected one of {', '.join(LIST_COLUMNS)})")
        context = record.get(context_column)
        records.append(LabelledRecord(
            body.strip(), _list_value(record[key], where), context if isinstance(context, str) and context else None,
            str(record.get("id", line)), split_name(str(record["split"])) if record.get("split") else split))
    return records


def read_hf_folder(path: str | Path, *, text_column: str = "text", label_column: str = "") -> list[LabelledRecord]:
    """A folder written by `datasets` save_to_disk (a Dataset or a DatasetDict of splits)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    folder = Path(path)
    if not folder.is_dir():
        raise ImportFileError(f"{folder}: not a folder")
    try:
        loaded = load_from_disk(str(folder))
    except Exception as error:  # datasets raises FileNotFoundError, ValueError... for a wrong folder
        raise ImportFileError(f"{folder.name}: not a Hugging Face datasets folder ({error})") from None
    parts = loaded.items() if isinstance(loaded, DatasetDict) else [("", loaded)]
    records: list[LabelledRecord] = []
    for split, dataset in parts:
        assert isinstance(dataset, Dataset)
        records.extend(_hf_records(folder.name, dataset, split_name(split) if split else "", text_column, label_column))
    if not records:
        raise ImportFileError(f"{folder.name}: no records found")
    return records


def _hf_records(name: str, dataset, split: str, text_column: str, label_column: str) -> list[LabelledRecord]:
    from datasets import ClassLabel, Sequence

    if text_column not in dataset.column_names:
        raise ImportFileError(f"{name}: no text column {text_column!r} (columns: {', '.join(dataset.column_names)})")
    key = label_column or next((c for c in LIST_COLUMNS if c in dataset.column_names), "")
    if not key:
        raise ImportFileError(f"{name}: no label column (expected one of {', '.join(LIST_COLUMNS)})")
    feature = dataset.features[key]
    inner = getattr(feature, "feature", None) if isinstance(feature, Sequence) else feature
    if isinstance(feature, list) and feature:
        inner = feature[0]
    to_name = inner.int2str if isinstance(inner, ClassLabel) else str
    has_context = "context" in dataset.column_names
    has_id = "id" in dataset.column_names
    records = []
    for i, row in enumerate(dataset):
        value = row[key]
        values = value if isinstance(value, list) else [value]
        labels = tuple(to_name(v) for v in values if v is not None and v != "")
        body = (row[text_column] or "").strip()
        if not body:
            raise ImportFileError(f"{name}, {split or 'data'} row {i}: empty text")
        records.append(LabelledRecord(body, labels, (row.get("context") or None) if has_context else None,
                                      str(row["id"]) if has_id else str(i), split))
    return records


def normalised(labels: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(normalise_label(n) for n in labels)
