"""Versioned prompt templates, one active version per stage; admins edit them in the browser.

Saving a template never changes an old version: it adds version n+1 and makes it active, so every
example can name the exact prompt that made it. Placeholders are `{name}` fields checked on save
against the stage's known fields (a typo would otherwise only show up as a worker error).
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from sqlalchemy import func, select, update

from core.auth import Actor, require_admin
from db.models import PromptTemplate
from db.session import read_session, write_session

from core.pipeline import steps as registry

# Every step's template: its fields, title and default prompt come from the step's module.
STAGES = tuple(registry.STEPS)
STAGE_TITLES = {name: step.title for name, step in registry.STEPS.items()}
FIELDS: dict[str, set[str]] = {name: set(step.fields) for name, step in registry.STEPS.items()}
DEFAULTS: dict[str, tuple[str, str]] = {name: (step.system_prompt, step.user_prompt)
                                        for name, step in registry.STEPS.items()}


class TemplateError(ValueError):
    """A template that cannot be saved; the message names the problem."""


@dataclass(frozen=True)
class TemplateView:
    id: int
    stage: str
    version: int
    system_prompt: str
    user_prompt: str
    is_active: bool

    def render(self, **values: object) -> tuple[dict[str, str], ...]:
        user = self.user_prompt.format(**values)
        if self.system_prompt:
            return ({"role": "system", "content": self.system_prompt}, {"role": "user", "content": user})
        return ({"role": "user", "content": user},)


def _view(row: PromptTemplate) -> TemplateView:
    return TemplateView(row.id, row.stage, row.version, row.system_prompt, row.user_prompt, row.is_active)


def placeholders(text: str) -> set[str]:
    try:
        return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(text) if field}
    except ValueError as error:  # an unmatched brace
        raise TemplateError(f"The template does not parse: {error}. Write literal braces as {{{{ and }}}}.") from None


def check_template(stage: str, system_prompt: str, user_prompt: str) -> None:
    if stage not in STAGES:
        raise TemplateError(f"Unknown stage {stage!r}.")
    if not user_prompt.strip():
        raise TemplateError("The user prompt is empty.")
    used = placeholders(user_prompt)
    unknown = used - FIELDS[stage]
    if unknown:
        raise TemplateError(f"Unknown placeholder(s) {', '.join('{' + u + '}' for u in sorted(unknown))}; "
                            f"this stage offers {', '.join('{' + f + '}' for f in sorted(FIELDS[stage]))}.")
    if placeholders(system_prompt):
        raise TemplateError("The system prompt cannot use placeholders.")


def seed_defaults() -> None:
    """Version 1 of each stage's template, once."""
    with write_session() as session:
        present = set(session.scalars(select(PromptTemplate.stage).distinct()))
        for stage in STAGES:
            if stage not in present:
                system_prompt, user_prompt = DEFAULTS[stage]
                session.add(PromptTemplate(stage=stage, version=1, system_prompt=system_prompt,
                                           user_prompt=user_prompt, is_active=True))


def active_templates() -> dict[str, TemplateView]:
    seed_defaults()
    with read_session() as session:
        rows = session.scalars(select(PromptTemplate).where(PromptTemplate.is_active.is_(True)))
        return {row.stage: _view(row) for row in rows}


def get_template(template_id: int) -> TemplateView:
    with read_session() as session:
        row = session.get(PromptTemplate, template_id)
        if row is None:
            raise TemplateError(f"No template with id {template_id}.")
        return _view(row)


def versions(stage: str) -> list[TemplateView]:
    seed_defaults()
    with read_session() as session:
        rows = session.scalars(select(PromptTemplate).where(PromptTemplate.stage == stage)
                               .order_by(PromptTemplate.version.desc()))
        return [_view(row) for row in rows]


def save_template(actor: Actor | None, stage: str, system_prompt: str, user_prompt: str) -> TemplateView:
    """A new, active version of the stage's template (older versions stay, inactive)."""
    actor = require_admin(actor)
    check_template(stage, system_prompt, user_prompt)
    with write_session() as session:
        latest = session.scalar(select(func.max(PromptTemplate.version)).where(PromptTemplate.stage == stage)) or 0
        session.execute(update(PromptTemplate).where(PromptTemplate.stage == stage).values(is_active=False))
        row = PromptTemplate(stage=stage, version=latest + 1, system_prompt=system_prompt.strip(),
                             user_prompt=user_prompt.strip(), is_active=True, created_by_id=actor.id)
        session.add(row)
        session.flush()
        return _view(row)


def activate(actor: Actor | None, template_id: int) -> TemplateView:
    """Make an older version the one new runs use."""
    require_admin(actor)
    with write_session() as session:
        row = session.get(PromptTemplate, template_id)
        if row is None:
            raise TemplateError(f"No template with id {template_id}.")
        session.execute(update(PromptTemplate).where(PromptTemplate.stage == row.stage).values(is_active=False))
        row.is_active = True
        session.flush()
        return _view(row)
