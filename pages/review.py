"""Review: annotators answer their queue one item at a time; admins create campaigns and read results.

Keys (Streamlit's own button shortcuts): 1-9 answer the item's first rating or label question,
S submits and opens the next item, → skips, ← goes back. What an item shows and asks is its
task's (core/review/tasks/); the answer state and the item widgets are ui/review.py's.
"""

import pandas as pd
import plotly.express as px
import streamlit as st

from core import taxonomy as tax
from core.auth import PermissionDenied
from core.review import agreement, campaigns, questions as qs, results
from core.review import tasks as review_tasks
from core.review.selection import Selection
from ui import review as rv
from ui.plain import md_escape
from ui.session import flash, guard, show_flashes

actor = guard("review")


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------- annotate


def annotate(campaign: campaigns.CampaignView) -> None:
    item = rv.current_item(actor, campaign.id)
    main, side = st.columns([2, 1], gap="large")
    with side:
        if item is not None:
            st.progress(item.done / item.total if item.total else 0.0, text=f"{item.done} of {item.total} submitted")
            rv.navigation(actor, campaign.id, item)
        st.subheader("Guidelines")
        st.text(campaign.guidelines or "No guidelines for this campaign.")
        st.caption(f"Keys: 1-9 answer · {rv.SUBMIT_KEY} submit and next · → skip · ← back")
    with main:
        if item is None:
            st.success("Your queue is done. Thank you!")
            st.button("Back to my last item", key="rv_back_done", shortcut=rv.BACK_KEY,
                      on_click=rv.back, args=(actor, campaign.id, None, []))
            return
        rv.load_into_state(item)
        status = {"submitted": " (submitted: a change is saved as a new version)",
                  "skipped": " (skipped before)"}.get(item.status, "")
        st.caption(f"Item {item.position + 1}{status}")
        rv.show_blocks(item.shown)
        keyed = rv.keyed_question(item)
        for question in item.questions:
            rv.question_widget(actor, item, question, question.name == keyed)
        rv.messages()
    if item.others:
        with side:
            st.subheader("Other annotators")
            for username, name, value in item.others:
                st.text(f"{username} · {name}: {value}")


# --------------------------------------------------------------------------- results (admins)


def results_view(campaign: campaigns.CampaignView) -> None:
    report = agreement.campaign_report(actor, campaign.id)
    a, b, c = st.columns(3)
    a.metric("Items", report.items)
    b.metric("Completed", report.completed)
    c.metric("Annotators", len(report.progress))
    st.progress(report.completed / report.items if report.items else 0.0, text="Campaign progress")

    st.subheader(md_escape(f"{review_tasks.get(campaign.task).title}: results beside the paper"))
    figures = results.task_results(actor, campaign.id)
    if figures.figures:
        st.dataframe(pd.DataFrame([{"measure": f.name, "this campaign": fmt(f.value), "paper": f.paper or "",
                                    "note": f.note} for f in figures.figures]), hide_index=True, key="rv_figures")
    for title, rows in figures.tables:
        if rows:
            st.caption(md_escape(title))
            st.dataframe(pd.DataFrame(list(rows)), hide_index=True)

    st.subheader("Progress per annotator")
    progress = pd.DataFrame([{"annotator": p.annotator, "submitted": p.submitted, "skipped": p.skipped,
                              "remaining": p.remaining, "median s/item": p.median_seconds} for p in report.progress])
    if not progress.empty:
        st.plotly_chart(px.bar(progress, x="annotator", y=["submitted", "skipped", "remaining"], barmode="stack"),
                        key="rv_progress_chart")
        st.dataframe(progress, hide_index=True)
    if report.seconds_per_item:
        st.plotly_chart(px.histogram(x=list(report.seconds_per_item), labels={"x": "seconds per item"}, nbins=30),
                        key="rv_time_chart")

    st.subheader("Agreement per question")
    st.dataframe(pd.DataFrame([{"question": q.name, "kind": q.kind, "Krippendorff's alpha": fmt(q.alpha),
                                "level": q.level, "items with 2+ answers": q.items} for q in report.questions]),
                 hide_index=True)
    for question in report.questions:
        if question.pairs:
            st.caption(f"{md_escape(question.name)}: pairwise Cohen's kappa")
            st.dataframe(pd.DataFrame([{"annotators": f"{p.first} / {p.second}", "kappa": fmt(p.kappa),
                                        "items": p.items} for p in question.pairs]), hide_index=True)

    st.subheader("Export")
    left, right = st.columns(2)
    # A callable: the CSV of every answer is written only when someone clicks.
    left.download_button("Answers (CSV)", lambda: results.results_csv(actor, campaign.id),
                         file_name=f"review-{campaign.id}.csv", mime="text/csv", key="rv_csv_answers")
    right.download_button("Agreement (CSV)", results.agreement_csv(report), mime="text/csv",
                          file_name=f"review-{campaign.id}-agreement.csv", key="rv_csv_agreement")
    if review_tasks.get(campaign.task).admin_decides:
        oot_decisions(campaign)
    campaign_settings(campaign)


def oot_decisions(campaign: campaigns.CampaignView) -> None:
    st.subheader("Out-of-taxonomy decisions")
    labels = tax.get_taxonomy(campaign.taxonomy_id).label_names if campaign.taxonomy_id else []
    show_flashes("oot")
    for votes in results.oot_votes(actor, campaign.id):
        with st.container(border=True):
            st.code(votes.oot_name, language=None)
            st.text(f"{votes.occurrences} occurrences · votes {votes.actions or 'none'} · targets "
                    f"{votes.targets or 'none'} · now: {votes.current_action} {votes.current_target or ''}")
            suggested_action, suggested_target = votes.suggestion
            actions = list(results.OOT_ACTIONS)
            cols = st.columns(3)
            action = cols[0].selectbox("Decision", actions, key=f"rv_oot_action_{votes.item_id}",
                                       index=actions.index(suggested_action) if suggested_action else 0)
            target = cols[1].selectbox("Maps to", labels, key=f"rv_oot_target_{votes.item_id}",
                                       index=labels.index(suggested_target) if suggested_target in labels else None)
            if cols[2].button("Apply", key=f"rv_oot_apply_{votes.item_id}"):
                try:
                    results.decide_oot_item(actor, campaign.id, votes.item_id, action, target)
                except (ValueError, PermissionDenied, ImportError) as exc:
                    st.error(md_escape(str(exc)))
                else:
                    flash("Decision applied to the mapping dictionary and the examples.", scope="oot")
                    st.rerun()


def campaign_settings(campaign: campaigns.CampaignView) -> None:
    st.subheader("Settings")
    reveal = st.toggle("Annotators see each other's answers", value=campaign.reveal_responses,
                       key=f"rv_reveal_{campaign.id}")
    if reveal != campaign.reveal_responses:
        campaigns.set_reveal(actor, campaign.id, reveal)
        st.rerun()
    is_open = st.toggle("Open for answers", value=campaign.status == "open", key=f"rv_open_{campaign.id}")
    if is_open != (campaign.status == "open"):
        campaigns.set_status(actor, campaign.id, "open" if is_open else "closed")
        st.rerun()


# --------------------------------------------------------------------------- new campaign (admins)


def paper_preset(users: dict[int, str]) -> None:
    st.subheader(campaigns.PAPER_PRESET)
    titles = ", ".join(review_tasks.get(t).title for t in campaigns.PAPER_TASKS)
    st.caption(md_escape(f"The paper's human evaluation in one click: {titles}; {campaigns.PAPER_ITEMS} items each, "
                         f"every item answered by {campaigns.PAPER_ANNOTATORS} annotators."))
    with st.form("rv_preset"):
        picked = st.multiselect("Annotators (3)", list(users), format_func=users.get, key="rv_preset_users")
        left, middle, right = st.columns(3)
        items = left.number_input("Items per campaign", min_value=1, value=campaigns.PAPER_ITEMS, key="rv_preset_items")
        share = middle.number_input("Neutral share (verification)", min_value=0.0, max_value=1.0, value=0.10,
                                    step=0.05, key="rv_preset_neutral")
        seed = right.number_input("Seed", min_value=0, value=0, key="rv_preset_seed")
        if st.form_submit_button("Create the four campaigns", type="primary"):
            try:
                made = campaigns.create_paper_preset(actor, picked, items=int(items), neutral_share=float(share),
                                                     seed=int(seed))
            except (ValueError, PermissionDenied) as exc:
                st.error(md_escape(str(exc)))
            else:
                flash(md_escape("Created: " + ", ".join(f"{c.name} ({c.item_count} items)" for c in made)), scope="review")
                st.rerun()


def new_campaign_form(users: dict[int, str]) -> None:
    st.subheader("New campaign")
    task_name = st.selectbox("Task", review_tasks.NAMES, key="rv_new_task",
                             format_func=lambda t: review_tasks.get(t).title)
    task = review_tasks.get(task_name)
    st.caption(md_escape(task.summary))
    taxonomies = tax.list_taxonomies()
    default_tax = next((i for i, t in enumerate(taxonomies) if t.name == tax.GOEMOTIONS), 0)
    with st.form("rv_new_campaign"):
        name = st.text_input("Name", key="rv_new_name")
        taxonomy = st.selectbox("Taxonomy", taxonomies, index=default_tax, format_func=lambda t: t.name)
        chosen = [spec for spec in task.questions()
                  if st.checkbox(md_escape(spec.title), value=True, key=f"rv_q_{task_name}_{spec.name}")]
        extra_title = st.text_input("Add a question (optional title)", key="rv_extra_title")
        extra_kind = st.selectbox("Its kind", qs.KINDS, key="rv_extra_kind")
        extra_choices = st.text_input("Its choices (comma separated, for label questions)", key="rv_extra_choices")
        guidelines = st.text_area("Guidelines shown beside each item", value=task.guidelines, key="rv_new_guidelines")
        st.markdown("**Items**")
        mode = st.radio("Choose examples by", ["Filter", "Stratified sample", "Example ids", "Top label-issue scores"],
                        horizontal=True, key="rv_new_mode")
        top_n = st.number_input("How many top label-issue scores", min_value=1, value=100, key="rv_new_top")
        ids_text = st.text_area("Example ids (e.g. the top label-issue scores from Curate)", key="rv_new_ids")
        run_id = st.number_input("Generation run id (0 = any)", min_value=0, step=1, key="rv_new_run")
        kind = st.selectbox("Kind", ["any", "contextless", "contextual", "imported"], key="rv_new_kind")
        label = st.text_input("Teacher label present (optional)", key="rv_new_label")
        per_emotion = st.number_input("Examples per emotion (stratified)", min_value=1, value=20, key="rv_new_per")
        limit = st.number_input("At most this many items, a seeded sample (0 = all)", min_value=0, value=0,
                                key="rv_new_limit")
        neutral = st.number_input("Verification: share of neutral items (0 = as sampled)", min_value=0.0,
                                  max_value=1.0, value=0.0, step=0.05, key="rv_new_neutral")
        group_by = st.selectbox("Diversity groups", ["character_emotion", "emotion", "both"], key="rv_new_group_by")
        group_size = st.number_input("Utterances per diversity group", min_value=2, max_value=9, value=5)
        picked = st.multiselect("Annotators", list(users), format_func=users.get, key="rv_new_users")
        overlap = st.number_input("Annotators per item (overlap)", min_value=1, value=1, key="rv_new_overlap")
        needed = st.number_input("Submissions that complete an item", min_value=1, value=1, key="rv_new_needed")
        show_suggestions = st.checkbox("Show the teacher's labels", value=True, key="rv_new_show")
        if st.form_submit_button("Create campaign", type="primary"):
            try:
                ids = [int(t) for t in ids_text.replace(",", " ").split()] if mode == "Example ids" else None
                if extra_title.strip():
                    options = {"choices": [c.strip() for c in extra_choices.split(",") if c.strip()]}
                    chosen.append(qs.QuestionSpec(f"q{len(chosen) + 1}", extra_title.strip(), extra_kind, options))
                selection = Selection(
                    example_ids=ids, top_signal="label_issue" if mode == "Top label-issue scores" else None,
                    top_n=int(top_n), run_id=run_id or None, kind=None if kind == "any" else kind,
                    label=tax.normalise_label(label) if label.strip() else None,
                    per_emotion=int(per_emotion) if mode == "Stratified sample" else None,
                    limit=int(limit) or None, random_sample=True, neutral_share=float(neutral) or None,
                    group_by=group_by, group_size=int(group_size))
                job_id = campaigns.enqueue_campaign(
                    actor, name=name, task=task_name, annotator_ids=picked, selection=selection,
                    questions=chosen, overlap=int(overlap), min_submissions=int(needed), guidelines=guidelines,
                    show_suggestions=show_suggestions, taxonomy_id=taxonomy.id if taxonomy else None)
            except (ValueError, PermissionDenied) as exc:
                st.error(md_escape(str(exc)))
            else:
                flash(f"Queued: the worker creates the campaign and chooses its items (job {job_id}). "
                      "It appears here when done; follow it on the Jobs page.", scope="review")
                st.rerun()


# --------------------------------------------------------------------------- the screen

st.title("Review")
show_flashes("review")
view = "Annotate"
if actor.is_admin:
    view = st.segmented_control("View", ["Annotate", "Results", "New campaign"], default="Annotate", key="rv_view",
                                label_visibility="collapsed") or "Annotate"

if view == "New campaign":
    users = {uid: f"{name} ({role})" for uid, name, role in campaigns.annotator_choices(actor)}
    paper_preset(users)
    new_campaign_form(users)
    st.stop()

mine = campaigns.list_campaigns(actor)
if not mine:
    st.info("No review campaign yet." if actor.is_admin else "You are in no review campaign yet.")
    st.stop()
by_id = {c.id: c for c in mine}
campaign_id = st.selectbox("Campaign", list(by_id), key="rv_campaign",
                           format_func=lambda i: f"{by_id[i].name} · {review_tasks.get(by_id[i].task).title} · "
                                                 f"{by_id[i].completed_count}/{by_id[i].item_count} done")
chosen = by_id[campaign_id]
if view == "Results":
    results_view(chosen)
elif chosen.status != "open":
    st.info("This campaign is closed.")
else:
    annotate(chosen)
