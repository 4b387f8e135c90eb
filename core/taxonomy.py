"""Label sets (taxonomies): the defaults EmoForge ships, and the ones admins create or import.

Pages get plain frozen dataclasses, never ORM objects. Functions that change something take the
`actor` first and check it. Label names are normalised (stripped, lower case, single spaces) so
that 'Joy', ' joy ' and 'JOY' can never become three labels.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from core.auth import Actor, require_admin
from core.uploads import decode_upload
from db.models import Example, Label, LabelGrouping, OOTAction, OOTMapping, Suggestion, Taxonomy, utcnow
from db.session import read_session, write_session

MAX_LABEL_LENGTH = 64
MAX_TAXONOMY_NAME_LENGTH = 128
MIN_LABELS = 2
TAXONOMY_FILE_TYPES = (".csv", ".json", ".txt")


class TaxonomyError(ValueError):
    """A taxonomy or a taxonomy file that cannot be used; the message says what and where."""


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class LabelView:
    id: int
    name: str
    description: str
    position: int


@dataclass(frozen=True)
class TaxonomyView:
    id: int
    name: str
    description: str
    label_count: int
    multi_label: bool


@dataclass(frozen=True)
class TaxonomyDetail:
    id: int
    name: str
    description: str
    multi_label: bool
    labels: tuple[LabelView, ...]

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.labels]


@dataclass(frozen=True)
class OOTMappingView:
    id: int
    source_name: str
    action: OOTAction
    target_label: str | None
    occurrences: int
    note: str


def _detail(taxonomy: Taxonomy) -> TaxonomyDetail:
    labels = tuple(LabelView(l.id, l.name, l.description, l.position) for l in taxonomy.labels)
    return TaxonomyDetail(taxonomy.id, taxonomy.name, taxonomy.description, taxonomy.multi_label, labels)


# --------------------------------------------------------------------------- the defaults

GOEMOTIONS = "GoEmotions"
EKMAN = "Ekman"
SENTIMENT = "Sentiment"

# Order of GoEmotions' emotions.txt: label ids in the data set are positions in this list.
GOEMOTIONS_LABELS: list[tuple[str, str]] = [
    ("admiration", "Respect or esteem for someone or something found impressive."),
    ("amusement", "Finding something funny, playful or entertaining."),
    ("anger", "Strong displeasure or hostility toward someone or something felt as a wrong."),
    ("annoyance", "Mild anger: irritation or impatience at something bothersome."),
    ("approval", "Agreeing with, accepting or thinking well of something."),
    ("caring", "Kindness and concern for someone's well-being, often with wish to help."),
    ("confusion", "Not understanding what is happening or what is meant; feeling puzzled."),
    ("curiosity", "Wanting to know, find out or explore something."),
    ("desire", "Wanting something or someone, or wishing strongly that something would happen."),
    ("disappointment", "Sadness or displeasure because hopes or expectations were not met."),
    ("disapproval", "Disagreeing with, rejecting or thinking badly of something."),
    ("disgust", "Revulsion at something found repulsive, offensive or morally repugnant."),
    ("embarrassment", "Self-conscious discomfort, awkwardness or shame in front of others."),
    ("excitement", "Eager, energised enthusiasm about something happening or about to happen."),
    ("fear", "Being afraid of danger, harm or a threat."),
    ("gratitude", "Thankfulness and appreciation for something received or done."),
    ("grief", "Deep sorrow over a loss, especially someone's death."),
    ("joy", "Happiness, delight or pleasure."),
    ("love", "Strong affection, attachment or romantic feeling for someone or something."),
    ("nervousness", "Unease, worry or anxiety about what might happen."),
    ("optimism", "Hope and confidence that things will turn out well."),
    ("pride", "Satisfaction with one's own achievements, or those of someone close."),
    ("realization", "Suddenly becoming aware of or understanding something."),
    ("relief", "Release from worry or distress once a threat or burden is gone."),
    ("remorse", "Regret and guilt over something one did wrong."),
    ("sadness", "Unhappiness, sorrow or emotional pain."),
    ("surprise", "Being startled or astonished by something unexpected."),
    ("neutral", "No particular emotion is expressed."),
]

EKMAN_LABELS: list[tuple[str, str]] = [
    ("anger", "Displeasure, irritation or hostility, from mild annoyance to rage."),
    ("disgust", "Revulsion at something repulsive or offensive."),
    ("fear", "Feeling threatened, afraid, anxious or nervous."),
    ("joy", "Any pleasant, positive feeling: happiness, love, gratitude, pride, hope."),
    ("sadness", "Sorrow, disappointment, grief, regret or shame."),
    ("surprise", "Reaction to the unexpected, including confusion, curiosity and sudden insight."),
    ("neutral", "No particular emotion is expressed."),
]

SENTIMENT_LABELS: list[tuple[str, str]] = [
    ("positive", "A pleasant emotion such as joy, love, gratitude or relief."),
    ("negative", "An unpleasant emotion such as anger, fear, sadness or disgust."),
    ("ambiguous", "An emotion that can be pleasant or unpleasant: surprise, curiosity, confusion, realization."),
    ("neutral", "No particular emotion is expressed."),
]

# GoEmotions label -> Ekman label, as published in the GoEmotions paper (Demszky et al., 2020).
EKMAN_GROUPING: dict[str, list[str]] = {
    "anger": ["anger", "annoyance", "disapproval"],
    "disgust": ["disgust"],
    "fear": ["fear", "nervousness"],
    "joy": ["joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism", "relief",
            "pride", "admiration", "desire", "caring"],
    "sadness": ["sadness", "disappointment", "embarrassment", "grief", "remorse"],
    "surprise": ["surprise", "realization", "confusion", "curiosity"],
    "neutral": ["neutral"],
}

# GoEmotions label -> sentiment, as published in the GoEmotions paper.
SENTIMENT_GROUPING: dict[str, list[str]] = {
    "positive": ["amusement", "excitement", "joy", "love", "desire", "optimism", "caring", "pride",
                 "admiration", "gratitude", "relief", "approval"],
    "negative": ["fear", "nervousness", "remorse", "embarrassment", "disappointment", "sadness", "grief",
                 "disgust", "anger", "annoyance", "disapproval"],
    "ambiguous": ["realization", "surprise", "curiosity", "confusion"],
    "neutral": ["neutral"],
}

# Emotion names a teacher model often uses instead of a GoEmotions label. Only clear synonyms:
# anything debatable is left for a person to decide in the out-of-taxonomy review.
GOEMOTIONS_SYNONYMS: dict[str, str] = {
    "anxiety": "nervousness",
    "worry": "nervousness",
    "happiness": "joy",
    "delight": "joy",
    "frustration": "annoyance",
    "irritation": "annoyance",
    "rage": "anger",
    "fury": "anger",
    "terror": "fear",
    "hope": "optimism",
    "shame": "embarrassment",
    "guilt": "remorse",
    "regret": "remorse",
    "sorrow": "sadness",
    "astonishment": "surprise",
    "thankfulness": "gratitude",
    "affection": "love",
    "compassion": "caring",
}
SEEDED_SYNONYM_NOTE = "seeded synonym"


def seed_defaults() -> None:
    """Create the default taxonomies that are missing. Safe to call on every start.

    A default taxonomy that already exists is never touched, so an admin's edits survive restarts.
    Groupings and synonyms are seeded together with the taxonomy they belong to.
    """
    try:
        with write_session() as session:
            _seed(session)
    except IntegrityError:
        # Another process (app and worker start together) seeded at the same moment: its
        # transaction won, ours rolled back. What is left to do is only what it did not do.
        with write_session() as session:
            _seed(session)


def _seed(session: Session) -> None:
    created = {
        name: _create_if_absent(session, name, description, labels)
        for name, description, labels in (
            (GOEMOTIONS, "The 27 emotions and neutral of the GoEmotions data set (Demszky et al., 2020).",
             GOEMOTIONS_LABELS),
            (EKMAN, "Ekman's six basic emotions and neutral; GoEmotions labels group into them.", EKMAN_LABELS),
            (SENTIMENT, "Positive, negative, ambiguous or neutral; GoEmotions labels group into them.",
             SENTIMENT_LABELS),
        )
    }
    session.flush()
    for target, groups in ((EKMAN, EKMAN_GROUPING), (SENTIMENT, SENTIMENT_GROUPING)):
        if created[GOEMOTIONS] or created[target]:
            _seed_grouping(session, GOEMOTIONS, target, groups)
    if created[GOEMOTIONS]:
        _seed_synonyms(session, GOEMOTIONS, GOEMOTIONS_SYNONYMS)


def _create_if_absent(session: Session, name: str, description: str, labels: list[tuple[str, str]]) -> bool:
    if session.scalar(select(Taxonomy.id).where(Taxonomy.name == name)) is not None:
        return False
    session.add(Taxonomy(name=name, description=description, multi_label=True, labels=_new_labels(labels)))
    return True


def _label_ids(session: Session, taxonomy_name: str) -> dict[str, int]:
    rows = session.execute(
        select(Label.name, Label.id)
        .join(Taxonomy, Taxonomy.id == Label.taxonomy_id)
        .where(Taxonomy.name == taxonomy_name)
    )
    return {name: label_id for name, label_id in rows}


def _seed_grouping(session: Session, source: str, target: str, groups: dict[str, list[str]]) -> None:
    source_ids, target_ids = _label_ids(session, source), _label_ids(session, target)
    existing = set(session.execute(select(LabelGrouping.source_label_id, LabelGrouping.target_label_id)).tuples())
    for target_name, source_names in groups.items():
        for source_name in source_names:
            pair = (source_ids.get(source_name), target_ids.get(target_name))
            # A label an admin renamed or removed is skipped rather than guessed at.
            if None not in pair and pair not in existing:
                session.add(LabelGrouping(source_label_id=pair[0], target_label_id=pair[1]))


def _seed_synonyms(session: Session, taxonomy_name: str, synonyms: dict[str, str]) -> None:
    taxonomy_id = session.scalar(select(Taxonomy.id).where(Taxonomy.name == taxonomy_name))
    label_ids = _label_ids(session, taxonomy_name)
    known = set(session.scalars(select(OOTMapping.source_name).where(OOTMapping.taxonomy_id == taxonomy_id)))
    for source_name, target in synonyms.items():
        if source_name not in known and target in label_ids:
            session.add(OOTMapping(
                taxonomy_id=taxonomy_id, source_name=source_name, action=OOTAction.map,
                target_label_id=label_ids[target], decided_by_id=None, note=SEEDED_SYNONYM_NOTE,
            ))


# --------------------------------------------------------------------------- reading


def list_taxonomies() -> list[TaxonomyView]:
    counts = select(Label.taxonomy_id, func.count(Label.id).label("n")).group_by(Label.taxonomy_id).subquery()
    query = (
        select(Taxonomy, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.taxonomy_id == Taxonomy.id)
        .order_by(Taxonomy.name)
    )
    with read_session() as session:
        return [
            TaxonomyView(t.id, t.name, t.description, int(n), t.multi_label)
            for t, n in session.execute(query).tuples()
        ]


def get_taxonomy(taxonomy_id: int) -> TaxonomyDetail:
    with read_session() as session:
        return _detail(_taxonomy_or_error(session, taxonomy_id))


def get_taxonomy_by_name(name: str) -> TaxonomyDetail | None:
    with read_session() as session:
        taxonomy = session.scalar(select(Taxonomy).where(Taxonomy.name == name.strip()))
        return _detail(taxonomy) if taxonomy is not None else None


def grouping(source_taxonomy_id: int, target_taxonomy_id: int) -> dict[str, str]:
    """Source label name -> target label name (e.g. GoEmotions 'annoyance' -> Ekman 'anger')."""
    source, target = aliased(Label), aliased(Label)
    query = (
        select(source.name, target.name)
        .join(LabelGrouping, LabelGrouping.source_label_id == source.id)
        .join(target, target.id == LabelGrouping.target_label_id)
        .where(source.taxonomy_id == source_taxonomy_id, target.taxonomy_id == target_taxonomy_id)
        .order_by(source.position, target.position)
    )
    result: dict[str, str] = {}
    with read_session() as session:
        for source_name, target_name in session.execute(query).tuples():
            # Should a label ever be grouped into two targets, the first target in order wins.
            result.setdefault(source_name, target_name)
    return result


def list_oot_mappings(taxonomy_id: int) -> list[OOTMappingView]:
    query = (
        select(OOTMapping, Label.name)
        .outerjoin(Label, Label.id == OOTMapping.target_label_id)
        .where(OOTMapping.taxonomy_id == taxonomy_id)
        .order_by(OOTMapping.source_name)
    )
    with read_session() as session:
        return [
            OOTMappingView(m.id, m.source_name, OOTAction(m.action), label_name, m.occurrences, m.note)
            for m, label_name in session.execute(query).tuples()
        ]


def _taxonomy_or_error(session: Session, taxonomy_id: int) -> Taxonomy:
    taxonomy = session.get(Taxonomy, taxonomy_id)
    if taxonomy is None:
        raise TaxonomyError(f"No taxonomy with id {taxonomy_id}.")
    return taxonomy


# --------------------------------------------------------------------------- validation


def normalise_label(name: str) -> str:
    """'  Very   Happy ' -> 'very happy'."""
    return " ".join(str(name).split()).lower()


def _clean_labels(entries: list[tuple[str, str, str]], source: str) -> list[tuple[str, str]]:
    """Normalise and check (name, description, where) entries; `where` is 'line 3' or 'entry 2'.

    `source` (a file name, or 'labels') starts every message so the user knows what to fix.
    """
    cleaned: list[tuple[str, str]] = []
    first_seen: dict[str, str] = {}
    for raw_name, description, where in entries:
        name = _clean_label_name(raw_name, f"{source}, {where}: ")
        if name in first_seen:
            raise TaxonomyError(f"{source}, {where}: duplicate label {name!r} (first at {first_seen[name]})")
        first_seen[name] = where
        cleaned.append((name, " ".join(str(description or "").split())))
    if len(cleaned) < MIN_LABELS:
        raise TaxonomyError(f"{source}: a taxonomy needs at least {MIN_LABELS} labels (found {len(cleaned)})")
    return cleaned


def _clean_label_name(raw_name: str, prefix: str = "") -> str:
    name = normalise_label(raw_name)
    if not name:
        raise TaxonomyError(f"{prefix}empty label name")
    if len(name) > MAX_LABEL_LENGTH:
        raise TaxonomyError(
            f"{prefix}label {name[:20]!r}... is {len(name)} characters long; the limit is {MAX_LABEL_LENGTH}"
        )
    return name


def _clean_given_labels(labels: list[tuple[str, str]] | list[str]) -> list[tuple[str, str]]:
    entries = []
    for i, item in enumerate(labels, start=1):
        name, description = (item, "") if isinstance(item, str) else (item[0], item[1] if len(item) > 1 else "")
        entries.append((name, description, f"label {i}"))
    return _clean_labels(entries, "labels")


def _clean_taxonomy_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise TaxonomyError("A taxonomy needs a name.")
    if len(name) > MAX_TAXONOMY_NAME_LENGTH:
        raise TaxonomyError(f"A taxonomy name is at most {MAX_TAXONOMY_NAME_LENGTH} characters.")
    return name


def _check_name_free(session: Session, name: str, except_id: int | None = None) -> None:
    query = select(Taxonomy.id).where(func.lower(Taxonomy.name) == name.lower())
    if except_id is not None:
        query = query.where(Taxonomy.id != except_id)
    if session.scalar(query) is not None:
        raise TaxonomyError(f"A taxonomy named {name!r} already exists.")


def _new_labels(labels: list[tuple[str, str]]) -> list[Label]:
    return [Label(name=name, description=description, position=i) for i, (name, description) in enumerate(labels)]


# --------------------------------------------------------------------------- changing


def create_taxonomy(
    actor: Actor | None,
    name: str,
    description: str,
    labels: list[tuple[str, str]],
    multi_label: bool = True,
) -> TaxonomyDetail:
    require_admin(actor)
    name = _clean_taxonomy_name(name)
    cleaned = _clean_given_labels(labels)
    return _insert_taxonomy(name, description, cleaned, multi_label)


def _insert_taxonomy(name: str, description: str, labels: list[tuple[str, str]], multi_label: bool) -> TaxonomyDetail:
    with write_session() as session:
        _check_name_free(session, name)
        taxonomy = Taxonomy(name=name, description=(description or "").strip(), multi_label=multi_label,
                            labels=_new_labels(labels))
        session.add(taxonomy)
        session.flush()
        return _detail(taxonomy)


@dataclass(frozen=True)
class LabelRemoval:
    """What removing one label touches (the Admin page shows it before asking to confirm)."""

    name: str
    suggestions: int  # teacher and gold suggestions of it: kept, as out-of-taxonomy names
    groupings: int  # links to labels of other taxonomies, removed with it
    mapped_names: int  # out-of-taxonomy names mapped onto it: back to pending


class RemovalNeedsConfirmation(TaxonomyError):
    """Saving would remove labels that examples carry; nothing was changed. Save again confirming it."""

    def __init__(self, removals: list[LabelRemoval]):
        self.removals = removals
        listed = ", ".join(f"{r.name!r} ({r.suggestions} suggestion{'s' if r.suggestions != 1 else ''})"
                           for r in removals)
        super().__init__(
            f"Removing {listed} takes these labels off their examples. Confirm to remove them: the suggestions "
            f"are kept as out-of-taxonomy names and count for the label again if it is added back."
        )


# A label being renamed gets this name for a moment, so that two labels may swap names in one save.
# Real names are normalised (no leading space), so it can never clash with one.
def _renaming(label_id: int) -> str:
    return f" renaming {label_id}"


def update_taxonomy(
    actor: Actor | None,
    taxonomy_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
    labels: list[tuple[str, str]] | list[tuple[int | None, str, str]] | None = None,
    multi_label: bool | None = None,
    confirm_removals: bool = False,
) -> TaxonomyDetail:
    """Change what is given, in one transaction: all of it is saved, or (on any error) none of it.

    `labels` is the full new list, in order: (name, description), or (label id, name, description)
    where a row with the id of an existing label renames it. A label keeps its id (and so its
    groupings and suggestions) when its id or its name is still in the list. A label left out is
    removed; when examples carry it, only with `confirm_removals` (else RemovalNeedsConfirmation,
    listing what it touches), and its suggestions are kept as out-of-taxonomy names, which a label
    of that name added later takes back.
    """
    require_admin(actor)
    rows = _clean_label_rows(labels) if labels is not None else None
    with write_session() as session:
        taxonomy = _taxonomy_or_error(session, taxonomy_id)
        if name is not None:
            name = _clean_taxonomy_name(name)
            _check_name_free(session, name, except_id=taxonomy.id)
            taxonomy.name = name
        if description is not None:
            taxonomy.description = description.strip()
        if multi_label is not None:
            taxonomy.multi_label = multi_label
        if rows is not None:
            _replace_labels(session, taxonomy, rows, confirm_removals, actor)
        session.flush()
        session.refresh(taxonomy, ["labels"])
        return _detail(taxonomy)


def _clean_label_rows(labels: list) -> list[tuple[int | None, str, str]]:
    ids = [item[0] if not isinstance(item, str) and len(item) == 3 else None for item in labels]
    pairs = [item[1:] if not isinstance(item, str) and len(item) == 3 else item for item in labels]
    return [(label_id, n, d) for label_id, (n, d) in zip(ids, _clean_given_labels(pairs))]


def _replace_labels(session: Session, taxonomy: Taxonomy, rows: list[tuple[int | None, str, str]],
                    confirm_removals: bool, actor: Actor) -> None:
    by_id = {label.id: label for label in taxonomy.labels}
    chosen: list[tuple[Label | None, str, str]] = []
    for label_id, name, description in rows:
        if label_id is not None and label_id not in by_id:
            raise TaxonomyError(f"Label {name!r}: no label with id {label_id} in this taxonomy (reload the page).")
        chosen.append((by_id.get(label_id) if label_id is not None else None, name, description))
    # A row without an id keeps the existing label of its name, unless a row with an id took it.
    taken = {label.id for label, _, _ in chosen if label is not None}
    free = {label.name: label for label in taxonomy.labels if label.id not in taken}
    chosen = [(label or free.pop(name, None), name, description) for label, name, description in chosen]
    kept_ids = {label.id for label, _, _ in chosen if label is not None}
    removed = [label for label in taxonomy.labels if label.id not in kept_ids]
    removals = _removals(session, removed)
    if any(r.suggestions for r in removals) and not confirm_removals:
        raise RemovalNeedsConfirmation([r for r in removals if r.suggestions])
    _archive_suggestions(session, taxonomy.id, removed, actor)

    renamed = [(label, name) for label, name, _ in chosen if label is not None and label.name != name]
    for label, _ in renamed:
        label.name = _renaming(label.id)
    taxonomy.labels = [label for label, _, _ in chosen if label is not None]  # delete-orphan removes the rest
    session.flush()
    final = []
    for position, (label, name, description) in enumerate(chosen):
        label = label or Label(name=name)
        label.name, label.description, label.position = name, description, position
        final.append(label)
    taxonomy.labels = final
    session.flush()
    new_names = {label for label in final if label.id not in by_id} | {label for label, _ in renamed}
    for label in new_names:
        _take_back_suggestions(session, taxonomy.id, label)
    from core.labels import refresh_oot_counts  # core.labels imports this module

    refresh_oot_counts(session, taxonomy.id)


def _removals(session: Session, labels: list[Label]) -> list[LabelRemoval]:
    found = []
    for label in labels:
        suggestions = session.scalar(select(func.count(Suggestion.id)).where(Suggestion.label_id == label.id))
        groupings = session.scalar(select(func.count(LabelGrouping.id)).where(
            (LabelGrouping.source_label_id == label.id) | (LabelGrouping.target_label_id == label.id)))
        mapped = session.scalar(select(func.count(OOTMapping.id)).where(OOTMapping.target_label_id == label.id))
        found.append(LabelRemoval(label.name, int(suggestions or 0), int(groupings or 0), int(mapped or 0)))
    return found


def _archive_suggestions(session: Session, taxonomy_id: int, labels: list[Label], actor: Actor) -> None:
    """Before the labels go: their suggestions become out-of-taxonomy names instead of being deleted.

    A suggestion of the label itself keeps the label's name as its OOT name (pending, with a note); one
    that counted for it through a mapped OOT name keeps that name, and the mapping goes back to pending.
    """
    for label in labels:
        native = session.execute(
            update(Suggestion).where(Suggestion.label_id == label.id, Suggestion.oot_name.is_(None))
            .values(label_id=None, oot_name=label.name).execution_options(synchronize_session=False)
        ).rowcount
        session.execute(update(Suggestion).where(Suggestion.label_id == label.id).values(label_id=None)
                        .execution_options(synchronize_session=False))
        session.execute(update(OOTMapping).where(OOTMapping.target_label_id == label.id)
                        .values(action=OOTAction.pending, target_label_id=None)
                        .execution_options(synchronize_session=False))
        if native:
            mapping = session.scalar(select(OOTMapping).where(OOTMapping.taxonomy_id == taxonomy_id,
                                                              OOTMapping.source_name == label.name))
            if mapping is None:
                mapping = OOTMapping(taxonomy_id=taxonomy_id, source_name=label.name, occurrences=0)
                session.add(mapping)
            mapping.action, mapping.target_label_id = OOTAction.pending, None
            mapping.decided_by_id, mapping.decided_at = actor.id, utcnow()
            mapping.note = f"a label until {actor.username} removed it; add the label again to restore it"


def _take_back_suggestions(session: Session, taxonomy_id: int, label: Label) -> None:
    """A name that is a label is no out-of-taxonomy name: its suggestions (say of a removed label that is
    added back) count for the label again, and its OOT mapping goes."""
    examples = select(Example.id).where(Example.taxonomy_id == taxonomy_id)
    session.execute(update(Suggestion).where(Suggestion.oot_name == label.name, Suggestion.example_id.in_(examples))
                    .values(label_id=label.id, oot_name=None).execution_options(synchronize_session=False))
    session.execute(delete(OOTMapping).where(OOTMapping.taxonomy_id == taxonomy_id,
                                             OOTMapping.source_name == label.name)
                    .execution_options(synchronize_session=False))


def rename_label(actor: Actor | None, label_id: int, new_name: str) -> LabelView:
    """Rename in place: the label keeps its id, so groupings and suggestions follow it."""
    require_admin(actor)
    name = _clean_label_name(new_name)
    with write_session() as session:
        label = session.get(Label, label_id)
        if label is None:
            raise TaxonomyError(f"No label with id {label_id}.")
        taken = session.scalar(
            select(Label.id).where(Label.taxonomy_id == label.taxonomy_id, Label.name == name, Label.id != label.id)
        )
        if taken is not None:
            raise TaxonomyError(f"This taxonomy already has a label {name!r}.")
        if label.name != name:
            label.name = name
            session.flush()
            _take_back_suggestions(session, label.taxonomy_id, label)
        return LabelView(label.id, label.name, label.description, label.position)


def delete_taxonomy(actor: Actor | None, taxonomy_id: int) -> None:
    require_admin(actor)
    with write_session() as session:
        session.delete(_taxonomy_or_error(session, taxonomy_id))


# --------------------------------------------------------------------------- files


def parse_taxonomy_file(filename: str, data: bytes) -> list[tuple[str, str]]:
    """Labels from a .csv (name[,description] with a header), .json or .txt file, checked."""
    source = PurePath(filename).name or "file"
    suffix = PurePath(source).suffix.lower()
    if suffix not in TAXONOMY_FILE_TYPES:
        raise TaxonomyError(
            f"{source}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(TAXONOMY_FILE_TYPES)}"
        )
    text = decode_upload(source, data, error=TaxonomyError)
    entries = {".csv": _csv_entries, ".json": _json_entries, ".txt": _txt_entries}[suffix](source, text)
    return _clean_labels(entries, source)


def import_taxonomy(
    actor: Actor | None, name: str, filename: str, data: bytes, description: str = "", multi_label: bool = True
) -> TaxonomyDetail:
    require_admin(actor)
    name = _clean_taxonomy_name(name)
    labels = parse_taxonomy_file(filename, data)
    return _insert_taxonomy(name, description, labels, multi_label)


def _txt_entries(source: str, text: str) -> list[tuple[str, str, str]]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):  # blank lines and comments
            continue
        name, _, description = line.partition(":")
        entries.append((name, description, f"line {number}"))
    return entries


def _csv_entries(source: str, text: str) -> list[tuple[str, str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [normalise_label(column) for column in next(reader)]
    except StopIteration:
        raise TaxonomyError(f"{source}: the file is empty") from None
    if "name" not in header:
        raise TaxonomyError(
            f"{source}, line 1: the header needs a 'name' column (found: {', '.join(header) or 'nothing'})"
        )
    name_at = header.index("name")
    description_at = header.index("description") if "description" in header else None
    entries = []
    line = reader.line_num
    try:
        for row in reader:
            where, line = f"line {line + 1}", reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            name = row[name_at] if name_at < len(row) else ""
            description = row[description_at] if description_at is not None and description_at < len(row) else ""
            entries.append((name, description, where))
    except csv.Error as error:
        raise TaxonomyError(f"{source}, line {reader.line_num}: not valid CSV ({error})") from None
    return entries


def _json_entries(source: str, text: str) -> list[tuple[str, str, str]]:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise TaxonomyError(f"{source}, line {error.lineno}: not valid JSON ({error.msg})") from None
    if isinstance(data, dict):
        return [(name, _json_string(source, description, f"entry {name!r}"), f"entry {name!r}")
                for name, description in data.items()]
    if not isinstance(data, list):
        raise TaxonomyError(
            f"{source}: expected a list of names, a list of {{name, description}} objects "
            "or a {name: description} object"
        )
    return [_json_list_entry(source, item, f"entry {i}") for i, item in enumerate(data, start=1)]


def _json_list_entry(source: str, item: Any, where: str) -> tuple[str, str, str]:
    if isinstance(item, str):
        return item, "", where
    if isinstance(item, dict):
        if "name" not in item:
            raise TaxonomyError(f"{source}, {where}: no 'name' field")
        name = _json_string(source, item["name"], where)
        return name, _json_string(source, item.get("description", ""), where), where
    raise TaxonomyError(
        f"{source}, {where}: expected a name or a {{name, description}} object, got {type(item).__name__}"
    )


def _json_string(source: str, value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TaxonomyError(f"{source}, {where}: expected text, got {type(value).__name__}")
    return value
