"""The Review page through AppTest: an annotator answers with the buttons, an admin creates and reads."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core import worker
from core.review.campaigns import create_campaign, list_campaigns
from core.review.queue import next_item
from core.review.selection import Selection
from tests.review_support import annotators, make_examples
from tests.test_pages import app, navigation_steady_state, shared_component_registry  # noqa: F401 - fixtures
from ui.plain import md_escape

SCRIPT = "<script>alert(1)</script> **not bold**"


def open_review(actor) -> AppTest:
    at = app(actor).run()
    assert not at.exception, at.exception
    at.switch_page("pages/review.py").run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def test_an_annotator_answers_with_the_buttons_and_goes_back(sqlite_database):
    from core import auth

    auth.ensure_admin("admin", "admin-pass-123")
    admin = auth.authenticate("admin", "admin-pass-123")
    (ann,) = annotators(admin, "pat")
    ids = make_examples([
        {"text": SCRIPT, "kind": "contextual", "context": "At the harbour at night.",
         "character": ("Mara", "A lighthouse keeper."), "labels": {"fear": 0.8}},
        {"text": "Second line", "labels": {"joy": 0.9}},
    ])
    campaign = create_campaign(admin, name="page", task="verification", annotator_ids=[ann.id],
                               selection=Selection(example_ids=ids), guidelines="Mark every emotion you hear.")
    at = open_review(ann)
    shown = [t.value for t in at.text]
    assert SCRIPT in shown  # generated text arrives as plain text, untouched
    assert not any(SCRIPT in m.value for m in at.markdown)
    assert "A lighthouse keeper." in " ".join(shown) and "Mark every emotion you hear." in shown
    assert "Teacher: fear 0.80" in shown
    assert [b.label for b in at.button if b.key.startswith("rv_btn:")][0] == "fear"  # teacher's label first

    button(at, "rv_submit").click().run()
    assert [e.value for e in at.error] == [md_escape("Answer this before submitting: Which emotions does the speaker express?")]

    item_id = next_item(ann, campaign.id).item_id
    button(at, f"rv_btn:{item_id}:emotions:fear").click().run()
    button(at, f"rv_btn:{item_id}:emotions:nervousness").click().run()
    assert next_item(ann, campaign.id).answers == {"emotions": ["fear", "nervousness"]}  # kept as a draft
    button(at, "rv_submit").click().run()
    assert not at.exception and "Second line" in [t.value for t in at.text]
    assert next_item(ann, campaign.id).position == 1

    button(at, "rv_back").click().run()
    assert SCRIPT in [t.value for t in at.text]
    assert button(at, f"rv_btn:{item_id}:emotions:fear").proto.type == "primary"  # the saved answer shows


def test_an_admin_creates_a_campaign_and_reads_its_results(admin):
    (ann,) = annotators(admin, "kim")
    make_examples([{"text": f"line {i}", "labels": {"joy": 0.9}} for i in range(3)])
    at = open_review(admin)
    at.segmented_control(key="rv_view").set_value("New campaign").run()
    at.text_input(key="rv_new_name").input("From the form")
    at.multiselect(key="rv_new_users").select(ann.id)
    next(b for b in at.button if b.label == "Create campaign").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert list_campaigns(admin) == []  # the worker chooses the items
    assert worker.serve(once=True, worker_id="review-test") == 1
    (created,) = list_campaigns(admin)
    assert (created.name, created.item_count) == ("From the form", 3)

    at.segmented_control(key="rv_view").set_value("Results").run()
    assert not at.exception, at.exception
    assert [m.value for m in at.metric][:2] == ["3", "0"]
    assert "Progress per annotator" in [h.value for h in at.subheader]


def test_a_rating_and_a_flag_are_stored_as_the_contract_says(admin):
    from sqlalchemy import select

    from db.models import Question, Response
    from db.session import read_session

    (ann,) = annotators(admin, "rae")
    make_examples([{"text": "We sail at dawn, with or without the lamp oil.", "kind": "contextual",
                    "context": "The harbour is frozen.", "character": ("Tom", "A sailor."), "labels": {"fear": 0.5}}])
    campaign = create_campaign(admin, name="personal", task="personalization", annotator_ids=[ann.id])
    at = open_review(ann)
    item_id = next_item(ann, campaign.id).item_id
    assert "Teacher: fear 0.50" not in [t.value for t in at.text]  # teacher labels belong to verification only
    button(at, f"rv_btn:{item_id}:specificity:4").click().run()
    assert [c.value for c in at.caption if c.value.startswith(md_escape("4:"))] == [
        md_escape("4: Fits the situation and the character.")]
    at.checkbox(key=f"rv_answer:{item_id}:generic").check().run()
    button(at, "rv_submit").click().run()
    assert not at.exception and "Your queue is done. Thank you!" in [s.value for s in at.success]
    with read_session() as session:
        stored = dict(session.execute(select(Question.name, Response.value)
                                      .join(Question, Question.id == Response.question_id)).tuples().all())
    assert stored == {"specificity": 4, "generic": True}
    assert type(stored["specificity"]) is int


def test_diversity_groups_and_an_oot_decision_on_the_page(admin):
    from core.review.results import oot_votes
    from tests.review_support import goemotions_id, pending_oot

    (ann,) = annotators(admin, "dee")
    make_examples([{"text": f"Line {i} <b>bold?</b>", "character": ("Mara", "keeper"), "target": "joy"}
                   for i in range(3)] + [{"text": "So wistful.", "oot": {"wistfulness": 0.8}}])
    diversity = create_campaign(admin, name="div", task="diversity", annotator_ids=[ann.id])
    pending_oot(goemotions_id(), "wistfulness", 7)
    oot = create_campaign(admin, name="oot", task="oot", annotator_ids=[ann.id])

    at = open_review(ann)
    at.selectbox(key="rv_campaign").set_value(diversity.id).run()
    assert ["1. Line 0 <b>bold?</b>", "2. Line 1 <b>bold?</b>", "3. Line 2 <b>bold?</b>"] == \
        [t.value for t in at.text if t.value.startswith(("1.", "2.", "3."))]
    item_id = next_item(ann, diversity.id).item_id
    button(at, f"rv_btn:{item_id}:diversity:2").click().run()
    button(at, f"rv_btn:{item_id}:repeated:3").click().run()
    button(at, "rv_submit").click().run()
    assert next_item(ann, diversity.id) is None

    at.selectbox(key="rv_campaign").set_value(oot.id).run()
    assert "wistfulness" in [c.value for c in at.code] and "So wistful." in [t.value for t in at.text]
    item_id = next_item(ann, oot.id).item_id
    button(at, f"rv_btn:{item_id}:action:map").click().run()
    at.selectbox(key=f"rv_answer:{item_id}:target").set_value("nervousness").run()
    button(at, "rv_submit").click().run()
    assert not at.exception, at.exception

    at = open_review(admin)
    at.segmented_control(key="rv_view").set_value("Results").run()
    at.selectbox(key="rv_campaign").set_value(oot.id).run()
    assert at.selectbox(key=f"rv_oot_target_{item_id}").value == "nervousness"  # the reviewers' majority
    button(at, f"rv_oot_apply_{item_id}").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (votes,) = oot_votes(admin, oot.id)
    assert (votes.current_action, votes.current_target) == ("map", "nervousness")
