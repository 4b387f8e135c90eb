"""The contrastive-distillation path end to end: `python -m bench.distill`.

Measured (2026-12-02, 2 CPU cores shared with other jobs, load average 4-14): `--texts 2400 --attempts 1` took 36 min
wall, 29 min of it the bundled teacher (2,400 calls, about 210 output tokens/s), 6 min of training (213 steps) and
1 min of scoring. It ran with OMP_NUM_THREADS=1 VLLM_CPU_OMP_THREADS_BIND=nobind: under the same load, vLLM's default
binding of two threads to the two cores took 500 s for the first 256 calls (killed), one unbound thread 77-116 s per
128. The default 3 answers per text (re-asks) nearly doubles the teacher's calls with this tiny model (195 calls for
100 texts). A bigger teacher on a GPU server takes far less.

1. The teacher writes free-text emotion descriptors for --texts unlabelled GoEmotions train comments, asked as
   the pipeline registry's `describe` step asks them (core.pipeline.steps.describe: its default prompt and
   output schema, 2-5 words or short phrases per text with an intensity, no label list in the prompt; its
   content gates, with re-asks as the describe job does). Only the text column of the file is read: the labels
   are never read, not even parsed.
2. The bundled all-MiniLM-L6-v2 is trained in distill mode (core.train.contrastive: texts x descriptor phrases,
   sigmoid loss, learned temperature and bias) on those descriptors only.
3. Zero-shot on the 6-class "emotion" test set and SemEval-2018 E-c dev, against the untrained encoder, both
   with the same label wordings and the same a-priori decision rule (core.train.rules.DEFAULT_RULE for the
   multi-label E-c, the top label for emotion-6): no target label and no GoEmotions label tunes anything.

Teacher: the bundled SmolLM2-135M through vLLM in this process (`--engine vllm`, default), or any
OpenAI-compatible server: `--engine openai --base-url http://HOST:8000/v1 --model NAME [--api-key ...]`.

The last line is one JSON object: teacher_descriptor_calls, descriptor_tokens_per_s, emotion6_macro_f1,
emotion6_baseline_macro_f1, ec11_macro_f1, ec11_baseline_macro_f1 (and the run's sizes).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

def unlabelled_texts(path: Path, n: int, seed: int) -> list[str]:
    """n comments of GoEmotions train, the text column only (the label column is never read)."""
    with path.open(encoding="utf-8", newline="") as f:
        texts = [row[0] for row in csv.reader(f, delimiter="\t") if row and row[0].strip()]
    pick = np.random.default_rng(seed).permutation(len(texts))[:n]
    return [texts[i] for i in sorted(pick)]


def make_engine(args):
    from core.llm.engines import OpenAIEngine, VLLMEngine

    if args.engine == "openai":
        if not args.base_url or not args.model:
            raise SystemExit("--engine openai needs --base-url and --model")
        return OpenAIEngine(args.base_url, args.model, api_key=args.api_key or None,
                            max_concurrency=args.concurrency)
    model = args.model or os.environ.get("EMOFORGE_TEACHER_DIR") or str(Path("var/models/smollm2-135m-instruct"))
    return VLLMEngine(model, max_model_len=1024)


def describe(engine, texts: list[str], seed: int, attempts: int = 3) -> tuple[list[tuple[str, ...]], dict]:
    """Each text's descriptor phrases, and the call figures.

    The requests are the pipeline registry's `describe` step (core.pipeline.steps.describe) with its default
    prompt and output schema, as the describe job asks them; answers its content gates reject are asked again
    (up to `attempts` answers per text, like the job's validation_attempts), and the last answer is kept even
    when rejected, as the job stores it. Training gets each descriptor's text, as the product's loader reads
    the `descriptors` table (the intensity stays out of the phrase). No database is involved."""
    from core.llm.settings import EngineSettings
    from core.pipeline import steps as registry
    from core.pipeline.steps.base import StepContext, reask
    from core.pipeline.templates import TemplateView

    step = registry.get("describe")
    template = TemplateView(0, step.template_stage, 0, step.system_prompt, step.user_prompt, True)
    ctx = StepContext(None, None, None, [], {}, {step.template_stage: template}, engine,
                      EngineSettings().default_sampling(), seed)
    items = step.items(ctx, None, {"texts": list(enumerate(texts))})
    output = step.output(ctx)
    started = time.monotonic()
    answers: dict[int, tuple[dict, list[str]]] = {}
    current = {index: item.request for index, item in enumerate(items)}
    calls = tokens = failed = truncated = rejected = 0
    for attempt in range(attempts):
        if not current:
            break
        indices, requests = list(current), list(current.values())
        results = []
        for start in range(0, len(requests), 128):
            results += engine.generate(requests[start:start + 128])
            print(f"teacher{f' (re-ask {attempt})' if attempt else ''}: {min(start + 128, len(requests))}/"
                  f"{len(requests)} requests ({time.monotonic() - started:.0f} s)", flush=True)
        calls += len(requests)
        tokens += sum(r.completion_tokens for r in results)
        following = {}
        for index, request, result in zip(indices, requests, results):
            try:
                parsed = output.model_validate_json(result.text).model_dump(mode="json") if result.ok else None
            except ValueError:
                parsed = None
            if parsed is None:
                failed += 1  # no schema-valid answer: asked again as the job's validation does
                truncated += result.ok and result.finish_reason == "length"
                if attempt < attempts - 1:
                    following[index] = request
                continue
            reasons = step.gates(ctx, items[index], parsed)
            rejected += bool(reasons)
            if not reasons or attempt == attempts - 1:
                answers[index] = (parsed, reasons)
            else:
                following[index] = reask(request, result.text, reasons, engine)
        current = following
    seconds = time.monotonic() - started
    out = []
    for index in range(len(texts)):
        parsed, _ = answers.get(index, ({}, []))
        seen, phrases = set(), []
        for d in parsed.get("descriptors", []):
            phrase = " ".join(d["text"].split())
            if phrase and phrase.casefold() not in seen:
                seen.add(phrase.casefold())
                phrases.append(phrase)
        out.append(tuple(phrases))
    kept_rejected = sum(bool(reasons) for _, reasons in answers.values())
    return out, {"teacher_descriptor_calls": calls, "teacher_failed": failed, "teacher_failed_at_max_tokens": truncated,
                 "teacher_gate_rejections": rejected,
                 "kept_with_reason": kept_rejected, "texts_without_answer": len(texts) - len(answers),
                 "descriptor_tokens": tokens, "teacher_seconds": round(seconds, 1),
                 "descriptor_tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else 0.0}


def main(argv: list[str] | None = None) -> int:
    from core.train import contrastive as C
    from core.train import evaluate, external
    from core.train.baselines import EmbeddingBaseline
    from core.train.rules import DEFAULT_RULE, Rule

    parser = argparse.ArgumentParser(prog="python -m bench.distill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2000, help="unlabelled GoEmotions train texts the teacher describes")
    parser.add_argument("--steps", type=int, default=0, help="training steps (0: --epochs over the described texts)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--limit", type=int, default=0, help="score only the first N texts of each target set")
    parser.add_argument("--engine", choices=["vllm", "openai"], default="vllm")
    parser.add_argument("--base-url", default="", help="--engine openai: e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="", help="teacher model folder (vllm) or served model name (openai)")
    parser.add_argument("--api-key", default=os.environ.get("EMOFORGE_TEACHER_API_KEY", ""))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--attempts", type=int, default=3,
                        help="answers asked per text at most (re-asks on schema or gate failures); 3 as the describe "
                             "job's validation_attempts, 1 for no re-ask")
    parser.add_argument("--data-dir", default=None, help="folder with goemotions/, emotion_dairai/, semeval2018_ec/")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)

    base = external.data_dir(args.data_dir)
    present = external.available(args.data_dir)
    if not (base / "goemotions" / "train.tsv").exists() or not present["emotion6"] or not present["semeval-ec"]:
        print(f"data not found under {base}", file=sys.stderr)
        return 2
    started = time.monotonic()
    texts = unlabelled_texts(base / "goemotions" / "train.tsv", args.texts, args.seed)
    engine = make_engine(args)
    print(f"teacher {engine.name}:{engine.model} describes {len(texts):,} unlabelled texts", flush=True)
    phrases, calls = describe(engine, texts, args.seed, max(1, args.attempts))
    engine.close()
    examples = [C.TrainExample(t, (), descriptors=p) for t, p in zip(texts, phrases) if p]
    sample = next((f"{t[:60]!r} -> {'; '.join(p)}" for t, p in zip(texts, phrases) if p), "none")
    print(f"described {len(examples):,} of {len(texts):,} texts in {calls['teacher_descriptor_calls']:,} calls "
          f"({calls['teacher_failed']} answers failed the schema, {calls['teacher_gate_rejections']} the content gates; "
          f"{calls['kept_with_reason']} kept with a reason); "
          f"{calls['descriptor_tokens_per_s']} tokens/s; e.g. {sample}", flush=True)
    if not examples:
        print("the teacher described no text", file=sys.stderr)
        return 1

    config = C.ContrastiveConfig(mode="distill", max_steps=args.steps, epochs=args.epochs, batch_size=args.batch_size,
                                 learning_rate=args.learning_rate, seed=args.seed, log_every=25)

    def log(report: C.StepReport) -> bool:
        print(f"step {report.step}/{report.total_steps}: loss {report.losses['loss']:.4f}; "
              f"{report.examples_per_s:.1f} texts/s; scale {report.scale:.1f} bias {report.bias:.2f}", flush=True)
        return True

    result = C.train(examples, ["emotion"], [""], config, on_step=log)
    model = result.model
    print(f"trained {result.steps} steps in {result.seconds / 60:.1f} min", flush=True)

    sets = [external.load("emotion6", "test", args.data_dir), external.load("semeval-ec", "dev", args.data_dir)]
    if args.limit:
        sets = [s.head(args.limit) for s in sets]
    baseline = EmbeddingBaseline()
    figures = {}
    for label, predictor in (("model", model), ("baseline", baseline)):
        predictor.rule = Rule(DEFAULT_RULE.kind, DEFAULT_RULE.value)  # a priori, the same for both
        for evalset in sets:
            figs = evaluate.figures(evalset, evaluate.score(predictor, evalset))
            figures[(label, evalset.name.split("/")[0])] = figs["macro_f1"]
            per_label = ", ".join(f"{r['label']} {r['f1']:.2f}" for r in figs["per_label"])
            print(f"{label} on {evalset.name} ({len(evalset)} texts): macro-F1 {figs['macro_f1']:.4f} ({per_label})",
                  flush=True)
    print(f"minutes: {(time.monotonic() - started) / 60:.1f}", flush=True)
    print(json.dumps({
        "bench": "distill", "teacher": f"{engine.name}:{engine.model}", "texts": len(texts), "attempts": max(1, args.attempts),
        "described": len(examples), "steps": result.steps, **calls,
        "emotion6_macro_f1": round(figures[("model", "emotion6")], 4),
        "emotion6_baseline_macro_f1": round(figures[("baseline", "emotion6")], 4),
        "ec11_macro_f1": round(figures[("model", "semeval-ec")], 4),
        "ec11_baseline_macro_f1": round(figures[("baseline", "semeval-ec")], 4),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
