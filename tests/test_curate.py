"""Curation: current labels, filters in SQL, bulk decisions with undo, and signals."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from core import jobs, worker
from core.auth import PermissionDenied
from core.curate import actions, browse, diversity, signals
from core.curate.filters import CurationFilter
from core.curate.labels import current_labels
from db.models import GroupSignal, JobStatus, Setting, Signal
from db.session import read_session, write_session
from tests.curate_support import add_campaign_item, add_example, add_review, make_character, make_stories


def ids_of(admin, f: CurationFilter, sort: str = "oldest") -> list[int]:
    rows, total = browse.search(admin, f, sort=sort, limit=500)
    assert total == len(rows)
    return [r.id for r in rows]


# --------------------------------------------------------------------------- current labels


def test_current_labels_follow_threshold_then_the_last_relabel_not_undone(admin):
    a = add_example("So happy!", {"joy": 0.9, "love": 0.3, "sadness": 0.29})
    b = add_example("Meh.", {})
    labels = current_labels([a, b])
    assert labels[a].labels == ("joy", "love") and labels[a].scores["sadness"] == 0.29
    assert labels[b].labels == () and not labels[b].relabelled

    first = actions.decide(admin, "relabel", example_ids=[a], labels=["Gratitude"])
    second = actions.decide(admin, "relabel", example_ids=[a], labels=["pride", "joy"])
    assert current_labels([a])[a].labels == ("joy", "pride")
    assert current_labels([a])[a].scores == {"joy": 1.0, "love": 0.0, "sadness": 0.0, "pride": 1.0}
    actions.undo(admin, second.batch_id)
    assert current_labels([a])[a].labels == ("gratitude",)
    actions.undo(admin, first.batch_id)
    assert current_labels([a])[a].labels == ("joy", "love") and not current_labels([a])[a].relabelled

    with write_session() as session:  # the lead's threshold setting moves every label at once
        session.add(Setting(key="labels.threshold", value=0.5))
    assert current_labels([a])[a].labels == ("joy",)


def test_relabel_rejects_unknown_labels_and_annotators_cannot_curate(admin, annotator):
    a = add_example("Hi.", {"neutral": 0.9})
    with pytest.raises(actions.CurationError, match="Unknown label"):
        actions.decide(admin, "relabel", example_ids=[a], labels=["hangry"])
    with pytest.raises(PermissionDenied):
        actions.decide(annotator, "accept", example_ids=[a])
    with pytest.raises(PermissionDenied):
        browse.search(annotator, CurationFilter())
    with pytest.raises(actions.CurationError, match="No example matches"):
        actions.decide(admin, "accept", selection=CurationFilter(search="nothing like this"))


# --------------------------------------------------------------------------- filters


@pytest.fixture
def corpus(admin):
    stories = make_stories(2)
    character = make_character(stories[0])
    e = {
        "joy": add_example("I won the race, what a day!", {"joy": 0.9, "pride": 0.5}, story_id=stories[0],
                           character_id=character),
        "anger": add_example("Get out of my house.", {"anger": 0.7}, oot={"hostility": 0.6}, story_id=stories[1]),
        "mapped": add_example("Ugh, again?", {"annoyance": 0.4}, oot={"frustration": 0.4}, story_id=stories[1]),
        "weak": add_example("Fine.", {"joy": 0.2, "neutral": 0.5}),
        "ctx": add_example("I miss her so much.", {"sadness": 0.95, "grief": 0.6}, kind="contextual",
                           context="Her sister left years ago.", story_id=stories[0]),
        "gold": add_example("thanks a lot!!", {}, kind="imported", source="goemotions-dev", status="accepted"),
    }
    # 'frustration' is a seeded synonym of annoyance: a mapped OOT suggestion points at its label,
    # as core.labels stores it. 'hostility' has no mapping: it is pending.
    from db.models import Label, Suggestion
    with write_session() as session:
        label = session.scalar(select(Label).where(Label.name == "annoyance"))
        sug = session.scalar(select(Suggestion).where(Suggestion.oot_name == "frustration"))
        sug.label_id = label.id
    return e


def test_filters_by_label_score_kind_story_oot_length_and_text(admin, corpus):
    e = corpus
    assert ids_of(admin, CurationFilter(labels=("joy",))) == [e["joy"]]  # 'weak' is under the threshold
    assert ids_of(admin, CurationFilter(labels=("annoyance",))) == [e["mapped"]]  # through the OOT map
    assert ids_of(admin, CurationFilter(labels=("joy",), score_min=0.95)) == []
    assert ids_of(admin, CurationFilter(labels=("sadness", "anger"), score_min=0.8)) == [e["ctx"]]
    assert ids_of(admin, CurationFilter(score_max=0.5)) == [e["mapped"], e["weak"]]
    assert ids_of(admin, CurationFilter(kinds=("contextual",))) == [e["ctx"]]
    with read_session() as session:
        from db.models import Example
        story = session.get(Example, e["anger"]).story_id
    assert ids_of(admin, CurationFilter(story_ids=(story,))) == [e["anger"], e["mapped"]]
    assert ids_of(admin, CurationFilter(oot="pending")) == [e["anger"]]
    assert ids_of(admin, CurationFilter(oot="any")) == [e["anger"], e["mapped"]]
    assert len(ids_of(admin, CurationFilter(oot="none"))) == 4
    assert ids_of(admin, CurationFilter(length_max=5)) == [e["weak"]]
    assert ids_of(admin, CurationFilter(length_min=20, kinds=("contextless",))) == [e["joy"], e["anger"]]
    assert ids_of(admin, CurationFilter(search="SISTER")) == [e["ctx"]]  # context too, any case
    assert ids_of(admin, CurationFilter(search="100%")) == []  # LIKE wildcards are literal
    assert ids_of(admin, CurationFilter(sources=("goemotions-dev",))) == [e["gold"]]
    assert ids_of(admin, CurationFilter(statuses=("accepted",))) == [e["gold"]]


def test_filters_by_review_rating_agreement_and_any_signal(admin, corpus):
    e = corpus
    add_review(e["joy"], "r1", labels=["joy"], rating=5)
    add_review(e["joy"], "r2", labels=["joy", "pride"], rating=4)
    add_review(e["anger"], "r1", labels=["anger"], rating=2)
    add_review(e["anger"], "r2", labels=["fear"], rating=1, status="draft")  # drafts do not count
    add_campaign_item(e["weak"])
    assert ids_of(admin, CurationFilter(review=("reviewed",))) == [e["joy"], e["anger"]]
    assert ids_of(admin, CurationFilter(review=("in_review",))) == [e["weak"]]
    assert e["mapped"] in ids_of(admin, CurationFilter(review=("unreviewed",)))
    assert ids_of(admin, CurationFilter(rating_min=4)) == [e["joy"]]
    assert ids_of(admin, CurationFilter(rating_max=2)) == [e["anger"]]

    assert signals.compute_review_agreement(admin) == {"agreement_examples": 1, "reviewed_examples": 2}
    assert ids_of(admin, CurationFilter(agreement_max=0.6)) == [e["joy"]]  # Jaccard {joy} vs {joy, pride}
    with write_session() as session:  # a label-issue score written by the training engineer's job
        session.add_all([Signal(example_id=e["weak"], kind="label_issue", value=0.9),
                         Signal(example_id=e["joy"], kind="label_issue", value=0.2)])
    assert ids_of(admin, CurationFilter(signal_kind="label_issue", signal_min=0.5)) == [e["weak"]]
    assert ids_of(admin, CurationFilter(signal_kind="label_issue"), sort="signal") == [e["weak"], e["joy"]]


def test_sorting_and_paging_happen_in_sql(admin, corpus):
    f = CurationFilter(kinds=("contextless",))
    rows, total = browse.search(admin, f, sort="longest", offset=1, limit=2)
    assert total == 4 and [len(r.text) for r in rows] == [20, 11]
    rows, _ = browse.search(admin, f, sort="top_score", limit=1)
    assert rows[0].id == corpus["joy"] and rows[0].labels == ("joy", "pride") and rows[0].character == "Ann"
    assert [r.id for r in browse.search(admin, f, sort="newest")[0]][0] == corpus["weak"]
    with pytest.raises(ValueError, match="signal kind"):
        browse.search(admin, f, sort="signal")


def test_filter_round_trips_through_json():
    f = CurationFilter(labels=("joy",), score_min=0.5, review=("reviewed",), signal_kind="label_issue")
    assert CurationFilter.from_dict(f.to_dict()) == f
    assert CurationFilter().to_dict() == {}
    with pytest.raises(ValueError, match="unknown filter field"):
        CurationFilter.from_dict({"colour": "red"})


# --------------------------------------------------------------------------- bulk actions and undo


def test_bulk_action_over_a_filter_is_recorded_and_undoable(admin, corpus):
    e = corpus
    everyone = CurationFilter(kinds=("contextless", "contextual"))
    accepted = actions.decide(admin, "accept", selection=everyone, reason="first pass")
    assert accepted.count == 5
    rejected = actions.decide(admin, "reject", selection=CurationFilter(labels=("anger",)))
    assert ids_of(admin, CurationFilter(statuses=("rejected",))) == [e["anger"]]

    # Undoing the older batch must not clobber the newer decision on 'anger'.
    assert actions.undo(admin, accepted.batch_id) == 5
    assert ids_of(admin, CurationFilter(statuses=("rejected",))) == [e["anger"]]
    assert set(ids_of(admin, CurationFilter(statuses=("pending",)))) == {e["joy"], e["mapped"], e["weak"], e["ctx"]}
    assert actions.undo(admin, rejected.batch_id) == 1
    assert ids_of(admin, CurationFilter(statuses=("rejected",))) == []
    assert actions.undo(admin, rejected.batch_id) == 0  # twice is harmless

    batches = actions.list_batches(admin)
    assert [(b.action, b.count, b.by, b.undone) for b in batches] == [("reject", 1, "admin", True),
                                                                      ("accept", 5, "admin", True)]
    assert batches[1].reason == "first pass"
    history = actions.example_history(admin, e["anger"])
    assert [h.action for h in history] == ["accept", "reject"] and all(h.undone for h in history)
    with pytest.raises(actions.CurationError, match="No curation batch"):
        actions.undo(admin, "no-such-batch")


def test_relabel_every_match_changes_the_label_filter(admin, corpus):
    report = actions.decide(admin, "relabel", selection=CurationFilter(labels=("joy",)), labels=["excitement"])
    assert report.count == 1
    assert ids_of(admin, CurationFilter(labels=("joy",))) == []
    assert ids_of(admin, CurationFilter(labels=("excitement",))) == [corpus["joy"]]
    actions.undo(admin, report.batch_id)
    assert ids_of(admin, CurationFilter(labels=("joy",))) == [corpus["joy"]]


# --------------------------------------------------------------------------- duplicates


def test_exact_duplicates_ignore_case_spacing_and_punctuation():
    clusters = signals.exact_duplicate_clusters([5, 6, 7, 8], ["Hello there!", "hello   THERE", "Bye.", "bye"])
    assert clusters == {5: 5, 6: 5, 7: 7, 8: 7}


@pytest.mark.parametrize("flat_limit", [10_000, 100])  # exact index, then the inverted-file index
def test_near_duplicate_clusters_from_embeddings(monkeypatch, flat_limit):
    monkeypatch.setattr(signals, "FLAT_INDEX_LIMIT", flat_limit)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(400, 32)).astype("float32")
    near = base[:50] + rng.normal(scale=0.01, size=(50, 32)).astype("float32")  # 50 planted pairs
    labels = signals.near_duplicate_labels(np.vstack([base, near]), threshold=0.95)
    for i in range(50):
        assert labels[i] == labels[400 + i]
    assert len(set(labels.tolist())) == 400  # nothing else merged
    clusters = signals.clusters_from_labels(list(range(1000, 1450)), labels)
    assert len(clusters) == 100 and clusters[1400] == 1000


def test_duplicate_signals_with_the_bundled_minilm(admin):
    a = add_example("I can't believe you did this to me!", {"anger": 0.8})
    b = add_example("I cannot believe you did this to me!", {"anger": 0.8})
    c = add_example("What a lovely morning for a walk by the sea.", {"joy": 0.7})
    d = add_example("what a lovely morning for a walk by the sea", {"joy": 0.7})
    e = add_example("The train leaves at nine.", {"neutral": 0.9})
    result = signals.compute_duplicates(admin, near_threshold=0.9)
    assert result["exact_duplicates"] == 2 and result["near_duplicates"] == 4
    with read_session() as session:
        rows = {(s.example_id, s.kind): s.value for s in session.scalars(select(Signal))}
    assert rows[(c, signals.EXACT)] == rows[(d, signals.EXACT)] == c
    assert rows[(a, signals.NEAR)] == rows[(b, signals.NEAR)] == a
    assert (e, signals.NEAR) not in rows
    assert ids_of(admin, CurationFilter(signal_kind=signals.NEAR)) == [a, b, c, d]
    signals.compute_duplicates(admin, near_threshold=0.9)  # recomputed, not added twice
    with read_session() as session:
        assert len(session.scalars(select(Signal)).all()) == 6


# --------------------------------------------------------------------------- diversity


def test_diversity_metrics():
    assert diversity.distinct_n(["a b a b"], 1) == 0.5
    assert diversity.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    same = ["the cat sat on the mat today"] * 4
    varied = ["the cat sat on the mat", "a storm broke over the hills", "she laughed at his joke",
              "we never found the key"]
    assert diversity.self_bleu(same) == pytest.approx(1.0)
    assert diversity.self_bleu(varied) < 0.3
    v = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert diversity.mean_pairwise_distance(v) == pytest.approx(1.0)
    assert diversity.mean_pairwise_distance(np.vstack([v[0], v[0]])) == pytest.approx(0.0)


def test_diversity_per_emotion_and_character_is_stored(admin):
    story = make_stories(1)[0]
    ann, bob = make_character(story, "Ann"), make_character(story, "Bob")
    for text in ("I am happy.", "I am happy.", "I am happy!"):
        add_example(text, {"joy": 0.9}, character_id=ann)
    for text in ("The storm scares me.", "Dark woods at night frighten everyone.", "Please don't leave me here."):
        add_example(text, {"fear": 0.9}, character_id=bob)
    assert diversity.compute_diversity(admin, embed=False) == {"diversity_groups": 4}
    emotions = {row.group_key: row for row in diversity.diversity_table("emotion")}
    assert emotions["fear"].metrics["distinct_2"] > emotions["joy"].metrics["distinct_2"]
    assert emotions["joy"].metrics["self_bleu"] > emotions["fear"].metrics["self_bleu"]
    assert {row.group_key for row in diversity.diversity_table("character")} == {str(ann), str(bob)}
    with read_session() as session:
        assert len(session.scalars(select(GroupSignal)).all()) == 4 * 3  # no embeddings asked for


def test_label_distribution_against_a_target(admin, corpus):
    with read_session() as session:
        teacher = diversity.teacher_label_counts(session)
        current = diversity.current_label_counts(session)
    assert teacher["joy"] == 1 and teacher["anger"] == 1 and "gratitude" not in teacher
    assert current["sadness"] == 1
    rows = diversity.against_target({"joy": 3, "anger": 1}, ["joy", "anger"], {"joy": 1, "anger": 1})
    assert rows == [{"label": "joy", "count": 3, "share": 0.75, "target_share": 0.5},
                    {"label": "anger", "count": 1, "share": 0.25, "target_share": 0.5}]


def test_signals_job_runs_in_the_worker(admin, corpus):
    add_review(corpus["joy"], "r1", labels=["joy"])
    add_review(corpus["joy"], "r2", labels=["joy"])
    job_id = signals.enqueue_signals(admin, ("review",))
    assert worker.serve(once=True) == 1
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert job.result["agreement_examples"] == 1 and (job.done, job.total) == (1, 1)
    assert ids_of(admin, CurationFilter(agreement_min=1.0)) == [corpus["joy"]]
    with pytest.raises(ValueError):
        signals.enqueue_signals(admin, ("astrology",))


def test_range_scan_for_many_examples_gives_the_same_labels(admin, monkeypatch):
    from core.curate import labels as labels_module

    ids = [add_example(f"n{i}", {"joy": 0.1 * i, "fear": 0.5} if i % 2 else {"anger": 0.31}) for i in range(12)]
    actions.decide(admin, "relabel", example_ids=ids[3:5], labels=["love"])
    undone = actions.decide(admin, "relabel", example_ids=[ids[3]], labels=["grief"])
    actions.undo(admin, undone.batch_id)
    asked = ids[1:11:2] + ids[2:6]  # a sparse, unordered selection
    by_in_lists = current_labels(asked)
    monkeypatch.setattr(labels_module, "CHUNK", 1)  # anything over 4 ids: range scans
    monkeypatch.setattr(labels_module, "WINDOW", 3)
    by_ranges = current_labels(asked)
    assert by_ranges == by_in_lists and by_ranges[ids[3]].labels == ("love",)


def test_bulk_action_job_for_large_results_runs_once_and_undoes(admin, corpus):
    job_id, batch_id = actions.enqueue_decision(admin, "relabel", CurationFilter(kinds=("contextless",)),
                                                labels=["Surprise"], reason="big")
    with pytest.raises(actions.CurationError, match="Unknown label"):
        actions.enqueue_decision(admin, "relabel", CurationFilter(), labels=["hangry"])
    assert worker.serve(once=True) == 1
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.succeeded, job.error
    assert job.result == {"batch_id": batch_id, "action": "relabel", "count": 4}
    assert len(ids_of(admin, CurationFilter(labels=("surprise",)))) == 4
    # A retry after a crash between commit and finish must not apply the batch twice.
    again = actions.decide(admin, "relabel", selection=CurationFilter(kinds=("contextless",)), labels=["joy"],
                           batch_id=batch_id)
    assert again.count == 4 and len(ids_of(admin, CurationFilter(labels=("joy",)))) == 0
    assert actions.list_batches(admin)[0].by == "admin"
    assert actions.undo(admin, batch_id) == 4
    assert ids_of(admin, CurationFilter(labels=("surprise",))) == []
