"""Train: distil a dataset version into a classifier, follow its curves, register and export models,
and send the examples the student doubts back to review."""

import pandas as pd
import plotly.express as px
import streamlit as st

from core import auth, run_states
from core.auth import PermissionDenied
from core.datasets import versions
from core.train import jobs as train_jobs
from core.train import label_issues, registry
from core.train.classifier import POOLINGS, POS_WEIGHTS, PRECISIONS, ClassifierConfig
from ui.plain import chart_text, md_escape
from ui.session import flash, guard, show_flashes

actor = guard("train")

st.title("Train")
st.write("Distil a dataset version into a small classifier, follow its training curves, and find the examples "
         "where the student disagrees with the labels.")
show_flashes("train")

all_versions = [v for v in versions.list_versions(actor) if v.split_counts.get("train")]
by_id = {v.id: v for v in all_versions}


def version_label(i: int) -> str:
    v = by_id[i]
    return f"{i}: {v.name} ({v.split_counts.get('train', 0):,} train / {v.split_counts.get('dev', 0):,} dev)"


train_tab, models_tab, issues_tab = st.tabs(["Training runs", "Models", "Label issues"])

# --------------------------------------------------------------------------- start a run

with train_tab:
    with st.expander("Start a classifier training run", expanded=not train_jobs.list_runs(actor, limit=1)):
        if not by_id:
            st.info("No dataset version with a train split yet: freeze one on the Export page.")
        else:
            defaults = ClassifierConfig()
            version_id = st.selectbox("Dataset version", list(by_id), format_func=version_label, key="trn_version")
            c1, c2, c3, c4 = st.columns(4)
            epochs = c1.number_input("Epochs", 0.1, 50.0, defaults.epochs, 0.5, key="trn_epochs")
            lr = c2.number_input("Learning rate", 1e-6, 1e-2, defaults.learning_rate, format="%.1e", key="trn_lr")
            batch = c3.number_input("Batch size", 1, 512, defaults.batch_size, key="trn_batch")
            max_length = c4.number_input("Max length (tokens)", 8, 512, defaults.max_length, key="trn_maxlen")
            c1, c2, c3, c4 = st.columns(4)
            head_lr = c1.number_input("Head learning rate", 1e-6, 1.0, defaults.head_learning_rate, format="%.1e",
                                      key="trn_head_lr")
            parents = {m.id: m for m in registry.models_for_page(actor, "train")
                       if m.kind in ("classifier", "contrastive")}
            parent_id = c2.selectbox("Start from a registered model", [None, *parents], key="trn_parent",
                                     format_func=lambda i: "no: the base encoder" if i is None
                                     else f"{i}: {parents[i].name} ({parents[i].kind})")
            if parent_id is not None:
                c3.caption(md_escape(train_jobs.adaptation_note(actor, parent_id, version_id)))
            c1, c2, c3, c4 = st.columns(4)
            pooling = c1.selectbox("Pooling", POOLINGS, index=POOLINGS.index(defaults.pooling), key="trn_pooling")
            pos_weight = c2.selectbox("Positive weighting of rare labels", POS_WEIGHTS,
                                      index=POS_WEIGHTS.index(defaults.pos_weight), key="trn_posw")
            patience = c3.number_input("Early stopping patience (evaluations)", 0, 20,
                                       defaults.early_stopping_patience, key="trn_patience")
            seed = c4.number_input("Seed", 0, 2**31 - 1, defaults.seed, key="trn_seed")
            c1, c2, c3, c4 = st.columns(4)
            soft = c1.checkbox("Soft labels (BCE on the frozen scores)", key="trn_soft")
            per_label = c2.checkbox("Also tune one threshold per label", key="trn_per_label")
            freeze = c3.checkbox("Freeze the word embeddings (faster on a CPU)", defaults.freeze_embeddings,
                                 key="trn_freeze")
            precision = c4.selectbox("Precision", PRECISIONS, key="trn_precision",
                                     help="auto: bfloat16 autocast where the hardware has it, else float32")
            base_model = st.text_input("Base encoder folder (empty: the bundled all-MiniLM-L6-v2)", key="trn_base",
                                       help="Any Hugging Face encoder folder on the worker's host, "
                                            "e.g. a RoBERTa-large download on a GPU host.")
            model_name = st.text_input("Model name", key="trn_name", placeholder="classifier <version name>")
            if st.button("Start training (worker job)", type="primary", key="trn_start"):
                settings = {"epochs": float(epochs), "learning_rate": float(lr), "batch_size": int(batch),
                            "max_length": int(max_length), "pooling": pooling, "pos_weight": pos_weight,
                            "early_stopping_patience": int(patience), "seed": int(seed), "soft_labels": soft,
                            "per_label_thresholds": per_label, "base_model": base_model.strip(),
                            "freeze_embeddings": freeze, "precision": precision,
                            "head_learning_rate": float(head_lr)}
                try:
                    run_id = train_jobs.start_classifier_run(actor, version_id, settings, model_name=model_name,
                                                             parent_model_id=parent_id)
                except (ValueError, PermissionDenied) as exc:
                    st.error(md_escape(exc))
                else:
                    flash(f"Training run {run_id} queued: a worker (`python -m core.worker`) picks it up.",
                          scope="train")
                    st.session_state["trn_run"] = run_id
                    st.rerun()
            st.caption("The defaults are the settings `bench.goemotions` measured. From a terminal: "
                       "`python -m core.cli train VERSION_ID [--from-model MODEL_ID]`.")

    # Contrastive (zero-shot) runs start from the Playground but are followed, cancelled and resumed here too.
    runs = train_jobs.list_runs(actor)
    if not runs:
        st.info("No training run yet.")
    else:
        st.dataframe(pd.DataFrame([{
            "run": r.id, "kind": r.kind, "status": r.status, "version": r.version_name, "progress":
            f"{r.progress_done}/{r.progress_total}" if r.progress_total else "", "model": r.model_name or "",
            "dev macro-F1": r.metrics.get("dev_macro_f1"), "test macro-F1": r.metrics.get("test_macro_f1"),
            "created": r.created_at,
        } for r in runs]), hide_index=True)
        run_ids = [r.id for r in runs]
        kinds = {r.id: r.kind for r in runs}
        chosen = st.session_state.get("trn_run")
        run_id = st.selectbox("Run", run_ids, index=run_ids.index(chosen) if chosen in run_ids else 0,
                              key="trn_run_pick", format_func=lambda i: f"run {i} ({kinds[i]})")

        @st.fragment(run_every=3)
        def run_panel(run_id: int) -> None:
            run = train_jobs.get_run(actor, run_id)
            st.text(f"Run {run.id} on {run.version_name}: {run.status}")
            if run.progress_total:
                st.progress(min(1.0, run.progress_done / run.progress_total),
                            text=f"step {run.progress_done}/{run.progress_total}")
            if run.progress_note:
                st.text(run.progress_note)
            if run.error:
                st.error(md_escape(run.error))
            b1, b2, b3, _ = st.columns([1, 1, 1, 3])
            if run.can_cancel and b1.button("Cancel", key=f"trn_cancel_{run.id}"):
                train_jobs.cancel_run(actor, run.id)
                st.rerun()
            if run.can_resume and b2.button("Resume from checkpoint" if run.has_checkpoint else "Restart",
                                            key=f"trn_resume_{run.id}"):
                train_jobs.resume_run(actor, run.id)
                st.rerun()
            if run.can_resume and b3.button("Discard", key=f"trn_discard_{run.id}",
                                            help="Close this failed or stopped run for good; what it made stays."):
                run_states.discard_training_run(actor, run.id)
                st.rerun()
            rows = pd.DataFrame(train_jobs.run_metrics(actor, run.id))
            if rows.empty:
                st.caption("No metrics yet: the curves appear as soon as the worker logs its first steps.")
                return
            rows["series"] = rows["split"] + " " + rows["name"]
            losses = rows[rows["name"] == "loss"]
            scores = rows[rows["name"].isin(["macro_f1", "micro_f1"])]
            c1, c2 = st.columns(2)
            c1.plotly_chart(px.line(losses, x="step", y="value", color="series", markers=True,
                                    title="Loss (train: mean since the last point; dev: whole split)"),
                            key=f"trn_loss_{run.id}")
            if not scores.empty:
                c2.plotly_chart(px.line(scores, x="step", y="value", color="series", markers=True,
                                        title="F1 at the tuned threshold (classifier) or rule (zero-shot)"),
                                key=f"trn_f1_{run.id}")
            if run.model_id:
                st.success(f"Registered as model {run.model_id}: {md_escape(run.model_name)} — dev macro-F1 "
                           f"{run.metrics.get('dev_macro_f1', 0):.3f}"
                           + (f", test macro-F1 {run.metrics['test_macro_f1']:.3f}"
                              if "test_macro_f1" in run.metrics else "")
                           + (f" at threshold {run.metrics['threshold']:.2f}." if "threshold" in run.metrics else "."))

        run_panel(run_id)

# --------------------------------------------------------------------------- models

with models_tab:
    models = registry.models_for_page(actor, "train")
    if not models:
        st.info("No registered model yet: a finished training run registers one.")
    else:
        st.dataframe(pd.DataFrame([{
            "id": m.id, "name": m.name, "kind": m.kind, "parent": m.parent_id, "labels": len(m.labels),
            "threshold": m.thresholds.get("global"),
            "dev macro-F1": m.metrics.get("dev_macro_f1"), "test macro-F1": m.metrics.get("test_macro_f1"),
            "dataset hash": (m.dataset_hash or "")[:12], "created": m.created_at,
        } for m in models]), hide_index=True)
        by_model = {m.id: m for m in models}
        model_id = st.selectbox("Model", list(by_model), key="trn_model",
                                format_func=lambda i: f"{i}: {by_model[i].name}")
        model = by_model[model_id]
        per_label = model.metrics.get("test_per_label") or model.metrics.get("per_label")
        if per_label:
            frame = pd.DataFrame(per_label)
            frame["label"] = frame["label"].map(chart_text)
            which = "test" if model.metrics.get("test_per_label") else "dev"
            st.plotly_chart(px.bar(frame, x="label", y=["precision", "recall", "f1"], barmode="group",
                                   title=f"Per-label precision, recall and F1 ({which})"), key="trn_model_labels")
        with st.expander("Configuration and figures"):
            st.json({"config": model.config, "thresholds": model.thresholds,
                     "metrics": {k: v for k, v in model.metrics.items() if not k.endswith("per_label")}})
        if st.button("Export as a Hugging Face model folder", key="trn_export"):
            try:
                folder = registry.export_model(actor, model.id)
            except (OSError, ValueError) as exc:
                st.error(md_escape(exc))
            else:
                st.success(f"Written to {md_escape(folder)}.")
                name, data = registry.export_zip(actor, model.id)
                st.download_button("Download the zip", data, file_name=name, mime="application/zip",
                                   key="trn_export_zip")
        st.caption("From a terminal: `python -m core.cli export-model MODEL_ID --out FOLDER`.")

# --------------------------------------------------------------------------- label issues

with issues_tab:
    st.caption("A student trained on k-1 folds predicts the remaining fold, so every example gets a prediction "
               "from a model that never saw it; cleanlab turns the disagreement with the version's labels into a "
               "label-issue score (the Curate filter 'signal: label_issue', or a review campaign below).")
    if by_id:
        c1, c2, c3 = st.columns(3)
        issue_version = c1.selectbox("Dataset version", list(by_id), format_func=version_label, key="iss_version")
        folds = c2.number_input("Folds", 2, 10, 5, key="iss_folds")
        issue_epochs = c3.number_input("Epochs per fold", 0.1, 20.0, 2.0, 0.5, key="iss_epochs")
        if st.button("Score label issues (worker job)", key="iss_start"):
            try:
                job_id = label_issues.enqueue_label_issues(actor, issue_version, {"folds": int(folds),
                                                                                  "epochs": float(issue_epochs)})
            except (ValueError, PermissionDenied) as exc:
                st.error(md_escape(exc))
            else:
                st.success(f"Job #{job_id} queued.")
                st.page_link("pages/jobs.py", label="Follow it on the Jobs page", icon=":material/pending_actions:")
    top = label_issues.top_issues(actor, 20)
    if not top:
        st.info("No label-issue scores yet.")
    else:
        st.dataframe(pd.DataFrame(top), hide_index=True)
        annotators = [u for u in auth.list_users(actor) if u.active and u.role == auth.Role.annotator]
        c1, c2 = st.columns(2)
        campaign_name = c1.text_input("Campaign name", key="iss_campaign_name")
        top_n = c2.number_input("Top N examples", 1, 10_000, 100, key="iss_top_n")
        people = st.multiselect("Annotators", [u.id for u in annotators], key="iss_annotators",
                                format_func=lambda i: next(u.username for u in annotators if u.id == i))
        if st.button("Create a review campaign from the top N", key="iss_campaign"):
            try:
                view = label_issues.create_issue_campaign(actor, campaign_name, people, top_n=int(top_n))
            except (ValueError, PermissionDenied) as exc:
                st.error(md_escape(exc))
            else:
                st.success(f"Campaign {md_escape(view.name)} created with {view.item_count} items.")
