"""Training: classifiers and contrastive zero-shot models, their metrics, registry and evaluation (issue 7)."""
