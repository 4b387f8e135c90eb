"""Curation: the current labels of examples, filters, bulk decisions with undo, and signals."""
