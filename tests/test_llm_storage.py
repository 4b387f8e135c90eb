"""The response cache stores requests compactly (each prompt paragraph once) and gives them back whole.

No engine here: the answers are written as the runner writes them, from results an engine returned.
"""

from __future__ import annotations

from sqlalchemy import func, select

from core import jobs
from core.llm.engines import OpenAIEngine
from core.llm.runner import Outcome, store, unanswered_requests
from core.llm.tasks import emotion_guess_messages, task_schema
from core.llm.types import ChatRequest, ChatResult, Sampling
from db.models import LLMRequest, LLMText
from db.session import read_session, write_session
from tests.test_pages import (  # noqa: F401 (fixtures)
    navigation_steady_state,
    open_page,
    shared_component_registry,
)

LABELS = "Emotions:\n" + "\n".join(f"- emotion{i}: a feeling number {i}" for i in range(28))


def labelling(text: str) -> ChatRequest:
    messages = ({"role": "system", "content": "You label emotions. Answer with JSON only."},
                {"role": "user", "content": f"{LABELS}\n\nThe miller thinks aloud: \"{text}\"\n\nWhich emotions?"})
    return ChatRequest(messages, Sampling(temperature=0.0, seed=1), task_schema("emotion_guess"))


def stored_failures(admin, requests: list[ChatRequest]) -> int:
    engine = OpenAIEngine("http://127.0.0.1:9/v1", "m")  # names the rows only; never asked
    job_id = jobs.enqueue(admin, "llm_generate", {})
    outcomes = [Outcome(r, "error", ChatResult(r.key, None, error=f"HTTP 500 from the server: busy {i}"),
                        reason=f"HTTP 500 from the server: busy {i}", attempts=2)
                for i, r in enumerate(r.with_key("openai", "m") for r in requests)]
    with write_session() as session:
        store(session, outcomes, engine, stage="labels", job_id=job_id, run_id=None)
    return job_id


def test_each_paragraph_is_stored_once_and_requests_read_back_whole(admin):
    texts = [f"The flour is gone again, day {i}." for i in range(40)]
    job_id = stored_failures(admin, [labelling(t) for t in texts])
    with read_session() as session:
        paragraphs = session.scalar(select(func.count()).select_from(LLMText))
        request_bytes = sum(len(str(r)) for r in session.scalars(select(LLMRequest.request)))
    # once: the system prompt, the label list (a long paragraph stays whole), the blank line, the
    # question, the schema; the line of each text, used by one request only, stays inline in it
    assert paragraphs == 5
    assert request_bytes < 250 * len(texts) < len(LABELS) * len(texts)  # ids, one line and sampling
    unanswered = unanswered_requests(admin, job_id)
    assert [u.prompt for u in unanswered] == [labelling(t).messages[-1]["content"] for t in texts]
    assert unanswered[0].error == "HTTP 500 from the server: busy 0" and unanswered[0].attempts == 2


def test_a_line_one_request_uses_is_stored_by_id_once_a_later_batch_shares_it(admin):
    stored_failures(admin, [labelling("The flour is gone again.")])  # a batch of one: short lines inline
    with read_session() as session:
        assert session.scalar(select(func.count()).select_from(LLMText)) == 2  # the schema, the long label list
    job_id = stored_failures(admin, [labelling("The flour is gone again."), labelling("The mill stopped.")])
    with read_session() as session:
        assert session.scalar(select(func.count()).select_from(LLMText)) == 5  # the shared lines, by id now
    assert [u.prompt for u in unanswered_requests(admin, job_id)] == [
        labelling(t).messages[-1]["content"] for t in ("The flour is gone again.", "The mill stopped.")]


def test_requests_stored_in_full_before_compaction_still_read_back(admin):
    job_id = jobs.enqueue(admin, "llm_generate", {})
    messages = list(emotion_guess_messages("An old row."))
    with write_session() as session:
        session.add(LLMRequest(key="0f" * 16, engine="openai", model="m", job_id=job_id, status="error",
                               error="cannot reach it", request={"messages": messages, "sampling": {}, "schema": None}))
    assert [u.prompt for u in unanswered_requests(admin, job_id)] == [messages[-1]["content"]]


def test_requests_stored_as_a_dict_by_earlier_versions_still_read_back(admin):
    """Compact requests were a dict ({"messages", "sampling", "schema"}) before they became a list."""
    from core.llm.stored import full_messages, stored_sampling

    stored_failures(admin, [labelling("The flour is gone again.")])
    with read_session() as session:
        as_list = session.scalar(select(LLMRequest.request))
        as_dict = {"messages": as_list[0], "sampling": as_list[1], "schema": as_list[2]}
        assert isinstance(as_list, list) and len(as_list) == 3
        assert full_messages(session, [as_dict]) == full_messages(session, [as_list]) == [
            list(labelling("The flour is gone again.").messages)]
    assert stored_sampling(as_dict) == stored_sampling(as_list) == {
        "temperature": 0.0, "top_p": 0.95, "max_tokens": 256, "seed": 1, "repetition_penalty": 1.0}


def test_the_jobs_page_lists_any_llm_jobs_unanswered_requests_with_their_prompt(admin):
    job_id = stored_failures(admin, [labelling("The wheel stopped at noon.")])
    at = open_page(admin, "jobs")
    at.selectbox(key="jobs_selected").set_value(job_id).run()
    assert not at.exception, at.exception
    assert "Requests without a valid answer" in [s.value for s in at.subheader]
    table = at.dataframe[-2].value  # then the events
    assert list(table["reason"]) == ["HTTP 500 from the server: busy 0"]
    assert "The wheel stopped at noon." in table["prompt"][0]


def test_an_answer_is_stored_once_and_its_parsed_value_reads_back_the_same(admin):
    from core.llm.runner import cached_answers
    from core.pipeline.steps.base import answers

    engine = OpenAIEngine("http://127.0.0.1:9/v1", "m")  # names the rows only; never asked
    plain, normalised, free = (labelling(t).with_key("openai", "m") for t in ("one", "two", "three"))
    raw = '{"emotion": "joy", "confidence": 1}'
    outcomes = [Outcome(plain, "ok", ChatResult(plain.key, raw), parsed={"emotion": "joy", "confidence": 1}),
                # a validator that normalised the value (1 -> 1.0): kept, since the raw text would not give it
                Outcome(normalised, "ok", ChatResult(normalised.key, raw), parsed={"emotion": "joy", "confidence": 1.0}),
                Outcome(free, "ok", ChatResult(free.key, "just words"), parsed=None)]
    with write_session() as session:
        store(session, outcomes, engine, stage="labels", job_id=None, run_id=None)
    with read_session() as session:
        columns = dict(session.execute(select(LLMRequest.key, LLMRequest.parsed)).tuples().all())
        found = answers(session, [plain, normalised])
    assert columns == {plain.key: None, normalised.key: {"emotion": "joy", "confidence": 1.0}, free.key: None}
    assert found[plain.key].parsed == {"emotion": "joy", "confidence": 1}
    assert repr(found[normalised.key].parsed["confidence"]) == "1.0"
    cached = cached_answers([plain.key, free.key])
    assert cached[plain.key].parsed == {"emotion": "joy", "confidence": 1} and cached[free.key].parsed is None
    assert cached[free.key].text == "just words"


def test_a_stored_requests_sampling_reads_back_as_a_dict():
    from core.llm.stored import compact_sampling, stored_sampling

    sampling = Sampling(temperature=0.0, top_p=1.0, max_tokens=220, seed=7, repetition_penalty=1.03)
    assert stored_sampling({"sampling": compact_sampling(sampling)}) == {
        "temperature": 0.0, "top_p": 1.0, "max_tokens": 220, "seed": 7, "repetition_penalty": 1.03}
    assert stored_sampling({"sampling": {"temperature": 0.5, "seed": 1}}) == {"temperature": 0.5, "seed": 1}  # older rows


def test_a_cache_key_is_stored_as_16_bytes_and_json_without_padding(admin):
    """The key is half its hex text in the row and in its unique index; JSON columns carry no spaces, and
    an answer with nothing to add in `parsed` leaves an SQL NULL there (not the JSON text null)."""
    from sqlalchemy import text

    from core.llm.runner import answered_keys

    engine = OpenAIEngine("http://127.0.0.1:9/v1", "m")  # names the rows only; never asked
    request = labelling("caf\u00e9 au lait").with_key("openai", "m")
    assert len(request.key) == 32 and int(request.key, 16) >= 0
    raw = '{"emotion": "joy", "confidence": 1}'
    with write_session() as session:
        store(session, [Outcome(request, "ok", ChatResult(request.key, raw), parsed={"emotion": "joy", "confidence": 1})],
              engine, stage="labels", job_id=None, run_id=None)
    with read_session() as session:
        key_bytes, stored, parsed_is_null = session.execute(text(
            "SELECT length(key), CAST(request AS TEXT), parsed IS NULL FROM llm_requests")).one()
    assert key_bytes == 16 and parsed_is_null
    assert ", " not in stored and '": ' not in stored and "caf\u00e9" in stored  # compact, text as text
    assert answered_keys([request.key]) == {request.key}  # looked up by its hex form, as the runner does
