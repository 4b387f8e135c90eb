"""Curate, Export and Dashboard pages, driven through streamlit.testing (AppTest)."""

from __future__ import annotations

from sqlalchemy import select

from core.curate.filters import CurationFilter
from core.datasets import versions
from db.models import Example
from db.session import read_session
from tests.curate_support import add_example, add_review, make_stories
from tests.test_pages import navigation_steady_state, open_page, shared_component_registry  # noqa: F401
from ui.plain import md_escape


def statuses() -> dict[int, str]:
    with read_session() as session:
        return dict(session.execute(select(Example.id, Example.status)).tuples().all())


def test_curate_page_filters_and_applies_a_bulk_action_then_undoes_it(admin):
    joy = [add_example(f"Happy line {i}", {"joy": 0.9}) for i in range(3)]
    fear = add_example("<b>Scary</b> line", {"fear": 0.8})
    at = open_page(admin, "curate")
    assert not at.exception, at.exception
    assert "4 matching examples" in " ".join(c.value for c in at.caption)
    at.multiselect(key="cur_labels").set_value(["joy"]).run()
    assert "3 matching examples" in " ".join(c.value for c in at.caption)
    at.radio(key="cur_bulk_action").set_value("reject").run()
    at.checkbox(key="cur_bulk_confirm").check().run()
    at.button(key="cur_bulk_apply").click().run()
    assert not at.exception, at.exception
    assert [statuses()[i] for i in joy] == ["rejected"] * 3 and statuses()[fear] == "pending"
    assert any("3 examples changed" in s.value for s in at.success)

    at.button(key="cur_undo").click().run()
    assert [statuses()[i] for i in joy] == ["pending"] * 3
    # Text from the data is shown as plain text, never as HTML or markdown.
    at.multiselect(key="cur_labels").set_value(["fear"]).run()
    assert "<b>Scary</b> line" in [t.value for t in at.text]
    assert not at.markdown or all("<b>Scary" not in m.value for m in at.markdown)


def test_export_page_freezes_a_version_and_queues_an_export(admin):
    stories = make_stories(10)
    for i in range(40):
        add_example(f"Line {i}", {"joy": 0.9} if i % 2 else {"sadness": 0.7}, story_id=stories[i % 10])
    at = open_page(admin, "export")
    assert not at.exception, at.exception
    at.text_input(key="exp_name").input("first version").run()
    at.button(key="exp_freeze").click().run()
    assert not at.exception, at.exception
    assert any("40 examples" in s.value for s in at.success), [s.value for s in at.success]
    listed = versions.list_versions(admin)
    assert len(listed) == 1 and listed[0].size == 40
    at.button(key="exp_export").click().run()
    assert any("queued" in s.value for s in at.success)

    from core import worker

    assert worker.serve(once=True) == 1
    at.run()
    assert not at.exception, at.exception
    assert at.get("download_button"), "the zip of the finished export is offered for download"


def test_dashboard_shows_charts(admin):
    a = add_example("Yay!", {"joy": 0.9})
    add_review(a, "r1", labels=["joy"], rating=4)
    versions.freeze(admin, "dash", CurationFilter())
    at = open_page(admin, "dashboard")
    assert not at.exception, at.exception
    assert not at.error
    assert len(at.get("plotly_chart")) >= 3
    assert any(m.label == "Dataset versions" and m.value == "1" for m in at.metric)


def test_annotators_cannot_open_curation_pages(annotator):
    from streamlit.testing.v1 import AppTest

    from tests.test_pages import ROOT, log_in_as
    from ui.nav import visible_sections

    visible = {p.page_id for pages in visible_sections(annotator).values() for p in pages}
    for page in ("curate", "export", "dashboard"):
        assert page not in visible
        at = log_in_as(AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=30), annotator)
        at.run()
        assert [e.value for e in at.error] == [md_escape(f"The annotator role cannot open the {page} page.")]


def test_text_from_data_is_escaped_for_markdown_and_charts():
    from ui.plain import chart_text, md_escape

    assert md_escape("![x](http://evil) *b*") == r"\!\[x\]\(http\:\/\/evil\) \*b\*".replace(r"\/", "/")
    assert chart_text('<a href="x">OOT</a> & co') == '&lt;a href="x"&gt;OOT&lt;/a&gt; &amp; co'


def test_import_errors_from_a_bad_file_show_on_the_export_page(admin):
    at = open_page(admin, "export")
    at.text_input(key="exp_source").input("src").run()
    at.button(key="exp_import").click().run()
    assert [e.value for e in at.error] == ["Choose a file or give a folder first\\."]
