"""Factories for curation and dataset tests: examples, suggestions, stories and reviews straight in the tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db.models import (
    Campaign, CampaignItem, Character, Corpus, Example, Label, Question, Response, ResponseStatus, Story,
    Suggestion, Taxonomy, User,
)
from db.session import write_session

TEACHER = "teacher@test"


def goemotions_id() -> int:
    from core.taxonomy import seed_defaults

    seed_defaults()
    with write_session() as session:
        return session.scalar(select(Taxonomy.id).where(Taxonomy.name == "GoEmotions"))


def make_stories(n: int) -> list[int]:
    with write_session() as session:
        corpus = session.scalar(select(Corpus).where(Corpus.name == "test corpus"))
        if corpus is None:
            corpus = Corpus(name="test corpus")
            session.add(corpus)
            session.flush()
        start = len(corpus.stories)
        stories = [Story(corpus_id=corpus.id, position=start + i, title=f"Story {start + i}", text="x",
                         content_hash=f"h{start + i}") for i in range(n)]
        session.add_all(stories)
        session.flush()
        return [s.id for s in stories]


def make_character(story_id: int, name: str = "Ann", description: str = "A brave girl.") -> int:
    with write_session() as session:
        character = Character(story_id=story_id, name=name, description=description)
        session.add(character)
        session.flush()
        return character.id


def add_example(text: str, scores: dict[str, float] | None = None, *, kind: str = "contextless",
                oot: dict[str, float] | None = None, **fields: Any) -> int:
    """One example with teacher suggestions (GoEmotions label names -> score) and OOT names."""
    taxonomy_id = goemotions_id()
    with write_session() as session:
        labels = dict(session.execute(select(Label.name, Label.id).where(Label.taxonomy_id == taxonomy_id)).tuples().all())
        example = Example(kind=kind, text=text, taxonomy_id=taxonomy_id, **fields)
        session.add(example)
        session.flush()
        for name, score in (scores or {}).items():
            session.add(Suggestion(example_id=example.id, label_id=labels[name], score=score, agent=TEACHER))
        for name, score in (oot or {}).items():
            session.add(Suggestion(example_id=example.id, oot_name=name, score=score, agent=TEACHER))
        return example.id


def add_review(example_id: int, username: str, *, labels: list[str] | None = None, rating: int | None = None,
               status: str = "submitted") -> None:
    """A verification (multi_label) and/or rating response by `username` (created when new)."""
    with write_session() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            user = User(username=username, password_hash="x")
            session.add(user)
        campaign = session.scalar(select(Campaign).where(Campaign.name == "verify"))
        if campaign is None:
            campaign = Campaign(name="verify", task="verification")
            session.add(campaign)
            session.flush()
            session.add_all([Question(campaign_id=campaign.id, name="labels", title="Labels?", kind="multi_label"),
                             Question(campaign_id=campaign.id, name="quality", title="Quality?", kind="rating")])
        session.flush()
        questions = {q.name: q.id for q in session.scalars(select(Question).where(Question.campaign_id == campaign.id))}
        item = session.scalar(select(CampaignItem).where(CampaignItem.example_id == example_id,
                                                        CampaignItem.campaign_id == campaign.id))
        if item is None:
            item = CampaignItem(campaign_id=campaign.id, example_id=example_id)
            session.add(item)
            session.flush()
        for name, value in (("labels", labels), ("quality", rating)):
            if value is not None:
                session.add(Response(item_id=item.id, user_id=user.id, question_id=questions[name], value=value,
                                     status=ResponseStatus(status)))


def add_campaign_item(example_id: int) -> None:
    with write_session() as session:
        campaign = session.scalar(select(Campaign).where(Campaign.name == "verify"))
        if campaign is None:
            campaign = Campaign(name="verify", task="verification")
            session.add(campaign)
            session.flush()
        session.add(CampaignItem(campaign_id=campaign.id, example_id=example_id))
