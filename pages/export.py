"""Export: import labelled data sets, freeze versions with splits, export them (zip download or folder)."""

import pandas as pd
import plotly.express as px
import streamlit as st

from core.auth import PermissionDenied
from core.curate.filters import CurationFilter
from core.datasets import export, importing, versions
from core.datasets.readers import ImportFileError
from core.datasets.splits import CONTEXTLESS_RATIOS, default_ratios_text
from core.taxonomy import get_taxonomy, list_taxonomies
from ui.plain import chart_text, md_escape
from ui.session import flash, guard, show_flashes

actor = guard("export")

st.title("Export")
st.write("Import labelled data sets, freeze curated examples into versioned data sets with train/dev/test "
         "splits, and export them (JSONL, CSV, Parquet, Hugging Face datasets, GoEmotions TSV).")
show_flashes("export")

taxonomies = {t.name: t.id for t in list_taxonomies()}
if not taxonomies:
    st.info("No taxonomy yet: create one on the Admin page first.")
    st.stop()
tax_names = list(taxonomies)
default_tax = tax_names.index("GoEmotions") if "GoEmotions" in tax_names else 0

# --------------------------------------------------------------------------- import

with st.expander("Import a labelled data set"):
    st.caption("GoEmotions TSV (text, label ids, id; no header), CSV / TSV with a text column and a label-list "
               "column or one 0/1 column per label, JSON Lines with `text` and `labels`; or a folder saved by "
               "Hugging Face `datasets` on the server. Labels are mapped onto the taxonomy; unknown ones are "
               "reported. A bad file saves nothing.")
    round_ = st.session_state.get("exp_upload_round", 0)
    upload = st.file_uploader("File", type=["tsv", "csv", "jsonl"], key=f"exp_file_{round_}")
    folder = st.text_input("…or a `datasets` folder on the server", key="exp_folder")
    c1, c2, c3 = st.columns(3)
    source = c1.text_input("Data set name", key="exp_source")
    tax = c2.selectbox("Taxonomy", tax_names, index=default_tax, key="exp_import_tax")
    licence = c3.text_input("Licence", key="exp_licence")
    evaluation = st.checkbox("Evaluation set (kept out of training versions)", key="exp_eval")
    if st.button("Import", type="primary", key="exp_import"):
        try:
            if upload is not None:
                outcome = importing.import_or_enqueue(actor, upload.name, upload.getvalue(), source=source,
                                                      taxonomy_id=taxonomies[tax], evaluation=evaluation,
                                                      licence=licence)
                message = (f"Job #{outcome.job_id} queued: the worker imports {md_escape(upload.name)}."
                           if outcome.queued else md_escape(outcome.report.summary() + "."))
            elif folder.strip():
                report = importing.import_hf_folder(actor, folder.strip(), source=source,
                                                    taxonomy_id=taxonomies[tax], evaluation=evaluation,
                                                    licence=licence)
                message = md_escape(report.summary() + ".")
            else:
                raise ImportFileError("Choose a file or give a folder first.")
        except (ImportFileError, PermissionDenied, ValueError) as exc:
            st.error(md_escape(exc))
        else:
            st.session_state["exp_upload_round"] = round_ + 1
            flash(message, scope="export")
            st.rerun()

# --------------------------------------------------------------------------- freeze

with st.expander("Freeze a new version", expanded=True):
    st.caption("Freezes the current labels of the chosen examples. Rejected examples and evaluation sets stay "
               "out unless you pick their status. One story, one near-duplicate cluster and a rewrite with its "
               "context-less parent always land in the same split.")
    c1, c2 = st.columns(2)
    name = c1.text_input("Version name", key="exp_name")
    freeze_tax = c2.selectbox("Taxonomy", tax_names, index=default_tax, key="exp_freeze_tax")
    kinds = c1.multiselect("Kinds", ["contextless", "contextual", "imported"], key="exp_kinds")
    statuses = c2.multiselect("Statuses", ["pending", "accepted", "rejected", "evaluation"], key="exp_statuses",
                              help="Empty: every status but rejected and evaluation.")
    sources = c1.multiselect("Imported data sets", [s for s, _ in importing.imported_sources()], key="exp_sources")
    labels = c2.multiselect("Labels (any of)", get_taxonomy(taxonomies[freeze_tax]).label_names, key="exp_labels")
    r1, r2, r3, r4 = st.columns(4)
    custom = r4.checkbox("Choose the split ratios", key="exp_custom_ratios",
                         help=md_escape(f"Default: {default_ratios_text()}."))
    ratios = {split: col.number_input(f"{md_escape(split)} share", 0.0, 1.0, CONTEXTLESS_RATIOS[split], 0.05,
                                      key=f"exp_ratio_{split}", disabled=not custom)
              for col, split in zip((r1, r2, r3), ("train", "dev", "test"))}
    seed = r4.number_input("Seed", 0, 2**31 - 1, versions.DEFAULT_SEED, key="exp_seed")
    version_licence = st.text_input("Licence of the data set", key="exp_version_licence")
    description = st.text_area("Description (for the dataset card)", key="exp_description")
    if st.button("Freeze version", type="primary", key="exp_freeze"):
        selection = CurationFilter(kinds=tuple(kinds), statuses=tuple(statuses), sources=tuple(sources),
                                   labels=tuple(labels))
        options = {"taxonomy_id": taxonomies[freeze_tax], "ratios": ratios if custom else None, "seed": int(seed),
                   "licence": version_licence, "description": description}
        try:
            outcome = versions.freeze_or_enqueue(actor, name, selection, **options)
        except (versions.VersionError, ValueError, PermissionDenied) as exc:
            st.error(md_escape(exc))
        else:
            view = outcome.report
            if outcome.queued:
                flash(f"Job #{outcome.job_id} queued: the worker freezes this large selection.", scope="export")
            elif view.existed:
                flash(f"Nothing changed since version {view.id} ({md_escape(view.name)}): same content hash.", "info",
                      "export")
            else:
                flash(f"Version {view.id} frozen: {view.size:,} examples.", scope="export")
            st.rerun()

# --------------------------------------------------------------------------- versions

st.subheader("Versions")
all_versions = versions.list_versions(actor)
if not all_versions:
    st.info("No dataset version yet: freeze one above.")
    st.stop()
st.dataframe(pd.DataFrame([{
    "id": v.id, "name": v.name, "taxonomy": v.taxonomy, "examples": v.size, **v.split_counts,
    "evaluation set": v.is_evaluation_set, "hash": v.content_hash[:12], "by": v.created_by, "created": v.created_at,
} for v in all_versions]), hide_index=True)
by_id = {v.id: v for v in all_versions}
version_id = st.selectbox("Version", list(by_id), key="exp_version",
                          format_func=lambda i: f"{i}: {by_id[i].name} ({by_id[i].size:,})")
version = by_id[version_id]
per_split = versions.label_split_counts(version.id)
frame = pd.DataFrame([{"split": s, "label": chart_text(label), "share": n / max(1, version.split_counts.get(s, 0))}
                      for s, c in per_split.items() for label, n in c.items()])
if not frame.empty:
    st.plotly_chart(px.bar(frame, x="label", y="share", color="split", barmode="group",
                           title="Share of examples with each label, per split"))
st.caption(md_escape(f"Selection: {CurationFilter.from_dict(version.selection).describe()} · "
                     f"split: {version.split_config.get('ratios', 'as imported')}, "
                     f"seed {version.split_config.get('seed', '-')}"))

formats = st.multiselect("Formats", export.FORMATS, default=list(export.FORMATS), key="exp_formats")
if st.button("Export (worker job)", type="primary", key="exp_export", icon=":material/download:"):
    try:
        job_id = export.enqueue_export(actor, version.id, tuple(formats))
    except (export.ExportError, PermissionDenied) as exc:
        st.error(md_escape(exc))
    else:
        st.success(f"Job #{job_id} queued: the zip appears below when the worker is done.")
        st.page_link("pages/jobs.py", label="Follow it on the Jobs page", icon=":material/pending_actions:")
st.caption("From a terminal: `python -m core.cli export VERSION_ID --out FOLDER`.")

zips = [e for e in export.list_exports(actor, version.id) if e.format == "zip"]
if zips:
    st.write("Downloads")
    for e in zips[:5]:
        cols = st.columns([3, 1])
        cols[0].text(f"#{e.id} · {e.created_at:%Y-%m-%d %H:%M} · sha256 {e.sha256[:12]}")
        if e.exists:
            # A callable: the zip (hundreds of MB for a big version) is read only when the button is clicked.
            cols[1].download_button("Download zip", lambda export_id=e.id: export.zip_file(actor, export_id).read_bytes(),
                                    file_name=f"{version.name}-v{version.id}.zip", mime="application/zip",
                                    key=f"exp_dl_{e.id}")
        else:
            cols[1].caption("file gone")
