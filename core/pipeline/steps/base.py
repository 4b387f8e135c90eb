"""What every pipeline step shares: the step contract, the run's context, cached answers, content gates.

A step is one module in this package holding one `Step` subclass: its prompt default, output schema,
token budget, content gates, the requests it asks, what its answers become, and how many calls it will
make (for the estimate before launch). The registry (`core.pipeline.steps`) lists them in order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.llm.stored import stored_answer
from core.llm.structured import bounded_schema
from core.llm.types import ChatRequest, Sampling
from db.models import LLMRequest

NEUTRAL = "neutral"
NEUTRAL_DESCRIPTION = "no particular emotion: calm, matter-of-fact, everyday"
SYSTEM = "You are a careful writer helping to build an emotion data set. Answer with JSON only."
# The pipeline's encoder work (near-duplicates, context similarity) is a throughput cost paid per call:
# bfloat16 where the CPU has it natively (core.embeddings.embed), fp32 elsewhere.
ENCODER_PRECISION = "auto"
# An emotion name of 2 to 32 characters. The length lives in the pattern, not in minLength/maxLength beside
# it: vLLM's xgrammar backend does not take both on one string (see core.llm.structured).
NAME_PATTERN = r"^[A-Za-z][A-Za-z \-']{1,31}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class Answer:
    request_id: int
    parsed: dict[str, Any]
    raw_text: str


@dataclass
class Gated:
    """The answer a step keeps for one item: the first that passed its gates, else the last one asked."""

    answer: Answer
    rejected: list[str]  # why the kept answer failed its gates ([] = it passed)
    attempts: int  # answers asked for this item, the kept one included
    earlier: tuple[Answer, ...] = ()  # the rejected answers before it, oldest first (a step may keep parts of them)


@dataclass
class Item:
    """One request of a step and what it is about (a passage, a character, an example...)."""

    subject: Any
    request: ChatRequest
    kept: Gated | None = None
    measures: dict[str, float] | None = None  # set by `prepare` where a step measures its answers


@dataclass
class StepContext:
    """Everything a step needs to build and store: the run, its taxonomy, templates and engine."""

    run_id: int | None
    config: Any  # core.pipeline.plan.RunConfig (None for the describe job)
    taxonomy_id: int | None
    labels: list[tuple[str, str]]  # (name, description) in taxonomy order
    synonyms: dict[str, str]  # OOT name -> label, for the emotion-word check
    templates: dict[str, Any]  # stage -> TemplateView
    engine: Any
    sampling: Sampling
    seed: int = 0
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)  # step name -> bounded schema
    vectors: dict[str, Any] = field(default_factory=dict, repr=False)  # text -> its sentence embedding (one step's)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of `texts`, encoding in one pass only those this step has not seen yet."""
        from core import embeddings

        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if missing:
            self.vectors.update(zip(missing, embeddings.embed(missing, precision=ENCODER_PRECISION)))
        if not len(texts):
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self.vectors[t] for t in texts])

    def schema_of(self, step: "Step") -> dict[str, Any]:
        """The step's output schema for this run, built once (a stage asks thousands of requests with it)."""
        if step.name not in self.schemas:
            self.schemas[step.name] = bounded_schema(step.output(self))
        return self.schemas[step.name]

    @property
    def agent(self) -> str:
        return f"teacher:{self.engine.model}"

    @property
    def label_lines(self) -> str:
        return label_lines(self.labels)

    @property
    def label_names(self) -> list[str]:
        return [name for name, _ in self.labels]


def label_lines(labels: list[tuple[str, str]]) -> str:
    return "\n".join(f"- {name}: {description}" if description else f"- {name}" for name, description in labels)


class Step:
    """The contract of a pipeline step; subclasses fill in what differs."""

    name = ""
    stage = ""  # the stage its examples and LLM requests are recorded under (default: name)
    title = ""
    fields: frozenset[str] = frozenset()  # placeholders its template may use
    system_prompt = SYSTEM
    user_prompt = ""
    produced: tuple[str, ...] = ()  # keys of `store`'s result the Generate page shows

    @property
    def template_stage(self) -> str:
        return self.name

    def output(self, ctx: StepContext) -> type[BaseModel]:
        raise NotImplementedError

    def max_tokens(self, ctx: StepContext) -> int:
        raise NotImplementedError

    def items(self, ctx: StepContext, session: Session, state: dict[str, list[Item]]) -> list[Item]:
        raise NotImplementedError

    def gates(self, ctx: StepContext, item: Item, parsed: dict[str, Any]) -> list[str]:
        """Reasons to reject a schema-valid answer (asked again like a schema failure); [] = fine."""
        return []

    def open_reasons(self, ctx: StepContext, item: Item, answers: list["Answer"]) -> list[str]:
        """What is still missing after these answers to one item, oldest first ([] = done, ask no more).

        By default only the newest answer counts; a step whose answer holds several parts (the utterance
        step's slots) can keep the parts that passed in earlier answers and ask again only for the rest.
        """
        return self.gates(ctx, item, answers[-1].parsed)

    def prepare(self, ctx: StepContext, items: list[Item]) -> None:
        """Slow work on the answers (embeddings...) before `store`, outside the write transaction."""

    def store(self, ctx: StepContext, session: Session, items: list[Item]) -> dict[str, int]:
        return {}

    def planned_calls(self, plan: Any) -> tuple[int, float]:
        """(first-attempt calls, prompt characters) this step asks for a planned run (core.pipeline.plan.Plan)."""
        return 0, 0.0

    def request(self, ctx: StepContext, messages: tuple[dict[str, str], ...], *seed_parts: object) -> ChatRequest:
        from core.pipeline.plan import request_seed

        sampling = Sampling(ctx.sampling.temperature, ctx.sampling.top_p, self.max_tokens(ctx),
                            request_seed(ctx.seed, self.stage or self.name, *seed_parts), ctx.sampling.repetition_penalty)
        return ChatRequest(messages, sampling, ctx.schema_of(self)).with_key(ctx.engine.name,
                                                                                           ctx.engine.model)

    def render(self, ctx: StepContext, **values: object) -> tuple[dict[str, str], ...]:
        return ctx.templates[self.template_stage].render(**values)


def answers(session: Session, requests: list[ChatRequest]) -> dict[str, Answer]:
    """key -> the cached answer, for the requests answered ok."""
    found: dict[str, Answer] = {}
    keys = list({r.key for r in requests})
    for start in range(0, len(keys), 500):
        rows = session.execute(select(LLMRequest.key, LLMRequest.id, LLMRequest.parsed, LLMRequest.raw_text)
                               .where(LLMRequest.key.in_(keys[start:start + 500]), LLMRequest.status == "ok"))
        for key, request_id, parsed, raw_text in rows.tuples():
            found[key] = Answer(request_id, stored_answer(parsed, raw_text, "ok") or {}, raw_text or "")
    return found


def reask(request: ChatRequest, previous: str, reasons: list[str], engine) -> ChatRequest:
    """The same question again, with the rejected answer and why (greedy decoding needs a changed prompt)."""
    messages = (*request.messages, {"role": "assistant", "content": previous},
                {"role": "user", "content": "That answer was rejected: " + "; ".join(reasons)
                 + ". Answer the same question again, in the same JSON format, avoiding these problems."})
    return ChatRequest(messages, request.sampling, request.schema).with_key(engine.name, engine.model)


# --------------------------------------------------------------------------- content gates

WORD = re.compile(r"[A-Za-z']+")
MIN_SENTENCE_WORDS = 3


def words(text: str) -> list[str]:
    return WORD.findall(text or "")


def plain_words(text: str) -> str:
    """The words of `text`, casefolded, single-spaced (punctuation and case do not make a sentence new)."""
    return " ".join(words(text)).casefold()


@lru_cache(maxsize=64)
def _plain_labels(labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str, str], ...]:
    """(name, plain name, plain definition) per label: a stage checks thousands of answers against one list."""
    return tuple((name, plain_words(name), plain_words(description)) for name, description in labels)


def sentence_problem(text: str, labels: list[tuple[str, str]], what: str = "utterance",
                     min_words: int = MIN_SENTENCE_WORDS) -> str | None:
    """Why `text` is no sentence of a few words, or echoes a label name or definition from the prompt."""
    plain = plain_words(text)
    if len(plain.split()) < min_words:
        return f"{what} {text!r} is not a sentence of at least {min_words} words"
    for name, plain_name, definition in _plain_labels(tuple(map(tuple, labels))):
        if plain == plain_name:
            return f"{what} {text!r} is a label name"
        if definition and len(definition) >= 12 and (definition in plain or plain in definition):
            return f"{what} {text!r} copies the definition of {name}"
    return None


def names_a_character(name: str, characters: set[str]) -> bool:
    """An emotion name that is a character's name (or one word of it), e.g. 'Felix'."""
    plain = plain_words(name)
    return bool(plain) and any(plain == c or plain in c.split() for c in characters)


def character_names(session: Session, run_id: int, story_id: int | None = None) -> set[str]:
    from db.models import Character

    query = select(Character.name).where(Character.run_id == run_id)
    if story_id is not None:
        query = query.where(Character.story_id == story_id)
    return {plain_words(n) for n in session.scalars(query)}
