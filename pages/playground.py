"""Playground page (not built yet: issue #7)."""

import streamlit as st

from ui.session import guard

actor = guard("playground")

st.title("Playground")
st.write("Try trained models on your own sentences and compare their predictions.")
st.info("Not built yet: arrives with issue #7.")
