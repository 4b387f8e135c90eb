"""`streamlit run serve.py`: the app (app.py) plus the session cookie's routes (ui/cookies.py).

Streamlit finds the `st.App` below and serves app.py with the extra routes on its own server
(Starlette under uvicorn), with every `--server.*` option as for `streamlit run app.py`.
"""

import streamlit as st

from ui.cookies import routes

app = st.App("app.py", routes=routes())
