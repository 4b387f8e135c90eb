"""Taxonomy edits are one transaction; removing a label that examples carry asks first and keeps their
suggestions, which come back when the label is added again (issue 14, point 5)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core import labels, taxonomy
from core.taxonomy import RemovalNeedsConfirmation, TaxonomyError
from db.models import Label, LabelGrouping, OOTAction, OOTMapping, Suggestion
from db.session import read_session, write_session
from tests.curate_support import add_example, goemotions_id
from tests.test_pages import navigation_steady_state, open_page, shared_component_registry  # noqa: F401


def rows(detail: taxonomy.TaxonomyDetail) -> list[tuple[int, str, str]]:
    """The Admin page's editor rows: (label id, name, description)."""
    return [(label.id, label.name, label.description) for label in detail.labels]


def suggestion_count() -> int:
    with read_session() as session:
        return int(session.scalar(select(func.count(Suggestion.id))))


def test_renames_additions_and_removals_save_together_or_not_at_all(admin):
    detail = taxonomy.create_taxonomy(admin, "Moods", "", [("calm", "at ease"), ("tense", "on edge"), ("bored", "")])
    calm, tense, bored = rows(detail)
    # Swap two names and add a label in one save: one transaction, ids follow the rows.
    swapped = taxonomy.update_taxonomy(admin, detail.id, labels=[(calm[0], "tense", "x"), (tense[0], "calm", "y"),
                                                                 bored, (None, "giddy", "")])
    assert [(l.id, l.name) for l in swapped.labels] == [(calm[0], "tense"), (tense[0], "calm"), (bored[0], "bored"),
                                                        (swapped.labels[3].id, "giddy")]
    # A rename followed by a bad row: nothing of it is saved (renames used to commit one by one first).
    with pytest.raises(TaxonomyError, match="duplicate label 'giddy'"):
        taxonomy.update_taxonomy(admin, detail.id, name="Moods 2",
                                 labels=[(calm[0], "serene", ""), (None, "giddy", ""), (None, "Giddy", "")])
    assert taxonomy.get_taxonomy(detail.id) == swapped
    with pytest.raises(TaxonomyError, match="no label with id"):  # a row of another taxonomy's label
        taxonomy.update_taxonomy(admin, detail.id, labels=[(calm[0], "a", ""), (10**6, "b", "")])
    assert taxonomy.get_taxonomy(detail.id) == swapped


def test_removing_a_label_examples_carry_asks_first_and_keeps_their_suggestions(admin):
    tid = goemotions_id()
    first = add_example("I could not stop grinning", {"joy": 0.9, "pride": 0.4})
    second = add_example("What a lovely morning", {"joy": 0.7})
    mapped = add_example("So happy")
    with write_session() as session:  # 'happiness': a seeded synonym, mapped onto joy as it is stored
        labels.add_suggestions(session, mapped, tid, [labels.ScoredName("happiness", 0.8)], agent="teacher@test")
    before = taxonomy.get_taxonomy(tid)
    assert labels.example_labels([first, mapped]) == {first: ["joy", "pride"], mapped: ["joy"]}
    ekman_links = _groupings_of("joy")
    total = suggestion_count()

    without_joy = [row for row in rows(before) if row[1] != "joy"]
    with pytest.raises(RemovalNeedsConfirmation) as asked:
        taxonomy.update_taxonomy(admin, tid, labels=without_joy)
    [removal] = asked.value.removals
    assert (removal.name, removal.suggestions, removal.mapped_names) == ("joy", 3, 2)  # happiness, delight
    assert removal.groupings == ekman_links > 0
    assert "'joy' (3 suggestions)" in str(asked.value)
    assert taxonomy.get_taxonomy(tid) == before, "nothing changes before the confirmation"

    after = taxonomy.update_taxonomy(admin, tid, labels=without_joy, confirm_removals=True)
    assert "joy" not in after.label_names and len(after.labels) == 27
    assert suggestion_count() == total, "no suggestion is deleted with the label"
    assert labels.example_labels([first, second, mapped]) == {first: ["pride"], second: [], mapped: []}
    assert dict(labels.oot_names([first, mapped])) == {first: [("joy", "pending")], mapped: [("happiness", "pending")]}
    oot = {m.source_name: m for m in taxonomy.list_oot_mappings(tid)}
    assert (oot["joy"].action, oot["joy"].occurrences) == (OOTAction.pending, 2)
    assert "add the label again to restore it" in oot["joy"].note
    assert (oot["happiness"].action, oot["happiness"].target_label) == (OOTAction.pending, None)

    # Adding the label back restores what it had: the suggestions count for it again.
    restored = taxonomy.update_taxonomy(admin, tid, labels=[*rows(after), (None, "joy", "Happiness.")])
    assert "joy" in restored.label_names
    assert labels.example_labels([first, second]) == {first: ["joy", "pride"], second: ["joy"]}
    assert "joy" not in {m.source_name for m in taxonomy.list_oot_mappings(tid)}
    assert labels.decide_oot(admin, tid, "happiness", "map", "joy") == 1  # the mapped name is decided again
    assert labels.example_labels([mapped]) == {mapped: ["joy"]}


def test_removing_a_label_nobody_uses_needs_no_confirmation(admin):
    tid = goemotions_id()
    add_example("Calm", {"relief": 0.9})
    detail = taxonomy.get_taxonomy(tid)
    after = taxonomy.update_taxonomy(admin, tid, labels=[row for row in rows(detail) if row[1] != "grief"])
    assert "grief" not in after.label_names


def _groupings_of(name: str) -> int:
    with read_session() as session:
        label_id = session.scalar(select(Label.id).where(Label.taxonomy_id == goemotions_id(), Label.name == name))
        return int(session.scalar(select(func.count(LabelGrouping.id)).where(
            (LabelGrouping.source_label_id == label_id) | (LabelGrouping.target_label_id == label_id))))


def test_admin_page_confirms_before_removing_a_label_with_suggestions(admin):
    tid = goemotions_id()
    example = add_example("Such a <b>grin</b>", {"joy": 0.9})
    at = open_page(admin, "admin")
    at.selectbox(key="taxonomy_selected").set_value(tid).run()
    joy_row = taxonomy.get_taxonomy(tid).label_names.index("joy")
    editor = next(e for e in at.data_editor if e.key.startswith(f"taxonomy_labels_{tid}_"))
    at.session_state[editor.key] = {"edited_rows": {}, "added_rows": [], "deleted_rows": [joy_row]}
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception, at.exception
    assert any("joy" in w.value and "1 suggestion" in w.value for w in at.warning), [w.value for w in at.warning]
    assert "joy" in taxonomy.get_taxonomy(tid).label_names, "not removed before the confirmation"
    at.button(key="taxonomy_confirm_removal").click().run()
    assert not at.exception, at.exception
    assert "Taxonomy saved." in [s.value for s in at.success]
    assert "joy" not in taxonomy.get_taxonomy(tid).label_names
    assert labels.oot_names([example]) == {example: [("joy", "pending")]}
