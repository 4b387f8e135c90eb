"""Review campaigns: an admin chooses the items, questions, annotators and overlap; each annotator
then has a queue of assignments. Annotators see only the campaigns they are in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from core import jobs
from core.auth import Actor, PermissionDenied, require_admin, require_page
from core.review import tasks as review_tasks
from core.review.questions import QuestionSpec, QuestionView
from core.review.selection import Selection
from db.models import (
    Campaign, CampaignAnnotator, CampaignItem, ItemAssignment, Question, Role, Taxonomy, User,
)
from db.session import read_session, write_session

MAX_NAME_CHARS = 200
INSERT_CHUNK = 5000
CAMPAIGN_JOB = "review_campaign"


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


@dataclass(frozen=True)
class CampaignSpec:
    """Everything an admin chooses for a campaign; plain data, so a job payload can carry it."""

    name: str
    task: str
    annotator_ids: list[int]
    selection: Selection = field(default_factory=Selection)
    questions: list[QuestionSpec] | None = None  # None: the task's default questions
    overlap: int = 1
    min_submissions: int | None = None  # None: every annotator of an item (the overlap)
    guidelines: str = ""
    show_suggestions: bool = True
    taxonomy_id: int | None = None

    def checked(self) -> "CampaignSpec":
        """The spec with a clean name and its questions filled in, or ValueError."""
        name = self.name.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise ValueError(f"A campaign name is 1 to {MAX_NAME_CHARS} characters.")
        task = review_tasks.get(self.task)  # ValueError for an unknown task
        questions = task.questions() if self.questions is None else list(self.questions)
        if not questions:
            raise ValueError("A campaign needs at least one question.")
        if len({q.name for q in questions}) != len(questions):
            raise ValueError("Two questions have the same name.")
        min_submissions = self.overlap if self.min_submissions is None else self.min_submissions
        return replace(self, name=name, questions=questions, min_submissions=min_submissions)

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "CampaignSpec":
        questions = payload.get("questions")
        return cls(**{**payload, "selection": Selection(**payload.get("selection", {})),
                      "questions": None if questions is None else [QuestionSpec(**q) for q in questions]})


def create_campaign(actor: Actor | None, **fields: Any) -> CampaignView:
    """Create a campaign now (fields of CampaignSpec), with its items and each annotator's assignments.

    For large selections (a stratified sample over the whole data set) use enqueue_campaign.
    """
    require_admin(actor)
    spec = CampaignSpec(**fields).checked()
    with write_session() as session:
        return _view(session, _create(session, actor, spec))


def enqueue_campaign(actor: Actor | None, **fields: Any) -> int:
    """Check the campaign now (so the admin hears of a mistake at once); the worker creates it."""
    require_admin(actor)
    spec = CampaignSpec(**fields).checked()
    with read_session() as session:
        _check_new(session, spec)
    return jobs.enqueue(actor, CAMPAIGN_JOB, {"spec": spec.to_payload(), "actor_id": actor.id},
                        title=f"Create review campaign {spec.name}")


def _check_new(session: Session, spec: CampaignSpec) -> list[int]:
    if session.scalar(select(Campaign.id).where(Campaign.name == spec.name)) is not None:
        raise ValueError(f"A campaign named {spec.name!r} exists already.")
    annotators = _check_annotators(session, spec.annotator_ids)
    _check_numbers(spec.overlap, spec.min_submissions, len(annotators))
    return annotators


def _create(session: Session, actor: Actor, spec: CampaignSpec) -> Campaign:
    annotators = _check_new(session, spec)
    taxonomy_id = spec.taxonomy_id or _default_taxonomy_id(session)
    items = review_tasks.get(spec.task).items(session, spec.selection, taxonomy_id)
    if not items:
        raise ValueError(f"{spec.name}: the selection has no items: nothing to review.")
    campaign = Campaign(
        name=spec.name, task=spec.task, guidelines=spec.guidelines, overlap=spec.overlap,
        min_submissions=spec.min_submissions, show_suggestions=spec.show_suggestions, taxonomy_id=taxonomy_id,
        selection=spec.selection.describe(), created_by_id=actor.id,
    )
    session.add(campaign)
    session.flush()
    for position, question in enumerate(spec.questions):
        session.add(Question(campaign_id=campaign.id, name=question.name, title=question.title, kind=question.kind,
                             options=dict(question.options), position=position))
    for user_id in annotators:
        session.add(CampaignAnnotator(campaign_id=campaign.id, user_id=user_id))
    session.flush()
    _insert_items(session, campaign.id, items, annotators, spec.overlap)
    return campaign


@jobs.handler(CAMPAIGN_JOB)
def run_campaign_job(ctx: jobs.JobContext) -> dict[str, Any]:
    """Choose the items and write the campaign in one batch: all of it commits, or none."""
    if "campaign_id" in ctx.checkpoint:
        return dict(ctx.checkpoint)
    with read_session() as session:
        user = session.get(User, ctx.payload["actor_id"])
        actor = Actor(user.id, user.username, Role(user.role)) if user is not None and user.active else None
    if actor is None or not actor.is_admin:
        raise jobs.JobFailed("The admin who asked for this campaign is no longer an active admin.")
    spec = CampaignSpec.from_payload(ctx.payload["spec"])
    ctx.set_total(1, note="choosing the items")
    try:
        with ctx.batch() as session:
            campaign = _create(session, actor, spec)
            items = session.scalar(select(func.count()).where(CampaignItem.campaign_id == campaign.id))
            result = {"campaign_id": campaign.id, "items": int(items)}
            ctx.advance(session, 1, checkpoint=result, note=f"{result['items']} items")
    except ValueError as exc:
        raise jobs.JobFailed(str(exc)) from exc
    return result


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


# --------------------------------------------------------------------------- the paper's evaluation

PAPER_PRESET = "Emo Pillars evaluation"
PAPER_ITEMS = 200
PAPER_ANNOTATORS = 3
PAPER_TASKS = ("verification", "rewrite", "personalization", "diversity")


def paper_preset_specs(annotator_ids: list[int], *, prefix: str = PAPER_PRESET, items: int = PAPER_ITEMS,
                       seed: int = 0, neutral_share: float = 0.10, run_id: int | None = None,
                       taxonomy_id: int | None = None) -> list[CampaignSpec]:
    """The four campaigns of the paper's human evaluation: each item answered by 3 annotators."""
    if len(set(annotator_ids)) < PAPER_ANNOTATORS:
        raise ValueError(f"The {PAPER_PRESET} preset needs {PAPER_ANNOTATORS} annotators.")
    if items < 1:
        raise ValueError("Each campaign needs at least one item.")
    base = Selection(run_id=run_id, limit=int(items), random_sample=True, seed=int(seed))
    selections = {
        "verification": replace(base, neutral_share=float(neutral_share)),
        "rewrite": base,
        "personalization": replace(base, kind="contextual"),
        "diversity": replace(base, kind="contextless", group_by="both"),
    }
    return [CampaignSpec(name=f"{prefix.strip()}: {review_tasks.get(task).title}", task=task,
                         annotator_ids=list(annotator_ids), selection=selections[task], overlap=PAPER_ANNOTATORS,
                         min_submissions=PAPER_ANNOTATORS, guidelines=review_tasks.get(task).guidelines,
                         show_suggestions=False, taxonomy_id=taxonomy_id).checked()
            for task in PAPER_TASKS]


def create_paper_preset(actor: Actor | None, annotator_ids: list[int], **options: Any) -> list[CampaignView]:
    """Create the four campaigns in one transaction: all of them, or (with a clear error) none."""
    require_admin(actor)
    specs = paper_preset_specs(annotator_ids, **options)
    with write_session() as session:
        return [_view(session, _create(session, actor, spec)) for spec in specs]
