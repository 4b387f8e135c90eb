"""Agreement figures, checked against the reference libraries' own published examples.

The answers go through the real path (campaign, submissions, report), so a wrong matrix
orientation, a lost answer or a wrong level of measurement changes the figure.
"""

from __future__ import annotations

import math

import pytest

from core.review.agreement import campaign_report
from core.review.campaigns import create_campaign
from core.review.questions import QuestionSpec
from core.review.responses import save_answers
from core.review.selection import Selection
from db.models import CampaignItem
from db.session import read_session
from tests.review_support import annotators, make_examples

NAN = None
# krippendorff.alpha's docstring example (Krippendorff 2011, p. 8): 4 coders x 12 units.
ORDINAL = [[1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
           [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
           [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
           [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN]]
WORDS = ["very low", "low", "mid", "high", "very high"]
# sklearn.metrics.cohen_kappa_score's docstring example.
Y1 = ["negative", "positive", "negative", "neutral", "positive"]
Y2 = ["negative", "positive", "negative", "neutral", "negative"]


def _items(campaign_id: int) -> list[int]:
    with read_session() as session:
        from sqlalchemy import select

        return list(session.scalars(select(CampaignItem.id).where(CampaignItem.campaign_id == campaign_id)
                                    .order_by(CampaignItem.position)))


def test_krippendorff_alpha_matches_the_reference_example(admin):
    coders = annotators(admin, "k1", "k2", "k3", "k4")
    ids = make_examples([{"text": f"utterance {i}"} for i in range(12)])
    campaign = create_campaign(
        admin, name="alpha", task="custom", annotator_ids=[c.id for c in coders], overlap=4, min_submissions=4,
        selection=Selection(example_ids=ids),
        questions=[QuestionSpec("rating", "Rating", "rating"),
                   QuestionSpec("word", "Word", "single_label", {"choices": WORDS, "required": False})],
    )
    for coder, row in zip(coders, ORDINAL):
        for item_id, value in zip(_items(campaign.id), row):
            if value is not None:
                save_answers(coder, item_id, {"rating": value, "word": WORDS[value - 1]}, submit=True)
    report = campaign_report(admin, campaign.id)
    rating, word = report.questions
    assert (rating.level, word.level) == ("ordinal", "nominal")
    assert round(rating.alpha, 3) == 0.815  # the library's documented ordinal value
    assert round(word.alpha, 3) == 0.743  # the same data as unordered words: its documented nominal value
    assert rating.items == 11  # the unit coded by one coder only cannot be paired
    assert len(rating.pairs) == 6


def test_pairwise_cohen_kappa_matches_the_reference_example(admin):
    a, b = annotators(admin, "a1", "b1")
    ids = make_examples([{"text": f"u{i}"} for i in range(5)])
    campaign = create_campaign(
        admin, name="kappa", task="custom", annotator_ids=[a.id, b.id], overlap=2,
        selection=Selection(example_ids=ids),
        questions=[QuestionSpec("polarity", "Polarity", "single_label",
                                {"choices": ["negative", "neutral", "positive"]})],
    )
    for item_id, first, second in zip(_items(campaign.id), Y1, Y2):
        save_answers(a, item_id, {"polarity": first}, submit=True)
        save_answers(b, item_id, {"polarity": second}, submit=True)
    (question,) = campaign_report(admin, campaign.id).questions
    (pair,) = question.pairs
    assert (pair.first, pair.second, pair.items) == ("a1", "b1", 5)
    assert pair.kappa == pytest.approx(0.6875)  # (0.8 - 0.36) / (1 - 0.36)


def test_multi_label_agreement_per_label_and_against_the_teacher(admin):
    a, b = annotators(admin, "m1", "m2")
    ids = make_examples([
        {"text": "I did it!", "labels": {"joy": 0.9, "pride": 0.6}},
        {"text": "How dare you.", "labels": {"anger": 0.8}},
        {"text": "Oh no.", "labels": {"sadness": 0.7, "fear": 0.2}},
        {"text": "Thanks a lot!", "labels": {"gratitude": 0.95}},
    ])
    # A question over the whole taxonomy (the per-item verification choices have their own test).
    whole = QuestionSpec("emotions", "Emotions", "multi_label", {"choices_from": "taxonomy", "required": True})
    campaign = create_campaign(admin, name="verify", task="custom", annotator_ids=[a.id, b.id], overlap=2,
                               selection=Selection(example_ids=ids), questions=[whole])
    items = _items(campaign.id)
    teacher = [["joy", "pride"], ["anger"], ["sadness"], ["gratitude"]]
    other = [["joy"], ["anger"], ["sadness", "fear"], ["gratitude"]]
    for item_id, mine, theirs in zip(items, teacher, other):
        save_answers(a, item_id, {"emotions": mine}, submit=True)
        save_answers(b, item_id, {"emotions": theirs}, submit=True)
    report = campaign_report(admin, campaign.id)
    emotions = next(q for q in report.questions if q.name == "emotions")
    assert emotions.per_label["joy"] == 1.0 and emotions.per_label["anger"] == 1.0
    assert emotions.per_label["admiration"] is None  # nobody chose it: no disagreement to measure
    # 'pride' chosen once, by one annotator, in 8 judgements: observed = expected disagreement (2/8).
    assert emotions.per_label["pride"] == pytest.approx(0.0)
    by_annotator = {t.annotator: t for t in report.teacher}
    assert by_annotator["m1"].kappa == 1.0 and by_annotator["m1"].f1 == 1.0  # answered exactly the teacher's
    # m2 missed 'pride' and added 'fear' (teacher score 0.2 < 0.3): 4 hits, 1 miss, 1 extra.
    assert by_annotator["m2"].f1 == pytest.approx(2 * 4 / (2 * 4 + 1 + 1))
    assert {p.annotator: p.submitted for p in report.progress} == {"m1": 4, "m2": 4}
    assert report.completed == 4 and not math.isnan(emotions.alpha)
