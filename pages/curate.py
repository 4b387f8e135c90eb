"""Curate: filter every example in SQL, act on one or on all matches, undo, and watch the signals."""

import math

import pandas as pd
import plotly.express as px
import streamlit as st

from core.auth import PermissionDenied
from core.curate import actions, browse, diversity, signals
from core.curate.filters import FLAGS, OOT_STATES, REVIEW_STATES, SORTS, CurationFilter
from core.taxonomy import list_taxonomies, get_taxonomy
from ui.plain import chart_text, md_escape
from ui.session import flash, guard, show_flashes

actor = guard("curate")

PAGE_SIZE = 50
KINDS = ("contextless", "contextual", "imported")
STATUSES = ("pending", "accepted", "rejected", "evaluation")

st.title("Curate")
st.write("Filter the whole data set, accept, reject or relabel one example or every match; every change can be undone.")
show_flashes("curate")

taxonomies = list_taxonomies()
all_labels = sorted({name for t in taxonomies for name in get_taxonomy(t.id).label_names})


def _ids(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.replace(" ", "").split(",") if p.isdigit())


# --------------------------------------------------------------------------- filter

with st.expander("Filter", expanded=True):
    c1, c2, c3 = st.columns(3)
    labels = c1.multiselect("Labels (any of)", all_labels, key="cur_labels")
    use_score = c1.checkbox("Score range", key="cur_use_score",
                            help="Score of the chosen labels; without labels, the example's top score.")
    score = c1.slider("Score", 0.0, 1.0, (0.0, 1.0), 0.05, key="cur_score", disabled=not use_score)
    kinds = c2.multiselect("Kind", KINDS, key="cur_kinds")
    statuses = c2.multiselect("Curation status", STATUSES, key="cur_statuses")
    review = c2.multiselect("Review status", REVIEW_STATES, key="cur_review")
    oot = c3.selectbox("Out-of-taxonomy labels", ("",) + OOT_STATES, key="cur_oot",
                       format_func=lambda s: {"": "any example", "any": "has OOT labels",
                                              "pending": "OOT label pending", "none": "no OOT label"}[s])
    use_rating = c3.checkbox("Mean rating range", key="cur_use_rating")
    rating = c3.slider("Rating", 1.0, 5.0, (1.0, 5.0), 0.5, key="cur_rating", disabled=not use_rating)
    use_agreement = c3.checkbox("Reviewer agreement range", key="cur_use_agreement")
    agreement = c3.slider("Agreement", 0.0, 1.0, (0.0, 1.0), 0.05, key="cur_agreement", disabled=not use_agreement)
    d1, d2, d3 = st.columns(3)
    search = d1.text_input("Text search (utterance or context)", key="cur_search")
    length = d1.slider("Length (characters)", 0, 1000, (0, 1000), 10, key="cur_length",
                       help="1000 at the right end means no upper limit.")
    run_ids = d2.text_input("Run ids (comma-separated)", key="cur_runs")
    flags = d2.multiselect("Pipeline flags (any of)", list(FLAGS), key="cur_flags",
                           help="names_emotion: the emotion-word check found the example's emotion named in its "
                                "context or utterance; gate: kept after the content gates rejected every try.")
    story_ids = d2.text_input("Story ids (comma-separated)", key="cur_stories")
    kinds_of_signal = signals.signal_kinds()
    signal_kind = d3.selectbox("Signal", [""] + kinds_of_signal, key="cur_signal",
                               format_func=lambda s: s or "(none)",
                               help="Any stored signal: near-duplicate clusters, label issues, agreement...")
    signal_min = d3.number_input("Signal at least", value=None, key="cur_signal_min")
    sort = d3.selectbox("Sort", SORTS, key="cur_sort")

selection = CurationFilter(
    labels=tuple(labels), score_min=score[0] if use_score else None, score_max=score[1] if use_score else None,
    kinds=tuple(kinds), statuses=tuple(statuses), review=tuple(review), oot=oot,
    rating_min=rating[0] if use_rating else None, rating_max=rating[1] if use_rating else None,
    agreement_min=agreement[0] if use_agreement else None, agreement_max=agreement[1] if use_agreement else None,
    search=search, length_min=length[0] or None, length_max=length[1] if length[1] < 1000 else None,
    run_ids=_ids(run_ids), story_ids=_ids(story_ids), signal_kind=signal_kind,
    signal_min=signal_min if signal_kind else None, flags=tuple(flags),
)

# --------------------------------------------------------------------------- results

try:
    _, total = browse.search(actor, selection, sort, 0, 1)
except ValueError as exc:
    st.error(md_escape(exc))
    st.stop()
pages = max(1, math.ceil(total / PAGE_SIZE))
cols = st.columns([1, 3])
page = cols[0].number_input("Page", min_value=1, max_value=pages, value=1, step=1, key="cur_page")
cols[1].caption(f"{total:,} matching examples · page {page} of {pages} · filter: {md_escape(selection.describe())}")
rows, _ = browse.search(actor, selection, sort, (int(page) - 1) * PAGE_SIZE, PAGE_SIZE)
if rows:
    st.dataframe(pd.DataFrame([{
        "id": r.id, "kind": r.kind, "status": r.status, "text": r.text, "context": r.context[:200],
        "labels": ", ".join(r.labels) + (" (relabelled)" if r.relabelled else ""),
        "top scores": ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.scores.items(), key=lambda kv: -kv[1])[:3]),
        "OOT": ", ".join(r.oot_names), "signals": ", ".join(f"{k}={v:g}" for k, v in r.signals.items()),
        "character": r.character, "story": r.story, "source": r.source,
    } for r in rows]), hide_index=True)
else:
    st.info("No example matches this filter.")

# --------------------------------------------------------------------------- one example

if rows:
    with st.container(border=True):
        st.subheader("One example")
        by_id = {r.id: r for r in rows}
        chosen = st.selectbox("Example", list(by_id), key="cur_one", format_func=lambda i: f"#{i} {by_id[i].text[:80]}")
        row = by_id[chosen]
        if row.context:
            st.caption("Context")
            st.text(row.context)
        st.caption("Utterance")
        st.text(row.text)
        st.text(f"Labels: {', '.join(row.labels) or '(none)'} · status: {row.status}")
        a, b, c = st.columns([1, 1, 3])
        one_labels = c.multiselect("New labels", all_labels, default=list(row.labels), key=f"cur_one_labels_{chosen}")
        for col, action, label in ((a, "accept", "Accept"), (b, "reject", "Reject"), (c, "relabel", "Relabel")):
            if col.button(label, key=f"cur_one_{action}"):
                try:
                    report = actions.decide(actor, action, example_ids=[chosen],
                                            labels=one_labels if action == "relabel" else None)
                except (actions.CurationError, PermissionDenied) as exc:
                    st.error(md_escape(exc))
                else:
                    flash(f"{label}ed example #{int(chosen)}.", scope="curate")
                    st.rerun()
        with st.expander("History of this example"):
            history = actions.example_history(actor, chosen)
            if history:
                st.dataframe(pd.DataFrame([{"action": h.action, "by": h.by, "at": h.at, "undone": h.undone,
                                            "reason": h.reason} for h in history]), hide_index=True)
            else:
                st.caption("No decision yet.")

# --------------------------------------------------------------------------- every match

with st.container(border=True):
    st.subheader("Every matching example")
    a, b = st.columns([1, 2])
    bulk_action = a.radio("Action", actions.ACTIONS, horizontal=True, key="cur_bulk_action")
    bulk_labels = b.multiselect("Labels (for relabel)", all_labels, key="cur_bulk_labels",
                                disabled=bulk_action != "relabel")
    reason = st.text_input("Reason (kept in the history)", key="cur_bulk_reason")
    confirm = st.checkbox(f"Yes, {md_escape(bulk_action)} all {total:,} matching examples", key="cur_bulk_confirm")
    if st.button("Apply to all matches", type="primary", disabled=not confirm or total == 0, key="cur_bulk_apply"):
        chosen_labels = bulk_labels if bulk_action == "relabel" else None
        try:
            outcome = actions.decide_or_enqueue(actor, bulk_action, selection, labels=chosen_labels, reason=reason)
            if outcome.queued:
                message = (f"Job #{outcome.job_id} queued: the worker applies {md_escape(bulk_action)} "
                           f"to {total:,} examples.")
            else:
                message = (f"{md_escape(outcome.report.action)}: {outcome.report.count:,} examples changed; "
                           "undo it below if it was a mistake.")
        except (actions.CurationError, PermissionDenied) as exc:
            st.error(md_escape(exc))
        else:
            flash(message, scope="curate")
            st.rerun()

# --------------------------------------------------------------------------- history and undo

with st.expander("Recent changes and undo"):
    batches = actions.list_batches(actor, limit=30)
    if batches:
        st.dataframe(pd.DataFrame([{"batch": b.batch_id[:8], "action": b.action, "examples": b.count, "by": b.by,
                                    "at": b.at, "undone": b.undone, "reason": b.reason} for b in batches]),
                     hide_index=True)
        open_batches = [b for b in batches if not b.undone]
        if open_batches:
            labels_of = {b.batch_id: f"{b.batch_id[:8]}: {b.action} ×{b.count} by {b.by}" for b in open_batches}
            target = st.selectbox("Batch to undo", list(labels_of), format_func=labels_of.get, key="cur_undo_batch")
            if st.button("Undo", key="cur_undo"):
                n = actions.undo(actor, target)
                flash(f"Undone: {n:,} decisions.", scope="curate")
                st.rerun()
    else:
        st.caption("No change yet.")

# --------------------------------------------------------------------------- signals

st.subheader("Signals")
st.caption("Duplicates (exact and MiniLM near-duplicates), reviewer agreement and diversity are recomputed by "
           "the worker; they never change annotations.")
s1, s2 = st.columns([2, 1])
parts = s1.multiselect("Recompute", signals.SIGNAL_PARTS, default=list(signals.SIGNAL_PARTS), key="cur_sig_parts")
threshold = s2.slider("Near-duplicate cosine threshold", 0.80, 0.99, signals.DEFAULT_NEAR_THRESHOLD, 0.01,
                      key="cur_sig_threshold")
if st.button("Recompute signals", key="cur_sig_run", icon=":material/refresh:"):
    try:
        job_id = signals.enqueue_signals(actor, tuple(parts), threshold)
    except (ValueError, PermissionDenied) as exc:
        st.error(md_escape(exc))
    else:
        st.success(f"Job #{job_id} queued: the worker recomputes the signals.")

tab_div, tab_dist = st.tabs(["Diversity", "Label distribution"])
with tab_div:
    group_by = st.radio("Per", ("emotion", "character"), horizontal=True, key="cur_div_by")
    table = diversity.diversity_table(group_by)
    if table:
        frame = pd.DataFrame([{group_by: chart_text(r.group_key), "examples": r.size, **r.metrics} for r in table])
        metric = st.selectbox("Metric", [m for m in diversity.METRICS if m in frame.columns], key="cur_div_metric")
        st.plotly_chart(px.bar(frame.head(40), x=group_by, y=metric, hover_data=["examples"]))
        st.dataframe(frame, hide_index=True)
    else:
        st.caption("No diversity figures yet: recompute the signals.")
with tab_dist:
    names = [t.name for t in taxonomies]
    if names:
        tax_name = st.selectbox("Taxonomy", names, index=names.index("GoEmotions") if "GoEmotions" in names else 0,
                                key="cur_dist_tax")
        tax = get_taxonomy(next(t.id for t in taxonomies if t.name == tax_name))
        counts = diversity.label_counts_for_page(actor)
        rows_dist = [r | {"label": chart_text(r["label"])} for r in diversity.against_target(counts, tax.label_names)]
        frame = pd.DataFrame(rows_dist).melt(id_vars=["label", "count"], value_vars=["share", "target_share"],
                                             var_name="series", value_name="fraction")
        st.plotly_chart(px.bar(frame, x="label", y="fraction", color="series", barmode="group"))
        st.caption("Current labels of the examples not rejected, against a uniform target.")
