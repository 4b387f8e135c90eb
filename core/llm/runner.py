"""Run a job's chat requests through the response cache, in engine-sized batches.

Each request's key hashes (engine, model, messages, sampling, schema). A request whose key is
already answered (status ok) is skipped, so a job that is re-run, resumed after a crash or
extended never pays twice. Answers commit together with the job's progress, inside the job's lease,
as they arrive (at least every second): a killed worker loses only what it had not committed, which
the next claim asks again. The stored request is compact (core.llm.stored).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.jobs import JobContext
from core.llm.engines import Engine, Inbox, Progress, Submission
from core.llm.stored import compact_requests, full_messages, parsed_to_store, stored_answer
from core.llm.structured import parse_answer
from core.llm.types import ChatRequest, ChatResult
from db.models import LLMRequest, utcnow
from db.session import dialect_insert, insert_rows, read_session


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


def judge(request: ChatRequest, result: ChatResult, output_model: type[BaseModel] | None,
          previous: Outcome | None) -> Outcome:
    """The outcome of one answer: ok, invalid (schema or JSON; worth asking again) or error."""
    outcome = Outcome(request, "ok", result, attempts=(previous.attempts if previous else 0) + 1,
                      completion_tokens=(previous.completion_tokens if previous else 0) + result.completion_tokens)
    if result.error:
        outcome.status, outcome.reason = "error", result.error
    elif request.schema or output_model:
        outcome.parsed, outcome.reason = parse_answer(result.text, output_model)
        if outcome.reason:
            outcome.status = "invalid"
            if result.finish_reason == "length":
                outcome.reason += " (the answer hit max_tokens)"
    return outcome


def again(request: ChatRequest, attempt: int) -> ChatRequest:
    """The request asked once more after an invalid answer: a new seed, the same cache key."""
    return ChatRequest(request.messages, request.sampling.with_seed((request.sampling.seed or 0) + attempt),
                       request.schema, request.key)


def ask(engine: Engine, requests: Sequence[ChatRequest], output_model: type[BaseModel] | None,
        validation_attempts: int, progress: Progress | None = None) -> list[Outcome]:
    """Ask the engine; answers that fail validation are asked again (new seed), up to the limit."""
    outcomes: dict[str, Outcome] = {}
    todo = list(requests)
    for attempt in range(validation_attempts):
        if not todo:
            break
        variants = [r if attempt == 0 else again(r, attempt) for r in todo]
        results = engine.generate(variants, progress=progress) if progress and _reports_progress(engine) \
            else engine.generate(variants)
        retry: list[ChatRequest] = []
        for request, result in zip(todo, results):
            outcomes[request.key] = judge(request, result, output_model, outcomes.get(request.key))
            if outcomes[request.key].status == "invalid":
                retry.append(request)
        todo = retry
        progress = None  # retries are not new answers
    return [outcomes[r.key] for r in requests]


def _reports_progress(engine: Engine) -> bool:
    return "progress" in inspect.signature(engine.generate).parameters


def stream(engine: Engine, requests: Sequence[ChatRequest], output_model: type[BaseModel] | None,
           validation_attempts: int, *, window: int, tick_seconds: float) -> Iterator[Outcome | None]:
    """Final outcomes in the order they arrive, from an engine with `submit` (many endpoints kept fed).

    At most `window` requests wait in the engine; when half of them are answered, the next ones go
    in together. An invalid answer is asked again straight away. Yields None when nothing arrived
    for `tick_seconds`, so the caller can commit and check for cancel.
    """
    inbox = Inbox()
    waiting: dict[int, tuple[ChatRequest, Outcome | None]] = {}
    submissions: list[Submission] = []
    source = iter(requests)
    tags = itertools.count()

    def send(batch: list[tuple[ChatRequest, Outcome | None]]) -> None:
        if not batch:
            return
        numbered = [(next(tags), pair) for pair in batch]
        waiting.update(numbered)
        variants = [request if previous is None else again(request, previous.attempts) for request, previous in batch]
        submissions.append(engine.submit(variants, inbox, [tag for tag, _ in numbered]))
        del submissions[:-64]  # old ones are answered; keep a few to cancel

    try:
        send([(request, None) for request in itertools.islice(source, window)])
        while waiting:
            arrived = inbox.take(timeout=tick_seconds)
            if not arrived:
                yield None
                continue
            retry: list[tuple[ChatRequest, Outcome | None]] = []
            for tag, result in arrived:
                request, previous = waiting.pop(tag)
                outcome = judge(request, result, output_model, previous)
                if outcome.status == "invalid" and outcome.attempts < validation_attempts:
                    retry.append((request, outcome))
                else:
                    yield outcome
            send(retry)
            if len(waiting) <= window // 2:
                send([(following, None) for following in itertools.islice(source, window - len(waiting))])
    finally:  # cancelled, lease lost or failed: what is still out is not wanted any more
        for submission in submissions:
            submission.cancel()


def store(session: Session, outcomes: Sequence[Outcome], engine: Engine, *, stage: str, job_id: int | None,
          run_id: int | None) -> None:
    """Upsert the answers into the cache; an answer already marked ok is never overwritten."""
    if not outcomes:
        return
    compact = compact_requests(session, [o.request for o in outcomes])
    now = utcnow()
    rows = [{  # every value spelled out: insert_rows writes None as NULL, not as the column's default
        "key": o.request.key, "engine": engine.name, "model": engine.model, "stage": stage or "", "job_id": job_id,
        "run_id": run_id, "status": o.status, "raw_text": o.result.text,
        "parsed": parsed_to_store(o.parsed, o.result.text), "error": o.reason,
        "attempts": o.attempts, "prompt_tokens": o.result.prompt_tokens or 0,
        "completion_tokens": o.completion_tokens or 0,
        "finish_reason": o.result.finish_reason, "completed_at": now, "created_at": now, "request": request,
    } for o, request in zip(outcomes, compact)]
    statement = dialect_insert(session, LLMRequest)
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
    insert_rows(session, statement, rows)  # executemany: one compiled statement, rows sent in batches


class _Committer:
    """Collects outcomes and commits them with the job's progress: when `batch_size` are waiting, or
    `flush_seconds` after the last commit, so the Jobs and Generate pages see the count move while a
    stage runs. A killed worker loses only what it had not committed; answers and progress commit together.
    """

    def __init__(self, ctx: JobContext, engine: Engine, report: RunReport, *, stage: str, run_id: int | None,
                 batch_size: int, note_prefix: str, flush_seconds: float):
        self.ctx, self.engine, self.report = ctx, engine, report
        self.stage, self.run_id, self.batch_size = stage, run_id, max(1, batch_size)
        self.note_prefix, self.flush_seconds = note_prefix, flush_seconds
        self.waiting: list[Outcome] = []
        self.started = self.last_write = time.monotonic()

    def add(self, outcome: Outcome | None) -> None:
        """Take an outcome (None: nothing arrived lately) and commit if it is time."""
        if outcome is not None:
            self.take(outcome)
        if len(self.waiting) >= self.batch_size or time.monotonic() - self.last_write >= self.flush_seconds:
            self.commit()

    def take(self, outcome: Outcome) -> None:
        self.waiting.append(outcome)
        self.report.output_tokens += outcome.completion_tokens
        self._count(outcome)

    def commit(self) -> None:
        """Store what is waiting (with the progress), then stop here if a user asked to cancel."""
        self.report.seconds = time.monotonic() - self.started
        if self.waiting:
            with self.ctx.batch() as session:
                store(session, self.waiting, self.engine, stage=self.stage, job_id=self.ctx.job_id,
                      run_id=self.run_id)
                self.ctx.advance(session, len(self.waiting), note=self.note())
            self.waiting = []
        self.last_write = time.monotonic()
        self.ctx.check_cancel()

    def in_flight(self, answered: int) -> None:
        """A batch the engine answers all at once (vLLM): show its answers as they come, uncommitted."""
        if time.monotonic() - self.last_write >= self.flush_seconds:
            self.ctx.show_progress(self.ctx.done + len(self.waiting) + answered,
                                   note=f"{self.note_prefix}{self.ctx.done + answered} of {self.report.total} "
                                        "requests · answering a batch")
            self.last_write = time.monotonic()

    def note(self) -> str:
        report = self.report
        return (f"{self.note_prefix}{report.cached + report.answered + report.invalid + report.failed} of "
                f"{report.total} requests · {report.tokens_per_second:.0f} output tokens/s · "
                f"{report.invalid} invalid · {report.failed} failed")

    def _count(self, outcome: Outcome) -> None:
        report = self.report
        if outcome.status == "ok":
            report.answered += 1
        elif outcome.status == "invalid":
            report.invalid += 1
            report.failure_reasons[f"invalid: {outcome.reason}"] += 1
        else:
            report.failed += 1
            report.failure_reasons[outcome.reason or "error"] += 1


def run_requests(ctx: JobContext, engine: Engine, requests: Iterable[ChatRequest], *,
                 output_model: type[BaseModel] | None = None, stage: str = "", run_id: int | None = None,
                 batch_size: int = 256, validation_attempts: int = 3, note_prefix: str = "",
                 flush_seconds: float = 1.0) -> RunReport:
    """Answer every request not yet in the cache; answers and progress commit together, at least
    every `flush_seconds` and at most `batch_size` at a time.

    An engine with `submit` (OpenAI-compatible, any number of endpoints) gets a steady stream of
    requests, enough to keep every endpoint busy; another (vLLM in-process) gets `batch_size` at a time.
    `note_prefix` ("Stage 2/6 utterances: ") leads the progress notes of multi-step jobs.
    """
    keyed = keyed_unique(engine, requests)
    done = answered_keys([r.key for r in keyed])
    pending = [r for r in keyed if r.key not in done]
    report = RunReport(total=len(keyed), cached=len(done))
    ctx.set_progress(done=len(done), total=len(keyed),
                     note=f"{note_prefix}{len(done)} of {len(keyed)} already answered")
    committer = _Committer(ctx, engine, report, stage=stage, run_id=run_id, batch_size=batch_size,
                           note_prefix=note_prefix, flush_seconds=flush_seconds)
    ctx.check_cancel()
    if hasattr(engine, "submit"):
        window = max(2 * batch_size, 4 * getattr(engine, "capacity", 16))
        answers = stream(engine, pending, output_model, validation_attempts, window=window,
                         tick_seconds=flush_seconds)
        with contextlib.closing(answers):
            while True:
                waited = time.monotonic()
                outcome = next(answers, StopIteration)
                report.engine_seconds += time.monotonic() - waited
                if outcome is StopIteration:
                    break
                committer.add(outcome)
    else:
        for start in range(0, len(pending), max(1, batch_size)):
            asked = time.monotonic()
            outcomes = ask(engine, pending[start:start + batch_size], output_model, validation_attempts,
                           progress=committer.in_flight)
            report.engine_seconds += time.monotonic() - asked
            for outcome in outcomes:
                committer.take(outcome)
            committer.commit()  # the batch's answers in one transaction
    committer.commit()
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
                answers[row.key] = CachedAnswer(row.key, row.status, row.raw_text,
                                                stored_answer(row.parsed, row.raw_text, row.status), row.error,
                                                row.attempts)
    return answers


PROMPT_CHARS = 4000


@dataclass(frozen=True)
class UnansweredRequest:
    key: str
    status: str
    error: str | None
    attempts: int
    prompt: str  # the last message (up to PROMPT_CHARS: with a long shared preamble, the varying part is late)
    raw_text: str | None


def unanswered_requests(actor, job_id: int, limit: int = 100) -> list[UnansweredRequest]:
    """The requests of a job that failed or did not validate, with their reasons (for the Jobs page)."""
    from core.auth import require_admin

    require_admin(actor)
    with read_session() as session:
        rows = list(session.scalars(select(LLMRequest).where(LLMRequest.job_id == job_id, LLMRequest.status != "ok")
                                    .order_by(LLMRequest.id).limit(limit)))
        messages = full_messages(session, [r.request for r in rows])
        return [UnansweredRequest(r.key, r.status, r.error, r.attempts,
                                  _last_message(m)[:PROMPT_CHARS], r.raw_text) for r, m in zip(rows, messages)]


def _last_message(messages: list[dict[str, str]]) -> str:
    return str((messages or [{}])[-1].get("content", ""))
