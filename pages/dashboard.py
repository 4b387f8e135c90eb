"""Dashboard: what the project holds today. Charts and quality summaries arrive with issue #6."""

import streamlit as st

from core.stats import overview
from ui.session import guard

actor = guard("dashboard")

st.title("Dashboard")
st.write("An overview of the project: corpora, generated examples, review progress and data set quality.")
st.info("Not built yet: arrives with issue #6.")

stats = overview(actor)
st.subheader("Today's counts")
cols = st.columns(5)
cols[0].metric("Corpora", f"{stats.corpora:,}")
cols[1].metric("Stories", f"{stats.stories:,}")
cols[2].metric("Passages", f"{stats.passages:,}")
cols[3].metric("Words", f"{stats.words:,}")
cols[4].metric("Taxonomies", f"{stats.taxonomies:,}")

st.subheader("Jobs by status")
cols = st.columns(len(stats.jobs_by_status))
for col, (status, n) in zip(cols, stats.jobs_by_status.items()):
    col.metric(status.capitalize(), f"{n:,}")
