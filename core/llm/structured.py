"""Structured output: a pydantic model per task, its bounded JSON schema, and validation.

The schema drives constrained decoding (vLLM structured outputs / `response_format`), and every
answer is validated again with the model: a server may ignore the schema, or stop at max_tokens
in the middle of an object. Bounds matter: an unbounded number or string lets a small model
write digits until it runs out of tokens.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from pydantic import BaseModel, ValidationError


class SchemaNotBounded(ValueError):
    pass


class SchemaNotPortable(ValueError):
    """A schema feature that one of vLLM's structured-output backends drops or refuses.

    vLLM chooses its backend when the engine meets its first structured request; with xgrammar, a string
    with both a pattern and minLength/maxLength is unsupported, so the same schema would be enforced
    differently depending on which request came first. Length bounds go into the pattern instead.
    """


@functools.lru_cache(maxsize=256)
def bounded_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema, checked so that every string and number has a bound.

    Built once per model (pydantic takes about a millisecond, and a run builds one per request); the
    same dict is handed to every caller, so treat it as read-only.
    """
    schema = model.model_json_schema()
    _check_bounds(schema, schema.get("title", model.__name__))
    return schema


def _check_bounds(node: Any, where: str) -> None:
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "string":
            _check_string(node, where)
        if kind in ("number", "integer") and "enum" not in node and not (
            ("maximum" in node or "exclusiveMaximum" in node) and ("minimum" in node or "exclusiveMinimum" in node)
        ):
            raise SchemaNotBounded(f"{where}: number without minimum and maximum")
        if kind == "array" and "maxItems" not in node:
            raise SchemaNotBounded(f"{where}: array without maxItems")
        for name, child in node.items():
            _check_bounds(child, f"{where}.{name}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            _check_bounds(child, f"{where}[{i}]")


# A repetition without an upper bound: *, + or {n,} (not escaped).
UNBOUNDED_REPEAT = re.compile(r"(?<!\\)[*+]|(?<!\\)\{\d*,\}")


def _check_string(node: dict[str, Any], where: str) -> None:
    if "enum" in node or "const" in node:
        return
    pattern = node.get("pattern")
    if pattern is not None and ("minLength" in node or "maxLength" in node):
        raise SchemaNotPortable(f"{where}: pattern beside minLength/maxLength (put the length bounds in the pattern)")
    if "format" in node:
        raise SchemaNotPortable(f"{where}: string format (not enforced alike by every backend)")
    if pattern is not None:
        if UNBOUNDED_REPEAT.search(pattern) or not pattern.endswith("$"):
            raise SchemaNotBounded(f"{where}: pattern without a length bound")
    elif "maxLength" not in node:
        raise SchemaNotBounded(f"{where}: string without maxLength, enum or a bounded pattern")


def parse_answer(text: str | None, model: type[BaseModel] | None) -> tuple[Any, str | None]:
    """(parsed object, None) or (None, reason). Without a model, any JSON value is accepted."""
    if text is None:
        return None, "no answer"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"not valid JSON: {error.msg} at character {error.pos}"
    if model is None:
        return value, None
    try:
        return model.model_validate(value).model_dump(mode="json"), None
    except ValidationError as error:
        first = error.errors()[0]
        place = ".".join(str(p) for p in first["loc"]) or "answer"
        return None, f"does not match the schema: {place}: {first['msg']} ({error.error_count()} error(s))"
