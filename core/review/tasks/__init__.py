"""The registry of review tasks: every module of this package but `base` defines one `TASK`.

Campaigns, the queue, the answers, the results and the Review page read this registry; a new task
is one new module here (and its test).
"""

from __future__ import annotations

import importlib
import pkgutil

from core.review.tasks.base import ReviewTask


def _discover() -> dict[str, ReviewTask]:
    found = []
    for module in pkgutil.iter_modules(__path__):
        if module.name == "base":
            continue
        task = getattr(importlib.import_module(f"{__name__}.{module.name}"), "TASK", None)
        if isinstance(task, ReviewTask):
            found.append(task)
    return {t.name: t for t in sorted(found, key=lambda t: (t.order, t.name))}


REGISTRY: dict[str, ReviewTask] = _discover()
NAMES: tuple[str, ...] = tuple(REGISTRY)


def get(name: str) -> ReviewTask:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"Unknown review task {name!r}; use one of {', '.join(NAMES)}.") from None
