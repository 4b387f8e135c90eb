"""Baselines, scored exactly like trained models (core.train.evaluate):

- `embedding`: cosine similarity between the UNTRAINED encoder's embedding of a text and of each
  label's name (the default student, all-MiniLM-L6-v2): the floor a contrastive model must beat;
- `nrc`: the NRC emotion lexicon (`nrclex`'s bundled word list), on words we tokenise ourselves (a
  regular expression, plus a plural / -ed / -ing fallback; no TextBlob or NLTK downloads). A label's score is the
  share of the text's affect words in the NRC categories the label stands for: its own name when it
  is an NRC category, else a close category or a Plutchik dyad (love = joy + trust, optimism =
  anticipation + joy, ...); `neutral` scores 1 when the text has no affect word. Labels with no
  NRC counterpart score 0 and are listed in `uncovered`;
- `teacher`: the teacher LLM's own zero-shot labels (the `describe` prompt over the label set) as a
  worker job with the real engine, see `enqueue_teacher_baseline`.

Baselines are registered in the model registry (kind `baseline`) so that their evaluations sit
beside the trained models' and are compared side by side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.train.contrastive import ContrastiveModel
from core.train.rules import Rule

NRC_CATEGORIES = ("anger", "anticipation", "disgust", "fear", "joy", "sadness", "surprise", "trust",
                  "positive", "negative")

# Label name -> NRC categories it stands for (Plutchik's dyads where the label is one).
NRC_MAP: dict[str, tuple[str, ...]] = {
    **{c: (c,) for c in NRC_CATEGORIES},
    # GoEmotions
    "admiration": ("trust", "joy"), "amusement": ("joy",), "annoyance": ("anger",), "approval": ("trust",),
    "caring": ("trust", "joy"), "confusion": ("surprise",), "curiosity": ("anticipation", "surprise"),
    "desire": ("anticipation", "joy"), "disappointment": ("sadness", "surprise"), "disapproval": ("sadness", "surprise"),
    "embarrassment": ("fear", "sadness"), "excitement": ("joy", "anticipation"), "gratitude": ("joy", "trust"),
    "grief": ("sadness",), "love": ("joy", "trust"), "nervousness": ("fear",), "optimism": ("anticipation", "joy"),
    "pride": ("joy",), "realization": ("surprise",), "relief": ("joy",), "remorse": ("sadness", "disgust"),
    # SemEval E-c, sentiment and common names
    "pessimism": ("sadness", "anticipation"), "happiness": ("joy",), "sorrow": ("sadness",), "rage": ("anger",),
    "anxiety": ("fear",), "worry": ("fear",), "hope": ("anticipation", "joy"), "contempt": ("disgust", "anger"),
    "awe": ("fear", "surprise"), "submission": ("trust", "fear"), "aggressiveness": ("anger", "anticipation"),
    "interest": ("anticipation",), "shame": ("fear", "sadness"),
}
NEUTRAL_NAMES = ("neutral", "no emotion", "none")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def tokenise(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def _lexicon() -> dict[str, list[str]]:
    from nrclex import NRCLex

    return NRCLex(None).__lexicon__


def _lookup(word: str, lexicon: dict[str, list[str]]) -> list[str]:
    """The word's NRC categories; a plural, -ed, -ing or -ly form falls back to its stem."""
    if word in lexicon:
        return lexicon[word]
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e"),
                         ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            stem = word[: -len(suffix)] + repl
            if stem in lexicon:
                return lexicon[stem]
    return []


class NRCBaseline:
    """The NRC lexicon as a predictor over any label set (labels it cannot stand for score 0)."""

    kind = "baseline"
    name = "nrc"

    def __init__(self, rule: Rule | None = None):
        self.lexicon = _lexicon()
        self.rule = rule or Rule("threshold", 0.2)
        self.labels: list[str] = []
        self.uncovered: list[str] = []

    def category_shares(self, text: str) -> dict[str, float]:
        counts: dict[str, int] = {}
        for word in tokenise(text):
            for category in _lookup(word, self.lexicon):
                counts[category] = counts.get(category, 0) + 1
        emotions = {c: n for c, n in counts.items() if c not in ("positive", "negative")}
        total = sum(emotions.values())
        shares = {c: n / total for c, n in emotions.items()} if total else {}
        polar = counts.get("positive", 0) + counts.get("negative", 0)
        for c in ("positive", "negative"):
            shares[c] = counts.get(c, 0) / polar if polar else 0.0
        return shares

    def predict(self, texts: Sequence[str], contexts: Sequence[str | None] | None = None,
                label_names: Sequence[str] | None = None, label_descriptions: Sequence[str] | None = None) -> np.ndarray:
        names = [n.strip().lower() for n in (label_names or [])]
        if not names:
            raise ValueError("the NRC baseline needs a label set")
        self.uncovered = [n for n in names if n not in NRC_MAP and n not in NEUTRAL_NAMES]
        out = np.zeros((len(texts), len(names)), dtype=np.float64)
        for row, text in enumerate(texts):
            shares = self.category_shares(text)
            affect = any(v > 0 for v in shares.values())
            for col, name in enumerate(names):
                if name in NEUTRAL_NAMES:
                    out[row, col] = 0.0 if affect else 1.0
                elif name in NRC_MAP:
                    out[row, col] = float(np.mean([shares.get(c, 0.0) for c in NRC_MAP[name]]))
        return out

    def decision_scores(self, texts, contexts=None, label_names=None, label_descriptions=None) -> np.ndarray:
        return self.predict(texts, contexts, label_names, label_descriptions)


class EmbeddingBaseline(ContrastiveModel):
    """Cosine of the untrained encoder's text embedding with each label NAME (no description, no training)."""

    kind = "baseline"
    name = "embedding"

    def __init__(self, path: str | Path | None = None, rule: Rule | None = None, *, max_length: int = 64,
                 label_max_length: int = 48):
        import torch

        from core import embeddings

        # Nothing is trained here, so the encoder is the process's shared copy (core.embeddings, the one
        # dedup and the Curate signals use), not a second load; the other fields are ContrastiveModel's.
        shared = embeddings.encoder(path)
        self.path, self.device = embeddings.folder(path), str(shared.device)
        self.tokenizer, self.encoder = shared.tokenizer, shared[0].auto_model
        self.log_scale = torch.nn.Parameter(torch.tensor(0.0), requires_grad=False)  # unused: scores are cosines
        self.bias = torch.nn.Parameter(torch.tensor(0.0), requires_grad=False)
        self.rule = rule or Rule()
        self.labels, self.descriptions = [], []
        self.max_length, self.label_max_length = max_length, label_max_length

    def label_prototypes(self, names: Sequence[str], descriptions: Sequence[str] | None = None) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self._embed([" ".join(n.replace("_", " ").split()) for n in names],
                               self.label_max_length).float().cpu().numpy()

    def probabilities(self, cosines: np.ndarray) -> np.ndarray:
        return np.clip(cosines, 0.0, 1.0)  # a similarity, shown as a score in [0, 1]

    def _label_set(self, names, descriptions):
        if names is None:
            raise ValueError("the embedding baseline needs a label set")
        return super()._label_set(names, descriptions)


BASELINES = {"embedding": "untrained embedding similarity to label names", "nrc": "NRC emotion lexicon",
             "teacher": "the teacher LLM's zero-shot labels"}


def load_predictor(path: str, record: Any = None):
    """Registry loader for kind `baseline` (config['baseline'] says which)."""
    config = dict(getattr(record, "config", None) or {})
    which = config.get("baseline", "embedding")
    rule = Rule(**config["rule"]) if config.get("rule") else None
    if which == "embedding":
        return EmbeddingBaseline(path or None, rule=rule)
    if which == "nrc":
        return NRCBaseline(rule=rule)
    if which == "teacher":
        raise ValueError("the teacher baseline answers through the LLM engine as a worker job: "
                         "run its evaluation from the Playground's Evaluate tab")
    raise ValueError(f"unknown baseline {which!r}")


# --------------------------------------------------------------------------- registered baselines (worker jobs)

REGISTER_JOB = "register_baselines"
TEACHER_JOB = "baseline_teacher"
CALIBRATION_SET = {"source": "builtin", "name": "goemotions", "split": "dev", "limit": 1000}


def _baseline_model(actor: Any, which: str, name: str, path: str, labels: list[str], config: dict[str, Any]) -> int:
    """The registered baseline `name` (updated with this configuration), or a new one."""
    from sqlalchemy import select

    from core.auth import require_admin
    from core.train import registry
    from db.models import Model
    from db.session import write_session

    require_admin(actor)
    with write_session() as s:
        model = s.scalar(select(Model).where(Model.name == name))
        if model is not None:
            model.config = registry._jsonable({**config, "baseline": which})
            model.path, model.labels = path, labels
            if config.get("rule"):
                model.thresholds = {"rule": config["rule"]}
            registry._forget(model.id)
            return model.id
    return registry.register_model(actor, "baseline", name, path, labels,
                                   {"rule": config["rule"]} if config.get("rule") else {}, {**config, "baseline": which}, {})


def enqueue_register_baselines(actor: Any, calibration: dict[str, Any] | None = None) -> int:
    """Queue the job that registers the embedding and NRC baselines, their decision rules calibrated on a
    dev split of the training taxonomy (by default 1,000 texts of GoEmotions dev)."""
    from core import jobs
    from core.auth import require_admin

    require_admin(actor)
    return jobs.enqueue(actor, REGISTER_JOB, {"calibration": calibration or CALIBRATION_SET},
                        title="Register the embedding and NRC baselines")


def register_baselines(actor: Any, calibration: dict[str, Any] | None = None,
                       data_dir: str | None = None) -> dict[str, int]:
    """Register (or refresh) the embedding and NRC baselines; returns name -> model id."""
    from core.auth import require_admin
    from core.models_setup import ensure_student
    from core.train.rules import calibrate_rule
    from core.train.evaluate import EvalSpec, load_eval_set

    require_admin(actor)
    spec = EvalSpec.from_dict(calibration or CALIBRATION_SET)
    try:
        dev, _ = load_eval_set(spec, data_dir)
    except FileNotFoundError:
        dev = None
    out = {}
    student = str(ensure_student())
    embedding = EmbeddingBaseline(student)
    nrc = NRCBaseline()
    for which, predictor, name in (("embedding", embedding, "baseline: untrained embedding similarity"),
                                   ("nrc", nrc, "baseline: NRC lexicon")):
        config: dict[str, Any] = {"description": BASELINES[which]}
        if dev is not None:
            scores = (predictor.cosines(dev.texts, dev.contexts, dev.labels, dev.descriptions)
                      if which == "embedding" else predictor.decision_scores(dev.texts, None, dev.labels))
            rule = calibrate_rule(scores, dev.y)
            config.update(rule=rule.__dict__, calibrated_on=spec.benchmark)
        out[name] = _baseline_model(actor, which, name, student if which == "embedding" else "", [], config)
    return out


def _jobs():
    from core import jobs

    return jobs


@_jobs().handler(REGISTER_JOB)
def run_register_job(ctx) -> dict[str, Any]:
    ctx.set_progress(0, 1, note="calibrating the baselines' decision rules")
    ids = register_baselines(ctx.actor, ctx.payload.get("calibration"))
    ctx.set_progress(1, 1, note=f"{len(ids)} baselines registered")
    return {"models": ids}


def enqueue_teacher_baseline(actor: Any, spec: dict[str, Any], *, limit: int | None = None, seed: int = 0) -> int:
    """Queue the teacher LLM's zero-shot labelling of an evaluation set (by default the WHOLE set; `limit`: its
    first N texts) through the response cache, scored and stored as an evaluation of the baseline
    'teacher <model>' like any model's. A killed worker's job resumes from the cached answers."""
    from core import jobs
    from core.auth import require_admin
    from core.train.evaluate import EvalSpec, load_eval_set
    from core.train.external import REGRESSION

    require_admin(actor)
    if limit is not None and limit < 1:
        limit = None  # 0 on the page and the CLI: the whole set
    parsed = EvalSpec.from_dict({**spec, "limit": limit})
    if parsed.name in REGRESSION:
        raise ValueError("The teacher baseline labels emotions: pick a classification set.")
    load_eval_set(parsed)  # a missing file or an empty version is reported now, not by the worker
    return jobs.enqueue(actor, TEACHER_JOB, {"spec": parsed.to_dict(), "seed": seed},
                        title=f"Teacher zero-shot labels: {parsed.benchmark}")


def teacher_scores(parsed: dict[str, Any] | None, labels: list[str]) -> np.ndarray:
    """One answer's emotions as scores over `labels` (names outside the set are ignored)."""
    from core.taxonomy import normalise_label

    out = np.zeros(len(labels))
    index = {n: i for i, n in enumerate(labels)}
    for emotion in (parsed or {}).get("emotions", []) or []:
        i = index.get(normalise_label(str(emotion.get("name", ""))))
        if i is not None:
            out[i] = max(out[i], float(emotion.get("score", 0.0)))
    return out


@_jobs().handler(TEACHER_JOB)
def run_teacher_job(ctx) -> dict[str, Any]:
    from core import labels as label_store
    from core.llm import settings as engine_settings
    from core.llm.runner import run_requests
    from core.pipeline import annotate
    from core.pipeline.steps import get as pipeline_step
    from core.pipeline.steps.base import answers
    from core.train import evaluate
    from db.session import read_session

    jobs = _jobs()
    spec = evaluate.EvalSpec.from_dict(ctx.payload["spec"])
    try:
        evalset, taxonomy_id = evaluate.load_eval_set(spec)
    except (ValueError, FileNotFoundError) as error:
        raise jobs.JobFailed(str(error)) from None
    try:
        engine = annotate.current_engine()
    except Exception as error:  # noqa: BLE001 (any engine start failure is reported to the user)
        raise jobs.JobFailed(f"the engine could not start: {type(error).__name__}: {error}") from None
    settings = engine_settings.load()
    sctx = annotate.text_context(engine, list(zip(evalset.labels, evalset.descriptions)), None,
                                 settings.default_sampling(), int(ctx.payload.get("seed") or 0), ("text_labels",))
    requests = annotate.describe_requests(list(enumerate(evalset.texts)), sctx, "text_labels")
    report = run_requests(ctx, engine, list(requests.values()), output_model=pipeline_step("text_labels").output(sctx),
                          stage="baseline_teacher", batch_size=settings.batch_size,
                          validation_attempts=settings.validation_attempts)
    with read_session() as session:
        found = answers(session, list(requests.values()))
    scores = np.zeros((len(evalset), len(evalset.labels)))
    answered = 0
    for i, request in requests.items():
        answer = found.get(request.key)
        if answer is not None:
            answered += 1
            scores[i] = teacher_scores(answer.parsed, evalset.labels)
    if not answered:
        raise jobs.JobFailed(f"none of the {len(requests)} requests was answered")
    cut = label_store.threshold()
    if evalset.multi_label:
        decisions = (scores >= cut).astype(np.int8)
        rule = {"kind": "teacher score threshold (labels.threshold)", "value": cut}
    else:
        decisions = np.zeros(scores.shape, dtype=np.int8)
        some = scores.max(1) > 0
        decisions[np.flatnonzero(some), scores[some].argmax(1)] = 1
        rule = {"kind": "top-1 of the teacher's scores (none when it named no label of the set)"}
    figs = evaluate.figures(evalset, evaluate.Scored(scores, decisions, rule))
    figs.update(source=spec.to_dict(), answered=answered, requests=len(requests), llm=report.as_dict())
    name = f"baseline: teacher {engine.model}"[:200]
    model_id = _baseline_model(ctx.actor, "teacher", name, "", [], {"description": BASELINES["teacher"], "engine": engine.name,
                                                         "model": engine.model})
    evaluation_id = evaluate.store_evaluation(ctx.actor, model_id, spec.benchmark, figs, taxonomy_id)
    return {"model_id": model_id, "evaluation_id": evaluation_id, "answered": answered,
            "macro_f1": figs["macro_f1"], "micro_f1": figs["micro_f1"]}
