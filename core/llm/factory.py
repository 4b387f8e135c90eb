"""The one place an engine is built from the settings: every caller (LLM jobs, the engine check, the
pipeline, the describe job, the teacher baseline) asks `current_engine()`.

An engine is built once per process and kept (loading vLLM takes seconds to minutes; an OpenAI
engine keeps its connections), and replaced when the settings change: one model in memory at a time.
`use_engine` lends a ready engine to every caller in this process (benchmarks with a warm engine).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from core.llm import settings as engine_settings
from core.llm.engines import Engine, OpenAIEngine, VLLMEngine
from core.llm.settings import EngineSettings

_engines: dict[tuple, Engine] = {}
_engines_lock = threading.Lock()
_lent: list[Engine] = []


def build_engine(settings: EngineSettings, api_key: str | None = None) -> Engine:
    """A new engine for these settings (each engine takes the settings it understands)."""
    if settings.engine == "vllm":
        return VLLMEngine(settings.resolved_model, tensor_parallel_size=settings.tensor_parallel_size,
                          max_model_len=settings.max_model_len)
    if settings.engine == "openai":
        return OpenAIEngine(settings.endpoints, settings.resolved_model, api_key=api_key,
                            max_concurrency=settings.max_concurrency, timeout=settings.timeout_seconds,
                            max_retries=settings.max_retries)
    raise ValueError(f"Unknown engine {settings.engine!r}.")


def engine_for(settings: EngineSettings, api_key: str | None = None) -> Engine:
    """The engine for these settings, built once per process."""
    identity = (settings.engine, settings.resolved_model, tuple(settings.endpoints), hash(api_key),
                settings.tensor_parallel_size, settings.max_model_len, settings.max_concurrency,
                settings.timeout_seconds, settings.max_retries)
    with _engines_lock:
        if identity not in _engines:
            for old in list(_engines.values()):  # one model in memory at a time
                old.close()
            _engines.clear()
            _engines[identity] = build_engine(settings, api_key)
        return _engines[identity]


def current_engine() -> Engine:
    """The engine the saved settings name (or the one lent by `use_engine`)."""
    if _lent:
        return _lent[-1]
    return engine_for(engine_settings.load(), engine_settings.api_key())


@contextmanager
def use_engine(engine: Engine) -> Iterator[Engine]:
    """Every `current_engine()` in this process returns `engine` inside the block."""
    _lent.append(engine)
    try:
        yield engine
    finally:
        _lent.remove(engine)
