"""Plotly figures of evaluations (per-label F1, confusion, calibration) and of runs side by side.

Functions take the plain `figures` dicts stored in `evaluations` and return plotly Figures; pages
only show them. Label names come from data: they go through `safe` (plotly renders some HTML).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go


def safe(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def per_label_f1(results: dict[str, dict[str, Any]], title: str = "F1 per label") -> go.Figure:
    """Grouped bars: one group per label, one bar per model (results: model name -> figures)."""
    fig = go.Figure()
    for name, figs in results.items():
        rows = figs.get("per_label", [])
        fig.add_bar(name=safe(name), x=[safe(r["label"]) for r in rows], y=[r["f1"] for r in rows],
                    customdata=[[r["precision"], r["recall"], r["support"]] for r in rows],
                    hovertemplate="%{x}: F1 %{y:.3f}<br>precision %{customdata[0]:.3f}, recall %{customdata[1]:.3f}"
                                  "<br>support %{customdata[2]}<extra></extra>")
    fig.update_layout(title=title, barmode="group", yaxis={"title": "F1", "range": [0, 1]}, height=380,
                      margin={"t": 50, "b": 10}, legend={"orientation": "h"})
    return fig


def confusion_heatmap(figs: dict[str, Any], title: str = "Confusion") -> go.Figure:
    labels = [safe(label) for label in figs.get("labels", [])]
    matrix = figs.get("confusion", [])
    multi = figs.get("multi_label", True)
    fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, colorscale="Blues",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=title + (" (texts with the true label: labels predicted)" if multi else ""),
                      xaxis={"title": "predicted"}, yaxis={"title": "true", "autorange": "reversed"},
                      height=max(320, 18 * len(labels) + 140), margin={"t": 50, "b": 10})
    return fig


def calibration_curve(results: dict[str, dict[str, Any]], title: str = "Calibration") -> go.Figure:
    """Reliability diagram: observed frequency against mean predicted probability, per model."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "grey"})
    for name, figs in results.items():
        calib = figs.get("calibration", {})
        bins = calib.get("bins", [])
        fig.add_scatter(x=[b["mean_predicted"] for b in bins], y=[b["observed"] for b in bins], mode="lines+markers",
                        name=f"{safe(name)} (ECE {calib.get('ece', 0.0):.3f})",
                        customdata=[b["count"] for b in bins],
                        hovertemplate="predicted %{x:.2f}, observed %{y:.2f}, %{customdata} cells<extra></extra>")
    fig.update_layout(title=title, xaxis={"title": "mean predicted probability", "range": [0, 1]},
                      yaxis={"title": "observed frequency", "range": [0, 1]}, height=380, margin={"t": 50, "b": 10})
    return fig


def comparison_bars(rows: Sequence[dict[str, Any]], metric: str = "macro-F1") -> go.Figure:
    """Models side by side on every benchmark (rows from core.train.evaluate.comparison)."""
    fig = go.Figure()
    benchmarks = sorted({k[: -len(metric) - 1] for row in rows for k in row if k.endswith(f" {metric}")})
    for row in rows:
        fig.add_bar(name=safe(row["model"]), x=[safe(b) for b in benchmarks],
                    y=[row.get(f"{b} {metric}") for b in benchmarks])
    fig.update_layout(title=f"{metric} by benchmark", barmode="group", yaxis={"title": metric, "range": [0, 1]},
                      height=380, margin={"t": 50, "b": 10}, legend={"orientation": "h"})
    return fig


def label_probabilities(labels: Sequence[str], probs: Sequence[float], title: str = "") -> go.Figure:
    """Horizontal bars of one text's label probabilities, highest on top."""
    order = sorted(range(len(labels)), key=lambda i: probs[i])
    fig = go.Figure(go.Bar(x=[float(probs[i]) for i in order], y=[safe(labels[i]) for i in order], orientation="h",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis={"title": "probability", "range": [0, 1]},
                      height=max(240, 22 * len(labels) + 80), margin={"t": 40 if title else 10, "b": 10})
    return fig
