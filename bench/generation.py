"""Teacher throughput: `python -m bench.generation` (about 10 minutes on 2 CPU cores).

The same 256 chat prompts (at most 64 new tokens each, a seed per prompt) go through
  (a) raw `vllm.LLM.chat`, one batch, in this process;
  (b) the full EmoForge path: a queued job, a `python -m core.worker` process with the vLLM engine,
      answers committed per batch to a fresh database (timed from enqueue to the job's end);
  (c) the `openai` engine against one vLLM OpenAI-compatible server, at concurrency 16 and 1.
Each path is warmed up first (engine loaded, first shapes compiled), so the figures compare steady
states, and each engine runs alone: (a) in a child process that has exited before (b) starts. Output tokens/s = completion tokens reported by the engine / wall time. The last line is
one JSON object with the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_PROMPTS = 256
MAX_TOKENS = 64
ROOT = Path(__file__).resolve().parent.parent

EMOTIONS = ["joy", "anger", "fear", "sadness", "surprise", "disgust", "pride", "relief"]
PLACES = ["a harbour at dawn", "a crowded train", "a school exam hall", "a hospital corridor",
          "a birthday party", "a mountain hut", "a job interview", "a flooded kitchen"]


def prompts() -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"A character feels {EMOTIONS[i % 8]} in {PLACES[(i // 8) % 8]} "
                                         f"(scene {i}). Write what they think aloud, in two sentences."}]
            for i in range(N_PROMPTS)]


def warm_up_prompts() -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": "Warm-up " + p[0]["content"]}] for p in prompts()[:16]]


def raw_vllm(model: str) -> float:
    from vllm import LLM, SamplingParams

    from core.llm.engines import cpu_scheduler_args

    # The engine arguments EmoForge's vLLM engine uses on the CPU (same load, same scheduler).
    llm = LLM(model=model, max_model_len=2048, enforce_eager=True, seed=0, **cpu_scheduler_args(2048))
    params = [SamplingParams(temperature=0.8, top_p=0.95, max_tokens=MAX_TOKENS, seed=i) for i in range(N_PROMPTS)]
    llm.chat(warm_up_prompts(), params[:16], use_tqdm=False)  # the same warm-up as (b): no head start from its cache
    started = time.monotonic()
    outputs = llm.chat(prompts(), params, use_tqdm=False)
    elapsed = time.monotonic() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    print(f"(a) raw vllm.LLM.chat: {tokens} tokens in {elapsed:.1f} s", flush=True)
    return tokens / elapsed


def raw_vllm_in_child(model: str) -> float:
    """Run (a) in its own process: vLLM's CPU threads must not compete with the worker in (b)."""
    output = subprocess.run([sys.executable, "-m", "bench.generation", "--raw", model], cwd=ROOT, check=True,
                            stdout=subprocess.PIPE, text=True).stdout
    print(output.strip().splitlines()[-2], flush=True)
    return float(output.strip().splitlines()[-1])


def worker_path(home: Path) -> float:
    """Queue the prompts as an llm_generate job for a real worker process on a fresh database."""
    os.environ["EMOFORGE_HOME"] = str(home)
    os.environ["DATABASE_URL"] = f"sqlite:///{home / 'bench.db'}"
    from core import auth, jobs
    from core.bootstrap import prepare_database
    from core.llm.jobs import enqueue_generation

    prepare_database()
    auth.ensure_admin("bench", "bench-password")
    admin = auth.authenticate("bench", "bench-password")
    worker = subprocess.Popen([sys.executable, "-m", "core.worker", "--poll", "0.05"], cwd=ROOT, env=dict(os.environ),
                              stdout=(home / "worker.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        def run(items, title) -> jobs.JobView:
            job_id = enqueue_generation(admin, items, title=title)
            # Poll slowly: on 2 cores a busy observer steals time from vLLM's threads. The timing
            # comes from the job's own timestamps (queued -> finished), not from the polling.
            while not (view := jobs.get_job(admin, job_id)).is_finished:
                time.sleep(2)
            if view.error:
                raise RuntimeError(f"{title} failed: {view.error}")
            return view

        items = [{"messages": p, "sampling": {"temperature": 0.8, "top_p": 0.95, "max_tokens": MAX_TOKENS, "seed": i}}
                 for i, p in enumerate(prompts())]
        warm = [{**item, "messages": messages} for item, messages in zip(items, warm_up_prompts())]
        run(warm, "warm-up")  # the worker loads vLLM here
        view = run(items, "benchmark")
        elapsed = (view.finished_at - view.created_at).total_seconds()
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    tokens = view.result["output_tokens"]
    print(f"(b) EmoForge job -> worker -> engine -> database: {tokens} tokens in {elapsed:.1f} s "
          f"({view.result['engine_seconds']:.1f} s of them inside the engine)", flush=True)
    return tokens / elapsed


def openai_path(url: str, concurrency: int) -> float:
    from core.llm.engines import OpenAIEngine
    from core.llm.server import SERVED_NAME
    from core.llm.types import ChatRequest, Sampling

    engine = OpenAIEngine(url, SERVED_NAME, max_concurrency=concurrency, timeout=600)
    requests = [ChatRequest(tuple(p), Sampling(temperature=0.8, top_p=0.95, max_tokens=MAX_TOKENS, seed=i))
                for i, p in enumerate(prompts())]
    engine.generate(requests[:8])  # warm-up
    started = time.monotonic()
    results = engine.generate(requests)
    elapsed = time.monotonic() - started
    failed = [r.error for r in results if r.error]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed: {failed[0]}")
    tokens = sum(r.completion_tokens for r in results)
    print(f"(c) openai engine, concurrency {concurrency}: {tokens} tokens in {elapsed:.1f} s", flush=True)
    return tokens / elapsed


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from core import config
    from core.llm.server import running_server
    from core.models_setup import ensure_teacher

    model = str(ensure_teacher(config.teacher_model_dir()))
    os.environ["EMOFORGE_TEACHER_DIR"] = model  # the worker's temporary home has no models folder
    raw = raw_vllm_in_child(model)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        worker = worker_path(home)
        with running_server(home / "server.log", model=model) as url:
            c16 = openai_path(url, 16)
            c1 = openai_path(url, 1)
    figures = {"bench": "generation", "raw_tok_s": round(raw, 1), "worker_tok_s": round(worker, 1),
               "worker_vs_raw": round(worker / raw, 3), "openai_c16_tok_s": round(c16, 1),
               "openai_c1_tok_s": round(c1, 1), "concurrency_speedup": round(c16 / c1, 2)}
    print(json.dumps(figures))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--raw":
        print(raw_vllm(sys.argv[2]))
    else:
        main()
