"""Train page (not built yet: issue #7)."""

import streamlit as st

from ui.session import guard

actor = guard("train")

st.title("Train")
st.write("Distil a data set version into a small classifier and follow its training metrics.")
st.info("Not built yet: arrives with issue #7.")
