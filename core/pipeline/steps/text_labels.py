"""The teacher's soft labels over a taxonomy for imported texts (compared with human labels, and the
teacher baseline of evaluations). Its prompt lists the taxonomy; the free-text descriptors are `describe`."""

from __future__ import annotations

from pydantic import Field

from core import labels as label_store
from core.pipeline.steps.base import NAME_PATTERN, Item, Step, Strict


class ScoredEmotion(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    score: float = Field(ge=0, le=1)


class Description(Strict):
    description: str = Field(min_length=3, max_length=200)
    emotions: list[ScoredEmotion] = Field(min_length=0, max_length=5)


class TextLabelsStep(Step):
    name = stage = "text_labels"
    title = "Teacher labels of imported texts"
    system_prompt = "You describe the emotions in texts precisely. Answer with JSON only."
    fields = frozenset({"text", "labels", "max_emotions"})
    user_prompt = (
        "Text: \"{text}\"\n\n"
        "Emotions:\n{labels}\n\n"
        "Describe in one short phrase the emotions the writer expresses (for example \"relieved but still "
        "wary of her brother\"), then give up to {max_emotions} emotions from the list with a score from 0 to 1 "
        "for how strongly each is present.\n"
        'Answer as {{"description": ..., "emotions": [{{"name": ..., "score": ...}}]}}.')
    produced = ("texts_labelled",)

    def output(self, ctx):
        return Description

    def max_tokens(self, ctx) -> int:
        return 160

    def items(self, ctx, session, state) -> list[Item]:
        return [Item((example_id, text), self.request(ctx, self.render(ctx, text=text, labels=ctx.label_lines, max_emotions=3),
                                           text))
                for example_id, text in state.get("texts", [])]

    def store(self, ctx, session, items) -> dict[str, int]:
        """Soft-label suggestions per answered text, once per agent."""
        from sqlalchemy import select

        from db.models import Example, Suggestion

        ids = [item.subject[0] for item in items if item.kept is not None]
        already = set()  # a contextual variant shows its parent's labels: it is labelled already
        for start in range(0, len(ids), 500):
            already.update(session.scalars(select(Example.id).join(Suggestion, label_store.shown_by()).where(
                Example.id.in_(ids[start:start + 500]), Suggestion.agent == ctx.agent)))
        stored = 0
        for item in items:
            example_id = item.subject[0]
            if item.kept is None or example_id in already:
                continue
            scored = [label_store.ScoredName(e["name"], e["score"]) for e in item.kept.answer.parsed.get("emotions", [])]
            label_store.add_suggestions(session, example_id, ctx.taxonomy_id, scored, agent=ctx.agent,
                                        llm_request_id=item.kept.answer.request_id)
            stored += 1
        session.flush()
        label_store.refresh_oot_counts(session, ctx.taxonomy_id)
        return {"texts_labelled": stored}


STEP = TextLabelsStep()
