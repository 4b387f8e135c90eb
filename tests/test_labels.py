"""Threshold and out-of-taxonomy dictionary: labels are derived from kept soft scores."""

import pytest

from core import labels, taxonomy
from core.auth import PermissionDenied
from db.models import Example, ExampleKind, OOTMapping
from db.session import read_session, write_session
from sqlalchemy import select


def _goemotions_id() -> int:
    taxonomy.seed_defaults()
    return taxonomy.get_taxonomy_by_name("GoEmotions").id


def _example(taxonomy_id: int, scored: list[tuple[str, float]]) -> int:
    with write_session() as session:
        example = Example(kind=ExampleKind.contextless, text="I keep checking the door.", taxonomy_id=taxonomy_id)
        session.add(example)
        session.flush()
        labels.add_suggestions(session, example.id, taxonomy_id,
                               [labels.ScoredName(n, s) for n, s in scored], agent="teacher")
        labels.refresh_oot_counts(session, taxonomy_id)
        return example.id


def _mapping(taxonomy_id: int, name: str) -> OOTMapping:
    with read_session() as session:
        return session.scalar(select(OOTMapping).where(OOTMapping.taxonomy_id == taxonomy_id,
                                                       OOTMapping.source_name == name))


def test_seeded_synonym_counts_for_its_label_and_unknown_name_waits(database):
    tid = _goemotions_id()
    example = _example(tid, [("Anxiety", 0.8), ("fear", 0.2), ("doom-scrolling dread", 0.6)])
    assert labels.example_labels([example]) == {example: ["nervousness"]}
    pending = _mapping(tid, "doom-scrolling dread")
    assert pending.action.value == "pending" and pending.occurrences == 1
    assert _mapping(tid, "anxiety").occurrences == 1
    assert sorted(labels.oot_names([example])[example]) == [("anxiety", "map"), ("doom-scrolling dread", "pending")]


def test_threshold_change_changes_labels_not_scores(database, admin):
    tid = _goemotions_id()
    example = _example(tid, [("joy", 0.35), ("relief", 0.25)])
    assert labels.example_labels([example])[example] == ["joy"]
    labels.set_threshold(admin, 0.2)
    assert labels.example_labels([example])[example] == ["joy", "relief"]
    labels.set_threshold(admin, 0.5)
    assert labels.example_labels([example])[example] == []
    assert labels.teacher_scores([example])[example] == {"joy": 0.35, "relief": 0.25}
    with pytest.raises(labels.LabelError):
        labels.set_threshold(admin, 0)


def test_decision_is_reapplied_to_every_example(database, admin):
    tid = _goemotions_id()
    first = _example(tid, [("hopefulness", 0.9)])
    second = _example(tid, [("hopefulness", 0.5), ("joy", 0.4)])
    assert labels.example_labels([first, second]) == {first: [], second: ["joy"]}
    assert labels.decide_oot(admin, tid, "Hopefulness", "map", "optimism") == 2
    assert labels.example_labels([first, second]) == {first: ["optimism"], second: ["joy", "optimism"]}
    assert _mapping(tid, "hopefulness").occurrences == 2
    labels.decide_oot(admin, tid, "hopefulness", "drop")
    assert labels.example_labels([first, second]) == {first: [], second: ["joy"]}
    # a later example with the same name follows the dictionary at once
    labels.decide_oot(admin, tid, "hopefulness", "map", "optimism")
    third = _example(tid, [("hopefulness", 0.7)])
    assert labels.example_labels([third])[third] == ["optimism"]


def test_bad_decisions_are_refused(database, admin, annotator):
    tid = _goemotions_id()
    with pytest.raises(PermissionDenied):
        labels.decide_oot(annotator, tid, "anxiety", "drop")
    with pytest.raises(labels.LabelError, match="not a label"):
        labels.decide_oot(admin, tid, "anxiety", "map", "worry")
    with pytest.raises(labels.LabelError, match="needs the taxonomy label"):
        labels.decide_oot(admin, tid, "anxiety", "map")
    with pytest.raises(labels.LabelError, match="is a label of this taxonomy"):
        labels.decide_oot(admin, tid, "joy", "drop")
    with pytest.raises(labels.LabelError, match="Unknown action"):
        labels.decide_oot(admin, tid, "anxiety", "forget")


def test_run_examples_filter_by_emotion_at_the_threshold_and_show_provenance(database, admin):
    from core.pipeline import runs
    from db.models import GenerationRun

    tid = _goemotions_id()
    with write_session() as session:
        run = GenerationRun(name="r", taxonomy_id=tid)
        session.add(run)
        session.flush()
        run_id = run.id
    joyful = _example(tid, [("joy", 0.8)])
    faint = _example(tid, [("joy", 0.2), ("fear", 0.6)])
    with write_session() as session:
        for example_id in (joyful, faint):
            example = session.get(Example, example_id)
            example.run_id = run_id
            example.meta = {"model": "teacher-x", "seed": 11, "templates": {"utterances": 2}}
    rows, total = runs.run_examples(admin, run_id, emotion="joy")
    assert total == 1 and [r.id for r in rows] == [joyful]
    assert "teacher-x" in rows[0].provenance and "seed 11" in rows[0].provenance and "utterances v2" in rows[0].provenance
    labels.set_threshold(admin, 0.1)
    assert runs.run_examples(admin, run_id, emotion="joy")[1] == 2
    assert [r.id for r in runs.run_examples(admin, run_id, kind="contextless", emotion="fear")[0]] == [faint]


def test_a_contextual_variant_shows_its_parents_labels_in_every_reader(database, monkeypatch):
    """A variant's suggestions are not copied: teacher scores, current labels (both read paths), Curate
    filters, review selection and verification, the label counts and export read them through the parent."""
    from core.curate import diversity, filters
    from core.curate import labels as curate_labels
    from core.datasets import export
    from core.review import selection
    from core.review.tasks import verification
    from db.models import DatasetMember, DatasetVersion, Suggestion

    tid = _goemotions_id()
    parent = _example(tid, [("fear", 0.9), ("dread", 0.5)])
    with write_session() as session:
        variant = Example(kind=ExampleKind.contextual, text="So I checked it again.", context="The lock was new.",
                          taxonomy_id=tid, parent_id=parent)
        other = Example(kind=ExampleKind.contextless, text="Nothing to see.", taxonomy_id=tid)
        session.add_all([variant, other])
        session.flush()
        variant, other = variant.id, other.id
        assert not session.scalar(select(Suggestion.id).where(Suggestion.example_id == variant))
    ids = [parent, variant, other]
    assert labels.teacher_scores(ids) == {parent: {"fear": 0.9}, variant: {"fear": 0.9}}
    assert labels.oot_names(ids) == {e: [("dread", "pending")] for e in (parent, variant)}
    small = curate_labels.current_labels(ids)
    monkeypatch.setattr(curate_labels, "CHUNK", 0)  # the many-examples path: range scans over the holders
    assert curate_labels.current_labels(ids) == small
    assert small[variant].labels == ("fear",) == small[parent].labels and small[other].labels == ()
    with read_session() as session:
        def matching(**f) -> set[int]:
            return set(filters.matching_ids(session, filters.CurationFilter(**f)))
        assert matching(labels=("fear",)) == matching(oot="any") == matching(score_min=0.8) == {parent, variant}
        assert matching(labels=("fear",), score_min=0.8) == {parent, variant}
        assert matching(oot="pending") == {parent, variant} and matching(oot="none") == {other}
        assert set(selection.select_example_ids(session, selection.Selection(label="fear"), tid)) == {parent, variant}
        assert set(selection.select_example_ids(session, selection.Selection(per_emotion=5), tid)) >= {parent, variant}
        assert selection.top_labels(session, ids, tid) == {parent: "fear", variant: "fear"}
        assert verification._scores(session, ids, tid) == {parent: {"fear": 0.9}, variant: {"fear": 0.9}}
        assert diversity.teacher_label_counts(session).get("fear") == 2
    with write_session() as session:
        version = DatasetVersion(name="v", taxonomy_id=tid, content_hash="h")
        session.add(version)
        session.flush()
        session.add_all([DatasetMember(version_id=version.id, example_id=e, split="train", labels=[], scores={})
                         for e in ids])
        session.flush()
        assert export._oot_names(session, version.id) == {parent: ["dread"], variant: ["dread"]}
