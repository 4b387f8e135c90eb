"""`python -m core.cli`: the long operations for scripts, with the same rules as the browser.

    python -m core.cli --user admin import stories.jsonl --corpus "My stories" [--job]
    python -m core.cli --user admin generate --corpus "My stories" --stories 5 [--seed 1]
    python -m core.cli --user admin describe goemotions-dev --limit 200
    python -m core.cli --user admin jobs
    python -m core.cli --user admin users add ann --role annotator
    python -m core.cli --user admin import-labelled dev.tsv --source goemotions-dev [--evaluation] [--job]
    python -m core.cli --user admin freeze "v1" --kind contextual [--ratios 0.8,0.1,0.1] [--job]
    python -m core.cli --user admin export 3 --out ./my-dataset [--formats jsonl,parquet] [--zip] [--force]
    python -m core.cli --user admin campaign create --name Check --task verification --annotators ann,bob [--job]
    python -m core.cli --user admin campaign preset --annotators ann,bob,cy [--items 200 --run 3]
    python -m core.cli --user admin campaign list
    python -m core.cli --user admin campaign results 1 [--agreement] [--out answers.csv]
    python -m core.cli --user admin train 3 [--epochs 4 --lr 1.2e-4 --from-model 2 --per-label-thresholds]
    python -m core.cli --user admin label-issues 3 --folds 5
    python -m core.cli --user admin models
    python -m core.cli --user admin export-model 1 --out ./my-model [--force]
    python -m core.cli --user admin train-zeroshot 3 [--mode distill|labels] --epochs 1 [--steps 600]
    python -m core.cli --user admin baselines [--teacher emotion6 --limit 100]
    python -m core.cli --user admin evaluate 1 2 --set emotion6 --set semeval-ec [--version 3 --split test]

The acting user's password comes from EMOFORGE_PASSWORD (or a prompt), so every command is
checked against that user's role exactly as in the app.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import os
import sys
from pathlib import Path

from core import auth, corpus, jobs


def _actor(username: str) -> auth.Actor:
    password = os.environ.get("EMOFORGE_PASSWORD") or getpass.getpass(f"password for {username}: ")
    return auth.authenticate(username, password)


def cmd_import(actor: auth.Actor, args: argparse.Namespace) -> int:
    files = [(Path(p).name, Path(p).read_bytes()) for p in args.files]
    if args.job:
        for name, data in files:
            job_id = corpus.enqueue_import(actor, args.corpus, name, data)
            print(f"job {job_id} queued: import {name} into {args.corpus!r} (run `python -m core.worker`)")
        return 0
    report = corpus.import_files(actor, args.corpus, files, description=args.description)
    print(f"corpus {report.corpus_name!r} (id {report.corpus_id}): {report.summary()}")
    return 0


def cmd_generate(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core import taxonomy
    from core.pipeline import run as pipeline
    from core.pipeline import runs

    target = next((c for c in corpus.list_corpora() if c.name == args.corpus), None)
    if target is None:
        raise ValueError(f"no corpus named {args.corpus!r}")
    tax = taxonomy.get_taxonomy_by_name(args.taxonomy)
    if tax is None:
        raise ValueError(f"no taxonomy named {args.taxonomy!r}")
    overrides = {name: getattr(args, name) for name in ("emotional", "neutral", "context_share", "repetition_penalty")
                 if getattr(args, name) is not None}
    if args.characters is not None:
        overrides["max_characters"] = args.characters
    config = pipeline.RunConfig.for_preset(args.preset, target.id, tax.id, seed=args.seed, **overrides)
    planned = pipeline.prepare_config(config, args.stories)
    run_id = pipeline.create_run(actor, planned, name=args.name)
    estimate = runs.run_detail(actor, run_id).estimate  # the one the run was launched with
    print(f"{len(planned.story_ids)} stories ({pipeline.PRESETS[args.preset]['title']}): {estimate['calls']} LLM calls, "
          f"about {estimate['tokens']} tokens")
    print(f"run {run_id} queued (run `python -m core.worker`; follow it with `jobs` or on the Generate page)")
    return 0


def cmd_describe(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core import taxonomy
    from core.pipeline import annotate

    tax = taxonomy.get_taxonomy_by_name(args.taxonomy)
    if tax is None:
        raise ValueError(f"no taxonomy named {args.taxonomy!r}")
    steps = tuple(args.steps.split(","))
    job_id = annotate.enqueue_annotation(actor, None if args.run else args.source, tax.id, limit=args.limit,
                                         steps=steps, run_id=args.run)
    print(f"job {job_id} queued: the teacher describes texts of {f'run #{args.run}' if args.run else repr(args.source)} "
          f"({', '.join(steps)})")
    return 0


def cmd_jobs(actor: auth.Actor, args: argparse.Namespace) -> int:
    for job in jobs.list_jobs(actor, limit=args.limit):
        total = f"/{job.total}" if job.total is not None else ""
        line = f"{job.id:>5}  {job.status.value:<9}  {job.done}{total:<8}  {job.title}"
        print(line + (f"  -- {job.error}" if job.error else ""))
    return 0


def cmd_users_add(actor: auth.Actor, args: argparse.Namespace) -> int:
    password = os.environ.get("EMOFORGE_NEW_PASSWORD") or getpass.getpass(f"new password for {args.username}: ")
    user = auth.create_user(actor, args.username, password, args.role)
    print(f"user {user.username} ({user.role.value}) created")
    return 0


def cmd_export(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.datasets import export

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip()) or export.FORMATS
    result = export.export_version(actor, args.version, args.out, formats, make_zip=args.zip, force=args.force)
    print(f"version {args.version}: {result.rows:,} rows written to {result.folder} ({', '.join(result.files)})"
          + (f"; zip {result.zip_path}" if result.zip_path else ""))
    return 0


def cmd_train(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.train import jobs as train_jobs

    settings = {"epochs": args.epochs, "learning_rate": args.lr, "head_learning_rate": args.head_lr,
                "batch_size": args.batch_size,
                "max_length": args.max_length, "pooling": args.pooling, "pos_weight": args.pos_weight,
                "soft_labels": args.soft_labels, "per_label_thresholds": args.per_label_thresholds,
                "base_model": args.base_model, "seed": args.seed, "max_steps": args.max_steps,
                "freeze_embeddings": args.freeze_embeddings, "precision": args.precision}
    if args.from_model is not None:
        print(train_jobs.adaptation_note(actor, args.from_model, args.version))
    run_id = train_jobs.start_classifier_run(actor, args.version, settings, model_name=args.name,
                                             parent_model_id=args.from_model)
    print(f"training run {run_id} queued (run `python -m core.worker`; follow it on the Train page)")
    return 0


def cmd_label_issues(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.train import label_issues

    job_id = label_issues.enqueue_label_issues(actor, args.version, {"folds": args.folds, "epochs": args.epochs,
                                                                     "max_steps": args.max_steps})
    print(f"job {job_id} queued: cross-validated label-issue scores of version {args.version}")
    return 0


def cmd_models(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.train import registry

    for m in registry.models_for_page(actor, "train"):
        figures = ", ".join(f"{k} {v:.3f}" for k, v in m.metrics.items()
                            if k.endswith("macro_f1") and isinstance(v, (int, float)))
        print(f"{m.id:>4}  {m.kind:<11}  {m.name}  ({len(m.labels)} labels{'; ' + figures if figures else ''})")
    return 0


def cmd_export_model(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.train import registry

    folder = registry.export_model(actor, args.model, args.out, force=args.force)
    print(f"model {args.model} written to {folder} (a Hugging Face model folder)")
    return 0


def cmd_train_zeroshot(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.train import contrastive

    settings = {"epochs": args.epochs, "max_steps": args.steps, "learning_rate": args.lr,
                "batch_size": args.batch_size, "base_model": args.base_model, "seed": args.seed,
                "wise_alpha": args.wise_alpha, "mode": args.mode}
    run_id = contrastive.start_contrastive_run(actor, args.version, settings, model_name=args.name)
    print(f"contrastive training run {run_id} queued (run `python -m core.worker`; follow it on the Train page)")
    return 0


def cmd_evaluate(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.train import evaluate, external

    specs = [evaluate.EvalSpec("builtin", name, args.split or external.SPLITS[name][-1], limit=args.limit)
             for name in args.set or []]
    specs += [evaluate.EvalSpec("version", split=args.split or "test", version_id=v, limit=args.limit)
              for v in args.version or []]
    job_id = evaluate.enqueue_evaluation(actor, args.models, specs, per_label=args.per_label_thresholds)
    print(f"job {job_id} queued: {len(args.models)} model(s) on {', '.join(s.benchmark for s in specs)}")
    return 0


def cmd_baselines(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.train import baselines, external

    if args.teacher:
        spec = {"source": "builtin", "name": args.teacher, "split": external.SPLITS[args.teacher][-1]}
        job_id = baselines.enqueue_teacher_baseline(actor, spec, limit=args.limit or None)
        print(f"job {job_id} queued: the teacher's zero-shot labels on "
              f"{f'{args.limit} texts' if args.limit else 'the whole set'} of {args.teacher}")
    else:
        job_id = baselines.enqueue_register_baselines(actor)
        print(f"job {job_id} queued: register the embedding and NRC baselines")
    return 0


def _taxonomy_id(name: str) -> int:
    from core import taxonomy

    found = taxonomy.get_taxonomy_by_name(name)
    if found is None:
        raise ValueError(f"no taxonomy named {name!r}")
    return found.id


def _queued(job_id: int, what: str) -> None:
    print(f"job {job_id} queued: {what} (run `python -m core.worker`; follow it with `jobs`)")


def cmd_import_labelled(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.datasets import importing

    options = {"source": args.source, "taxonomy_id": _taxonomy_id(args.taxonomy), "evaluation": args.evaluation,
               "licence": args.licence}
    path = Path(args.path)
    if path.is_dir():  # a folder saved by Hugging Face `datasets`
        report = importing.import_hf_folder(actor, str(path), **options, text_column=args.text_column,
                                            label_column=args.label_column)
    elif args.job:
        _queued(importing.enqueue_file(actor, path.name, path.read_bytes(), **options, fmt=args.format),
                f"import {path.name} as {args.source!r}")
        return 0
    else:
        report = importing.import_file(actor, path.name, path.read_bytes(), **options, fmt=args.format)
    print(report.summary() + (f"; evaluation set: dataset version {report.version_id}" if report.version_id else ""))
    return 0


def _ratios(text: str) -> dict[str, float] | None:
    """'0.8,0.1,0.1' -> train/dev/test shares; '' -> None (core's default for the examples' kinds)."""
    from core.datasets.splits import SPLITS

    if not text.strip():
        return None
    values = [float(v) for v in text.split(",")]
    if len(values) != len(SPLITS):
        raise ValueError(f"--ratios takes {len(SPLITS)} numbers ({', '.join(SPLITS)}), e.g. 0.8,0.1,0.1")
    return dict(zip(SPLITS, values))


def cmd_freeze(actor: auth.Actor, args: argparse.Namespace) -> int:
    import json

    from core.curate.filters import CurationFilter
    from core.datasets import versions

    given = json.loads(args.filter or "{}")
    if not isinstance(given, dict):
        raise ValueError('--filter takes a JSON object of Curate filter fields, e.g. {"score_min": 0.5}')
    shortcuts = (("kinds", args.kind), ("statuses", args.status), ("sources", args.source), ("labels", args.label))
    selection = CurationFilter.from_dict({**given, **{field: values for field, values in shortcuts if values}})
    options = {"taxonomy_id": _taxonomy_id(args.taxonomy) if args.taxonomy else None, "ratios": _ratios(args.ratios),
               "licence": args.licence, "description": args.description}
    if args.seed is not None:
        options["seed"] = args.seed
    if args.job:
        _queued(versions.enqueue_freeze(actor, args.name, selection, **options), f"freeze dataset version {args.name}")
        return 0
    view = versions.freeze(actor, args.name, selection, **options)
    if view.existed:
        print(f"nothing changed since version {view.id} ({view.name}): same content hash")
    else:
        splits = ", ".join(f"{s} {n:,}" for s, n in view.split_counts.items())
        print(f"version {view.id} frozen: {view.size:,} examples ({splits}); hash {view.content_hash[:12]}")
    return 0


def _annotator_ids(actor: auth.Actor, usernames: str) -> list[int]:
    from core.review import campaigns

    by_name = {name: user_id for user_id, name, _ in campaigns.annotator_choices(actor)}
    names = [n.strip() for n in usernames.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"no active user named {unknown[0]!r}")
    return [by_name[n] for n in names]


def _campaign_selection(args: argparse.Namespace):
    """The review Selection the page's "Items" section would build, from the command's options."""
    from core.review.selection import Selection

    ids = [int(i) for i in args.ids.replace(",", " ").split()] if args.ids else None
    return Selection(example_ids=ids, top_signal="label_issue" if args.top_label_issues else None,
                     top_n=args.top_label_issues or 100, run_id=args.run_id, kind=args.kind, label=args.label,
                     per_emotion=args.per_emotion, limit=args.limit, seed=args.seed, group_by=args.group_by,
                     group_size=args.group_size)


def campaign_fields(actor: auth.Actor, args: argparse.Namespace) -> dict:
    """`campaigns.create_campaign` keyword arguments (the fields of CampaignSpec) from `campaign create`."""
    return {"name": args.name, "task": args.task, "annotator_ids": _annotator_ids(actor, args.annotators),
            "selection": _campaign_selection(args), "overlap": args.overlap, "min_submissions": args.min_submissions,
            "guidelines": Path(args.guidelines).read_text() if args.guidelines else "",
            "show_suggestions": not args.hide_suggestions,
            "taxonomy_id": _taxonomy_id(args.taxonomy) if args.taxonomy else None}


def cmd_campaign_create(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.review import campaigns

    fields = campaign_fields(actor, args)
    if args.job:
        _queued(campaigns.enqueue_campaign(actor, **fields), f"create review campaign {args.name!r}")
        return 0
    view = campaigns.create_campaign(actor, **fields)
    print(f"campaign {view.id} ({view.name}, {view.task}): {view.item_count:,} items")
    return 0


def cmd_campaign_preset(actor: auth.Actor, args: argparse.Namespace) -> int:
    """The paper's human evaluation: its four campaigns (200 items, 3 annotators each) in one transaction."""
    from core.review import campaigns

    views = campaigns.create_paper_preset(
        actor, _annotator_ids(actor, args.annotators), items=args.items, seed=args.seed,
        neutral_share=args.neutral_share, run_id=args.run_id,
        taxonomy_id=_taxonomy_id(args.taxonomy) if args.taxonomy else None)
    for view in views:
        print(f"campaign {view.id} ({view.name}, {view.task}): {view.item_count:,} items")
    return 0


def cmd_campaign_list(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.review import campaigns

    for c in campaigns.list_campaigns(actor):
        print(f"{c.id:>4}  {c.task:<15}  {c.status:<8}  {c.completed_count:,}/{c.item_count:,} done  {c.name}")
    return 0


def cmd_campaign_results(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.review import agreement, results

    text = (results.agreement_csv(agreement.campaign_report(actor, args.campaign)) if args.agreement
            else results.results_csv(actor, args.campaign))
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        rows = sum(1 for _ in csv.reader(io.StringIO(text))) - 1  # an answer may span lines
        print(f"campaign {args.campaign}: {rows:,} rows written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _add_campaign_parsers(sub) -> None:
    campaign = sub.add_parser("campaign", help="review campaigns: create, list, results as CSV")
    verbs = campaign.add_subparsers(dest="campaign_command", required=True)
    new = verbs.add_parser("create", help="create a review campaign (its items and each annotator's queue)")
    new.add_argument("--name", required=True)
    # Any task the review registry knows: core checks the name, so a new task module needs no CLI change.
    new.add_argument("--task", required=True, help="the review task, e.g. verification, personalization, diversity")
    new.add_argument("--annotators", required=True, help="comma-separated usernames")
    new.add_argument("--overlap", type=int, default=1, help="annotators per item")
    new.add_argument("--min-submissions", type=int, default=None, help="submissions that complete an item "
                                                                           "(default: the overlap)")
    new.add_argument("--taxonomy", default="", help="taxonomy name (default: GoEmotions)")
    new.add_argument("--guidelines", default="", help="a text file shown beside each item")
    new.add_argument("--hide-suggestions", action="store_true", help="do not show the teacher's labels")
    items = new.add_argument_group("items (as on the Review page)")
    items.add_argument("--ids", default="", help="example ids, comma-separated")
    items.add_argument("--top-label-issues", type=int, default=0, help="the N examples with the highest label_issue")
    items.add_argument("--per-emotion", type=int, default=None, help="stratified: N examples per present emotion")
    items.add_argument("--run", type=int, default=None, dest="run_id", help="generation run id")
    items.add_argument("--kind", choices=["contextless", "contextual", "imported"], default=None)
    items.add_argument("--label", default=None, help="teacher label present")
    items.add_argument("--limit", type=int, default=None, help="at most this many items")
    items.add_argument("--seed", type=int, default=0)
    items.add_argument("--group-by", choices=["character_emotion", "emotion"], default="character_emotion",
                       help="diversity groups")
    items.add_argument("--group-size", type=int, default=5, help="utterances per diversity group")
    new.add_argument("--job", action="store_true", help="let the worker choose the items (large selections)")
    new.set_defaults(run=cmd_campaign_create)

    preset = verbs.add_parser("preset", help="the Emo Pillars evaluation: verification, rewrite, "
                                             "personalization and diversity campaigns in one go")
    preset.add_argument("--annotators", required=True, help="comma-separated usernames (at least 3)")
    preset.add_argument("--items", type=int, default=200, help="items per campaign (paper: 200)")
    preset.add_argument("--neutral-share", type=float, default=0.10, help="share of neutral verification items")
    preset.add_argument("--run", type=int, default=None, dest="run_id", help="generation run id (default: all)")
    preset.add_argument("--taxonomy", default="", help="taxonomy name (default: GoEmotions)")
    preset.add_argument("--seed", type=int, default=0)
    preset.set_defaults(run=cmd_campaign_preset)

    lst = verbs.add_parser("list", help="list the campaigns")
    lst.set_defaults(run=cmd_campaign_list)

    res = verbs.add_parser("results", help="every answer of a campaign as CSV (or its agreement figures)")
    res.add_argument("campaign", type=int, help="campaign id (see `campaign list`)")
    res.add_argument("--agreement", action="store_true", help="the agreement figures instead of the answers")
    res.add_argument("--out", default="", help="file to write (default: standard output)")
    res.set_defaults(run=cmd_campaign_results)
FORCE_HELP = ("write into a non-empty folder, replacing only the files an earlier EmoForge export wrote there "
              "(listed in its .emoforge-manifest.json); any other file it would overwrite stops the export")


def build_parser() -> argparse.ArgumentParser:
    from core.datasets.splits import default_ratios_text

    parser = argparse.ArgumentParser(prog="python -m core.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", default=os.environ.get("EMOFORGE_USER", "admin"), help="acting user")
    sub = parser.add_subparsers(dest="command", required=True)

    imp = sub.add_parser("import", help="import story files (.txt, .csv, .jsonl) into a corpus")
    imp.add_argument("files", nargs="+")
    imp.add_argument("--corpus", required=True, help="corpus name (created when new)")
    imp.add_argument("--description", default="")
    imp.add_argument("--job", action="store_true", help="queue for the worker instead of importing now")
    imp.set_defaults(run=cmd_import)

    gen = sub.add_parser("generate", help="queue an Emo Pillars generation run on a sample of a corpus")
    gen.add_argument("--corpus", required=True)
    gen.add_argument("--taxonomy", default="GoEmotions")
    gen.add_argument("--stories", type=int, default=5, help="random sample of this many stories")
    gen.add_argument("--preset", choices=["paper", "balanced"], default="paper",
                     help="paper: Emo Pillars as published (default); balanced: one steered call per utterance")
    gen.add_argument("--characters", type=int, default=None, help="characters per story (preset: 15 / 3)")
    gen.add_argument("--emotional", type=int, default=None, help="emotional utterances per character (8)")
    gen.add_argument("--neutral", type=int, default=None, help="neutral utterances per character (2)")
    gen.add_argument("--context-share", dest="context_share", type=float, default=None,
                     help="share of the utterances that get a context (preset: 1/3 / 1)")
    gen.add_argument("--repetition-penalty", dest="repetition_penalty", type=float, default=None)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--name", default="")
    gen.set_defaults(run=cmd_generate)

    desc = sub.add_parser("describe", help="queue teacher descriptors (and labels) for imported texts or a run's examples")
    desc.add_argument("source", nargs="?", default="", help="the imported set's name")
    desc.add_argument("--run", type=int, default=None, help="describe a generation run's examples instead")
    desc.add_argument("--steps", default="describe,text_labels",
                      help="describe (free-text descriptors), text_labels (taxonomy scores), or both")
    desc.add_argument("--taxonomy", default="GoEmotions")
    desc.add_argument("--limit", type=int, default=None)
    desc.set_defaults(run=cmd_describe)

    lst = sub.add_parser("jobs", help="list recent jobs")
    lst.add_argument("--limit", type=int, default=20)
    lst.set_defaults(run=cmd_jobs)

    exp = sub.add_parser("export", help="write a dataset version (all formats and its card) to a folder")
    exp.add_argument("version", type=int, help="dataset version id (see the Export page)")
    exp.add_argument("--out", required=True, help="a new or empty folder to write into")
    exp.add_argument("--formats", default="", help="comma-separated: jsonl,csv,parquet,hf_datasets,goemotions_tsv")
    exp.add_argument("--zip", action="store_true", help="also write a zip of the export inside the folder")
    exp.add_argument("--force", action="store_true", help=FORCE_HELP)
    exp.set_defaults(run=cmd_export)

    from core.train.classifier import ClassifierConfig

    defaults = ClassifierConfig()  # the settings bench.goemotions measured
    trn = sub.add_parser("train", help="queue a classifier training run on a dataset version")
    trn.add_argument("version", type=int, help="dataset version id")
    trn.add_argument("--epochs", type=float, default=defaults.epochs)
    trn.add_argument("--lr", type=float, default=defaults.learning_rate, help="encoder learning rate")
    trn.add_argument("--head-lr", type=float, default=defaults.head_learning_rate, help="head learning rate")
    trn.add_argument("--batch-size", type=int, default=defaults.batch_size)
    trn.add_argument("--max-length", type=int, default=defaults.max_length)
    trn.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: the epochs decide)")
    trn.add_argument("--pooling", choices=["mean", "cls"], default=defaults.pooling)
    trn.add_argument("--pos-weight", choices=["none", "sqrt", "linear"], default=defaults.pos_weight)
    trn.add_argument("--soft-labels", action="store_true", help="BCE on the frozen scores")
    trn.add_argument("--per-label-thresholds", action="store_true")
    trn.add_argument("--train-embeddings", dest="freeze_embeddings", action="store_false",
                     default=defaults.freeze_embeddings, help="also train the word embeddings (frozen by default)")
    trn.add_argument("--freeze-embeddings", dest="freeze_embeddings", action="store_true",
                     help=argparse.SUPPRESS)  # the default now; still accepted
    trn.add_argument("--precision", choices=["auto", "fp32", "bf16"], default=defaults.precision)
    trn.add_argument("--base-model", default="", help="a Hugging Face encoder folder (default: all-MiniLM-L6-v2)")
    trn.add_argument("--from-model", type=int, default=None,
                     help="continue from a registered model's weights (its head too when the label sets match)")
    trn.add_argument("--seed", type=int, default=defaults.seed)
    trn.add_argument("--name", default="", help="name of the registered model")
    trn.set_defaults(run=cmd_train)

    iss = sub.add_parser("label-issues", help="queue cross-validated label-issue scores (cleanlab) of a version")
    iss.add_argument("version", type=int)
    iss.add_argument("--folds", type=int, default=5)
    iss.add_argument("--epochs", type=float, default=2.0)
    iss.add_argument("--max-steps", type=int, default=0)
    iss.set_defaults(run=cmd_label_issues)

    mdl = sub.add_parser("models", help="list the registered models")
    mdl.set_defaults(run=cmd_models)

    exm = sub.add_parser("export-model", help="write a registered model as a Hugging Face model folder")
    exm.add_argument("model", type=int, help="model id (see `models`)")
    exm.add_argument("--out", required=True, help="a new or empty folder to write into")
    exm.add_argument("--force", action="store_true", help=FORCE_HELP)
    exm.set_defaults(run=cmd_export_model)

    from core.train.contrastive import ContrastiveConfig

    zs_defaults = ContrastiveConfig()  # one set of defaults: the Playground's form and bench.zeroshot read it too
    zs = sub.add_parser("train-zeroshot", help="queue a contrastive (zero-shot) training run on a dataset version")
    zs.add_argument("version", type=int, help="dataset version id")
    zs.add_argument("--mode", choices=["distill", "labels"], default="distill",
                    help="distill: the teacher's descriptors only, no label read (default); labels: the version's labels")
    zs.add_argument("--epochs", type=float, default=zs_defaults.epochs)
    zs.add_argument("--steps", type=int, default=zs_defaults.max_steps,
                    help="stop after this many steps (0: the epochs decide)")
    zs.add_argument("--lr", type=float, default=zs_defaults.learning_rate)
    zs.add_argument("--batch-size", type=int, default=zs_defaults.batch_size)
    zs.add_argument("--base-model", default="", help="encoder folder (default: the bundled all-MiniLM-L6-v2)")
    zs.add_argument("--seed", type=int, default=zs_defaults.seed)
    zs.add_argument("--wise-alpha", type=float, default=zs_defaults.wise_alpha,
                    help="share of trained weights kept, the rest from the base encoder (WiSE-FT; 1.0: all trained)")
    zs.add_argument("--name", default="", help="model name in the registry")
    zs.set_defaults(run=cmd_train_zeroshot)

    ev = sub.add_parser("evaluate", help="queue the evaluation of registered models on built-in sets or versions")
    ev.add_argument("models", type=int, nargs="+", help="model ids (see `models`)")
    ev.add_argument("--set", action="append", choices=["goemotions", "goemotions-ekman", "goemotions-sentiment",
                                                       "emotion6", "semeval-ec"], help="a built-in set (repeat)")
    ev.add_argument("--version", type=int, action="append", help="a dataset version id (repeat)")
    ev.add_argument("--split", default="", help="split (default: test; dev for semeval-ec)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N texts of each set")
    ev.add_argument("--per-label-thresholds", action="store_true", help="classifiers: per-label thresholds")
    ev.set_defaults(run=cmd_evaluate)

    bl = sub.add_parser("baselines", help="queue the embedding and NRC baselines, or the teacher's zero-shot labels")
    bl.add_argument("--teacher", choices=["goemotions", "goemotions-ekman", "goemotions-sentiment", "emotion6",
                                          "semeval-ec"], help="label this built-in set with the teacher LLM")
    bl.add_argument("--limit", type=int, default=0, help="texts the teacher labels (0: the whole set)")
    bl.set_defaults(run=cmd_baselines)

    lab = sub.add_parser("import-labelled", help="import a labelled data set (file or `datasets` folder)")
    lab.add_argument("path", help="GoEmotions TSV, CSV / TSV / JSONL file, or a folder saved by `datasets`")
    lab.add_argument("--source", required=True, help="the data set's name")
    lab.add_argument("--taxonomy", default="GoEmotions")
    lab.add_argument("--evaluation", action="store_true", help="an evaluation set (kept out of training versions)")
    lab.add_argument("--licence", default="")
    lab.add_argument("--format", choices=["auto", "goemotions", "csv", "tsv", "jsonl"], default="auto")
    lab.add_argument("--text-column", default="text", help="`datasets` folders: the text column")
    lab.add_argument("--label-column", default="", help="`datasets` folders: the label column")
    lab.add_argument("--job", action="store_true", help="check the file now, let the worker store it")
    lab.set_defaults(run=cmd_import_labelled)

    frz = sub.add_parser("freeze", help="freeze the current labels of a selection into a dataset version")
    frz.add_argument("name", help="version name")
    frz.add_argument("--kind", action="append", choices=["contextless", "contextual", "imported"], help="(repeat)")
    frz.add_argument("--status", action="append", choices=["pending", "accepted", "rejected", "evaluation"],
                     help="(repeat; default: every status but rejected and evaluation)")
    frz.add_argument("--source", action="append", help="an imported data set (repeat)")
    frz.add_argument("--label", action="append", help="a current label, any of (repeat)")
    frz.add_argument("--filter", default="", help='any Curate filter as JSON, e.g. \'{"score_min": 0.5}\'')
    frz.add_argument("--taxonomy", default="", help="taxonomy name (default: the examples' own)")
    frz.add_argument("--ratios", default="", help=f"train,dev,test shares (default: {default_ratios_text()})")
    frz.add_argument("--seed", type=int, default=None, help="split seed (default: the Export page's)")
    frz.add_argument("--licence", default="")
    frz.add_argument("--description", default="", help="for the dataset card")
    frz.add_argument("--job", action="store_true", help="let the worker freeze it (large selections)")
    frz.set_defaults(run=cmd_freeze)

    _add_campaign_parsers(sub)

    users = sub.add_parser("users", help="manage users").add_subparsers(dest="users_command", required=True)
    add = users.add_parser("add", help="add a user (password from EMOFORGE_NEW_PASSWORD or a prompt)")
    add.add_argument("username")
    add.add_argument("--role", choices=[r.value for r in auth.Role], default="annotator")
    add.set_defaults(run=cmd_users_add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(_actor(args.user), args)
    except (auth.AuthError, auth.PermissionDenied, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
