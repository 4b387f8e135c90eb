"""GoEmotions: `python -m bench.goemotions` trains the default student and reports test macro-F1.

The bundled all-MiniLM-L6-v2 (22M parameters) is fine-tuned on GoEmotions train (43,410 Reddit
comments, 28 labels) with EmoForge's classifier trainer (core.train.classifier, the code the worker
job runs): mean pooling, a sigmoid head whose bias starts at the label priors, BCE with positives
weighted by sqrt(negatives / positives) so that rare labels count for macro-F1, AdamW with a
higher learning rate for the head, linear warmup then linear decay, max length 64 with dynamic
padding and length-bucketed batches (comments average ~16 tokens), dev evaluation each epoch with
the best epoch kept. For speed on a CPU the word embeddings stay frozen (no gradient or optimizer
state for half of MiniLM's weights) and the training passes run under bfloat16 autocast where the
CPU has AVX512-BF16 (float32 elsewhere); evaluation is float32. One global threshold is swept from 0.05 to 0.95 on dev and test is reported
at it (per-label thresholds, also tuned on dev, are an extra field). CPU only, sized to end well
within 45 minutes on a 2-core machine: a training time budget stops early if the machine is slower.

Published reference: BERT-base (110M) 0.46 test macro-F1 (Demszky et al. 2020).
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

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "goemotions"

# The product defaults (core.train.classifier.ClassifierConfig: lr 1.2e-4, head 2e-3, frozen word embeddings,
# 4 epochs, mean pooling, sqrt(neg/pos) weighting...) plus what only the bench needs: per-label thresholds as an
# extra figure, sparser logs and a time budget.
BENCH_EXTRAS = {"per_label_thresholds": True, "log_every": 100, "time_budget_s": 36 * 60}


def read_split(name: str, labels: list[str], limit: int = 0, folder: Path = DATA):
    from core.datasets.readers import parse_goemotions
    from core.train.classifier import Split

    path = folder / f"{name}.tsv"
    records = parse_goemotions(path.name, path.read_text(encoding="utf-8"))
    if limit:
        records = [records[i] for i in np.random.default_rng(0).permutation(len(records))[:limit]]
    y = np.zeros((len(records), len(labels)), dtype=np.float32)
    for i, record in enumerate(records):
        for label in record.labels:
            y[i, labels.index(label)] = 1.0
    return Split([r.text for r in records], y)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.goemotions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-limit", type=int, default=0, help="a random subset of train (quick trials)")
    parser.add_argument("--eval-limit", type=int, default=0, help="a random subset of dev and test (quick trials)")
    parser.add_argument("--settings", default="{}", help="JSON overriding the classifier settings")
    parser.add_argument("--out", default="", help="folder for the run (default: a temporary one)")
    parser.add_argument("--data-dir", default="", help="folder holding goemotions/ (default: ../shared/data)")
    args = parser.parse_args(argv)
    folder = Path(args.data_dir) / "goemotions" if args.data_dir else DATA
    if not folder.is_dir():
        print(f"GoEmotions not found at {folder}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()

    from core.taxonomy import GOEMOTIONS_LABELS
    from core.train.classifier import ClassifierConfig, Hooks, train_classifier

    labels = [n for n, _ in GOEMOTIONS_LABELS]
    train = read_split("train", labels, args.train_limit, folder)
    dev = read_split("dev", labels, args.eval_limit, folder)
    test = read_split("test", labels, args.eval_limit, folder)
    config = ClassifierConfig.from_dict({**BENCH_EXTRAS, **json.loads(args.settings)})
    print(f"train {len(train):,} / dev {len(dev):,} / test {len(test):,}; settings {config.to_dict()}", flush=True)

    class Progress(Hooks):
        def on_log(self, step, epoch, split, values):
            shown = " ".join(f"{k}={v:.4f}" for k, v in values.items())
            print(f"[{(time.perf_counter() - started) / 60:5.1f} min] step {step} epoch {epoch:.2f} {split} {shown}",
                  flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-goemotions-") as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        result = train_classifier(labels, train, dev, out, config, Progress(), test=test, resume=False)
    minutes = (time.perf_counter() - started) / 60
    details = result.metrics["details"]
    worst = sorted(details["test"]["per_label"], key=lambda r: r["f1"])[:5]
    lowest = ", ".join(f"{r['label']} {r['f1']:.2f}" for r in worst)
    print(f"threshold {result.threshold} (dev macro-F1 {details['dev']['macro_f1']:.4f}); lowest test F1: {lowest}",
          flush=True)
    print(json.dumps({
        "bench": "goemotions", "model": "all-MiniLM-L6-v2",
        "test_macro_f1": round(details["test"]["macro_f1"], 4), "test_micro_f1": round(details["test"]["micro_f1"], 4),
        "train_examples_per_s": round(result.train_examples_per_s, 1), "minutes": round(minutes, 1),
        "threshold": result.threshold, "dev_macro_f1": round(details["dev"]["macro_f1"], 4),
        "test_macro_f1_per_label_thresholds": round(details["test_per_label_thresholds"]["macro_f1"], 4)
        if details.get("test_per_label_thresholds") else None,
        "epochs": round(result.epochs_done, 2), "stopped_early": result.stopped_early,
        "train_examples": len(train),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
