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
                              taxonomy_id=taxonomy_id,
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


def seed_served_app(home) -> None:
    """Seed the campaign into the database of an app that `tests.browser_support.served_app(home)` serves."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "EMOFORGE_HOME": str(home), "DATABASE_URL": f"sqlite:///{Path(home) / 'emoforge.db'}",
           "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "tests.review_support"], cwd=root, env=env, check=True,
                   capture_output=True)


SCRIPT_UTTERANCE = "<script>alert(1)</script> I kept the light burning."


def seed_browser_campaign() -> int:
    """For browser tests and the screenshot: a second annotator and a verification campaign over
    contextual examples (the first one holding a script tag), answered by 'ann' and 'eve' (overlap 2).
    Run in the served app's environment (DATABASE_URL); expects the admin and 'ann' to exist."""
    from core.review.campaigns import create_campaign
    from core.review.selection import Selection

    admin = auth.authenticate("admin", "admin-pass-123")
    eve = annotators(admin, "eve")[0]
    ann = auth.authenticate("ann", "ann-pass-1234")
    keeper = ("Mara", "An old lighthouse keeper who has not left her island in forty winters.")
    ids = make_examples([
        {"text": SCRIPT_UTTERANCE, "kind": "contextual", "character": keeper,
         "context": "The supply boat is three weeks late and the oil is running low.",
         "labels": {"fear": 0.7, "nervousness": 0.5, "pride": 0.35}},
        {"text": "Forty winters, and the sea still surprises me.", "kind": "contextual", "character": keeper,
         "context": "A whale surfaces beside the rocks at dawn.", "labels": {"surprise": 0.8, "joy": 0.4}},
        {"text": "Thank you for coming all this way.", "kind": "contextual", "character": keeper,
         "context": "The boat finally arrives.", "labels": {"gratitude": 0.9, "relief": 0.6}},
    ])
    campaign = create_campaign(
        admin, name="Lighthouse verification", task="verification", annotator_ids=[ann.id, eve.id],
        overlap=2, selection=Selection(example_ids=ids),
        guidelines="Mark every emotion the speaker expresses, not the ones the reader feels.\n"
                   "Keys: 1-9 toggle the first nine labels, S submits, arrows skip or go back.")
    return campaign.id


if __name__ == "__main__":
    print(seed_browser_campaign())
