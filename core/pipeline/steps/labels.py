"""Step 3: the teacher's soft labels for each context-less utterance (taxonomy definitions in the prompt)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model
from sqlalchemy import select

from core import labels as label_store
from core.pipeline.steps.base import NAME_PATTERN, Item, Step, Strict, character_names, names_a_character
from db.models import Character, Example, ExampleKind, Expressiveness, Story
from db.session import dialect_insert


def score_type(step: float):
    """Scores in steps of `step` (an enum the decoder must pick from), or any value in [0, 1]."""
    if not step:
        return float, Field(ge=0, le=1)
    values = tuple(round(step * i, 2) for i in range(1, round(1 / step) + 1))
    return Literal[values], ...


def score_scale(step: float) -> str:
    return f"from {step:g} to 1 in steps of {step:g}" if step else "from 0 to 1"


def run_contextless(session, run_id: int) -> list[tuple[Example, Character, Story]]:
    return list(session.execute(select(Example, Character, Story)
                                .join(Character, Character.id == Example.character_id)
                                .join(Story, Story.id == Example.story_id)
                                .where(Example.run_id == run_id, Example.kind == ExampleKind.contextless)
                                .order_by(Example.id)).tuples())


class LabelsStep(Step):
    name = stage = "labels"
    title = "3. Emotion labels"
    fields = frozenset({"character", "character_description", "utterance", "labels", "max_emotions", "score_scale"})
    user_prompt = (
        "Emotions:\n{labels}\n\n"
        "{character} ({character_description}) thinks aloud: \"{utterance}\"\n"
        "Which emotions does this express? Give up to {max_emotions} emotions with a score {score_scale} "
        "for how strongly each is present (use the names above where they fit; another name is allowed if "
        "none fits), and how expressive the sentence is overall (0 = flat, 1 = very emotional).\n"
        'Answer as {{"emotions": [{{"name": ..., "score": ...}}], "expressiveness": ...}}.')
    produced = ("examples_labelled", "oot_names")

    def output(self, ctx):
        scored = create_model("ScoredEmotion", __base__=Strict,
                              name=(str, Field(pattern=NAME_PATTERN)),
                              score=score_type(ctx.config.score_step))
        return create_model("EmotionLabels", __base__=Strict,
                            emotions=(list[scored], Field(min_length=0, max_length=ctx.config.max_emotions)),
                            expressiveness=(float, Field(ge=0, le=1)))

    def max_tokens(self, ctx) -> int:
        return 60 + 40 * ctx.config.max_emotions  # the teacher pretty-prints: ~25 tokens an emotion, plus whitespace

    def items(self, ctx, session, state) -> list[Item]:
        names: dict[int, set[str]] = {}
        items = []
        for example, character, story in run_contextless(session, ctx.run_id):
            if story.id not in names:
                names[story.id] = character_names(session, ctx.run_id, story.id)
            items.append(Item((example, names[story.id]), self.request(ctx, self.render(
                ctx, character=character.name, character_description=character.description, utterance=example.text,
                labels=ctx.label_lines, max_emotions=ctx.config.max_emotions, score_scale=score_scale(ctx.config.score_step)),
                "labels", character.name, example.text)))
        return items

    def gates(self, ctx, item, parsed) -> list[str]:
        _, characters = item.subject
        return [f"emotion {e['name']!r} is a character's name" for e in parsed.get("emotions", [])
                if names_a_character(e["name"], characters)]

    def store(self, ctx, session, items) -> dict[str, int]:
        """Soft labels and expressiveness for each answered example (a character's name is never a label)."""
        ids = [item.subject[0].id for item in items if item.kept is not None]
        pending = set(ids)  # an example labelled before (a resumed stage) has its expressiveness row
        for start in range(0, len(ids), 500):
            pending.difference_update(session.scalars(select(Expressiveness.example_id).where(
                Expressiveness.example_id.in_(ids[start:start + 500]))))
        fresh = [item for item in items if item.kept is not None and item.subject[0].id in pending]
        scored = [label_store.Scored(item.subject[0].id,
                                     [label_store.ScoredName(e["name"], e["score"])
                                      for e in item.kept.answer.parsed.get("emotions", [])
                                      if not names_a_character(e["name"], item.subject[1])],
                                     item.kept.answer.request_id) for item in fresh]
        oot = label_store.add_suggestions_many(session, ctx.taxonomy_id, scored, agent=ctx.agent)
        # One executemany insert (a row another worker wrote first stays); the example's meta is rewritten
        # only where the gates flagged the answer.
        if fresh:
            session.execute(dialect_insert(session, Expressiveness).on_conflict_do_nothing(index_elements=[Expressiveness.example_id]), [
                {"example_id": item.subject[0].id, "llm_request_id": item.kept.answer.request_id,
                 "value": float(item.kept.answer.parsed.get("expressiveness", 0.0))} for item in fresh])
        for item in fresh:
            if item.kept.rejected:
                row = session.get(Example, item.subject[0].id)
                meta = dict(row.meta or {})
                row.meta = {**meta, "flags": [*meta.get("flags", []), *("gate: " + r for r in item.kept.rejected)]}
        session.flush()
        label_store.refresh_oot_counts(session, ctx.taxonomy_id)
        return {"examples_labelled": len(fresh), "oot_names": oot}

    def planned_calls(self, plan) -> tuple[int, float]:
        size = plan.template_chars.get(self.name, 0) + len(plan.label_lines) + plan.utterance_chars + plan.description_chars
        return round(plan.contextless), plan.contextless * size


STEP = LabelsStep()
