"""Back to review: cross-validated student predictions turned into label-issue scores.

Every example of a dataset version (all splits) gets a prediction from a student that never saw
it: the version is cut into k folds (iterative multi-label stratification), a classifier is
trained on k-1 folds (a tenth of them held out as its dev set) and predicts the remaining fold.
cleanlab's multi-label label-quality score compares those out-of-fold probabilities with the
version's labels (the curated labels: a reviewer's relabel, else the teacher's suggestions);
the signal value is 1 - quality, so the highest values are the examples where the student
disagrees most with what the data set says. Each Signal row (kind `label_issue`) also records the
given labels, the student's and the teacher's, and whether cleanlab flags it as an issue.

The Curate page filters and sorts on it (signal kind `label_issue`), and a review campaign takes
the top N (`Selection(top_signal="label_issue", top_n=N)`), see `create_issue_campaign`.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from core import config, jobs
from core.auth import Actor, require_admin
from core.train.classifier import ClassifierConfig, ClassifierPredictor, Hooks, Split, train_classifier
from db.session import read_session, write_session

LABEL_ISSUE = "label_issue"
ISSUE_JOB = "label_issues"


@dataclass
class IssueSettings:
    folds: int = 5
    epochs: float = 2.0
    max_steps: int = 0  # per fold; 0 = as many as the epochs make
    batch_size: int = 32
    learning_rate: float = 8e-5
    max_length: int = 64
    base_model: str = ""
    seed: int = 13

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> IssueSettings:
        known = {f.name for f in fields(cls)}
        unknown = set(data or {}) - known
        if unknown:
            raise ValueError(f"unknown label-issue setting(s): {', '.join(sorted(unknown))}")
        settings = cls(**(data or {}))
        if settings.folds < 2:
            raise ValueError("cross-validation needs at least 2 folds")
        return settings

    def classifier(self) -> ClassifierConfig:
        return ClassifierConfig(base_model=self.base_model, epochs=self.epochs, max_steps=self.max_steps,
                                batch_size=self.batch_size, learning_rate=self.learning_rate,
                                max_length=self.max_length, seed=self.seed, early_stopping_patience=0)


def fold_assignment(targets: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold index per example, stratified over the labels (iterative stratification)."""
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    n = len(targets)
    if n < folds:
        raise ValueError(f"{n} examples cannot make {folds} folds")
    out = np.zeros(n, dtype=np.int64)
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros(n), (np.asarray(targets) >= 0.5).astype(int))):
        out[held_out] = k
    return out


def out_of_fold_probs(labels: list[str], data: Split, settings: IssueSettings, work_dir,
                      done: dict[int, np.ndarray] | None = None, on_fold=None, hooks: Hooks | None = None
                      ) -> np.ndarray:
    """(n, labels) probabilities, each row from the fold model that did not train on it.

    `done` holds folds already predicted (a resumed job); `on_fold(k, probs_of_fold)` hears each new one.
    """
    assignment = fold_assignment(data.targets, settings.folds, settings.seed)
    probs = np.zeros((len(data), len(labels)), dtype=np.float32)
    for k in range(settings.folds):
        held_out = np.flatnonzero(assignment == k)
        if done and k in done:
            probs[held_out] = done[k]
            continue
        rest = np.random.default_rng(settings.seed + k).permutation(np.flatnonzero(assignment != k))
        n_dev = max(1, len(rest) // 10)
        folder = work_dir / f"fold{k}"
        result = train_classifier(labels, data.subset(rest[n_dev:]), data.subset(rest[:n_dev]), folder,
                                  settings.classifier(), hooks, resume=True)
        held = data.subset(held_out)
        probs[held_out] = ClassifierPredictor(result.path).predict(held.texts, held.contexts)
        shutil.rmtree(folder, ignore_errors=True)
        if on_fold is not None:
            on_fold(k, probs[held_out])
    return probs


def issue_scores(targets: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(1 - cleanlab label quality, cleanlab's issue flag) per example."""
    from cleanlab.multilabel_classification import filter as cl_filter
    from cleanlab.multilabel_classification import rank

    given = [list(np.flatnonzero(row >= 0.5)) for row in np.asarray(targets)]
    quality = rank.get_label_quality_scores(given, np.asarray(probs, dtype=np.float64))
    try:
        flags = cl_filter.find_label_issues(given, np.asarray(probs, dtype=np.float64))
    except (ValueError, IndexError):  # too few examples of a label for cleanlab's noise estimate
        flags = np.zeros(len(given), dtype=bool)
    return 1.0 - np.asarray(quality, dtype=np.float64), np.asarray(flags, dtype=bool)


def _teacher_labels(ids: list[int], names: set[str]) -> dict[int, list[str]]:
    from core.curate.labels import suggestion_scores, threshold

    with read_session() as s:
        cut = threshold(s)
        scores = suggestion_scores(s, ids)
    return {i: sorted(n for n, v in scores.get(i, {}).items() if n in names and v >= cut) for i in ids}


def store_signals(actor: Actor | None, version_id: int, labels: list[str], data: Split, probs: np.ndarray,
                  computed_by: str) -> dict[str, Any]:
    """Replace every `label_issue` signal by this version's; returns counts for the job's result."""
    from core.curate.signals import replace_signals

    require_admin(actor)
    values, flags = issue_scores(data.targets, probs)
    teacher = _teacher_labels(data.ids, set(labels))
    rows: dict[int, dict[str, Any]] = {}
    for i, example_id in enumerate(data.ids):
        top = np.argsort(-probs[i])[:3]
        rows[example_id] = {
            "version_id": version_id,
            "given": [labels[j] for j in np.flatnonzero(data.targets[i] >= 0.5)],
            "student": [labels[j] for j in np.flatnonzero(probs[i] >= 0.5)],
            "student_top": [[labels[j], round(float(probs[i, j]), 4)] for j in top],
            "teacher": teacher.get(example_id, []),
            "is_issue": bool(flags[i]),
        }
    with write_session() as s:
        stored = replace_signals(s, LABEL_ISSUE, dict(zip(data.ids, values.tolist())), rows, computed_by=computed_by)
    return {"scored": stored, "flagged": int(flags.sum()), "mean_issue": float(values.mean())}


# --------------------------------------------------------------------------- jobs and campaigns


def enqueue_label_issues(actor: Actor | None, version_id: int, settings: dict[str, Any] | None = None) -> int:
    actor = require_admin(actor)
    checked = IssueSettings.from_dict(settings)
    from db.models import DatasetVersion

    with read_session() as s:
        version = s.get(DatasetVersion, version_id)
        if version is None:
            raise ValueError(f"no dataset version {version_id}")
        if version.size < checked.folds * 2:
            raise ValueError(f"version {version.name!r} has too few examples for {checked.folds} folds")
        name = version.name
    return jobs.enqueue(actor, ISSUE_JOB, {"version_id": version_id, "settings": asdict(checked)},
                        title=f"Label issues of {name} ({checked.folds}-fold student)")


class _FoldHooks(Hooks):
    def __init__(self, ctx: jobs.JobContext):
        self.ctx = ctx

    def should_stop(self) -> bool:
        return self.ctx.cancel_requested()


@jobs.handler(ISSUE_JOB)
def run_label_issues_job(ctx: jobs.JobContext) -> dict[str, Any]:
    from core.train.classifier import TrainingCancelled
    from core.train.data import load_version

    version_id = int(ctx.payload["version_id"])
    settings = IssueSettings.from_dict(ctx.payload.get("settings"))
    version = load_version(version_id)
    data = version.all_splits()
    work = config.home() / "label_issues" / str(ctx.job_id)
    work.mkdir(parents=True, exist_ok=True)
    done = {int(k): np.load(work / f"probs{k}.npy") for k in ctx.checkpoint.get("folds_done", [])}
    ctx.set_progress(len(done), settings.folds + 1, note=f"{len(data):,} examples, {settings.folds} folds")

    def on_fold(k: int, fold_probs: np.ndarray) -> None:
        np.save(work / f"probs{k}.npy", fold_probs)
        with ctx.batch() as s:
            ctx.advance(s, 1, checkpoint={"folds_done": sorted([*done, k])}, note=f"fold {k + 1} predicted")
        done[k] = fold_probs

    try:
        probs = out_of_fold_probs(version.labels, data, settings, work, done, on_fold, _FoldHooks(ctx))
    except TrainingCancelled:
        raise jobs.JobCancelled() from None
    stored = store_signals(ctx.actor, version_id, version.labels, data, probs,
                           f"cleanlab, {settings.folds}-fold student on version {version_id}")
    with ctx.batch() as s:
        ctx.advance(s, 1, note=f"{stored['scored']:,} label-issue scores stored, {stored['flagged']:,} flagged")
    shutil.rmtree(work, ignore_errors=True)
    return {"version_id": version_id, **stored}


def create_issue_campaign(actor: Actor | None, name: str, annotator_ids: list[int], top_n: int = 100,
                          task: str = "verification", overlap: int = 1, guidelines: str = ""):
    """A review campaign over the top N examples by label-issue score (most suspicious first)."""
    from core.review.campaigns import create_campaign
    from core.review.selection import Selection

    require_admin(actor)
    if top_n < 1:
        raise ValueError("take at least one example")
    return create_campaign(actor, name=name, task=task, annotator_ids=annotator_ids, overlap=overlap,
                           selection=Selection(top_signal=LABEL_ISSUE, top_n=int(top_n)),
                           guidelines=guidelines or "The student model disagrees with these labels: check them.")


def top_issues(actor: Actor | None, limit: int = 20) -> list[dict[str, Any]]:
    """The most suspicious examples with what each side says (the Train page's table)."""
    from sqlalchemy import select

    from db.models import Example, Signal

    require_admin(actor)
    with read_session() as s:
        rows = s.execute(select(Signal.example_id, Signal.value, Signal.data, Example.text)
                         .join(Example, Example.id == Signal.example_id)
                         .where(Signal.kind == LABEL_ISSUE).order_by(Signal.value.desc(), Signal.example_id)
                         .limit(limit)).all()
    return [{"example_id": r[0], "issue_score": round(float(r[1]), 4), "text": r[3],
             "given": ", ".join(r[2].get("given", [])), "student": ", ".join(r[2].get("student", [])),
             "teacher": ", ".join(r[2].get("teacher", [])), "flagged": r[2].get("is_issue", False)} for r in rows]
