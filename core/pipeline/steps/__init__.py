"""The registry of pipeline steps: one module each, in the order a run takes them.

The runner, the templates, the cost estimate, the Generate page and the describe job all read this
registry; a preset (core.pipeline.plan.PRESETS) names which of these steps a run takes. A new step is
one new module with a `STEP` and one line here.
"""

from __future__ import annotations

from core.pipeline.steps import (characters, clean, context, describe, labels, rewrite, targeted_utterances,
                                 text_labels, utterances)
from core.pipeline.steps.base import Step

STEPS: dict[str, Step] = {module.STEP.name: module.STEP for module in (
    characters, utterances, targeted_utterances, labels, context, clean, rewrite, describe, text_labels)}


def get(name: str) -> Step:
    if name not in STEPS:
        raise KeyError(f"unknown pipeline step {name!r} (known: {', '.join(STEPS)})")
    return STEPS[name]
