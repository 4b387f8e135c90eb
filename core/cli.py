"""`python -m core.cli`: the long operations for scripts, with the same rules as the browser.

    python -m core.cli --user admin import stories.jsonl --corpus "My stories" [--job]
    python -m core.cli --user admin generate --corpus "My stories" --stories 5 [--seed 1]
    python -m core.cli --user admin describe goemotions-dev --limit 200
    python -m core.cli --user admin jobs
    python -m core.cli --user admin users add ann --role annotator
    python -m core.cli --user admin export 3 --out ./my-dataset [--formats jsonl,parquet]
    python -m core.cli --user admin train 3 --epochs 3 --lr 8e-5 [--per-label-thresholds]
    python -m core.cli --user admin label-issues 3 --folds 5
    python -m core.cli --user admin models
    python -m core.cli --user admin export-model 1 --out ./my-model
    python -m core.cli --user admin train-zeroshot 3 --epochs 1 [--steps 600]
    python -m core.cli --user admin baselines [--teacher emotion6 --limit 100]
    python -m core.cli --user admin evaluate 1 2 --set emotion6 --set semeval-ec [--version 3 --split test]

The acting user's password comes from EMOFORGE_PASSWORD (or a prompt), so every command is
checked against that user's role exactly as in the app.
"""

from __future__ import annotations

import argparse
import getpass
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
    estimate = pipeline.estimate_run(planned)
    print(f"{estimate.stories} stories ({pipeline.PRESETS[args.preset]['title']}): {estimate.calls} LLM calls, "
          f"about {estimate.tokens} tokens")
    run_id = pipeline.create_run(actor, planned, name=args.name)
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
    result = export.export_version(actor, args.version, args.out, formats, make_zip=args.zip)
    print(f"version {args.version}: {result.rows:,} rows written to {result.folder} ({', '.join(result.files)})"
          + (f"; zip {result.zip_path}" if result.zip_path else ""))
    return 0


def cmd_train(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.train import jobs as train_jobs

    settings = {"epochs": args.epochs, "learning_rate": args.lr, "batch_size": args.batch_size,
                "max_length": args.max_length, "pooling": args.pooling, "pos_weight": args.pos_weight,
                "soft_labels": args.soft_labels, "per_label_thresholds": args.per_label_thresholds,
                "base_model": args.base_model, "seed": args.seed, "max_steps": args.max_steps,
                "freeze_embeddings": args.freeze_embeddings, "precision": args.precision}
    run_id = train_jobs.start_classifier_run(actor, args.version, settings, model_name=args.name)
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

    auth.require_admin(actor)
    folder = registry.export_model(args.model, args.out)
    print(f"model {args.model} written to {folder} (a Hugging Face model folder)")
    return 0


def cmd_train_zeroshot(actor: auth.Actor, args: argparse.Namespace) -> int:
    from core.train import contrastive

    settings = {"epochs": args.epochs, "max_steps": args.steps, "learning_rate": args.lr,
                "batch_size": args.batch_size, "base_model": args.base_model, "seed": args.seed,
                "wise_alpha": args.wise_alpha}
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
        job_id = baselines.enqueue_teacher_baseline(actor, spec, limit=args.limit)
        print(f"job {job_id} queued: the teacher's zero-shot labels on {args.limit} texts of {args.teacher}")
    else:
        job_id = baselines.enqueue_register_baselines(actor)
        print(f"job {job_id} queued: register the embedding and NRC baselines")
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    exp.add_argument("--out", required=True, help="folder to write into")
    exp.add_argument("--formats", default="", help="comma-separated: jsonl,csv,parquet,hf_datasets,goemotions_tsv")
    exp.add_argument("--zip", action="store_true", help="also write <out>.zip")
    exp.set_defaults(run=cmd_export)

    trn = sub.add_parser("train", help="queue a classifier training run on a dataset version")
    trn.add_argument("version", type=int, help="dataset version id")
    trn.add_argument("--epochs", type=float, default=3.0)
    trn.add_argument("--lr", type=float, default=8e-5, help="encoder learning rate")
    trn.add_argument("--batch-size", type=int, default=32)
    trn.add_argument("--max-length", type=int, default=64)
    trn.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: the epochs decide)")
    trn.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    trn.add_argument("--pos-weight", choices=["none", "sqrt", "linear"], default="sqrt")
    trn.add_argument("--soft-labels", action="store_true", help="BCE on the frozen scores")
    trn.add_argument("--per-label-thresholds", action="store_true")
    trn.add_argument("--freeze-embeddings", action="store_true", help="keep the word embeddings fixed (faster)")
    trn.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    trn.add_argument("--base-model", default="", help="a Hugging Face encoder folder (default: all-MiniLM-L6-v2)")
    trn.add_argument("--seed", type=int, default=13)
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
    exm.add_argument("--out", required=True)
    exm.set_defaults(run=cmd_export_model)

    zs = sub.add_parser("train-zeroshot", help="queue a contrastive (zero-shot) training run on a dataset version")
    zs.add_argument("version", type=int, help="dataset version id")
    zs.add_argument("--epochs", type=float, default=1.0)
    zs.add_argument("--steps", type=int, default=0, help="stop after this many steps (0: the epochs decide)")
    zs.add_argument("--lr", type=float, default=5e-5)
    zs.add_argument("--batch-size", type=int, default=32)
    zs.add_argument("--base-model", default="", help="encoder folder (default: the bundled all-MiniLM-L6-v2)")
    zs.add_argument("--seed", type=int, default=13)
    zs.add_argument("--wise-alpha", type=float, default=1.0,
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
    bl.add_argument("--limit", type=int, default=100, help="texts the teacher labels")
    bl.set_defaults(run=cmd_baselines)

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
