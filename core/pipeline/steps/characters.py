"""Step 1: the characters of each story, read window by window and merged by name."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from pydantic import Field, create_model
from sqlalchemy import select

from core.pipeline.steps.base import Item, Step, Strict, plain_words
from db.models import Character, Passage, Story


class CharacterOut(Strict):
    name: str = Field(min_length=1, max_length=60)
    description: str = Field(min_length=3, max_length=240)


@dataclass(frozen=True)
class Window:
    story: Story
    passage_id: int  # the window's first passage (characters point at it)
    text: str


def story_windows(session, config) -> list[Window]:
    from core.pipeline.plan import story_windows as group

    rows = session.execute(select(Passage, Story).join(Story, Story.id == Passage.story_id)
                           .where(Story.id.in_(config.story_ids)).order_by(Story.position, Passage.position)).tuples()
    by_story: dict[int, tuple[Story, list[tuple[int, str]]]] = {}
    for passage, story in rows:
        by_story.setdefault(story.id, (story, []))[1].append((passage.id, passage.text))
    return [Window(story, first, text) for story, passages in by_story.values()
            for first, text in group(passages, config.story_window_words)]


class CharactersStep(Step):
    name = stage = "characters"
    title = "1. Characters"
    fields = frozenset({"story_title", "passage", "max_characters"})
    user_prompt = (
        "Story: {story_title}\n\n{passage}\n\n"
        "List up to {max_characters} characters of this story who think or feel something. For each give the "
        "name used in the story and a one-sentence description of who they are in the story.\n"
        'Answer as {{"characters": [{{"name": ..., "description": ...}}]}}.')
    produced = ("characters_added",)

    def output(self, ctx):
        return create_model("Characters", __base__=Strict, characters=(
            list[CharacterOut], Field(min_length=1, max_length=ctx.config.max_characters)))

    def max_tokens(self, ctx) -> int:
        return 40 + 80 * ctx.config.max_characters

    def items(self, ctx, session, state) -> list[Item]:
        return [Item(window, self.request(ctx, self.render(ctx, story_title=window.story.title, passage=window.text,
                                                           max_characters=ctx.config.max_characters),
                                          "characters", window.text))
                for window in story_windows(session, ctx.config)]

    def gates(self, ctx, item, parsed) -> list[str]:
        labels = {plain_words(name) for name in ctx.label_names}
        return [f"character name {c['name']!r} is an emotion label" for c in parsed.get("characters", [])
                if plain_words(c["name"]) in labels]

    def store(self, ctx, session, items) -> dict[str, int]:
        """Characters merged by name over a story's windows, read in order, up to the cap per story."""
        names: dict[int, set[str]] = defaultdict(set)
        for story_id, name in session.execute(select(Character.story_id, Character.name)
                                              .where(Character.run_id == ctx.run_id)).tuples():
            names[story_id].add(name.casefold())
        done_windows = set(session.scalars(select(Character.passage_id).where(Character.run_id == ctx.run_id)))
        added = 0
        for item in items:
            window = item.subject
            if item.kept is None or window.passage_id in done_windows:
                continue
            for found in item.kept.answer.parsed.get("characters", []):
                name = " ".join(found["name"].split())
                if len(names[window.story.id]) >= ctx.config.max_characters or name.casefold() in names[window.story.id]:
                    continue
                if plain_words(name) in {plain_words(label) for label in ctx.label_names}:
                    continue  # a rejected name kept after the last re-ask: an emotion is no character
                names[window.story.id].add(name.casefold())
                session.add(Character(story_id=window.story.id, passage_id=window.passage_id, run_id=ctx.run_id,
                                      llm_request_id=item.kept.answer.request_id, name=name,
                                      description=" ".join(found["description"].split())))
                added += 1
        return {"characters_added": added}

    def planned_calls(self, plan) -> tuple[int, float]:
        return len(plan.windows), sum(len(w) + plan.template_chars.get(self.name, 0) for w in plan.windows)


STEP = CharactersStep()
