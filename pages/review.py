"""Review page (not built yet: issue #5)."""

import streamlit as st

from ui.session import guard

actor = guard("review")

st.title("Review")
st.write("Let annotators check and correct generated examples in review campaigns.")
st.info("Not built yet: arrives with issue #5.")
