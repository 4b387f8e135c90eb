"""The model registry: every trained (or baseline) model with its data set hash, configuration and metrics.

A registered model is a row of `models` plus a folder on disk (`path`). How a folder is read is the
business of the module that wrote it; the registry only dispatches on `kind`:

    kind          loader                                     folder
    classifier    core.train.classifier.load_predictor       encoder + sigmoid head (sentence-transformers layout)
    contrastive   core.train.contrastive.load_predictor      text/label encoder
    baseline      core.train.baselines.load_predictor        whatever the baseline needs

A loader is `load_predictor(path: str, record: ModelRecord) -> predictor`, and every predictor has
`predict(texts, contexts=None, label_names=None, label_descriptions=None) -> np.ndarray` of
probabilities, shape (len(texts), number of labels). A classifier answers over its own labels
(`label_names` picks and orders a subset of them); a contrastive model answers over any label set
given by names (and descriptions).

Export writes a Hugging Face model folder: the model's own files (loadable with transformers /
sentence-transformers) plus `emoforge_model.json` (labels, thresholds, configuration, metrics,
data set hash) and a README model card.
"""

from __future__ import annotations

import importlib
import io
import json
import shutil
import threading
import zipfile
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core import config, owned_files
from core.auth import Actor, require_admin, require_page
from db.models import Evaluation, Model
from db.session import read_session, write_session

LOADERS: dict[str, str] = {
    "classifier": "core.train.classifier:load_predictor",
    "contrastive": "core.train.contrastive:load_predictor",
    "baseline": "core.train.baselines:load_predictor",
}
CARD_FILE = "emoforge_model.json"
_CACHE_SIZE = 3


class UnknownModel(ValueError, KeyError):
    """No registered model has this id (a ValueError for pages and the CLI, a KeyError for lookups)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown model"


@dataclass
class ModelRecord:
    id: int
    name: str
    kind: str
    path: str
    labels: list[str]
    thresholds: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    run_id: int | None
    dataset_hash: str | None
    created_at: datetime | None = None
    parent_id: int | None = None  # the registered model this one was trained from (adaptation)
    evaluations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def global_threshold(self) -> float:
        return float(self.thresholds.get("global", 0.5))

    def card(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        data.pop("evaluations", None)
        return data


def _record(model: Model) -> ModelRecord:
    return ModelRecord(
        id=model.id, name=model.name, kind=model.kind, path=model.path, labels=list(model.labels or []),
        thresholds=dict(model.thresholds or {}), config=dict(model.config or {}), metrics=dict(model.metrics or {}),
        run_id=model.run_id, dataset_hash=model.dataset_hash, created_at=model.created_at, parent_id=model.parent_id,
    )


# --------------------------------------------------------------------------- rows


def free_name(base: str) -> str:
    """`base`, or `base (2)`, `base (3)`...: the first name no registered model has."""
    with read_session() as s:
        taken = set(s.scalars(select(Model.name).where(Model.name.like(f"{base}%"))))
    if base not in taken:
        return base
    n = 2
    while f"{base} ({n})" in taken:
        n += 1
    return f"{base} ({n})"


def register_model(actor: Actor | None, kind: str, name: str, path: str | Path, labels: list[str],
                   thresholds: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
                   metrics: dict[str, Any] | None = None, run_id: int | None = None,
                   dataset_hash: str | None = None, parent_id: int | None = None) -> int:
    """Add a model to the registry and return its id. Names are unique (see `free_name`); `parent_id` is the
    registered model it was trained from (lineage)."""
    require_admin(actor)
    if kind not in LOADERS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(LOADERS)}")
    name = name.strip()
    if not name:
        raise ValueError("a model needs a name")
    with write_session() as s:
        if s.scalar(select(Model.id).where(Model.name == name)) is not None:
            raise ValueError(f"a model named {name!r} is already registered")
        model = Model(kind=kind, name=name, path=str(path), labels=[str(x) for x in labels],
                      thresholds=_jsonable(thresholds or {}), config=_jsonable(config or {}),
                      metrics=_jsonable(metrics or {}), run_id=run_id, dataset_hash=dataset_hash,
                      parent_id=parent_id)
        s.add(model)
        s.flush()
        return model.id


def model_of_run(run_id: int) -> ModelRecord | None:
    """The model a training run registered, if any: a job killed after registering, but before it
    recorded its end, is re-run by the next worker, which must not train and register it twice."""
    with read_session() as s:
        model = s.scalar(select(Model).where(Model.run_id == run_id).order_by(Model.id).limit(1))
        return _record(model) if model is not None else None


def update_metrics(actor: Actor | None, model_id: int, metrics: dict[str, Any]) -> None:
    """Merge figures into a model's metrics (an evaluation computed after registration)."""
    require_admin(actor)
    with write_session() as s:
        model = s.get(Model, model_id)
        if model is None:
            raise UnknownModel(f"no model {model_id}")
        model.metrics = {**(model.metrics or {}), **_jsonable(metrics)}


def list_models(kind: str | None = None) -> list[ModelRecord]:
    """Registered models, newest first."""
    with read_session() as s:
        query = select(Model).order_by(Model.id.desc())
        if kind:
            query = query.where(Model.kind == kind)
        return [_record(m) for m in s.scalars(query)]


def get_model(model_id: int) -> ModelRecord:
    with read_session() as s:
        model = s.get(Model, model_id)
        if model is None:
            raise UnknownModel(f"no model {model_id}")
        record = _record(model)
        record.evaluations = [
            {"id": e.id, "benchmark": e.benchmark, "taxonomy_id": e.taxonomy_id, "figures": e.figures,
             "created_at": e.created_at}
            for e in s.scalars(select(Evaluation).where(Evaluation.model_id == model_id).order_by(Evaluation.id))
        ]
        return record


def delete_model(actor: Actor | None, model_id: int, remove_files: bool = False) -> None:
    require_admin(actor)
    with write_session() as s:
        model = s.get(Model, model_id)
        if model is None:
            raise UnknownModel(f"no model {model_id}")
        path = Path(model.path)
        s.delete(model)
    _forget(model_id)
    if remove_files and path.is_dir() and config.home() in path.resolve().parents:
        shutil.rmtree(path, ignore_errors=True)


def models_for_page(actor: Actor | None, page: str = "playground", kind: str | None = None) -> list[ModelRecord]:
    require_page(actor, page)
    return list_models(kind)


# --------------------------------------------------------------------------- predictors

_cache: OrderedDict[tuple[int, str], Any] = OrderedDict()
_cache_lock = threading.Lock()


def _loader(kind: str):
    target = LOADERS.get(kind)
    if target is None:
        raise ValueError(f"no loader for model kind {kind!r}")
    module_name, func = target.split(":")
    return getattr(importlib.import_module(module_name), func)


def load_predictor(model_id: int, cache: bool = True):
    """The predictor of a registered model (kept in a small in-process cache: loading takes seconds)."""
    record = get_model(model_id)
    key = (record.id, record.path)
    with _cache_lock:
        if cache and key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    predictor = _loader(record.kind)(record.path, record)
    if cache:
        with _cache_lock:
            _cache[key] = predictor
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    return predictor


def _forget(model_id: int) -> None:
    with _cache_lock:
        for key in [k for k in _cache if k[0] == model_id]:
            del _cache[key]


# --------------------------------------------------------------------------- export


def exports_dir() -> Path:
    path = config.home() / "exports" / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "model"


def export_model(actor: Actor | None, model_id: int, dest: str | Path | None = None, *, force: bool = False) -> Path:
    """Write the model as a Hugging Face model folder and return its path.

    The folder holds the model's files as saved (transformers config, safetensors weights, tokenizer,
    sentence-transformers modules where the kind uses them), `emoforge_model.json` and a README card.
    `dest` must be new or empty; with `force`, a folder an earlier export wrote into, whose files (and
    only those) are replaced (`core.owned_files`). Without `dest`, a folder of its own under
    EMOFORGE_HOME, replaced on each export.
    """
    require_admin(actor)
    record = get_model(model_id)
    source = Path(record.path)
    if not source.is_dir():
        raise FileNotFoundError(f"the files of model {record.name!r} are missing at {source}")
    target = Path(dest) if dest else _default_export_folder(record)
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise ValueError(f"export model {record.name!r} into a folder outside its own files ({source})")
    with owned_files.writing_into(target, force=force or dest is None, what=f"model {record.id}") as staging:
        shutil.copytree(source, staging, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoint*", "*.pt", "optimizer*"))
        if record.kind == "classifier":
            _as_sequence_classification(staging, record)
        (staging / CARD_FILE).write_text(json.dumps(record.card(), indent=2, default=str))
        (staging / "README.md").write_text(_model_card(record))
    return target


def _default_export_folder(record: ModelRecord) -> Path:
    target = exports_dir() / f"{record.id}-{_slug(record.name)}"
    if target.exists() and not (target / owned_files.MANIFEST).exists():
        # Written before exports kept a manifest: leave it, write beside it.
        target = target.with_name(f"{target.name}-{datetime.now().strftime('%Y%m%dT%H%M%S')}")
    return target


def _as_sequence_classification(folder: Path, record: ModelRecord) -> None:
    """A classifier export loads with AutoModelForSequenceClassification / pipeline (core.train.hf_export)."""
    from core.train.hf_export import write_sequence_classification

    if not (folder / "2_Dense" / "model.safetensors").exists():
        return  # not a folder EmoForge's classifier trainer wrote (no head to convert): copied as it is
    info_file = folder / "emoforge_classifier.json"
    info = json.loads(info_file.read_text()) if info_file.exists() else {}
    write_sequence_classification(folder, list(record.labels), record.thresholds, info.get("pooling", "mean"),
                                  int(info.get("max_length", 64)))


def export_zip(actor: Actor | None, model_id: int) -> tuple[str, bytes]:
    """(file name, bytes) of a zip of the exported folder: the page's download button."""
    folder = export_model(actor, model_id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(owned_files.manifest_files(folder)):
            zf.write(folder / name, Path(folder.name) / name)
    return f"{folder.name}.zip", buffer.getvalue()


def _model_card(record: ModelRecord) -> str:
    metrics = {k: v for k, v in record.metrics.items() if isinstance(v, (int, float, str))}
    lines = [
        "---",
        "library_name: sentence-transformers" if record.kind != "baseline" else "library_name: emoforge",
        "pipeline_tag: text-classification" if record.kind == "classifier" else "pipeline_tag: sentence-similarity",
        "tags: [emoforge, emotion]",
        "---",
        f"# {record.name}",
        "",
        (f"EmoForge {record.kind} model, registry id {record.id}, trained on the data set version with hash "
         f"`{record.dataset_hash or 'n/a'}` (training run {record.run_id or 'n/a'})."),
        "",
        f"Labels ({len(record.labels)}): {', '.join(record.labels)}",
        "",
        f"Thresholds: `{json.dumps(record.thresholds)}`",
        "",
        f"Metrics: `{json.dumps(metrics)}`",
        "",
        f"Configuration: `{json.dumps(record.config, default=str)}`",
        "",
    ]
    if record.kind == "classifier":
        lines += [
            "## Use",
            "```python",
            "from transformers import pipeline",
            "classify = pipeline('text-classification', model='path/to/this/folder', trust_remote_code=True, top_k=None)",
            "classify(['I am so happy for you!'], truncation=True)  # every label with its sigmoid probability",
            "```",
            ("`trust_remote_code` loads `modeling_emoforge.py` from this folder: the encoder with EmoForge's "
             f"pooling and the linear head (no native transformers class pools by the mean). A label is predicted "
             f"when its probability reaches the threshold (`threshold` in config.json: {record.global_threshold:g}). "
             "`SentenceTransformer('path/to/this/folder').encode(texts)` gives the same probabilities."),
            "",
        ]
    elif record.kind == "contrastive":
        lines += [
            "## Use: score any label set",
            "```python",
            "from sentence_transformers import SentenceTransformer",
            "model = SentenceTransformer('path/to/this/folder')",
            "scores = model.similarity(model.encode(['I miss her so much']), model.encode(['joy', 'sadness', 'anger']))",
            "```",
            ("The highest cosine is the predicted label; for several labels per text EmoForge takes every label within "
             f"a margin of the top one (`{json.dumps(record.thresholds.get('rule', {}))}`). Label wordings such as "
             "'feeling sadness' or 'sadness: unhappiness, sorrow' work too (EmoForge averages several)."),
            "",
        ]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    """Plain JSON types (numpy floats and arrays become floats and lists)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (datetime, Path)):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
