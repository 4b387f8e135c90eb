"""Job progress rendering: the sidebar's live panel and the helpers the Jobs page shares."""

from __future__ import annotations

import streamlit as st

from core.auth import Actor
from core.jobs import JobView, list_jobs
from db.models import JobStatus

ACTIVE = (JobStatus.running, JobStatus.queued)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_rate(rate: float | None) -> str:
    if not rate:
        return ""
    return f"{rate:.1f}/s" if rate >= 1 else f"{rate * 60:.1f}/min"


def format_progress(job: JobView) -> str:
    if job.total:
        return f"{job.done}/{job.total}"
    return str(job.done) if job.done else ""


def progress_caption(job: JobView) -> str:
    """Numbers only (done/total, rate, ETA): safe to hand to widgets that parse Markdown."""
    parts = [p for p in (format_progress(job), format_rate(job.rate)) if p]
    eta = job.eta_seconds
    if eta is not None:
        parts.append(f"ETA {format_duration(eta)}")
    if job.status == JobStatus.queued:
        parts.append("queued")
    return " · ".join(parts) or job.status.value


def render_progress(job: JobView) -> None:
    """Progress bar of one job. Titles and notes are user or file text: shown with st.text only."""
    st.progress(job.fraction or 0.0, text=progress_caption(job))
    if job.note:
        st.text(job.note)


def job_row(job: JobView) -> dict:
    """One line of a jobs table (dataframes render their cells as plain text)."""
    return {
        "id": job.id,
        "title": job.title,
        "kind": job.kind,
        "status": job.status.value + (" (cancel requested)" if job.cancel_requested and not job.is_finished else ""),
        "progress": format_progress(job),
        "%": round(job.fraction * 100) if job.fraction is not None else None,
        "rate": format_rate(job.rate),
        "ETA": format_duration(job.eta_seconds),
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "by": job.created_by or "",
        "created": job.created_at,
        "error": job.error or "",
    }


def active_jobs(actor: Actor, limit: int = 100) -> list[JobView]:
    return [job for job in list_jobs(actor, limit=limit) if job.status in ACTIVE]


@st.fragment(run_every=2)
def live_jobs_panel(actor: Actor) -> None:
    """Running and queued jobs, refreshed every 2 seconds. Call inside `with st.sidebar:`."""
    jobs = active_jobs(actor)
    st.subheader("Jobs", divider="gray")
    if not jobs:
        st.caption("No job running or queued.")
        return
    for job in jobs:
        st.text(f"#{job.id} {job.title}")
        render_progress(job)
