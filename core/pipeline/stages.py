"""The six Emo Pillars stages: the requests each one asks, and what its answers become.

Each stage builds its requests from what the database (and the response cache) already holds, so
running a stage again asks only what is missing and adds only what is not there yet: resume after a
crash, extend a run, or repeat a stage, all by running it again. Requests are built from content
(passage, character name, slot), never from row ids, so a repeated run with the same seed and
templates is answered entirely from the cache.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import labels as label_store
from core.llm.engines import Engine
from core.llm.structured import bounded_schema
from core.llm.types import ChatRequest, Sampling
from core.pipeline import dedup
from core.pipeline.cleaning import EmotionWords
from core.pipeline.plan import NEUTRAL, NEUTRAL_DESCRIPTION, RunConfig, emotion_cycle, request_seed, slot_emotions
from core.pipeline.schemas import MAX_TOKENS, OUTPUTS
from core.pipeline.templates import TemplateView
from db.models import Character, Example, ExampleKind, Label, LLMRequest, Passage, Story, Suggestion


@dataclass
class Answer:
    request_id: int
    parsed: dict[str, Any]
    raw_text: str


@dataclass
class StageContext:
    """Everything a stage needs to build and store: the run, its taxonomy, templates and engine."""

    run_id: int
    config: RunConfig
    taxonomy_id: int
    labels: list[tuple[str, str]]  # (name, description) in taxonomy order
    synonyms: dict[str, str]  # OOT name -> label, for the emotion-word check
    templates: dict[str, TemplateView]
    engine: Engine
    sampling: Sampling
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def agent(self) -> str:
        return f"teacher:{self.engine.model}"

    @property
    def label_lines(self) -> str:
        return "\n".join(f"- {name}: {description}" if description else f"- {name}" for name, description in self.labels)

    def request(self, stage: str, messages: tuple[dict[str, str], ...], *seed_parts: object) -> ChatRequest:
        sampling = Sampling(self.sampling.temperature, self.sampling.top_p, MAX_TOKENS[stage],
                            request_seed(self.config.seed, stage, *seed_parts))
        return ChatRequest(messages, sampling, bounded_schema(OUTPUTS[stage])).with_key(self.engine.name,
                                                                                         self.engine.model)

    def template_meta(self, *stages: str) -> dict[str, int]:
        return {stage: self.templates[stage].version for stage in stages}

    def engine_meta(self, request: ChatRequest) -> dict[str, Any]:
        """Which engine and sampling wrote an example (the LLM request row holds the full prompt)."""
        return {"engine": self.engine.name, "model": self.engine.model, "sampling": request.sampling.as_dict()}


def answers(session: Session, requests: list[ChatRequest]) -> dict[str, Answer]:
    """key -> the cached answer, for the requests answered ok."""
    found: dict[str, Answer] = {}
    keys = [r.key for r in requests]
    for start in range(0, len(keys), 500):
        rows = session.execute(select(LLMRequest.key, LLMRequest.id, LLMRequest.parsed, LLMRequest.raw_text)
                               .where(LLMRequest.key.in_(keys[start:start + 500]), LLMRequest.status == "ok"))
        for key, request_id, parsed, raw_text in rows.tuples():
            found[key] = Answer(request_id, parsed or {}, raw_text or "")
    return found


def _passages(session: Session, story_ids: list[int]) -> list[tuple[Passage, Story]]:
    return list(session.execute(select(Passage, Story).join(Story, Story.id == Passage.story_id)
                                .where(Story.id.in_(story_ids)).order_by(Story.position, Passage.position)).tuples())


# --------------------------------------------------------------------------- 1. characters


def character_requests(ctx: StageContext, session: Session) -> dict[int, ChatRequest]:
    """passage id -> its request."""
    template = ctx.templates["characters"]
    return {passage.id: ctx.request("characters", template.render(
        story_title=story.title, passage=passage.text, max_characters=ctx.config.max_characters),
        "characters", passage.text)
        for passage, story in _passages(session, ctx.config.story_ids)}


def store_characters(ctx: StageContext, session: Session, requests: dict[int, ChatRequest]) -> int:
    found = answers(session, list(requests.values()))
    existing = session.execute(select(Character.passage_id, Character.story_id, Character.name)
                               .where(Character.run_id == ctx.run_id)).tuples().all()
    done_passages = {p for p, _, _ in existing}
    names: dict[int, set[str]] = defaultdict(set)
    for _, story_id, name in existing:
        names[story_id].add(name.casefold())
    added = 0
    for passage, story in _passages(session, ctx.config.story_ids):
        answer = found.get(requests[passage.id].key)
        if answer is None or passage.id in done_passages:
            continue
        for item in answer.parsed.get("characters", []):
            name = " ".join(item["name"].split())
            if len(names[story.id]) >= ctx.config.max_characters or name.casefold() in names[story.id]:
                continue
            names[story.id].add(name.casefold())
            session.add(Character(story_id=story.id, passage_id=passage.id, run_id=ctx.run_id,
                                  llm_request_id=answer.request_id, name=name,
                                  description=" ".join(item["description"].split())))
            added += 1
    return added


# --------------------------------------------------------------------------- 2. utterances


@dataclass(frozen=True)
class Slot:
    character: Character
    passage: Passage
    story: Story
    key: str  # 'e0'.. emotional, 'n0'.. neutral
    emotion: str


def _characters(session: Session, run_id: int) -> list[tuple[Character, Passage, Story]]:
    return list(session.execute(select(Character, Passage, Story)
                                .join(Passage, Passage.id == Character.passage_id)
                                .join(Story, Story.id == Character.story_id)
                                .where(Character.run_id == run_id).order_by(Character.id)).tuples())


def utterance_slots(ctx: StageContext, session: Session) -> list[Slot]:
    cycle = emotion_cycle([name for name, _ in ctx.labels], ctx.config.weights, ctx.config.seed)
    slots = []
    for ordinal, (character, passage, story) in enumerate(_characters(session, ctx.run_id)):
        for key, emotion in slot_emotions(cycle, ordinal, ctx.config.stride or ctx.config.emotional,
                                          ctx.config.emotional, ctx.config.neutral):
            slots.append(Slot(character, passage, story, key, emotion))
    return slots


def utterance_requests(ctx: StageContext, slots: list[Slot]) -> list[ChatRequest]:
    template = ctx.templates["utterances"]
    descriptions = dict(ctx.labels)
    return [ctx.request("utterances", template.render(
        story_title=s.story.title, passage=s.passage.text, character=s.character.name,
        character_description=s.character.description, emotion=s.emotion,
        emotion_description=NEUTRAL_DESCRIPTION if s.emotion == NEUTRAL else descriptions.get(s.emotion) or s.emotion),
        "utterances", s.passage.text, s.character.name, s.key, s.emotion) for s in slots]


def store_utterances(ctx: StageContext, session: Session, slots: list[Slot], requests: list[ChatRequest]) -> tuple[int, int]:
    """Context-less examples for the answered slots, minus a character's near-repeats: (added, removed)."""
    found = answers(session, requests)
    existing: dict[int, dict[str, str]] = defaultdict(dict)
    for character_id, meta, text in session.execute(
            select(Example.character_id, Example.meta, Example.text)
            .where(Example.run_id == ctx.run_id, Example.kind == ExampleKind.contextless)).tuples():
        existing[character_id][(meta or {}).get("slot", "")] = text
    by_character: dict[int, list[tuple[Slot, ChatRequest, Answer]]] = defaultdict(list)
    for slot, request in zip(slots, requests):
        answer = found.get(request.key)
        if answer is not None and slot.key not in existing[slot.character.id]:
            by_character[slot.character.id].append((slot, request, answer))
    added = removed = 0
    for character_id, fresh in by_character.items():
        kept = list(existing[character_id].values())
        texts = kept + [" ".join(answer.parsed["utterance"].split()) for _, _, answer in fresh]
        repeats = dedup.near_duplicates(texts, keep_first=len(kept), similarity=ctx.config.dedup_similarity)
        for index, (slot, request, answer) in enumerate(fresh, start=len(kept)):
            if index in repeats:
                removed += 1
                continue
            session.add(Example(
                kind=ExampleKind.contextless, text=texts[index], character_id=character_id,
                passage_id=slot.passage.id, story_id=slot.story.id, run_id=ctx.run_id, stage="utterances",
                taxonomy_id=ctx.taxonomy_id, template_id=ctx.templates["utterances"].id,
                llm_request_id=answer.request_id, raw_output=answer.raw_text, target_emotion=slot.emotion,
                meta={"slot": slot.key, "seed": request.sampling.seed, **ctx.engine_meta(request),
                      "templates": ctx.template_meta("characters", "utterances")},
            ))
            added += 1
    return added, removed


# --------------------------------------------------------------------------- 3. labels


def _contextless(session: Session, run_id: int) -> list[tuple[Example, Character, Passage, Story]]:
    return list(session.execute(select(Example, Character, Passage, Story)
                                .join(Character, Character.id == Example.character_id)
                                .join(Passage, Passage.id == Example.passage_id)
                                .join(Story, Story.id == Example.story_id)
                                .where(Example.run_id == run_id, Example.kind == ExampleKind.contextless)
                                .order_by(Example.id)).tuples())


def label_requests(ctx: StageContext, session: Session) -> dict[int, ChatRequest]:
    """example id -> its labelling request."""
    template = ctx.templates["labels"]
    return {example.id: ctx.request("labels", template.render(
        character=character.name, character_description=character.description, utterance=example.text,
        labels=ctx.label_lines, max_emotions=ctx.config.max_emotions), "labels", character.name, example.text)
        for example, character, _, _ in _contextless(session, ctx.run_id)}


def store_labels(ctx: StageContext, session: Session, requests: dict[int, ChatRequest]) -> tuple[int, int]:
    """Soft labels and expressiveness for each answered example: (examples labelled, OOT names)."""
    found = answers(session, list(requests.values()))
    labelled = oot = 0
    ids = list(requests)
    pending = [example for start in range(0, len(ids), 500) for example in session.scalars(
        select(Example).where(Example.id.in_(ids[start:start + 500]), Example.expressiveness.is_(None)))]
    for example in pending:
        answer = found.get(requests[example.id].key)
        if answer is None:
            continue
        scored = [label_store.ScoredName(e["name"], e["score"]) for e in answer.parsed.get("emotions", [])]
        oot += label_store.add_suggestions(session, example.id, ctx.taxonomy_id, scored, agent=ctx.agent,
                                           llm_request_id=answer.request_id)
        example.expressiveness = float(answer.parsed.get("expressiveness", 0.0))
        example.meta = {**(example.meta or {}), "templates": {**(example.meta or {}).get("templates", {}),
                                                              **ctx.template_meta("labels")}}
        labelled += 1
    session.flush()
    label_store.refresh_oot_counts(session, ctx.taxonomy_id)
    return labelled, oot


# --------------------------------------------------------------------------- 4-6. context, cleaning, rewrite


@dataclass
class ContextChain:
    """One context-less example on its way to a contextual one."""

    example: Example
    character: Character
    context: ChatRequest
    clean: ChatRequest | None = None
    rewrite: ChatRequest | None = None


def context_chains(ctx: StageContext, session: Session) -> list[ContextChain]:
    """The examples still without a contextual version, with their context requests."""
    done = set(session.scalars(select(Example.parent_id).where(Example.run_id == ctx.run_id,
                                                               Example.kind == ExampleKind.contextual)))
    template = ctx.templates["context"]
    return [ContextChain(example, character, ctx.request("context", template.render(
        story_title=story.title, passage=passage.text, character=character.name,
        character_description=character.description, utterance=example.text),
        "context", passage.text, character.name, example.text))
        for example, character, passage, story in _contextless(session, ctx.run_id) if example.id not in done]


def add_clean_requests(ctx: StageContext, session: Session, chains: list[ContextChain]) -> list[ContextChain]:
    """The chains whose context arrived, each with its cleaning request."""
    found = answers(session, [c.context for c in chains])
    label_names = ", ".join(name for name, _ in ctx.labels if name != NEUTRAL)
    ready = []
    for chain in chains:
        answer = found.get(chain.context.key)
        if answer is not None:
            chain.clean = ctx.request("clean", ctx.templates["clean"].render(
                context=answer.parsed["context"], label_names=label_names), "clean", answer.parsed["context"])
            ready.append(chain)
    return ready


def add_rewrite_requests(ctx: StageContext, session: Session, chains: list[ContextChain]) -> list[ContextChain]:
    found = answers(session, [c.clean for c in chains])
    ready = []
    for chain in chains:
        answer = found.get(chain.clean.key)
        if answer is not None:
            chain.rewrite = ctx.request("rewrite", ctx.templates["rewrite"].render(
                character=chain.character.name, context=answer.parsed["context"], utterance=chain.example.text),
                "rewrite", answer.parsed["context"], chain.example.text)
            ready.append(chain)
    return ready


def store_contextual(ctx: StageContext, session: Session, chains: list[ContextChain]) -> tuple[int, int]:
    """Contextual examples (cleaned context + rewritten utterance + the parent's soft labels): (added, flagged)."""
    found = answers(session, [c.context for c in chains] + [c.clean for c in chains] + [c.rewrite for c in chains])
    words = EmotionWords([name for name, _ in ctx.labels], ctx.synonyms)
    suggestions = _suggestions_by_example(session, [c.example.id for c in chains])
    label_names = dict(session.execute(select(Label.id, Label.name).where(Label.taxonomy_id == ctx.taxonomy_id)).tuples().all())
    cut = label_store.threshold()
    added = flagged = 0
    for chain in chains:
        raw, clean, rewrite = (found.get(r.key) for r in (chain.context, chain.clean, chain.rewrite))
        if raw is None or clean is None or rewrite is None:
            continue
        context = " ".join(clean.parsed["context"].split())
        text = " ".join(rewrite.parsed["utterance"].split())
        own = {label_names[s.label_id] for s in suggestions[chain.example.id] if s.label_id in label_names and s.score >= cut}
        own |= {chain.example.target_emotion} - {NEUTRAL, None}
        flags, in_context, in_text = [], words.find(context), words.find(text)
        if own & set(in_context):
            flags.append("context_names_emotion")
        if own & set(in_text):
            flags.append("utterance_names_emotion")
        flagged += bool(flags)
        if _repeats(text, context):  # a tiny teacher may echo the context (or the title) as the utterance
            flags.append("utterance_repeats_context")
        example = Example(
            kind=ExampleKind.contextual, text=text, context=context, raw_context=" ".join(raw.parsed["context"].split()),
            character_id=chain.character.id, passage_id=chain.example.passage_id, story_id=chain.example.story_id,
            run_id=ctx.run_id, stage="rewrite", parent_id=chain.example.id, taxonomy_id=ctx.taxonomy_id,
            template_id=ctx.templates["rewrite"].id, llm_request_id=rewrite.request_id, raw_output=rewrite.raw_text,
            target_emotion=chain.example.target_emotion, expressiveness=chain.example.expressiveness,
            meta={"slot": (chain.example.meta or {}).get("slot"), "flags": flags, **ctx.engine_meta(chain.rewrite),
                  "emotion_words": {"context": in_context, "utterance": in_text},
                  "requests": {"context": raw.request_id, "clean": clean.request_id, "rewrite": rewrite.request_id},
                  "templates": {**(chain.example.meta or {}).get("templates", {}),
                                **ctx.template_meta("context", "clean", "rewrite")}},
        )
        session.add(example)
        session.flush()
        for suggestion in suggestions[chain.example.id]:
            session.add(Suggestion(example_id=example.id, label_id=suggestion.label_id, oot_name=suggestion.oot_name,
                                   score=suggestion.score, agent=suggestion.agent,
                                   llm_request_id=suggestion.llm_request_id))
        added += 1
    return added, flagged


def _repeats(text: str, context: str) -> bool:
    plain = text.casefold().removeprefix("situation:").strip()
    return bool(plain) and plain in context.casefold()


def _suggestions_by_example(session: Session, example_ids: list[int]) -> dict[int, list[Suggestion]]:
    found: dict[int, list[Suggestion]] = defaultdict(list)
    for start in range(0, len(example_ids), 500):
        for suggestion in session.scalars(select(Suggestion).where(
                Suggestion.example_id.in_(example_ids[start:start + 500]))):
            found[suggestion.example_id].append(suggestion)
    return found

