"""What the response cache keeps of a request: compact, each text once.

A pipeline's prompts repeat themselves: the same instructions, the same passage for each of a
story's characters, the same label definitions for every utterance. So a message is stored as the
ids of its parts in `llm_texts`, each part once, and the output schema likewise; the request row
keeps only those ids and the sampling. A part is a line, except that a long paragraph (a list of
label definitions) stays whole: a template's short lines that hold a variable then cost their own
line only, and a list costs one id. A part that only one request of the batch uses and that is not
stored yet (the line holding this utterance, say) stays inline in the request as a string when it
is short: a row of its own, with its hash and two index entries, would cost several times its text.
The cache key still hashes the full messages (core.llm.types.request_key), so what is stored never
changes what is asked.

An answer's parsed value is stored only where it differs from its raw JSON text (a validator that
normalised it); otherwise the raw text alone holds it, and `stored_answer` reads it back.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.llm.types import ChatRequest
from db.models import LLMText
from db.session import dialect_insert

LINE = "\n"
WHOLE_PARAGRAPH_LINES = 8  # a paragraph of more lines (a list) is one part
# A longer part used once is stored by id all the same: a passage, asked again for each of a story's
# characters in later batches (and on re-asks), or a context, asked again by the next steps.
INLINE_CHARS = 240


def parts(content: str) -> list[str]:
    """The content cut into parts that `LINE.join(parts)` puts back exactly."""
    cut: list[str] = []
    for number, paragraph in enumerate(content.split(LINE * 2)):
        if number:
            cut.append("")  # the blank line between paragraphs
        lines = paragraph.split(LINE)
        cut.extend([paragraph] if len(lines) > WHOLE_PARAGRAPH_LINES else lines)
    return cut


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_schema_texts: dict[int, tuple[dict[str, Any], str]] = {}


def _schema_text(schema: dict[str, Any]) -> str:
    """The schema as canonical JSON; remembered per schema object (a run shares one per stage)."""
    known = _schema_texts.get(id(schema))
    if known is None or known[0] is not schema:
        if len(_schema_texts) > 1000:
            _schema_texts.clear()
        known = _schema_texts[id(schema)] = (schema, json.dumps(schema, sort_keys=True, separators=(",", ":")))
    return known[1]


def _texts_of(request: ChatRequest) -> list[str]:
    texts = [part for message in request.messages for part in parts(str(message.get("content", "")))]
    if request.schema:
        texts.append(_schema_text(request.schema))
    return texts


def text_ids(session: Session, texts: Iterable[str], shared: Callable[[str], bool] = lambda text: True
             ) -> dict[str, int]:
    """hash -> id for these texts: the stored ones, and those `shared` says to store (inserted now).

    Two round trips, any number of texts."""
    by_hash = {text_hash(text): text for text in texts}
    ids: dict[str, int] = {}
    hashes = list(by_hash)
    for start in range(0, len(hashes), 1000):
        chunk = hashes[start:start + 1000]
        ids.update(session.execute(select(LLMText.hash, LLMText.id).where(LLMText.hash.in_(chunk))).tuples().all())
    missing = [{"hash": h, "text": by_hash[h]} for h in hashes if h not in ids and shared(by_hash[h])]
    if missing:
        # Another worker may store the same paragraph meanwhile: keep its row, read the ids after.
        session.execute(dialect_insert(session, LLMText).on_conflict_do_nothing(index_elements=[LLMText.hash]), missing)
        fresh = [row["hash"] for row in missing]
        for start in range(0, len(fresh), 1000):
            ids.update(session.execute(select(LLMText.hash, LLMText.id)
                                       .where(LLMText.hash.in_(fresh[start:start + 1000]))).tuples().all())
    return ids


def compact_requests(session: Session, requests: Sequence[ChatRequest]) -> list[list[Any]]:
    """Each request as [messages, sampling, schema id]: messages [[role, [text id or inline text...]]...],
    the sampling in SAMPLING_FIELDS order. A list, not a dict: three key names in every row of a
    700,000-call run are 23 MB."""
    texts = [_texts_of(request) for request in requests]
    uses = Counter(text for of_request in texts for text in set(of_request))
    schemas = {_schema_text(request.schema) for request in requests if request.schema}  # always by id
    ids = text_ids(session, uses, shared=lambda text: uses[text] > 1 or len(text) > INLINE_CHARS or text in schemas)
    compact = []
    for request in requests:
        messages = [[message.get("role", "user"),
                     [ids.get(text_hash(part), part) for part in parts(str(message.get("content", "")))]]
                    for message in request.messages]
        compact.append([messages, compact_sampling(request.sampling),
                        ids[text_hash(_schema_text(request.schema))] if request.schema else None])
    return compact


def _messages_and_sampling(stored: Any) -> tuple[list, Any]:
    """A stored request's messages and sampling: [messages, sampling, schema] now; earlier versions wrote a
    dict ({"messages": ..., "sampling": ..., "schema": ...}, compact or in full)."""
    if isinstance(stored, list):
        return (stored[0] if stored else None) or [], stored[1] if len(stored) > 1 else None
    stored = stored or {}
    return stored.get("messages") or [], stored.get("sampling")


SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens", "seed", "repetition_penalty")


def compact_sampling(sampling) -> list:
    """A request's sampling as a list in SAMPLING_FIELDS order (every request row carries one)."""
    return [getattr(sampling, name) for name in SAMPLING_FIELDS]


def stored_sampling(stored: list[Any] | dict[str, Any] | None) -> dict[str, Any]:
    """The sampling of a stored request as a dict (a list since compaction, a dict before)."""
    sampling = _messages_and_sampling(stored)[1] or {}
    return dict(zip(SAMPLING_FIELDS, sampling)) if isinstance(sampling, list) else dict(sampling)


def full_messages(session: Session, stored: Sequence[Any]) -> list[list[dict[str, str]]]:
    """The messages of stored requests, compact or (stored before compaction) in full."""
    wanted = {i for request in stored for message in _messages_and_sampling(request)[0]
              if isinstance(message, list) for i in message[1] if isinstance(i, int)}
    texts: dict[int, str] = {}
    ordered = sorted(wanted)
    for start in range(0, len(ordered), 1000):
        texts.update(session.execute(select(LLMText.id, LLMText.text)
                                     .where(LLMText.id.in_(ordered[start:start + 1000]))).tuples().all())
    result = []
    for request in stored:
        messages = []
        for message in _messages_and_sampling(request)[0]:
            if isinstance(message, list):
                role, ids = message
                messages.append({"role": role, "content": LINE.join(
                    part if isinstance(part, str) else texts.get(part, "") for part in ids)})
            else:
                messages.append(dict(message))
        result.append(messages)
    return result


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parsed_to_store(parsed: Any, raw_text: str | None) -> Any:
    """What the `parsed` column keeps: None when the raw text parses to the same value (most answers)."""
    if parsed is None or raw_text is None:
        return parsed
    try:
        same = _canonical(json.loads(raw_text)) == _canonical(parsed)
    except ValueError:
        same = False
    return None if same else parsed


def stored_answer(parsed: Any, raw_text: str | None, status: str) -> Any:
    """An answered request's parsed value, from the column or else from its raw JSON text."""
    if parsed is not None or status != "ok" or raw_text is None:
        return parsed
    try:
        return json.loads(raw_text)
    except ValueError:  # a free-text answer (no schema asked): it has no parsed value
        return None
