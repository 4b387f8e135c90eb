"""The Emo Pillars pipeline end to end, on the real vLLM engine and the default teacher model."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core import corpus, taxonomy, worker
from core.pipeline import run as pipeline
from core.pipeline import runs
from core.pipeline.schemas import OUTPUTS
from db.models import Character, Example, ExampleKind, GenerationRun, LLMRequest, RunStatus, Suggestion
from db.session import read_session

pytestmark = pytest.mark.slow


@pytest.fixture
def teacher(vllm_engine, monkeypatch):
    """Jobs in this process use the session's vLLM engine (loading it once per test run)."""
    monkeypatch.setattr(pipeline, "current_engine", lambda: vllm_engine)
    return vllm_engine


def _small_run_config(stories: int = 2, seed: int = 7) -> pipeline.RunConfig:
    taxonomy.seed_defaults()
    corpus.load_demo_corpus()
    corpus_id = corpus.list_corpora()[0].id
    story_ids = [row.id for row in corpus.list_stories(corpus_id, limit=stories)[0]]
    tid = taxonomy.get_taxonomy_by_name("GoEmotions").id
    return pipeline.RunConfig(corpus_id=corpus_id, taxonomy_id=tid, story_ids=story_ids, max_characters=2,
                              emotional=2, neutral=1, seed=seed)


def _run_worker() -> None:
    assert worker.serve(once=True, lease_seconds=120) >= 1


def _examples(run_id: int, kind: ExampleKind) -> list[Example]:
    with read_session() as session:
        return list(session.scalars(select(Example).where(Example.run_id == run_id, Example.kind == kind)
                                    .order_by(Example.id)))


def test_two_demo_stories_give_contextless_and_contextual_examples_with_provenance(database, admin, teacher):
    run_id = pipeline.create_run(admin, _small_run_config(), name="two stories")
    _run_worker()
    with read_session() as session:
        run = session.get(GenerationRun, run_id)
        assert run.status == RunStatus.succeeded, run.stats
        characters = session.scalar(select(func.count()).select_from(Character).where(Character.run_id == run_id))
        stats, versions = dict(run.stats), dict(run.template_versions)
    assert 2 <= characters <= 4
    assert set(versions) >= {"characters", "utterances", "labels", "context", "clean", "rewrite"}
    for stage in ("characters", "utterances", "labels", "context", "clean", "rewrite"):
        assert stats[stage]["total"] >= 1, stage
    plain = _examples(run_id, ExampleKind.contextless)
    contextual = _examples(run_id, ExampleKind.contextual)
    assert plain and contextual
    # every utterance was asked for; repeats of one character were removed, not stored
    assert len(plain) + stats["utterances"]["near_duplicates_removed"] <= characters * 3
    for example in plain:
        OUTPUTS["utterances"].model_validate_json(example.raw_output)  # the raw answer is kept and valid
        assert example.meta["slot"] and example.target_emotion and example.llm_request_id
        assert example.meta["templates"]["utterances"] == versions["utterances"]["version"]
        assert example.expressiveness is not None and 0 <= example.expressiveness <= 1
    parents = {e.id: e for e in plain}
    for example in contextual:
        assert example.parent_id in parents and example.context and example.raw_context
        assert example.character_id == parents[example.parent_id].character_id
        assert set(example.meta["requests"]) == {"context", "clean", "rewrite"}
        assert isinstance(example.meta["flags"], list)
    with read_session() as session:
        for example in contextual:  # the soft labels travel with the rewrite
            mine = sorted(session.execute(select(Suggestion.label_id, Suggestion.oot_name, Suggestion.score)
                                          .where(Suggestion.example_id == example.id)).tuples().all(), key=str)
            parent = sorted(session.execute(select(Suggestion.label_id, Suggestion.oot_name, Suggestion.score)
                                            .where(Suggestion.example_id == example.parent_id)).tuples().all(), key=str)
            assert mine == parent
        agents = set(session.scalars(select(Suggestion.agent).join(Example).where(Example.run_id == run_id)))
    assert agents == {f"teacher:{teacher.model}"}
    detail = runs.run_detail(admin, run_id)
    assert detail.examples_contextless == len(plain) and detail.examples_contextual == len(contextual)

    # Running the job again asks nothing new and adds nothing.
    pipeline.resume_run(admin, run_id)
    _run_worker()
    with read_session() as session:
        again = dict(session.get(GenerationRun, run_id).stats)
    for stage in ("characters", "utterances", "labels"):
        assert again[stage]["answered"] == 0 and again[stage]["cached"] == again[stage]["total"], stage
    assert len(_examples(run_id, ExampleKind.contextless)) == len(plain)
    assert len(_examples(run_id, ExampleKind.contextual)) == len(contextual)

    # A repeat with the same seed is answered from the cache: same texts, no new requests.
    requests_before = _count(LLMRequest)
    repeat_id = pipeline.repeat_run(admin, run_id)
    _run_worker()
    assert _count(LLMRequest) == requests_before
    assert [e.text for e in _examples(repeat_id, ExampleKind.contextless)] == [e.text for e in plain]

    # Extending adds utterances for the new slots only.
    pipeline.extend_run(admin, run_id, emotional=3)
    _run_worker()
    extended = _examples(run_id, ExampleKind.contextless)
    assert len(extended) >= len(plain)
    assert {e.id for e in plain} <= {e.id for e in extended}
    assert any(e.meta["slot"] == "e2" for e in extended) or \
        runs.run_detail(admin, run_id).stats["utterances"]["near_duplicates_removed"] > 0


def _count(model) -> int:
    with read_session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_a_run_can_be_stopped_and_resumed(database, admin, teacher):
    run_id = pipeline.create_run(admin, _small_run_config(stories=1, seed=11))
    with read_session() as session:
        job_id = session.get(GenerationRun, run_id).job_id
    pipeline.stop_run(admin, run_id)  # cancel before the worker starts it
    _run_worker()
    with read_session() as session:
        assert session.get(GenerationRun, run_id).status == RunStatus.cancelled
    with pytest.raises(pipeline.PlanError):
        pipeline.stop_run(admin, run_id)
    new_job = pipeline.resume_run(admin, run_id)
    assert new_job != job_id
    _run_worker()
    with read_session() as session:
        assert session.get(GenerationRun, run_id).status == RunStatus.succeeded
    assert _examples(run_id, ExampleKind.contextless)


def test_estimate_counts_calls_per_stage(database, admin):
    config = pipeline.prepare_config(_small_run_config())
    estimate = pipeline.estimate_run(config)
    by_stage = {s.stage: s for s in estimate.stages}
    assert by_stage["characters"].calls == estimate.passages >= 2
    assert by_stage["utterances"].calls == estimate.utterances == 2 * 2 * 3
    assert all(by_stage[s].calls == 12 for s in ("labels", "context", "clean", "rewrite"))
    assert estimate.calls == estimate.passages + 5 * 12
    assert estimate.tokens > estimate.calls * 50


def test_bad_run_settings_are_refused(database, admin, annotator):
    config = _small_run_config()
    from core.auth import PermissionDenied

    with pytest.raises(PermissionDenied):
        pipeline.create_run(annotator, config)
    config.story_ids = []
    with pytest.raises(pipeline.PlanError, match="at least one story"):
        pipeline.create_run(admin, config)
    config = _small_run_config()
    config.emotional = config.neutral = 0
    with pytest.raises(pipeline.PlanError, match="Utterances per character"):
        pipeline.create_run(admin, config)
    config = _small_run_config()
    config.story_ids = [999999]
    with pytest.raises(pipeline.PlanError, match="not in this corpus"):
        pipeline.create_run(admin, config)
