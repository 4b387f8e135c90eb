"""Output models of teacher tasks, by name (job payloads name their task; pages list them).

Every string and number is bounded (see core.llm.structured). The Emo Pillars stages add theirs here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from core.llm.structured import bounded_schema


class EmotionGuess(BaseModel):
    """The emotion a short text expresses, with a confidence: the engine check's task."""

    model_config = ConfigDict(extra="forbid")
    emotion: str = Field(pattern=r"^[A-Za-z][A-Za-z \-]{0,31}$")  # 1 to 32 characters, bounded by the pattern
    confidence: float = Field(ge=0, le=1)


TASKS: dict[str, type[BaseModel]] = {"emotion_guess": EmotionGuess}


def task_model(name: str | None) -> type[BaseModel] | None:
    if not name:
        return None
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})")
    return TASKS[name]


def task_schema(name: str | None) -> dict | None:
    model = task_model(name)
    return bounded_schema(model) if model else None


def emotion_guess_messages(text: str) -> tuple[dict[str, str], ...]:
    return (
        {"role": "system", "content": "You label the emotion of a text. Answer with JSON only."},
        {"role": "user", "content": f'Text: "{text}"\nWhich single emotion does the writer feel, and how sure are '
                                    'you (0 to 1)? Answer as {"emotion": ..., "confidence": ...}.'},
    )
