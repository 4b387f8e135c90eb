"""Saving answers: drafts, submissions and skips.

The rule that completes an item runs in the same transaction as the submission: the
assignment flips to 'submitted' only if it was not already (a conditional UPDATE, so a double
click or a second tab counts once), and the item's counter is incremented in SQL
(`submitted_count = submitted_count + 1`), so two annotators submitting at the same moment both
land, once each, on SQLite (BEGIN IMMEDIATE) and PostgreSQL (row lock on the UPDATE) alike.
Each response row carries a version (optimistic lock): a save based on an older version of the
same answer (another tab of the same annotator) is refused instead of overwriting it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from core.auth import Actor, PermissionDenied
from core.review.campaigns import campaign_for, load_questions
from core.review.queue import taxonomy_label_names
from core.review.questions import AnswerError, choices, clean_value
from db.models import CampaignItem, ItemAssignment, Response, ResponseStatus, utcnow
from db.session import write_session

MAX_SECONDS_PER_SAVE = 3600.0  # a tab left open overnight is not annotation time


class ConflictError(Exception):
    """The answer changed elsewhere (another tab) since this page loaded it."""


@dataclass(frozen=True)
class SaveResult:
    submitted: bool
    item_completed: bool
    versions: dict[str, int]


def save_answers(actor: Actor | None, item_id: int, answers: dict[str, Any], *, submit: bool,
                 seconds: float = 0.0, versions: dict[str, int] | None = None) -> SaveResult:
    """Save the actor's answers to one item: a draft, or (submit=True) their submission."""
    try:
        try:
            return _save(actor, item_id, answers, submit, seconds, versions)
        except IntegrityError:
            # Another tab of the same annotator inserted the same answer first: read it and retry once.
            return _save(actor, item_id, answers, submit, seconds, versions)
    except StaleDataError as exc:
        # The version checked at UPDATE time moved on: another tab saved between our read and write.
        raise ConflictError("This answer was changed in another window; reload the item.") from exc


def _assignment(session: Session, actor: Actor, item_id: int) -> ItemAssignment:
    assignment = session.scalar(select(ItemAssignment).where(
        ItemAssignment.item_id == item_id, ItemAssignment.user_id == actor.id))
    if assignment is None:
        raise PermissionDenied("This item is not in your queue.")
    return assignment


def _save(actor: Actor | None, item_id: int, answers: dict[str, Any], submit: bool, seconds: float,
          versions: dict[str, int] | None) -> SaveResult:
    with write_session() as session:
        item = session.get(CampaignItem, item_id)
        if item is None:
            raise ValueError(f"No item with id {item_id}.")
        campaign = campaign_for(session, actor, item.campaign_id)
        if campaign.status != "open":
            raise PermissionDenied("This campaign is closed.")
        assignment = _assignment(session, actor, item_id)
        questions = load_questions(session, campaign.id)
        cleaned = _clean(session, campaign, item, questions, answers, submit)
        seconds = min(max(float(seconds), 0.0), MAX_SECONDS_PER_SAVE)
        new_versions = _write_responses(session, actor.id, item_id, questions, cleaned, submit, seconds,
                                        versions or {})
        completed = item.status == "completed"
        if submit:
            completed = _submit(session, assignment, item, campaign.min_submissions) or completed
        return SaveResult(submit, completed, new_versions)


def _clean(session, campaign, item, questions, answers, submit) -> dict[str, Any]:
    labels = taxonomy_label_names(session, campaign.taxonomy_id)
    group_size = len((item.payload or {}).get("example_ids") or [])
    known = {q.name for q in questions}
    unknown = set(answers) - known
    if unknown:
        raise AnswerError(f"No question named {sorted(unknown)[0]!r} in this campaign.")
    cleaned = {q.name: clean_value(q, answers.get(q.name), choices(q, labels, group_size)) for q in questions}
    if submit:
        missing = [q.title for q in questions if q.required and cleaned[q.name] is None]
        if missing:
            raise AnswerError(f"Answer this before submitting: {missing[0]}")
        if campaign.task == "oot" and cleaned.get("action") == "map" and not cleaned.get("target"):
            raise AnswerError("Choose the taxonomy label this one maps to.")
    return cleaned


def _write_responses(session, user_id, item_id, questions, cleaned, submit, seconds, versions) -> dict[str, int]:
    existing = {r.question_id: r for r in session.scalars(select(Response).where(
        Response.item_id == item_id, Response.user_id == user_id))}
    status = ResponseStatus.submitted if submit else ResponseStatus.draft
    spent = seconds + max((r.seconds_spent for r in existing.values()), default=0.0)
    result = {}
    for question in questions:
        value, row = cleaned[question.name], existing.get(question.id)
        if row is None:
            if value is None and not submit:
                continue  # an empty draft answer needs no row
            row = Response(item_id=item_id, user_id=user_id, question_id=question.id)
            session.add(row)
        elif question.name in versions and versions[question.name] != row.version:
            raise ConflictError(f"'{question.title}' was changed in another window; reload the item.")
        row.value, row.status, row.seconds_spent = value, status, spent
        session.flush()
        result[question.name] = row.version
    return result


def _submit(session: Session, assignment: ItemAssignment, item: CampaignItem, min_submissions: int) -> bool:
    """Count this submission once; True when it completes the item."""
    flipped = session.execute(
        update(ItemAssignment)
        .where(ItemAssignment.id == assignment.id, ItemAssignment.status != "submitted")
        .values(status="submitted", submitted_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount
    if flipped:
        session.execute(
            update(CampaignItem).where(CampaignItem.id == item.id)
            .values(submitted_count=CampaignItem.submitted_count + 1,
                    status=case((CampaignItem.submitted_count + 1 >= min_submissions, "completed"),
                                else_=CampaignItem.status))
            .execution_options(synchronize_session=False)
        )
    session.expire(item)
    return session.scalar(select(CampaignItem.status).where(CampaignItem.id == item.id)) == "completed"


def skip_item(actor: Actor | None, item_id: int) -> None:
    """Put an unanswered item at the back of the actor's queue (answers already given stay)."""
    with write_session() as session:
        item = session.get(CampaignItem, item_id)
        if item is None:
            raise ValueError(f"No item with id {item_id}.")
        campaign_for(session, actor, item.campaign_id)
        session.execute(
            update(ItemAssignment)
            .where(ItemAssignment.item_id == item_id, ItemAssignment.user_id == actor.id,
                   ItemAssignment.status == "assigned")
            .values(status="skipped").execution_options(synchronize_session=False)
        )
