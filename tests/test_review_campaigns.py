"""Campaigns, queues and answers in core: selection, assignment, roles, drafts, completion, races."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from core.auth import PermissionDenied
from core.review.campaigns import create_campaign, get_campaign, list_campaigns, set_reveal
from core.review.queue import get_item, next_item, previous_item
from core.review.questions import AnswerError
from core.review.responses import ConflictError, save_answers, skip_item
from core.review.results import decide_oot_item, oot_votes, results_csv
from core.review.selection import Selection
from db.models import CampaignItem, ItemAssignment, Label, Response, Suggestion
from db.session import read_session
from tests.review_support import annotators, goemotions_id, make_examples, pending_oot

EMOTIONS = ["joy", "anger", "sadness", "fear"]


def _examples(n_per_emotion: int = 4) -> list[int]:
    return make_examples([
        {"text": f"{emotion} line {i}", "labels": {emotion: 0.8, "neutral": 0.1}}
        for emotion in EMOTIONS for i in range(n_per_emotion)
    ])


def _offered(item) -> list[str]:
    """The emotions a verification item offers (its own choices), "none" left out."""
    return [c for c in item.choices["emotions"] if c != "none"]


def _count(model, *where) -> int:
    with read_session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


# --------------------------------------------------------------------------- selection and assignment


def test_items_come_from_ids_a_filter_or_a_stratified_sample(admin):
    (ann,) = annotators(admin, "sel")
    ids = _examples()
    explicit = create_campaign(admin, name="ids", task="verification", annotator_ids=[ann.id],
                               selection=Selection(example_ids=[ids[5], ids[1], ids[5], 10**9]))
    assert explicit.item_count == 2  # duplicates and unknown ids dropped, the given order kept
    assert next_item(ann, explicit.id).examples[0].id == ids[5]

    filtered = create_campaign(admin, name="filter", task="verification", annotator_ids=[ann.id],
                               selection=Selection(label="anger"))
    assert filtered.item_count == 4

    sample = create_campaign(admin, name="strat", task="verification", annotator_ids=[ann.id],
                             selection=Selection(per_emotion=2, seed=7))
    assert sample.item_count == 2 * len(EMOTIONS)  # neutral (0.1) is below the threshold: not an emotion here
    with pytest.raises(ValueError, match="no items"):
        create_campaign(admin, name="empty", task="verification", annotator_ids=[ann.id],
                        selection=Selection(text_contains="no such words"))


def test_overlap_spreads_items_evenly_and_annotators_see_only_their_campaigns(admin):
    a, b, c, outsider = annotators(admin, "a", "b", "c", "outsider")
    _examples(3)  # 12 examples
    campaign = create_campaign(admin, name="overlap", task="verification", annotator_ids=[a.id, b.id, c.id],
                               overlap=2, min_submissions=2)
    assert _count(ItemAssignment, ItemAssignment.campaign_id == campaign.id) == 24
    for annotator in (a, b, c):
        assert next_item(annotator, campaign.id).total == 8
    with read_session() as session:
        pairs = session.execute(select(ItemAssignment.item_id, func.count()).group_by(ItemAssignment.item_id)).all()
    assert {n for _, n in pairs} == {2}
    assert [v.name for v in list_campaigns(a)] == ["overlap"] and list_campaigns(outsider) == []
    with pytest.raises(PermissionDenied):
        next_item(outsider, campaign.id)
    with pytest.raises(PermissionDenied):
        create_campaign(a, name="mine", task="verification", annotator_ids=[a.id])
    with pytest.raises(ValueError, match="Overlap"):
        create_campaign(admin, name="too much", task="verification", annotator_ids=[a.id], overlap=2)


def test_diversity_groups_and_oot_items(admin):
    (ann,) = annotators(admin, "div")
    make_examples([{"text": f"Mara {i}", "character": ("Mara", "keeper"), "target": "joy"} for i in range(4)]
                  + [{"text": f"Tom {i}", "character": ("Tom", "sailor"), "target": "joy"} for i in range(2)]
                  + [{"text": "anxious", "oot": {"wistfulness": 0.7}, "labels": {"fear": 0.5}}])
    groups = create_campaign(admin, name="div", task="diversity", annotator_ids=[ann.id],
                             selection=Selection(group_size=3))
    # Mara's 4 (a lone leftover joins the group before it), Tom's 2; the fear example alone is left out.
    assert groups.item_count == 2
    item = next_item(ann, groups.id)
    assert item.choices["repeated"] == ["1", "2", "3", "4"] and [e.text for e in item.examples][0] == "Mara 0"
    assert not any(b.text.startswith("Teacher") for b in item.shown)  # diversity shows no teacher labels

    taxonomy_id = goemotions_id()
    pending_oot(taxonomy_id, "wistfulness", 12)
    pending_oot(taxonomy_id, "awe", 3)
    oot = create_campaign(admin, name="oot", task="oot", annotator_ids=[ann.id])
    item = next_item(ann, oot.id)
    assert (item.payload["oot_name"], item.payload["occurrences"], item.payload["examples"]) == \
        ("wistfulness", 12, ["anxious"])
    assert [b.text for b in item.shown if b.kind in ("code", "box")] == ["wistfulness", "anxious"]
    with pytest.raises(AnswerError, match="maps to"):
        save_answers(ann, item.item_id, {"action": "map"}, submit=True)
    save_answers(ann, item.item_id, {"action": "map", "target": "nervousness"}, submit=True)
    votes = {v.oot_name: v for v in oot_votes(admin, oot.id)}
    assert votes["wistfulness"].suggestion == ("map", "nervousness") and votes["awe"].suggestion == (None, None)

    # The admin's decision goes through core.labels: the dictionary changes and the examples follow.
    with pytest.raises(PermissionDenied):
        decide_oot_item(ann, oot.id, item.item_id, "map", "nervousness")
    decide_oot_item(admin, oot.id, item.item_id, *votes["wistfulness"].suggestion)
    decided = {v.oot_name: v for v in oot_votes(admin, oot.id)}["wistfulness"]
    assert (decided.current_action, decided.current_target) == ("map", "nervousness")
    with read_session() as session:
        mapped = session.scalar(select(Label.name).join(Suggestion, Suggestion.label_id == Label.id)
                                .where(Suggestion.oot_name == "wistfulness"))
    assert mapped == "nervousness"


# --------------------------------------------------------------------------- queue and answers


def test_queue_drafts_skip_back_and_blind_answers(admin):
    a, b = annotators(admin, "qa", "qb")
    _examples(1)  # 4 examples
    campaign = create_campaign(admin, name="queue", task="verification", annotator_ids=[a.id, b.id], overlap=2)
    first = next_item(a, campaign.id)
    assert first.position == 0 and first.answers == {} and "Teacher: joy 0.80" in [b.text for b in first.shown]
    joy, pride = "joy", _offered(first)[1]  # pride: any other emotion this item offers

    draft = save_answers(a, first.item_id, {"emotions": ["joy"]}, submit=False, seconds=4)
    assert next_item(a, campaign.id).item_id == first.item_id  # a draft does not move the queue
    assert next_item(a, campaign.id).answers == {"emotions": ["joy"]}

    skip_item(a, first.item_id)
    second = next_item(a, campaign.id)
    assert second.position == 1
    save_answers(a, second.item_id, {"emotions": _offered(second)[:1], "comment": "clear"}, submit=True, seconds=3)
    back = previous_item(a, campaign.id, next_item(a, campaign.id).position)
    assert back.item_id == second.item_id and back.status == "submitted" and back.answers["comment"] == "clear"

    # Skipped items come back once the rest is done; the draft is still there.
    for _ in range(2):
        item = next_item(a, campaign.id)
        save_answers(a, item.item_id, {"emotions": _offered(item)[:1]}, submit=True)
    again = next_item(a, campaign.id)
    assert again.item_id == first.item_id and again.status == "skipped" and again.answers == {"emotions": ["joy"]}
    save_answers(a, first.item_id, {"emotions": [joy, pride]}, submit=True, versions=draft.versions)
    both = [c for c in first.choices["emotions"] if c in (joy, pride)]  # stored in the item's choice order
    assert next_item(a, campaign.id) is None

    # Blind until an admin reveals: b sees no answer of a's; the admin sees them all.
    assert get_item(b, campaign.id, first.item_id).others == ()
    assert ("qa", "emotions", both) in get_item(admin, campaign.id, first.item_id).others
    set_reveal(admin, campaign.id, True)
    assert ("qa", "emotions", both) in get_item(b, campaign.id, first.item_id).others
    with pytest.raises(PermissionDenied):
        results_csv(a, campaign.id)
    csv_text = results_csv(admin, campaign.id)
    assert '"[""%s"", ""%s""]"' % tuple(both) in csv_text and csv_text.count("\n") == 1 + 4 * 2  # header + (emotions, comment) x 4 items


def test_an_answer_changed_in_another_window_is_not_overwritten(admin):
    (ann,) = annotators(admin, "tabs")
    _examples(1)
    campaign = create_campaign(admin, name="tabs", task="verification", annotator_ids=[ann.id])
    item = next_item(ann, campaign.id)
    one, two, three = _offered(item)[:3]
    first_tab = save_answers(ann, item.item_id, {"emotions": [one]}, submit=False)
    save_answers(ann, item.item_id, {"emotions": [two]}, submit=False, versions=first_tab.versions)
    with pytest.raises(ConflictError):  # the first tab still holds the old version
        save_answers(ann, item.item_id, {"emotions": [three]}, submit=True, versions=first_tab.versions)
    assert next_item(ann, campaign.id).answers == {"emotions": [two]}
    with pytest.raises(AnswerError):
        save_answers(ann, item.item_id, {"emotions": ["not-an-emotion"]}, submit=True)
    with pytest.raises(AnswerError, match="before submitting"):
        save_answers(ann, item.item_id, {"emotions": []}, submit=True)


# --------------------------------------------------------------------------- races


def _run_together(calls) -> list[BaseException]:
    barrier, errors = threading.Barrier(len(calls)), []

    def run(call):
        try:
            barrier.wait()
            call()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_two_annotators_submitting_at_once_both_land_once_each(admin):
    """Threads on the real database (SQLite file; PostgreSQL too when TEST_DATABASE_URL is set)."""
    a, b = annotators(admin, "ra", "rb")
    _examples(3)  # 12 items
    campaign = create_campaign(admin, name="race", task="verification", annotator_ids=[a.id, b.id],
                               overlap=2, min_submissions=2)
    with read_session() as session:
        items = list(session.scalars(select(CampaignItem.id).where(CampaignItem.campaign_id == campaign.id)))
    for item_id in items:
        errors = _run_together([
            lambda: save_answers(a, item_id, {"emotions": ["none"]}, submit=True),
            lambda: save_answers(b, item_id, {"emotions": ["none"]}, submit=True),
            lambda: save_answers(b, item_id, {"emotions": ["none"]}, submit=True),  # a double click
        ])
        assert not errors, errors
    with read_session() as session:
        counts = session.execute(select(CampaignItem.submitted_count, CampaignItem.status)
                                 .where(CampaignItem.campaign_id == campaign.id)).all()
    assert set(counts) == {(2, "completed")}
    assert _count(Response, Response.item_id.in_(items)) == 2 * len(items) * 2  # 2 annotators x 2 questions
    assert get_campaign(admin, campaign.id).completed_count == len(items)


def test_the_top_label_issue_scores_become_a_campaign(admin):
    from db.models import Signal
    from db.session import write_session

    (ann,) = annotators(admin, "issues")
    ids = _examples(1)
    with write_session() as session:
        for example_id, value in zip(ids, [0.2, 0.9, 0.5, 0.7]):
            session.add(Signal(example_id=example_id, kind="label_issue", value=value, computed_by="student"))
        session.add(Signal(example_id=ids[0], kind="near_dup_cluster", value=99.0))
    campaign = create_campaign(admin, name="issues", task="verification", annotator_ids=[ann.id],
                               selection=Selection(top_signal="label_issue", top_n=3))
    assert campaign.item_count == 3 and campaign.selection["top_signal"] == "label_issue"
    order = []
    while (item := next_item(ann, campaign.id)) is not None:
        order.append(item.examples[0].id)
        save_answers(ann, item.item_id, {"emotions": ["none"]}, submit=True)
    assert order == [ids[1], ids[3], ids[2]]  # most suspicious first


def test_the_worker_creates_a_large_campaign(admin):
    from core import jobs, worker
    from core.review.campaigns import enqueue_campaign
    from db.models import JobStatus

    (ann,) = annotators(admin, "job")
    _examples(3)
    create_campaign(admin, name="now", task="verification", annotator_ids=[ann.id])
    with pytest.raises(ValueError, match="exists already"):  # checked at once, not in the worker
        enqueue_campaign(admin, name="now", task="verification", annotator_ids=[ann.id])
    job_id = enqueue_campaign(admin, name="by the worker", task="verification", annotator_ids=[ann.id],
                              selection=Selection(per_emotion=2, seed=1))
    assert [c.name for c in list_campaigns(admin)] == ["now"]
    assert worker.serve(once=True, worker_id="review-worker") == 1
    job = jobs.get_job(admin, job_id)
    assert job.status == JobStatus.succeeded, job.error
    campaign = next(c for c in list_campaigns(admin) if c.name == "by the worker")
    assert (job.result["campaign_id"], job.result["items"]) == (campaign.id, campaign.item_count)
    assert campaign.item_count == 2 * len(EMOTIONS) and campaign.selection["per_emotion"] == 2
