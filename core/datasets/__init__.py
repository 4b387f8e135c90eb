"""Datasets: import of labelled sets, frozen versions with splits, export formats and cards."""
