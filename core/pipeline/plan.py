"""What a run will ask: its settings, the emotion quotas, and the cost before launch."""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, select

from core.pipeline.schemas import MAX_TOKENS
from core.pipeline.templates import STAGES, TemplateView
from db.models import Passage, Story
from db.session import read_session

SYNTHESIS_STAGES = STAGES[:6]  # characters .. rewrite ('describe' is the annotation task)
NEUTRAL = "neutral"
NEUTRAL_DESCRIPTION = "no particular emotion: calm, matter-of-fact, everyday"
CHARS_PER_TOKEN = 4  # English prose, for estimates only


class PlanError(ValueError):
    """Settings a run cannot start with; the message says which."""


@dataclass
class RunConfig:
    corpus_id: int
    taxonomy_id: int
    story_ids: list[int] = field(default_factory=list)
    max_characters: int = 3  # per story
    emotional: int = 8  # emotional utterances per character
    neutral: int = 2  # neutral utterances per character
    seed: int = 0
    max_emotions: int = 3  # emotions the teacher may name per utterance
    dedup_similarity: float = 0.9  # cosine similarity above which a character's utterance is a repeat
    weights: dict[str, float] = field(default_factory=dict)  # per-emotion quota weights (default 1)
    stride: int = 0  # emotions a character advances the quota cycle by; fixed at creation (= emotional)

    def check(self) -> None:
        if not self.story_ids:
            raise PlanError("Choose at least one story.")
        if not 1 <= self.max_characters <= 8:
            raise PlanError("Characters per story: 1 to 8.")
        if not 0 <= self.emotional <= 50 or not 0 <= self.neutral <= 20 or self.emotional + self.neutral == 0:
            raise PlanError("Utterances per character: 0-50 emotional and 0-20 neutral, at least one in all.")
        if not 1 <= self.max_emotions <= 5:
            raise PlanError("Emotions per utterance: 1 to 5.")
        if not 0.5 <= self.dedup_similarity <= 1.0:
            raise PlanError("Near-duplicate similarity: between 0.5 and 1.0.")
        if any(w < 0 for w in self.weights.values()):
            raise PlanError("Quota weights cannot be negative.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def request_seed(run_seed: int, *parts: object) -> int:
    """A per-request seed from the run's seed and what the request is about (stable across runs)."""
    digest = hashlib.sha256("|".join(map(str, (run_seed, *parts))).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def emotion_cycle(label_names: list[str], weights: dict[str, float], seed: int) -> list[str]:
    """The order emotions are handed out in: each label as often as its weight, shuffled by seed.

    Characters take consecutive stretches of this cycle, so over a run every emotion gets its share
    (counts differ by at most one per pass when weights are equal).
    """
    cycle: list[str] = []
    for name in label_names:
        if name == NEUTRAL:
            continue
        cycle.extend([name] * max(0, round(weights.get(name, 1.0))))
    if not cycle:
        raise PlanError("The quota weights leave no emotion to generate.")
    random.Random(seed).shuffle(cycle)
    return cycle


def slot_emotions(cycle: list[str], character_ordinal: int, stride: int, emotional: int, neutral: int) -> list[tuple[str, str]]:
    """(slot key, target emotion) for one character: 'e0'.. from the cycle, then 'n0'.. neutral."""
    start = character_ordinal * max(1, stride)
    slots = [(f"e{j}", cycle[(start + j) % len(cycle)]) for j in range(emotional)]
    return slots + [(f"n{j}", NEUTRAL) for j in range(neutral)]


def sample_stories(corpus_id: int, size: int, seed: int) -> list[int]:
    with read_session() as session:
        ids = list(session.scalars(select(Story.id).where(Story.corpus_id == corpus_id).order_by(Story.position)))
    if not ids:
        raise PlanError("This corpus has no stories.")
    return sorted(random.Random(seed).sample(ids, min(size, len(ids))))


# --------------------------------------------------------------------------- cost


@dataclass(frozen=True)
class StageEstimate:
    stage: str
    calls: int
    prompt_tokens: int
    max_output_tokens: int


@dataclass(frozen=True)
class Estimate:
    stories: int
    passages: int
    characters: int
    utterances: int
    stages: tuple[StageEstimate, ...]

    @property
    def calls(self) -> int:
        return sum(s.calls for s in self.stages)

    @property
    def tokens(self) -> int:
        return sum(s.prompt_tokens + s.max_output_tokens for s in self.stages)


def estimate(config: RunConfig, templates: dict[str, TemplateView], label_lines: str) -> Estimate:
    """LLM calls and tokens (prompt + at most max_tokens out) if every character is found.

    Prompt tokens are counted from the real passages and templates at ~4 characters a token; the
    real count depends on the model's tokenizer, so the page shows this as an approximation.
    """
    with read_session() as session:
        rows = session.execute(select(Passage.story_id, func.count(), func.sum(func.length(Passage.text)))
                               .where(Passage.story_id.in_(config.story_ids)).group_by(Passage.story_id)).tuples().all()
    passages = sum(r[1] for r in rows)
    passage_chars = sum(int(r[2] or 0) for r in rows)
    avg_passage = passage_chars / passages if passages else 0
    characters = len(rows) * config.max_characters
    utterances = characters * (config.emotional + config.neutral)
    size = {stage: len(t.system_prompt) + len(t.user_prompt) for stage, t in templates.items()}
    short_text, context_text = 160, 500  # typical utterance and context lengths, in characters
    prompt_chars = {
        "characters": passages * size["characters"] + passage_chars,
        "utterances": utterances * (size["utterances"] + avg_passage + short_text),
        "labels": utterances * (size["labels"] + len(label_lines) + short_text),
        "context": utterances * (size["context"] + avg_passage + short_text),
        "clean": utterances * (size["clean"] + context_text),
        "rewrite": utterances * (size["rewrite"] + context_text + short_text),
    }
    calls = {"characters": passages, **{stage: utterances for stage in SYNTHESIS_STAGES[1:]}}
    stages = tuple(StageEstimate(stage, calls[stage], int(prompt_chars[stage] / CHARS_PER_TOKEN),
                                 calls[stage] * MAX_TOKENS[stage]) for stage in SYNTHESIS_STAGES)
    return Estimate(len(rows), passages, characters, utterances, stages)
