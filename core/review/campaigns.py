"""Review campaigns: an admin chooses the items, questions, annotators and overlap; each annotator
then has a queue of assignments. Annotators see only the campaigns they are in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from core.auth import Actor, PermissionDenied, require_admin, require_page
from core.review.questions import TASKS, QuestionSpec, QuestionView, task_questions
from core.review.selection import Selection, diversity_groups, pending_oot, select_example_ids
from db.models import (
    Campaign, CampaignAnnotator, CampaignItem, ItemAssignment, Question, Role, Taxonomy, User,
)
from db.session import read_session, write_session

MAX_NAME_CHARS = 200
INSERT_CHUNK = 5000


@dataclass(frozen=True)
class CampaignView:
    id: int
    name: str
    task: str
    guidelines: str
    overlap: int
    min_submissions: int
    show_suggestions: bool
    reveal_responses: bool
    taxonomy_id: int | None
    selection: dict[str, Any]
    status: str
    created_at: datetime
    item_count: int
    completed_count: int


def _view(session: Session, campaign: Campaign) -> CampaignView:
    counts = session.execute(
        select(func.count(CampaignItem.id), func.count(CampaignItem.id).filter(CampaignItem.status == "completed"))
        .where(CampaignItem.campaign_id == campaign.id)
    ).one()
    return CampaignView(
        campaign.id, campaign.name, campaign.task, campaign.guidelines, campaign.overlap,
        campaign.min_submissions, campaign.show_suggestions, campaign.reveal_responses,
        campaign.taxonomy_id, dict(campaign.selection or {}), campaign.status, campaign.created_at,
        int(counts[0]), int(counts[1]),
    )


def campaign_for(session: Session, actor: Actor | None, campaign_id: int) -> Campaign:
    """The campaign, if the actor may see it: admins all, annotators only those they are in."""
    require_page(actor, "review")
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise ValueError(f"No campaign with id {campaign_id}.")
    if not actor.is_admin and session.get(CampaignAnnotator, (campaign_id, actor.id)) is None:
        raise PermissionDenied("You are not an annotator of this campaign.")
    return campaign


def _default_taxonomy_id(session: Session) -> int | None:
    from core.taxonomy import GOEMOTIONS

    return session.scalar(select(Taxonomy.id).where(Taxonomy.name == GOEMOTIONS))


def _check_annotators(session: Session, annotator_ids: list[int]) -> list[int]:
    ids = list(dict.fromkeys(int(i) for i in annotator_ids))
    if not ids:
        raise ValueError("Choose at least one annotator.")
    active = set(session.scalars(select(User.id).where(User.id.in_(ids), User.active.is_(True))))
    missing = [i for i in ids if i not in active]
    if missing:
        raise ValueError(f"No active user with id {missing[0]}.")
    return ids


def _check_numbers(overlap: int, min_submissions: int, annotators: int) -> None:
    if not 1 <= overlap <= annotators:
        raise ValueError(f"Overlap must be between 1 and the number of annotators ({annotators}).")
    if not 1 <= min_submissions <= overlap:
        raise ValueError("Submissions that complete an item must be between 1 and the overlap.")


def _item_payloads(session: Session, task: str, selection: Selection, taxonomy_id: int | None) -> list[dict]:
    """Each item's example_id and payload, in queue order."""
    if task == "oot":
        if taxonomy_id is None:
            raise ValueError("An out-of-taxonomy campaign needs a taxonomy.")
        return [{"example_id": None, "payload": p} for p in pending_oot(session, taxonomy_id, selection.limit)]
    ids = select_example_ids(session, selection, taxonomy_id)
    if task == "diversity":
        groups = diversity_groups(session, ids, taxonomy_id, selection.group_by, selection.group_size)
        return [{"example_id": g["example_ids"][0], "payload": g} for g in groups]
    return [{"example_id": i, "payload": {}} for i in ids]


def create_campaign(
    actor: Actor | None,
    *,
    name: str,
    task: str,
    annotator_ids: list[int],
    selection: Selection | None = None,
    questions: list[QuestionSpec] | None = None,
    overlap: int = 1,
    min_submissions: int | None = None,
    guidelines: str = "",
    show_suggestions: bool = True,
    taxonomy_id: int | None = None,
) -> CampaignView:
    """Create a campaign with its items and each annotator's assignments, in one transaction."""
    require_admin(actor)
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"A campaign name is 1 to {MAX_NAME_CHARS} characters.")
    if task not in TASKS:
        raise ValueError(f"Unknown review task {task!r}.")
    questions = task_questions(task) if questions is None else list(questions)
    if not questions:
        raise ValueError("A campaign needs at least one question.")
    if len({q.name for q in questions}) != len(questions):
        raise ValueError("Two questions have the same name.")
    selection = selection or Selection()
    with write_session() as session:
        if session.scalar(select(Campaign.id).where(Campaign.name == name)) is not None:
            raise ValueError(f"A campaign named {name!r} exists already.")
        annotators = _check_annotators(session, annotator_ids)
        min_submissions = overlap if min_submissions is None else min_submissions
        _check_numbers(overlap, min_submissions, len(annotators))
        taxonomy_id = taxonomy_id or _default_taxonomy_id(session)
        items = _item_payloads(session, task, selection, taxonomy_id)
        if not items:
            raise ValueError("The selection has no items: nothing to review.")
        campaign = Campaign(
            name=name, task=task, guidelines=guidelines, overlap=overlap, min_submissions=min_submissions,
            show_suggestions=show_suggestions, taxonomy_id=taxonomy_id, selection=selection.describe(),
            created_by_id=actor.id,
        )
        session.add(campaign)
        session.flush()
        for position, spec in enumerate(questions):
            session.add(Question(campaign_id=campaign.id, name=spec.name, title=spec.title, kind=spec.kind,
                                 options=dict(spec.options), position=position))
        for user_id in annotators:
            session.add(CampaignAnnotator(campaign_id=campaign.id, user_id=user_id))
        session.flush()
        _insert_items(session, campaign.id, items, annotators, overlap)
        return _view(session, campaign)


def _insert_items(session: Session, campaign_id: int, items: list[dict], annotators: list[int], overlap: int) -> None:
    rows = [{"campaign_id": campaign_id, "position": pos, "example_id": it["example_id"], "payload": it["payload"],
             "status": "pending", "submitted_count": 0} for pos, it in enumerate(items)]
    for start in range(0, len(rows), INSERT_CHUNK):
        session.execute(insert(CampaignItem), rows[start:start + INSERT_CHUNK])
    ids = session.execute(select(CampaignItem.position, CampaignItem.id)
                          .where(CampaignItem.campaign_id == campaign_id)).tuples()
    assignments = []
    count = len(annotators)
    for position, item_id in ids:
        first = (position * overlap) % count  # round robin: every annotator gets the same share
        for j in range(overlap):
            assignments.append({"item_id": item_id, "user_id": annotators[(first + j) % count],
                                "campaign_id": campaign_id, "position": position, "status": "assigned"})
    for start in range(0, len(assignments), INSERT_CHUNK):
        session.execute(insert(ItemAssignment), assignments[start:start + INSERT_CHUNK])


def list_campaigns(actor: Actor | None) -> list[CampaignView]:
    """Admins: every campaign. Annotators: the campaigns they are in."""
    require_page(actor, "review")
    query = select(Campaign).order_by(Campaign.created_at.desc(), Campaign.id.desc())
    if not actor.is_admin:
        query = query.join(CampaignAnnotator, CampaignAnnotator.campaign_id == Campaign.id).where(
            CampaignAnnotator.user_id == actor.id)
    with read_session() as session:
        return [_view(session, c) for c in session.scalars(query)]


def get_campaign(actor: Actor | None, campaign_id: int) -> CampaignView:
    with read_session() as session:
        return _view(session, campaign_for(session, actor, campaign_id))


def campaign_questions(actor: Actor | None, campaign_id: int) -> list[QuestionView]:
    with read_session() as session:
        campaign_for(session, actor, campaign_id)
        return load_questions(session, campaign_id)


def load_questions(session: Session, campaign_id: int) -> list[QuestionView]:
    rows = session.scalars(select(Question).where(Question.campaign_id == campaign_id).order_by(Question.position))
    return [QuestionView(q.id, q.name, q.title, q.kind, dict(q.options or {}), q.position) for q in rows]


def campaign_annotators(actor: Actor | None, campaign_id: int) -> list[tuple[int, str]]:
    require_admin(actor)
    with read_session() as session:
        return list(session.execute(
            select(User.id, User.username).join(CampaignAnnotator, CampaignAnnotator.user_id == User.id)
            .where(CampaignAnnotator.campaign_id == campaign_id).order_by(User.username)
        ).tuples())


def annotator_choices(actor: Actor | None) -> list[tuple[int, str, str]]:
    """(id, username, role) of active users an admin may put on a campaign."""
    require_admin(actor)
    with read_session() as session:
        return [(i, u, Role(r).value) for i, u, r in session.execute(
            select(User.id, User.username, User.role).where(User.active.is_(True)).order_by(User.username)
        ).tuples()]


def set_reveal(actor: Actor | None, campaign_id: int, reveal: bool) -> None:
    """Let annotators see each other's answers (or hide them again)."""
    require_admin(actor)
    with write_session() as session:
        campaign_for(session, actor, campaign_id).reveal_responses = bool(reveal)


def set_status(actor: Actor | None, campaign_id: int, status: str) -> None:
    """open: annotators may answer; closed: answers are frozen."""
    require_admin(actor)
    if status not in ("open", "closed"):
        raise ValueError("A campaign is open or closed.")
    with write_session() as session:
        campaign_for(session, actor, campaign_id).status = status
