"""A null OpenAI-compatible endpoint: a measuring instrument for `bench.orchestration`, nothing else.

It answers every `POST .../chat/completions` at once with a JSON value valid under the request's
`response_format` schema, its content varied by a hash of the request (so near-duplicate filters and
caches behave as they would with a real teacher). No model, no tokens: what is left of a run's time
is EmoForge's own. Never used by behaviour tests (those run the real engine).

    python -m bench.null_endpoint --port 8011
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
from typing import Any

WORDS = ("amber river quiet lantern harbor winter meadow stone whisper copper thunder orchard velvet signal "
         "garden ember mirror silver hollow forest candle voyage cedar marble feather canyon blossom cobalt "
         "echo falcon glacier harvest island jasmine kettle lagoon maple nectar oasis pepper quartz raven "
         "saffron tulip umber violet willow yarrow zephyr anchor bramble cinder dune fable grove hazel ivory "
         "juniper kelp lilac mosaic nimbus onyx pebble quill russet sable thistle").split()


LISTED = re.compile(r"^- ([A-Za-z][A-Za-z \-']{1,30}?)(?::|$)", re.MULTILINE)


class Answerer:
    """Fills a schema for one request. Short names come from the prompt's `- name: ...` lists when it
    has one (label names, as a teacher would pick), else from two random words (character names)."""

    def __init__(self, rng: random.Random, defs: dict[str, Any], listed: list[str]):
        self.rng, self.defs, self.listed = rng, defs, listed
        self.used: set[str] = set()  # names given in this answer: each once (no label or character twice)

    def value(self, schema: dict[str, Any]) -> Any:
        return instance(schema, self)


def instance(schema: dict[str, Any], answerer: Answerer) -> Any:
    """A value valid under a (pydantic-style) JSON schema: objects, arrays, strings, numbers, enums, refs."""
    rng, defs = answerer.rng, answerer.defs
    if "$ref" in schema:
        return instance(defs[schema["$ref"].rsplit("/", 1)[-1]], answerer)
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return instance(options[0], answerer)
    kind = schema.get("type", "object")
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: instance(sub, answerer) for name, sub in properties.items()}
    if kind == "array":  # as many items as allowed (up to 12): a run finds every character it may
        count = max(schema.get("minItems", 0), min(schema.get("maxItems", 4), 12))
        return [instance(schema.get("items", {}), answerer) for _ in range(count)]
    if kind in ("number", "integer"):
        low, high = schema.get("minimum", 0), schema.get("maximum", 1)
        value = low + (high - low) * rng.random()
        return int(value) if kind == "integer" else round(value, 1)
    if kind == "boolean":
        return rng.random() < 0.5
    return text(schema, answerer)


def text(schema: dict[str, Any], answerer: Answerer) -> str:
    """Words of letters and spaces (they satisfy name patterns too), within the length bounds."""
    rng = answerer.rng
    low, high = length_bounds(schema)
    if high <= 64:  # a name
        fits = [name for name in answerer.listed if low <= len(name) <= high and name not in answerer.used]
        name = rng.choice(fits) if fits else f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS).capitalize()}"
        answerer.used.add(name)
        return name[:high].ljust(low, "a")
    target = rng.randint(max(low, min(24, high)), max(low, min(high, 90)))
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < target:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:high].strip().ljust(low, "a").capitalize()


PATTERN_BOUNDS = re.compile(r"^\^\[[^\]]+\](?:\[[^\]]+\])\{(\d+),(\d+)\}\$$")  # ^[first][rest]{a,b}$


def length_bounds(schema: dict[str, Any]) -> tuple[int, int]:
    """(min, max) characters: minLength / maxLength, or the bounds EmoForge writes into a name pattern
    (xgrammar does not take maxLength beside a pattern, so names carry theirs as `^[A-Za-z][...]{1,31}$`)."""
    bounded = PATTERN_BOUNDS.match(schema.get("pattern", ""))
    if bounded:
        return int(bounded.group(1)) + 1, int(bounded.group(2)) + 1
    return schema.get("minLength", 0), schema.get("maxLength", 80)


def answer(body: bytes) -> bytes:
    request = json.loads(body)
    rng = random.Random(hashlib.blake2b(body, digest_size=8).digest())
    schema = ((request.get("response_format") or {}).get("json_schema") or {}).get("schema")
    listed = [name for message in request.get("messages", [])
              for name in LISTED.findall(str(message.get("content", "")))]
    content = json.dumps(Answerer(rng, schema.get("$defs", {}), listed).value(schema)) if schema else "Hello."
    return json.dumps({
        "id": "null", "object": "chat.completion", "created": 0, "model": request.get("model", "null"),
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": len(body) // 4, "completion_tokens": len(content) // 4,
                  "total_tokens": (len(body) + len(content)) // 4},
    }).encode()


MODELS = json.dumps({"object": "list", "data": [{"id": "null", "object": "model"}]}).encode()


class HTTP(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, just enough for an HTTP client: Content-Length bodies, no chunking."""

    def connection_made(self, transport) -> None:
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < head_end + 4 + length:
                return
            body = self.buffer[head_end + 4:head_end + 4 + length]
            self.buffer = self.buffer[head_end + 4 + length:]
            method, path = head.split(" ", 2)[:2]
            payload = answer(body) if method == "POST" and path.endswith("/chat/completions") else MODELS
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                                 + str(len(payload)).encode() + b"\r\n\r\n" + payload)


async def serve(port: int, host: str = "127.0.0.1") -> None:
    server = await asyncio.get_running_loop().create_server(HTTP, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.null_endpoint", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()
