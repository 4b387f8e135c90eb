"""One page of examples for the Curate page: rows as plain dataclasses, never ORM objects."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from core.auth import Actor, require_page
from core.curate import filters
from core.curate.filters import CurationFilter
from core.curate.labels import current_labels
from core.labels import shown_by
from db.models import Character, Example, Signal, Story, Suggestion
from db.session import read_session

MAX_PAGE = 500


@dataclass(frozen=True)
class ExampleRow:
    id: int
    kind: str
    status: str
    text: str
    context: str
    character: str
    story: str
    source: str
    labels: tuple[str, ...]
    scores: dict[str, float]
    relabelled: bool
    oot_names: tuple[str, ...]
    signals: dict[str, float]


def search(actor: Actor | None, f: CurationFilter, sort: str = "oldest", offset: int = 0,
           limit: int = 50) -> tuple[list[ExampleRow], int]:
    """One sorted page of the examples matching `f`, and how many match in all."""
    require_page(actor, "curate")
    limit = max(1, min(limit, MAX_PAGE))
    with read_session() as session:
        total = filters.count(session, f)
        ids = filters.page_ids(session, f, sort, offset, limit)
        return _rows(session, ids), total


def _rows(session, ids: list[int]) -> list[ExampleRow]:
    if not ids:
        return []
    query = (
        select(Example, Character.name, Story.title)
        .outerjoin(Character, Character.id == Example.character_id)
        .outerjoin(Story, Story.id == Example.story_id)
        .where(Example.id.in_(ids))
    )
    found = {e.id: (e, name, title) for e, name, title in session.execute(query).tuples()}
    labels = current_labels(ids, session)
    oot: dict[int, list[str]] = {}
    for example_id, name in session.execute(select(Example.id, Suggestion.oot_name).join(Suggestion, shown_by()).where(
            Example.id.in_(ids), Suggestion.oot_name.is_not(None))).tuples():
        oot.setdefault(example_id, []).append(name)
    signals: dict[int, dict[str, float]] = {}
    for example_id, kind, value in session.execute(select(Signal.example_id, Signal.kind, Signal.value).where(
            Signal.example_id.in_(ids))).tuples():
        signals.setdefault(example_id, {})[kind] = value
    rows = []
    for example_id in ids:  # keep the SQL order
        example, character, story = found[example_id]
        current = labels[example_id]
        rows.append(ExampleRow(
            example.id, str(example.kind.value if hasattr(example.kind, "value") else example.kind), example.status,
            example.text, example.context or "", character or "", story or "", example.source or "",
            current.labels, current.scores, current.relabelled, tuple(sorted(set(oot.get(example_id, [])))),
            signals.get(example_id, {}),
        ))
    return rows
