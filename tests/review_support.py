"""Factories for review tests: examples with teacher suggestions, annotators, a campaign."""

from __future__ import annotations

from sqlalchemy import select

from core import auth
from core.taxonomy import GOEMOTIONS, seed_defaults
from db.models import Character, Corpus, Example, Label, OOTMapping, Story, Suggestion, Taxonomy
from db.session import read_session, write_session

TEACHER = "teacher-model"


def goemotions_id() -> int:
    seed_defaults()
    with read_session() as session:
        return session.scalar(select(Taxonomy.id).where(Taxonomy.name == GOEMOTIONS))


def label_ids(taxonomy_id: int) -> dict[str, int]:
    with read_session() as session:
        return dict(session.execute(select(Label.name, Label.id).where(Label.taxonomy_id == taxonomy_id)).tuples().all())


def make_examples(specs: list[dict]) -> list[int]:
    """Each spec: text, labels {name: score}, optional kind/context/character/oot {name: score}/target."""
    taxonomy_id = goemotions_id()
    ids = label_ids(taxonomy_id)
    created = []
    with write_session() as session:
        story = session.scalar(select(Story).limit(1))
        if story is None:
            corpus = Corpus(name="review-test")
            story = Story(position=0, text="s", content_hash="h")
            corpus.stories.append(story)
            session.add(corpus)
            session.flush()
        characters: dict[str, Character] = {}
        for spec in specs:
            character = None
            if spec.get("character"):
                name, description = spec["character"]
                character = characters.get(name)
                if character is None:
                    character = characters[name] = Character(story_id=story.id, name=name, description=description)
                    session.add(character)
                    session.flush()
            example = Example(kind=spec.get("kind", "contextless"), text=spec["text"], context=spec.get("context"),
                              character_id=character.id if character else None,
                              target_emotion=spec.get("target"))
            session.add(example)
            session.flush()
            for name, score in spec.get("labels", {}).items():
                session.add(Suggestion(example_id=example.id, label_id=ids[name], score=score, agent=TEACHER))
            for name, score in spec.get("oot", {}).items():
                session.add(Suggestion(example_id=example.id, oot_name=name, score=score, agent=TEACHER))
            created.append(example.id)
    return created


def pending_oot(taxonomy_id: int, name: str, occurrences: int) -> None:
    with write_session() as session:
        session.add(OOTMapping(taxonomy_id=taxonomy_id, source_name=name, occurrences=occurrences))


def annotators(admin, *names: str) -> list[auth.Actor]:
    actors = []
    for name in names:
        auth.create_user(admin, name, f"{name}-pass-1234", "annotator")
        actors.append(auth.authenticate(name, f"{name}-pass-1234"))
    return actors
