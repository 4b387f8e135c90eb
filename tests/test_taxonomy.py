"""Taxonomies: the seeded defaults, creating, editing and importing label sets, and who may do it.

Database tests are few and each checks a whole story, because every one pays for a fresh
migrated database; the file-format checks need no database and are parametrised freely.
"""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import func, select

from core import taxonomy
from core.auth import PermissionDenied
from core.taxonomy import TaxonomyError
from db.models import Label, LabelGrouping, OOTAction, OOTMapping, Taxonomy
from db.session import read_session

GOEMOTIONS_ORDER = (
    "admiration amusement anger annoyance approval caring confusion curiosity desire disappointment "
    "disapproval disgust embarrassment excitement fear gratitude grief joy love nervousness optimism "
    "pride realization relief remorse sadness surprise neutral"
).split()
DEFAULT_TABLES = (Taxonomy, Label, LabelGrouping, OOTMapping)


def _count(model) -> int:
    with read_session() as session:
        return session.scalar(select(func.count()).select_from(model))


def _ids(name: str) -> int:
    return taxonomy.get_taxonomy_by_name(name).id


# --------------------------------------------------------------------------- defaults


def test_seed_defaults_creates_the_three_defaults_once(database):
    taxonomy.seed_defaults()
    counts = [_count(model) for model in DEFAULT_TABLES]
    taxonomy.seed_defaults()
    taxonomy.seed_defaults()
    assert [_count(model) for model in DEFAULT_TABLES] == counts
    assert counts[:3] == [3, 28 + 7 + 4, 28 + 28]

    goemotions = taxonomy.get_taxonomy_by_name("GoEmotions")
    assert goemotions.label_names == GOEMOTIONS_ORDER
    assert [label.position for label in goemotions.labels] == list(range(28))
    assert all(label.description.endswith(".") for label in goemotions.labels)
    assert taxonomy.get_taxonomy_by_name("Ekman").label_names == [
        "anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]
    assert taxonomy.get_taxonomy_by_name("Sentiment").label_names == ["positive", "negative", "ambiguous", "neutral"]
    views = {view.name: view for view in taxonomy.list_taxonomies()}
    assert (views["GoEmotions"].label_count, views["Ekman"].label_count, views["Sentiment"].label_count) == (28, 7, 4)

    ekman = taxonomy.grouping(goemotions.id, _ids("Ekman"))
    assert len(ekman) == 28 and set(ekman) == set(GOEMOTIONS_ORDER)
    assert (ekman["annoyance"], ekman["nervousness"], ekman["embarrassment"]) == ("anger", "fear", "sadness")
    assert (ekman["curiosity"], ekman["caring"], ekman["neutral"]) == ("surprise", "joy", "neutral")
    sentiment = taxonomy.grouping(goemotions.id, _ids("Sentiment"))
    assert len(sentiment) == 28
    assert (sentiment["confusion"], sentiment["grief"], sentiment["relief"]) == ("ambiguous", "negative", "positive")
    assert taxonomy.grouping(_ids("Ekman"), goemotions.id) == {}  # groupings go one way

    mappings = {m.source_name: m for m in taxonomy.list_oot_mappings(goemotions.id)}
    assert len(mappings) >= 12
    assert (mappings["anxiety"].target_label, mappings["guilt"].target_label) == ("nervousness", "remorse")
    assert all(m.action == OOTAction.map and m.note == "seeded synonym" for m in mappings.values())
    assert all(m.target_label in GOEMOTIONS_ORDER for m in mappings.values())
    with read_session() as session:
        assert session.scalar(select(func.count()).where(OOTMapping.decided_by_id.is_not(None))) == 0


def test_editing_a_default_survives_reseeding_and_keeps_groupings_consistent(admin):
    taxonomy.seed_defaults()
    ekman = taxonomy.get_taxonomy_by_name("Ekman")
    anger = next(label for label in ekman.labels if label.name == "anger")

    renamed = taxonomy.rename_label(admin, anger.id, "  Anger & Annoyance ")
    assert (renamed.id, renamed.name) == (anger.id, "anger & annoyance")
    assert taxonomy.grouping(_ids("GoEmotions"), ekman.id)["annoyance"] == "anger & annoyance"
    with pytest.raises(TaxonomyError, match="already has a label 'joy'"):
        taxonomy.rename_label(admin, anger.id, "JOY")

    # Dropping a label drops its groupings (anger, annoyance, disapproval) and nothing else.
    kept = [(name, "") for name in taxonomy.get_taxonomy(ekman.id).label_names if name != "anger & annoyance"]
    taxonomy.update_taxonomy(admin, ekman.id, labels=kept)
    assert len(taxonomy.grouping(_ids("GoEmotions"), ekman.id)) == 25

    taxonomy.seed_defaults()
    assert taxonomy.get_taxonomy(ekman.id).label_names == [name for name, _ in kept]

    taxonomy.delete_taxonomy(admin, _ids("GoEmotions"))
    assert taxonomy.get_taxonomy_by_name("GoEmotions") is None
    assert (_count(Label), _count(LabelGrouping), _count(OOTMapping)) == (6 + 4, 0, 0)


# --------------------------------------------------------------------------- create / update / delete


def test_create_update_delete_lifecycle(admin):
    detail = taxonomy.create_taxonomy(
        admin, "  Plutchik ", "Eight basic emotions", [("  Trust ", "faith"), ("JOY", ""), ("deep  sadness", "x")],
        multi_label=False,
    )
    assert (detail.name, detail.multi_label) == ("Plutchik", False)
    assert detail.label_names == ["trust", "joy", "deep sadness"]
    assert not isinstance(detail, Taxonomy)
    assert taxonomy.get_taxonomy(detail.id) == detail
    ids = {label.name: label.id for label in detail.labels}

    updated = taxonomy.update_taxonomy(
        admin, detail.id, name="Plutchik v2", description="new",
        labels=[("deep sadness", "very sad"), ("trust", "faith"), ("awe", "wow")],
    )
    assert (updated.name, updated.description) == ("Plutchik v2", "new")
    assert updated.label_names == ["deep sadness", "trust", "awe"]
    assert [label.position for label in updated.labels] == [0, 1, 2]
    by_name = {label.name: label for label in updated.labels}
    assert by_name["deep sadness"].id == ids["deep sadness"] and by_name["deep sadness"].description == "very sad"
    assert by_name["trust"].id == ids["trust"]
    assert by_name["awe"].id not in ids.values()
    with read_session() as session:
        assert session.get(Label, ids["joy"]) is None

    with pytest.raises(TaxonomyError, match="already exists"):
        taxonomy.create_taxonomy(admin, "PLUTCHIK V2", "", [("a", ""), ("b", "")])
    taxonomy.delete_taxonomy(admin, detail.id)
    assert (_count(Taxonomy), _count(Label)) == (0, 0)
    with pytest.raises(TaxonomyError, match="No taxonomy"):
        taxonomy.delete_taxonomy(admin, detail.id)


def test_bad_labels_are_refused_with_a_reason_and_nothing_is_saved(admin):
    cases = [
        ([("joy", ""), ("Joy ", "")], "labels, label 2: duplicate label 'joy' (first at label 1)"),
        ([("joy", ""), ("   ", "")], "labels, label 2: empty label name"),
        ([("joy", ""), ("x" * 65, "")], "labels, label 2: label 'xxxxxxxxxxxxxxxxxxxx'... is 65 characters long"),
        ([("joy", "")], "labels: a taxonomy needs at least 2 labels (found 1)"),
    ]
    for labels, message in cases:
        with pytest.raises(TaxonomyError, match="^" + re.escape(message)):
            taxonomy.create_taxonomy(admin, "Bad", "", labels)
    good = taxonomy.create_taxonomy(admin, "Good", "", [("a", ""), ("b", "")])
    with pytest.raises(TaxonomyError, match="duplicate label 'a'"):
        taxonomy.update_taxonomy(admin, good.id, name="Renamed", labels=[("a", ""), ("A", "")])
    assert taxonomy.get_taxonomy(good.id) == good
    assert (_count(Taxonomy), _count(Label)) == (1, 2)


def test_annotator_cannot_change_taxonomies(annotator, admin):
    detail = taxonomy.create_taxonomy(admin, "Mine", "", [("a", ""), ("b", "")])
    attempts = [
        lambda: taxonomy.create_taxonomy(annotator, "X", "", [("a", ""), ("b", "")]),
        lambda: taxonomy.update_taxonomy(annotator, detail.id, name="Y"),
        lambda: taxonomy.rename_label(annotator, detail.labels[0].id, "c"),
        lambda: taxonomy.delete_taxonomy(annotator, detail.id),
        lambda: taxonomy.import_taxonomy(annotator, "Z", "l.txt", b"a\nb\n"),
        lambda: taxonomy.create_taxonomy(None, "X", "", [("a", ""), ("b", "")]),
    ]
    for attempt in attempts:
        with pytest.raises(PermissionDenied):
            attempt()
    assert taxonomy.get_taxonomy(detail.id) == detail
    assert _count(Taxonomy) == 1
    assert [view.name for view in taxonomy.list_taxonomies()] == ["Mine"]  # reading is open to all


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("filename, data", [
    ("labels.csv", b"Name,Description\nJoy,feeling good\n\nanger,\"mad, cross\"\n"),
    ("labels.csv", b"\xef\xbb\xbfname\r\njoy\r\nanger\r\n"),
    ("labels.json", json.dumps(["Joy", "anger"]).encode()),
    ("labels.json", json.dumps([{"name": "joy", "description": "feeling good"}, {"name": "anger"}]).encode()),
    ("labels.json", json.dumps({"joy": "feeling good", "anger": "mad, cross"}).encode()),
    ("labels.txt", b"# my labels\nJoy: feeling good\n\nanger\n"),
])
def test_parse_taxonomy_file_formats(filename, data):
    labels = taxonomy.parse_taxonomy_file(filename, data)
    assert [name for name, _ in labels] == ["joy", "anger"]
    if b"feeling good" in data:
        assert labels[0][1] == "feeling good"


BAD_FILES = [
    ("labels.txt", b"joy\nanger\n  JOY \n", "labels.txt, line 3: duplicate label 'joy' (first at line 1)"),
    ("labels.csv", b"name,description\njoy,x\n,y\n", "labels.csv, line 3: empty label name"),
    ("labels.csv", b"label,description\njoy,x\n", "labels.csv, line 1: the header needs a 'name' column"),
    ("labels.json", b'["joy", 3]', "labels.json, entry 2: expected a name"),
    ("labels.json", b'[{"description": "x"}, {"name": "b"}]', "labels.json, entry 1: no 'name' field"),
    ("labels.json", b'{"joy": "x", "anger": 3}', "labels.json, entry 'anger': expected text, got int"),
    ("labels.json", b'["joy",\n "anger"', "labels.json, line 2: not valid JSON"),
    ("labels.json", b'"joy"', "labels.json: expected a list of names"),
    ("labels.txt", b"only\n", "labels.txt: a taxonomy needs at least 2 labels (found 1)"),
    ("labels.txt", b"joy\n" + b"x" * 70 + b"\n", "labels.txt, line 2: label 'xxxx"),
    ("labels.txt", b"joy\nang\xe9r\n", "labels.txt: not UTF-8 text (byte 0xe9 at position 7)"),
    ("labels.txt", b"\n \n", "labels.txt: the file is empty"),
    ("labels.xlsx", b"joy", "labels.xlsx: unsupported file type '.xlsx'"),
]


@pytest.mark.parametrize("filename, data, message", BAD_FILES)
def test_bad_taxonomy_files_name_the_file_and_the_place(filename, data, message):
    with pytest.raises(TaxonomyError) as caught:
        taxonomy.parse_taxonomy_file(filename, data)
    assert str(caught.value).startswith(message)


def test_import_taxonomy_saves_good_files_and_nothing_of_bad_ones(admin):
    for filename, data, message in BAD_FILES:
        with pytest.raises(TaxonomyError, match="^" + re.escape(message)):
            taxonomy.import_taxonomy(admin, "Imported", filename, data)
    assert (_count(Taxonomy), _count(Label)) == (0, 0)

    detail = taxonomy.import_taxonomy(admin, "From file", "emotions.txt", b"awe: wonder\nboredom\ncalm: at peace\n",
                                      description="three")
    assert detail.label_names == ["awe", "boredom", "calm"]
    assert [label.description for label in detail.labels] == ["wonder", "", "at peace"]
    assert taxonomy.get_taxonomy_by_name("From file").description == "three"
