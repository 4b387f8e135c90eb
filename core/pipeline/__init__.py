"""The Emo Pillars synthesis pipeline and the teacher's annotation of imported texts.

templates (versioned prompts) -> plan (what to ask, quotas, cost) -> stages (requests and their
results) -> run (the worker job that drives the stages) -> runs (what pages read).
"""
