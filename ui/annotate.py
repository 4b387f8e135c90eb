"""The Generate page's "Annotate texts" tab: teacher descriptors for imported texts, and agreement."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

from core.auth import Actor
from core.pipeline import annotate
from core.taxonomy import list_taxonomies
from ui.plain import md_escape
from ui.session import flash


def render_annotation_tab(actor: Actor) -> None:
    st.write("The teacher writes free-text emotion descriptors for each imported text (a few words or short "
             "phrases with an intensity; its prompt does not list the taxonomy): what a contrastive student learns "
             "from. It can also score each text over a taxonomy; on a set with human labels, the table below "
             "compares those scores with the humans.")
    sources = annotate.list_sources(actor)
    if not sources:
        st.info("No imported texts yet: import a data set on the Export page (Import a labelled data set).")
        return
    st.dataframe(pd.DataFrame([{"set": s.source, "texts": s.texts, "with human labels": s.gold_labelled,
                                "described by the teacher": s.described} for s in sources]), hide_index=True)
    by_name = {s.source: s for s in sources}
    source = by_name[st.selectbox("Imported set", list(by_name), key="ann_source")]
    taxonomies = {t.id: t.name for t in list_taxonomies()}
    default = list(taxonomies).index(source.taxonomy_id) if source.taxonomy_id in taxonomies else 0
    taxonomy_id = st.selectbox("Taxonomy", list(taxonomies), index=default, format_func=taxonomies.get,
                               key="ann_taxonomy")
    left, middle, right = st.columns(3)
    limit = left.number_input("Texts to describe (first N)", 1, max(1, source.texts), min(200, source.texts),
                              key="ann_limit")
    steps = middle.multiselect("The teacher writes", list(annotate.TEXT_STEPS), list(annotate.TEXT_STEPS),
                               key="ann_steps", format_func={"describe": "free-text descriptors",
                                                             "text_labels": "scores over the taxonomy"}.get)
    if right.button("Describe with the teacher", type="primary", key="ann_launch", icon=":material/edit_note:"):
        try:
            job_id = annotate.enqueue_annotation(actor, source.source, taxonomy_id, limit=int(limit),
                                                 steps=tuple(steps))
        except ValueError as exc:
            st.error(md_escape(exc))
        else:
            flash(f"Job #{job_id} queued: progress in the sidebar.", scope="generate")
            st.rerun()
    if source.gold_labelled and source.described:
        _agreement(actor, source.source, taxonomy_id)


def _agreement(actor: Actor, source: str, taxonomy_id: int) -> None:
    result = annotate.agreement(actor, source, taxonomy_id)
    st.subheader("Teacher vs human labels")
    if not result.texts:
        st.caption("No text has both human labels and a teacher description yet.")
        return
    c1, c2, c3 = st.columns(3)
    c1.metric("Texts compared", result.texts)
    c2.metric("Macro-F1", f"{result.macro_f1:.3f}")
    c3.metric("Micro-F1", f"{result.micro_f1:.3f}", help=f"teacher labels at score ≥ {result.threshold:g}")
    frame = pd.DataFrame([vars(row) for row in result.per_label])
    st.plotly_chart(px.bar(frame, x="label", y=["f1", "kappa"], barmode="group",
                           title="Agreement per label (F1 and Cohen's kappa)"))
    st.dataframe(frame.round(3), hide_index=True)
