"""The Emo Pillars pipeline at its defaults: `python -m bench.pipeline` (5 min 2 s on a quiet 2-core CPU, 2026-12-03).

Five demo stories, the GoEmotions taxonomy, the default preset "Emo Pillars (paper)" (up to 15 characters
per story, one call per character for 8 emotional + 2 neutral utterances, contexts for a third), the default
teacher (SmolLM2-135M-Instruct) on in-process vLLM, a fresh SQLite database in a temp dir. The engine is
loaded and warmed up first. Before the timed run, a calibration run on other demo stories gives the
estimate its measured ratios (as any earlier run of the same model and preset would); the timed part is
the worker running the main run's job, all six stages, from claim to end.

  examples            context-less + contextual examples stored
  llm_calls           requests the engine answered (validation retries included; nothing was cached)
  examples_per_min    examples / timed minutes
  engine_busy_fraction  time inside the engine's generate calls / timed wall time
  calls_per_contextless_example  engine calls (re-asks and retries included) / context-less examples
                      (goal <= 2.4; the paper: 700K calls for 300K examples = 2.33)
  estimate_error      |estimated - spent| / spent calls, the estimate taken before launch (goal <= 0.05)
  estimate_error_tokens  the same for tokens
  estimate_error_uncalibrated  the same for calls, estimated with no earlier run (an upper bound)

Options: --stories N (5), --calibration-stories N (2), --preset paper|balanced, --characters N.
At a tiny size (e.g. --stories 1 --calibration-stories 1 --characters 3) it proves it works in minutes.

Three generated examples (a context-less one and its contextual rewrite, and one more) are printed
before the last line, which is one JSON object with the figures.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

STORIES = 5
CALIBRATION_STORIES = 2
SEED = 0


def options(argv: list[str]) -> dict:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    parser.add_argument("--stories", type=int, default=STORIES)
    parser.add_argument("--calibration-stories", type=int, default=CALIBRATION_STORIES)
    parser.add_argument("--preset", default="paper", choices=["paper", "balanced"])
    parser.add_argument("--characters", type=int, default=None, help="characters per story (default: the preset's)")
    return vars(parser.parse_args(argv))


def teacher_path() -> str:
    from core import config, models_setup

    path = config.teacher_model_dir()
    if not models_setup.teacher_ready(path):
        models_setup.ensure_teacher(path)
    return str(path)


def main(argv: list[str] | None = None) -> None:
    args = options(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    teacher = teacher_path()  # resolved in the user's home before the temp home takes over
    work = Path(tempfile.mkdtemp(prefix="emoforge-bench-pipeline-"))
    os.environ["EMOFORGE_HOME"] = str(work / "home")
    os.environ["EMOFORGE_TEACHER_DIR"] = teacher
    os.environ["DATABASE_URL"] = f"sqlite:///{work / 'bench.db'}"

    from core import auth, corpus, taxonomy, worker
    from core.llm.engines import VLLMEngine
    from core.llm.types import ChatRequest, Sampling
    from core.pipeline import run as pipeline
    from db.migrate import upgrade

    upgrade(os.environ["DATABASE_URL"])
    taxonomy.seed_defaults()
    auth.ensure_admin("admin", "admin-pass-123")
    admin = auth.authenticate("admin", "admin-pass-123")
    corpus.load_demo_corpus()
    corpus_id = corpus.list_corpora()[0].id
    listed = [row.id for row in corpus.list_stories(corpus_id, limit=args["stories"] + args["calibration_stories"])[0]]
    story_ids, calibration_ids = listed[:args["stories"]], listed[args["stories"]:]
    tid = taxonomy.get_taxonomy_by_name("GoEmotions").id
    overrides = {"max_characters": args["characters"]} if args["characters"] else {}
    config = pipeline.RunConfig.for_preset(args["preset"], corpus_id, tid, story_ids=story_ids, seed=SEED, **overrides)
    uncalibrated = pipeline.estimate_run(pipeline.prepare_config(config))

    engine = VLLMEngine(teacher, max_model_len=2048)
    engine.generate([ChatRequest(messages=({"role": "user", "content": "Say hello."},),
                                 sampling=Sampling(max_tokens=8, seed=1))])  # load and compile before timing
    pipeline.current_engine = lambda: engine  # the job uses this warm engine instead of loading its own
    if calibration_ids:
        calibration = pipeline.RunConfig.for_preset(args["preset"], corpus_id, tid, story_ids=calibration_ids,
                                                    seed=SEED, **overrides)
        pipeline.create_run(admin, calibration, name="bench calibration")
        worker.serve(once=True)

    estimate = pipeline.estimate_run(pipeline.prepare_config(config))
    run_id = pipeline.create_run(admin, config, name="bench")
    started = time.monotonic()
    worker.serve(once=True)
    wall = time.monotonic() - started
    engine.close()
    print_results(run_id, wall, estimate, uncalibrated, args)


def print_results(run_id: int, wall: float, estimate, uncalibrated, args: dict) -> None:
    from sqlalchemy import select

    from core.pipeline.plan import off_by, spent_totals
    from db.models import Example, GenerationRun, RunStatus
    from db.session import read_session

    with read_session() as session:
        run = session.get(GenerationRun, run_id)
        stats = dict(run.stats or {})
        status = run.status
        examples = list(session.scalars(select(Example).where(Example.run_id == run_id).order_by(Example.id)))
    if status != RunStatus.succeeded:
        sys.exit(f"the run ended {status.value}: {json.dumps(stats)[:2000]}")
    stages = [s for s in ("characters", "utterances", "labels", "context", "clean", "rewrite") if s in stats]
    for stage in stages:
        print(f"{stage:>10}: {json.dumps(stats[stage])}")
    calls = sum(stats[s]["answered"] + stats[s]["invalid"] + stats[s]["failed"] for s in stages)
    engine_seconds = sum(stats[s]["engine_seconds"] for s in stages)
    show_examples(examples)
    spent = stats.get("spent", {})
    spent_calls, spent_tokens = spent_totals(spent)
    contextless = sum(1 for e in examples if e.kind.value == "contextless")
    print(f"estimate before launch: {estimate.calls} calls, {estimate.tokens} tokens "
          f"({estimate.measured_runs} earlier run(s) measured); spent: {spent_calls} calls, {spent_tokens} tokens")
    print(f"  estimated {estimate.characters} characters, {estimate.utterances} context-less examples, "
          f"{estimate.contexts} contexts; made {stats.get('measured', {})}")
    for planned in estimate.stages:  # where the estimate and the run part ways
        used = spent.get(planned.stage, {})
        print(f"  {planned.stage:>10}: estimated {planned.calls} calls, spent {used.get('calls', 0)} "
              f"({used.get('requests', 0)} requests)")
    print(json.dumps({"bench": "pipeline", "preset": args["preset"], "stories": args["stories"],
                      "examples": len(examples), "llm_calls": calls,
                      "examples_per_min": round(len(examples) / (wall / 60), 1),
                      "engine_busy_fraction": round(engine_seconds / wall, 3),
                      "contextless_examples": contextless,
                      "calls_per_contextless_example": round(spent_calls / contextless, 3) if contextless else None,
                      "estimate_error": off_by(estimate.calls, spent_calls),
                      "estimate_error_tokens": off_by(estimate.tokens, spent_tokens),
                      "estimate_error_uncalibrated": off_by(uncalibrated.calls, spent_calls),
                      "quality": stats.get("quality", {})}))


def show_examples(examples) -> None:
    from core.labels import teacher_scores
    from db.models import ExampleKind

    contextual = [e for e in examples if e.kind == ExampleKind.contextual]
    by_id = {e.id: e for e in examples}
    picked = []
    if contextual:
        picked += [by_id[contextual[0].parent_id], contextual[0]]
        if len(contextual) > 1:
            picked.append(contextual[len(contextual) // 2])
    for example in picked:
        scores = teacher_scores([example.id]).get(example.id, {})
        print(f"--- example {example.id} ({example.kind.value}), target emotion: {example.target_emotion}")
        if example.context:
            print(f"context: {example.context}")
        print(f"text: {example.text}")
        print(f"teacher scores: {json.dumps(scores)}")


if __name__ == "__main__":
    main()
