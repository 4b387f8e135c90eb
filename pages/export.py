"""Export page (not built yet: issue #6)."""

import streamlit as st

from ui.session import guard

actor = guard("export")

st.title("Export")
st.write(
    "Freeze curated examples into versioned data sets with train/dev/test "
    "splits and export them (JSONL, CSV, Hugging Face datasets, Parquet)."
)
st.info("Not built yet: arrives with issue #6.")
