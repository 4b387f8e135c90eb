"""The dataset card (README.md) of an export: what is in it, where it came from, how it was checked."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from itertools import combinations

import numpy as np
from sqlalchemy import func, select

from core.datasets.splits import SPLITS
from db.models import (
    CampaignItem, DatasetMember, DatasetVersion, Example, GenerationRun, Label, PromptTemplate, Question, Response,
    ResponseStatus, Taxonomy, User,
)
from db.session import read_session


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def review_statistics(session, version_id: int, label_names: list[str]) -> dict:
    """Submitted responses about the version's examples: counts, mean ratings, agreement on labels."""
    ratings: dict[str, list[float]] = defaultdict(list)
    verdicts: dict[int, dict[int, set[str]]] = defaultdict(dict)  # example -> user -> labels
    responses, reviewers, reviewed = 0, set(), set()
    query = (select(CampaignItem.example_id, Response.user_id, Question.kind, Question.name, Response.value)
             .join(DatasetMember, DatasetMember.example_id == CampaignItem.example_id)
             .join(Response, Response.item_id == CampaignItem.id)
             .join(Question, Question.id == Response.question_id)
             .where(DatasetMember.version_id == version_id, Response.status == ResponseStatus.submitted))
    for example_id, user_id, kind, qname, value in session.execute(query).tuples():
        responses += 1
        reviewers.add(user_id)
        reviewed.add(example_id)
        if kind == "rating" and isinstance(value, (int, float)):
            ratings[qname].append(float(value))
        elif kind == "multi_label" and isinstance(value, list):
            verdicts[example_id][user_id] = {str(v) for v in value}
    stats = {"submitted_responses": responses, "reviewers": len(reviewers), "reviewed_examples": len(reviewed),
             "mean_ratings": {q: round(float(np.mean(v)), 3) for q, v in sorted(ratings.items())}}
    stats.update(_agreement(verdicts, label_names))
    return stats


def _agreement(verdicts: dict[int, dict[int, set[str]]], label_names: list[str]) -> dict:
    multi = {e: v for e, v in verdicts.items() if len(v) >= 2}
    if not multi:
        return {"verified_by_two_or_more": 0}
    import krippendorff

    users = sorted({u for v in multi.values() for u in v})
    row = {u: i for i, u in enumerate(users)}
    units = [(e, label) for e in sorted(multi) for label in label_names]
    data = np.full((len(users), len(units)), np.nan)
    for j, (e, label) in enumerate(units):
        for u, chosen in multi[e].items():
            data[row[u], j] = 1.0 if label in chosen else 0.0
    jaccards = [len(a & b) / len(a | b) if a | b else 1.0
                for v in multi.values() for a, b in combinations(v.values(), 2)]
    try:
        alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    except (ValueError, ZeroDivisionError):
        alpha = float("nan")
    return {"verified_by_two_or_more": len(multi), "krippendorff_alpha_labels": round(alpha, 4),
            "mean_pairwise_jaccard": round(float(np.mean(jaccards)), 4)}


def generation_settings(session, version_id: int) -> tuple[list[dict], Counter, dict[str, str]]:
    """(the generation runs, template stage/version counts, imported source -> licence), by SQL aggregates."""
    member = DatasetMember.version_id == version_id
    joined = select(Example).join(DatasetMember, DatasetMember.example_id == Example.id).where(member).subquery()
    run_counts = dict(session.execute(select(joined.c.run_id, func.count()).where(joined.c.run_id.is_not(None))
                                      .group_by(joined.c.run_id)).tuples().all())
    template_counts = dict(session.execute(select(joined.c.template_id, func.count()).where(
        joined.c.template_id.is_not(None)).group_by(joined.c.template_id)).tuples().all())
    first_of_source = (select(func.min(joined.c.id)).where(joined.c.kind == "imported")
                       .group_by(joined.c.source))
    sources = {source: (meta or {}).get("licence", "") or "not given" for source, meta in session.execute(
        select(Example.source, Example.meta).where(Example.id.in_(first_of_source))).tuples()}
    runs = [{"id": r.id, "name": r.name, "engine": r.engine, "model": r.model, "sampling": r.sampling,
             "config": r.config, "template_versions": r.template_versions, "examples": run_counts[r.id]}
            for r in session.scalars(select(GenerationRun).where(GenerationRun.id.in_(list(run_counts))))]
    versions = Counter()
    for t in session.scalars(select(PromptTemplate).where(PromptTemplate.id.in_(list(template_counts)))):
        versions[f"{t.stage} v{t.version}"] += template_counts[t.id]
    return runs, versions, sources


def dataset_card(version_id: int, rows, files: dict[str, list[str]]) -> str:
    """The README.md of an export (`rows`: core.datasets.export.VersionRows)."""
    with read_session() as session:
        version = session.get(DatasetVersion, version_id)
        taxonomy = session.get(Taxonomy, version.taxonomy_id) if version.taxonomy_id else None
        labels = list(session.execute(select(Label.name, Label.description).where(
            Label.taxonomy_id == version.taxonomy_id).order_by(Label.position)).tuples())
        creator = session.scalar(select(User.username).where(User.id == version.created_by_id))
        runs, templates, sources = generation_settings(session, version_id)
        review = review_statistics(session, version_id, [n for n, _ in labels])
    config = dict(version.split_config or {})
    licence = config.get("licence") or (", ".join(sorted(set(sources.values()))) if sources else "") or "unspecified"
    split_counts = {s: b - a for s, (a, b) in rows.bounds.items()}
    per_label = {s: Counter() for s in SPLITS} | rows.labels_per_split()
    kinds_per_split = {s: Counter() for s in SPLITS} | rows.kinds_per_split()
    out = [
        "---",
        f"license: {licence}",
        "language:\n- en",
        "task_categories:\n- text-classification",
        "task_ids:\n- multi-label-classification",
        f"pretty_name: {json.dumps(version.name)}",
        f"size_categories:\n- {_size_category(len(rows))}",
        "tags:\n- emotion\n- emoforge",
        "---",
        "",
        f"# {version.name}",
        "",
        config.get("description") or "An emotion-classification data set built with EmoForge.",
        "",
        f"- Dataset version: {version.id}, content hash `{version.content_hash}`",
        f"- Created: {version.created_at:%Y-%m-%d %H:%M UTC} by {creator or 'unknown'}",
        f"- Examples: {len(rows):,}" + (" (evaluation set)" if version.is_evaluation_set else ""),
        f"- Licence: {licence}",
        "",
        "## Taxonomy",
        "",
        f"{taxonomy.name if taxonomy else 'unknown'} ({len(labels)} labels, multi-label). "
        "An emotion is a label of an example when its teacher score reached the presence threshold "
        "or a curator set it; `scores` keeps the soft scores.",
        "",
        _table(["#", "label", "description"], [[i, n, d] for i, (n, d) in enumerate(labels)]),
        "",
        "## Splits",
        "",
        _table(["split", "examples", *sorted({k for c in kinds_per_split.values() for k in c})],
               [[s, split_counts.get(s, 0), *[kinds_per_split[s].get(k, 0)
                                               for k in sorted({k for c in kinds_per_split.values() for k in c})]]
                for s in SPLITS]),
        "",
        f"Split configuration: ratios {json.dumps(config.get('ratios', {}))}, seed {config.get('seed', '-')}, "
        f"{config.get('stratification', 'as imported')}; kept together: "
        f"{', '.join(config.get('grouping', [])) or 'n/a'} (no story or near-duplicate cluster spans two splits; "
        f"{config.get('duplicate_cluster_members', 0):,} examples were in a duplicate cluster when frozen).",
        *_empty_split_warning(config.get("ratios", {}), split_counts),
        "",
        "## Labels per split",
        "",
        _table(["label", *SPLITS, "all"], [[n, *[per_label[s].get(n, 0) for s in SPLITS],
                                           sum(per_label[s].get(n, 0) for s in SPLITS)] for n, _ in labels]),
        "",
        "## Generation settings",
        "",
    ]
    if runs:
        for run in runs:
            out.append(f"- Run {run['id']} `{run['name']}`: {run['examples']:,} examples, engine {run['engine']}, "
                       f"model `{run['model']}`, sampling `{json.dumps(run['sampling'])}`, "
                       f"template versions `{json.dumps(run['template_versions'])}`, "
                       f"config `{json.dumps(run['config'])}`")
    else:
        out.append("- No generated examples (no generation run).")
    if templates:
        out.append("- Prompt templates: " + ", ".join(f"{k} ({v:,} examples)" for k, v in sorted(templates.items())))
    if sources:
        out.append("- Imported data sets: " + ", ".join(f"{s} (licence: {l})" for s, l in sorted(sources.items())))
    out += [
        "",
        "## Review",
        "",
        f"- Submitted responses: {review['submitted_responses']:,} from {review['reviewers']} reviewer(s) "
        f"on {review['reviewed_examples']:,} examples",
    ]
    if review["mean_ratings"]:
        out.append("- Mean ratings: " + ", ".join(f"{q} {v}" for q, v in review["mean_ratings"].items()))
    if review.get("verified_by_two_or_more"):
        out.append(f"- Label verification by two or more reviewers: {review['verified_by_two_or_more']:,} examples, "
                   f"Krippendorff's alpha {review['krippendorff_alpha_labels']}, "
                   f"mean pairwise Jaccard {review['mean_pairwise_jaccard']}")
    else:
        out.append("- Agreement: no example was verified by two or more reviewers.")
    out += [
        "",
        "## Files",
        "",
        "Columns: id, split, kind (contextless / contextual / imported), text (the utterance), context (cleaned), "
        "character (description), story_id, source, labels (names; ids into the taxonomy order in the "
        "`datasets` and TSV formats), scores (label -> soft score: an object in JSONL, a struct with one field "
        "per label in Parquet and `datasets`, null where the teacher gave none; JSON text in CSV), parent_id (the "
        "context-less example a contextual one was made from), variant, original_utterance, raw_context (before "
        "emotion words were cleaned out), character_name, character_description, target_emotion (the emotion "
        "generation was steered to, where one was asked; empty where the teacher chose), oot_names (the teacher's "
        "names outside the taxonomy).",
        "",
        "### Rebuilding each variant",
        "",
        "- `contextless`: `text` alone (the character's utterance, no context).",
        "- `original+context`: `context` + `text`, where `text` equals `original_utterance` (the parent's own "
        "utterance after the cleaned context).",
        "- `rewritten+context`: `context` + `text`, where `text` is the utterance rewritten so its emotion needs "
        "the context; `original_utterance` holds the parent's text, `parent_id` links the two.",
        "- Either contextual variant with the raw context: swap `context` for `raw_context`. A classifier input as "
        "in Emo Pillars: first segment `context` + ' ' + `character_description`, second segment `text`.",
        "",
    ]
    out += [f"- `{fmt}`: " + ", ".join(f"`{f}`" for f in names[:8]) + (" …" if len(names) > 8 else "")
            for fmt, names in files.items()]
    out += ["", "Load the `datasets` folder with `datasets.load_from_disk('hf_datasets')` and Parquet with "
            "`pandas.read_parquet('parquet/train.parquet')`.", ""]
    return "\n".join(out)


def _empty_split_warning(ratios: dict[str, float], split_counts: dict[str, int]) -> list[str]:
    """Say so when a split that was asked for got nothing: too few groups (stories, clusters) to deal out."""
    empty = [s for s in SPLITS if ratios.get(s, 0) > 0 and not split_counts.get(s, 0)]
    if not empty:
        return []
    return ["", f"**Warning:** {' and '.join(empty)} {'is' if len(empty) == 1 else 'are'} empty although asked for: "
                "the examples form too few groups that must stay together (stories, duplicate clusters) to fill "
                "every split. Add stories or use a separate evaluation set."]
