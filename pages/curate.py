"""Curate page (not built yet: issue #6)."""

import streamlit as st

from ui.session import guard

actor = guard("curate")

st.title("Curate")
st.write("Accept, reject and relabel examples in bulk, with near-duplicate and label-issue signals and full undo.")
st.info("Not built yet: arrives with issue #6.")
