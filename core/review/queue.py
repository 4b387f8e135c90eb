"""An annotator's queue: the next item, the previous one, and everything one item shows.

Next item = the annotator's first 'assigned' assignment by position (one seek on
ix_item_assignments_queue); skipped items come back once nothing else is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.auth import Actor, PermissionDenied
from core.review.campaigns import campaign_for, load_questions
from core.review.questions import QuestionView, choices
from core.review.selection import count_oot_examples, oot_examples, presence_threshold
from db.models import (
    Campaign, CampaignItem, Character, Example, ItemAssignment, Label, Question, Response, ResponseStatus,
    Suggestion, User,
)
from db.session import read_session

OOT_EXAMPLES_SHOWN = 5


@dataclass(frozen=True)
class ShownExample:
    id: int
    kind: str
    text: str
    context: str | None
    character_name: str | None
    character_description: str | None
    suggestions: tuple[tuple[str, float], ...] = ()  # teacher labels (name, score), best first


@dataclass(frozen=True)
class ItemView:
    campaign_id: int
    task: str
    item_id: int
    position: int
    status: str  # this annotator's assignment: assigned | submitted | skipped
    examples: tuple[ShownExample, ...]
    oot: dict[str, Any] | None
    questions: tuple[QuestionView, ...]
    choices: dict[str, list[str]]
    answers: dict[str, Any]
    versions: dict[str, int]
    done: int  # this annotator's submitted items in the campaign
    total: int  # this annotator's assigned items in the campaign
    others: tuple[tuple[str, str, Any], ...] = field(default=())  # (annotator, question, value) once revealed


def _assignment_at(session: Session, campaign_id: int, user_id: int, status: str):
    return session.execute(
        select(ItemAssignment.item_id, ItemAssignment.position, ItemAssignment.status)
        .where(ItemAssignment.campaign_id == campaign_id, ItemAssignment.user_id == user_id,
               ItemAssignment.status == status)
        .order_by(ItemAssignment.position).limit(1)
    ).first()


def next_item(actor: Actor | None, campaign_id: int) -> ItemView | None:
    """The actor's next item to answer, or None when their queue is done."""
    with read_session() as session:
        campaign = campaign_for(session, actor, campaign_id)
        row = (_assignment_at(session, campaign_id, actor.id, "assigned")
               or _assignment_at(session, campaign_id, actor.id, "skipped"))
        return None if row is None else _item_view(session, actor, campaign, row.item_id, row.position, row.status)


def previous_item(actor: Actor | None, campaign_id: int, before_position: int | None) -> ItemView | None:
    """The actor's item just before `before_position` (their last one when None), any status."""
    with read_session() as session:
        campaign = campaign_for(session, actor, campaign_id)
        query = select(ItemAssignment.item_id, ItemAssignment.position, ItemAssignment.status).where(
            ItemAssignment.campaign_id == campaign_id, ItemAssignment.user_id == actor.id)
        if before_position is not None:
            query = query.where(ItemAssignment.position < before_position)
        row = session.execute(query.order_by(ItemAssignment.position.desc()).limit(1)).first()
        return None if row is None else _item_view(session, actor, campaign, row.item_id, row.position, row.status)


def get_item(actor: Actor | None, campaign_id: int, item_id: int) -> ItemView:
    """One item of the actor's queue (admins: any item of the campaign)."""
    with read_session() as session:
        campaign = campaign_for(session, actor, campaign_id)
        row = session.execute(select(ItemAssignment.position, ItemAssignment.status).where(
            ItemAssignment.item_id == item_id, ItemAssignment.user_id == actor.id)).first()
        if row is None:
            if not actor.is_admin:
                raise PermissionDenied("This item is not in your queue.")
            position = session.scalar(select(CampaignItem.position).where(
                CampaignItem.id == item_id, CampaignItem.campaign_id == campaign_id))
            if position is None:
                raise ValueError(f"No item {item_id} in this campaign.")
            return _item_view(session, actor, campaign, item_id, position, "not assigned")
        return _item_view(session, actor, campaign, item_id, row.position, row.status)


def taxonomy_label_names(session: Session, taxonomy_id: int | None) -> list[str]:
    if taxonomy_id is None:
        return []
    return list(session.scalars(select(Label.name).where(Label.taxonomy_id == taxonomy_id).order_by(Label.position)))


def _item_view(session: Session, actor: Actor, campaign: Campaign, item_id: int, position: int,
               status: str) -> ItemView:
    item = session.get(CampaignItem, item_id)
    payload = dict(item.payload or {})
    example_ids = payload.get("example_ids") or ([item.example_id] if item.example_id else [])
    show_teacher = campaign.show_suggestions and campaign.task != "diversity"
    examples = _examples(session, example_ids, campaign.taxonomy_id, show_teacher)
    oot = None
    if campaign.task == "oot":
        name = payload.get("oot_name", "")
        oot = {**payload, "examples": [text for _id, text in oot_examples(session, name, OOT_EXAMPLES_SHOWN)],
               "example_count": count_oot_examples(session, name)}
    questions = load_questions(session, campaign.id)
    labels = taxonomy_label_names(session, campaign.taxonomy_id)
    answers, versions = _own_answers(session, item_id, actor.id)
    done, total = _progress(session, campaign.id, actor.id)
    others = _others(session, item_id, actor) if (actor.is_admin or campaign.reveal_responses) else ()
    return ItemView(
        campaign.id, campaign.task, item_id, position, status, examples, oot, tuple(questions),
        {q.name: choices(q, labels, len(example_ids)) for q in questions if q.kind in ("single_label", "multi_label")},
        answers, versions, done, total, others,
    )


def _examples(session: Session, ids: list[int], taxonomy_id: int | None, with_suggestions: bool):
    if not ids:
        return ()
    rows = {e.id: (e, c) for e, c in session.execute(
        select(Example, Character).outerjoin(Character, Character.id == Example.character_id)
        .where(Example.id.in_(ids))).tuples()}
    scores: dict[int, dict[str, float]] = {i: {} for i in ids}
    if with_suggestions:
        threshold = presence_threshold()
        query = (select(Suggestion.example_id, Label.name, Suggestion.score)
                 .join(Label, Label.id == Suggestion.label_id)
                 .where(Suggestion.example_id.in_(ids), Suggestion.score >= threshold))
        if taxonomy_id is not None:
            query = query.where(Label.taxonomy_id == taxonomy_id)
        for example_id, name, score in session.execute(query).tuples():
            scores[example_id][name] = max(score, scores[example_id].get(name, 0.0))
    shown = []
    for example_id in ids:
        if example_id not in rows:
            continue  # deleted since the campaign was made
        example, character = rows[example_id]
        ranked = tuple(sorted(scores[example_id].items(), key=lambda kv: -kv[1]))
        shown.append(ShownExample(
            example.id, str(getattr(example.kind, "value", example.kind)), example.text, example.context,
            character.name if character else None, character.description if character else None, ranked))
    return tuple(shown)


def _own_answers(session: Session, item_id: int, user_id: int) -> tuple[dict[str, Any], dict[str, int]]:
    answers, versions = {}, {}
    for name, value, version in session.execute(
        select(Question.name, Response.value, Response.version).join(Question, Question.id == Response.question_id)
        .where(Response.item_id == item_id, Response.user_id == user_id)
    ).tuples():
        answers[name], versions[name] = value, version
    return answers, versions


def _progress(session: Session, campaign_id: int, user_id: int) -> tuple[int, int]:
    done, total = session.execute(
        select(func.count().filter(ItemAssignment.status == "submitted"), func.count())
        .where(ItemAssignment.campaign_id == campaign_id, ItemAssignment.user_id == user_id)
    ).one()
    return int(done), int(total)


def _others(session: Session, item_id: int, actor: Actor) -> tuple[tuple[str, str, Any], ...]:
    rows = session.execute(
        select(User.username, Question.name, Response.value)
        .join(User, User.id == Response.user_id).join(Question, Question.id == Response.question_id)
        .where(Response.item_id == item_id, Response.user_id != actor.id,
               Response.status == ResponseStatus.submitted)
        .order_by(User.username, Question.position)
    ).tuples()
    return tuple(rows)
