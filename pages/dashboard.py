"""Dashboard: the project at a glance (counts, stages, labels, review, versions, models, the worker)."""

import pandas as pd
import plotly.express as px
import streamlit as st

from core.curate.dashboard import dashboard
from core.review.tasks.diversity import character_similarity, enqueue_character_similarity
from core.stats import overview
from ui.plain import chart_text, md_escape
from ui.session import guard

actor = guard("dashboard")

st.title("Dashboard")
st.write("An overview of the project: corpora, generated examples, review progress and data set quality.")

stats = overview(actor)
board = dashboard(actor)
cols = st.columns(6)
cols[0].metric("Corpora", f"{stats.corpora:,}")
cols[1].metric("Stories", f"{stats.stories:,}")
cols[2].metric("Generation runs", f"{sum(board.runs_by_status.values()):,}")
cols[3].metric("Examples", f"{sum(r['count'] for r in board.examples):,}")
cols[4].metric("Dataset versions", f"{len(board.versions):,}")
cols[5].metric("Models", f"{len(board.models):,}")

left, right = st.columns(2)
with left:
    st.subheader("Examples per stage")
    if board.examples:
        frame = pd.DataFrame(board.examples)
        frame["stage"] = frame["kind"] + " / " + frame["stage"]
        st.plotly_chart(px.bar(frame, x="stage", y="count", color="status"))
    else:
        st.caption("No example yet.")
with right:
    st.subheader("Labels: teacher vs reviewed")
    labels = sorted(set(board.teacher_labels) | set(board.reviewed_labels))
    if labels:
        frame = pd.DataFrame([{"label": chart_text(n), "source": "teacher", "count": board.teacher_labels.get(n, 0)}
                              for n in labels]
                             + [{"label": chart_text(n), "source": "reviewed", "count": board.reviewed_labels.get(n, 0)}
                                for n in labels])
        st.plotly_chart(px.bar(frame, x="label", y="count", color="source", barmode="group"))
    else:
        st.caption("No labels yet.")

left, right = st.columns(2)
with left:
    st.subheader("Review progress")
    if board.campaigns:
        frame = pd.DataFrame(board.campaigns)
        frame["campaign"] = frame["campaign"].map(chart_text)
        st.plotly_chart(px.bar(frame, x="campaign", y=["completed", "items"], barmode="overlay"))
    else:
        st.caption("No review campaign yet.")
    if board.mean_agreement is not None:
        st.metric("Mean reviewer agreement (Jaccard)", f"{board.mean_agreement:.2f}",
                  help=f"Over {board.agreement_examples:,} examples reviewed by two or more people.")
with right:
    st.subheader("Out-of-taxonomy labels pending")
    if board.oot_pending:
        frame = pd.DataFrame(board.oot_pending)
        frame["name"] = frame["name"].map(chart_text)  # names the teacher invented: shown as written
        st.plotly_chart(px.bar(frame, x="name", y="occurrences"))
    else:
        st.caption("None pending.")

left, right = st.columns(2)
with left:
    st.subheader("Dataset versions")
    if board.versions:
        frame = pd.DataFrame(board.versions)
        frame["name"] = frame["name"].map(chart_text)
        st.plotly_chart(px.bar(frame, x="name", y="size", color="evaluation"))
    else:
        st.caption("No version yet.")
with right:
    st.subheader("Models and their scores")
    if board.models:
        frame = pd.DataFrame(board.models)
        st.dataframe(frame, hide_index=True)
        frame["model"] = frame["model"].map(chart_text)
        numeric = [c for c in frame.columns if c not in ("model", "kind", "created")]
        if numeric:
            metric = st.selectbox("Score", numeric, key="dash_metric")
            st.plotly_chart(px.bar(frame, x="model", y=metric, color="kind"))
    else:
        st.caption("No model yet.")

st.subheader("Diversity: within- vs across-character similarity")
st.caption("Per emotion, the mean cosine similarity (MiniLM) of context-less utterances of the same character "
           "and of different characters; the paper: neutral 0.30 within vs 0.16 across.")
similarity = character_similarity(actor)
if similarity:
    frame = pd.DataFrame(similarity)
    st.dataframe(frame, hide_index=True, key="dash_similarity")
    long = frame.melt(id_vars=["emotion"], value_vars=[c for c in ("within", "across") if c in frame.columns],
                      var_name="pairs", value_name="similarity")
    long["emotion"] = long["emotion"].map(chart_text)
    st.plotly_chart(px.bar(long, x="emotion", y="similarity", color="pairs", barmode="group"))
else:
    st.caption("Not computed yet.")
if st.button("Compute the similarities (a worker job)", key="dash_similarity_job"):
    job_id = enqueue_character_similarity(actor)
    st.success(f"Queued as job {job_id}; follow it on the Jobs page.")

st.subheader("Worker throughput (last 24 hours)")
if board.throughput:
    st.plotly_chart(px.bar(pd.DataFrame(board.throughput), x="hour", y="units", color="kind",
                           hover_data=["jobs"]))
else:
    st.caption("No job finished in the last 24 hours.")
st.caption("Jobs by status: " + ", ".join(f"{md_escape(s)} {n:,}" for s, n in stats.jobs_by_status.items()))
