"""EmoForge's own overhead per LLM call: `python -m bench.orchestration` (about 4 minutes here; see below).

The ceiling no GPU can lift: a whole Emo Pillars run (every stage, the real pipeline code and the
real worker loop, `core.worker.serve`) against null OpenAI-compatible endpoints (bench.null_endpoint:
started here on free 127.0.0.1 ports, each answers every request at once with a schema-valid JSON
answer). What is left of the time is EmoForge's: building requests, the cache look-ups, HTTP,
validation, storing answers and examples, progress.

The corpus is synthetic (stories of ~300 random words, one passage each), sized with the run's own
cost estimate, calibrated by a run on 4 other stories first, to at least `--calls` calls (default
50,000). The run goes once on PostgreSQL (a fresh schema in the database of `--postgres`, dropped
afterwards) and once on SQLite (a temp file).

  calls_per_s          LLM calls answered / wall time of the worker's job, PostgreSQL (goal >= 1000)
  db_bytes_per_call    growth of the schema's tables, indexes and TOAST during the run / calls (goal <= 1500)
  sqlite_calls_per_s   the same run on SQLite
  encoder_seconds      of the PostgreSQL run's time, seconds inside the sentence encoder (MiniLM: near-duplicate
                       check, context similarity); a GPU host runs it on the GPU. calls_per_s_without_encoder
                       is calls / (time - encoder_seconds): the orchestration's own ceiling
  llm_layer_calls_per_s  one `llm_generate` job (requests in, answers cached; no pipeline stores), PostgreSQL
  null_teacher_calls_per_contextless_example, null_teacher_estimate_error  bench.pipeline's two call figures
                       for this run, whose teacher never fails a gate or repeats itself: what the pipeline's own
                       call accounting gives when the teacher is not the variable (bench.pipeline: the real one)

Running time: at the defaults (2 x 50,000 calls and the 20,000-call LLM layer job) 2 min 53 s measured
2026-12-04 on a quiet 2-core Intel Xeon with AMX (the PostgreSQL run 78.8 s, the SQLite run 69.8 s);
5 min 6 s the same day on a quiet 2-core AMD EPYC with AVX512-BF16 and no AMX; 2 min 44 s to 3 min 9 s
measured 2026-12-03 on a quiet 2-core machine with AMX (null endpoints, worker and PostgreSQL on the same
two cores; the PostgreSQL run 78-90 s, the SQLite run 64-74 s; a CPU without native bfloat16 encodes in
fp32: about a minute more). On 2026-12-02, with two other benchmarks on the same cores,
`--calls 3000 --llm-layer-calls 2000` took 92 s. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

DEFAULT_POSTGRES = "postgresql+psycopg://root@127.0.0.1:5432/test"
STORY_WORDS = 300
PROBE_STORIES = 4


@contextmanager
def null_endpoints(count: int, log_dir: Path):
    """`count` null endpoint processes; yields their base URLs."""
    from core.processes import free_port, stop, wait_until_serving

    processes, urls = [], []
    try:
        for i in range(count):
            port = free_port()
            log = log_dir / f"null-{i}.log"
            with log.open("wb") as handle:
                processes.append(subprocess.Popen([sys.executable, "-m", "bench.null_endpoint", "--port", str(port)],
                                                  stdout=handle, stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}/v1")
            wait_until_serving(f"{urls[-1]}/models", processes[-1], log, timeout=30, what="the null endpoint")
        yield urls
    finally:
        for process in processes:
            stop(process)


def synthetic_stories(count: int, seed: int) -> bytes:
    from bench.null_endpoint import WORDS

    rng = random.Random(seed)
    lines = []
    for i in range(count):
        sentences = []
        while sum(len(s.split()) for s in sentences) < STORY_WORDS:
            sentences.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + ".")
        lines.append(json.dumps({"title": f"Story {i + 1}", "text": " ".join(sentences)}))
    return "\n".join(lines).encode()


def set_up(database_url: str, home: Path, endpoints: list[str], calls: int, args) -> tuple[int, int]:
    """Migrate, seed, import a corpus big enough for `calls`, save the engine settings; (run id, estimated calls)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["EMOFORGE_HOME"] = str(home)
    from core import auth, corpus, taxonomy, worker
    from core.llm import settings as engine_settings
    from core.pipeline import run as pipeline
    from db.migrate import upgrade
    from db.session import dispose_engines

    dispose_engines()
    upgrade(database_url)
    taxonomy.seed_defaults()
    auth.ensure_admin("admin", "admin-pass-123")
    admin = auth.authenticate("admin", "admin-pass-123")
    engine_settings.save(admin, engine_settings.EngineSettings(
        engine="openai", base_url="\n".join(endpoints), model="null", max_concurrency=args.concurrency,
        batch_size=args.batch_size, max_retries=0, timeout_seconds=60))
    goemotions = taxonomy.get_taxonomy_by_name("GoEmotions").id

    def config_for(report) -> pipeline.RunConfig:
        story_ids = [row.id for row in corpus.list_stories(report.corpus_id, limit=100_000)[0]]
        return pipeline.RunConfig(corpus_id=report.corpus_id, taxonomy_id=goemotions, story_ids=story_ids, seed=0)

    # A calibration run on a few stories first, as a user's earlier run would: with no earlier run the
    # estimate is an upper bound (every character and utterance kept), and the run would fall short of `calls`.
    probe = corpus.import_files(admin, "probe", [("probe.jsonl", synthetic_stories(PROBE_STORIES, 0))])
    pipeline.create_run(admin, config_for(probe), name="calibration")
    worker.serve(once=True)
    per_story = pipeline.estimate_run(config_for(probe)).calls / PROBE_STORIES
    stories = math.ceil(calls * 1.03 / per_story)  # a little over: stories vary around the measured mean
    report = corpus.import_files(admin, "bench", [("bench.jsonl", synthetic_stories(stories, 1))])
    config = config_for(report)
    estimated = pipeline.estimate_run(config).calls
    return pipeline.create_run(admin, config, name="orchestration"), estimated


def database_bytes(database_url: str, schema: str | None) -> dict[str, int]:
    """Bytes in use per table (with its indexes and TOAST); SQLite: the whole file as one entry."""
    from sqlalchemy import text

    from db.session import get_engine

    engine = get_engine(database_url)
    with engine.connect() as connection:
        if schema is None:  # SQLite: the file's pages in use
            pages = connection.execute(text("PRAGMA page_count")).scalar() - connection.execute(
                text("PRAGMA freelist_count")).scalar()
            return {"(file)": int(pages * connection.execute(text("PRAGMA page_size")).scalar())}
        return dict(connection.execute(text(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relkind = 'r'"),
            {"schema": schema}).all())


def growth(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    grown = {table: size - before.get(table, 0) for table, size in after.items()}
    return dict(sorted(((t, g) for t, g in grown.items() if g), key=lambda item: -item[1]))


def run_once(database_url: str, schema: str | None, endpoints: list[str], work: Path, args, label: str) -> dict:
    from core import worker
    from core.pipeline.steps import STEPS
    from db.models import GenerationRun, RunStatus
    from db.session import read_session

    run_id, estimated = set_up(database_url, work / f"home-{label}", endpoints, args.calls, args)
    before = database_bytes(database_url, schema)
    encoder = encoder_timer()
    started = time.monotonic()
    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(worker.serve, once=True)
        profiler.dump_stats(str(work / "profile.pstats"))
        print(f"profile: {work / 'profile.pstats'}", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    else:
        worker.serve(once=True)
    wall = time.monotonic() - started
    encoder_seconds = encoder.stop()
    grown = growth(before, database_bytes(database_url, schema))
    with read_session() as session:
        run = session.get(GenerationRun, run_id)
        stats, status = dict(run.stats or {}), run.status
    if status != RunStatus.succeeded:
        sys.exit(f"{label}: the run ended {status.value}: {json.dumps(stats)[:2000]}")
    stages = list(dict.fromkeys(step.stage for step in STEPS.values() if step.stage in stats))
    calls = sum(stats[s].get("answered", 0) + stats[s].get("invalid", 0) + stats[s].get("failed", 0)
                for s in stages)
    print(f"{label}: {calls} calls (estimated {estimated}) in {wall:.1f} s: {calls / wall:.0f} calls/s, "
          f"{sum(grown.values()) / max(1, calls):.0f} database bytes per call; of the time, {encoder_seconds:.1f} s "
          f"in the sentence encoder (near-duplicates, context similarity)", flush=True)
    print("  bytes per call by table: " + ", ".join(f"{t} {g / max(1, calls):.0f}" for t, g in list(grown.items())[:8]))
    for stage in stages:
        entry = stats[stage]
        print(f"  {stage:>10}: {entry.get('total', 0)} requests in {entry.get('seconds', 0)} s "
              f"(engine wait {entry.get('engine_seconds', 0)} s)", flush=True)
    return {"calls": calls, "seconds": wall, "bytes": sum(grown.values()), "encoder_seconds": encoder_seconds,
            "estimated": estimated, "contextless": stats["measured"]["contextless"]}


class encoder_timer:
    """Time spent in core.embeddings.embed while it runs: model work a GPU host does on its GPU, reported
    beside the total so the orchestration's own share is visible (the total stays the headline)."""

    def __init__(self):
        from core import embeddings

        self.module, self.original, self.seconds = embeddings, embeddings.embed, 0.0

        def timed(*args, **kwargs):
            started = time.monotonic()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.monotonic() - started

        embeddings.embed = timed

    def stop(self) -> float:
        self.module.embed = self.original
        return self.seconds


def run_llm_layer(database_url: str, schema: str | None, calls: int) -> dict:
    """The LLM layer alone: one `llm_generate` job of `calls` labelling requests, no pipeline stores."""
    from core import auth, jobs, worker
    from core.llm.jobs import enqueue_generation
    from db.models import JobStatus

    admin = auth.authenticate("admin", "admin-pass-123")
    rng = random.Random(7)
    from bench.null_endpoint import WORDS

    items = [{"messages": [{"role": "system", "content": "You label the emotion of a text. Answer with JSON only."},
                           {"role": "user", "content": f'Text: "{" ".join(rng.choices(WORDS, k=12))}"\n\n'
                                                       "Which single emotion does the writer feel, and how sure are "
                                                       "you (0 to 1)?"}]} for _ in range(calls)]
    job_id = enqueue_generation(admin, items, task="emotion_guess", stage="bench")
    before = sum(database_bytes(database_url, schema).values())
    started = time.monotonic()
    worker.serve(once=True)
    wall = time.monotonic() - started
    grown = sum(database_bytes(database_url, schema).values()) - before
    view = jobs.get_job(admin, job_id)
    if view.status != JobStatus.succeeded:
        sys.exit(f"the llm_generate job ended {view.status.value}: {view.error}")
    print(f"llm layer alone: {calls} calls in {wall:.1f} s: {calls / wall:.0f} calls/s, "
          f"{grown / calls:.0f} database bytes per call", flush=True)
    return {"calls_per_s": round(calls / wall, 1), "bytes_per_call": round(grown / calls)}


@contextmanager
def postgres_schema(base_url: str):
    """A fresh schema (search_path set through the URL), dropped afterwards."""
    from sqlalchemy import create_engine, text

    schema = f"bench_orch_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{separator}options=-csearch_path%3D{schema}", schema
    finally:
        from db.session import dispose_engines

        dispose_engines()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.orchestration", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=50_000, help="at least this many LLM calls per run")
    parser.add_argument("--endpoints", type=int, default=2, help="null endpoints (one process each)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight per endpoint")
    parser.add_argument("--batch-size", type=int, default=1000, help="answers per commit at most")
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument("--llm-layer-calls", type=int, default=20_000,
                        help="then one llm_generate job of this many calls: the LLM layer without the pipeline")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile the PostgreSQL run (to stderr)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(tempfile.mkdtemp(prefix="emoforge-bench-orchestration-"))
    figures: dict = {"bench": "orchestration", "calls_target": args.calls, "endpoints": args.endpoints}
    from core.pipeline.plan import off_by
    with null_endpoints(args.endpoints, work) as urls:
        with postgres_schema(args.postgres) as (url, schema):
            pg = run_once(url, schema, urls, work, args, "postgresql")
            if args.llm_layer_calls:
                layer = run_llm_layer(url, schema, args.llm_layer_calls)
                figures.update(llm_layer_calls_per_s=layer["calls_per_s"],
                               llm_layer_db_bytes_per_call=layer["bytes_per_call"])
        figures.update(calls=pg["calls"], seconds=round(pg["seconds"], 1),
                       calls_per_s=round(pg["calls"] / pg["seconds"], 1),
                       db_bytes_per_call=round(pg["bytes"] / max(1, pg["calls"])),
                       encoder_seconds=round(pg["encoder_seconds"], 1),
                       calls_per_s_without_encoder=round(pg["calls"] / (pg["seconds"] - pg["encoder_seconds"]), 1),
                       null_teacher_calls_per_contextless_example=round(pg["calls"] / max(1, pg["contextless"]), 3),
                       null_teacher_estimate_error=off_by(pg["estimated"], pg["calls"]))
        if not args.skip_sqlite:
            lite = run_once(f"sqlite:///{work / 'bench.db'}", None, urls, work, args, "sqlite")
            figures.update(sqlite_calls=lite["calls"], sqlite_seconds=round(lite["seconds"], 1),
                           sqlite_calls_per_s=round(lite["calls"] / lite["seconds"], 1),
                           sqlite_db_bytes_per_call=round(lite["bytes"] / max(1, lite["calls"])),
                           sqlite_encoder_seconds=round(lite["encoder_seconds"], 1))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
