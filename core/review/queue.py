"""An annotator's queue: the next item, the previous one, and everything one item shows.

Next item = the annotator's first 'assigned' assignment by position (one seek on
ix_item_assignments_queue); skipped items come back once nothing else is left. What an item shows
is its task's choice (core/review/tasks/). Opening an item costs four queries whatever the task:
the campaign with its questions and the actor's membership; the assignment with its item and the
actor's progress; the examples (with character, and story when the task shows it); the actor's
answers. Showing other annotators' answers (revealed, or to an admin) adds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, func, literal, select, union_all
from sqlalchemy.orm import Session

from core.auth import Actor, PermissionDenied, require_page
from core.review import tasks as review_tasks
from core.review.questions import CHOICES_FROM_TAXONOMY, QuestionView, choices
from core.review.tasks.base import Shown, ShownExample
from db.models import (
    Campaign, CampaignAnnotator, CampaignItem, Character, Example, ItemAssignment, Label, Question, Response,
    ResponseStatus, Story, User,
)
from db.session import read_session

__all__ = ["ItemView", "ShownExample", "Shown", "next_item", "previous_item", "get_item", "taxonomy_label_names"]

STORY_SUMMARY_CHARS = 700  # the head of the story: the corpora are plot synopses already


@dataclass(frozen=True)
class ItemView:
    campaign_id: int
    task: str
    item_id: int
    position: int
    status: str  # this annotator's assignment: assigned | submitted | skipped | not assigned
    examples: tuple[ShownExample, ...]
    shown: tuple[Shown, ...]  # what the item shows, top to bottom (the task decides)
    payload: dict[str, Any]
    questions: tuple[QuestionView, ...]
    choices: dict[str, list[str]]
    answers: dict[str, Any]
    versions: dict[str, int]
    done: int  # this annotator's submitted items in the campaign
    total: int  # this annotator's assigned items in the campaign
    others: tuple[tuple[str, str, Any], ...] = field(default=())  # (annotator, question, value) once revealed


@dataclass(frozen=True)
class _Campaign:
    id: int
    task: str
    taxonomy_id: int | None
    show_suggestions: bool
    reveal_responses: bool
    questions: tuple[QuestionView, ...]


def _campaign(session: Session, actor: Actor | None, campaign_id: int) -> _Campaign:
    """Query 1: the campaign, its questions and whether the actor is one of its annotators."""
    require_page(actor, "review")
    member = exists().where(CampaignAnnotator.campaign_id == Campaign.id, CampaignAnnotator.user_id == actor.id)
    rows = session.execute(
        select(Campaign.task, Campaign.taxonomy_id, Campaign.show_suggestions, Campaign.reveal_responses,
               member, Question.id, Question.name, Question.title, Question.kind, Question.options, Question.position)
        .outerjoin(Question, Question.campaign_id == Campaign.id)
        .where(Campaign.id == campaign_id).order_by(Question.position)
    ).tuples().all()
    if not rows:
        raise ValueError(f"No campaign with id {campaign_id}.")
    task, taxonomy_id, show, reveal, is_member = rows[0][:5]
    if not actor.is_admin and not is_member:
        raise PermissionDenied("You are not an annotator of this campaign.")
    questions = tuple(QuestionView(r[5], r[6], r[7], r[8], dict(r[9] or {}), r[10]) for r in rows if r[5] is not None)
    return _Campaign(campaign_id, task, taxonomy_id, bool(show), bool(reveal), questions)


def _progress_columns(campaign_id: int, user_id: int):
    mine = and_(ItemAssignment.campaign_id == campaign_id, ItemAssignment.user_id == user_id)
    done = select(func.count()).select_from(ItemAssignment).where(mine, ItemAssignment.status == "submitted")
    total = select(func.count()).select_from(ItemAssignment).where(mine)
    return done.scalar_subquery().label("done"), total.scalar_subquery().label("total")


def _assignment_query(campaign_id: int, user_id: int):
    return (select(ItemAssignment.item_id, ItemAssignment.position, ItemAssignment.status)
            .where(ItemAssignment.campaign_id == campaign_id, ItemAssignment.user_id == user_id))


def _with_item(session: Session, assignments, campaign_id: int, user_id: int):
    """Query 2: the chosen assignment(s) with the item and the actor's progress, first row first."""
    chosen = assignments.subquery()
    done, total = _progress_columns(campaign_id, user_id)
    return session.execute(
        select(chosen.c.item_id, chosen.c.position, chosen.c.status, CampaignItem.example_id,
               CampaignItem.payload, done, total)
        .join(CampaignItem, CampaignItem.id == chosen.c.item_id).order_by(chosen.c.rank)
    ).first()


def next_item(actor: Actor | None, campaign_id: int) -> ItemView | None:
    """The actor's next item to answer, or None when their queue is done."""
    with read_session() as session:
        campaign = _campaign(session, actor, campaign_id)
        first = [_assignment_query(campaign_id, actor.id).where(ItemAssignment.status == status)
                 .order_by(ItemAssignment.position).limit(1).add_columns(literal(rank).label("rank")).subquery()
                 for rank, status in enumerate(("assigned", "skipped"))]
        row = _with_item(session, union_all(*(select(s) for s in first)), campaign_id, actor.id)
        return None if row is None else _item_view(session, actor, campaign, row)


def previous_item(actor: Actor | None, campaign_id: int, before_position: int | None) -> ItemView | None:
    """The actor's item just before `before_position` (their last one when None), any status."""
    with read_session() as session:
        campaign = _campaign(session, actor, campaign_id)
        query = _assignment_query(campaign_id, actor.id)
        if before_position is not None:
            query = query.where(ItemAssignment.position < before_position)
        query = query.order_by(ItemAssignment.position.desc()).limit(1).add_columns(literal(0).label("rank"))
        row = _with_item(session, query, campaign_id, actor.id)
        return None if row is None else _item_view(session, actor, campaign, row)


def get_item(actor: Actor | None, campaign_id: int, item_id: int) -> ItemView:
    """One item of the actor's queue (admins: any item of the campaign)."""
    with read_session() as session:
        campaign = _campaign(session, actor, campaign_id)
        query = _assignment_query(campaign_id, actor.id).where(ItemAssignment.item_id == item_id)
        row = _with_item(session, query.add_columns(literal(0).label("rank")), campaign_id, actor.id)
        if row is not None:
            return _item_view(session, actor, campaign, row)
        if not actor.is_admin:
            raise PermissionDenied("This item is not in your queue.")
        item = session.execute(select(CampaignItem.id, CampaignItem.position, literal("not assigned"),
                                      CampaignItem.example_id, CampaignItem.payload, literal(0), literal(0))
                               .where(CampaignItem.id == item_id, CampaignItem.campaign_id == campaign_id)).first()
        if item is None:
            raise ValueError(f"No item {item_id} in this campaign.")
        return _item_view(session, actor, campaign, item)


def taxonomy_label_names(session: Session, taxonomy_id: int | None) -> list[str]:
    if taxonomy_id is None:
        return []
    return list(session.scalars(select(Label.name).where(Label.taxonomy_id == taxonomy_id).order_by(Label.position)))


def _item_view(session: Session, actor: Actor, campaign: _Campaign, row) -> ItemView:
    item_id, position, status, example_id, payload, done, total = row
    payload = dict(payload or {})
    task = review_tasks.get(campaign.task)
    examples = _examples(session, task.example_ids(example_id, payload), task.needs_story)
    questions = campaign.questions
    # Only a question offering the whole taxonomy (an OOT target) needs its labels: one more query.
    labels = (taxonomy_label_names(session, campaign.taxonomy_id)
              if any(q.options.get("choices_from") == CHOICES_FROM_TAXONOMY for q in questions) else [])
    answers, versions = _own_answers(session, item_id, actor.id, questions)
    others = _others(session, item_id, actor, questions) if (actor.is_admin or campaign.reveal_responses) else ()
    return ItemView(
        campaign.id, campaign.task, item_id, position, status, examples,
        tuple(task.shown(list(examples), payload, campaign.show_suggestions)), payload, questions,
        {q.name: choices(q, labels, payload) for q in questions if q.kind in ("single_label", "multi_label")},
        answers, versions, int(done or 0), int(total or 0), others,
    )


def _examples(session: Session, ids: list[int], with_story: bool) -> tuple[ShownExample, ...]:
    """Query 3: the examples, with their character (and story) in the same query."""
    if not ids:
        return ()
    columns = [Example.id, Example.kind, Example.text, Example.context, Character.name, Character.description]
    query = select(*columns).outerjoin(Character, Character.id == Example.character_id)
    if with_story:
        query = query.add_columns(Story.title, func.substr(Story.text, 1, STORY_SUMMARY_CHARS)).outerjoin(
            Story, Story.id == func.coalesce(Example.story_id, Character.story_id))
    rows = {r[0]: r for r in session.execute(query.where(Example.id.in_(ids))).tuples()}
    shown = []
    for example_id in ids:
        if example_id not in rows:
            continue  # deleted since the campaign was made
        r = rows[example_id]
        story = (r[6], _summary(r[7])) if with_story else (None, None)
        shown.append(ShownExample(r[0], str(getattr(r[1], "value", r[1])), r[2], r[3], r[4], r[5], *story))
    return tuple(shown)


def _summary(text: str | None) -> str | None:
    if not text:
        return None
    return text if len(text) < STORY_SUMMARY_CHARS else text.rsplit(" ", 1)[0] + " ..."


def _own_answers(session: Session, item_id: int, user_id: int,
                 questions: tuple[QuestionView, ...]) -> tuple[dict[str, Any], dict[str, int]]:
    """Query 4: the actor's answers to the item."""
    names = {q.id: q.name for q in questions}
    answers, versions = {}, {}
    for question_id, value, version in session.execute(
        select(Response.question_id, Response.value, Response.version)
        .where(Response.item_id == item_id, Response.user_id == user_id)
    ).tuples():
        if question_id in names:
            answers[names[question_id]], versions[names[question_id]] = value, version
    return answers, versions


def _others(session: Session, item_id: int, actor: Actor,
            questions: tuple[QuestionView, ...]) -> tuple[tuple[str, str, Any], ...]:
    names = {q.id: (q.position, q.name) for q in questions}
    rows = session.execute(
        select(User.username, Response.question_id, Response.value).join(User, User.id == Response.user_id)
        .where(Response.item_id == item_id, Response.user_id != actor.id, Response.status == ResponseStatus.submitted)
    ).tuples().all()
    ordered = sorted((u, names[q], v) for u, q, v in rows if q in names)
    return tuple((u, name, v) for u, (_pos, name), v in ordered)
