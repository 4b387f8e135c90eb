"""Admin tab "Prompts & labels": versioned prompt templates, the label threshold, the OOT dictionary."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core import labels
from core.auth import Actor, PermissionDenied
from core.pipeline import templates
from core.taxonomy import get_taxonomy, list_oot_mappings, list_taxonomies
from ui.plain import md_escape
from ui.session import flash, show_flashes

SCOPE = "prompts"


def render_prompts_and_labels(actor: Actor) -> None:
    show_flashes(SCOPE)
    _templates(actor)
    st.divider()
    _threshold(actor)
    st.divider()
    _oot(actor)


def _templates(actor: Actor) -> None:
    st.subheader("Prompt templates")
    st.caption("Saving adds a new version and makes it active; examples record the versions that made them, "
               "and older versions stay available for runs that pin them.")
    stage = st.selectbox("Stage", templates.STAGES, format_func=templates.STAGE_TITLES.get, key="tpl_stage")
    versions = templates.versions(stage)
    by_id = {t.id: t for t in versions}
    chosen = st.selectbox("Version", list(by_id), key=f"tpl_version_{stage}",
                          format_func=lambda i: f"v{by_id[i].version}" + (" (active)" if by_id[i].is_active else ""))
    template = by_id[chosen]
    st.caption("Placeholders: " + md_escape(", ".join("{" + f + "}" for f in sorted(templates.FIELDS[stage])))
               + ". Literal braces are written {{ and }}. The answer's JSON schema is fixed by the stage.")
    with st.form(f"tpl_form_{template.id}"):
        system_prompt = st.text_area("System prompt", template.system_prompt, height=80)
        user_prompt = st.text_area("User prompt", template.user_prompt, height=220)
        save = st.form_submit_button("Save as a new version", type="primary")
    if save:
        try:
            saved = templates.save_template(actor, stage, system_prompt, user_prompt)
        except (templates.TemplateError, PermissionDenied) as exc:
            st.error(md_escape(exc))
        else:
            flash(f"{templates.STAGE_TITLES[stage]}: version {saved.version} saved and active.", scope=SCOPE)
            st.rerun()
    if not template.is_active and st.button(f"Make v{template.version} the active version", key="tpl_activate"):
        templates.activate(actor, template.id)
        flash(f"v{template.version} is active again.", scope=SCOPE)
        st.rerun()


def _threshold(actor: Actor) -> None:
    st.subheader("Label threshold")
    st.caption("An emotion counts as present when the teacher's score reaches this value. Scores are kept, so "
               "changing it relabels every example at once.")
    current = labels.threshold()
    value = st.number_input("Threshold", 0.01, 1.0, float(current), 0.05, key="label_threshold")
    if st.button("Save threshold", disabled=value == current, key="label_threshold_save"):
        try:
            labels.set_threshold(actor, value)
        except (labels.LabelError, PermissionDenied) as exc:
            st.error(md_escape(exc))
        else:
            flash(f"Threshold set to {value:.2f}.", scope=SCOPE)
            st.rerun()


def _oot(actor: Actor) -> None:
    st.subheader("Out-of-taxonomy names")
    st.caption("Emotion names the teacher used outside the taxonomy. A decision is applied to every example "
               "at once, and to every later one.")
    names = {t.id: t.name for t in list_taxonomies()}
    taxonomy_id = st.selectbox("Taxonomy", list(names), format_func=names.get, key="oot_taxonomy")
    mappings = list_oot_mappings(taxonomy_id)
    if not mappings:
        st.caption("None yet.")
        return
    only_pending = st.toggle("Pending only", value=True, key="oot_pending_only")
    shown = [m for m in mappings if not only_pending or m.action.value == "pending"]
    st.dataframe(pd.DataFrame([{"name": m.source_name, "occurrences": m.occurrences, "action": m.action.value,
                                "label": m.target_label or ""} for m in sorted(shown, key=lambda m: -m.occurrences)]),
                 hide_index=True)
    if not shown:
        return
    label_names = [label.name for label in get_taxonomy(taxonomy_id).labels]
    with st.form("oot_decide"):
        name = st.selectbox("Name", [m.source_name for m in shown])
        action = st.radio("Decision", ["map", "drop", "propose", "pending"], horizontal=True,
                          format_func={"map": "Map onto a label", "drop": "Drop", "propose": "Propose as a new label",
                                       "pending": "Leave pending"}.get)
        target = st.selectbox("Label (for Map)", label_names)
        decide = st.form_submit_button("Apply", type="primary")
    if decide:
        try:
            updated = labels.decide_oot(actor, taxonomy_id, name, action, target if action == "map" else None)
        except (labels.LabelError, PermissionDenied) as exc:
            st.error(md_escape(exc))
        else:
            flash(f"'{md_escape(name)}': {md_escape(action)} applied to {updated:,} stored suggestions.", scope=SCOPE)
            st.rerun()
