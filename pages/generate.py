"""Generate: plan an Emo Pillars run, see its cost, launch it, follow its stages, compare runs."""

import pandas as pd
import plotly.express as px
import streamlit as st

from core import run_states
from core.auth import PermissionDenied
from core.corpus import list_corpora, list_stories
from core.llm import settings as engine_settings
from core.pipeline import run as pipeline
from core.pipeline import annotate, runs, templates
from core.pipeline.plan import PlanError
from core.taxonomy import get_taxonomy, list_taxonomies
from ui.annotate import render_annotation_tab
from ui.plain import md_escape
from ui.session import flash, guard, show_flashes

actor = guard("generate")
PAGE_SIZE = 25

st.title("Generate")
st.write("The teacher reads stories, finds their characters and writes what they think aloud, labels the "
         "emotions, then writes the context leading up to each thought and rewrites the thought so its emotion "
         "needs that context (Emo Pillars).")
show_flashes("generate")

new_tab, runs_tab, compare_tab, annotate_tab = st.tabs(["New run", "Runs", "Compare runs", "Annotate texts"])


def _failure(exc: Exception) -> None:
    st.error(md_escape(exc))


# --------------------------------------------------------------------------- new run

with new_tab:
    corpora = list_corpora()
    taxonomies = list_taxonomies()
    if not corpora:
        st.info("Import stories on the Corpus page first.")
    else:
        by_name = {c.name: c for c in corpora}
        left, right = st.columns(2)
        corpus = by_name[left.selectbox("Corpus", list(by_name), key="gen_corpus")]
        taxonomy_names = {t.name: t for t in taxonomies}
        taxonomy = taxonomy_names[right.selectbox("Taxonomy (its labels and descriptions go into the prompts)",
                                                  list(taxonomy_names), key="gen_taxonomy")]
        stories, total = list_stories(corpus.id, limit=500)
        how = st.radio("Stories", ["A random sample", "Chosen stories"], horizontal=True, key="gen_how")
        sample_size, story_ids = None, []
        if how == "A random sample":
            sample_size = st.number_input("How many stories", 1, max(1, total), min(5, total), key="gen_sample")
        else:
            titles = {f"{s.title} (#{s.id})": s.id for s in stories}
            story_ids = [titles[t] for t in st.multiselect("Stories", list(titles), key="gen_stories")]
        presets = list(pipeline.PRESETS)
        preset = st.radio("Preset", presets, horizontal=True, key="gen_preset",
                          format_func=lambda p: md_escape(pipeline.PRESETS[p]["title"]))
        st.caption(md_escape(pipeline.PRESETS[preset]["help"]))
        start = pipeline.PRESETS[preset]["settings"]
        c1, c2, c3, c4 = st.columns(4)
        max_characters = c1.number_input("Characters per story", 1, 30, start["max_characters"], key=f"gen_chars_{preset}")
        emotional = c2.number_input("Emotional utterances per character", 0, 50, start["emotional"], key="gen_emotional")
        neutral = c3.number_input("Neutral utterances per character", 0, 20, start["neutral"], key="gen_neutral")
        seed = c4.number_input("Seed", 0, 2**31 - 1, 0, key="gen_seed")
        with st.expander("More settings"):
            d1, d2, d3 = st.columns(3)
            max_emotions = d1.number_input("Emotions the teacher may name per utterance", 1, 5, start["max_emotions"],
                                           key=f"gen_max_em_{preset}")
            context_share = d2.slider("Share of utterances that get a context (chosen stratified by emotion)",
                                      0.05, 1.0, float(start["context_share"]), 0.05, key=f"gen_share_{preset}")
            similarity = d3.slider("Near-duplicate similarity (a character's utterance this close to an earlier "
                                   "one is removed)", 0.5, 1.0, 0.9, 0.01, key="gen_sim")
            e1, e2, e3 = st.columns(3)
            variants = e1.multiselect("Contextual variants", ["original", "rewritten"], start["variants"],
                                      key=f"gen_variants_{preset}",
                                      format_func={"original": "original utterance + context",
                                                   "rewritten": "rewritten utterance + context"}.get)
            greedy = e2.checkbox("Greedy decoding (temperature 0)", start["greedy"], key=f"gen_greedy_{preset}")
            penalty = e3.number_input("Repetition penalty (1 = off)", 1.0, 2.0, float(start["repetition_penalty"]), 0.01,
                                      key=f"gen_penalty_{preset}")
            weights_text = ""
            if preset == "balanced":
                st.caption("Quota weights: each emotion gets a share of the utterances in proportion to its weight "
                           "(1 = equal share, 0 = never asked for).")
                weights_text = st.text_input("Weights, as `label=weight` separated by commas (optional)",
                                             key="gen_weights", placeholder="grief=2, pride=0")
            step_names = pipeline.PRESETS[preset]["steps"]
            template_ids = {}
            cols = st.columns(3)
            for index, stage in enumerate(step_names):
                options = templates.versions(stage)
                labels_by_id = {t.id: f"v{t.version}" + (" (active)" if t.is_active else "") for t in options}
                active = next((t.id for t in options if t.is_active), options[0].id)
                template_ids[stage] = cols[index % 3].selectbox(
                    f"Template: {templates.STAGE_TITLES[stage]}", list(labels_by_id), index=list(labels_by_id).index(active),
                    format_func=labels_by_id.get, key=f"gen_tpl_{stage}")
        name = st.text_input("Run name (optional)", key="gen_name")
        engine = engine_settings.load()
        st.caption(f"Engine: {md_escape(engine.engine)} · model {md_escape(engine.resolved_model)} · temperature "
                   f"{engine.default_sampling().temperature:g}, top-p {engine.default_sampling().top_p:g} "
                   "(change them under Admin → Engine; each request gets its own seed from the run's seed).")

        def _weights(text: str) -> dict[str, float]:
            weights = {}
            for part in filter(None, (p.strip() for p in text.split(","))):
                label, _, value = part.partition("=")
                try:
                    weights[label.strip().lower()] = float(value)
                except ValueError:
                    raise PlanError(f"Weight {part!r}: write label=number.") from None
            return weights

        try:
            config = pipeline.RunConfig.for_preset(
                preset, corpus.id, taxonomy.id, story_ids=story_ids, max_characters=int(max_characters),
                emotional=int(emotional), neutral=int(neutral), seed=int(seed), max_emotions=int(max_emotions),
                dedup_similarity=float(similarity), weights=_weights(weights_text), context_share=float(context_share),
                variants=list(variants), greedy=bool(greedy), repetition_penalty=float(penalty))
            planned = pipeline.prepare_config(config, int(sample_size) if sample_size else None)
            estimate = pipeline.estimate_run(planned, template_ids)
        except PlanError as exc:
            st.warning(md_escape(exc))
            estimate = None
        if estimate is not None:
            st.subheader("Cost before launch")
            basis = (f"measured on {estimate.measured_runs} earlier run(s) of this model and preset"
                     if estimate.measured_runs else
                     "an upper bound: no earlier run of this model and preset to measure from, so every character "
                     "found, every answer accepted at once and as long as its token budget, 4 characters a token")
            st.write(f"{estimate.stories:,} stories, {estimate.passages:,} passages, about {estimate.characters:,} "
                     f"characters, {estimate.utterances:,} context-less utterances and {estimate.contexts:,} contexts: "
                     f"**{estimate.calls:,} LLM calls**, about **{estimate.tokens:,} tokens** ({md_escape(basis)}).")
            st.dataframe(pd.DataFrame([{"stage": s.stage, "calls": s.calls, "prompt tokens (≈)": s.prompt_tokens,
                                        "output tokens (≈)": s.output_tokens} for s in estimate.stages]),
                         hide_index=True)
            if st.button("Launch", type="primary", key="gen_launch", icon=":material/rocket_launch:"):
                try:
                    run_id = pipeline.create_run(actor, planned, name=name, template_ids=template_ids)
                except (PlanError, PermissionDenied, ValueError) as exc:
                    _failure(exc)
                else:
                    st.session_state["gen_selected_run"] = run_id
                    flash(f"Run #{run_id} queued: follow it on the Runs tab.", scope="generate")
                    st.rerun()


# --------------------------------------------------------------------------- runs


@st.fragment(run_every=3)
def _live_stages(run_id: int) -> None:
    detail = runs.run_detail(actor, run_id)
    done, total, note = detail.job_progress
    st.write(f"Status: **{md_escape(detail.status)}**"
             + (f" · job #{detail.job_id}: {md_escape(detail.job_status)}" if detail.job_id else ""))
    if detail.job_status in ("queued", "running"):
        st.progress(done / total if total else 0.0, text=md_escape(note) if note else "waiting for a worker")
    st.dataframe(pd.DataFrame([{
        "stage": row.stage, "state": row.state, "requests": row.requests,
        "from cache": row.cached, "answered": row.answered, "invalid": row.invalid, "failed": row.failed,
        "rejected by gates": row.rejected, "kept with reason": row.kept_with_reason,
        "calls estimated": "" if row.estimated_calls is None else row.estimated_calls,
        "calls spent": (detail.spent.get(row.stage) or {}).get("calls", ""),
        "result": row.produced} for row in detail.stage_rows()]), hide_index=True)
    error = detail.estimate_error()
    if error:
        st.caption(f"Estimated before launch: {detail.estimate['calls']:,} calls, {detail.estimate['tokens']:,} tokens; "
                   f"spent: {error['spent_calls']:,} calls, {error['spent_tokens']:,} tokens (off by "
                   f"{error['calls']:.0%} in calls, {error['tokens']:.0%} in tokens).")
    failures = {row.stage: row.failure_reasons for row in detail.stage_rows() if row.failure_reasons}
    for stage, reasons in failures.items():
        with st.expander(f"Failures in {md_escape(stage)}"):
            for reason, count in reasons.items():
                st.text(f"{count} × {reason}")
    rejections = {row.stage: row.rejection_reasons for row in detail.stage_rows() if row.rejection_reasons}
    for stage, reasons in rejections.items():
        with st.expander(f"Content gate rejections in {md_escape(stage)}"):
            for reason, count in reasons.items():
                st.text(f"{count} × {reason}")
    c1, c2, c3 = st.columns(3)
    c1.metric("Characters", detail.characters)
    c2.metric("Context-less examples", detail.examples_contextless)
    c3.metric("Contextual examples", detail.examples_contextual,
              help=f"{detail.flagged:,} flagged: the context or utterance still names its emotion")
    quality = detail.quality
    if quality:
        q1, q2, q3, q4 = st.columns(4)
        q1.metric("Similarity raw vs cleaned context", quality.get("context_similarity") or "–",
                  help="Mean cosine similarity (MiniLM) of each raw context and its cleaned version (paper: 0.92).")
        q2.metric("Overlap original vs rewritten utterance", quality.get("utterance_overlap") or "–",
                  help="Mean unigram F1 between an utterance and its rewrite (paper: 0.78).")
        q3.metric("Flagged by the emotion-word check", quality.get("flagged_names_emotion", 0),
                  help="Contextual examples whose context or utterance still names their emotion; "
                       "filter them on the Curate page (flag).")
        q4.metric("Share with a context", quality.get("context_share") or "–")


with runs_tab:
    run_rows = runs.list_runs(actor)
    if not run_rows:
        st.info("No run yet: plan one on the New run tab.")
    else:
        st.dataframe(pd.DataFrame([{"id": r.id, "name": r.name, "status": r.status, "stage": r.current_stage or "",
                                    "stories": r.stories, "seed": r.seed, "context-less": r.examples_contextless,
                                    "contextual": r.examples_contextual, "by": r.created_by or "",
                                    "created": r.created_at} for r in run_rows]), hide_index=True)
        ids = [r.id for r in run_rows]
        preselected = st.session_state.get("gen_selected_run")
        run_id = st.selectbox("Run", ids, index=ids.index(preselected) if preselected in ids else 0,
                              format_func=lambda i: f"#{i} {next(r.name for r in run_rows if r.id == i)}",
                              key="gen_run_pick")
        _live_stages(run_id)
        detail = runs.run_detail(actor, run_id)
        running = detail.job_status in ("queued", "running")
        discarded = detail.status == "discarded"
        a1, a2, a3, a4 = st.columns(4)
        if a1.button("Stop", disabled=not running, key="gen_stop", icon=":material/stop:"):
            try:
                pipeline.stop_run(actor, run_id)
                flash("Stop requested: the job stops after its current batch.", scope="generate")
                st.rerun()
            except PlanError as exc:
                _failure(exc)
        if a2.button("Resume / retry failures", disabled=running or discarded, key="gen_resume",
                     icon=":material/play_arrow:",
                     help="Runs the stages again: cached answers are reused, missing and failed ones asked."):
            pipeline.resume_run(actor, run_id)
            flash(f"Run #{run_id} queued again.", scope="generate")
            st.rerun()
        if a4.button("Discard", disabled=detail.status not in ("failed", "cancelled") or running, key="gen_discard",
                     icon=":material/close:", help="Close a failed or stopped run for good; what it made stays."):
            try:
                run_states.discard_generation_run(actor, run_id)
                flash(f"Run #{run_id} discarded.", scope="generate")
                st.rerun()
            except run_states.RunStateError as exc:
                _failure(exc)
        with a3.popover("Extend or repeat", disabled=running, icon=":material/add:"):
            config = detail.config
            more = st.number_input("More stories (random sample)", 0, 1000, 0, key="gen_ext_more")
            ext_emotional = st.number_input("Emotional utterances per character", config.get("emotional", 8), 50,
                                            config.get("emotional", 8), key="gen_ext_em")
            ext_neutral = st.number_input("Neutral utterances per character", config.get("neutral", 2), 20,
                                          config.get("neutral", 2), key="gen_ext_neu")
            if st.button("Extend this run", key="gen_extend"):
                try:
                    pipeline.extend_run(actor, run_id, sample_more=int(more), emotional=int(ext_emotional),
                                        neutral=int(ext_neutral))
                    flash(f"Run #{run_id} extended and queued.", scope="generate")
                    st.rerun()
                except PlanError as exc:
                    _failure(exc)
            st.divider()
            new_seed = st.number_input("Seed for a repeat", 0, 2**31 - 1, int(config.get("seed", 0)) + 1, key="gen_rep_seed")
            st.caption("A repeat uses the same stories, counts and template versions; change the seed and, "
                       "if you like, one stage's template version.")
            stage = st.selectbox("Stage whose template to change (optional)",
                                 ["(none)", *pipeline.PRESETS[config.get("preset", "balanced")]["steps"]],
                                 key="gen_rep_stage")
            pinned = {}
            if stage != "(none)":
                options = {t.id: f"v{t.version}" for t in templates.versions(stage)}
                pinned[stage] = st.selectbox("Template version", list(options), format_func=options.get,
                                             key="gen_rep_version")
            if st.button("Repeat", key="gen_repeat"):
                new_id = pipeline.repeat_run(actor, run_id, seed=int(new_seed), template_ids=pinned)
                st.session_state["gen_selected_run"] = new_id
                flash(f"Run #{new_id} queued (repeat of #{run_id}).", scope="generate")
                st.rerun()
        if st.button("Teacher descriptors for this run's examples", key="gen_describe", disabled=running,
                     icon=":material/label:",
                     help="Free-text emotion descriptors (a few words or short phrases with an intensity; the "
                          "prompt does not list the taxonomy), stored per example for contrastive distillation."):
            try:
                job_id = annotate.enqueue_annotation(actor, None, int(detail.config["taxonomy_id"]), run_id=run_id,
                                                     steps=("describe",))
                flash(f"Job #{job_id} queued: descriptors for run #{run_id}.", scope="generate")
                st.rerun()
            except (ValueError, PermissionDenied) as exc:
                _failure(exc)
        with st.expander("Settings and provenance"):
            st.json({"config": detail.config, "templates": detail.template_versions, "engine": detail.engine,
                     "model": detail.model, "sampling": detail.sampling})

        st.subheader("Examples")
        kind = st.radio("Kind", ["contextless", "contextual"], horizontal=True, key="gen_kind",
                        format_func={"contextless": "Context-less", "contextual": "Contextual"}.get)
        emotions = get_taxonomy(int(detail.config["taxonomy_id"])).label_names
        emotion = st.selectbox("Emotion (teacher label at the threshold)", ["(any)", *emotions], key="gen_emotion")
        page = st.number_input("Page", 1, 10_000, 1, key="gen_page")
        rows, total = runs.run_examples(actor, run_id, kind, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE,
                                        emotion=None if emotion == "(any)" else emotion)
        st.caption(f"{total} examples; labels at the current threshold; OOT = outside the taxonomy.")
        # Generated text is data: shown in a grid (plain text), never as markdown or HTML.
        st.dataframe(pd.DataFrame([{"id": r.id, "character": r.character, "steered to": r.target or "",
                                    **({"context": r.context or ""} if kind == "contextual" else {}),
                                    "utterance": r.text, "labels": ", ".join(r.labels),
                                    "scores": ", ".join(f"{k} {v:.2f}" for k, v in sorted(r.scores.items(), key=lambda kv: -kv[1])),
                                    "OOT": ", ".join(r.oot), "expressiveness": r.expressiveness,
                                    "flags": ", ".join(r.flags), "provenance": r.provenance} for r in rows]),
                     hide_index=True)
        if rows:
            shown = st.selectbox("How an example was made (raw answer, prompt, sampling)", [r.id for r in rows],
                                 key="gen_source", format_func=lambda i: f"#{i}")
            with st.expander("The chosen example: the teacher's request and raw answer"):
                st.json(runs.example_source(actor, shown))


# --------------------------------------------------------------------------- compare

with compare_tab:
    run_rows = runs.list_runs(actor)
    chosen = st.multiselect("Runs to compare", [r.id for r in run_rows], key="gen_compare",
                            format_func=lambda i: f"#{i} {next(r.name for r in run_rows if r.id == i)}")
    if chosen:
        figures = runs.compare_runs(actor, chosen)
        table = pd.DataFrame([{k: v for k, v in f.items() if k not in ("labels", "steered")}
                              for f in figures]).set_index("run")
        st.dataframe(table.astype(str).T)
        distribution = pd.DataFrame([{"run": f"#{f['run']} (seed {f['seed']})", "label": label, "examples": count}
                                     for f in figures for label, count in f["labels"].items()])
        if not distribution.empty:
            st.plotly_chart(px.bar(distribution, x="label", y="examples", color="run", barmode="group",
                                   title="Teacher labels of the context-less examples"))
        quotas = pd.DataFrame([{"run": f"#{f['run']}", "emotion": emotion, "asked for": count,
                                "labelled so": f["labels"].get(emotion, 0)}
                               for f in figures for emotion, count in f["steered"].items()])
        if not quotas.empty:
            st.caption("Quotas: how many utterances were steered to each emotion, and how many the teacher then "
                       "labelled with it.")
            st.dataframe(quotas, hide_index=True)

with annotate_tab:
    render_annotation_tab(actor)
