"""The Emo Pillars pipeline at its defaults: `python -m bench.pipeline` (several minutes on 2 CPU cores).

Five demo stories, the GoEmotions taxonomy, the default run settings (3 characters per story, 8 emotional
and 2 neutral utterances per character), the default teacher (SmolLM2-135M-Instruct) on in-process vLLM,
a fresh SQLite database in a temp dir. The engine is loaded and warmed up first; the timed part is the
worker running the run's job, all six stages, from claim to end.

  examples            context-less + contextual examples stored
  llm_calls           requests the engine answered (validation retries included; nothing was cached)
  examples_per_min    examples / timed minutes
  engine_busy_fraction  time inside the engine's generate calls / timed wall time

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
SEED = 0


def teacher_path() -> str:
    from core import config, models_setup

    path = config.teacher_model_dir()
    if not models_setup.teacher_ready(path):
        models_setup.ensure_teacher(path)
    return str(path)


def main() -> None:
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
    story_ids = [row.id for row in corpus.list_stories(corpus_id, limit=STORIES)[0]]
    config = pipeline.RunConfig(corpus_id=corpus_id, taxonomy_id=taxonomy.get_taxonomy_by_name("GoEmotions").id,
                                story_ids=story_ids, seed=SEED)
    run_id = pipeline.create_run(admin, config, name="bench")

    engine = VLLMEngine(teacher, max_model_len=2048)
    engine.generate([ChatRequest(messages=({"role": "user", "content": "Say hello."},),
                                 sampling=Sampling(max_tokens=8, seed=1))])  # load and compile before timing
    pipeline.current_engine = lambda: engine  # the job uses this warm engine instead of loading its own

    started = time.monotonic()
    worker.serve(once=True)
    wall = time.monotonic() - started
    engine.close()
    print_results(run_id, wall)


def print_results(run_id: int, wall: float) -> None:
    from sqlalchemy import select

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
    print(json.dumps({"bench": "pipeline", "stories": STORIES, "examples": len(examples), "llm_calls": calls,
                      "examples_per_min": round(len(examples) / (wall / 60), 1),
                      "engine_busy_fraction": round(engine_seconds / wall, 3)}))


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
