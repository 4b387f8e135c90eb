"""The teacher-LLM layer: one small batch interface, two real engines, a response cache.

- `types`: ChatRequest / ChatResult / Sampling, and the cache key.
- `structured`: pydantic output models -> bounded JSON schemas, and validation of answers.
- `engines`: `vllm` (in the worker process) and `openai` (any OpenAI-compatible server).
- `settings`: engine settings edited on the Admin page; the API key stored encrypted.
- `runner`: runs a job's requests through the cache in engine-sized batches.
"""
