"""Counts for the dashboard: what exists today (corpora, stories, taxonomies, jobs...)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from core.auth import Actor, require_page
from db.models import Corpus, Job, JobStatus, Passage, Story, Taxonomy, User
from db.session import read_session


@dataclass(frozen=True)
class Overview:
    corpora: int
    stories: int
    passages: int
    words: int
    taxonomies: int
    users: int
    jobs_by_status: dict[str, int] = field(default_factory=dict)


def overview(actor: Actor | None) -> Overview:
    require_page(actor, "dashboard")
    with read_session() as session:
        def count(model) -> int:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

        words = int(session.scalar(select(func.coalesce(func.sum(Story.word_count), 0))) or 0)
        by_status = {JobStatus(s).value: int(n) for s, n in session.execute(
            select(Job.status, func.count()).group_by(Job.status))}
        return Overview(
            corpora=count(Corpus), stories=count(Story), passages=count(Passage), words=words,
            taxonomies=count(Taxonomy), users=count(User),
            jobs_by_status={s.value: by_status.get(s.value, 0) for s in JobStatus},
        )
