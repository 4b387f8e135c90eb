"""Step 2 (paper): one call per character for its emotional utterances, emotions picked by the teacher,
plus neutral ones, in one structured answer.

The emotional and the neutral utterances are asked together, so no two requests share a prompt (at
temperature 0 two identical prompts would give the same neutral sentence twice).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated, Literal

from pydantic import Field, create_model
from sqlalchemy import select

from core.pipeline import dedup
from core.pipeline.steps.base import NEUTRAL, Item, Step, Strict, names_a_character, plain_words, sentence_problem
from core.pipeline.steps.characters import story_windows
from db.models import Character, Example, ExampleKind, Story
from db.session import insert_rows

UTTERANCE_CHARS = 300


def run_characters(session, ctx) -> list[tuple[Character, Story, str]]:
    """The run's characters in order, each with its story and the window it was found in."""
    windows = {w.passage_id: w.text for w in story_windows(session, ctx.config)}
    rows = session.execute(select(Character, Story).join(Story, Story.id == Character.story_id)
                           .where(Character.run_id == ctx.run_id).order_by(Character.id)).tuples()
    return [(character, story, windows.get(character.passage_id, "")) for character, story in rows]


def prepare_dedup(ctx, texts: list[str]) -> None:
    """Encode a stage's new utterances before its write transaction (the near-duplicate check reads them)."""
    ctx.vectors.clear()
    ctx.embed([" ".join(text.split()) for text in texts])


def store_contextless(ctx, session, fresh: list[tuple[Character, str, str, str | None, dict]]) -> tuple[int, int]:
    """Context-less examples (character, slot, text, target, meta), minus a character's near-repeats."""
    existing: dict[int, dict[str, str]] = defaultdict(dict)
    for character_id, meta, text in session.execute(
            select(Example.character_id, Example.meta, Example.text)
            .where(Example.run_id == ctx.run_id, Example.kind == ExampleKind.contextless)).tuples():
        existing[character_id][(meta or {}).get("slot", "")] = text
    by_character: dict[int, list] = defaultdict(list)
    for entry in fresh:
        if entry[1] not in existing[entry[0].id]:
            by_character[entry[0].id].append(entry)
    rows, removed = [], 0
    for character_id, entries in by_character.items():
        kept = list(existing[character_id].values())
        texts = kept + [" ".join(text.split()) for _, _, text, _, _ in entries]
        repeats = dedup.near_duplicates(texts, keep_first=len(kept), similarity=ctx.config.dedup_similarity,
                                        embed=ctx.embed)
        for index, (character, slot, _, target, meta) in enumerate(entries, start=len(kept)):
            if index in repeats:
                removed += 1
                continue
            meta = dict(meta)
            columns = meta.pop("_columns")  # template and request: Example columns, not meta
            rows.append(dict(kind=ExampleKind.contextless, text=texts[index], character_id=character_id,
                             passage_id=character.passage_id, story_id=character.story_id, run_id=ctx.run_id,
                             stage="utterances", taxonomy_id=ctx.taxonomy_id, target_emotion=target,
                             meta={"slot": slot, **meta}, **columns))
    insert_rows(session, Example, rows)
    return len(rows), removed


class UtterancesStep(Step):
    name = stage = "utterances"
    title = "2. Thinking-aloud utterances (one call per character)"
    fields = frozenset({"story_title", "passage", "character", "character_description", "emotional", "neutral",
                        "labels"})
    user_prompt = (
        "Story: {story_title}\n\n{passage}\n\n"
        "Character: {character} ({character_description})\n"
        "Emotions:\n{labels}\n\n"
        "Write {emotional} different sentences of 6 to 20 words that {character} thinks aloud at different moments "
        "of this story, in the first person. Each shows one emotion from the list that fits that moment; write "
        "the sentence first, then name its emotion in \"emotion\" (never in the sentence). Then write {neutral} "
        "different sentences of 6 to 20 words {character} thinks at calm, everyday moments, with no particular "
        "emotion.\n"
        'Answer as {{"emotional": [{{"utterance": "<sentence>", "emotion": "<emotion>"}}], '
        '"neutral": ["<sentence>"]}}.')
    produced = ("examples_added", "near_duplicates_removed", "kept_with_reason")

    def output(self, ctx):
        names = tuple(n for n in ctx.label_names if n != NEUTRAL) or ("emotion",)
        # The sentence comes before its emotion: a small teacher that names the emotion first tends to
        # write the emotion's name again as the "sentence".
        pick = create_model("PickedUtterance", __base__=Strict,
                            utterance=(str, Field(min_length=3, max_length=UTTERANCE_CHARS)),
                            emotion=(Literal[names], ...))
        k, n = ctx.config.emotional, ctx.config.neutral
        return create_model("CharacterUtterances", __base__=Strict,
                            emotional=(list[pick], Field(min_length=k, max_length=k)),
                            neutral=(list[Annotated[str, Field(min_length=3, max_length=UTTERANCE_CHARS)]],
                                     Field(min_length=n, max_length=n)))

    def max_tokens(self, ctx) -> int:
        return 40 + 80 * ctx.config.emotional + 70 * ctx.config.neutral

    def items(self, ctx, session, state) -> list[Item]:
        return [Item((character, story), self.request(ctx, self.render(
            ctx, story_title=story.title, passage=window, character=character.name,
            character_description=character.description, emotional=ctx.config.emotional,
            neutral=ctx.config.neutral, labels=ctx.label_lines),
            "utterances", window, character.name, ctx.config.emotional, ctx.config.neutral))
            for character, story, window in run_characters(session, ctx)]

    def _problems(self, ctx, characters: set[str], parsed) -> dict[str, str]:
        """slot -> why its utterance is rejected."""
        problems = {}
        seen: set[str] = set()
        for slot, (text, _, extra) in _slots(parsed).items():
            why = sentence_problem(text, ctx.labels)
            if not why and plain_words(text) in seen:
                # A small teacher at temperature 0 writes one sentence again and again; the near-duplicate
                # check would drop the copies after the call, so ask again for them instead.
                why = f"utterance {text!r} repeats an earlier sentence of this answer"
            if "teacher_emotion" in extra and names_a_character(extra["teacher_emotion"], characters):
                why = f"emotion {extra['teacher_emotion']!r} is a character's name"
            if why:
                problems[slot] = why
            seen.add(plain_words(text))
        return problems

    def gates(self, ctx, item, parsed) -> list[str]:
        return list(self._problems(ctx, {item.subject[0].name.casefold()}, parsed).values())

    def open_reasons(self, ctx, item, answers) -> list[str]:
        """The newest answer's problems in the slots that no answer so far has filled well: a slot that
        passed once is kept, so a re-ask only has to mend the others."""
        return [problem for *_, problem in self._chosen(ctx, item.subject[0], answers) if problem]

    def _chosen(self, ctx, character, answers) -> list[tuple[str, str, str | None, dict, object, str | None]]:
        """Per slot of the newest answer: (slot, text, target, extra meta, answer it comes from, problem).

        Each slot takes the first answer, oldest first, whose utterance in that slot passed the gates;
        a slot no answer filled well keeps the newest answer's utterance with its problem.
        """
        names = {character.name.casefold()}
        checked = [(answer, _slots(answer.parsed), self._problems(ctx, names, answer.parsed)) for answer in answers]
        newest, newest_slots, newest_problems = checked[-1]
        chosen = []
        for slot, (text, target, extra) in newest_slots.items():
            passed = next(((answer, slots[slot]) for answer, slots, problems in checked
                           if slot in slots and slot not in problems), None)
            if passed is not None:
                chosen.append((slot, *passed[1], passed[0], None))
            else:
                chosen.append((slot, text, target, extra, newest, newest_problems[slot]))
        return chosen

    def _kept_slots(self, ctx, item):
        return self._chosen(ctx, item.subject[0], [*item.kept.earlier, item.kept.answer])

    def prepare(self, ctx, items) -> None:
        prepare_dedup(ctx, [text for item in items if item.kept is not None
                            for _, text, *_ in self._kept_slots(ctx, item)])

    def store(self, ctx, session, items) -> dict[str, int]:
        fresh = []
        kept_with_reason = 0
        for item in items:
            if item.kept is None:
                continue
            character, _ = item.subject
            # Engine, model, sampling and template versions are the run's, the raw answer the linked request's
            # (each slot links the answer its utterance came from).
            base = {"seed": item.request.sampling.seed, "attempts": item.kept.attempts}
            for slot, text, target, extra, answer, problem in self._kept_slots(ctx, item):
                columns = {"template_id": ctx.templates["utterances"].id, "llm_request_id": answer.request_id}
                meta = {**base, **extra, "_columns": columns}
                if problem:
                    meta["flags"] = ["gate: " + problem]
                    kept_with_reason += 1
                fresh.append((character, slot, text, target, meta))
        added, removed = store_contextless(ctx, session, fresh)
        return {"examples_added": added, "near_duplicates_removed": removed, "kept_with_reason": kept_with_reason}

    def planned_calls(self, plan) -> tuple[int, float]:
        size = plan.template_chars.get(self.name, 0) + plan.mean_window + plan.description_chars + len(plan.label_lines)
        return round(plan.characters), plan.characters * size


def _slots(parsed) -> dict[str, tuple[str, str | None, dict]]:
    """slot -> (utterance, target emotion, extra meta): e0, e1... emotional (the teacher's pick), n0... neutral."""
    slots = {f"e{j}": (e["utterance"], None, {"teacher_emotion": e["emotion"]})
             for j, e in enumerate(parsed.get("emotional", []))}
    slots.update({f"n{j}": (text, NEUTRAL, {}) for j, text in enumerate(parsed.get("neutral", []))})
    return slots


STEP = UtterancesStep()
