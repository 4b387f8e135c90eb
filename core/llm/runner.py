"""Run a job's chat requests through the response cache, in engine-sized batches.

Each request's key hashes (engine, model, messages, sampling, schema). A request whose key is
already answered (status ok) is skipped, so a job that is re-run, resumed after a crash or
extended never pays twice. Each batch's answers commit together with the job's progress, inside
the job's lease: a killed worker loses only its uncommitted batch, which the next claim asks again.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.jobs import JobContext
from core.llm.engines import Engine
from core.llm.structured import parse_answer
from core.llm.types import ChatRequest, ChatResult
from db.models import LLMRequest, utcnow
from db.session import read_session


@dataclass
class Outcome:
    request: ChatRequest
    status: str  # ok | invalid | error
    result: ChatResult
    parsed: Any = None
    reason: str | None = None
    attempts: int = 0
    completion_tokens: int = 0


@dataclass
class RunReport:
    total: int = 0
    cached: int = 0
    answered: int = 0
    invalid: int = 0
    failed: int = 0
    output_tokens: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0  # of `seconds`, the time spent inside the engine
    failure_reasons: Counter = field(default_factory=Counter)

    @property
    def tokens_per_second(self) -> float:
        return self.output_tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "cached": self.cached, "answered": self.answered, "invalid": self.invalid,
                "failed": self.failed, "output_tokens": self.output_tokens, "seconds": round(self.seconds, 2),
                "engine_seconds": round(self.engine_seconds, 2),
                "output_tokens_per_second": round(self.tokens_per_second, 1),
                "failure_reasons": dict(self.failure_reasons.most_common(5))}


def keyed_unique(engine: Engine, requests: Iterable[ChatRequest]) -> list[ChatRequest]:
    """Requests with their cache keys, each distinct request once (same key = same answer)."""
    seen: dict[str, ChatRequest] = {}
    for request in requests:
        keyed = request.with_key(engine.name, engine.model)
        seen.setdefault(keyed.key, keyed)
    return list(seen.values())


def answered_keys(keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    with read_session() as session:
        for start in range(0, len(keys), 500):
            chunk = list(keys[start:start + 500])
            found.update(session.scalars(select(LLMRequest.key).where(LLMRequest.key.in_(chunk),
                                                                      LLMRequest.status == "ok")))
    return found


def ask(engine: Engine, requests: Sequence[ChatRequest], output_model: type[BaseModel] | None,
        validation_attempts: int) -> list[Outcome]:
    """Ask the engine; answers that fail validation are asked again (new seed), up to the limit."""
    outcomes: dict[str, Outcome] = {}
    todo = list(requests)
    for attempt in range(validation_attempts):
        if not todo:
            break
        variants = [r if attempt == 0 else ChatRequest(r.messages, r.sampling.with_seed((r.sampling.seed or 0) + attempt),
                                                       r.schema, r.key) for r in todo]
        retry: list[ChatRequest] = []
        for request, result in zip(todo, engine.generate(variants)):
            previous = outcomes.get(request.key)
            outcome = Outcome(request, "ok", result, attempts=(previous.attempts if previous else 0) + 1,
                              completion_tokens=(previous.completion_tokens if previous else 0)
                              + result.completion_tokens)
            if result.error:
                outcome.status, outcome.reason = "error", result.error
            elif request.schema or output_model:
                outcome.parsed, outcome.reason = parse_answer(result.text, output_model)
                if outcome.reason:
                    outcome.status = "invalid"
                    if result.finish_reason == "length":
                        outcome.reason += " (the answer hit max_tokens)"
                    retry.append(request)
            outcomes[request.key] = outcome
        todo = retry
    return [outcomes[r.key] for r in requests]


def store(session: Session, outcomes: Sequence[Outcome], engine: Engine, *, stage: str, job_id: int | None,
          run_id: int | None) -> None:
    """Upsert the answers into the cache; an answer already marked ok is never overwritten."""
    if not outcomes:
        return
    rows = [{
        "key": o.request.key, "engine": engine.name, "model": engine.model, "stage": stage, "job_id": job_id,
        "run_id": run_id, "status": o.status, "raw_text": o.result.text, "parsed": o.parsed, "error": o.reason,
        "attempts": o.attempts, "prompt_tokens": o.result.prompt_tokens, "completion_tokens": o.completion_tokens,
        "finish_reason": o.result.finish_reason, "completed_at": utcnow(),
        "request": {"messages": list(o.request.messages), "sampling": o.request.sampling.as_dict(),
                    "schema": o.request.schema},
    } for o in outcomes]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(LLMRequest).values(rows)
    excluded = statement.excluded
    statement = statement.on_conflict_do_update(
        index_elements=[LLMRequest.key],
        set_={"status": excluded.status, "raw_text": excluded.raw_text, "parsed": excluded.parsed,
              "error": excluded.error, "attempts": LLMRequest.attempts + excluded.attempts,
              "prompt_tokens": excluded.prompt_tokens, "completion_tokens": excluded.completion_tokens,
              "finish_reason": excluded.finish_reason, "completed_at": excluded.completed_at,
              "job_id": excluded.job_id},
        where=LLMRequest.status != "ok",
    )
    session.execute(statement)


def run_requests(ctx: JobContext, engine: Engine, requests: Iterable[ChatRequest], *,
                 output_model: type[BaseModel] | None = None, stage: str = "", run_id: int | None = None,
                 batch_size: int = 256, validation_attempts: int = 3, note_prefix: str = "") -> RunReport:
    """Answer every request not yet in the cache; progress and answers commit per batch.

    `note_prefix` ("Stage 2/6 utterances: ") leads the progress notes of multi-step jobs.
    """
    keyed = keyed_unique(engine, requests)
    done = answered_keys([r.key for r in keyed])
    pending = [r for r in keyed if r.key not in done]
    report = RunReport(total=len(keyed), cached=len(done))
    ctx.set_progress(done=len(done), total=len(keyed),
                     note=f"{note_prefix}{len(done)} of {len(keyed)} already answered")
    started = time.monotonic()
    for start in range(0, len(pending), max(1, batch_size)):
        ctx.check_cancel()
        asked = time.monotonic()
        outcomes = ask(engine, pending[start:start + batch_size], output_model, validation_attempts)
        report.engine_seconds += time.monotonic() - asked
        report.output_tokens += sum(o.completion_tokens for o in outcomes)
        report.seconds = time.monotonic() - started
        for outcome in outcomes:
            if outcome.status == "ok":
                report.answered += 1
            elif outcome.status == "invalid":
                report.invalid += 1
                report.failure_reasons[f"invalid: {outcome.reason}"] += 1
            else:
                report.failed += 1
                report.failure_reasons[outcome.reason or "error"] += 1
        with ctx.batch() as session:
            store(session, outcomes, engine, stage=stage, job_id=ctx.job_id, run_id=run_id)
            ctx.advance(session, len(outcomes),
                        note=f"{note_prefix}{report.cached + report.answered + report.invalid + report.failed} of {report.total} "
                             f"requests · {report.tokens_per_second:.0f} output tokens/s · "
                             f"{report.invalid} invalid · {report.failed} failed")
    return report


@dataclass(frozen=True)
class CachedAnswer:
    key: str
    status: str
    text: str | None
    parsed: Any
    error: str | None
    attempts: int


def cached_answers(keys: Sequence[str]) -> dict[str, CachedAnswer]:
    answers: dict[str, CachedAnswer] = {}
    with read_session() as session:
        for start in range(0, len(keys), 500):
            for row in session.scalars(select(LLMRequest).where(LLMRequest.key.in_(list(keys[start:start + 500])))):
                answers[row.key] = CachedAnswer(row.key, row.status, row.raw_text, row.parsed, row.error, row.attempts)
    return answers


@dataclass(frozen=True)
class UnansweredRequest:
    key: str
    status: str
    error: str | None
    attempts: int
    prompt: str  # the last message, shortened
    raw_text: str | None


def unanswered_requests(actor, job_id: int, limit: int = 100) -> list[UnansweredRequest]:
    """The requests of a job that failed or did not validate, with their reasons (for the Jobs page)."""
    from core.auth import require_admin

    require_admin(actor)
    with read_session() as session:
        rows = session.scalars(select(LLMRequest).where(LLMRequest.job_id == job_id, LLMRequest.status != "ok")
                               .order_by(LLMRequest.id).limit(limit))
        return [UnansweredRequest(r.key, r.status, r.error, r.attempts,
                                  _last_message(r.request)[:200], r.raw_text) for r in rows]


def _last_message(request: dict[str, Any]) -> str:
    messages = (request or {}).get("messages") or [{}]
    return str(messages[-1].get("content", ""))
