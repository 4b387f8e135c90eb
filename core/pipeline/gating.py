"""Asking a step's requests through the cache, with its content gates beside the schema.

A schema-valid answer that fails a step's gates (an "utterance" of one word, a copied label definition,
a character's name where an emotion belongs) is asked again like a schema failure: the same question
with the newest rejected answer and the reasons (a changed prompt, so greedy decoding can answer otherwise).
After the last attempt (or when a re-ask gets no answer) the answer is kept with its reasons. Every re-ask is an ordinary cached request,
so a resumed or repeated run replays the same chain from the cache.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from core.llm.runner import RunReport, run_requests
from core.pipeline.steps.base import Gated, Item, Step, StepContext, answers, reask
from db.models import LLMRequest
from db.session import read_session


@dataclass
class GateOutcome:
    report: RunReport
    rejected: int = 0  # answers rejected by the gates (each one asked again, or kept after the last try)
    kept_with_reason: int = 0
    reasons: Counter = field(default_factory=Counter)
    spent: dict[str, int] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        return {"rejected": self.rejected, "kept_with_reason": self.kept_with_reason,
                "rejection_reasons": dict(self.reasons.most_common(5)), "spent": self.spent}


def ask_gated(jctx, sctx: StepContext, step: Step, items: list[Item], options: dict[str, int],
              prefix: str) -> GateOutcome:
    """Answer every item (setting `item.kept`); gates re-ask up to `validation_attempts` times in all."""
    attempts = max(1, int(options.get("validation_attempts", 3)))
    output = step.output(sctx)
    outcome = GateOutcome(RunReport())
    current = {index: item.request for index, item in enumerate(items)}
    history: dict[int, list] = {index: [] for index in current}  # each item's answers so far, oldest first
    asked = []
    for attempt in range(attempts):
        if not current:
            break
        asked += current.values()
        report = run_requests(jctx, sctx.engine, list(current.values()), output_model=output, stage=step.stage,
                              run_id=sctx.run_id, note_prefix=prefix if not attempt else f"{prefix}re-ask {attempt}: ",
                              **options)
        _add(outcome.report, report, first=not attempt)
        with read_session() as session:
            found = answers(session, list(current.values()))
        following = {}
        for index, request in current.items():
            answer = found.get(request.key)
            if answer is None:
                if history[index]:  # a re-ask got no answer (it failed, or outgrew the model's context)
                    _keep_earlier(sctx, step, items[index], history[index], outcome)
                continue
            reasons = step.open_reasons(sctx, items[index], [*history[index], answer])
            if reasons:
                outcome.rejected += 1
                outcome.reasons.update(_reason_kind(r) for r in reasons)
            if not reasons or attempt == attempts - 1:
                items[index].kept = Gated(answer, reasons, attempt + 1, tuple(history[index]))
                outcome.kept_with_reason += bool(reasons)
            else:
                history[index].append(answer)
                # From the first question, with only the newest answer: a chain of re-asks that appended
                # every rejected answer outgrew the model's context (2,048 tokens for the bundled teacher).
                following[index] = reask(items[index].request, answer.raw_text, reasons, sctx.engine)
        current = following
    outcome.spent = spent(asked, len(items))
    return outcome


def _keep_earlier(sctx: StepContext, step: Step, item: Item, earlier: list, outcome: GateOutcome) -> None:
    """Keep what the answers so far gave, with their open reasons, rather than losing the item."""
    attempts = len(earlier) + 1  # the re-ask that got nothing was asked too
    item.kept = Gated(earlier[-1], step.open_reasons(sctx, item, earlier), attempts, tuple(earlier[:-1]))
    outcome.kept_with_reason += 1


def _reason_kind(reason: str) -> str:
    """'utterance 'fur' is not a sentence...' -> 'utterance is not a sentence...' (counted by kind)."""
    import re

    return re.sub(r" '[^']*'| \"[^\"]*\"", "", reason)


def _add(total: RunReport, part: RunReport, first: bool) -> None:
    if first:
        total.total, total.cached = part.total, part.cached
    total.answered += part.answered
    total.invalid += part.invalid
    total.failed += part.failed
    total.output_tokens += part.output_tokens
    total.seconds += part.seconds
    total.engine_seconds += part.engine_seconds
    total.failure_reasons.update(part.failure_reasons)


def spent(requests: list, items: int) -> dict[str, int]:
    """Engine calls and tokens behind these requests (validation retries and re-asks included; answers
    taken from the cache count as the run's too: the figure is what the run's data cost to make)."""
    keys = list({r.key for r in requests})
    chars = {r.key: sum(len(m["content"]) for m in r.messages) for r in requests}
    calls = prompt = completion = prompt_chars = 0
    with read_session() as session:
        for start in range(0, len(keys), 500):
            for key, tries, p, c in session.execute(select(LLMRequest.key, LLMRequest.attempts, LLMRequest.prompt_tokens,
                                                           LLMRequest.completion_tokens)
                                                    .where(LLMRequest.key.in_(keys[start:start + 500]))).tuples():
                tries = max(1, tries or 1)
                calls += tries
                prompt += (p or 0) * tries
                completion += c or 0
                prompt_chars += chars[key] * tries
    return {"requests": items, "calls": calls, "prompt_tokens": prompt, "completion_tokens": completion,
            "prompt_chars": prompt_chars}
