"""Generate and Train pages: a run whose job ran out of attempts ends failed and offers Discard (AppTest)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from core import corpus, jobs, taxonomy
from core.pipeline import run as pipeline
from core.pipeline import runs
from core.train import jobs as train_jobs
from db.models import Job, JobStatus, utcnow
from db.session import write_session
from tests.test_pages import navigation_steady_state, open_page, shared_component_registry  # noqa: F401
from tests.test_train_page import a_version


def _worker_dies_every_time(job_id: int) -> None:
    """The job's worker died on its last attempt: the next claim gives the job up."""
    assert jobs.claim("dies", 60) == job_id
    with write_session() as session:
        session.execute(update(Job).where(Job.id == job_id)
                        .values(attempts=Job.max_attempts, lease_until=utcnow() - timedelta(seconds=1)))
    assert jobs.claim("next", 60) is None


def test_generate_page_discards_a_run_whose_job_gave_up(admin):
    taxonomy.seed_defaults()
    corpus_id = corpus.load_demo_corpus()
    config = pipeline.RunConfig(corpus_id=corpus_id, taxonomy_id=taxonomy.get_taxonomy_by_name("GoEmotions").id)
    run_id = pipeline.create_run(admin, config, sample_size=1)
    job_id = runs.run_detail(admin, run_id).job_id
    _worker_dies_every_time(job_id)
    assert runs.run_detail(admin, run_id).status == "failed"

    at = open_page(admin, "generate")
    at.selectbox(key="gen_run_pick").set_value(run_id).run()
    assert not at.exception, at.exception
    assert not at.button(key="gen_resume").disabled and not at.button(key="gen_discard").disabled
    at.button(key="gen_discard").click().run()
    assert not at.exception, at.exception
    assert runs.run_detail(admin, run_id).status == "discarded"
    assert at.button(key="gen_resume").disabled and at.button(key="gen_discard").disabled


def test_train_page_offers_resume_and_discard_for_a_run_whose_job_gave_up(admin):
    version_id = a_version(admin)
    run_id = train_jobs.start_classifier_run(admin, version_id, {"epochs": 1})
    _worker_dies_every_time(train_jobs.get_run(admin, run_id).job_id)
    view = train_jobs.get_run(admin, run_id)
    assert (view.status, view.job_status) == ("failed", JobStatus.failed.value) and view.can_resume

    at = open_page(admin, "train")
    assert not at.exception, at.exception
    at.button(key=f"trn_discard_{run_id}").click().run()
    assert not at.exception, at.exception
    assert train_jobs.get_run(admin, run_id).status == "discarded"
    assert not any(b.key == f"trn_resume_{run_id}" for b in at.button)
