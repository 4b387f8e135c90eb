"""What the teacher must answer at each stage: bounded pydantic models (constrained decoding).

Every string, number and list is bounded (core.llm.structured refuses unbounded schemas): a small
model in constrained decoding would otherwise happily write until max_tokens.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z][A-Za-z \-']*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CharacterOut(Strict):
    name: str = Field(min_length=1, max_length=60)
    description: str = Field(min_length=3, max_length=240)


class Characters(Strict):
    characters: list[CharacterOut] = Field(min_length=1, max_length=8)


class Utterance(Strict):
    utterance: str = Field(min_length=3, max_length=300)


class ScoredEmotion(Strict):
    name: str = Field(min_length=2, max_length=32, pattern=NAME_PATTERN)
    score: float = Field(ge=0, le=1)


class EmotionLabels(Strict):
    emotions: list[ScoredEmotion] = Field(min_length=0, max_length=5)
    expressiveness: float = Field(ge=0, le=1)


class Context(Strict):
    context: str = Field(min_length=10, max_length=700)


class Description(Strict):
    description: str = Field(min_length=3, max_length=200)
    emotions: list[ScoredEmotion] = Field(min_length=0, max_length=5)


OUTPUTS: dict[str, type[BaseModel]] = {
    "characters": Characters,
    "utterances": Utterance,
    "labels": EmotionLabels,
    "context": Context,
    "clean": Context,
    "rewrite": Utterance,
    "describe": Description,
}

# Output budget per stage: enough for the schema's bounds, so answers are not cut short.
MAX_TOKENS = {"characters": 400, "utterances": 100, "labels": 160, "context": 220, "clean": 220,
              "rewrite": 100, "describe": 160}
