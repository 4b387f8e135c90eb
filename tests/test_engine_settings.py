"""Engine settings: validated, and the API key stored encrypted and never handed back to pages."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.auth import PermissionDenied
from core.llm import settings as engine_settings
from core.llm.settings import EngineSettings
from db.models import Setting
from db.session import read_session


def test_defaults_use_vllm_on_the_bundled_teacher(database):
    current = engine_settings.load()
    assert current.engine == "vllm" and current.resolved_model.endswith("smollm2-135m-instruct")
    assert not current.api_key_set


def test_api_key_is_encrypted_at_rest_and_never_returned(admin):
    saved = engine_settings.save(admin, EngineSettings(engine="openai", base_url="https://api.example.org/v1",
                                                       model="gpt-x"), api_key="sk-very-secret-123")
    assert saved.api_key_set and "sk-very-secret" not in repr(saved)
    with read_session() as session:
        stored = session.scalar(select(Setting.value).where(Setting.key == engine_settings.API_KEY_KEY))
    assert "sk-very-secret" not in str(stored)
    assert engine_settings.api_key() == "sk-very-secret-123"
    engine_settings.save(admin, saved)  # saving other fields keeps the key
    assert engine_settings.api_key() == "sk-very-secret-123"
    engine_settings.save(admin, saved, clear_api_key=True)
    assert engine_settings.api_key() is None and not engine_settings.load().api_key_set


@pytest.mark.parametrize("bad, message", [
    (EngineSettings(engine="gpt"), "Unknown engine"),
    (EngineSettings(engine="openai", base_url="localhost:8000", model="m"), "base URL"),
    (EngineSettings(engine="openai", base_url="http://x/v1"), "model name"),
    (EngineSettings(max_concurrency=0), "max concurrency"),
    (EngineSettings(sampling={"temperature": 5.0, "top_p": 1.0, "max_tokens": 10}), "temperature"),
])
def test_bad_settings_are_refused_with_a_reason(admin, bad, message):
    with pytest.raises(ValueError, match=message):
        engine_settings.save(admin, bad)


def test_only_admins_change_engine_settings(annotator):
    with pytest.raises(PermissionDenied):
        engine_settings.save(annotator, EngineSettings())


def test_base_url_holds_a_list_of_endpoints(admin):
    saved = engine_settings.save(admin, EngineSettings(
        engine="openai", model="m", base_url="http://a:8000/v1/\nhttp://b:8000/v1, http://a:8000/v1"))
    assert saved.endpoints == ["http://a:8000/v1", "http://b:8000/v1"]  # each once, in order
    with pytest.raises(ValueError, match="'b:8000' is not one"):
        engine_settings.save(admin, EngineSettings(engine="openai", model="m", base_url="http://a:8000/v1 b:8000"))


def test_one_factory_builds_the_engine_the_settings_name_once(admin):
    from core.llm import factory
    from core.llm.engines import OpenAIEngine

    engine_settings.save(admin, EngineSettings(engine="openai", model="m", max_concurrency=3,
                                               base_url="http://127.0.0.1:9/v1\nhttp://127.0.0.1:10/v1"))
    engine = factory.current_engine()
    assert isinstance(engine, OpenAIEngine) and engine.capacity == 6
    assert [e.url for e in engine.endpoints] == ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
    assert factory.current_engine() is engine  # built once per process
    with factory.use_engine("lent") as lent:
        assert factory.current_engine() == lent
    engine_settings.save(admin, EngineSettings(engine="openai", model="m2", base_url="http://127.0.0.1:9/v1"))
    assert factory.current_engine() is not engine and factory.current_engine().model == "m2"
