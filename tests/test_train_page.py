"""The Train page, driven through streamlit.testing (AppTest): start a run, live curves, cancel / resume,
the model registry with export, and label issues into a review campaign."""

from __future__ import annotations

from sqlalchemy import select

from core import jobs
from core.datasets import versions
from core.train import jobs as train_jobs
from core.train import registry
from db.models import Job, Signal, TrainingMetric
from db.session import read_session, write_session
from tests.curate_support import add_example, make_stories
from tests.test_pages import navigation_steady_state, open_page, shared_component_registry  # noqa: F401


def a_version(admin) -> int:
    stories = make_stories(10)
    for i in range(30):
        add_example(f"Line {i}", {"joy": 0.9} if i % 2 else {"anger": 0.8}, story_id=stories[i % 10])
    return versions.freeze(admin, "page version", ratios={"train": 0.6, "dev": 0.2, "test": 0.2}).id


def test_start_a_run_then_follow_cancel_and_resume_it(admin):
    version_id = a_version(admin)
    at = open_page(admin, "train")
    assert not at.exception, at.exception
    assert "No training run yet." in [i.value for i in at.info]
    at.number_input(key="trn_epochs").set_value(2.0)
    at.text_input(key="trn_name").input("page model")
    at.button(key="trn_start").click().run()
    assert not at.exception, at.exception
    runs = train_jobs.list_runs(admin)
    assert len(runs) == 1 and runs[0].version_id == version_id and runs[0].config["epochs"] == 2.0
    assert runs[0].config["model_name"] == "page model"
    assert any("queued" in s.value for s in at.success)

    # The worker has claimed it and logged a few points: the page draws them and offers Cancel.
    run = runs[0]
    assert jobs.claim("test-worker") == run.job_id
    with write_session() as s:
        s.add_all([TrainingMetric(run_id=run.id, step=step, epoch=step / 10, split=split, name=name, value=value)
                   for step, split, name, value in [(1, "train", "loss", 0.7), (2, "train", "loss", 0.5),
                                                    (0, "dev", "loss", 0.69), (2, "dev", "loss", 0.55),
                                                    (0, "dev", "macro_f1", 0.1), (2, "dev", "macro_f1", 0.3)]])
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) >= 2
    at.button(key=f"trn_cancel_{run.id}").click().run()
    with read_session() as s:
        assert s.get(Job, run.job_id).cancel_requested
    # The worker stops at its next step: the run shows as cancelled and can resume.
    jobs.finish(run.job_id, "test-worker", jobs.JobStatus.cancelled)
    train_jobs._set_status(run.id, train_jobs.RunStatus.cancelled)
    at.run()
    at.button(key=f"trn_resume_{run.id}").click().run()
    assert not at.exception, at.exception
    view = train_jobs.get_run(admin, run.id)
    assert (view.status, view.job_status) == ("queued", "queued")


def test_models_tab_lists_and_exports_and_issues_tab_creates_a_campaign(admin, annotator, tmp_path):
    a_version(admin)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    registry.register_model(admin, "classifier", "page classifier", folder, ["joy", "anger"], {"global": 0.35},
                            {"epochs": 1}, {"dev_macro_f1": 0.5, "per_label": [
                                {"label": "joy", "precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2},
                                {"label": "anger", "precision": 0.5, "recall": 1.0, "f1": 0.667, "support": 1}]},
                            dataset_hash="abc")
    with write_session() as s:
        ids = list(s.scalars(select(Signal.example_id)))  # none yet
        assert ids == []
        from db.models import Example

        for n, example_id in enumerate(s.scalars(select(Example.id).order_by(Example.id))):
            s.add(Signal(example_id=example_id, kind="label_issue", value=n / 100,
                         data={"given": ["joy"], "student": ["anger"], "teacher": ["joy"], "is_issue": n > 25}))
    at = open_page(admin, "train")
    assert not at.exception, at.exception
    tables = [d.value for d in at.dataframe]
    assert any("page classifier" in t.get("name", []).tolist() for t in tables if "kind" in t)
    issues = next(t for t in tables if "issue_score" in t)
    assert issues["issue_score"].tolist()[:3] == [0.29, 0.28, 0.27]  # most suspicious first
    at.button(key="trn_export").click().run()
    assert not at.exception, at.exception
    assert any("Written to" in s.value for s in at.success)
    assert (registry.exports_dir() / f"{registry.list_models()[0].id}-page-classifier" / "emoforge_model.json").exists()

    at.text_input(key="iss_campaign_name").input("doubtful labels")
    at.number_input(key="iss_top_n").set_value(5)
    at.multiselect(key="iss_annotators").set_value([annotator.id])
    at.button(key="iss_campaign").click().run()
    assert not at.exception, at.exception
    assert any("5 items" in s.value for s in at.success), [s.value for s in at.success]


def test_the_page_and_the_cli_start_from_the_settings_bench_goemotions_measured(admin, tmp_path):
    from core import cli
    from core.train.classifier import ClassifierConfig

    defaults = ClassifierConfig()
    assert (defaults.learning_rate, defaults.head_learning_rate, defaults.freeze_embeddings, defaults.epochs,
            defaults.pooling, defaults.pos_weight) == (1.2e-4, 2e-3, True, 4.0, "mean", "sqrt")
    args = cli.build_parser().parse_args(["train", "3"])
    assert (args.lr, args.head_lr, args.freeze_embeddings, args.epochs) == (1.2e-4, 2e-3, True, 4.0)
    assert cli.build_parser().parse_args(["train", "3", "--train-embeddings"]).freeze_embeddings is False

    version_id = a_version(admin)
    folder = tmp_path / "parent"
    folder.mkdir()
    parent = registry.register_model(admin, "classifier", "parent model", folder, ["joy"], {"global": 0.5})
    at = open_page(admin, "train")
    assert at.number_input(key="trn_lr").value == 1.2e-4 and at.checkbox(key="trn_freeze").value is True
    at.selectbox(key="trn_parent").set_value(parent).run()
    assert any("is not a classifier" in c.value or "differ" in c.value for c in at.caption)
    at.button(key="trn_start").click().run()
    assert not at.exception, at.exception
    [run] = train_jobs.list_runs(admin)
    assert run.version_id == version_id and run.config["parent_model_id"] == parent
    assert run.base_model == str(folder) and run.config["learning_rate"] == 1.2e-4
