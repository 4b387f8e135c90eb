"""The teacher's free-text emotion descriptors for any text (contrastive distillation, paper B).

A few words or short phrases per text, each with an intensity. The prompt does not list the
taxonomy, so the descriptors are the teacher's own words, not label names in disguise.
Runs on generated examples, imported texts and plain text uploads alike (the subject is an example).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, create_model
from sqlalchemy import select

from core.pipeline.steps.base import Item, Step, Strict, words
from db.models import Descriptor

INTENSITIES = tuple(round(0.1 * i, 1) for i in range(1, 11))
MAX_DESCRIPTOR_WORDS = 6


class DescribeStep(Step):
    name = stage = "describe"
    title = "Emotion descriptors (free text)"
    system_prompt = "You describe the emotions in texts precisely, in your own words. Answer with JSON only."
    fields = frozenset({"text", "max_descriptors"})
    user_prompt = (
        "Text: \"{text}\"\n\n"
        "Describe the emotions the writer expresses with 2 to {max_descriptors} descriptors: each a word or a "
        "short phrase of at most six words (for example \"uneasy\", \"still wary of her brother\", \"a rush "
        "of warmth\"), with an intensity from 0.1 (faint) to 1.0 (overwhelming).\n"
        'Answer as {{"descriptors": [{{"text": ..., "intensity": ...}}]}}.')
    produced = ("texts_described", "descriptors_added")
    max_descriptors = 5

    def output(self, ctx):
        one = create_model("EmotionDescriptor", __base__=Strict, text=(str, Field(min_length=2, max_length=60)),
                           intensity=(Literal[INTENSITIES], ...))
        return create_model("Descriptors", __base__=Strict,
                            descriptors=(list[one], Field(min_length=1, max_length=self.max_descriptors)))

    def max_tokens(self, ctx) -> int:
        return 40 + 40 * self.max_descriptors

    def items(self, ctx, session, state) -> list[Item]:
        return [Item((example_id, text), self.request(ctx, self.render(ctx, text=text, max_descriptors=self.max_descriptors),
                                           "describe", text))
                for example_id, text in state.get("texts", [])]

    def gates(self, ctx, item, parsed) -> list[str]:
        _, text = item.subject
        problems = []
        for d in parsed.get("descriptors", []):
            if len(words(d["text"])) > MAX_DESCRIPTOR_WORDS or not words(d["text"]):
                problems.append(f"descriptor {d['text']!r} is not a word or a short phrase")
            elif text and " ".join(words(d["text"])).casefold() == " ".join(words(text)).casefold():
                problems.append(f"descriptor {d['text']!r} repeats the text")
        return problems

    def store(self, ctx, session, items) -> dict[str, int]:
        """One Descriptor row per descriptor, once per text and agent, with its request as provenance."""
        ids = [item.subject[0] for item in items if item.kept is not None]
        already = set()
        for start in range(0, len(ids), 500):
            already.update(session.scalars(select(Descriptor.example_id).where(
                Descriptor.example_id.in_(ids[start:start + 500]), Descriptor.agent == ctx.agent)))
        texts = added = 0
        for item in items:
            example_id = item.subject[0]
            if item.kept is None or example_id in already:
                continue
            seen = set()
            for d in item.kept.answer.parsed.get("descriptors", []):
                text = " ".join(d["text"].split())
                if text.casefold() in seen:
                    continue
                seen.add(text.casefold())
                session.add(Descriptor(example_id=example_id, text=text, intensity=float(d["intensity"]),
                                       agent=ctx.agent, llm_request_id=item.kept.answer.request_id,
                                       rejected_reason="; ".join(item.kept.rejected) or None))
                added += 1
            already.add(example_id)
            texts += 1
        session.flush()
        return {"texts_described": texts, "descriptors_added": added}

    def planned_calls(self, plan) -> tuple[int, float]:
        return 0, 0.0  # not a step of generation runs


STEP = DescribeStep()
