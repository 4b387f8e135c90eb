"""Each review task module on its own, the paper's figures on a hand-made case, the Emo Pillars
preset, and the rule that a submitted answer is never downgraded."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from core.review import tasks as review_tasks
from core.review.agreement import campaign_report
from core.review.campaigns import create_campaign, create_paper_preset
from core.review.queue import next_item
from core.review.questions import AnswerError
from core.review.responses import answer_history, save_answers, skip_item
from core.review.results import results_csv, task_results
from core.review.selection import Selection
from core.review.tasks.base import AnsweredItem
from core.review.tasks.diversity import within_across
from core.review.tasks.verification import majority_accuracy, neutral_recall
from db.models import Example, ItemAssignment, Response, ResponseStatus, ResponseVersion
from db.session import read_session, write_session
from tests.review_support import annotators, make_examples

KEEPER = ("Mara", "An old lighthouse keeper.")
SAILOR = ("Tom", "A young sailor.")


def test_the_registry_holds_one_module_per_task():
    assert review_tasks.NAMES == ("verification", "rewrite", "personalization", "diversity", "oot", "custom")
    for name in review_tasks.NAMES:
        task = review_tasks.get(name)
        assert task.name == name and task.title and len({q.name for q in task.questions()}) == len(task.questions())
    with pytest.raises(ValueError, match="Unknown review task"):
        review_tasks.get("nope")


# --------------------------------------------------------------------------- verification


def test_verification_offers_top_5_a_seeded_distractor_and_none_with_neutral_upsampled(admin):
    (ann,) = annotators(admin, "ver")
    scores = {"joy": 0.9, "pride": 0.6, "relief": 0.4, "gratitude": 0.2, "love": 0.1, "caring": 0.05}
    emotional = make_examples([{"text": f"line {i}", "labels": scores} for i in range(18)])
    neutral = make_examples([{"text": f"flat {i}", "labels": {"neutral": 0.9}} for i in range(6)])
    campaign = create_campaign(admin, name="v", task="verification", annotator_ids=[ann.id],
                               selection=Selection(limit=10, neutral_share=0.3, seed=3, random_sample=True))
    with read_session() as session:
        chosen = list(session.scalars(select(Example.id).join_from(Example, _items_table())
                                      .where(_items_table().c.campaign_id == campaign.id)))
    assert len(chosen) == 10 and len(set(chosen) & set(neutral)) == 3  # 30% neutral, as asked
    item = next_item(ann, campaign.id)
    offered = item.choices["emotions"]
    payload = item.payload
    assert len(offered) == 7 and offered[-1] == "none" and len(set(offered)) == 7
    if item.examples[0].id in emotional:
        assert set(offered[:-1]) == {"joy", "pride", "relief", "gratitude", "love", payload["distractor"]}
        assert payload["teacher"] == [n for n in ("joy", "pride", "relief") if n in payload["teacher"]]
    assert payload["distractor"] not in payload["teacher"]
    again = create_campaign(admin, name="v2", task="verification", annotator_ids=[ann.id],
                            selection=Selection(limit=10, neutral_share=0.3, seed=3, random_sample=True))
    assert next_item(ann, again.id).payload == payload  # the same seed, the same choices
    with pytest.raises(AnswerError, match="none"):
        save_answers(ann, item.item_id, {"emotions": [offered[0], "none"]}, submit=True)
    with pytest.raises(AnswerError, match="not among the choices"):
        save_answers(ann, item.item_id, {"emotions": ["anger" if "anger" not in offered else "fear"]}, submit=True)


def _items_table():
    from db.models import CampaignItem

    return CampaignItem.__table__


def _item(teacher: list[str], choices: list[str], *answers: list[str]) -> AnsweredItem:
    return AnsweredItem(0, 0, {"choices": choices + ["none"], "teacher": teacher},
                        {f"a{k}": {"emotions": a} for k, a in enumerate(answers)})


def test_majority_vote_accuracy_and_neutral_recall_on_a_hand_made_case():
    annotators_ = ["a0", "a1", "a2"]
    items = [
        # joy: all 3 yes, teacher yes (right); fear: all 3 no, teacher no (right); anger: 2 of 3 yes, teacher no.
        _item(["joy"], ["joy", "fear", "anger"], ["joy", "anger"], ["joy", "anger"], ["joy"]),
        # neutral: 2 of 3 yes, teacher yes (right); sadness: all no, teacher yes (wrong, full agreement).
        _item(["neutral", "sadness"], ["neutral", "sadness"], ["neutral"], ["neutral"], ["none"]),
        # neutral: all 3 yes, teacher no: a neutral the teacher missed.
        _item(["joy"], ["neutral", "joy"], ["neutral"], ["neutral"], ["neutral"]),
    ]
    figures = majority_accuracy(items, annotators_)
    # Full agreement: joy(right) fear(right) sadness(wrong) neutral#3(wrong, teacher no) joy#3(all no, teacher yes: wrong).
    assert figures["all_agree_decisions"] == 5 and figures["all_agree"] == pytest.approx(2 / 5)
    # 2 of 3 or more: the 5 above plus anger (wrong) and neutral#2 (right).
    assert figures["two_of_three_decisions"] == 7 and figures["two_of_three"] == pytest.approx(3 / 7)
    recall, n = neutral_recall(items)
    assert (n, recall) == (2, pytest.approx(0.5))  # the majority says neutral twice; the teacher once


def test_verification_figures_from_real_answers(admin):
    people = annotators(admin, "p1", "p2", "p3")
    make_examples([{"text": f"line {i}", "labels": {"joy": 0.9, "fear": 0.1}} for i in range(4)])
    campaign = create_campaign(admin, name="figs", task="verification", annotator_ids=[p.id for p in people],
                               overlap=3)
    for person in people:
        while (item := next_item(person, campaign.id)) is not None:
            picked = ["joy"] if person is not people[2] else ["joy", item.payload["distractor"]]
            save_answers(person, item.item_id, {"emotions": picked}, submit=True)
    figures = {f.name: f for f in task_results(admin, campaign.id).figures}
    full = figures["Majority-vote accuracy of the teacher's labels, all annotators agree"]
    assert full.value == 1.0 and full.paper == "0.86"
    assert figures["Majority-vote accuracy of the teacher's labels, at least 2 of 3 agree"].value == 1.0
    assert figures["Mean pairwise Cohen's kappa"].paper == "0.365"


# --------------------------------------------------------------------------- rewrite, personalization, diversity


def _with_parents(pairs: list[tuple[str, str]]) -> list[int]:
    """Context-less originals and contextual rewrites linked by parent_id; the rewrite ids."""
    originals = make_examples([{"text": o, "character": KEEPER, "labels": {"joy": 0.8}} for o, _ in pairs])
    rewrites = make_examples([{"text": r, "kind": "contextual", "context": "The boat came.", "character": KEEPER,
                               "labels": {"joy": 0.8}} for _, r in pairs])
    with write_session() as session:
        for original, rewrite in zip(originals, rewrites):
            session.get(Example, rewrite).parent_id = original
    return rewrites


def test_rewrite_check_pairs_an_original_with_its_rewrite_without_context(admin):
    a, b = annotators(admin, "r1", "r2")
    rewrites = _with_parents([("I am so happy!", "Well, look at that."), ("I am thrilled!", "Not bad at all."),
                              ("Joy!", "Joy!")])  # an unchanged text is no rewrite
    campaign = create_campaign(admin, name="rw", task="rewrite", annotator_ids=[a.id, b.id], overlap=2)
    assert campaign.item_count == 2
    item = next_item(a, campaign.id)
    assert item.payload["rewritten"] in rewrites and len(item.examples) == 2
    assert [s.kind for s in item.shown] == ["caption", "box", "caption", "box"]
    assert not any("The boat came." in s.text for s in item.shown)  # no context
    for person, pick_rewrite in ((a, True), (b, False)):
        while (it := next_item(person, campaign.id)) is not None:
            rewritten_letter = "AB"[it.payload["example_ids"].index(it.payload["rewritten"])]
            other = "B" if rewritten_letter == "A" else "A"
            save_answers(person, it.item_id, {"less_explicit": rewritten_letter if pick_rewrite else other},
                         submit=True)
    figures = {f.name: f for f in task_results(admin, campaign.id).figures}
    assert figures["r1: rewrite less explicit"].value == 1.0 and figures["r2: rewrite less explicit"].value == 0.0
    assert figures["r1: rewrite less explicit"].paper == "0.67 / 0.71 / 0.92"


def test_personalization_shows_the_story_and_the_character_and_asks_about_the_context(admin):
    (ann,) = annotators(admin, "pe")
    make_examples([{"text": "Here we go.", "kind": "contextual", "context": "The lamp fails in the storm.",
                    "character": KEEPER, "labels": {"fear": 0.5}}, {"text": "no context", "labels": {"joy": 0.9}}])
    with write_session() as session:
        from db.models import Story

        story = session.scalar(select(Story))
        story.title, story.text = "The Lighthouse", "A keeper guards a lamp on a rock. " * 40
    campaign = create_campaign(admin, name="pers", task="personalization", annotator_ids=[ann.id])
    assert campaign.item_count == 1  # contextual examples only
    item = next_item(ann, campaign.id)
    texts = [s.text for s in item.shown]
    assert "Story: The Lighthouse" in texts and "Mara: An old lighthouse keeper." in texts
    assert "The lamp fails in the storm." in texts and len(texts[1]) < 800  # a summary, not the whole story
    assert item.questions[0].title == "Is this context specific to this character and story?"
    save_answers(ann, item.item_id, {"specificity": 4, "generic": False}, submit=True)
    figures = {f.name: f.value for f in task_results(admin, campaign.id).figures}
    assert figures["Mean specificity (1-5)"] == 4.0 and figures["Share marked generic"] == 0.0


def test_diversity_groups_one_character_one_emotion_and_one_emotion_across_characters(admin):
    (ann,) = annotators(admin, "di")
    make_examples([{"text": f"Mara joy {i}", "character": KEEPER, "target": "joy"} for i in range(3)]
                  + [{"text": f"Tom joy {i}", "character": SAILOR, "target": "joy"} for i in range(3)]
                  + [{"text": "ctx", "kind": "contextual", "context": "c", "character": SAILOR, "target": "joy"}])
    campaign = create_campaign(admin, name="div", task="diversity", annotator_ids=[ann.id],
                               selection=Selection(group_by="both", group_size=3))
    groups = []
    while (item := next_item(ann, campaign.id)) is not None:
        groups.append((item.payload["group_by"], [e.text for e in item.examples]))
        save_answers(ann, item.item_id, {"diversity": 2 if item.payload["group_by"] == "emotion" else 4}, submit=True)
    within = [g for kind, g in groups if kind == "character_emotion"]
    across = [g for kind, g in groups if kind == "emotion"]
    assert sorted(within) == [["Mara joy 0", "Mara joy 1", "Mara joy 2"], ["Tom joy 0", "Tom joy 1", "Tom joy 2"]]
    assert across and all({t.split()[0] for t in g} == {"Mara", "Tom"} for g in across)  # never two of one character
    assert not any("ctx" in t for _k, g in groups for t in g)  # one kind of example only
    figures = {f.name: f.value for f in task_results(admin, campaign.id).figures}
    assert figures["Mean diversity rating, one character x one emotion"] == 4.0
    assert figures["Mean diversity rating, one emotion across characters"] == 2.0


def test_within_and_across_character_similarity():
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    within, across = within_across(vectors, [1, 1, 2, 2])
    assert (within, across) == (pytest.approx(1.0), pytest.approx(0.0))


# --------------------------------------------------------------------------- the preset


def test_the_emo_pillars_preset_creates_the_four_campaigns_or_none(admin):
    people = annotators(admin, "e1", "e2", "e3")
    _with_parents([(f"I am so happy {i}!", f"Well, look at that {i}.") for i in range(3)])
    with pytest.raises(ValueError, match="3 annotators"):
        create_paper_preset(admin, [people[0].id])
    made = create_paper_preset(admin, [p.id for p in people], items=2)
    assert [c.task for c in made] == ["verification", "rewrite", "personalization", "diversity"]
    assert all(c.overlap == 3 and c.min_submissions == 3 and 1 <= c.item_count <= 2 for c in made)
    with pytest.raises(ValueError, match="exists already"):
        create_paper_preset(admin, [p.id for p in people], items=2)


# --------------------------------------------------------------------------- never downgraded


def _statuses(item_id: int, user_id: int) -> set[str]:
    with read_session() as session:
        return {getattr(s, "value", s) for s in session.scalars(
            select(Response.status).where(Response.item_id == item_id, Response.user_id == user_id))}


def test_a_submitted_answer_is_never_downgraded_and_edits_keep_their_history(admin):
    a, b = annotators(admin, "n1", "n2")
    make_examples([{"text": f"line {i}", "labels": {"joy": 0.9}} for i in range(2)])
    campaign = create_campaign(admin, name="keep", task="verification", annotator_ids=[a.id, b.id], overlap=2)
    item = next_item(a, campaign.id)
    first, second = [c for c in item.choices["emotions"] if c != "none"][:2]
    for person in (a, b):
        save_answers(person, item.item_id, {"emotions": [first]}, submit=True)
    before_csv = results_csv(admin, campaign.id)

    # Back / Skip save a draft first, with the same answers: nothing changes.
    same = save_answers(a, item.item_id, {"emotions": [first]}, submit=False)
    assert same.submitted and not same.changed and _statuses(item.item_id, a.id) == {"submitted"}
    skip_item(a, item.item_id)  # a submitted item is not put back in the queue
    assert results_csv(admin, campaign.id) == before_csv

    # A toggle on the submitted item: a new submitted version; the old value goes to the history.
    edit = save_answers(a, item.item_id, {"emotions": [first, second]}, submit=False)
    assert edit.submitted and edit.changed and _statuses(item.item_id, a.id) == {"submitted"}
    assert [(h["question"], h["value"]) for h in answer_history(a, item.item_id)] == [("emotions", [first])]
    # Emptying a required answer is refused: the submitted one stays.
    with pytest.raises(AnswerError, match="submitted answer is kept"):
        save_answers(a, item.item_id, {"emotions": []}, submit=False)
    assert next_item(b, campaign.id).item_id != item.item_id
    with read_session() as session:
        assignment = session.scalar(select(ItemAssignment.status).where(
            ItemAssignment.item_id == item.item_id, ItemAssignment.user_id == a.id))
        versions = session.scalar(select(func.count()).select_from(ResponseVersion))
        drafts = session.scalar(select(func.count()).select_from(Response).where(
            Response.status == ResponseStatus.draft))
    assert (assignment, versions, drafts) == ("submitted", 1, 0)

    # Agreement, the CSV and the dataset card still count both annotators (2 questions each).
    report = campaign_report(admin, campaign.id)
    assert {p.annotator: p.submitted for p in report.progress} == {"n1": 1, "n2": 1} and report.completed == 1
    csv_text = results_csv(admin, campaign.id)
    assert csv_text.count(",submitted,") == 4 and ",draft," not in csv_text
    assert _card_counts(item.examples[0].id) == {"submitted_responses": 4, "reviewers": 2, "reviewed_examples": 1}


def _card_counts(example_id: int) -> dict:
    from core.datasets.card import review_statistics
    from db.models import DatasetMember, DatasetVersion

    with write_session() as session:
        version = DatasetVersion(name="v", size=1)
        session.add(version)
        session.flush()
        session.add(DatasetMember(version_id=version.id, example_id=example_id, split="train", labels=["joy"]))
        version_id = version.id
    with read_session() as session:
        stats = review_statistics(session, version_id, ["joy"])
    return {k: stats[k] for k in ("submitted_responses", "reviewers", "reviewed_examples")}


def test_the_worker_computes_within_and_across_character_similarity_per_emotion(admin):
    from core import worker
    from core.review.tasks.diversity import character_similarity, enqueue_character_similarity

    make_examples([{"text": f"The lamp, the lamp, always the lamp {i}.", "character": KEEPER,
                    "labels": {"neutral": 0.9}} for i in range(3)]
                  + [{"text": t, "character": SAILOR, "labels": {"neutral": 0.9}}
                     for t in ("Ropes need coiling before noon.", "The tide turns at six.", "Gulls again.")])
    assert character_similarity(admin) == []
    enqueue_character_similarity(admin)
    assert worker.serve(once=True, worker_id="similarity") == 1
    (row,) = character_similarity(admin)
    assert row["emotion"] == "neutral" and row["utterances"] == 6 and row["paper"] == "0.30 vs 0.16"
    assert row["within"] > row["across"]  # the keeper repeats herself; the two characters differ


def test_verification_on_a_small_taxonomy_keeps_one_label_back_as_the_distractor():
    from core.review.tasks.verification import _choices

    labels = ["anger", "joy", "sadness"]
    payload = _choices({"joy": 0.9}, labels, 0.3, seed=1, example_id=7)
    assert payload["choices"][-1] == "none" and sorted(payload["choices"][:-1]) == labels
    assert payload["teacher"] == ["joy"] and payload["distractor"] != "joy"
    assert _choices({"joy": 0.9}, labels, 0.3, seed=1, example_id=7) == payload  # seeded


@pytest.mark.parametrize("task", ["verification", "personalization", "rewrite", "diversity"])
def test_opening_an_item_costs_at_most_four_queries(admin, task):
    from sqlalchemy import event

    from db.session import get_engine

    (ann,) = annotators(admin, "q")
    _with_parents([(f"So happy {i}!", f"Well then {i}.") for i in range(3)])
    make_examples([{"text": f"Tom {i}", "character": SAILOR, "target": "joy"} for i in range(3)])
    campaign = create_campaign(admin, name=task, task=task, annotator_ids=[ann.id])
    statements = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().split(None, 1)[0].upper() in ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE"):
            statements.append(statement)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        item = next_item(ann, campaign.id)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert item is not None and item.examples and 3 <= len(statements) <= 4, statements  # counted, and few
