"""Engine settings, edited on the Admin page and read by the workers.

Stored in the `settings` table (so workers on other hosts see the same settings through the
shared database). The API key is stored Fernet-encrypted with a key from EMOFORGE_SECRET_KEY or
`$EMOFORGE_HOME/secret.key`; pages get only whether one is set, never the key itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from core import config
from core.auth import Actor, require_admin
from core.llm.types import Sampling
from db.models import Setting
from db.session import read_session, write_session

ENGINE_KEY = "engine"
API_KEY_KEY = "engine.api_key"
ENGINES = ("vllm", "openai")


@dataclass(frozen=True)
class EngineSettings:
    engine: str = "vllm"
    model: str = ""  # vllm: model folder ("" = the default teacher); openai: the server's model name
    base_url: str = ""  # openai only: one or more endpoints serving the same model, one per line
    max_concurrency: int = 16  # openai: requests in flight per endpoint
    batch_size: int = 256  # requests per committed batch
    tensor_parallel_size: int = 1  # vllm on several GPUs
    max_model_len: int = 2048  # vllm
    timeout_seconds: float = 120.0  # openai
    max_retries: int = 3  # openai: retries on 429 / 5xx / connection errors
    validation_attempts: int = 3  # answers that fail validation are asked again up to this many times
    sampling: dict[str, Any] = field(default_factory=lambda: Sampling().as_dict())
    api_key_set: bool = False  # read-only: whether a key is stored

    @property
    def resolved_model(self) -> str:
        if self.engine == "vllm" and not self.model:
            return str(config.teacher_model_dir())
        return self.model

    @property
    def endpoints(self) -> list[str]:
        """The base URLs in `base_url` (separated by new lines, spaces or commas), each once, in order."""
        urls = self.base_url.replace(",", " ").split()
        return list(dict.fromkeys(url.rstrip("/") for url in urls))

    def default_sampling(self) -> Sampling:
        return Sampling(**{k: self.sampling[k] for k in ("temperature", "top_p", "max_tokens", "seed", "repetition_penalty")
                           if k in self.sampling})

    def check(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"Unknown engine {self.engine!r}: choose {' or '.join(ENGINES)}.")
        if self.engine == "openai":
            if not self.endpoints:
                raise ValueError("The openai engine needs a base URL such as http://127.0.0.1:8000/v1.")
            for url in self.endpoints:
                if not (url.startswith("http://") or url.startswith("https://")):
                    raise ValueError("The openai engine needs a base URL such as http://127.0.0.1:8000/v1"
                                     + (f" on every line ({url!r} is not one)." if len(self.endpoints) > 1 else "."))
        if self.engine == "openai" and not self.model:
            raise ValueError("The openai engine needs the server's model name.")
        for name in ("max_concurrency", "batch_size", "tensor_parallel_size", "max_model_len", "validation_attempts"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be at least 1.")
        sampling = self.default_sampling()
        if not 0 <= sampling.temperature <= 2 or not 0 < sampling.top_p <= 1 or sampling.max_tokens < 1:
            raise ValueError("Sampling: temperature in [0, 2], top_p in (0, 1], max_tokens at least 1.")
        if not 0.5 <= sampling.repetition_penalty <= 2:
            raise ValueError("Sampling: repetition_penalty in [0.5, 2] (1 = off).")


def _fernet() -> Fernet:
    return Fernet(config.secret_key())


def load() -> EngineSettings:
    with read_session() as session:
        row = session.get(Setting, ENGINE_KEY)
        secret = session.get(Setting, API_KEY_KEY)
        stored = dict(row.value or {}) if row else {}
        has_key = bool(secret and secret.value)
    known = {f for f in EngineSettings.__dataclass_fields__ if f != "api_key_set"}
    settings = EngineSettings(**{k: v for k, v in stored.items() if k in known})
    return replace(settings, api_key_set=has_key)


def save(actor: Actor | None, settings: EngineSettings, *, api_key: str | None = None,
         clear_api_key: bool = False) -> EngineSettings:
    """Store the settings. `api_key=None` keeps the stored key; `clear_api_key` removes it."""
    require_admin(actor)
    settings.check()
    value = {k: v for k, v in asdict(settings).items() if k != "api_key_set"}
    with write_session() as session:
        _put(session, ENGINE_KEY, value, False, actor)
        if clear_api_key:
            _put(session, API_KEY_KEY, None, True, actor)
        elif api_key:
            _put(session, API_KEY_KEY, _fernet().encrypt(api_key.encode()).decode(), True, actor)
    return load()


def _put(session, key: str, value: Any, secret: bool, actor: Actor) -> None:
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value, is_secret=secret, updated_by_id=actor.id))
    else:
        row.value, row.is_secret, row.updated_by_id = value, secret, actor.id


def api_key() -> str | None:
    """The decrypted API key, for the engine only (never for a page)."""
    with read_session() as session:
        row = session.get(Setting, API_KEY_KEY)
        token = row.value if row else None
    if not token:
        return None
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ValueError("The stored API key cannot be decrypted with this host's secret key "
                         "(EMOFORGE_SECRET_KEY or var/secret.key differ): enter the key again.") from None
