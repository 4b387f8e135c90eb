"""Jobs: what the worker is doing, has done, and why something failed. Refreshes every 2 seconds."""

import pandas as pd
import streamlit as st

from core.jobs import cancel, get_job, job_events, list_jobs, retry
from core.llm.runner import unanswered_requests
from db.models import JobStatus
from ui.jobs import job_row, render_progress
from ui.session import guard
from ui.plain import md_escape

actor = guard("jobs")

st.title("Jobs")
st.caption("Long work (big imports, generation, training) runs in the worker: `python -m core.worker`.")


def act(action, job_id: int) -> None:
    """Button callback (runs before the rerun, so the table below already shows the new state)."""
    try:
        action(actor, job_id)
    except ValueError as exc:
        st.session_state["jobs_action_error"] = str(exc)


@st.fragment(run_every=2)
def jobs_view() -> None:
    jobs = list_jobs(actor, limit=100)
    if not jobs:
        st.info("No jobs yet.")
        return
    st.dataframe(pd.DataFrame([job_row(job) for job in jobs]), hide_index=True,
                 column_config={"%": st.column_config.ProgressColumn("%", min_value=0, max_value=100,
                                                                     format="%d%%")})
    ids = [job.id for job in jobs]
    titles = {job.id: f"#{job.id} {job.title} ({job.status.value})" for job in jobs}
    job_id = st.selectbox("Job", ids, format_func=titles.get, key="jobs_selected")
    if job_id is None:
        return
    try:
        job = get_job(actor, job_id)
    except ValueError as exc:
        st.error(md_escape(exc))
        return

    st.subheader(f"Job {job.id}")
    st.text(f"{job.title}\nkind: {job.kind} · status: {job.status.value} · attempts: {job.attempts}/{job.max_attempts}"
            + (f" · by {job.created_by}" if job.created_by else ""))
    render_progress(job)

    failure = st.session_state.pop("jobs_action_error", None)
    if failure:
        st.error(md_escape(failure))
    if job.status in (JobStatus.queued, JobStatus.running):
        label = "Cancel requested" if job.cancel_requested else "Cancel"
        st.button(label, key=f"cancel_{job.id}", disabled=job.cancel_requested, icon=":material/cancel:",
                  on_click=act, args=(cancel, job.id))
    elif job.status in (JobStatus.failed, JobStatus.cancelled):
        cols = st.columns([1, 4])
        cols[0].button("Retry", key=f"retry_{job.id}", icon=":material/replay:", on_click=act, args=(retry, job.id))
        with cols[1]:
            st.text(f"Failed: {job.error}" if job.error else f"This job was {job.status.value}.")
    if job.result:
        with st.expander("Result"):
            st.json(job.result)

    unanswered = unanswered_requests(actor, job.id)  # any LLM job: a batch of requests, a generation run...
    if unanswered:
        st.subheader("Requests without a valid answer")
        st.caption("Kept with their raw text and reason; Retry asks only these again.")
        st.dataframe(pd.DataFrame([{"status": u.status, "reason": u.error, "attempts": u.attempts,
                                    "prompt": u.prompt, "raw answer": u.raw_text or ""} for u in unanswered]),
                     hide_index=True)

    st.subheader("Events")
    events = job_events(actor, job.id)
    if events:
        st.dataframe(pd.DataFrame([{"at": e.at, "level": e.level, "message": e.message, "worker": e.worker or ""}
                                   for e in events]), hide_index=True)
    else:
        st.caption("No events.")


jobs_view()
