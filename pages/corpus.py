"""Corpus: import stories from files, browse them, read them with their passages, delete them."""

import math

import pandas as pd
import streamlit as st

from core.auth import PermissionDenied
from core.corpus import (
    CorpusFileError,
    delete_corpus,
    delete_story,
    get_story,
    import_or_enqueue,
    list_corpora,
    list_stories,
)
from ui.session import guard
from ui.plain import md_escape

actor = guard("corpus")

PAGE_SIZE = 50
NOTICE_KEY = "corpus_import_notice"

st.title("Corpus")
st.write("Stories the teacher model reads to write emotion-labelled examples.")

corpora = list_corpora()

# --------------------------------------------------------------------------- import

with st.container(border=True):
    st.subheader("Import")
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        message, queued = notice
        st.success(md_escape(message))  # it names the corpus: typed by a user
        if queued:
            st.page_link("pages/jobs.py", label="Follow them on the Jobs page", icon=":material/pending_actions:")
    upload_round = st.session_state.get("corpus_upload_round", 0)  # a new round empties the uploader
    files = st.file_uploader(
        "Story files (.txt, .csv, .jsonl; WikiPlots `plots` + `titles`)", accept_multiple_files=True,
        key=f"corpus_files_{upload_round}",
        help="Plain text: one story per file, or stories separated by a line holding only `---`, `***` or "
             "`<EOS>` (a short first line is the title). CSV: a `text` column (and optionally `title`). "
             "JSON Lines: one object per line with a `text` field (and optionally `title`). "
             "FairytaleQA: a CSV with `section,text` columns is one story whose sections are its passages. "
             "WikiPlots: upload `plots` (stories separated by `<EOS>` lines) together with `titles`.",
    )
    names = [c.name for c in corpora]
    NEW = "A new corpus"
    target = st.radio("Import into", [NEW, "An existing corpus"], horizontal=True, key="corpus_target",
                      disabled=not names)
    if target == NEW or not names:
        corpus_name = st.text_input("Name of the new corpus", key="corpus_new_name")
        description = st.text_input("Description (optional)", key="corpus_description")
    else:
        corpus_name = st.selectbox("Corpus", names, key="corpus_existing_name")
        description = ""

    if st.button("Import", type="primary", key="corpus_import", icon=":material/upload:"):
        corpus_name = (corpus_name or "").strip()
        if not files:
            st.warning("Choose one or more files first.")
        elif not corpus_name:
            st.warning("Give the corpus a name.")
        else:
            try:
                outcome = import_or_enqueue(actor, corpus_name, [(f.name, f.getvalue()) for f in files],
                                            description=description)
            except (CorpusFileError, ValueError, PermissionDenied) as exc:  # a bad file: nothing was imported
                st.error(md_escape(exc))
            else:
                # Rerun with an empty uploader (a second click cannot import the same files again);
                # the notice is shown by that run.
                st.session_state["corpus_upload_round"] = upload_round + 1
                if outcome.queued:
                    queued = ", #".join(map(str, outcome.job_ids))
                    message = (f"{len(outcome.job_ids)} import job(s) queued (#{queued}): "
                               "the worker imports them in the background.")
                    st.session_state[NOTICE_KEY] = (message, True)
                else:
                    st.session_state["corpus_browse"] = outcome.report.corpus_id  # show what was just imported
                    message = f"Imported into {outcome.report.corpus_name}: {outcome.report.summary()}."
                    st.session_state[NOTICE_KEY] = (message, False)
                st.rerun()

# --------------------------------------------------------------------------- corpora

st.subheader("Corpora")
if not corpora:
    st.info("No corpus yet: import one above.")
    st.stop()

st.dataframe(
    pd.DataFrame([{"id": c.id, "name": c.name, "stories": c.story_count, "passages": c.passage_count,
                   "words": c.word_count,
                   "source": c.source, "description": c.description, "created": c.created_at} for c in corpora]),
    hide_index=True,
)
by_id = {c.id: c for c in corpora}
corpus_id = st.selectbox("Browse a corpus", list(by_id), format_func=lambda i: by_id[i].name, key="corpus_browse")
corpus = by_id[corpus_id]

# --------------------------------------------------------------------------- stories

search = st.text_input("Search stories (title or text)", key=f"story_search_{corpus.id}")
_, total = list_stories(corpus.id, offset=0, limit=1, search=search)
pages = max(1, math.ceil(total / PAGE_SIZE))
cols = st.columns([1, 3])
page = cols[0].number_input("Page", min_value=1, max_value=pages, value=1, step=1,
                            key=f"story_page_{corpus.id}_{search}")
cols[1].caption(f"{total:,} stories · page {page} of {pages}")
rows, total = list_stories(corpus.id, offset=(int(page) - 1) * PAGE_SIZE, limit=PAGE_SIZE, search=search)
if rows:
    st.dataframe(
        pd.DataFrame([{"id": r.id, "#": r.position, "title": r.title, "words": r.word_count,
                       "passages": r.passage_count, "preview": r.preview} for r in rows]),
        hide_index=True,
    )
    stories = {r.id: r for r in rows}
    story_id = st.selectbox("Read a story", list(stories),
                            format_func=lambda i: f"#{stories[i].position} {stories[i].title}".strip(),
                            key=f"story_read_{corpus.id}")
    story = get_story(story_id)
    with st.container(border=True):
        st.text(story.title or "(untitled)")
        st.text(story.text)
        st.caption(f"{len(story.passages)} passages")
        if story.passages:
            st.dataframe(pd.DataFrame([{"#": p.position, "passage": p.text} for p in story.passages]),
                         hide_index=True)
        confirm = st.checkbox("Yes, delete this story", key=f"confirm_story_{story.id}")
        if st.button("Delete story", disabled=not confirm, key=f"delete_story_{story.id}", icon=":material/delete:"):
            try:
                delete_story(actor, story.id)
            except (ValueError, PermissionDenied) as exc:
                st.error(md_escape(exc))
            else:
                st.rerun()
else:
    st.caption("No story matches.")

# --------------------------------------------------------------------------- delete the corpus

with st.expander("Delete this corpus"):
    st.text(f"{corpus.name}: {corpus.story_count:,} stories and their passages.")
    confirm = st.checkbox("Yes, delete the whole corpus", key=f"confirm_corpus_{corpus.id}")
    if st.button("Delete corpus", disabled=not confirm, type="primary", key=f"delete_corpus_{corpus.id}",
                 icon=":material/delete_forever:"):
        try:
            delete_corpus(actor, corpus.id)
        except (ValueError, PermissionDenied) as exc:
            st.error(md_escape(exc))
        else:
            st.rerun()
