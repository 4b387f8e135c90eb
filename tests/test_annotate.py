"""Teacher descriptors for imported texts, and teacher-vs-human agreement per label."""

from __future__ import annotations

import csv

import pytest
from sqlalchemy import func, select

from core import labels, taxonomy, worker
from core.llm.stored import full_messages
from core.pipeline import annotate
from db.models import Descriptor, Example, ExampleKind, LLMRequest, Suggestion
from db.session import read_session, write_session
from tests.conftest import shared_data


def _goemotions_id() -> int:
    taxonomy.seed_defaults()
    return taxonomy.get_taxonomy_by_name("GoEmotions").id


def _import(source: str, rows: list[tuple[str, list[str]]], tid: int) -> list[int]:
    """Imported examples with gold labels, as the data-set importer stores them."""
    ids = []
    with write_session() as session:
        for text, gold in rows:
            example = Example(kind=ExampleKind.imported, text=text, source=source, taxonomy_id=tid)
            session.add(example)
            session.flush()
            labels.add_suggestions(session, example.id, tid, [labels.ScoredName(g, 1.0) for g in gold],
                                   agent=f"gold:{source}")
            ids.append(example.id)
    return ids


def _describe(example_id: int, text: str, scored: list[tuple[str, float]]) -> None:
    with write_session() as session:
        session.add(Descriptor(example_id=example_id, text=text, agent="teacher:test-model"))
        labels.add_suggestions(session, example_id, _goemotions_id(), [labels.ScoredName(n, s) for n, s in scored],
                               agent="teacher:test-model")


def test_agreement_per_label_on_a_hand_made_case(database, admin):
    tid = _goemotions_id()
    ids = _import("hand", [("a", ["joy"]), ("b", ["joy", "anger"]), ("c", ["anger"]), ("d", ["neutral"]),
                           ("e", ["joy"])], tid)
    _describe(ids[0], "glad", [("joy", 0.9)])
    _describe(ids[1], "glad", [("joy", 0.8), ("fear", 0.6)])
    _describe(ids[2], "cross", [("anger", 0.2)])  # below the 0.3 threshold: no label
    _describe(ids[3], "calm", [("neutral", 0.7)])
    # ids[4] was not described: left out of the comparison
    result = annotate.agreement(admin, "hand", tid)
    assert result.texts == 4
    rows = {row.label: row for row in result.per_label}
    assert (rows["joy"].human, rows["joy"].teacher, rows["joy"].precision, rows["joy"].recall) == (2, 2, 1.0, 1.0)
    assert (rows["anger"].human, rows["anger"].teacher, rows["anger"].recall) == (2, 0, 0.0)
    assert (rows["fear"].human, rows["fear"].teacher, rows["fear"].precision) == (0, 1, 0.0)
    assert rows["joy"].kappa == pytest.approx(1.0)
    assert result.micro_f1 == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))  # tp 3 (joy x2, neutral), fp 1, fn 2
    lower = annotate.agreement(admin, "hand", tid, at=0.1)
    assert {row.label: row for row in lower.per_label}["anger"].teacher == 1


def test_annotation_sources_list_counts(database, admin):
    tid = _goemotions_id()
    ids = _import("hand", [("a", ["joy"]), ("b", [])], tid)
    _describe(ids[0], "glad", [("joy", 0.9)])
    [row] = annotate.list_sources(admin)
    assert (row.source, row.texts, row.gold_labelled, row.described) == ("hand", 2, 1, 1)
    with pytest.raises(ValueError, match="No imported texts"):
        annotate.enqueue_annotation(admin, "nothing", tid)


@pytest.mark.slow
@pytest.mark.timeout(900)  # 12 texts through two steps (describe, text_labels), re-asks included, plus vLLM's load
def test_teacher_describes_goemotions_dev_texts_with_the_real_engine(database, admin, vllm_engine, monkeypatch):
    monkeypatch.setattr(annotate, "current_engine", lambda: vllm_engine)
    tid = _goemotions_id()
    names = [line.strip() for line in shared_data("goemotions", "emotions.txt").read_text().splitlines() if line.strip()]
    with shared_data("goemotions", "dev.tsv").open(newline="") as handle:
        rows = [(text, [names[int(i)] for i in ids.split(",")]) for text, ids, _ in csv.reader(handle, delimiter="\t")]
    _import("goemotions-dev", rows[:16], tid)
    annotate.enqueue_annotation(admin, "goemotions-dev", tid, limit=12)
    assert worker.serve(once=True, lease_seconds=120) == 1
    with read_session() as session:
        descriptors = session.scalars(select(Descriptor)).all()
        teacher_suggestions = session.scalar(select(func.count()).select_from(Suggestion).where(
            Suggestion.agent == f"teacher:{vllm_engine.model}"))
        described = {d.example_id for d in descriptors}
        labelled = set(session.scalars(select(Suggestion.example_id).where(
            Suggestion.agent == f"teacher:{vllm_engine.model}")))
        stored = [r.request for r in session.scalars(select(LLMRequest).where(LLMRequest.stage == "describe"))]
        prompts = [messages[-1]["content"] for messages in full_messages(session, stored)]
    assert 10 <= len(described) <= 12  # a rare answer may fail validation three times
    # free-text descriptors: a word or short phrase each, with an intensity, from a prompt without the taxonomy
    assert all(2 <= len(d.text) <= 60 and 0.1 <= d.intensity <= 1.0 and d.llm_request_id for d in descriptors)
    assert prompts and not any("admiration" in p or "nervousness" in p for p in prompts)
    assert teacher_suggestions >= 1
    result = annotate.agreement(admin, "goemotions-dev", tid)
    assert result.texts == len(described | labelled)
    assert len(result.per_label) == 28 and sum(r.human for r in result.per_label) >= result.texts
    assert 0.0 <= result.macro_f1 <= 1.0
    with read_session() as session:
        answered = session.scalar(select(func.count()).select_from(LLMRequest).where(LLMRequest.status == "ok"))
    # a second run answers from the cache and stores nothing twice
    annotate.enqueue_annotation(admin, "goemotions-dev", tid, limit=12)
    assert worker.serve(once=True, lease_seconds=120) == 1
    with read_session() as session:
        assert session.scalar(select(func.count()).select_from(Descriptor)) == len(descriptors)
        assert session.scalar(select(func.count()).select_from(LLMRequest).where(LLMRequest.status == "ok")) \
            == answered  # everything came from the cache
