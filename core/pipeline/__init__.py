"""The Emo Pillars synthesis pipeline and the teacher's annotation of texts.

steps/ (one module per step, one registry) -> templates (versioned prompts, defaults from the steps)
-> plan (presets, settings, the estimate) -> gating (asking through the cache with content gates)
-> run (the worker job that drives a preset's steps) -> runs (what pages read); annotate (the text steps).
"""
