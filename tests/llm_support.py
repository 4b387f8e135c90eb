"""The real engines for tests: the default teacher (SmolLM2-135M-Instruct), converted at set-up."""

from __future__ import annotations

from core.llm.server import SERVED_NAME, running_server  # noqa: F401  (re-exported for tests)


def teacher_dir() -> str:
    from core import config, models_setup

    path = config.teacher_model_dir()
    if not models_setup.teacher_ready(path):
        models_setup.ensure_teacher(path)
    return str(path)
