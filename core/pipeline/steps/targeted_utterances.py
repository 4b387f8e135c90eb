"""Step 2 (balanced targets): one call per utterance, each steered to an emotion from a seeded cycle,
so that every emotion of the taxonomy gets its share of the utterances."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from core.pipeline.steps.base import NEUTRAL, NEUTRAL_DESCRIPTION, Item, Step, Strict, sentence_problem
from core.pipeline.steps.utterances import UTTERANCE_CHARS, prepare_dedup, run_characters, store_contextless
from db.models import Character, Story


class Utterance(Strict):
    utterance: str = Field(min_length=3, max_length=UTTERANCE_CHARS)


@dataclass(frozen=True)
class Slot:
    character: Character
    story: Story
    window: str
    key: str  # 'e0'.. emotional, 'n0'.. neutral
    emotion: str


class TargetedUtterancesStep(Step):
    name = "targeted_utterances"
    stage = "utterances"
    title = "2. Thinking-aloud utterances (one call per utterance, steered)"
    fields = frozenset({"story_title", "passage", "character", "character_description", "emotion",
                        "emotion_description"})
    user_prompt = (
        "Story: {story_title}\n\n{passage}\n\n"
        "Character: {character} ({character_description})\n"
        "Write one short sentence that {character} thinks aloud at some moment of this story, in the first "
        "person, expressing {emotion} ({emotion_description}). Do not name the emotion; show it.\n"
        'Answer as {{"utterance": ...}}.')
    produced = ("examples_added", "near_duplicates_removed", "kept_with_reason")

    def output(self, ctx):
        return Utterance

    def max_tokens(self, ctx) -> int:
        return 100

    def slots(self, ctx, session) -> list[Slot]:
        from core.pipeline.plan import emotion_cycle, slot_emotions

        cycle = emotion_cycle(ctx.label_names, ctx.config.weights, ctx.config.seed)
        slots = []
        for ordinal, (character, story, window) in enumerate(run_characters(session, ctx)):
            for key, emotion in slot_emotions(cycle, ordinal, ctx.config.stride or ctx.config.emotional,
                                              ctx.config.emotional, ctx.config.neutral):
                slots.append(Slot(character, story, window, key, emotion))
        return slots

    def items(self, ctx, session, state) -> list[Item]:
        descriptions = dict(ctx.labels)
        return [Item(s, self.request(ctx, self.render(
            ctx, story_title=s.story.title, passage=s.window, character=s.character.name,
            character_description=s.character.description, emotion=s.emotion,
            emotion_description=NEUTRAL_DESCRIPTION if s.emotion == NEUTRAL else descriptions.get(s.emotion) or s.emotion),
            # seeded as before presets existed, so that older runs repeat from the cache
            "utterances", s.window, s.character.name, s.key, s.emotion)) for s in self.slots(ctx, session)]

    def gates(self, ctx, item, parsed) -> list[str]:
        why = sentence_problem(parsed.get("utterance", ""), ctx.labels)
        return [why] if why else []

    def prepare(self, ctx, items) -> None:
        prepare_dedup(ctx, [item.kept.answer.parsed["utterance"] for item in items if item.kept is not None])

    def store(self, ctx, session, items) -> dict[str, int]:
        fresh = []
        kept_with_reason = 0
        for item in items:
            if item.kept is None:
                continue
            slot, answer = item.subject, item.kept.answer
            meta = {"seed": item.request.sampling.seed, "attempts": item.kept.attempts,
                    "_columns": {"template_id": ctx.templates[self.name].id, "llm_request_id": answer.request_id}}
            if item.kept.rejected:
                meta["flags"] = ["gate: " + r for r in item.kept.rejected]
                kept_with_reason += 1
            fresh.append((slot.character, slot.key, answer.parsed["utterance"], slot.emotion, meta))
        added, removed = store_contextless(ctx, session, fresh)
        return {"examples_added": added, "near_duplicates_removed": removed, "kept_with_reason": kept_with_reason}

    def planned_calls(self, plan) -> tuple[int, float]:
        calls = plan.characters * (plan.config.emotional + plan.config.neutral)
        size = plan.template_chars.get(self.name, 0) + plan.mean_window + plan.description_chars + 60
        return round(calls), calls * size


STEP = TargetedUtterancesStep()
