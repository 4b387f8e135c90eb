"""The Review page through AppTest: an annotator answers with the buttons, an admin creates and reads."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core import worker
from core.review.campaigns import create_campaign, list_campaigns
from core.review.queue import next_item
from core.review.selection import Selection
from tests.review_support import annotators, make_examples
from ui.plain import md_escape
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
    first = next_item(ann, campaign.id)
    offered = [b.label for b in at.button if b.key.startswith(f"rv_btn:{first.item_id}:emotions:")]
    assert sorted(offered) == sorted(first.choices["emotions"]) and len(offered) == 7  # (laid out in 4 columns)
    assert first.choices["emotions"][-1] == "none"
    assert "fear" in offered  # the teacher's top 5, one distractor, none

    button(at, "rv_submit").click().run()
    assert [e.value for e in at.error] == [md_escape("Answer this before submitting: "
                                                     "Which emotions does the speaker express?")]

    item_id = first.item_id
    other = next(c for c in offered if c not in ("fear", "none"))
    button(at, f"rv_btn:{item_id}:emotions:fear").click().run()
    button(at, f"rv_btn:{item_id}:emotions:{other}").click().run()
    assert next_item(ann, campaign.id).answers == {"emotions": [c for c in offered if c in ("fear", other)]}
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
    from core.review.tasks.personalization import ANCHORS

    assert [c.value for c in at.caption if c.value.startswith("4")] == [md_escape(f"4: {ANCHORS['4']}")]
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


def _statuses(user_id: int) -> dict[int, set[str]]:
    from sqlalchemy import select

    from db.models import Response
    from db.session import read_session

    with read_session() as session:
        found: dict[int, set[str]] = {}
        for item_id, status in session.execute(select(Response.item_id, Response.status)
                                               .where(Response.user_id == user_id)).tuples():
            found.setdefault(item_id, set()).add(getattr(status, "value", status))
    return found


def test_back_skip_and_toggles_on_a_submitted_item_never_make_it_a_draft(admin):
    from core.review.agreement import campaign_report
    from core.review.responses import answer_history
    from core.review.results import results_csv

    (ann,) = annotators(admin, "nav")
    make_examples([{"text": f"line {i}", "labels": {"joy": 0.9}} for i in range(3)])
    campaign = create_campaign(admin, name="nav", task="verification", annotator_ids=[ann.id])
    at = open_review(ann)
    first = next_item(ann, campaign.id)
    one, two = [c for c in first.choices["emotions"] if c != "none"][:2]
    button(at, f"rv_btn:{first.item_id}:emotions:{one}").click().run()
    button(at, "rv_submit").click().run()
    assert next_item(ann, campaign.id).position == 1

    button(at, "rv_back").click().run()  # back on the submitted item: Back saved the new item's (empty) draft
    assert "Item 1 (submitted: a change is saved as a new version)" in [c.value for c in at.caption]
    button(at, f"rv_btn:{first.item_id}:emotions:{two}").click().run()  # a toggle: a new submitted version
    assert not at.error, [e.value for e in at.error]
    assert _statuses(ann.id)[first.item_id] == {"submitted"}
    assert [h["value"] for h in answer_history(ann, first.item_id)] == [[one]]
    button(at, "rv_skip").click().run()  # Skip on the submitted item: it stays submitted
    button(at, "rv_back").click().run()
    button(at, "rv_back").click().run()
    assert button(at, f"rv_btn:{first.item_id}:emotions:{one}").proto.type == "primary"
    button(at, f"rv_btn:{first.item_id}:emotions:{one}").click().run()
    button(at, f"rv_btn:{first.item_id}:emotions:{two}").click().run()  # emptied: refused, the answer kept
    assert any("submitted answer is kept" in e.value for e in at.error)
    button(at, "rv_skip").click().run()

    assert _statuses(ann.id)[first.item_id] == {"submitted"}
    assert next_item(ann, campaign.id).answers.get("emotions") in (None, [])  # the second item, unanswered
    report = campaign_report(admin, campaign.id)
    assert [(p.annotator, p.submitted) for p in report.progress] == [("nav", 1)] and report.completed == 1
    rows = [r for r in results_csv(admin, campaign.id).splitlines()[1:] if f",{first.item_id}," in r]
    assert len(rows) == 2 and all(",submitted," in r for r in rows)
    from tests.test_review_tasks import _card_counts

    assert _card_counts(first.examples[0].id) == {"submitted_responses": 2, "reviewers": 1, "reviewed_examples": 1}


def test_the_emo_pillars_preset_end_to_end(admin):
    from core.review.responses import save_answers
    from db.models import Example
    from db.session import write_session

    people = annotators(admin, "pa", "pb", "pc")
    originals = make_examples([{"text": f"I am so happy {i}!", "character": ("Mara", "keeper"), "target": "joy",
                                "labels": {"joy": 0.9}} for i in range(3)]
                              + [{"text": f"Calm day {i}.", "character": ("Tom", "sailor"), "target": "joy",
                                  "labels": {"neutral": 0.8}} for i in range(3)])
    rewrites = make_examples([{"text": f"Well, look at that {i}.", "kind": "contextual", "context": "The boat came.",
                               "character": ("Mara", "keeper"), "labels": {"joy": 0.7}} for i in range(3)])
    with write_session() as session:
        for original, rewrite in zip(originals, rewrites):
            session.get(Example, rewrite).parent_id = original

    at = open_review(admin)
    at.segmented_control(key="rv_view").set_value("New campaign").run()
    for person in people:
        at.multiselect(key="rv_preset_users").select(person.id)
    at.number_input(key="rv_preset_items").set_value(4)
    next(b for b in at.button if b.label == "Create the four campaigns").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    made = {c.task: c for c in list_campaigns(admin)}
    assert set(made) == {"verification", "rewrite", "personalization", "diversity"}
    assert all(c.overlap == 3 and c.item_count >= 1 for c in made.values())

    # Every annotator answers every item (the first through the page, the others in core).
    ann_at = open_review(people[0])
    ann_at.selectbox(key="rv_campaign").set_value(made["verification"].id).run()
    item = next_item(people[0], made["verification"].id)
    button(ann_at, f"rv_btn:{item.item_id}:emotions:none").click().run()
    button(ann_at, "rv_submit").click().run()
    assert not ann_at.exception
    answers = {"verification": lambda it: {"emotions": (it.payload["teacher"] or ["none"])[:1]},
               "rewrite": lambda it: {"less_explicit": "AB"[it.payload["example_ids"].index(it.payload["rewritten"])]},
               "personalization": lambda it: {"specificity": 4}, "diversity": lambda it: {"diversity": 3}}
    for task, campaign in made.items():
        for person in people:
            while (it := next_item(person, campaign.id)) is not None:
                save_answers(person, it.item_id, answers[task](it), submit=True)

    at.segmented_control(key="rv_view").set_value("Results").run()
    for task, campaign in made.items():
        at.selectbox(key="rv_campaign").set_value(campaign.id).run()
        assert not at.exception, at.exception
        table = next(d for d in at.dataframe if "paper" in d.value.columns).value
        assert list(table.columns) == ["measure", "this campaign", "paper", "note"] and len(table) >= 1
        if task == "verification":
            assert set(table["paper"]) >= {"0.365", "0.86", "0.70", "0.9"}
        if task == "rewrite":
            assert set(table["this campaign"]) == {"1.000"} and set(table["paper"]) == {"0.67 / 0.71 / 0.92"}
    assert all(c.completed_count == c.item_count for c in list_campaigns(admin))
