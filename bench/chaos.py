"""Kill workers at random and check that nothing is lost or duplicated: `python -m bench.chaos`.

Three workers (`python -m core.worker`, short leases) run, side by side:
  - a generation run (the pipeline's six stages) on the real engine: the default teacher
    (SmolLM2-135M-Instruct) behind one vLLM OpenAI-compatible server, on a few demo stories;
  - a corpus import job (a few thousand stories in small batches), with an inline import into the
    same corpus made half-way through it (as an admin on the Corpus page would);
  - a dataset freeze job, then an export job of the frozen version.
Meanwhile the bench SIGKILLs a random worker at random moments (KILLS times; each victim is drawn among the workers
running a job at that moment) and starts a new one in its place each time; nothing else is restarted (the database and the vLLM server keep running). It allows each
job many attempts: it kills on purpose, and a job's attempts are its defence against a job that kills workers.

When every job has ended, the workers are stopped and the invariants checked:
  lost         LLM answers, examples and stories that a run without kills has and this one lacks
  duplicated   LLM requests, examples, stories or story positions stored more than once
  jobs_failed  jobs that did not end `succeeded`
  export_identical  the export job's files equal, byte for byte, an export of the same version made without kills
The run without kills is made afterwards in this process: the same generation run repeated with the same seed
(every request it makes must already be answered in the cache: an answer it has to ask for was lost), the
import file's stories, and `export_version` on the same version.

The database: a fresh schema on PostgreSQL when 127.0.0.1:5432 answers (`CHAOS_DATABASE_URL`, default
postgresql+psycopg://root@127.0.0.1:5432/test; the schema is dropped afterwards), else a SQLite file in a temp
folder. The last line printed is one JSON object with the figures.

Full size: `python -m bench.chaos` (20 kills, 3 demo stories). Smaller: `--kills 5 --stories 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POSTGRES = "postgresql+psycopg://root@127.0.0.1:5432/test"
ADMIN = ("admin", "admin-pass-123")
SEED_SOURCE = "chaos-seed"
FORMATS = ("jsonl", "csv")
INLINE_STORIES = b"An inline tale of a heron.\n---\nAnother inline tale, of an owl."


@dataclass
class ChaosSettings:
    kills: int = 20
    workers: int = 3
    stories: int = 3  # demo stories in the generation run
    characters: int = 1  # per story
    emotional: int = 3  # utterances per character
    neutral: int = 1
    import_stories: int = 3000  # in the corpus import job
    import_batch: int = 25
    lease_seconds: float = 4.0
    llm_batch: int = 4  # requests per committed batch: small, so kills land between batches
    min_gap_s: float = 0.5  # between two kills
    max_gap_s: float = 2.5
    timeout_s: float = 1800.0
    seed: int = 0
    backend: str = "auto"  # auto | sqlite | postgresql


@dataclass
class Chaos:
    """What the kill loop did, for the figures."""

    kills: int = 0  # each one of a worker that held a job's lease at that moment
    jobs: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- set-up


def postgres_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def fresh_database(backend: str, work: Path):
    """Yields a migrated, empty database URL (a PostgreSQL schema of its own, or a SQLite file)."""
    from db.migrate import upgrade
    from db.session import dispose_engines

    use_postgres = backend == "postgresql" or (backend == "auto" and postgres_answers())
    if not use_postgres:
        url = f"sqlite:///{work / 'chaos.db'}"
        upgrade(url)
        yield url
        dispose_engines()
        return
    from sqlalchemy import create_engine, text

    base = os.environ.get("CHAOS_DATABASE_URL", DEFAULT_POSTGRES)
    schema = f"chaos_{uuid.uuid4().hex[:10]}"
    admin_engine = create_engine(base)
    with admin_engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        dispose_engines()
        with admin_engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin_engine.dispose()


def prepare(settings: ChaosSettings, base_url: str, work: Path) -> dict:
    """Users, taxonomies, demo corpus, engine settings, seed examples; then queue the first jobs."""
    from core import auth, corpus, taxonomy
    from core.curate.filters import CurationFilter
    from core.datasets import importing, versions
    from core.llm import settings as engine_settings
    from core.llm.server import SERVED_NAME
    from core.pipeline import run as pipeline

    taxonomy.seed_defaults()
    auth.ensure_admin(*ADMIN)
    admin = auth.authenticate(*ADMIN)
    engine_settings.save(admin, engine_settings.EngineSettings(
        engine="openai", base_url=base_url, model=SERVED_NAME, max_concurrency=4, batch_size=settings.llm_batch))
    goemotions = taxonomy.get_taxonomy_by_name("GoEmotions").id
    demo = corpus.load_demo_corpus()
    story_ids = [row.id for row in corpus.list_stories(demo, limit=settings.stories)[0]]
    config = pipeline.RunConfig(corpus_id=demo, taxonomy_id=goemotions, story_ids=story_ids, seed=settings.seed,
                                max_characters=settings.characters, emotional=settings.emotional,
                                neutral=settings.neutral)
    run_id = pipeline.create_run(admin, config, name="chaos")
    labels = ("joy", "sadness", "anger", "fear", "surprise", "neutral")
    seed_lines = "\n".join(json.dumps({"text": f"Seed line {i}: the crow counts {i} stones.",
                                       "labels": [labels[i % len(labels)]]}) for i in range(120))
    importing.import_file(admin, "seed.jsonl", seed_lines.encode(), source=SEED_SOURCE, taxonomy_id=goemotions)
    import_file = import_lines(settings.import_stories)
    job_ids = {
        "pipeline": _run_job(run_id),
        "import": corpus.enqueue_import(admin, "Chaos corpus", "chaos.jsonl", import_file,
                                        batch_size=settings.import_batch),
        "freeze": versions.enqueue_freeze(admin, "chaos", CurationFilter(sources=(SEED_SOURCE,)), seed=7),
    }
    allow_many_attempts(job_ids.values())
    return {"admin": admin, "run_id": run_id, "jobs": job_ids, "import_file": import_file}


def import_lines(n: int) -> bytes:
    return "\n".join(json.dumps({"title": f"Chaos {i}", "text": f"Tale {i}: a fox, a crow and {i} cherries."})
                     for i in range(n)).encode()


def _run_job(run_id: int) -> int:
    from db.models import GenerationRun
    from db.session import read_session

    with read_session() as session:
        return session.get(GenerationRun, run_id).job_id


def allow_many_attempts(job_ids) -> None:
    from sqlalchemy import update

    from db.models import Job
    from db.session import write_session

    with write_session() as session:
        session.execute(update(Job).where(Job.id.in_(list(job_ids))).values(max_attempts=10_000))


# --------------------------------------------------------------------------- the workers and the kills


class Workers:
    def __init__(self, count: int, lease_seconds: float, logs: Path):
        self.lease_seconds, self.logs = lease_seconds, logs
        self.started = 0
        self.processes = [self.start() for _ in range(count)]

    def start(self) -> subprocess.Popen:
        self.started += 1
        log = (self.logs / f"worker-{self.started:03d}.log").open("wb")
        return subprocess.Popen([sys.executable, "-m", "core.worker", "--lease", str(self.lease_seconds),
                                 "--poll", "0.2"], cwd=ROOT, env=dict(os.environ), stdout=log,
                                stderr=subprocess.STDOUT)

    def kill_one(self, rng: random.Random, among: set[int]) -> int | None:
        """SIGKILL a random worker among the pids `among`, start another in its place; returns the killed pid."""
        candidates = [i for i, process in enumerate(self.processes) if process.pid in among]
        if not candidates:
            return None
        index = rng.choice(candidates)
        victim = self.processes[index]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        self.processes[index] = self.start()
        return victim.pid

    def stop(self) -> list[int]:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        return [process.wait(timeout=60) for process in self.processes]


def busy_pids() -> set[int]:
    """Pids of the workers holding a lease now (worker ids are host:pid:random)."""
    from sqlalchemy import select

    from db.models import Job, JobStatus
    from db.session import read_session

    with read_session() as session:
        owners = session.scalars(select(Job.lease_owner).where(Job.status == JobStatus.running))
        return {int(owner.split(":")[1]) for owner in owners if owner and owner.count(":") >= 2}


def job_views(admin, job_ids) -> dict:
    from core import jobs

    return {name: jobs.get_job(admin, job_id) for name, job_id in job_ids.items()}


def wreak_havoc(settings: ChaosSettings, setup: dict, workers: Workers) -> Chaos:
    """Kill a random worker at random moments (KILLS times, while jobs run), queue the later steps on the way,
    and return when every job has ended."""
    from core import corpus
    from core.datasets import export

    rng = random.Random(settings.seed)
    chaos = Chaos(jobs=dict(setup["jobs"]))
    admin = setup["admin"]
    deadline = time.monotonic() + settings.timeout_s
    next_kill = time.monotonic() + rng.uniform(settings.min_gap_s, settings.max_gap_s)
    while time.monotonic() < deadline:
        views = job_views(admin, chaos.jobs)
        if "inline" not in setup and (views["import"].done > 0 or views["import"].is_finished):
            # An admin imports into the corpus the job is filling (the two used to clash on story positions).
            setup["inline"] = corpus.import_files(admin, "Chaos corpus", [("inline.txt", INLINE_STORIES)])
        if "export" not in chaos.jobs and views["freeze"].is_finished:
            setup["version_id"] = views["freeze"].result.get("version_id")
            if setup["version_id"] is None:
                return chaos  # the freeze failed: jobs_failed says so
            chaos.jobs["export"] = export.enqueue_export(admin, setup["version_id"], FORMATS)
            allow_many_attempts([chaos.jobs["export"]])
            continue
        if "export" in chaos.jobs and all(v.is_finished for v in views.values()):
            return chaos
        if chaos.kills < settings.kills and time.monotonic() >= next_kill:
            # The victim is a random worker among those running a job at this moment: killing an idle one
            # (or one still starting up) would prove nothing.
            if workers.kill_one(rng, busy_pids()) is not None:
                chaos.kills += 1
                next_kill = time.monotonic() + rng.uniform(settings.min_gap_s, settings.max_gap_s)
        time.sleep(0.05)
    raise TimeoutError(f"the jobs did not all end within {settings.timeout_s:.0f} s")


# --------------------------------------------------------------------------- the invariants


def example_keys(run_id: int) -> Counter:
    from sqlalchemy import select

    from db.models import Character, Example
    from db.session import read_session

    with read_session() as session:
        rows = session.execute(
            select(Example.kind, Example.stage, Example.text, Example.context, Example.story_id,
                   Character.name, Example.target_emotion)
            .outerjoin(Character, Character.id == Example.character_id).where(Example.run_id == run_id))
        return Counter((str(kind), *rest) for kind, *rest in rows.all())


def llm_counts() -> tuple[int, int]:
    """(rows, keys stored more than once) of the LLM request cache."""
    from sqlalchemy import func, select

    from db.models import LLMRequest
    from db.session import read_session

    with read_session() as session:
        rows = session.scalar(select(func.count(LLMRequest.id)))
        repeated = session.scalar(select(func.count()).select_from(
            select(LLMRequest.key).group_by(LLMRequest.key).having(func.count() > 1).subquery()))
        return rows, repeated


def story_figures(corpus_id: int, expected_texts: set[str]) -> dict[str, int]:
    from sqlalchemy import func, select

    from core.corpus import content_hash
    from db.models import Story
    from db.session import read_session

    with read_session() as session:
        hashes = Counter(session.scalars(select(Story.content_hash).where(Story.corpus_id == corpus_id)))
        positions_twice = session.scalar(select(func.count()).select_from(
            select(Story.position).where(Story.corpus_id == corpus_id).group_by(Story.position)
            .having(func.count() > 1).subquery()))
    expected = Counter(content_hash(text) for text in expected_texts)
    return {"stories_lost": sum((expected - hashes).values()),
            "stories_duplicated": sum((hashes - expected).values()) + sum(n - 1 for n in hashes.values() if n > 1),
            "positions_twice": positions_twice}


def reference_run(admin, run_id: int) -> tuple[int, int]:
    """The same run again without kills, in this process; returns (its run id, LLM requests it had to add)."""
    from core import worker
    from core.pipeline import run as pipeline

    before, _ = llm_counts()
    again = pipeline.repeat_run(admin, run_id, name="chaos reference (no kills)")
    worker.serve(once=True, lease_seconds=60)
    after, _ = llm_counts()
    return again, after - before


def same_files(a: Path, b: Path) -> bool:
    """The same relative file names with the same bytes (zips aside: they stamp file times; the owned-files
    manifest aside: it lists the zip, which the reference export does not make)."""
    from core.owned_files import MANIFEST

    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and p.suffix != ".zip" and p.name != MANIFEST}

    return files(a) == files(b)


def check(setup: dict, chaos: Chaos, work: Path) -> dict:
    from core.datasets import export
    from db.models import JobStatus

    admin = setup["admin"]
    views = job_views(admin, chaos.jobs)
    figures: dict = {"jobs_failed": sum(v.status != JobStatus.succeeded for v in views.values())}
    statuses = {name: v.status.value for name, v in views.items()}

    _, llm_repeated = llm_counts()
    chaos_examples = example_keys(setup["run_id"])
    reference_id, llm_missing = reference_run(admin, setup["run_id"])
    reference_examples = example_keys(reference_id)
    examples_lost = sum((reference_examples - chaos_examples).values())
    examples_duplicated = sum((chaos_examples - reference_examples).values())

    texts = {json.loads(line)["text"] for line in setup["import_file"].decode().splitlines()}
    if setup.get("inline"):
        texts |= {"An inline tale of a heron.", "Another inline tale, of an owl."}
    corpus_id = views["import"].result.get("corpus_id") if views["import"].result else None
    stories = story_figures(corpus_id, texts) if corpus_id else {"stories_lost": len(texts), "stories_duplicated": 0,
                                                                  "positions_twice": 0}
    export_identical = False
    if "export" in views and views["export"].status == JobStatus.succeeded:
        reference = export.export_version(admin, setup["version_id"], work / "reference-export", FORMATS,
                                          make_zip=False)
        export_identical = same_files(Path(views["export"].result["folder"]), Path(reference.folder))
    figures.update(
        lost=llm_missing + examples_lost + stories["stories_lost"],
        duplicated=llm_repeated + examples_duplicated + stories["stories_duplicated"] + stories["positions_twice"],
        export_identical=export_identical,
        details={"job_status": statuses, "attempts": {n: v.attempts for n, v in views.items()},
                 "llm_requests_asked_again": llm_missing, "llm_keys_twice": llm_repeated,
                 "examples": sum(chaos_examples.values()), "reference_examples": sum(reference_examples.values()),
                 "examples_lost": examples_lost, "examples_duplicated": examples_duplicated, **stories,
                 "inline_import_stories": setup["inline"].stories_added if setup.get("inline") else 0},
    )
    return figures


# --------------------------------------------------------------------------- entry point


def run_chaos(settings: ChaosSettings, base_url: str | None = None) -> dict:
    """Set up, kill, check; returns the figures. `base_url`: a running OpenAI-compatible server (else one starts)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    saved = {k: os.environ.get(k) for k in ("EMOFORGE_HOME", "DATABASE_URL")}
    work = Path(tempfile.mkdtemp(prefix="emoforge-chaos-"))
    started = time.monotonic()
    try:
        with ExitStack() as stack:
            if base_url is None:
                from core.llm.server import running_server

                base_url = stack.enter_context(running_server(work / "vllm-server.log"))
            os.environ["EMOFORGE_HOME"] = str(work / "home")
            url = stack.enter_context(fresh_database(settings.backend, work))
            os.environ["DATABASE_URL"] = url
            setup = prepare(settings, base_url, work)
            (work / "logs").mkdir()
            workers = Workers(settings.workers, settings.lease_seconds, work / "logs")
            try:
                chaos = wreak_havoc(settings, setup, workers)
            finally:
                exits = workers.stop()
            chaos_seconds = time.monotonic() - started
            figures = check(setup, chaos, work)
            figures["details"].update(workers_started=workers.started,
                                      worker_exit_codes=exits, chaos_seconds=round(chaos_seconds, 1))
            return {"bench": "chaos", "backend": "postgresql" if url.startswith("postgresql") else "sqlite",
                    "kills": chaos.kills, "lost": figures.pop("lost"), "duplicated": figures.pop("duplicated"),
                    "jobs_failed": figures.pop("jobs_failed"), "export_identical": figures.pop("export_identical"),
                    "seconds": round(time.monotonic() - started, 1), **figures}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if not os.environ.get("CHAOS_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = ChaosSettings()
    parser.add_argument("--kills", type=int, default=defaults.kills)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--stories", type=int, default=defaults.stories, help="demo stories in the generation run")
    parser.add_argument("--import-stories", type=int, default=defaults.import_stories)
    parser.add_argument("--lease", type=float, default=defaults.lease_seconds)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--backend", choices=("auto", "sqlite", "postgresql"), default=defaults.backend)
    parser.add_argument("--openai-url", default=None, help="use this running server instead of starting vLLM")
    args = parser.parse_args(argv)
    settings = ChaosSettings(kills=args.kills, workers=args.workers, stories=args.stories,
                             import_stories=args.import_stories, lease_seconds=args.lease, seed=args.seed,
                             backend=args.backend)
    print(json.dumps(run_chaos(settings, args.openai_url)))


if __name__ == "__main__":
    main()
