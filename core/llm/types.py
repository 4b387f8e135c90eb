"""What goes into an engine and what comes out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.7
    top_p: float = 0.95
    max_tokens: int = 256
    seed: int | None = None
    repetition_penalty: float = 1.0  # 1.0 = off; vLLM's own parameter (OpenAI servers get it as extra_body)

    def as_dict(self) -> dict[str, Any]:
        # The penalty joins the dict (and so the cache key) only when set: keys of older answers stay valid.
        extra = {"repetition_penalty": self.repetition_penalty} if self.repetition_penalty != 1.0 else {}
        return {"temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_tokens,
                "seed": self.seed, **extra}

    def with_seed(self, seed: int | None) -> "Sampling":
        return Sampling(self.temperature, self.top_p, self.max_tokens, seed, self.repetition_penalty)


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make. `schema` (a JSON schema) turns on constrained decoding."""

    messages: tuple[dict[str, str], ...]
    sampling: Sampling = field(default_factory=Sampling)
    schema: dict[str, Any] | None = None
    key: str | None = None  # set by `with_key`; identifies the request in the cache

    def with_key(self, engine: str, model: str) -> "ChatRequest":
        return ChatRequest(self.messages, self.sampling, self.schema, request_key(engine, model, self))


@dataclass(frozen=True)
class ChatResult:
    key: str | None
    text: str | None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None  # the engine could not answer (server down, context too long...)

    @property
    def ok(self) -> bool:
        return self.error is None


KEY_HEX_DIGITS = 32  # 128 bits of SHA-256: no collision in any cache this size, half the bytes per row


def request_digest(engine: str, model: str, request: ChatRequest) -> str:
    """SHA-256 (hex) of everything that decides the answer: the whole of a cache key before migration 0017."""
    material = {"engine": engine, "model": model, "messages": list(request.messages),
                "sampling": request.sampling.as_dict(), "schema": request.schema}
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def request_key(engine: str, model: str, request: ChatRequest) -> str:
    """Same key, same (cached) answer: the digest's first 128 bits, as 0017 cut the stored keys, so
    answers cached before it stay found."""
    return request_digest(engine, model, request)[:KEY_HEX_DIGITS]
