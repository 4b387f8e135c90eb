"""Shared Streamlit helpers for app.py and the pages. Thin: no rules, no queries of their own.

Lives outside pages/ so that Streamlit never mistakes a helper for a page.
"""
