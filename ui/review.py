"""The Review page's answer state and item widgets.

Each widget's state lives under rv_answer:<item>:<question>; every change is saved at once (a
draft, or, on an item already submitted, a new submitted version: core decides). Leaving an item
(Submit, Skip, Back) forgets its widget state, so coming back shows what the database holds.
"""

from __future__ import annotations

import time

import streamlit as st

from core.auth import Actor, PermissionDenied
from core.review import queue, responses
from core.review import questions as qs
from core.review.tasks.base import Shown
from ui.plain import md_escape

SUBMIT_KEY, SKIP_KEY, BACK_KEY = "S", "Right", "Left"
KEY_DIGITS = [str(d) for d in range(1, 10)]
LABEL_COLUMNS = 4
ERROR_KEY = "rv_error"
NOTICE_KEY = "rv_notice"


def answer_key(item_id: int, name: str) -> str:
    return f"rv_answer:{item_id}:{name}"


def started_key(item_id: int) -> str:
    return f"rv_started:{item_id}"


def versions_key(item_id: int) -> str:
    return f"rv_versions:{item_id}"


def current_key(campaign_id: int) -> str:
    return f"rv_current:{campaign_id}"


# --------------------------------------------------------------------------- answer state


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


def _collected(item_id: int, names: list[str]) -> dict:
    return {n: st.session_state.get(answer_key(item_id, n)) for n in names}


def _elapsed(item_id: int) -> float:
    now = time.monotonic()
    seconds = now - st.session_state.get(started_key(item_id), now)
    st.session_state[started_key(item_id)] = now
    return seconds


def save(actor: Actor, item_id: int, names: list[str], submit: bool) -> bool:
    """Save the item's answers; False, with a message, when refused (a submitted answer stays as it was)."""
    try:
        result = responses.save_answers(actor, item_id, _collected(item_id, names), submit=submit,
                                        seconds=_elapsed(item_id), versions=st.session_state.get(versions_key(item_id)))
    except (qs.AnswerError, responses.ConflictError, PermissionDenied, ValueError) as exc:
        st.session_state[ERROR_KEY] = str(exc)
        return False
    st.session_state[versions_key(item_id)] = dict(result.versions)
    if result.submitted and result.changed and not submit:
        st.session_state[NOTICE_KEY] = "Saved as a new version of your submitted answer."
    return True


def set_answer(actor: Actor, item_id: int, names: list[str], name: str, value) -> None:
    st.session_state[answer_key(item_id, name)] = value
    save(actor, item_id, names, submit=False)  # every change is saved: nothing is lost on leaving


def toggle_choice(actor: Actor, item_id: int, names: list[str], name: str, choice: str, order: list[str]) -> None:
    picked = set(st.session_state.get(answer_key(item_id, name)) or [])
    picked ^= {choice}
    set_answer(actor, item_id, names, name, [c for c in order if c in picked])


def widget_changed(actor: Actor, item_id: int, names: list[str]) -> None:
    save(actor, item_id, names, submit=False)


def submit(actor: Actor, campaign_id: int, item_id: int, names: list[str]) -> None:
    if save(actor, item_id, names, submit=True):
        forget(item_id, names)
        st.session_state.pop(current_key(campaign_id), None)  # the queue's next item


def skip(actor: Actor, campaign_id: int, item_id: int, names: list[str]) -> None:
    save(actor, item_id, names, submit=False)
    try:
        responses.skip_item(actor, item_id)
    except (PermissionDenied, ValueError) as exc:
        st.session_state[ERROR_KEY] = str(exc)
        return
    forget(item_id, names)
    st.session_state.pop(current_key(campaign_id), None)


def back(actor: Actor, campaign_id: int, item: queue.ItemView | None, names: list[str]) -> None:
    if item is not None:
        save(actor, item.item_id, names, submit=False)
        forget(item.item_id, names)
    previous = queue.previous_item(actor, campaign_id, item.position if item else None)
    if previous is not None:
        st.session_state[current_key(campaign_id)] = previous.item_id


def messages() -> None:
    """The last save's refusal or notice (text the app wrote, around names from data)."""
    error = st.session_state.pop(ERROR_KEY, None)
    if error:
        st.error(md_escape(error))
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.caption(md_escape(notice))


# --------------------------------------------------------------------------- what an item shows


def show_blocks(blocks: tuple[Shown, ...]) -> None:
    """The task's blocks, top to bottom; data is always plain text."""
    for block in blocks:
        if block.kind == "caption":
            st.caption(md_escape(block.text))
        elif block.kind == "code":
            st.code(block.text, language=None)
        elif block.kind == "box":
            with st.container(border=True):
                st.text(block.text)
        else:
            st.text(block.text)


def _rating(actor, item, question, names, keyed: bool) -> None:
    current = st.session_state.get(answer_key(item.item_id, question.name))
    anchors = question.anchors
    for col, value in zip(st.columns(len(qs.RATING_VALUES)), qs.RATING_VALUES):
        col.button(md_escape(value), key=f"rv_btn:{item.item_id}:{question.name}:{value}", width="stretch",
                   type="primary" if current == value else "secondary", shortcut=str(value) if keyed else None,
                   help=md_escape(anchors.get(str(value), "")) or None, on_click=set_answer,
                   args=(actor, item.item_id, names, question.name, value))
    if current in qs.RATING_VALUES and anchors.get(str(current)):
        st.caption(md_escape(f"{current}: {anchors[str(current)]}"))


def _label_buttons(actor, item, question, names, keyed: bool, order: list[str], multi: bool) -> None:
    current = st.session_state.get(answer_key(item.item_id, question.name))
    picked = set(current or []) if multi else {current}
    cols = st.columns(LABEL_COLUMNS)
    for index, choice in enumerate(order):
        shortcut = KEY_DIGITS[index] if keyed and index < len(KEY_DIGITS) else None
        callback, args = ((toggle_choice, (actor, item.item_id, names, question.name, choice, order)) if multi
                          else (set_answer, (actor, item.item_id, names, question.name, choice)))
        cols[index % LABEL_COLUMNS].button(
            md_escape(choice), key=f"rv_btn:{item.item_id}:{question.name}:{choice}", width="stretch", shortcut=shortcut,
            type="primary" if choice in picked else "secondary", on_click=callback, args=args)


def question_widget(actor: Actor, item: queue.ItemView, question: qs.QuestionView, keyed: bool) -> None:
    """One question: buttons for ratings and short label lists (keys 1-9 when keyed), else a widget."""
    names = [q.name for q in item.questions]
    st.markdown(f"**{md_escape(question.title)}**" + (" \\*" if question.required else ""))
    key = answer_key(item.item_id, question.name)
    options = item.choices.get(question.name, [])
    if question.kind == "rating":
        _rating(actor, item, question, names, keyed)
    elif question.kind == "multi_label":
        _label_buttons(actor, item, question, names, keyed, options, multi=True)
    elif question.kind == "single_label" and len(options) <= len(KEY_DIGITS):
        _label_buttons(actor, item, question, names, keyed, options, multi=False)
    elif question.kind == "single_label":
        if st.session_state.get(key) not in options:
            st.session_state[key] = None
        st.selectbox(md_escape(question.title), options, key=key, index=None, label_visibility="collapsed",
                     on_change=widget_changed, args=(actor, item.item_id, names))
    elif question.kind == "flag":
        if st.session_state.get(key) is None:
            st.session_state[key] = False
        st.checkbox(md_escape(question.title), key=key, on_change=widget_changed, args=(actor, item.item_id, names))
    else:
        if st.session_state.get(key) is None:
            st.session_state[key] = ""
        st.text_input(md_escape(question.title), key=key, label_visibility="collapsed",
                      on_change=widget_changed, args=(actor, item.item_id, names))


def keyed_question(item: queue.ItemView) -> str | None:
    """The question that keys 1-9 answer: the item's first rating or label question."""
    return next((q.name for q in item.questions if q.kind in ("rating", "multi_label", "single_label")), None)


def navigation(actor: Actor, campaign_id: int, item: queue.ItemView) -> None:
    names = [q.name for q in item.questions]
    st.button("Submit and next", key="rv_submit", shortcut=SUBMIT_KEY, type="primary", width="stretch",
              icon=":material/check:", on_click=submit, args=(actor, campaign_id, item.item_id, names))
    left, right = st.columns(2)
    left.button("Back", key="rv_back", shortcut=BACK_KEY, icon=":material/arrow_back:", width="stretch",
                on_click=back, args=(actor, campaign_id, item, names))
    right.button("Skip", key="rv_skip", shortcut=SKIP_KEY, icon=":material/skip_next:", width="stretch",
                 on_click=skip, args=(actor, campaign_id, item.item_id, names))


def current_item(actor: Actor, campaign_id: int) -> queue.ItemView | None:
    item_id = st.session_state.get(current_key(campaign_id))
    if item_id is not None:
        return queue.get_item(actor, campaign_id, item_id)
    item = queue.next_item(actor, campaign_id)
    if item is not None:
        st.session_state[current_key(campaign_id)] = item.item_id
    return item
