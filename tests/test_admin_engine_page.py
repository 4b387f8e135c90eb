"""The Admin page's Engine tab, driven through AppTest: settings form, write-only API key, connection check.

No engine and no worker start here: the connection check is only queued.
"""

from __future__ import annotations

from tests.test_pages import (  # noqa: F401 (fixtures)
    navigation_steady_state,
    open_page,
    shared_component_registry,
)
from ui.plain import md_escape

SECRET = "sk-engine-page-secret-4711"


def engine_tab_with_openai(admin, base_url: str):
    at = open_page(admin, "admin")
    assert not at.exception, at.exception
    at.radio(key="engine_kind_0").set_value("openai").run()
    assert not at.exception, at.exception
    at.text_area(key="engine_base_url_0").input(base_url)
    at.text_input(key="engine_model_openai_0").input("served-model")
    at.text_input(key="engine_api_key_0").input(SECRET)
    at.number_input(key="engine_max_concurrency_0").set_value(8)
    at.number_input(key="engine_seed_0").set_value(42)
    assert any(SECRET in value for value in everything_shown(at))  # the check below does see widget values
    at.button(key="engine_save_0").click().run()
    assert not at.exception, at.exception
    return at


def everything_shown(at) -> list[str]:
    """Every value of the tree a visitor could see, and every session-state value."""
    shown = []
    for kind in ("text", "markdown", "code", "caption", "success", "error", "info", "warning", "title",
                 "subheader", "text_input", "text_area"):
        shown += [str(element.value) for element in getattr(at, kind)]
    shown += [str(getattr(element, "proto", "")) for element in _walk(at._tree)]
    shown += [f"{key}={value!r}" for key, value in at.session_state.to_dict().items()]
    return shown


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def test_engine_settings_are_saved_and_the_key_is_never_shown(admin):
    from core.llm import settings as engine_settings

    at = engine_tab_with_openai(admin, "https://llm.example.org/v1")
    assert not at.error, [e.value for e in at.error]
    assert "Engine settings saved. Workers use them from their next job on." in [s.value for s in at.success]
    saved = engine_settings.load()
    assert (saved.engine, saved.base_url, saved.model) == ("openai", "https://llm.example.org/v1", "served-model")
    assert saved.max_concurrency == 8 and saved.sampling["seed"] == 42 and saved.api_key_set
    assert engine_settings.api_key() == SECRET

    assert not any(SECRET in value for value in everything_shown(at))
    assert at.text_input(key="engine_api_key_1").value == ""  # a fresh, empty input
    assert at.text_area(key="engine_base_url_1").value == "https://llm.example.org/v1"
    assert "A key is stored (never shown)." in [c.value for c in at.caption]

    at.checkbox(key="engine_clear_key_1").check()
    at.button(key="engine_save_1").click().run()
    assert not at.exception, at.exception
    assert not engine_settings.load().api_key_set
    assert "No key stored." in [c.value for c in at.caption]


def test_an_invalid_base_url_is_refused_with_the_reason(admin):
    from core.llm import settings as engine_settings

    at = engine_tab_with_openai(admin, "llm.example.org:8000")
    assert [e.value for e in at.error] == [
        md_escape("The openai engine needs a base URL such as http://127.0.0.1:8000/v1.")]
    assert not at.success
    current = engine_settings.load()
    assert current.engine == "vllm" and not current.api_key_set


def test_the_default_vllm_engine_shows_the_bundled_teacher(admin):
    from core import config

    at = open_page(admin, "admin")
    assert at.radio(key="engine_kind_0").value == "vllm"
    assert any(str(config.teacher_model_dir()) in c.value for c in at.caption)
    assert at.text_input(key="engine_model_vllm_0").value == ""


def test_test_connection_queues_an_engine_check_and_waits_for_a_worker(admin):
    from core.jobs import list_jobs

    at = open_page(admin, "admin")
    at.button(key="engine_test").click().run()
    assert not at.exception, at.exception
    assert [(j.kind, j.status.value) for j in list_jobs(admin)] == [("engine_check", "queued")]
    assert "Waiting for a worker… (start one with `python -m core.worker`)" in [i.value for i in at.info]
    assert at.session_state["engine_check_job"] == list_jobs(admin)[0].id


def test_a_finished_check_shows_the_raw_answer_or_the_exact_error(admin):
    from core.llm.jobs import enqueue_engine_check
    from db.models import Job, JobStatus
    from db.session import write_session

    answer = '{"emotions": ["**joy**"], "note": "<b>not html</b>"}'
    job_id = enqueue_engine_check(admin)
    with write_session() as session:
        job = session.get(Job, job_id)
        job.status = JobStatus.succeeded
        job.result = {"engine": "openai", "model": "served-model", "answer": answer, "completion_tokens": 9,
                      "seconds": 0.42}
    at = open_page(admin, "admin")
    at.session_state["engine_check_job"] = job_id
    at.run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["The engine answered: `openai` with `served-model` in 0.42 s."]
    assert [(c.value, c.language) for c in at.code] == [(answer, "json")]

    with write_session() as session:
        job = session.get(Job, job_id)
        job.status, job.error = JobStatus.failed, "Connection error: http://127.0.0.1:9/v1 refused"
    at.run()
    assert [e.value for e in at.error] == ["The engine check failed. The exact error:"]
    assert [c.value for c in at.code] == ["Connection error: http://127.0.0.1:9/v1 refused"]  # no answer left


def test_several_base_urls_are_saved_one_per_line_and_a_bad_line_is_named(admin):
    from core.llm import settings as engine_settings

    at = engine_tab_with_openai(admin, "http://10.0.0.1:8000/v1\nhttp://10.0.0.2:8000/v1/\n")
    assert not at.error, [e.value for e in at.error]
    assert engine_settings.load().endpoints == ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"]
    assert at.text_area(key="engine_base_url_1").value == "http://10.0.0.1:8000/v1\nhttp://10.0.0.2:8000/v1"

    at.text_area(key="engine_base_url_1").input("http://10.0.0.1:8000/v1\n10.0.0.3:8000")
    at.button(key="engine_save_1").click().run()
    assert [e.value for e in at.error] == [md_escape("The openai engine needs a base URL such as http://127.0.0.1:8000/v1 "
                                                     "on every line ('10.0.0.3:8000' is not one).")]
    assert len(engine_settings.load().endpoints) == 2  # nothing saved
