"""Export at scale: `python -m bench.export [--examples N]` (a few minutes on 2 CPU cores).

1. A fresh SQLite database gets 400,000 synthetic examples (context-less and contextual, in 20,000
   stories, 1-3 teacher labels each over GoEmotions with a skewed distribution, some relabelled) —
   setup, not timed.
2. Timed: freezing them into a dataset version (current labels, grouped multi-label iterative
   stratification, members stored) and exporting every format with the card
   (JSONL, CSV, Parquet, `datasets` folder, GoEmotions TSV). export_all_formats_s = both; the zip
   the browser downloads is timed on its own line, not in that figure.
3. Timed: near-duplicate clusters among 100,000 texts given their embeddings (384-d, like MiniLM;
   5,000 planted clusters of 2-4 near-copies), with the faiss index and connected components.
The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_EXAMPLES = 400_000
N_NEAR = 100_000
WORDS = ("the sea old door letter night bright quiet storm garden never always why laugh cry run home "
         "winter friend broken lost found again tomorrow mother father key light dark song road").split()


def synthetic_rows(n: int, taxonomy_id: int, label_ids: list[int], story_ids: list[int], seed: int = 0):
    rng = np.random.default_rng(seed)
    weights = np.array([1.0 / (i + 1) ** 0.8 for i in range(len(label_ids))])
    weights /= weights.sum()
    words = rng.integers(0, len(WORDS), size=(n, 9))
    examples, suggestions = [], []
    for i in range(n):
        contextual = i % 4 == 3
        examples.append({
            "id": i + 1, "kind": "contextual" if contextual else "contextless",
            "text": f"{' '.join(WORDS[w] for w in words[i])} #{i}",
            "context": f"Scene {i // 20}: a short context." if contextual else None,
            "story_id": story_ids[i // 20], "parent_id": i if contextual else None, "taxonomy_id": taxonomy_id,
            "status": "accepted" if i % 3 else "pending", "stage": "rewrite" if contextual else "utterances",
            "source": "", "meta": {},
        })
        picked = set(rng.choice(len(label_ids), size=int(rng.integers(1, 4)), p=weights).tolist())
        for j in () if contextual else picked:  # a contextual variant shows its parent's (core.labels.shown_by)
            suggestions.append({"example_id": i + 1, "label_id": label_ids[j],
                                "score": float(0.3 + 0.7 * rng.random()), "agent": "bench-teacher"})
    return examples, suggestions


def populate(n: int) -> None:
    from sqlalchemy import insert, select

    from core.taxonomy import seed_defaults
    from db.models import Corpus, CurationDecision, Example, Label, Story, Suggestion, Taxonomy
    from db.session import write_session

    seed_defaults()
    with write_session() as session:
        taxonomy_id = session.scalar(select(Taxonomy.id).where(Taxonomy.name == "GoEmotions"))
        label_ids = list(session.scalars(select(Label.id).where(Label.taxonomy_id == taxonomy_id)
                                         .order_by(Label.position)))
        corpus = Corpus(name="bench")
        session.add(corpus)
        session.flush()
        stories = [{"id": s + 1, "corpus_id": corpus.id, "position": s, "title": f"S{s}", "text": "x",
                    "content_hash": f"h{s}", "word_count": 1, "meta": {}} for s in range((n + 19) // 20)]
        session.execute(insert(Story), stories)
        examples, suggestions = synthetic_rows(n, taxonomy_id, label_ids, [s["id"] for s in stories])
        for start in range(0, n, 20_000):
            session.execute(insert(Example), examples[start:start + 20_000])
        for start in range(0, len(suggestions), 50_000):
            session.execute(insert(Suggestion), suggestions[start:start + 50_000])
        session.execute(insert(CurationDecision), [
            {"example_id": i, "action": "relabel", "labels": ["joy"], "previous": {}, "batch_id": "bench"}
            for i in range(1, n + 1, 50)])


def near_dup_embeddings(n: int, dim: int = 384, clusters: int = 5_000, seed: int = 1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    planted = []
    row = 0
    for c in range(clusters):
        size = 2 + c % 3
        members = list(range(row, row + size))
        for m in members[1:]:
            x[m] = x[members[0]] + rng.normal(scale=0.01, size=dim).astype("float32")
        planted.append(members)
        row += size
    return x, planted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__)
    parser.add_argument("--examples", type=int, default=N_EXAMPLES)
    parser.add_argument("--near", type=int, default=N_NEAR)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="emoforge-bench-export-"))
    os.environ["EMOFORGE_HOME"] = str(workdir)
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.db'}"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from core import auth, owned_files
    from core.curate import signals
    from core.datasets import export, versions
    from db.migrate import upgrade

    upgrade(os.environ["DATABASE_URL"])
    auth.ensure_admin("bench", "bench-pass-123")
    actor = auth.authenticate("bench", "bench-pass-123")
    started = time.perf_counter()
    populate(args.examples)
    print(f"setup: {args.examples:,} examples stored in {time.perf_counter() - started:.1f} s", flush=True)

    started = time.perf_counter()
    version = versions.freeze(actor, "bench")
    freeze_s = time.perf_counter() - started
    print(f"freeze (labels + split + members): {freeze_s:.1f} s; splits {version.split_counts}", flush=True)
    started = time.perf_counter()
    result = export.export_version(actor, version.id, workdir / "export", make_zip=False)
    export_s = time.perf_counter() - started
    sizes = {fmt: sum((workdir / "export" / f).stat().st_size for f in files) for fmt, files in result.files.items()}
    print(f"export of all formats + card: {export_s:.1f} s; bytes per format {sizes}", flush=True)
    started = time.perf_counter()
    zip_path = workdir / "export.zip"
    export.write_zip(workdir / "export", owned_files.manifest_files(workdir / "export"), zip_path)
    print(f"zip for the browser download (not in export_all_formats_s): {time.perf_counter() - started:.1f} s, "
          f"{Path(zip_path).stat().st_size:,} bytes", flush=True)

    x, planted = near_dup_embeddings(args.near)
    started = time.perf_counter()
    labels = signals.near_duplicate_labels(x, threshold=signals.DEFAULT_NEAR_THRESHOLD)
    clusters = signals.clusters_from_labels(list(range(args.near)), labels)
    near_s = time.perf_counter() - started
    found = sum(1 for members in planted if len({labels[m] for m in members}) == 1)
    print(f"near-duplicates among {args.near:,}: {near_s:.1f} s; {len(set(clusters.values())):,} clusters, "
          f"{found:,}/{len(planted):,} planted clusters recovered whole", flush=True)

    print(json.dumps({"bench": "export", "examples": args.examples,
                      "export_all_formats_s": round(freeze_s + export_s, 2), "near_dup_100k_s": round(near_s, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
