"""Generate page (not built yet: issue #4)."""

import streamlit as st

from ui.session import guard

actor = guard("generate")

st.title("Generate")
st.write(
    "Synthesise emotion-labelled utterances from corpus stories with a teacher "
    "LLM, after the Emo Pillars pipeline (characters, utterances, labels, contexts)."
)
st.info("Not built yet: arrives with issue #4.")
