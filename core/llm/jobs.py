"""Worker jobs of the LLM layer: a batch of chat requests, and the engine check."""

from __future__ import annotations

import time
from typing import Any

from core import jobs
from core.auth import Actor, require_admin
from core.llm import settings as engine_settings
from core.llm.factory import current_engine
from core.llm.runner import run_requests
from core.llm.tasks import emotion_guess_messages, task_model, task_schema
from core.llm.types import ChatRequest, Sampling

CHECK_TEXT = "I finally got the job I wanted for years!"


def _current_engine():
    return engine_settings.load(), current_engine()


def requests_from_payload(items: list[dict[str, Any]], default: Sampling, schema: dict | None) -> list[ChatRequest]:
    requests = []
    for item in items:
        sampling = Sampling(**{**default.as_dict(), **item.get("sampling", {})})
        requests.append(ChatRequest(tuple(item["messages"]), sampling, schema))
    return requests


def enqueue_generation(actor: Actor | None, items: list[dict[str, Any]], *, task: str | None = None,
                       stage: str = "", title: str = "", batch_size: int | None = None) -> int:
    """Queue chat requests ({messages, sampling?}) for the worker; answers land in the cache.

    `batch_size` (requests per committed batch) defaults to the engine settings' value.
    """
    require_admin(actor)
    task_model(task)  # unknown task: refuse now, not in the worker
    if not items:
        raise ValueError("No requests to send.")
    payload = {"requests": items, "task": task, "stage": stage, "batch_size": batch_size}
    return jobs.enqueue(actor, "llm_generate", payload, title=title or f"LLM: {len(items)} requests")


@jobs.handler("llm_generate")
def run_generation(ctx: jobs.JobContext) -> dict[str, Any]:
    settings, engine = _current_engine()
    task = ctx.payload.get("task")
    requests = requests_from_payload(ctx.payload["requests"], settings.default_sampling(), task_schema(task))
    report = run_requests(ctx, engine, requests, output_model=task_model(task), stage=ctx.payload.get("stage", ""),
                          batch_size=int(ctx.payload.get("batch_size") or settings.batch_size),
                          validation_attempts=settings.validation_attempts)
    result = {"engine": engine.name, "model": engine.model, **report.as_dict()}
    if report.failed:
        reason, count = report.failure_reasons.most_common(1)[0]
        raise jobs.JobFailed(f"{report.failed} of {report.total} requests failed (e.g. {count}x: {reason}). "
                             "The answers that arrived are saved; Retry sends only the others.")
    return result


def enqueue_engine_check(actor: Actor | None) -> int:
    """Queue one real request through the configured engine, run by a worker like any LLM job."""
    require_admin(actor)
    return jobs.enqueue(actor, "engine_check", {}, title="Test the LLM engine", max_attempts=1)


@jobs.handler("engine_check")
def run_engine_check(ctx: jobs.JobContext) -> dict[str, Any]:
    """Deliberately bypasses the cache: a cached answer would prove nothing about the connection."""
    started = time.monotonic()
    try:
        settings, engine = _current_engine()
    except Exception as error:
        raise jobs.JobFailed(f"the engine could not start: {type(error).__name__}: {error}") from None
    request = ChatRequest(emotion_guess_messages(CHECK_TEXT), Sampling(temperature=0.0, max_tokens=64),
                          task_schema("emotion_guess"))
    result = engine.generate([request])[0]
    if result.error:
        raise jobs.JobFailed(result.error)
    return {"engine": engine.name, "model": engine.model, "answer": result.text,
            "completion_tokens": result.completion_tokens, "seconds": round(time.monotonic() - started, 2)}
