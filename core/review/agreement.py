"""Agreement and progress of a campaign, computed with the reference libraries.

- Krippendorff's alpha (`krippendorff`): ordinal for ratings (value domain 1..5), nominal for
  single labels and flags; multi-label answers become one yes/no judgement per label, each with
  its own nominal alpha, and their mean (labels nobody disagreed on have no alpha and are left out).
- Pairwise Cohen's kappa (`sklearn.metrics.cohen_kappa_score`) on the items both annotators
  submitted: quadratic weights for ratings, unweighted otherwise; multi-label answers compare
  as yes/no per (item, label).
- Annotator vs teacher: each annotator's multi-label answers against the teacher's labels
  (score >= the presence threshold), as kappa and micro F1 over (item, label) decisions.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
from sklearn.metrics import f1_score
from sqlalchemy import Text, cast, func, select
from sqlalchemy.orm import Session

from core.auth import Actor, require_admin
from core.labels import shown_by
from core.review.campaigns import campaign_for, load_questions
from core.review.measures import alpha, finite, kappa
from core.review.questions import CHOICES_FROM_GROUP, CHOICES_FROM_ITEM, CHOICES_FROM_TAXONOMY, RATING_VALUES, QuestionView, choices
from core.review.queue import taxonomy_label_names
from core.review.selection import CHUNK, presence_threshold
from db.models import CampaignItem, Example, ItemAssignment, Label, Response, ResponseStatus, Suggestion, User
from db.session import read_session


@dataclass(frozen=True)
class PairKappa:
    first: str
    second: str
    kappa: float | None
    items: int


@dataclass(frozen=True)
class QuestionAgreement:
    name: str
    title: str
    kind: str
    level: str  # ordinal | nominal
    alpha: float | None
    items: int  # items with two answers or more
    per_label: dict[str, float | None]
    pairs: tuple[PairKappa, ...]


@dataclass(frozen=True)
class TeacherAgreement:
    annotator: str
    question: str
    items: int
    kappa: float | None
    f1: float | None


@dataclass(frozen=True)
class AnnotatorProgress:
    annotator: str
    assigned: int
    submitted: int
    skipped: int
    median_seconds: float | None
    mean_seconds: float | None

    @property
    def remaining(self) -> int:
        return self.assigned - self.submitted


@dataclass(frozen=True)
class CampaignReport:
    campaign_id: int
    items: int
    completed: int
    questions: tuple[QuestionAgreement, ...]
    teacher: tuple[TeacherAgreement, ...]
    progress: tuple[AnnotatorProgress, ...]
    seconds_per_item: tuple[float, ...]  # every submitted (item, annotator), for a histogram


def _raw_rows(session: Session, statement) -> list[tuple]:
    """All rows of a statement selecting only integers and text (nothing for SQLAlchemy to convert)."""
    result = session.connection().execute(statement)
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def _load_answers(session: Session, campaign_id: int):
    """(item ids, user ids, {question_id: {(user_idx, item_idx): value}}) of submitted answers."""
    # JSON text decoded here, rows read straight from the cursor: ORM rows with a JSON type per
    # value cost 10x more than the query itself on a 10,000-item campaign.
    rows = _raw_rows(session, select(Response.item_id, Response.user_id, Response.question_id,
                                     cast(Response.value, Text))
                     .join(CampaignItem, CampaignItem.id == Response.item_id)
                     .where(CampaignItem.campaign_id == campaign_id, Response.status == ResponseStatus.submitted))
    items = sorted({r[0] for r in rows})
    users = sorted({r[1] for r in rows})
    item_index = {item: i for i, item in enumerate(items)}
    user_index = {user: u for u, user in enumerate(users)}
    answers: dict[int, dict[tuple[int, int], Any]] = defaultdict(dict)
    decoded: dict[str | None, Any] = {None: None}  # answers repeat ('4', '["joy"]'): decode each text once
    for item_id, user_id, question_id, text in rows:
        if text not in decoded:
            decoded[text] = json.loads(text)
        answers[question_id][(user_index[user_id], item_index[item_id])] = decoded[text]
    return items, users, answers


def _matrix(answers: dict[tuple[int, int], Any], shape: tuple[int, int], code) -> np.ndarray:
    matrix = np.full(shape, np.nan)
    for (u, i), value in answers.items():
        coded = code(value)
        if coded is not None:
            matrix[u, i] = coded
    return matrix


def _pairs(matrix: np.ndarray, names: list[str], weights: str | None) -> tuple[PairKappa, ...]:
    result = []
    for a, b in combinations(range(matrix.shape[0]), 2):
        both = ~np.isnan(matrix[a]) & ~np.isnan(matrix[b])
        if both.any():
            result.append(PairKappa(names[a], names[b], kappa(matrix[a, both], matrix[b, both], weights),
                                    int(both.sum())))
    return tuple(result)


def _label_tensor(answers, shape, labels: list[str]) -> np.ndarray:
    """labels x annotators x items: 1 chosen, 0 not chosen, NaN not answered."""
    index = {name: k for k, name in enumerate(labels)}
    tensor = np.full((len(labels), *shape), np.nan)
    for (u, i), value in answers.items():
        tensor[:, u, i] = 0.0
        for name in value or []:
            if name in index:
                tensor[index[name], u, i] = 1.0
    return tensor


def question_agreement(question: QuestionView, answers, names: list[str], n_items: int,
                       allowed: list[str], tensor: np.ndarray | None = None) -> QuestionAgreement:
    shape = (len(names), n_items)
    level = "ordinal" if question.kind == "rating" else "nominal"
    if not names or not n_items:
        return QuestionAgreement(question.name, question.title, question.kind, level, None, 0, {}, ())
    if question.kind == "multi_label":
        tensor = _label_tensor(answers, shape, allowed) if tensor is None else tensor
        per_label = {name: alpha(tensor[k], "nominal") for k, name in enumerate(allowed)}
        defined = [a for a in per_label.values() if a is not None]
        answered = tensor[0] if len(allowed) else np.full(shape, np.nan)
        flat = tensor.transpose(1, 2, 0).reshape(len(names), -1)  # annotators x (item, label)
        return QuestionAgreement(question.name, question.title, question.kind, "nominal",
                                 float(np.mean(defined)) if defined else None,
                                 int(np.sum(np.sum(~np.isnan(answered), axis=0) >= 2)), per_label,
                                 _pairs(flat, names, None))
    if question.kind == "rating":
        matrix = _matrix(answers, shape, lambda v: float(v) if isinstance(v, (int, float)) else None)
        level, domain, weights = "ordinal", list(RATING_VALUES), "quadratic"
    else:
        codes = {name: k for k, name in enumerate(allowed)}
        code = (lambda v: float(bool(v))) if question.kind == "flag" else (lambda v: codes.get(v))
        matrix = _matrix(answers, shape, code)
        level, domain, weights = "nominal", None, None
    return QuestionAgreement(question.name, question.title, question.kind, level, alpha(matrix, level, domain),
                             int(np.sum(np.sum(~np.isnan(matrix), axis=0) >= 2)), {},
                             _pairs(matrix, names, weights))


def _teacher_labels(session: Session, example_of: dict[int, int], taxonomy_id: int | None) -> dict[int, set[str]]:
    """example id -> teacher label names present (score >= threshold)."""
    threshold = presence_threshold()
    ids = sorted(set(example_of.values()))
    present: dict[int, set[str]] = defaultdict(set)
    for start in range(0, len(ids), CHUNK):
        query = (select(Example.id, Label.name).join(Suggestion, shown_by()).join(Label, Label.id == Suggestion.label_id)
                 .where(Example.id.in_(ids[start:start + CHUNK]), Suggestion.score >= threshold))
        if taxonomy_id is not None:
            query = query.where(Label.taxonomy_id == taxonomy_id)
        for example_id, name in _raw_rows(session, query):
            present[example_id].add(name)
    return present


def teacher_agreement(question: QuestionView, tensor: np.ndarray, names: list[str], items: list[int],
                      example_of: dict[int, int], teacher: dict[int, set[str]],
                      labels: list[str]) -> list[TeacherAgreement]:
    """Each annotator's (item, label) decisions against the teacher's, on the items they answered."""
    index = {name: k for k, name in enumerate(labels)}
    taught = np.zeros((len(items), len(labels)), dtype=int)  # items x labels
    has_example = np.zeros(len(items), dtype=bool)
    for i, item_id in enumerate(items):
        example_id = example_of.get(item_id)
        if example_id is not None:
            has_example[i] = True
            for name in teacher.get(example_id, ()):
                if name in index:
                    taught[i, index[name]] = 1
    result = []
    for u, name in enumerate(names):
        answered = ~np.isnan(tensor[0, u]) & has_example if len(labels) else has_example & False
        if not answered.any():
            continue
        human = tensor[:, u, answered].T.astype(int).ravel()
        model = taught[answered].ravel()
        f1 = finite(f1_score(model, human, zero_division=np.nan)) if (human.any() or model.any()) else None
        result.append(TeacherAgreement(name, question.name, int(answered.sum()), kappa(human, model), f1))
    return result


def _progress(session: Session, campaign_id: int) -> tuple[list[AnnotatorProgress], list[float]]:
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for username, status, n in session.execute(
        select(User.username, ItemAssignment.status, func.count())
        .join(User, User.id == ItemAssignment.user_id)
        .where(ItemAssignment.campaign_id == campaign_id)
        .group_by(User.username, ItemAssignment.status)
    ).tuples():
        counts[username][status] = int(n)
    times: dict[str, list[float]] = defaultdict(list)
    for username, seconds in session.execute(
        select(User.username, func.max(Response.seconds_spent))
        .join(User, User.id == Response.user_id).join(CampaignItem, CampaignItem.id == Response.item_id)
        .where(CampaignItem.campaign_id == campaign_id, Response.status == ResponseStatus.submitted)
        .group_by(User.username, Response.item_id)
    ).tuples():
        times[username].append(float(seconds or 0.0))
    progress = []
    for username in sorted(counts):
        c, t = counts[username], times.get(username, [])
        progress.append(AnnotatorProgress(
            username, sum(c.values()), c.get("submitted", 0), c.get("skipped", 0),
            float(np.median(t)) if t else None, float(np.mean(t)) if t else None))
    return progress, [s for t in times.values() for s in t]


def campaign_report(actor: Actor | None, campaign_id: int) -> CampaignReport:
    """Agreement per question, with the teacher, and progress; admins only (annotators are blind)."""
    require_admin(actor)
    with read_session() as session:
        campaign = campaign_for(session, actor, campaign_id)
        questions = load_questions(session, campaign_id)
        labels = taxonomy_label_names(session, campaign.taxonomy_id)
        items, users, answers = _load_answers(session, campaign_id)
        names = dict(session.execute(select(User.id, User.username).where(User.id.in_(users))).tuples().all()) if users else {}
        user_names = [names[u] for u in users]
        total, completed = session.execute(
            select(func.count(), func.count().filter(CampaignItem.status == "completed"))
            .where(CampaignItem.campaign_id == campaign_id)).one()
        example_of = _example_ids(session, items)
        teacher_needed = [q for q in questions
                          if q.kind == "multi_label" and q.options.get("choices_from") == CHOICES_FROM_TAXONOMY]
        teacher = _teacher_labels(session, example_of, campaign.taxonomy_id) if teacher_needed else {}
        progress, seconds = _progress(session, campaign_id)
    agreements, versus = [], []
    shape = (len(user_names), len(items))
    for question in questions:
        if question.kind == "text":
            continue
        given = answers.get(question.id, {})
        allowed = _allowed(question, labels, given)
        tensor = _label_tensor(given, shape, allowed) if question.kind == "multi_label" else None
        agreements.append(question_agreement(question, given, user_names, len(items), allowed, tensor))
        if question in teacher_needed and user_names and items:
            versus.extend(teacher_agreement(question, tensor, user_names, items, example_of, teacher, labels))
    return CampaignReport(campaign_id, int(total), int(completed), tuple(agreements), tuple(versus),
                          tuple(progress), tuple(seconds))


def _allowed(question: QuestionView, labels: list[str], answers) -> list[str]:
    """The choices to compare on. Per-item choices (a diversity group's "1".."n", a verification
    item's own labels) are those anyone chose: a choice nobody chose has no disagreement to measure."""
    if question.kind not in ("single_label", "multi_label"):
        return []
    source = question.options.get("choices_from")
    if source == CHOICES_FROM_GROUP:
        largest = max((int(n) for v in answers.values() for n in (v or [])), default=0)
        return [str(i) for i in range(1, largest + 1)]
    if source == CHOICES_FROM_ITEM:
        chosen = ({n for v in answers.values() for n in (v or [])} if question.kind == "multi_label"
                  else {v for v in answers.values() if v})
        return sorted(map(str, chosen))
    return choices(question, labels)


def _example_ids(session: Session, items: list[int]) -> dict[int, int]:
    result: dict[int, int] = {}
    for start in range(0, len(items), CHUNK):
        result.update((i, e) for i, e in session.execute(
            select(CampaignItem.id, CampaignItem.example_id)
            .where(CampaignItem.id.in_(items[start:start + CHUNK]), CampaignItem.example_id.is_not(None))
        ).tuples())
    return result
