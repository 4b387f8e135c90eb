"""Evaluation of registered models and baselines on a dataset version's dev / test split or on an
external set read from files (core.train.external), stored in `evaluations` and compared side by side.

Every model is scored the same way:
- single-label sets (the "emotion" set): the top-scoring label;
- multi-label sets: the model's own decision rule: a classifier's global threshold swept on its dev
  split (per-label thresholds when asked and available); a contrastive model's or a baseline's
  rule calibrated on the training taxonomy's dev split (core.train.rules.Rule).
A classifier answers over its own labels only; a set whose labels are groups of them (GoEmotions
-> Ekman or sentiment) is scored with each group's probability = the highest of its members'.

Figures: macro / micro / weighted F1, per-label precision / recall / F1 / support, a confusion
matrix (single-label: true x predicted; multi-label: for each true label, how often each label was
predicted), calibration (10 equal-width bins of predicted probability: mean prediction vs observed
frequency, and the expected calibration error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select

from core import jobs
from core.auth import Actor, require_admin, require_page
from core.taxonomy import EKMAN_GROUPING, SENTIMENT_GROUPING, get_taxonomy
from core.train import external
from core.train import metrics as M
from core.train.dimensions import DEFAULT_MAPPING
from core.train.external import EvalSet
from core.train.rules import Rule
from db.models import DatasetMember, DatasetVersion, Evaluation, Example, Model
from db.session import read_session, write_session

JOB_KIND = "evaluate_model"
CALIBRATION_BINS = 10
GROUPINGS = {"goemotions-ekman": EKMAN_GROUPING, "goemotions-sentiment": SENTIMENT_GROUPING}


@dataclass(frozen=True)
class EvalSpec:
    """What to evaluate on: a built-in set (`builtin`, name, split), a dataset version's split (`version`,
    version_id, split) or an uploaded file (`file`, name, upload bytes kept by the caller)."""

    source: str  # builtin | version
    name: str = ""
    split: str = "test"
    version_id: int | None = None
    limit: int | None = None

    @property
    def benchmark(self) -> str:
        base = f"version {self.version_id}/{self.split}" if self.source == "version" else f"{self.name}/{self.split}"
        return f"{base} (first {self.limit})" if self.limit else base

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "name": self.name, "split": self.split, "version_id": self.version_id,
                "limit": self.limit}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalSpec:
        return cls(data["source"], data.get("name", ""), data.get("split", "test"), data.get("version_id"),
                   data.get("limit"))


def load_eval_set(spec: EvalSpec, data_dir: str | None = None) -> tuple[EvalSet, int | None]:
    """(the evaluation set, its taxonomy id when it comes from the database). A regression set (EmoBank
    valence) comes back as a core.train.dimensions.RegressionSet."""
    if spec.source == "builtin" and spec.name in external.REGRESSION:
        regression = external.emobank(spec.split, data_dir)
        return (regression.head(spec.limit) if spec.limit else regression), None
    if spec.source == "builtin":
        evalset = external.load(spec.name, spec.split, data_dir)
        taxonomy_id = None
    elif spec.source == "version":
        evalset, taxonomy_id = version_set(spec.version_id, spec.split)
    else:
        raise ValueError(f"unknown evaluation source {spec.source!r}")
    return (evalset.head(spec.limit) if spec.limit else evalset), taxonomy_id


def version_set(version_id: int | None, split: str) -> tuple[EvalSet, int | None]:
    """A dataset version's split, labelled with its frozen labels over the version's taxonomy."""
    with read_session() as session:
        version = session.get(DatasetVersion, version_id) if version_id is not None else None
        if version is None:
            raise ValueError(f"No dataset version with id {version_id}.")
        rows = session.execute(
            select(Example.text, Example.context, DatasetMember.labels)
            .join(Example, Example.id == DatasetMember.example_id)
            .where(DatasetMember.version_id == version.id, DatasetMember.split == split)
            .order_by(DatasetMember.example_id)).tuples().all()
        taxonomy_id, name, multi = version.taxonomy_id, version.name, True
    if taxonomy_id is None:
        raise ValueError(f"Dataset version {version_id} has no taxonomy.")
    taxonomy = get_taxonomy(taxonomy_id)
    multi = taxonomy.multi_label
    if not rows:
        raise ValueError(f"Dataset version {version_id} has no {split!r} examples.")
    names = taxonomy.label_names
    index = {n: i for i, n in enumerate(names)}
    y = np.zeros((len(rows), len(names)), dtype=np.int8)
    for r, (_, _, labels) in enumerate(rows):
        for label in labels or []:
            if label in index:
                y[r, index[label]] = 1
    contexts = [c for _, c, _ in rows]
    evalset = EvalSet(f"{name}/{split}", names, [label.description for label in taxonomy.labels],
                      [t for t, _, _ in rows], y, multi, contexts if any(contexts) else None,
                      {"version_id": version_id})
    return evalset, taxonomy_id


# --------------------------------------------------------------------------- scoring


@dataclass
class Scored:
    probs: np.ndarray  # what the model calls probabilities (calibration is computed on these)
    decisions: np.ndarray  # 0/1
    rule: dict[str, Any] = field(default_factory=dict)


def score(predictor: Any, evalset: EvalSet, *, thresholds: dict[str, Any] | None = None,
          per_label: bool = False, batch: int = 2048) -> Scored:
    """Probabilities and decisions of any predictor (classifier, contrastive, baseline) on a set."""
    kind = getattr(predictor, "kind", "")
    if kind == "classifier":
        probs = _classifier_probs(predictor, evalset)
        if not evalset.multi_label:
            return Scored(probs, _top1(probs), {"kind": "top-1"})
        thresholds = dict(thresholds or getattr(predictor, "thresholds", {}) or {})
        cut: Any = float(thresholds.get("global", 0.5))
        rule = {"kind": "threshold", "value": cut}
        if per_label and thresholds.get("per_label"):
            cut = [float(thresholds["per_label"].get(n, cut)) for n in evalset.labels]
            rule = {"kind": "per-label thresholds", "value": cut}
        return Scored(probs, M.binarize(probs, cut), rule)
    decide = getattr(predictor, "cosines", None) or predictor.decision_scores
    parts_scores, parts_probs = [], []
    for start in range(0, max(1, len(evalset)), batch):
        texts = evalset.texts[start:start + batch]
        contexts = evalset.contexts[start:start + batch] if evalset.contexts is not None else None
        s = decide(texts, contexts, evalset.labels, evalset.descriptions)
        parts_scores.append(s)
        parts_probs.append(predictor.probabilities(s) if hasattr(predictor, "probabilities") else s)
    scores, probs = np.vstack(parts_scores), np.vstack(parts_probs)
    if not evalset.multi_label:
        return Scored(probs, _top1(scores), {"kind": "top-1"})
    rule: Rule = getattr(predictor, "rule", None) or Rule()
    return Scored(probs, rule.apply(scores), {"kind": rule.kind, "value": rule.value,
                                              "calibrated_dev_macro_f1": rule.dev_macro_f1})


def _top1(scores: np.ndarray) -> np.ndarray:
    """The top label of each row; none where no score is positive (e.g. a lexicon that found no word)."""
    out = np.zeros(scores.shape, dtype=np.int8)
    if len(scores):
        out[np.arange(len(scores)), scores.argmax(1)] = 1
        out[scores.max(1) <= 0] = 0
    return out


def _classifier_probs(predictor: Any, evalset: EvalSet) -> np.ndarray:
    known = list(predictor.labels)
    groups = _grouping_for(evalset, known)
    if groups is None and all(n in known for n in evalset.labels):
        return predictor.predict(evalset.texts, evalset.contexts, evalset.labels)
    if groups is None:
        missing = [n for n in evalset.labels if n not in known]
        raise ValueError(f"this classifier does not know the label(s) {', '.join(missing)} and no grouping maps "
                         "its labels onto them; evaluate a contrastive model on this set instead")
    probs = predictor.predict(evalset.texts, evalset.contexts)
    out = np.zeros((len(evalset), len(evalset.labels)))
    for col, name in enumerate(evalset.labels):
        members = [known.index(m) for m in groups.get(name, []) if m in known]
        if members:
            out[:, col] = probs[:, members].max(1)
    return out


def _grouping_for(evalset: EvalSet, known: list[str]) -> dict[str, list[str]] | None:
    """The grouping (GoEmotions -> Ekman / sentiment) that maps the classifier's labels onto the set's labels,
    when the set is such a grouping and the classifier knows more than the groups themselves."""
    if set(known) <= set(evalset.labels):
        return None
    for key, groups in GROUPINGS.items():
        named = evalset.name.startswith(key) or set(evalset.labels) == set(groups)
        members = {m for ms in groups.values() for m in ms}
        if named and set(evalset.labels) <= set(groups) and len(members & set(known)) > len(set(groups) & set(known)):
            return groups
    return None


def figures(evalset: EvalSet, scored: Scored) -> dict[str, Any]:
    """Every figure of one evaluation (plain JSON types)."""
    y, pred, probs = evalset.y.astype(np.int64), scored.decisions.astype(np.int64), scored.probs
    out: dict[str, Any] = M.f1_summary(y, pred)
    out["per_label"] = M.per_label_report(y, pred, evalset.labels)
    out["examples"] = len(y)
    out["labels"] = list(evalset.labels)
    out["multi_label"] = bool(evalset.multi_label)
    out["rule"] = scored.rule
    out["confusion"] = confusion(y, pred, evalset.multi_label)
    out["calibration"] = calibration(y, probs)
    if not evalset.multi_label:
        out["accuracy"] = float((y.argmax(1) == pred.argmax(1)).mean()) if len(y) else 0.0
    return out


def confusion(y: np.ndarray, pred: np.ndarray, multi_label: bool) -> list[list[int]]:
    """Single-label: rows true label, columns predicted label. Multi-label: rows true label, columns how many
    of the texts with that true label got each label predicted (the diagonal is the true positives)."""
    if not multi_label:
        from sklearn.metrics import confusion_matrix

        return confusion_matrix(y.argmax(1), pred.argmax(1), labels=list(range(y.shape[1]))).tolist()
    return (y.T @ pred).astype(int).tolist()


def calibration(y: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """Reliability over every (text, label) cell: per bin of predicted probability, the mean prediction, the
    observed frequency of the label and the count; ECE = count-weighted mean |prediction - frequency|."""
    p = np.clip(np.asarray(probs, dtype=np.float64).ravel(), 0.0, 1.0)
    t = np.asarray(y, dtype=np.float64).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        if n:
            mean_p, freq = float(p[mask].mean()), float(t[mask].mean())
            ece += n * abs(mean_p - freq)
            rows.append({"bin": b, "low": float(edges[b]), "high": float(edges[b + 1]), "mean_predicted": mean_p,
                         "observed": freq, "count": n})
    return {"bins": rows, "ece": float(ece / len(p)) if len(p) else 0.0}


# --------------------------------------------------------------------------- stored evaluations


def evaluate_model(actor: Actor | None, model_id: int, spec: EvalSpec, *, per_label: bool = False,
                   data_dir: str | None = None, predictor: Any = None) -> int:
    """Score a registered model on one set and store the Evaluation; returns its id."""
    from core.train import registry

    require_admin(actor)

    record = registry.get_model(model_id)
    result, taxonomy_id = evaluate_one(record, spec, per_label=per_label, data_dir=data_dir, predictor=predictor)
    return store_evaluation(actor, model_id, spec.benchmark, result, taxonomy_id)


def evaluate_one(record: Any, spec: EvalSpec, *, per_label: bool = False, data_dir: str | None = None,
                 predictor: Any = None) -> tuple[dict[str, Any], int | None]:
    """The figures of one registered model on one set (classification or regression) and the set's taxonomy."""
    from core.train import dimensions, registry

    evalset, taxonomy_id = load_eval_set(spec, data_dir)
    predictor = predictor or registry.load_predictor(record.id)
    if isinstance(evalset, dimensions.RegressionSet):
        result = dimensions.evaluate(predictor, evalset)
    else:
        result = figures(evalset, score(predictor, evalset, thresholds=record.thresholds, per_label=per_label))
    result["source"] = spec.to_dict()
    result["model"] = {"id": record.id, "name": record.name, "kind": record.kind}
    return result, taxonomy_id


def store_evaluation(actor: Actor | None, model_id: int, benchmark: str, result: dict[str, Any],
                     taxonomy_id: int | None = None, session=None) -> int:
    """Store one evaluation's figures (in the caller's transaction when `session` is given)."""
    from core.train.registry import _jsonable

    require_admin(actor)
    if session is None:
        with write_session() as own:
            return store_evaluation(actor, model_id, benchmark, result, taxonomy_id, own)
    row = Evaluation(model_id=model_id, benchmark=benchmark, taxonomy_id=taxonomy_id, figures=_jsonable(result))
    session.add(row)
    session.flush()
    return row.id


def enqueue_evaluation(actor: Actor | None, model_ids: list[int], specs: list[EvalSpec], *,
                       per_label: bool = False) -> int:
    """Queue the evaluation of models on sets for the worker (one Evaluation row per model and set)."""
    actor = require_admin(actor)
    if not model_ids or not specs:
        raise ValueError("Choose at least one model and one evaluation set.")
    with read_session() as session:
        found = set(session.scalars(select(Model.id).where(Model.id.in_(model_ids))))
    missing = [m for m in model_ids if m not in found]
    if missing:
        raise ValueError(f"No model with id {', '.join(map(str, missing))}.")
    for spec in specs:
        if spec.source == "builtin" and not external.available().get(spec.name):
            raise ValueError(f"The files of {spec.name} are not in {external.data_dir()}.")
    payload = {"model_ids": list(model_ids), "specs": [s.to_dict() for s in specs], "per_label": per_label}
    title = f"Evaluate {len(model_ids)} model(s) on {', '.join(s.benchmark for s in specs)}"
    return jobs.enqueue(actor, JOB_KIND, payload, title=title[:300])


@jobs.handler(JOB_KIND)
def run_evaluation_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """One evaluation per (model, set); the checkpoint lists the pairs done, so a resumed job skips them."""
    from core.train import registry

    pairs = [(m, EvalSpec.from_dict(s)) for m in ctx.payload["model_ids"] for s in ctx.payload["specs"]]
    done = {tuple(p) for p in ctx.checkpoint.get("done", [])}
    ctx.set_progress(len(done), len(pairs), note=f"{len(done)} of {len(pairs)} evaluations done")
    stored: list[int] = list(ctx.checkpoint.get("evaluations", []))
    for model_id, spec in pairs:
        key = (model_id, spec.benchmark)
        if key in done:
            continue
        ctx.check_cancel()
        try:
            record = registry.get_model(model_id)
            result, taxonomy_id = evaluate_one(record, spec, per_label=bool(ctx.payload.get("per_label")))
        except (ValueError, FileNotFoundError, KeyError) as error:
            raise jobs.JobFailed(f"{spec.benchmark}, model {model_id}: {error}") from None
        done.add(key)
        headline = (f"Pearson r {result['pearson_r']:.3f}" if "pearson_r" in result
                    else f"macro-F1 {result['macro_f1']:.3f}")
        with ctx.batch() as session:
            stored.append(store_evaluation(ctx.actor, model_id, spec.benchmark, result, taxonomy_id, session))
            ctx.advance(session, 1, checkpoint={"done": [list(k) for k in done], "evaluations": stored},
                        note=f"{record.name} on {spec.benchmark}: {headline}")
    return {"evaluations": stored}


@dataclass(frozen=True)
class EvaluationRow:
    id: int
    model_id: int
    model: str
    kind: str
    benchmark: str
    macro_f1: float
    micro_f1: float
    examples: int
    created_at: datetime
    figures: dict[str, Any]


def list_evaluations(actor: Actor | None, model_ids: list[int] | None = None,
                     benchmark: str | None = None) -> list[EvaluationRow]:
    """Stored evaluations, newest first (everyone who may open the Playground may read them)."""
    require_page(actor, "playground")
    with read_session() as session:
        query = (select(Evaluation, Model.name, Model.kind).join(Model, Model.id == Evaluation.model_id)
                 .order_by(Evaluation.id.desc()))
        if model_ids:
            query = query.where(Evaluation.model_id.in_(model_ids))
        if benchmark:
            query = query.where(Evaluation.benchmark == benchmark)
        return [EvaluationRow(e.id, e.model_id, name, kind, e.benchmark, float(e.figures.get("macro_f1", 0.0)),
                              float(e.figures.get("micro_f1", 0.0)), int(e.figures.get("examples", 0)),
                              e.created_at, dict(e.figures or {}))
                for e, name, kind in session.execute(query).tuples()]


def comparison(actor: Actor | None, model_ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Side by side: one row per model, one column per benchmark (the latest evaluation of each pair):
    [{'model': name, 'kind': ..., '<benchmark> macro-F1': ..., '<benchmark> micro-F1': ...}]."""
    latest: dict[tuple[int, str], EvaluationRow] = {}
    for row in list_evaluations(actor, model_ids):
        latest.setdefault((row.model_id, row.benchmark), row)
    table: dict[int, dict[str, Any]] = {}
    for (model_id, benchmark), row in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        entry = table.setdefault(model_id, {"model": row.model, "kind": row.kind})
        if "pearson_r" in row.figures:  # a regression set (EmoBank valence)
            entry[f"{benchmark} Pearson r"] = round(float(row.figures["pearson_r"]), 4)
            entry[f"{benchmark} MAE"] = round(float(row.figures["mae"]), 4)
            continue
        entry[f"{benchmark} macro-F1"] = round(row.macro_f1, 4)
        entry[f"{benchmark} micro-F1"] = round(row.micro_f1, 4)
    return list(table.values())


def builtin_specs() -> list[EvalSpec]:
    """Every built-in set whose files are present, with its usual split."""
    usual = {"goemotions": "test", "goemotions-ekman": "test", "goemotions-sentiment": "test", "emotion6": "test",
             "semeval-ec": "dev", "emobank-valence": "test"}
    present = external.available()
    return [EvalSpec("builtin", name, split) for name, split in usual.items() if present.get(name)]


# --------------------------------------------------------------------------- the Playground


@dataclass(frozen=True)
class LabelSet:
    name: str
    labels: tuple[str, ...]
    descriptions: tuple[str, ...]


def label_sets(actor: Actor | None) -> list[LabelSet]:
    """Label sets to try a zero-shot model on: every taxonomy, and the external sets' label sets."""
    from core.taxonomy import list_taxonomies

    require_page(actor, "playground")
    out = []
    for view in list_taxonomies():
        detail = get_taxonomy(view.id)
        out.append(LabelSet(f"taxonomy: {detail.name}", tuple(detail.label_names),
                            tuple(label.description for label in detail.labels)))
    for name, labels in (("emotion (6 classes)", external.EMOTION6_LABELS),
                         ("SemEval-2018 E-c (11 emotions)", external.SEMEVAL_EC_LABELS)):
        out.append(LabelSet(name, tuple(n for n, _ in labels), tuple(d for _, d in labels)))
    return out


def parse_label_lines(text: str) -> tuple[list[str], list[str]]:
    """'name: description' (or just 'name') per line -> (names, descriptions); duplicates dropped."""
    from core.taxonomy import normalise_label

    names, descriptions = [], []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        name, _, description = line.partition(":")
        name = normalise_label(name)
        if name and name not in names:
            names.append(name)
            descriptions.append(" ".join(description.split()))
    return names, descriptions


@dataclass(frozen=True)
class Prediction:
    model: str
    kind: str
    labels: list[str]
    probabilities: list[float]
    predicted: list[str]
    note: str = ""


def predict_text(actor: Actor | None, model_id: int, text: str, context: str | None = None,
                 label_names: list[str] | None = None, label_descriptions: list[str] | None = None) -> Prediction:
    """One text's probability for each label of a registered model (a contrastive model or a similarity
    baseline: any label set; a classifier: its own labels), and the labels its decision rule predicts."""
    from core.train import registry

    require_page(actor, "playground")
    text = (text or "").strip()
    if not text:
        raise ValueError("Type a text first.")
    context = (context or "").strip() or None
    record = registry.get_model(model_id)
    if record.kind == "baseline" and record.config.get("baseline") == "teacher":
        raise ValueError("The teacher baseline answers through the LLM as a worker job; pick another model.")
    predictor = registry.load_predictor(model_id)
    if record.kind == "classifier":
        names = list(predictor.labels) if not label_names else list(label_names)
        probs = predictor.predict([text], [context] if context else None, names)[0]
        per_label = record.thresholds.get("per_label") or {}
        cut = [float(per_label.get(n, record.global_threshold)) for n in names]
        predicted = [n for n, p, t in zip(names, probs, cut) if p >= t]
        note = f"threshold {record.global_threshold:g}" + (" (per label)" if per_label else "")
    else:
        if not label_names:
            label_names, label_descriptions = list(getattr(predictor, "labels", []) or []), None
            label_descriptions = list(getattr(predictor, "descriptions", []) or []) or None
        if not label_names:
            raise ValueError("Choose a label set: this model predicts over any set of labels you give it.")
        names = list(label_names)
        descriptions = list(label_descriptions) if label_descriptions else [""] * len(names)
        contexts = [context] if context else None
        scores = (predictor.cosines if hasattr(predictor, "cosines") else predictor.decision_scores)(
            [text], contexts, names, descriptions)
        probs = predictor.probabilities(scores)[0] if hasattr(predictor, "probabilities") else scores[0]
        rule = getattr(predictor, "rule", None) or Rule()
        decided = rule.apply(scores)[0]
        predicted = [n for n, d in zip(names, decided) if d]
        note = f"rule: {rule.kind} {rule.value:g}"
    return Prediction(record.name, record.kind, names, [float(p) for p in probs], predicted, note)


def models_for_playground(actor: Actor | None) -> list[Any]:
    """Registered models that answer at once (the teacher baseline runs as a job, so it is left out)."""
    from core.train import registry

    return [m for m in registry.models_for_page(actor, "playground")
            if not (m.kind == "baseline" and m.config.get("baseline") == "teacher")]


def version_choices(actor: Actor | None) -> list[tuple[int, str]]:
    require_admin(actor)
    with read_session() as session:
        return [(v.id, v.name) for v in session.scalars(select(DatasetVersion).order_by(DatasetVersion.id.desc()))]


@dataclass(frozen=True)
class DimensionScore:
    model: str
    dimension: str
    score: float  # on the dimension's scale
    toward_high: float  # 0 = the low pole, 1 = the high pole


def predict_dimension(actor: Actor | None, model_id: int, text: str, high: Sequence[str], low: Sequence[str],
                      context: str | None = None, scale: tuple[float, float] = (1.0, 5.0),
                      name: str = "dimension", mapping: str = DEFAULT_MAPPING) -> DimensionScore:
    """One text's zero-shot score on a dimension given by its two poles' wordings (the Playground)."""
    from core.train import dimensions, registry

    require_page(actor, "playground")
    text = (text or "").strip()
    if not text:
        raise ValueError("Type a text first.")
    dimension = dimensions.Dimension(name, tuple(high), tuple(low), float(scale[0]), float(scale[1]))
    dimension.check()
    record = registry.get_model(model_id)
    predictor = registry.load_predictor(model_id)
    value = float(dimensions.scores(predictor, [text], dimension, [(context or "").strip() or None], mapping)[0])
    toward_high = (value - dimension.low_value) / (dimension.high_value - dimension.low_value)
    return DimensionScore(record.name, name, value, toward_high)