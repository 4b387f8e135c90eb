"""Review: annotators answer their queue one item at a time; admins create campaigns and read results.

Keys (Streamlit's own button shortcuts): 1-9 answer the item's first rating or label question,
S submits and opens the next item, → skips, ← goes back. Generated text is always shown with
st.text (plain text: no HTML or markdown from data reaches the page).
"""

import time

import pandas as pd
import plotly.express as px
import streamlit as st

from core import taxonomy as tax
from core.auth import PermissionDenied
from core.review import agreement, campaigns, queue, questions as qs, responses, results
from core.review.selection import Selection
from ui.plain import md_escape
from ui.session import flash, guard, show_flashes

actor = guard("review")

SUBMIT_KEY, SKIP_KEY, BACK_KEY = "S", "Right", "Left"
KEY_DIGITS = [str(d) for d in range(1, 10)]
LABEL_COLUMNS = 4
ERROR_KEY = "rv_error"

st.title("Review")


# --------------------------------------------------------------------------- answer state


def answer_key(item_id: int, name: str) -> str:
    return f"rv_answer:{item_id}:{name}"


def started_key(item_id: int) -> str:
    return f"rv_started:{item_id}"


def versions_key(item_id: int) -> str:
    return f"rv_versions:{item_id}"


def current_key(campaign_id: int) -> str:
    return f"rv_current:{campaign_id}"


def load_into_state(item: queue.ItemView) -> None:
    """First view of an item in this session: its saved answers become the widgets' state."""
    if versions_key(item.item_id) in st.session_state:
        return
    for question in item.questions:
        st.session_state[answer_key(item.item_id, question.name)] = item.answers.get(question.name)
    st.session_state[versions_key(item.item_id)] = dict(item.versions)
    st.session_state[started_key(item.item_id)] = time.monotonic()


def forget(item_id: int, names: list[str]) -> None:
    for key in [versions_key(item_id), started_key(item_id)] + [answer_key(item_id, n) for n in names]:
        st.session_state.pop(key, None)


def collected(item_id: int, names: list[str]) -> dict:
    return {n: st.session_state.get(answer_key(item_id, n)) for n in names}


def elapsed(item_id: int) -> float:
    now = time.monotonic()
    seconds = now - st.session_state.get(started_key(item_id), now)
    st.session_state[started_key(item_id)] = now
    return seconds


def save(item_id: int, names: list[str], submit: bool) -> bool:
    """Save the item's answers (draft or submission); False, with a message, when refused."""
    try:
        result = responses.save_answers(actor, item_id, collected(item_id, names), submit=submit,
                                        seconds=elapsed(item_id), versions=st.session_state.get(versions_key(item_id)))
    except (qs.AnswerError, responses.ConflictError, PermissionDenied, ValueError) as exc:
        st.session_state[ERROR_KEY] = str(exc)
        return False
    st.session_state[versions_key(item_id)] = dict(result.versions)
    return True


def set_answer(item_id: int, names: list[str], name: str, value) -> None:
    st.session_state[answer_key(item_id, name)] = value
    save(item_id, names, submit=False)  # every change is a draft: nothing is lost on leaving


def toggle_choice(item_id: int, names: list[str], name: str, choice: str, order: list[str]) -> None:
    picked = set(st.session_state.get(answer_key(item_id, name)) or [])
    picked ^= {choice}
    set_answer(item_id, names, name, [c for c in order if c in picked])


def widget_changed(item_id: int, names: list[str]) -> None:
    save(item_id, names, submit=False)


def submit(campaign_id: int, item_id: int, names: list[str]) -> None:
    if save(item_id, names, submit=True):
        forget(item_id, names)
        st.session_state.pop(current_key(campaign_id), None)  # the queue's next item


def skip(campaign_id: int, item_id: int, names: list[str]) -> None:
    save(item_id, names, submit=False)
    try:
        responses.skip_item(actor, item_id)
    except (PermissionDenied, ValueError) as exc:
        st.session_state[ERROR_KEY] = str(exc)
        return
    st.session_state.pop(current_key(campaign_id), None)


def back(campaign_id: int, item: queue.ItemView | None, names: list[str]) -> None:
    if item is not None:
        save(item.item_id, names, submit=False)
    previous = queue.previous_item(actor, campaign_id, item.position if item else None)
    if previous is not None:
        st.session_state[current_key(campaign_id)] = previous.item_id


# --------------------------------------------------------------------------- the item


def show_example(example: queue.ShownExample, task: str, number: int | None = None) -> None:
    """One example as plain text: character and context first when it has them."""
    if task != "diversity" and example.character_description:
        st.caption("Character")
        st.text(f"{example.character_name or ''}: {example.character_description}")
    if task != "diversity" and example.context:
        st.caption("Context")
        st.text(example.context)
    with st.container(border=True):
        st.text(f"{number}. {example.text}" if number is not None else example.text)


def show_item(item: queue.ItemView, show_teacher: bool) -> None:
    if item.oot is not None:
        st.caption("Out-of-taxonomy label")
        st.code(item.oot.get("oot_name", ""), language=None)
        st.text(f"Given {item.oot.get('occurrences', 0)} times; {item.oot.get('example_count', 0)} examples. "
                "Some of them:")
        for text in item.oot.get("examples", []):
            with st.container(border=True):
                st.text(text)
        return
    for number, example in enumerate(item.examples, start=1):
        show_example(example, item.task, number if item.task == "diversity" else None)
        if show_teacher and example.suggestions:
            st.text("Teacher: " + ", ".join(f"{name} {score:.2f}" for name, score in example.suggestions))


def choice_order(item: queue.ItemView, question: qs.QuestionView, show_teacher: bool) -> list[str]:
    """Label choices with the teacher's labels first (when shown): keys 1-9 reach the likely ones."""
    options = item.choices.get(question.name, [])
    if not show_teacher or question.options.get("choices_from") != qs.CHOICES_FROM_TAXONOMY:
        return options
    suggested = [name for e in item.examples for name, _ in e.suggestions if name in options]
    suggested = list(dict.fromkeys(suggested))
    return suggested + [o for o in options if o not in suggested]


def rating_question(item, question, names, keyed: bool) -> None:
    current = st.session_state.get(answer_key(item.item_id, question.name))
    anchors = question.anchors
    cols = st.columns(len(qs.RATING_VALUES))
    for col, value in zip(cols, qs.RATING_VALUES):
        col.button(md_escape(value), key=f"rv_btn:{item.item_id}:{question.name}:{value}", width="stretch",
                   type="primary" if current == value else "secondary", shortcut=str(value) if keyed else None,
                   help=md_escape(anchors.get(str(value), "")) or None, on_click=set_answer, args=(item.item_id, names, question.name, value))
    if current in qs.RATING_VALUES and anchors.get(str(current)):
        st.caption(md_escape(f"{current}: {anchors[str(current)]}"))


def label_buttons(item, question, names, keyed: bool, order: list[str], multi: bool) -> None:
    current = st.session_state.get(answer_key(item.item_id, question.name))
    picked = set(current or []) if multi else {current}
    cols = st.columns(LABEL_COLUMNS)
    for index, choice in enumerate(order):
        shortcut = KEY_DIGITS[index] if keyed and index < len(KEY_DIGITS) else None
        callback, args = ((toggle_choice, (item.item_id, names, question.name, choice, order)) if multi
                          else (set_answer, (item.item_id, names, question.name, choice)))
        cols[index % LABEL_COLUMNS].button(
            md_escape(choice), key=f"rv_btn:{item.item_id}:{question.name}:{choice}", width="stretch", shortcut=shortcut,
            type="primary" if choice in picked else "secondary", on_click=callback, args=args)


def question_widget(item, question, names, keyed: bool, show_teacher: bool) -> None:
    st.markdown(f"**{md_escape(question.title)}**" + (" *" if question.required else ""))
    key = answer_key(item.item_id, question.name)
    if question.kind == "rating":
        rating_question(item, question, names, keyed)
    elif question.kind == "multi_label":
        label_buttons(item, question, names, keyed, choice_order(item, question, show_teacher), multi=True)
    elif question.kind == "single_label":
        options = choice_order(item, question, show_teacher)
        if len(options) <= len(KEY_DIGITS):
            label_buttons(item, question, names, keyed, options, multi=False)
        else:
            if st.session_state.get(key) not in options:
                st.session_state[key] = None
            st.selectbox(md_escape(question.title), options, key=key, index=None, label_visibility="collapsed",
                         on_change=widget_changed, args=(item.item_id, names))
    elif question.kind == "flag":
        if st.session_state.get(key) is None:
            st.session_state[key] = False
        st.checkbox(md_escape(question.title), key=key, on_change=widget_changed, args=(item.item_id, names))
    else:
        if st.session_state.get(key) is None:
            st.session_state[key] = ""
        st.text_input(md_escape(question.title), key=key, label_visibility="collapsed",
                      on_change=widget_changed, args=(item.item_id, names))


def current_item(campaign_id: int) -> queue.ItemView | None:
    item_id = st.session_state.get(current_key(campaign_id))
    if item_id is not None:
        return queue.get_item(actor, campaign_id, item_id)
    item = queue.next_item(actor, campaign_id)
    if item is not None:
        st.session_state[current_key(campaign_id)] = item.item_id
    return item


def navigation(campaign_id: int, item: queue.ItemView, names: list[str]) -> None:
    st.button("Submit and next", key="rv_submit", shortcut=SUBMIT_KEY, type="primary", width="stretch",
              icon=":material/check:", on_click=submit, args=(campaign_id, item.item_id, names))
    left, right = st.columns(2)
    left.button("Back", key="rv_back", shortcut=BACK_KEY, icon=":material/arrow_back:", width="stretch",
                on_click=back, args=(campaign_id, item, names))
    right.button("Skip", key="rv_skip", shortcut=SKIP_KEY, icon=":material/skip_next:", width="stretch",
                 on_click=skip, args=(campaign_id, item.item_id, names))


def guidelines(campaign: campaigns.CampaignView) -> None:
    st.subheader("Guidelines")
    st.text(campaign.guidelines or "No guidelines for this campaign.")
    st.caption(f"Keys: 1-9 answer · {SUBMIT_KEY} submit and next · → skip · ← back")


def annotate(campaign: campaigns.CampaignView) -> None:
    item = current_item(campaign.id)
    main, side = st.columns([2, 1], gap="large")
    if item is None:
        with side:
            guidelines(campaign)
        with main:
            st.success("Your queue is done. Thank you!")
            st.button("Back to my last item", key="rv_back_done", shortcut=BACK_KEY,
                      on_click=back, args=(campaign.id, None, []))
        return
    load_into_state(item)
    names = [q.name for q in item.questions]
    show_teacher = campaign.show_suggestions and campaign.task == "verification"
    with side:
        st.progress(item.done / item.total if item.total else 0.0, text=f"{item.done} of {item.total} submitted")
        navigation(campaign.id, item, names)
        guidelines(campaign)
        for question in item.questions:
            for value, text in question.anchors.items():
                st.caption(md_escape(f"{question.name} {value}: {text}"))
        if item.others:
            st.subheader("Other annotators")
            for username, name, value in item.others:
                st.text(f"{username} · {name}: {value}")
    with main:
        status = {"submitted": " (submitted: you may change it)", "skipped": " (skipped before)"}.get(item.status, "")
        st.caption(f"Item {item.position + 1}{status}")
        show_item(item, show_teacher)
        keyed = next((q.name for q in item.questions if q.kind in ("rating", "multi_label", "single_label")), None)
        for question in item.questions:
            question_widget(item, question, names, question.name == keyed, show_teacher)
        error = st.session_state.pop(ERROR_KEY, None)
        if error:
            st.error(md_escape(error))


# --------------------------------------------------------------------------- admin: new campaign


def new_campaign_form() -> None:
    st.subheader("New campaign")
    task = st.selectbox("Task", qs.TASKS, key="rv_new_task",
                        format_func=lambda t: {"verification": "Label verification", "personalization":
                                               "Context personalization", "diversity": "Diversity",
                                               "oot": "Out-of-taxonomy labels", "custom": "Custom"}[t])
    taxonomies = tax.list_taxonomies()
    default_tax = next((i for i, t in enumerate(taxonomies) if t.name == tax.GOEMOTIONS), 0)
    with st.form("rv_new_campaign"):
        name = st.text_input("Name", key="rv_new_name")
        taxonomy = st.selectbox("Taxonomy", taxonomies, index=default_tax, format_func=lambda t: t.name)
        templates = qs.task_questions(task)
        chosen = [spec for spec in templates if st.checkbox(md_escape(spec.title), value=True, key=f"rv_q_{task}_{spec.name}")]
        extra_title = st.text_input("Add a question (optional title)", key="rv_extra_title")
        extra_kind = st.selectbox("Its kind", qs.KINDS, key="rv_extra_kind")
        extra_choices = st.text_input("Its choices (comma separated, for label questions)", key="rv_extra_choices")
        guidelines = st.text_area("Guidelines shown beside each item", key="rv_new_guidelines")
        st.markdown("**Items**")
        if task == "oot":
            st.caption("Every pending out-of-taxonomy label of the taxonomy, most frequent first.")
        mode = st.radio("Choose examples by", ["Filter", "Stratified sample", "Example ids", "Top label-issue scores"],
                        horizontal=True, key="rv_new_mode", disabled=task == "oot")
        top_n = st.number_input("How many top label-issue scores", min_value=1, value=100, key="rv_new_top")
        ids_text = st.text_area("Example ids (e.g. the top label-issue scores from Curate)", key="rv_new_ids")
        run_id = st.number_input("Generation run id (0 = any)", min_value=0, step=1, key="rv_new_run")
        kind = st.selectbox("Kind", ["any", "contextless", "contextual", "imported"], key="rv_new_kind")
        label = st.text_input("Teacher label present (optional)", key="rv_new_label")
        per_emotion = st.number_input("Examples per emotion (stratified)", min_value=1, value=20, key="rv_new_per")
        limit = st.number_input("At most this many items (0 = all)", min_value=0, value=0, key="rv_new_limit")
        group_by = st.selectbox("Diversity groups", ["character_emotion", "emotion"], key="rv_new_group_by")
        group_size = st.number_input("Utterances per diversity group", min_value=2, max_value=9, value=5)
        users = {uid: f"{name} ({role})" for uid, name, role in campaigns.annotator_choices(actor)}
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
                    limit=int(limit) or None, group_by=group_by, group_size=int(group_size))
                job_id = campaigns.enqueue_campaign(
                    actor, name=name, task=task, annotator_ids=picked, selection=selection,
                    questions=chosen, overlap=int(overlap), min_submissions=int(needed), guidelines=guidelines,
                    show_suggestions=show_suggestions, taxonomy_id=taxonomy.id if taxonomy else None)
            except (ValueError, PermissionDenied) as exc:
                st.error(md_escape(exc))
            else:
                flash(f"Queued: the worker creates the campaign and chooses its items (job {job_id}). "
                      "It appears here when done; follow it on the Jobs page.", scope="review")
                st.rerun()


# --------------------------------------------------------------------------- admin: results


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def results_view(campaign: campaigns.CampaignView) -> None:
    report = agreement.campaign_report(actor, campaign.id)
    a, b, c = st.columns(3)
    a.metric("Items", report.items)
    b.metric("Completed", report.completed)
    c.metric("Annotators", len(report.progress))
    st.progress(report.completed / report.items if report.items else 0.0, text="Campaign progress")

    st.subheader("Progress per annotator")
    progress = pd.DataFrame([{"annotator": p.annotator, "submitted": p.submitted, "skipped": p.skipped,
                              "remaining": p.remaining, "median s/item": p.median_seconds}
                             for p in report.progress])
    if not progress.empty:
        st.plotly_chart(px.bar(progress, x="annotator", y=["submitted", "skipped", "remaining"], barmode="stack"),
                        key="rv_progress_chart")
        st.dataframe(progress, hide_index=True)
    if report.seconds_per_item:
        st.plotly_chart(px.histogram(x=list(report.seconds_per_item), labels={"x": "seconds per item"}, nbins=30),
                        key="rv_time_chart")

    st.subheader("Agreement")
    st.dataframe(pd.DataFrame([{"question": q.name, "kind": q.kind, "Krippendorff's alpha": fmt(q.alpha),
                                "level": q.level, "items with 2+ answers": q.items} for q in report.questions]),
                 hide_index=True)
    for question in report.questions:
        if question.per_label:
            per_label = pd.DataFrame([{"label": k, "alpha": v} for k, v in question.per_label.items() if v is not None])
            if not per_label.empty:
                st.plotly_chart(px.bar(per_label, x="label", y="alpha", title=f"{question.name}: alpha per label"),
                                key=f"rv_label_chart_{question.name}")
        if question.pairs:
            st.caption(f"{md_escape(question.name)}: pairwise Cohen's kappa")
            st.dataframe(pd.DataFrame([{"annotators": f"{p.first} / {p.second}", "kappa": fmt(p.kappa),
                                        "items": p.items} for p in question.pairs]), hide_index=True)
    if report.teacher:
        st.subheader("Annotators vs the teacher")
        st.dataframe(pd.DataFrame([{"annotator": t.annotator, "question": t.question, "kappa": fmt(t.kappa),
                                    "F1": fmt(t.f1), "items": t.items} for t in report.teacher]), hide_index=True)

    st.subheader("Export")
    left, right = st.columns(2)
    # A callable: the CSV of every answer is written only when someone clicks.
    left.download_button("Answers (CSV)", lambda: results.results_csv(actor, campaign.id),
                         file_name=f"review-{campaign.id}.csv", mime="text/csv", key="rv_csv_answers")
    right.download_button("Agreement (CSV)", results.agreement_csv(report), mime="text/csv",
                          file_name=f"review-{campaign.id}-agreement.csv", key="rv_csv_agreement")
    if campaign.task == "oot":
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
            cols = st.columns(3)
            action = cols[0].selectbox("Decision", qs.OOT_ACTIONS, key=f"rv_oot_action_{votes.item_id}",
                                       index=qs.OOT_ACTIONS.index(suggested_action) if suggested_action else 0)
            target = cols[1].selectbox("Maps to", labels, key=f"rv_oot_target_{votes.item_id}",
                                       index=labels.index(suggested_target) if suggested_target in labels else None)
            if cols[2].button("Apply", key=f"rv_oot_apply_{votes.item_id}"):
                try:
                    results.decide_oot_item(actor, campaign.id, votes.item_id, action, target)
                except (ValueError, PermissionDenied, ImportError) as exc:
                    st.error(md_escape(exc))
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


# --------------------------------------------------------------------------- the page

show_flashes("review")
view = "Annotate"
if actor.is_admin:
    view = st.segmented_control("View", ["Annotate", "Results", "New campaign"], default="Annotate", key="rv_view",
                                label_visibility="collapsed") or "Annotate"

if view == "New campaign":
    new_campaign_form()
else:
    mine = campaigns.list_campaigns(actor)
    if not mine:
        st.info("No review campaign yet." if actor.is_admin else "You are in no review campaign yet.")
        st.stop()
    by_id = {c.id: c for c in mine}
    campaign_id = st.selectbox("Campaign", list(by_id), key="rv_campaign",
                               format_func=lambda i: f"{by_id[i].name} · {by_id[i].task} · "
                                                     f"{by_id[i].completed_count}/{by_id[i].item_count} done")
    chosen = by_id[campaign_id]
    if view == "Results":
        results_view(chosen)
    elif chosen.status != "open":
        st.info("This campaign is closed.")
    else:
        annotate(chosen)
