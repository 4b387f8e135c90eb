"""Saving answers: drafts, submissions, edits of submitted items, and skips.

One rule above the others: a submitted answer is never downgraded. Once an annotator has
submitted an item, every later save of it (a toggle, the draft save that Back and Skip make) is a
new submitted version: the answers in force stay submitted, the value each change replaced goes to
`response_versions` (the history), and a save that would leave a required question empty is
refused with the submitted answer kept. Unchanged answers write nothing.

The rule that completes an item runs in the same transaction as the submission: the
assignment flips to 'submitted' only if it was not already (a conditional UPDATE, so a double
click or a second tab counts once), and the item's counter is incremented in SQL
(`submitted_count = submitted_count + 1`), so two annotators submitting at the same moment both
land, once each, on SQLite (BEGIN IMMEDIATE) and PostgreSQL (row lock on the UPDATE) alike.
Every save first locks the annotator's assignment row (FOR UPDATE; SQLite's write lock does the
same), so a draft save and a submission of the same item from two tabs run one after the other.
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
from core.review import tasks as review_tasks
from core.review.campaigns import campaign_for, load_questions
from core.review.queue import taxonomy_label_names
from core.review.questions import CHOICES_FROM_TAXONOMY, AnswerError, QuestionView, choices, clean_value
from db.models import CampaignItem, ItemAssignment, Question, Response, ResponseStatus, ResponseVersion, utcnow
from db.session import read_session, write_session

MAX_SECONDS_PER_SAVE = 3600.0  # a tab left open overnight is not annotation time


class ConflictError(Exception):
    """The answer changed elsewhere (another tab) since this page loaded it."""


@dataclass(frozen=True)
class SaveResult:
    submitted: bool  # the answers in force are submitted (a first submission or an edit of one)
    item_completed: bool
    versions: dict[str, int]
    changed: bool = True  # False: the answers were already these, nothing was written


def save_answers(actor: Actor | None, item_id: int, answers: dict[str, Any], *, submit: bool,
                 seconds: float = 0.0, versions: dict[str, int] | None = None) -> SaveResult:
    """Save the actor's answers to one item: a draft, or (submit=True) their submission.

    On an item the actor has submitted already, both are a new submitted version (see above).
    """
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
        ItemAssignment.item_id == item_id, ItemAssignment.user_id == actor.id).with_for_update())
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
        existing = {r.question_id: r for r in session.scalars(select(Response).where(
            Response.item_id == item_id, Response.user_id == actor.id))}
        already = assignment.status == "submitted" or any(
            r.status == ResponseStatus.submitted for r in existing.values())
        try:
            cleaned = _clean(session, campaign, item, questions, answers, submit or already)
        except AnswerError as exc:
            if already and not submit:
                raise AnswerError(f"{exc} Your submitted answer is kept.") from exc
            raise
        seconds = min(max(float(seconds), 0.0), MAX_SECONDS_PER_SAVE)
        _check_versions(questions, existing, versions or {})
        if already:
            new_versions, changed = _resubmit(session, actor.id, item_id, questions, existing, cleaned, seconds)
        else:
            new_versions, changed = _write_draft_or_submission(session, actor.id, item_id, questions, existing,
                                                               cleaned, submit, seconds), True
        completed = item.status == "completed"
        if submit or already:
            completed = _submit(session, assignment, item, campaign.min_submissions) or completed
        return SaveResult(submit or already, completed, new_versions, changed)


def _clean(session, campaign, item, questions, answers, submit) -> dict[str, Any]:
    labels = (taxonomy_label_names(session, campaign.taxonomy_id)
              if any(q.options.get("choices_from") == CHOICES_FROM_TAXONOMY for q in questions) else [])
    payload = dict(item.payload or {})
    known = {q.name for q in questions}
    unknown = set(answers) - known
    if unknown:
        raise AnswerError(f"No question named {sorted(unknown)[0]!r} in this campaign.")
    cleaned = {q.name: clean_value(q, answers.get(q.name), choices(q, labels, payload)) for q in questions}
    if submit:
        missing = [q.title for q in questions if q.required and cleaned[q.name] is None]
        if missing:
            raise AnswerError(f"Answer this before submitting: {missing[0]}")
        review_tasks.get(campaign.task).check_submission(cleaned, payload)
    return cleaned


def _check_versions(questions: list[QuestionView], existing: dict[int, Response], versions: dict[str, int]) -> None:
    for question in questions:
        row = existing.get(question.id)
        if row is not None and question.name in versions and versions[question.name] != row.version:
            raise ConflictError(f"'{question.title}' was changed in another window; reload the item.")


def _write_draft_or_submission(session, user_id, item_id, questions, existing, cleaned, submit,
                               seconds) -> dict[str, int]:
    """An item not submitted yet: its answers become a draft, or the first submission."""
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
        row.value, row.status, row.seconds_spent = value, status, spent
        session.flush()
        result[question.name] = row.version
    return result


def _resubmit(session, user_id, item_id, questions, existing, cleaned, seconds) -> tuple[dict[str, int], bool]:
    """A submitted item edited: each changed answer keeps its old value in the history and takes
    the new one, still submitted (its version moves on); unchanged answers are left alone."""
    result, changed = {}, False
    spent = seconds + max((r.seconds_spent for r in existing.values()), default=0.0)
    for question in questions:
        value, row = cleaned[question.name], existing.get(question.id)
        if row is None:
            row = Response(item_id=item_id, user_id=user_id, question_id=question.id, value=value,
                           status=ResponseStatus.submitted, seconds_spent=spent)
            session.add(row)
            changed = True
        elif row.value != value or row.status != ResponseStatus.submitted:
            if row.status == ResponseStatus.submitted:
                session.add(ResponseVersion(response_id=row.id, version=row.version, value=row.value,
                                            seconds_spent=row.seconds_spent, submitted_at=row.updated_at))
            row.value, row.status, row.seconds_spent = value, ResponseStatus.submitted, spent
            changed = True
        session.flush()
        result[question.name] = row.version
    return result, changed


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


def answer_history(actor: Actor | None, item_id: int) -> list[dict[str, Any]]:
    """The actor's replaced submitted values of one item (oldest first): what each edit replaced."""
    with read_session() as session:
        item = session.get(CampaignItem, item_id)
        if item is None:
            raise ValueError(f"No item with id {item_id}.")
        campaign_for(session, actor, item.campaign_id)
        rows = session.execute(
            select(Question.name, ResponseVersion.version, ResponseVersion.value, ResponseVersion.replaced_at)
            .join(Response, Response.id == ResponseVersion.response_id)
            .join(Question, Question.id == Response.question_id)
            .where(Response.item_id == item_id, Response.user_id == actor.id)
            .order_by(ResponseVersion.id)).tuples().all()
    return [{"question": q, "version": v, "value": value, "replaced_at": at} for q, v, value, at in rows]


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
