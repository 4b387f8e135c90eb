"""Playground: try any registered model on a text over any label set; evaluate models and compare them."""

import pandas as pd
import streamlit as st

from core.auth import PermissionDenied
from core.train import baselines, charts, contrastive, dimensions, evaluate, external
from ui.plain import md_escape
from ui.session import flash, guard, show_flashes

actor = guard("playground")

CUSTOM = "custom labels (type them)"

st.title("Playground")
st.write("Type a text (and, if you like, the situation around it) and see how likely each label is for any "
         "registered model. Zero-shot (contrastive) models and similarity baselines take any label set.")
show_flashes("playground")

tab_names = ["Try a model", "Compare evaluations"] + (["Evaluate"] if actor.is_admin else [])
tabs = st.tabs(tab_names)

# --------------------------------------------------------------------------- try a model

with tabs[0]:
    models = evaluate.models_for_playground(actor)
    if not models:
        st.info("No model registered yet: train one on the Train page"
                + (", or register the baselines in the Evaluate tab." if actor.is_admin else "."))
    else:
        by_id = {m.id: m for m in models}
        model_id = st.selectbox("Model", list(by_id), key="pg_model",
                                format_func=lambda i: f"{by_id[i].name} ({by_id[i].kind})")
        model = by_id[model_id]
        text = st.text_area("Text", key="pg_text", placeholder="I can't believe they remembered my birthday!")
        context = st.text_area("Context (optional)", key="pg_context", height=80,
                               placeholder="What happened before, who is speaking...")
        names: list[str] | None = None
        descriptions: list[str] | None = None
        if model.kind == "classifier":
            st.caption(f"A classifier predicts its own {len(model.labels)} labels.")
        else:
            sets = {s.name: s for s in evaluate.label_sets(actor)}
            options = ([] if model.kind == "baseline" else ["the model's training labels"]) + list(sets) + [CUSTOM]
            chosen = st.selectbox("Label set", options, key="pg_label_set")
            if chosen == CUSTOM:
                typed = st.text_area("Labels, one per line: `name: description` (the description is optional)",
                                     key="pg_custom", placeholder="awe: wonder at something vast\nboredom")
                names, descriptions = evaluate.parse_label_lines(typed)
            elif chosen in sets:
                names, descriptions = list(sets[chosen].labels), list(sets[chosen].descriptions)
        if st.button("Predict", type="primary", key="pg_predict"):
            try:
                result = evaluate.predict_text(actor, model_id, text, context, names, descriptions)
            except (ValueError, PermissionDenied, KeyError, FileNotFoundError) as exc:
                st.error(md_escape(exc))
            else:
                st.session_state["pg_result"] = result
        result = st.session_state.get("pg_result")
        if result is not None:
            predicted = ", ".join(result.predicted) or "none"
            st.success(md_escape(f"{result.model}: {predicted}") + f"  \n{md_escape(result.note)}")
            st.plotly_chart(charts.label_probabilities(result.labels, result.probabilities), key="pg_chart")
            st.dataframe(pd.DataFrame({"label": result.labels, "probability": result.probabilities})
                         .sort_values("probability", ascending=False), hide_index=True, key="pg_table")
        if model.kind != "classifier":
            with st.expander("Score a dimension (e.g. valence) from its two poles"):
                st.caption("The text's position between the two poles' wordings (one per line), on the scale "
                           "you give: a zero-shot regression, no training on the dimension.")
                d1, d2 = st.columns(2)
                high = d1.text_area("High pole", "\n".join(dimensions.VALENCE.high), key="pg_dim_high")
                low = d2.text_area("Low pole", "\n".join(dimensions.VALENCE.low), key="pg_dim_low")
                s1, s2, s3 = st.columns(3)
                scale_low = s1.number_input("Scale from", value=1.0, key="pg_dim_from")
                scale_high = s2.number_input("to", value=5.0, key="pg_dim_to")
                mapping = s3.selectbox("Position from", list(dimensions.MAPPINGS), key="pg_dim_mapping",
                                       index=list(dimensions.MAPPINGS).index(dimensions.DEFAULT_MAPPING),
                                       help=dimensions.MAPPING_HELP)
                if st.button("Score", key="pg_dim_score"):
                    try:
                        scored = evaluate.predict_dimension(actor, model_id, text, dimensions.parse_poles(high),
                                                            dimensions.parse_poles(low), context,
                                                            (float(scale_low), float(scale_high)), mapping=mapping)
                    except (ValueError, PermissionDenied, KeyError, FileNotFoundError) as exc:
                        st.error(md_escape(exc))
                    else:
                        st.metric("Score", f"{scored.score:.2f}",
                                  help=f"{scored.toward_high:.0%} of the way from the low to the high pole")

# --------------------------------------------------------------------------- compare evaluations

with tabs[1]:
    rows = evaluate.list_evaluations(actor)
    if not rows:
        st.info("No evaluation yet." + (" Queue one in the Evaluate tab." if actor.is_admin else ""))
    else:
        table = evaluate.comparison(actor)
        st.subheader("Models side by side")
        st.dataframe(pd.DataFrame(table), hide_index=True, key="pg_compare_table")
        st.plotly_chart(charts.comparison_bars(table), key="pg_compare_bars")
        benchmarks = sorted({r.benchmark for r in rows})
        benchmark = st.selectbox("Benchmark", benchmarks, key="pg_benchmark")
        latest: dict[int, evaluate.EvaluationRow] = {}
        for row in rows:
            if row.benchmark == benchmark:
                latest.setdefault(row.model_id, row)
        names_by_id = {i: r.model for i, r in latest.items()}
        picked = st.multiselect("Models", list(latest), default=list(latest)[:3], key="pg_compare_models",
                                format_func=lambda i: names_by_id[i])
        if picked:
            results = {latest[i].model: latest[i].figures for i in picked}
            st.plotly_chart(charts.per_label_f1(results, f"F1 per label on {benchmark}"), key="pg_per_label")
            st.plotly_chart(charts.calibration_curve(results, f"Calibration on {benchmark}"), key="pg_calibration")
            for i in picked:
                row = latest[i]
                with st.expander(f"{md_escape(row.model)}: macro-F1 {row.macro_f1:.3f}, micro-F1 {row.micro_f1:.3f}, "
                                 f"{row.examples:,} texts"):
                    st.caption(md_escape(f"Decision rule: {row.figures.get('rule')}"))
                    st.dataframe(pd.DataFrame(row.figures.get("per_label", [])), hide_index=True,
                                 key=f"pg_per_label_{i}")
                    st.plotly_chart(charts.confusion_heatmap(row.figures, f"Confusion: {row.model}"),
                                    key=f"pg_confusion_{i}")

# --------------------------------------------------------------------------- evaluate (admins)

if actor.is_admin:
    with tabs[2]:
        present = external.available()
        st.caption(f"Built-in sets are read from {md_escape(external.data_dir())}; your own labelled sets are "
                   "imported on the Export page as evaluation sets and evaluated as dataset versions.")
        all_models = {m.id: m for m in evaluate.models_for_playground(actor)}
        chosen_models = st.multiselect("Models", list(all_models), key="pg_eval_models",
                                       format_func=lambda i: f"{all_models[i].name} ({all_models[i].kind})")
        usual = {s.name: s for s in evaluate.builtin_specs()}
        chosen_sets = st.multiselect("Built-in sets", list(usual), key="pg_eval_sets",
                                     format_func=lambda n: f"{n} / {usual[n].split}: "
                                     f"{({**external.BUILTIN, **external.REGRESSION})[n]}")
        versions = dict(evaluate.version_choices(actor))
        chosen_versions = st.multiselect("Dataset versions", list(versions), key="pg_eval_versions",
                                         format_func=lambda v: f"#{v} {versions[v]}")
        c1, c2, c3 = st.columns(3)
        version_split = c1.selectbox("Version split", ["test", "dev", "train"], key="pg_eval_split")
        limit = c2.number_input("First N texts of each set (0 = all)", 0, 100_000, 0, 100, key="pg_eval_limit")
        per_label = c3.checkbox("Classifiers: per-label thresholds", key="pg_eval_per_label")
        if st.button("Queue evaluation", type="primary", key="pg_eval_queue"):
            specs = [evaluate.EvalSpec("builtin", n, usual[n].split, limit=int(limit) or None) for n in chosen_sets]
            specs += [evaluate.EvalSpec("version", split=version_split, version_id=v, limit=int(limit) or None)
                      for v in chosen_versions]
            try:
                job_id = evaluate.enqueue_evaluation(actor, chosen_models, specs, per_label=per_label)
            except (ValueError, PermissionDenied) as exc:
                st.error(md_escape(exc))
            else:
                flash(f"Job #{job_id} queued: the worker evaluates and stores the figures.", scope="playground")
                st.rerun()

        with st.expander("Train a zero-shot (contrastive) model on a dataset version"):
            st.caption("Distil (the default): texts are aligned with the teacher's free-text descriptors only; no "
                       "label of the version is read, so the model is strictly zero-shot. Labels: texts are aligned "
                       "with their labels' names and descriptions (supervised). Either way the model then scores any "
                       "label set. A worker job: follow, cancel and resume it on the Train page. A share of trained "
                       "weights below 1 averages the trained encoder with the untrained one (WiSE-FT).")
            zs_mode = st.radio("Mode", contrastive.MODES, horizontal=True, key="pg_zs_mode",
                               format_func=lambda m: {"distill": "distil teacher descriptors (no labels)",
                                                      "labels": "the version's labels"}[m])
            z1, z2, z3, z4, z5 = st.columns(5)
            zs_version = z1.selectbox("Dataset version", list(versions), key="pg_zs_version",
                                      format_func=lambda v: f"#{v} {versions[v]}")
            zs_defaults = contrastive.ContrastiveConfig()
            zs_epochs = z2.number_input("Epochs", 0.1, 20.0, zs_defaults.epochs, 0.5, key="pg_zs_epochs")
            zs_steps = z3.number_input("Max steps (0 = the epochs)", 0, 1_000_000, zs_defaults.max_steps, 100,
                                       key="pg_zs_steps")
            zs_lr = z4.number_input("Learning rate", 1e-6, 1e-2, zs_defaults.learning_rate, format="%.1e",
                                    key="pg_zs_lr")
            zs_alpha = z5.number_input("Share of trained weights", 0.05, 1.0, zs_defaults.wise_alpha, 0.05,
                                       key="pg_zs_alpha")
            zs_name = st.text_input("Model name", key="pg_zs_name", placeholder="contrastive <version name>")
            if st.button("Start zero-shot training (worker job)", key="pg_zs_start", disabled=zs_version is None):
                try:
                    run_id = contrastive.start_contrastive_run(
                        actor, int(zs_version), {"epochs": float(zs_epochs), "max_steps": int(zs_steps),
                                                 "learning_rate": float(zs_lr), "wise_alpha": float(zs_alpha),
                                                 "mode": zs_mode},
                        model_name=zs_name)
                except (ValueError, PermissionDenied) as exc:
                    st.error(md_escape(exc))
                else:
                    flash(f"Zero-shot training run {run_id} queued.", scope="playground")
                    st.rerun()

        st.subheader("Baselines")
        st.caption("Untrained embedding similarity to label names and the NRC lexicon, their multi-label "
                   "decision rules calibrated on GoEmotions dev; the teacher LLM's own zero-shot labels.")
        if st.button("Register / refresh the embedding and NRC baselines", key="pg_baselines"):
            try:
                job_id = baselines.enqueue_register_baselines(actor)
            except (ValueError, PermissionDenied) as exc:
                st.error(md_escape(exc))
            else:
                flash(f"Job #{job_id} queued: the baselines appear in the model lists when it is done.",
                      scope="playground")
                st.rerun()
        t1, t2, t3 = st.columns(3)
        teacher_set = t1.selectbox("Teacher on", [n for n in usual if n not in external.REGRESSION]
                                   + [f"version {v}" for v in versions], key="pg_teacher_set")
        teacher_limit = t2.number_input("Texts (0 = the whole set)", 0, 1_000_000, 0, 100, key="pg_teacher_limit")
        if t3.button("Queue the teacher baseline", key="pg_teacher", disabled=teacher_set is None):
            if teacher_set in usual:
                spec = evaluate.EvalSpec("builtin", teacher_set, usual[teacher_set].split).to_dict()
            else:
                spec = evaluate.EvalSpec("version", split=version_split,
                                         version_id=int(teacher_set.split()[-1])).to_dict()
            try:
                job_id = baselines.enqueue_teacher_baseline(actor, spec, limit=int(teacher_limit) or None)
            except (ValueError, PermissionDenied, FileNotFoundError) as exc:
                st.error(md_escape(exc))
            else:
                flash(f"Job #{job_id} queued: the teacher labels "
                      f"{f'{int(teacher_limit)} texts' if teacher_limit else 'the whole set'}.", scope="playground")
                st.rerun()
        if not any(present.values()):
            st.warning("No built-in evaluation set was found: evaluate on dataset versions.")
