"""Every output schema EmoForge sends is bounded and enforced alike by vLLM's structured-output backends."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from core.llm.structured import SchemaNotBounded, SchemaNotPortable, bounded_schema
from core.llm.tasks import TASKS
from core.llm.types import Sampling
from core.pipeline import steps as registry
from core.pipeline.plan import PRESETS, RunConfig
from core.pipeline.steps.base import StepContext

GOEMOTIONS_LIKE = [("admiration", "Finding something impressive."), ("joy", "A feeling of pleasure."),
                   ("neutral", "")]


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("name", sorted(registry.STEPS))
def test_every_step_schema_is_bounded_and_portable(preset, name):
    config = RunConfig.for_preset(preset, 1, 1)
    ctx = StepContext(None, config, 1, GOEMOTIONS_LIKE, {}, {}, None, Sampling())
    schema = bounded_schema(registry.get(name).output(ctx))  # raises SchemaNotBounded / SchemaNotPortable
    assert schema["type"] == "object"


@pytest.mark.parametrize("task", sorted(TASKS))
def test_engine_check_schema_is_bounded_and_portable(task):
    assert bounded_schema(TASKS[task])["type"] == "object"


def test_pattern_beside_length_bounds_is_refused_as_not_portable():
    class Both(BaseModel):
        name: str = Field(max_length=32, pattern=r"^[a-z]{1,32}$")

    with pytest.raises(SchemaNotPortable, match="length bounds in the pattern"):
        bounded_schema(Both)


@pytest.mark.parametrize("pattern", [r"^[a-z]+$", r"^[a-z]*$", r"^[a-z]{2,}$", r"^[a-z]{1,9}"])
def test_pattern_without_an_upper_bound_is_refused(pattern):
    model = type("Loose", (BaseModel,), {"__annotations__": {"name": str}, "name": Field(pattern=pattern)})
    with pytest.raises(SchemaNotBounded):
        bounded_schema(model)


def test_escaped_plus_is_not_a_repetition():
    class Escaped(BaseModel):
        name: str = Field(pattern=r"^a\+[b-c]{1,4}$")

    assert bounded_schema(Escaped)["properties"]["name"]["pattern"] == r"^a\+[b-c]{1,4}$"


def test_emotion_names_keep_their_length_bounds_in_the_pattern():
    from core.pipeline.steps.text_labels import ScoredEmotion

    assert ScoredEmotion(name="joy", score=0.5).name == "joy"
    assert ScoredEmotion(name="a" * 32, score=0.5)
    for bad in ("j", "a" * 33, "9lives"):
        with pytest.raises(ValidationError):
            ScoredEmotion(name=bad, score=0.5)


def test_engines_name_the_structured_output_backend():
    from core.llm.engines import STRUCTURED_BACKEND
    from core.llm.server import server_command

    command = server_command("/models/x", 8000)
    assert command[command.index("--structured-outputs-config") + 1] == '{"backend": "%s"}' % STRUCTURED_BACKEND
