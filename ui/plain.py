"""Text from data (file contents, label names, filters typed by a user) shown inside markdown widgets."""

from __future__ import annotations

import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def md_escape(text: str) -> str:
    """Backslash-escape markdown so st.success / st.error / st.caption show the text as written."""
    return _MARKDOWN.sub(r"\\\1", str(text))


def chart_text(text: str) -> str:
    """Plotly renders a few HTML tags in labels (<b>, <a href>...): show data, such as OOT names, as written."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
